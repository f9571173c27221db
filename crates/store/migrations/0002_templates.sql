-- Uploaded files, the provisioner job queue, and templates with their
-- versions, parameters, presets, prebuild policies and agents.

-- Content-addressed: the same bytes are stored once, whoever uploads them.
CREATE TABLE files (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    hash       text NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$'),
    mimetype   text NOT NULL,
    size       bigint NOT NULL CHECK (size >= 0),
    data       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT files_size_matches CHECK (size = octet_length(data))
);

-- Who uploaded a file: uploading is one way of being allowed to read it.
CREATE TABLE file_uploads (
    file_id    uuid NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (file_id, user_id)
);

CREATE TABLE provisioner_jobs (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id),
    type            text NOT NULL CHECK (type IN ('template_version_import', 'workspace_build')),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'canceling', 'canceled')),
    initiator_id    uuid NOT NULL REFERENCES users (id),
    -- 0: somebody is waiting for it (imports, user builds, claims); 1: prebuild work.
    priority        smallint NOT NULL DEFAULT 0 CHECK (priority IN (0, 1)),
    -- A job runs only on a daemon whose tags include all of these.
    tags            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(tags) = 'object'),
    input           jsonb NOT NULL,
    file_id         uuid REFERENCES files (id),
    worker_id       uuid,
    worker_name     text,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    completed_at    timestamptz,
    canceled_at     timestamptz,
    logs_length     integer NOT NULL DEFAULT 0 CHECK (logs_length >= 0),
    logs_overflowed boolean NOT NULL DEFAULT false,
    CONSTRAINT provisioner_jobs_pending_not_started
        CHECK (status <> 'pending' OR (started_at IS NULL AND completed_at IS NULL AND worker_id IS NULL)),
    CONSTRAINT provisioner_jobs_running_has_worker
        CHECK (status NOT IN ('running', 'canceling')
               OR (completed_at IS NULL AND started_at IS NOT NULL AND worker_id IS NOT NULL)),
    CONSTRAINT provisioner_jobs_finished_has_completion
        CHECK (status NOT IN ('succeeded', 'failed', 'canceled') OR completed_at IS NOT NULL),
    CONSTRAINT provisioner_jobs_succeeded_ran
        CHECK (status <> 'succeeded' OR (started_at IS NOT NULL AND worker_id IS NOT NULL)),
    CONSTRAINT provisioner_jobs_timestamps_in_order
        CHECK (started_at >= created_at AND completed_at >= coalesce(started_at, created_at)),
    CONSTRAINT provisioner_jobs_worker_named CHECK ((worker_id IS NULL) = (worker_name IS NULL))
);
-- What acquisition scans: pending jobs in the order they are taken.
CREATE INDEX provisioner_jobs_pending ON provisioner_jobs (priority, created_at) WHERE status = 'pending';

CREATE TABLE provisioner_job_logs (
    id         bigserial PRIMARY KEY,
    job_id     uuid NOT NULL REFERENCES provisioner_jobs (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    source     text NOT NULL CHECK (source IN ('provisioner_daemon', 'provisioner')),
    level      text NOT NULL CHECK (level IN ('trace', 'debug', 'info', 'warn', 'error')),
    stage      text NOT NULL DEFAULT '',
    output     text NOT NULL
);
CREATE INDEX provisioner_job_logs_job ON provisioner_job_logs (job_id, id);

CREATE TABLE templates (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id     uuid NOT NULL REFERENCES organizations (id),
    name                text NOT NULL CHECK (name ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(name) <= 64),
    display_name        text NOT NULL DEFAULT '' CHECK (length(display_name) <= 64),
    description         text NOT NULL DEFAULT '' CHECK (length(description) <= 128),
    icon                text NOT NULL DEFAULT '' CHECK (length(icon) <= 256),
    active_version_id   uuid NOT NULL,
    created_by          uuid NOT NULL REFERENCES users (id),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted             boolean NOT NULL DEFAULT false,
    -- Lifecycle settings, applied to workspaces (and to prebuilds once claimed).
    default_ttl_ms      bigint NOT NULL DEFAULT 0 CHECK (default_ttl_ms >= 0),
    -- Days on which workspaces must stop (bit 0 = Monday … bit 6 = Sunday), every `weeks` weeks.
    autostop_requirement_days_of_week smallint NOT NULL DEFAULT 0
        CHECK (autostop_requirement_days_of_week BETWEEN 0 AND 127),
    autostop_requirement_weeks integer NOT NULL DEFAULT 1 CHECK (autostop_requirement_weeks BETWEEN 1 AND 16),
    allow_user_autostart boolean NOT NULL DEFAULT true,
    failure_ttl_ms      bigint NOT NULL DEFAULT 0 CHECK (failure_ttl_ms >= 0),
    time_til_dormant_ms bigint NOT NULL DEFAULT 0 CHECK (time_til_dormant_ms >= 0),
    time_til_dormant_autodelete_ms bigint NOT NULL DEFAULT 0 CHECK (time_til_dormant_autodelete_ms >= 0)
);
CREATE UNIQUE INDEX templates_name_key ON templates (organization_id, name) WHERE NOT deleted;

CREATE TABLE template_versions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id),
    -- Null until a template adopts the version (the first push creates both).
    template_id     uuid REFERENCES templates (id),
    name            text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]*$' AND length(name) <= 64),
    message         text NOT NULL DEFAULT '' CHECK (length(message) <= 1048),
    file_id         uuid NOT NULL REFERENCES files (id),
    job_id          uuid NOT NULL UNIQUE REFERENCES provisioner_jobs (id),
    created_by      uuid NOT NULL REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Filled in by a successful import.
    provisioner     text CHECK (provisioner IN ('echo', 'exec', 'terraform')),
    claim_mode      text CHECK (claim_mode IN ('rebuild', 'reinit')),
    -- The backend's own block, opaque to the server.
    provisioner_config jsonb,
    CONSTRAINT template_versions_imported_together
        CHECK ((provisioner IS NULL) = (claim_mode IS NULL) AND (provisioner IS NULL) = (provisioner_config IS NULL))
);
CREATE UNIQUE INDEX template_versions_name_key ON template_versions (template_id, name) WHERE template_id IS NOT NULL;

