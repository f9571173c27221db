-- The Terraform backend (issue 16) hands templates the owner's email
-- (`TF_VAR_warmspace_owner_email`): a daemon taking a build learns it with
-- the owner's name, from the same statement.
--
-- `take_provisioner_job` (migration 0017) is the same but for the
-- `owner_email` column at the end. A function's result type cannot be
-- changed in place: it is dropped and created again, in this migration's one
-- transaction, with migration 0018's plan setting.

DROP FUNCTION take_provisioner_job(uuid, text, jsonb, text, interval, timestamptz, double precision, interval,
                                   interval);

CREATE FUNCTION take_provisioner_job(
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
