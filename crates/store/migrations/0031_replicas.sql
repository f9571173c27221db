-- The server replicas alive on this database: each writes its row when it
-- starts and its heartbeat every few seconds, and removes it when it stops.
-- A replica whose heartbeat is old has died without cleaning up: the others
-- remove its row, which removes the tunnels it held (agent_tunnels cascades),
-- and close the connections it recorded.
CREATE TABLE replicas (
    id           uuid PRIMARY KEY,
    relay_url    text NOT NULL CHECK (relay_url ~ '^https?://'),
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    CONSTRAINT replicas_heartbeat_after_start CHECK (heartbeat_at >= started_at)
);

-- Tunnels held before replicas were recorded have no replica; they go when
-- their tunnel closes or is replaced, as before.
ALTER TABLE agent_tunnels ADD COLUMN replica_id uuid REFERENCES replicas (id) ON DELETE CASCADE;

-- Which replica recorded a connection (and carries its bytes): the log
-- outlives replicas, so this references none.
ALTER TABLE connection_log ADD COLUMN replica_id uuid;
CREATE INDEX connection_log_ongoing_by_replica ON connection_log (replica_id) WHERE ended_at IS NULL;
