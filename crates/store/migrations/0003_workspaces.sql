-- Workspaces and their builds; job leases, cancellation and the daemons
-- that hold them; provisioner keys for daemons on other hosts.

CREATE TABLE workspaces (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id    uuid NOT NULL REFERENCES organizations (id),
    owner_id           uuid NOT NULL REFERENCES users (id),
    template_id        uuid NOT NULL REFERENCES templates (id),
    name               text NOT NULL CHECK (name ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(name) <= 64),
    -- The preset the workspace was made from, if any.
    preset_id          uuid REFERENCES template_version_presets (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted            boolean NOT NULL DEFAULT false,
    -- Lifecycle settings; an unclaimed prebuild has none of them.
    autostart_schedule text,
    ttl_ms             bigint CHECK (ttl_ms > 0),
    last_used_at       timestamptz NOT NULL DEFAULT now(),
    dormant_at         timestamptz,
    deleting_at        timestamptz
);
CREATE UNIQUE INDEX workspaces_owner_name_key ON workspaces (owner_id, name) WHERE NOT deleted;
CREATE INDEX workspaces_template ON workspaces (template_id) WHERE NOT deleted;

CREATE TABLE workspace_builds (
    id                         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id               uuid NOT NULL REFERENCES workspaces (id),
    build_number               integer NOT NULL CHECK (build_number >= 1),
    transition                 text NOT NULL CHECK (transition IN ('start', 'stop', 'delete')),
    initiator_id               uuid NOT NULL REFERENCES users (id),
    reason                     text NOT NULL DEFAULT 'initiator'
                               CHECK (reason IN ('initiator', 'autostart', 'autostop', 'dormancy', 'failed_stop',
                                                 'prebuild', 'claim')),
    template_version_id        uuid NOT NULL REFERENCES template_versions (id),
    template_version_preset_id uuid REFERENCES template_version_presets (id),
    job_id                     uuid NOT NULL UNIQUE REFERENCES provisioner_jobs (id),
    -- What the backend keeps between builds (an exec state file, Terraform state).
    provisioner_state          bytea,
    deadline                   timestamptz,
    max_deadline               timestamptz,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, build_number),
    -- "Zero" times (the epoch) are never stored as deadlines.
    CONSTRAINT workspace_builds_deadline_set CHECK (deadline IS NULL OR deadline > '1970-01-01 00:00:00+00'),
    CONSTRAINT workspace_builds_max_deadline_set
        CHECK (max_deadline IS NULL OR max_deadline > '1970-01-01 00:00:00+00'),
    CONSTRAINT workspace_builds_deadline_within_max
        CHECK (deadline IS NULL OR max_deadline IS NULL OR deadline <= max_deadline)
);
CREATE INDEX workspace_builds_latest ON workspace_builds (workspace_id, build_number DESC);

CREATE TABLE workspace_build_parameters (
    workspace_build_id uuid NOT NULL REFERENCES workspace_builds (id) ON DELETE CASCADE,
    name               text NOT NULL,
    value              text NOT NULL,
    PRIMARY KEY (workspace_build_id, name)
);

CREATE TABLE workspace_resources (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_build_id uuid NOT NULL REFERENCES workspace_builds (id) ON DELETE CASCADE,
    address            text NOT NULL,
    type               text NOT NULL DEFAULT '',
    replaced           boolean NOT NULL DEFAULT false,
    UNIQUE (workspace_build_id, address)
);

-- A running job is leased: its daemon renews the lease by heartbeat, and a
-- job whose lease runs out is failed, so nothing stays running forever.
ALTER TABLE provisioner_jobs ADD COLUMN lease_expires_at timestamptz;
ALTER TABLE provisioner_jobs ADD CONSTRAINT provisioner_jobs_running_is_leased
    CHECK (status NOT IN ('running', 'canceling') OR lease_expires_at IS NOT NULL);
CREATE INDEX provisioner_jobs_leased ON provisioner_jobs (lease_expires_at) WHERE status IN ('running', 'canceling');
CREATE INDEX provisioner_jobs_running_priority ON provisioner_jobs (priority) WHERE status IN ('running', 'canceling');

-- Daemons, as last seen: what prebuild jobs' share of the daemons is computed from.
CREATE TABLE provisioner_daemons (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    tags         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(tags) = 'object'),
    -- Null for daemons inside a server.
    key_id       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provisioner_daemons_seen ON provisioner_daemons (last_seen_at);

-- Keys that let daemons on other hosts take jobs. `<id>-<secret>`; only the
-- SHA-256 of the secret is stored.
CREATE TABLE provisioner_keys (
    id            text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9]{10}$'),
    name          text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(name) <= 64),
    hashed_secret bytea NOT NULL CHECK (octet_length(hashed_secret) = 32),
    created_by    uuid NOT NULL REFERENCES users (id),
    created_at    timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE provisioner_daemons ADD CONSTRAINT provisioner_daemons_key_fk
    FOREIGN KEY (key_id) REFERENCES provisioner_keys (id) ON DELETE CASCADE;
