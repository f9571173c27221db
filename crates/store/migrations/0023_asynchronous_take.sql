-- Taking a job commits asynchronously (issue 12): its transaction does not
-- wait for its commit record to be flushed to disk. Under load, takes spent
-- much of their time waiting for WAL flushes (measured at 16 daemons: most
-- of the backends running a take were waiting on WALWrite).
--
-- Losing a take is harmless, which is why only the take does this. Should
-- PostgreSQL itself crash within the moment before the flush (a process
-- crash of the server or a daemon changes nothing: the commit happened),
-- the job is pending again as if never taken: another daemon takes it, and
-- the first daemon's report about it is refused, since it no longer holds
-- the job. The completion, which records what a build did, still waits for
-- its flush, and flushing it writes every earlier commit record too: a
-- completion that is durable implies the take before it is.
--
-- A PL/pgSQL function's `SET LOCAL` lasts until the end of the transaction
-- (the function has no SET clause of its own for this setting), so the
-- statement calling it — acquiring, or taking with the payload — commits
-- that way. The body is migration 0012's but for that one call; replacing
-- a function clears its settings, so 0018's plan setting is made again.

CREATE OR REPLACE FUNCTION acquire_provisioner_job(
    daemon_id uuid,
    daemon_name text,
    daemon_tags jsonb,
    daemon_key_id text,
    -- How long the job is leased for.
    lease interval,
    -- The caller's clock (tests control it).
    at timestamptz,
    -- The share of live daemons prebuild jobs may occupy; at least one daemon.
    prebuild_share double precision,
    -- Daemons seen within this long count as live.
    liveness interval,
    -- A daemon's row is rewritten at most this often just to say it is alive.
    touch_every interval
) RETURNS SETOF provisioner_jobs LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- This call's transaction commits without waiting for its WAL to reach
    -- disk (see the migration's head); `true`: until the transaction ends.
    PERFORM set_config('synchronous_commit', 'off', true);
    -- Liveness: written only when stale or changed, so a busy daemon's
    -- acquires read its row rather than rewrite it each time. The key a
    -- worker id first came with stays its key.
    PERFORM FROM provisioner_daemons d
    WHERE d.id = daemon_id AND d.last_seen_at > at - touch_every AND d.name = daemon_name AND d.tags = daemon_tags;
    IF NOT FOUND THEN
        INSERT INTO provisioner_daemons AS d (id, name, tags, key_id, created_at, last_seen_at)
        VALUES (daemon_id, daemon_name, daemon_tags, daemon_key_id, at, at)
        ON CONFLICT (id) DO UPDATE SET name = excluded.name, tags = excluded.tags, last_seen_at = at;
    END IF;

    -- Work somebody waits for first (priority 0), oldest first. A job is
    -- never started (nor leased) before it was created, even when `at` was
    -- read before it was posted.
    RETURN QUERY
    UPDATE provisioner_jobs j SET status = 'running', started_at = greatest(at, j.created_at), updated_at = at,
        worker_id = daemon_id, worker_name = daemon_name, lease_expires_at = greatest(at, j.created_at) + lease
    WHERE j.id = (SELECT q.id FROM provisioner_jobs q
                  WHERE q.status = 'pending' AND q.priority = 0 AND q.tags <@ daemon_tags
                  ORDER BY q.created_at, q.id FOR UPDATE SKIP LOCKED LIMIT 1)
    RETURNING j.*;
    IF FOUND THEN
        RETURN;
    END IF;

    -- Then prebuild work (priority 1), if there is any for this daemon:
    -- checked first so that an empty prebuild queue takes no lock.
    PERFORM FROM provisioner_jobs q WHERE q.status = 'pending' AND q.priority = 1 AND q.tags <@ daemon_tags LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- Held until this call's transaction commits, so the next daemon
    -- counts after this one's job is visible as running.
    PERFORM pg_advisory_xact_lock(hashtext('warmspace.prebuild_acquire'));
    IF (SELECT count(*) FROM provisioner_jobs WHERE status IN ('running', 'canceling') AND priority = 1)
       >= greatest(floor(prebuild_share * (SELECT count(*) FROM provisioner_daemons WHERE last_seen_at > at - liveness)), 1)
    THEN
        RETURN;
    END IF;
    RETURN QUERY
    UPDATE provisioner_jobs j SET status = 'running', started_at = greatest(at, j.created_at), updated_at = at,
        worker_id = daemon_id, worker_name = daemon_name, lease_expires_at = greatest(at, j.created_at) + lease
    WHERE j.id = (SELECT q.id FROM provisioner_jobs q
                  WHERE q.status = 'pending' AND q.priority = 1 AND q.tags <@ daemon_tags
                  ORDER BY q.created_at, q.id FOR UPDATE SKIP LOCKED LIMIT 1)
    RETURNING j.*;
END
$$;

ALTER FUNCTION acquire_provisioner_job SET plan_cache_mode = force_generic_plan;
