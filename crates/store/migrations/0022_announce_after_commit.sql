-- Announcements leave the queue's completion (issue 12). A transaction
-- that has called pg_notify commits behind one database-wide lock, held
-- until its commit record is flushed, so completions that announced their
-- end ran one at a time: with 16 daemons most backends were measured
-- waiting on that lock. The completion now only says whether the build's
-- workspace came from a preset; the store announces after the commit, many
-- announcements per transaction (crates/store/src/publisher.rs).
--
-- The body is migration 0014's but for the announcements and the result's
-- last column; a function's arguments and result cannot change in place,
-- so it is dropped and created again, in this migration's one transaction.

DROP FUNCTION complete_provisioner_build(uuid, uuid, text, text, boolean, timestamptz, bytea, text[], text[],
                                         boolean[], timestamptz[], text[], text[], text[], text[], integer, integer,
                                         text[], text[], text, text);

CREATE FUNCTION complete_provisioner_build(
    the_job uuid, the_worker uuid, reported_status text, reported_error text, was_interrupted boolean,
    at timestamptz, state bytea,
    resource_addresses text[], resource_types text[], resource_replaced boolean[],
    log_created timestamptz[], log_levels text[], log_outputs text[], log_sources text[], log_stages text[],
    log_bytes integer, log_cap integer
) RETURNS TABLE (outcome text, status text, logs_stored integer, from_preset boolean)
LANGUAGE plpgsql VOLATILE AS $$
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
        RETURN QUERY SELECT 'lost'::text, NULL::text, 0, false;
        RETURN;
    END IF;
    -- An overflowed log takes no more lines, as when they are appended.
    IF cardinality(log_outputs) > 0 AND NOT overflowed THEN
        IF stored_bytes + log_bytes > log_cap THEN
            RETURN QUERY SELECT 'over_cap'::text, NULL::text, 0, false;
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
    SELECT w.preset_id INTO preset FROM workspaces w WHERE w.id = build.workspace_id;
    RETURN QUERY SELECT 'done'::text, ended, stored, preset IS NOT NULL;
END
$$;

-- As migration 0018 set for the function this replaces.
ALTER FUNCTION complete_provisioner_build SET plan_cache_mode = force_generic_plan;
