-- Acquiring a job is one round trip (issue 12): the daemon's liveness, the
-- priority between user and prebuild work and the prebuild share of the
-- daemons are all decided in this function, called as one statement.
--
-- It is a function rather than one SQL statement for the prebuild share:
-- counting the prebuild jobs running and taking one must be serialised
-- between daemons (or two of them both take the last free slot), and a
-- count made after waiting for a lock only sees what the lock's previous
-- holder took if it is made with a snapshot taken after the wait. A
-- VOLATILE function takes a fresh snapshot for each statement in it; one
-- SQL statement keeps the snapshot it started with.
CREATE FUNCTION acquire_provisioner_job(
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
