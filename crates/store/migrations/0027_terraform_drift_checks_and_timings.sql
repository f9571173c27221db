-- The Terraform backend (issue 16): the drift check and build timings.
--
-- The drift check: right after a prebuild of a Terraform
-- template becomes eligible, a job of its own plans (never applies) what
-- claiming it would do, and records which resources the claim would
-- replace — once per preset (a preset belongs to one template version),
-- again only after the preset is invalidated.
--
-- It is a job on the queue like any other (priority 1, prebuild work,
-- initiated by the prebuilds user, with the prebuild's build's tags), so any
-- daemon that could build the prebuild can check it, and it survives a
-- restart like any job.

ALTER TABLE provisioner_jobs DROP CONSTRAINT provisioner_jobs_type_check;
ALTER TABLE provisioner_jobs ADD CONSTRAINT provisioner_jobs_type_check
    CHECK (type IN ('template_version_import', 'workspace_build', 'prebuild_drift_check'));

-- The latest check of each preset. `replaced` is set when the check's job
-- succeeds (empty: a claim replaces nothing); a failed job is told by the
-- job's own status and error.
CREATE TABLE prebuild_drift_checks (
    preset_id    uuid PRIMARY KEY REFERENCES template_version_presets (id) ON DELETE CASCADE,
    -- The prebuild whose claim was planned.
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    job_id       uuid NOT NULL UNIQUE REFERENCES provisioner_jobs (id),
    created_at   timestamptz NOT NULL,
    -- Addresses of the resources a claim would replace.
    replaced     text[],
    completed_at timestamptz,
    CHECK ((replaced IS NULL) = (completed_at IS NULL))
);

-- `take_provisioner_job` (migration 0026) hands a drift check's daemon what
-- a build's gets, read from the prebuild; the rest is unchanged. Its result
-- type is unchanged, so it is replaced in place; replacing clears its
-- settings, so 0018's plan setting is made again.

