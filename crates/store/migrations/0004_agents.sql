-- Workspace agents: the process inside a workspace that connects back with
-- its own token.

CREATE TABLE workspace_agents (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id       uuid NOT NULL REFERENCES workspaces (id),
    name               text NOT NULL CHECK (name ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    -- `<token_id>-<secret>`; only the SHA-256 of the secret is stored. Null:
    -- no token issued yet, or revoked (the workspace was deleted).
    token_id           text UNIQUE CHECK (token_id ~ '^[A-Za-z0-9]{10}$'),
    hashed_secret      bytea CHECK (octet_length(hashed_secret) = 32),
    lifecycle_state    text NOT NULL DEFAULT 'created'
                       CHECK (lifecycle_state IN ('created', 'starting', 'ready', 'start_error', 'shutting_down', 'off')),
    -- The owner the agent last said it serves.
    serving_owner_id   uuid REFERENCES users (id),
    first_connected_at timestamptz,
    last_connected_at  timestamptz,
    disconnected_at    timestamptz,
    started_at         timestamptz,
    ready_at           timestamptz,
    logs_length        integer NOT NULL DEFAULT 0 CHECK (logs_length >= 0),
    logs_overflowed    boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name),
    CONSTRAINT workspace_agents_token_whole CHECK ((token_id IS NULL) = (hashed_secret IS NULL)),
    CONSTRAINT workspace_agents_ready_has_time CHECK (lifecycle_state <> 'ready' OR ready_at IS NOT NULL)
);

CREATE TABLE workspace_agent_logs (
    id         bigserial PRIMARY KEY,
    agent_id   uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    level      text NOT NULL CHECK (level IN ('trace', 'debug', 'info', 'warn', 'error')),
    output     text NOT NULL
);
CREATE INDEX workspace_agent_logs_agent ON workspace_agent_logs (agent_id, id);
