-- A zero-work job in two statements (issue 12): the daemon takes the job
-- with everything it needs to run it, and reports its end with its last log
-- lines and the announcements that follow, each in one call.

-- Takes a job as `acquire_provisioner_job` does (same arguments), and
-- returns what running it needs: for an import, the version and its files;
-- for a build, its payload (the build, workspace, owner, version, parameters,
-- the state the newest earlier build left, the agents declared and whether
-- any agent holds a token). The payload is read by a second statement, whose
-- snapshot is taken after the job was taken, so it sees the rows queued
-- with the job even when that committed after this call began.
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
    has_agent_tokens boolean
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
               NULL::text, NULL::uuid, NULL::text, NULL::jsonb, NULL::jsonb, NULL::bytea, NULL::text[], NULL::boolean
        FROM (SELECT taken.id) t LEFT JOIN template_versions v ON v.job_id = taken.id;
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
           EXISTS (SELECT 1 FROM workspace_agents a WHERE a.workspace_id = w.id AND a.token_id IS NOT NULL)
    FROM (SELECT taken.id) t
    LEFT JOIN workspace_builds b ON b.job_id = taken.id
    LEFT JOIN workspaces w ON w.id = b.workspace_id
    LEFT JOIN users u ON u.id = w.owner_id
    LEFT JOIN template_versions v ON v.id = b.template_version_id;
END
$$;

-- Records how a build ended, with the daemon's last log lines, in one call:
-- the lines (unless the log has overflowed), the job's end (a job being
-- canceled ends canceled whatever it reports), the backend's state and
-- resources, the workspace's deletion after a successful delete build, and
-- the announcements that follow (delivered at commit, on this connection).
--
-- Returns one row: `lost` when the worker no longer holds the job (nothing
-- changed); `over_cap` when the lines would take the log past `log_cap`
-- bytes (nothing changed: the caller stores them capped, then completes
-- without them); otherwise `done`, with the status the job ended with.
-- The lines' outputs must already be cleaned (no NUL, each line capped);
-- `log_bytes` is the sum of their lengths in bytes.
CREATE FUNCTION complete_provisioner_build(
    the_job uuid, the_worker uuid, reported_status text, reported_error text, was_interrupted boolean,
    at timestamptz, state bytea,
    resource_addresses text[], resource_types text[], resource_replaced boolean[],
    log_created timestamptz[], log_levels text[], log_outputs text[], log_sources text[], log_stages text[],
    log_bytes integer, log_cap integer,
    -- Announced whatever the build was.
    notice_channels text[], notice_payloads text[],
    -- Announced only when the build's workspace was made from a preset.
    preset_channel text, preset_payload text
) RETURNS TABLE (outcome text, status text, logs_stored integer) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    stored_bytes integer;
    overflowed boolean;
    stored integer := 0;
    ended text;
    build record;
    preset uuid;
BEGIN
    SELECT j.logs_length, j.logs_overflowed INTO stored_bytes, overflowed FROM provisioner_jobs j
    WHERE j.id = the_job AND j.worker_id = the_worker AND j.status IN ('running', 'canceling') FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'lost'::text, NULL::text, 0;
        RETURN;
    END IF;
    -- An overflowed log takes no more lines, as when they are appended.
    IF cardinality(log_outputs) > 0 AND NOT overflowed THEN
        IF stored_bytes + log_bytes > log_cap THEN
            RETURN QUERY SELECT 'over_cap'::text, NULL::text, 0;
            RETURN;
        END IF;
        INSERT INTO provisioner_job_logs (job_id, created_at, level, output, source, stage)
        SELECT the_job, * FROM unnest(log_created, log_levels, log_outputs, log_sources, log_stages);
        stored := cardinality(log_outputs);
    END IF;
    UPDATE provisioner_jobs j SET status = CASE j.status WHEN 'canceling' THEN 'canceled' ELSE reported_status END,
        error = CASE j.status WHEN 'canceling' THEN coalesce(reported_error, 'canceled') ELSE reported_error END,
        interrupted = was_interrupted, completed_at = greatest(at, j.started_at), updated_at = at,
        logs_length = j.logs_length + CASE WHEN stored > 0 THEN log_bytes ELSE 0 END
    WHERE j.id = the_job
    RETURNING j.status INTO ended;
    -- An empty state means "reported, and there is none", unlike NULL
    -- ("never reported"), which makes the next build look further back.
    UPDATE workspace_builds b SET provisioner_state = coalesce(state, ''::bytea), updated_at = now()
    WHERE b.job_id = the_job
    RETURNING b.id, b.workspace_id, b.transition INTO build;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % runs no workspace build', the_job USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO workspace_resources (workspace_build_id, address, type, replaced)
    SELECT build.id, * FROM unnest(resource_addresses, resource_types, resource_replaced)
    ON CONFLICT (workspace_build_id, address) DO UPDATE SET type = excluded.type, replaced = excluded.replaced;
    IF build.transition = 'delete' AND ended = 'succeeded' THEN
        UPDATE workspaces SET deleted = true, updated_at = now() WHERE id = build.workspace_id;
        UPDATE workspace_agents SET token_id = NULL, hashed_secret = NULL, updated_at = now()
        WHERE workspace_id = build.workspace_id;
    END IF;
    PERFORM pg_notify(c, p) FROM unnest(notice_channels, notice_payloads) AS n(c, p);
    SELECT w.preset_id INTO preset FROM workspaces w WHERE w.id = build.workspace_id;
    IF preset IS NOT NULL AND preset_channel IS NOT NULL THEN
        PERFORM pg_notify(preset_channel, preset_payload);
    END IF;
    RETURN QUERY SELECT 'done'::text, ended, stored;
END
$$;
