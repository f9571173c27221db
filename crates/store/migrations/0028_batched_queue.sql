-- The queue takes and completes jobs in batches (issue 12): the daemons of
-- a server that ask for work at the same moment are served by one
-- statement, and the builds that end together are recorded by one
-- (crates/store/src/batching.rs says why): `complete_provisioner_builds`
-- replaces `complete_provisioner_build` and `take_provisioner_jobs`
-- replaces `take_provisioner_job`.
--
-- `acquire_provisioner_job` (one daemon, the job's row only) stays for the
-- callers that need no payload.

DROP FUNCTION complete_provisioner_build(uuid, uuid, text, text, boolean, timestamptz, bytea, text[], text[],
                                         boolean[], timestamptz[], text[], text[], text[], text[], integer, integer);
DROP FUNCTION take_provisioner_job(uuid, text, jsonb, text, interval, timestamptz, double precision, interval,
                                   interval);

-- Takes a job for each of the daemons `daemon_ids` (with their names and
-- key ids, in the same order), all with the tags `daemon_tags`, as
-- `acquire_provisioner_job` (migrations 0012 and 0023) takes one for one
-- daemon: each daemon counts as live; work somebody waits for first, oldest
-- first; then prebuild work, while prebuild jobs hold less than their share
-- of the live daemons, counted under the same advisory lock, so the share
-- stays exact whatever the batches; commits without waiting for its flush
-- (migration 0023 says why that is harmless for a take).
--
-- Returns one row per job taken, saying which daemon it went to, with what
-- running it needs (as `take_provisioner_job` did, migrations 0014 and
-- 0026, and for drift checks, migration 0027's jobs); daemons for which
-- there was no job get no row. Jobs go to the
-- daemons in the order they were given.
CREATE FUNCTION take_provisioner_jobs(
    daemon_ids uuid[], daemon_names text[], daemon_key_ids text[], daemon_tags jsonb, lease interval,
    at timestamptz, prebuild_share double precision, liveness interval, touch_every interval
) RETURNS TABLE (
    -- The daemon the job went to: its place in daemon_ids, from 1.
    taker bigint,
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
    owner_email text,
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
    preset_name text
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    wanted integer := cardinality(daemon_ids);
    -- Jobs taken so far, and by which daemon (its position in daemon_ids).
    taken uuid[] := '{}';
    takers bigint[] := '{}';
    room integer;
BEGIN
    -- As acquire_provisioner_job: this transaction commits without waiting
    -- for its WAL to reach disk; `true`: until the transaction ends.
    PERFORM set_config('synchronous_commit', 'off', true);
    -- Liveness: written only when stale or changed; in id order, so two
    -- batches writing the same daemons cannot deadlock.
    INSERT INTO provisioner_daemons AS d (id, name, tags, key_id, created_at, last_seen_at)
    SELECT w.id, w.name, daemon_tags, w.key_id, at, at
    FROM unnest(daemon_ids, daemon_names, daemon_key_ids) AS w(id, name, key_id)
    WHERE NOT EXISTS (SELECT FROM provisioner_daemons s WHERE s.id = w.id AND s.last_seen_at > at - touch_every
                                                        AND s.name = w.name AND s.tags = daemon_tags)
    ORDER BY w.id
    ON CONFLICT (id) DO UPDATE SET name = excluded.name, tags = excluded.tags, last_seen_at = at;

    -- Work somebody waits for first (priority 0), oldest first.
    WITH picked AS (
        SELECT q.id, row_number() OVER (ORDER BY q.created_at, q.id) AS n
        FROM (SELECT q.id, q.created_at FROM provisioner_jobs q
              WHERE q.status = 'pending' AND q.priority = 0 AND q.tags <@ daemon_tags
              ORDER BY q.created_at, q.id FOR UPDATE SKIP LOCKED LIMIT wanted) q
    ),
    started AS (
        UPDATE provisioner_jobs j SET status = 'running', started_at = greatest(at, j.created_at), updated_at = at,
            worker_id = w.id, worker_name = w.name, lease_expires_at = greatest(at, j.created_at) + lease
        FROM picked p
        JOIN unnest(daemon_ids, daemon_names) WITH ORDINALITY AS w(id, name, n) ON w.n = p.n
        WHERE j.id = p.id
        RETURNING j.id, w.n
    )
    SELECT coalesce(array_agg(s.id ORDER BY s.n), '{}'), coalesce(array_agg(s.n ORDER BY s.n), '{}')
    INTO taken, takers FROM started s;

    -- Then prebuild work (priority 1) for the daemons left, if there is any
    -- for them: checked first so that an empty prebuild queue takes no lock.
    IF cardinality(taken) < wanted
       AND EXISTS (SELECT FROM provisioner_jobs q WHERE q.status = 'pending' AND q.priority = 1
                                                   AND q.tags <@ daemon_tags) THEN
        -- Held until this transaction commits, so the next taker counts
        -- after this one's jobs are visible as running.
        PERFORM pg_advisory_xact_lock(hashtext('warmspace.prebuild_acquire'));
        room := greatest(floor(prebuild_share * (SELECT count(*) FROM provisioner_daemons
                                                 WHERE last_seen_at > at - liveness)), 1)
              - (SELECT count(*) FROM provisioner_jobs WHERE status IN ('running', 'canceling') AND priority = 1);
        IF room > 0 THEN
            WITH picked AS (
                SELECT q.id, cardinality(taken) + row_number() OVER (ORDER BY q.created_at, q.id) AS n
                FROM (SELECT q.id, q.created_at FROM provisioner_jobs q
                      WHERE q.status = 'pending' AND q.priority = 1 AND q.tags <@ daemon_tags
                      ORDER BY q.created_at, q.id FOR UPDATE SKIP LOCKED
                      LIMIT least(room, wanted - cardinality(taken))) q
            ),
            started AS (
                UPDATE provisioner_jobs j SET status = 'running', started_at = greatest(at, j.created_at),
                    updated_at = at, worker_id = w.id, worker_name = w.name,
                    lease_expires_at = greatest(at, j.created_at) + lease
                FROM picked p
                JOIN unnest(daemon_ids, daemon_names) WITH ORDINALITY AS w(id, name, n) ON w.n = p.n
                WHERE j.id = p.id
                RETURNING j.id, w.n
            )
            SELECT taken || coalesce(array_agg(s.id ORDER BY s.n), '{}'),
                   takers || coalesce(array_agg(s.n ORDER BY s.n), '{}')
            INTO taken, takers FROM started s;
        END IF;
    END IF;

    -- What each daemon needs to run its job. A LEFT JOIN from the job: a
    -- build whose rows are missing still comes back (with no build id), so
    -- the caller can fail it rather than leave it running until its lease
    -- expires. A drift check (migration 0027) gets what a build of its
    -- prebuild gets, as the prebuild's latest build left it: that build's
    -- parameters and its own state (the state a claim would start from); a
    -- prebuild claimed or deleted meanwhile comes back with no build.
    RETURN QUERY
    SELECT g.n, j.id, j.type, coalesce(b.template_version_id, iv.id), coalesce(v.file_id, iv.file_id),
           b.id, b.build_number, b.transition, b.reason, w.id, w.name, w.owner_id, u.username, u.email,
           v.provisioner_config,
           CASE WHEN b.id IS NOT NULL THEN
               coalesce((SELECT jsonb_object_agg(p.name, p.value) FROM workspace_build_parameters p
                         WHERE p.workspace_build_id = b.id), '{}') END,
           CASE WHEN d.job_id IS NOT NULL THEN b.provisioner_state ELSE
               (SELECT e.provisioner_state FROM workspace_builds e WHERE e.workspace_id = w.id
                    AND e.build_number < b.build_number AND e.provisioner_state IS NOT NULL
                ORDER BY e.build_number DESC LIMIT 1) END,
           CASE WHEN b.id IS NOT NULL THEN
               array(SELECT a.name FROM template_version_agents a WHERE a.template_version_id = v.id
                     ORDER BY a.ordinal) END,
           CASE WHEN b.id IS NOT NULL THEN d.job_id IS NULL AND
               EXISTS (SELECT FROM workspace_agents a WHERE a.workspace_id = w.id AND a.token_id IS NOT NULL) END,
           j.created_at, j.started_at, j.initiator_id, o.name, coalesce(t.name, it.name, ''), pr.name
    FROM unnest(taken, takers) AS g(id, n)
    JOIN provisioner_jobs j ON j.id = g.id
    LEFT JOIN organizations o ON o.id = j.organization_id
    -- An import: the version it imports.
    LEFT JOIN template_versions iv ON j.type = 'template_version_import' AND iv.job_id = j.id
    LEFT JOIN templates it ON it.id = iv.template_id
    -- A drift check: the prebuild it checks.
    LEFT JOIN prebuild_drift_checks d ON j.type = 'prebuild_drift_check' AND d.job_id = j.id
    -- A build: its own rows; a drift check: its prebuild's latest build.
    LEFT JOIN LATERAL (
        SELECT e.* FROM workspace_builds e WHERE j.type = 'workspace_build' AND e.job_id = j.id
        UNION ALL
        (SELECT e.* FROM workspace_builds e JOIN workspaces p ON p.id = e.workspace_id
         WHERE e.workspace_id = d.workspace_id AND NOT p.deleted
             AND p.owner_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0'
         ORDER BY e.build_number DESC LIMIT 1)
    ) b ON true
    LEFT JOIN workspaces w ON w.id = b.workspace_id
    LEFT JOIN users u ON u.id = w.owner_id
    LEFT JOIN template_versions v ON v.id = b.template_version_id
    LEFT JOIN templates t ON t.id = w.template_id
    LEFT JOIN template_version_presets pr ON pr.id = coalesce(d.preset_id, w.preset_id)
    ORDER BY g.n;
END
$$;

-- As migration 0018 set for the queue's other functions.
ALTER FUNCTION take_provisioner_jobs SET plan_cache_mode = force_generic_plan;

-- Records how the builds of a batch ended (crates/store/src/completer.rs),
-- each as `complete_provisioner_build` did (migrations 0014 and 0022): a job
-- is ended only while its worker holds it, when its lines fit under the
-- log's cap (an overflowed log takes no more lines, and then they do not
-- count), and when it runs a build; its lines keep their order; its build
-- keeps its state and resources, and a successful delete deletes its
-- workspace and disarms its agents. One row per job, in order: `done`;
-- `over_cap` (nothing written); `lost` (the worker no longer holds it); or
-- `no_build`. The final SELECT reads the rows as they were before the
-- statement, which is what tells a job over its cap from one no longer held.
--
-- A function, rather than the statement sent as it is, for its plan:
-- prepared with its twenty array arguments the statement was planned anew
-- at every call (1.2 ms, more than it took to run).
CREATE FUNCTION complete_provisioner_builds(
    the_jobs uuid[], the_workers uuid[], reported_statuses text[], reported_errors text[], were_interrupted boolean[],
    reported_at timestamptz[], states bytea[], log_bytes integer[], has_logs boolean[],
    resource_jobs integer[], resource_addresses text[], resource_types text[], resource_replaced boolean[],
    log_jobs integer[], log_created timestamptz[], log_levels text[], log_outputs text[], log_sources text[],
    log_stages text[], log_cap integer
) RETURNS TABLE (outcome text, status text, logs_stored integer, from_preset boolean)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY
    WITH r AS (
        SELECT * FROM unnest(the_jobs, the_workers, reported_statuses, reported_errors, were_interrupted, reported_at,
                             states, log_bytes, has_logs)
            WITH ORDINALITY AS r(id, worker, status, error, interrupted, at, state, bytes, has_logs, i)
    ),
    ended AS (
        UPDATE provisioner_jobs j SET
            status = CASE j.status WHEN 'canceling' THEN 'canceled' ELSE r.status END,
            error = CASE j.status WHEN 'canceling' THEN coalesce(r.error, 'canceled') ELSE r.error END,
            interrupted = r.interrupted, completed_at = greatest(r.at, j.started_at), updated_at = r.at,
            logs_length = j.logs_length + CASE WHEN r.has_logs AND NOT j.logs_overflowed THEN r.bytes ELSE 0 END
        FROM r
        WHERE j.id = r.id AND j.worker_id = r.worker AND j.status IN ('running', 'canceling')
            AND NOT (r.has_logs AND NOT j.logs_overflowed AND j.logs_length + r.bytes > log_cap)
            AND EXISTS (SELECT FROM workspace_builds b WHERE b.job_id = j.id)
        RETURNING j.id, j.status, r.i, r.has_logs AND NOT j.logs_overflowed AS logs_taken, r.state
    ),
    logged AS (
        INSERT INTO provisioner_job_logs (job_id, created_at, level, output, source, stage)
        SELECT e.id, l.created_at, l.level, l.output, l.source, l.stage
        FROM unnest(log_jobs, log_created, log_levels, log_outputs, log_sources, log_stages)
            WITH ORDINALITY AS l(job, created_at, level, output, source, stage, n)
        JOIN ended e ON e.i = l.job AND e.logs_taken
        ORDER BY l.n
        RETURNING job_id
    ),
    built AS (
        UPDATE workspace_builds b SET provisioner_state = e.state, updated_at = now()
        FROM ended e WHERE b.job_id = e.id
        RETURNING b.id, b.workspace_id, b.transition, b.job_id, e.status
    ),
    resourced AS (
        INSERT INTO workspace_resources (workspace_build_id, address, type, replaced)
        SELECT b.id, x.address, x.type, x.replaced
        FROM unnest(resource_jobs, resource_addresses, resource_types, resource_replaced) AS x(job, address, type, replaced)
        JOIN ended e ON e.i = x.job
        JOIN built b ON b.job_id = e.id
        ON CONFLICT (workspace_build_id, address) DO UPDATE SET type = excluded.type, replaced = excluded.replaced
    ),
    deleted AS (
        UPDATE workspaces w SET deleted = true, updated_at = now()
        FROM built b WHERE w.id = b.workspace_id AND b.transition = 'delete' AND b.status = 'succeeded'
    ),
    disarmed AS (
        UPDATE workspace_agents a SET token_id = NULL, hashed_secret = NULL, updated_at = now()
        FROM built b WHERE a.workspace_id = b.workspace_id AND b.transition = 'delete' AND b.status = 'succeeded'
    )
    SELECT CASE
               WHEN e.id IS NOT NULL THEN 'done'
               WHEN j.worker_id IS DISTINCT FROM r.worker OR j.status NOT IN ('running', 'canceling') THEN 'lost'
               WHEN r.has_logs AND NOT j.logs_overflowed AND j.logs_length + r.bytes > log_cap THEN 'over_cap'
               WHEN NOT EXISTS (SELECT FROM workspace_builds b WHERE b.job_id = r.id) THEN 'no_build'
               ELSE 'lost'
           END AS outcome,
           e.status,
           (SELECT count(*) FROM logged g WHERE g.job_id = r.id)::integer AS logs_stored,
           coalesce(w.preset_id IS NOT NULL, false) AS from_preset
    FROM r
    LEFT JOIN ended e ON e.i = r.i
    LEFT JOIN provisioner_jobs j ON j.id = r.id
    LEFT JOIN built b ON b.job_id = e.id
    LEFT JOIN workspaces w ON w.id = b.workspace_id
    ORDER BY r.i;
END
$$;

ALTER FUNCTION complete_provisioner_builds SET plan_cache_mode = force_generic_plan;
