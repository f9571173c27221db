-- People's connections to workspaces through the agents' tunnels.

-- Which replica holds each agent's tunnel: written when the tunnel opens,
-- removed when it closes. A replica that receives a connection for an agent
-- whose tunnel another replica holds dials that replica's relay URL and
-- proves itself with the tunnel's secret (random per tunnel, known only to
-- the holder and to readers of this table).
CREATE TABLE agent_tunnels (
    agent_id     uuid PRIMARY KEY REFERENCES workspace_agents (id) ON DELETE CASCADE,
    relay_url    text NOT NULL CHECK (relay_url ~ '^https?://'),
    secret       text NOT NULL CHECK (length(secret) >= 32),
    connected_at timestamptz NOT NULL
);

-- The connection log: one row per SSH connection or forwarded TCP
-- connection, written when it opens and closed when it ends. Names are
-- copied so that the log reads the same after a rename or a deletion.
CREATE TABLE connection_log (
    id                   uuid PRIMARY KEY,
    type                 text NOT NULL CHECK (type IN ('ssh', 'port_forward', 'app')),
    user_id              uuid NOT NULL REFERENCES users (id),
    username             text NOT NULL,
    workspace_id         uuid NOT NULL REFERENCES workspaces (id),
    workspace_name       text NOT NULL,
    workspace_owner_id   uuid NOT NULL REFERENCES users (id),
    workspace_owner_name text NOT NULL,
    agent_id             uuid NOT NULL,
    agent_name           text NOT NULL,
    client_address       text NOT NULL CHECK (length(client_address) <= 128),
    port                 integer CHECK (port BETWEEN 1 AND 65535),
    started_at           timestamptz NOT NULL,
    ended_at             timestamptz,
    exit_code            integer,
    close_reason         text CHECK (length(close_reason) <= 1024),
    CONSTRAINT connection_log_port_for_forwards CHECK ((type = 'port_forward') = (port IS NOT NULL)),
    CONSTRAINT connection_log_ends_after_start CHECK (ended_at IS NULL OR ended_at >= started_at),
    CONSTRAINT connection_log_reason_when_ended CHECK ((ended_at IS NULL) = (close_reason IS NULL))
);
CREATE INDEX connection_log_started ON connection_log (started_at DESC, id);
CREATE INDEX connection_log_workspace ON connection_log (workspace_id, started_at DESC);
CREATE INDEX connection_log_user ON connection_log (user_id, started_at DESC);