CREATE OR REPLACE FUNCTION take_provisioner_job(
    daemon_id uuid, daemon_name text, daemon_tags jsonb, daemon_key_id text, lease interval, at timestamptz,
    prebuild_share double precision, liveness interval, touch_every interval
) RETURNS TABLE (
    job_id uuid,
    job_type text,
    template_version_id uuid,
    file_id uuid,
    build_id uuid,
    build_number integer,
    transition text,
    reason text,
    workspace_id uuid,
    workspace_name text,
    owner_id uuid,
    owner_name text,
    provisioner_config jsonb,
    parameters jsonb,
    previous_state bytea,
    agent_names text[],
    has_agent_tokens boolean,
    job_created_at timestamptz,
    job_started_at timestamptz,
    job_initiator_id uuid,
    organization_name text,
    -- Empty for the import of a version no template has yet.
    template_name text,
    -- Null unless the build's workspace was made from a preset.
    preset_name text,
    owner_email text
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    taken provisioner_jobs;
BEGIN
    SELECT * INTO taken FROM acquire_provisioner_job(daemon_id, daemon_name, daemon_tags, daemon_key_id, lease, at,
                                                     prebuild_share, liveness, touch_every);
    IF taken.id IS NULL THEN
        RETURN;
    END IF;
    IF taken.type = 'template_version_import' THEN
        RETURN QUERY
        SELECT taken.id, taken.type, v.id, v.file_id, NULL::uuid, NULL::integer, NULL::text, NULL::text, NULL::uuid,
               NULL::text, NULL::uuid, NULL::text, NULL::jsonb, NULL::jsonb, NULL::bytea, NULL::text[], NULL::boolean,
               taken.created_at, taken.started_at, taken.initiator_id, o.name, coalesce(t.name, ''), NULL::text,
               NULL::text
        FROM (SELECT taken.id) j
        LEFT JOIN template_versions v ON v.job_id = taken.id
        LEFT JOIN templates t ON t.id = v.template_id
        LEFT JOIN organizations o ON o.id = taken.organization_id;
        RETURN;
    END IF;
    IF taken.type = 'prebuild_drift_check' THEN
        -- The prebuild the check is about, as its latest build left it: that
        -- build's parameters and its own state (the state a claim would
        -- start from). A prebuild claimed or deleted meanwhile comes back
        -- with no build id, so the caller fails the check.
        RETURN QUERY
        SELECT taken.id, taken.type, b.template_version_id, v.file_id, b.id, b.build_number, b.transition, b.reason,
               w.id, w.name, w.owner_id, u.username, v.provisioner_config,
               coalesce((SELECT jsonb_object_agg(p.name, p.value) FROM workspace_build_parameters p
                         WHERE p.workspace_build_id = b.id), '{}'),
               b.provisioner_state,
               array(SELECT a.name FROM template_version_agents a WHERE a.template_version_id = v.id
                     ORDER BY a.ordinal),
               false,
               taken.created_at, taken.started_at, taken.initiator_id, o.name, coalesce(t.name, ''), pr.name,
               u.email
        FROM (SELECT taken.id) j
        LEFT JOIN prebuild_drift_checks d ON d.job_id = taken.id
        LEFT JOIN workspaces w ON w.id = d.workspace_id AND NOT w.deleted
                                  AND w.owner_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0'
        LEFT JOIN LATERAL (SELECT * FROM workspace_builds e WHERE e.workspace_id = w.id
                           ORDER BY e.build_number DESC LIMIT 1) b ON true
        LEFT JOIN users u ON u.id = w.owner_id
        LEFT JOIN template_versions v ON v.id = b.template_version_id
        LEFT JOIN templates t ON t.id = w.template_id
        LEFT JOIN template_version_presets pr ON pr.id = d.preset_id
        LEFT JOIN organizations o ON o.id = taken.organization_id;
        RETURN;
    END IF;
    -- A LEFT JOIN from the job: a build whose rows are missing still comes
    -- back (with no build id), so the caller can fail it rather than leave
    -- it running until its lease expires.
    RETURN QUERY
    SELECT taken.id, taken.type, b.template_version_id, v.file_id, b.id, b.build_number, b.transition, b.reason,
           w.id, w.name, w.owner_id, u.username, v.provisioner_config,
           coalesce((SELECT jsonb_object_agg(p.name, p.value) FROM workspace_build_parameters p
                     WHERE p.workspace_build_id = b.id), '{}'),
           (SELECT e.provisioner_state FROM workspace_builds e WHERE e.workspace_id = w.id
                AND e.build_number < b.build_number AND e.provisioner_state IS NOT NULL
            ORDER BY e.build_number DESC LIMIT 1),
           array(SELECT a.name FROM template_version_agents a WHERE a.template_version_id = v.id ORDER BY a.ordinal),
           EXISTS (SELECT 1 FROM workspace_agents a WHERE a.workspace_id = w.id AND a.token_id IS NOT NULL),
           taken.created_at, taken.started_at, taken.initiator_id, o.name, coalesce(t.name, ''), pr.name,
           u.email
    FROM (SELECT taken.id) j
    LEFT JOIN workspace_builds b ON b.job_id = taken.id
    LEFT JOIN workspaces w ON w.id = b.workspace_id
    LEFT JOIN users u ON u.id = w.owner_id
    LEFT JOIN template_versions v ON v.id = b.template_version_id
    LEFT JOIN templates t ON t.id = w.template_id
    LEFT JOIN template_version_presets pr ON pr.id = w.preset_id
    LEFT JOIN organizations o ON o.id = taken.organization_id;
END
$$;

ALTER FUNCTION take_provisioner_job SET plan_cache_mode = force_generic_plan;

-- Build timings (issue 16): how long each stage of a job took, and each
-- action on each resource within it (Terraform's apply_start to
-- apply_complete), as its daemon reported them with the job's end.
CREATE TABLE provisioner_job_timings (
    id         bigserial PRIMARY KEY,
    job_id     uuid NOT NULL REFERENCES provisioner_jobs (id),
    stage      text NOT NULL CHECK (stage IN ('init', 'plan', 'apply')),
    action     text NOT NULL CHECK (action <> ''),
    -- A resource's address; NULL for the whole stage.
    resource   text CHECK (resource <> ''),
    started_at timestamptz NOT NULL,
    ended_at   timestamptz NOT NULL,
    CHECK (ended_at >= started_at)
);
CREATE INDEX provisioner_job_timings_job ON provisioner_job_timings (job_id);