ALTER TABLE templates ADD CONSTRAINT templates_active_version_fk
    FOREIGN KEY (active_version_id) REFERENCES template_versions (id) DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE template_version_parameters (
    template_version_id uuid NOT NULL REFERENCES template_versions (id) ON DELETE CASCADE,
    name             text NOT NULL,
    ordinal          integer NOT NULL,
    display_name     text NOT NULL DEFAULT '',
    description      text NOT NULL DEFAULT '',
    type             text NOT NULL CHECK (type IN ('string', 'number', 'bool', 'list(string)')),
    -- Null: the parameter is required.
    default_value    text,
    mutable          boolean NOT NULL,
    validation_min   double precision,
    validation_max   double precision,
    validation_regex text,
    validation_error text,
    PRIMARY KEY (template_version_id, name),
    CHECK (validation_min IS NULL OR validation_max IS NULL OR validation_min <= validation_max)
);

CREATE TABLE template_version_parameter_options (
    template_version_id uuid NOT NULL,
    parameter_name   text NOT NULL,
    ordinal          integer NOT NULL,
    name             text NOT NULL,
    value            text NOT NULL,
    description      text NOT NULL DEFAULT '',
    icon             text NOT NULL DEFAULT '',
    PRIMARY KEY (template_version_id, parameter_name, ordinal),
    UNIQUE (template_version_id, parameter_name, value),
    FOREIGN KEY (template_version_id, parameter_name)
        REFERENCES template_version_parameters (template_version_id, name) ON DELETE CASCADE
);

CREATE TABLE template_version_presets (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    template_version_id uuid NOT NULL REFERENCES template_versions (id) ON DELETE CASCADE,
    name                text NOT NULL,
    ordinal             integer NOT NULL,
    description         text NOT NULL DEFAULT '' CHECK (length(description) <= 128),
    icon                text NOT NULL DEFAULT '' CHECK (length(icon) <= 256),
    is_default          boolean NOT NULL DEFAULT false,
    -- Null: no `prebuilds` block, so no pool at all (not a pool of 0).
    desired_instances   integer CHECK (desired_instances >= 0),
    ttl_seconds         bigint CHECK (ttl_seconds >= 0),
    scheduling_timezone text,
    last_invalidated_at timestamptz,
    UNIQUE (template_version_id, name),
    CONSTRAINT template_version_presets_policy_needs_prebuilds
        CHECK (desired_instances IS NOT NULL OR (ttl_seconds IS NULL AND scheduling_timezone IS NULL))
);
CREATE UNIQUE INDEX template_version_presets_single_default
    ON template_version_presets (template_version_id) WHERE is_default;

CREATE TABLE template_version_preset_parameters (
    preset_id uuid NOT NULL REFERENCES template_version_presets (id) ON DELETE CASCADE,
    name      text NOT NULL,
    value     text NOT NULL,
    PRIMARY KEY (preset_id, name)
);

CREATE TABLE template_version_preset_prebuild_schedules (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    preset_id         uuid NOT NULL REFERENCES template_version_presets (id) ON DELETE CASCADE,
    ordinal           integer NOT NULL,
    cron_expression   text NOT NULL,
    desired_instances integer NOT NULL CHECK (desired_instances >= 0),
    UNIQUE (preset_id, ordinal)
);

CREATE TABLE template_version_agents (
    template_version_id uuid NOT NULL REFERENCES template_versions (id) ON DELETE CASCADE,
    name           text NOT NULL CHECK (name ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    ordinal        integer NOT NULL,
    startup_script text NOT NULL DEFAULT '',
    env            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(env) = 'object'),
    PRIMARY KEY (template_version_id, name)
);
