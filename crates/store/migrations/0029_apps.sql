-- Apps and dev containers (issue 17). A template version's agents declare
-- them (kept as the manifest wrote them, beside the agent's startup script
-- and env); the workspace's agents report each app's health, statuses about
-- apps (a bounded history, pruned by the insert that overflows it) and each
-- dev container's state.

ALTER TABLE template_version_agents
    ADD COLUMN apps          jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(apps) = 'array'),
    ADD COLUMN devcontainers jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(devcontainers) = 'array');

-- An app's health as its agent last reported it. No row: the agent has not
-- reported since it started (`initializing`, or `disabled` without a check).
CREATE TABLE workspace_agent_app_health (
    agent_id   uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    app        text NOT NULL CHECK (app ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    health     text NOT NULL CHECK (health IN ('disabled', 'initializing', 'healthy', 'unhealthy')),
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (agent_id, app)
);

-- What something in the workspace said it is doing in an app, newest last.
CREATE TABLE workspace_app_statuses (
    id         bigserial PRIMARY KEY,
    agent_id   uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    app        text NOT NULL CHECK (app ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    state      text NOT NULL CHECK (state IN ('working', 'idle', 'complete', 'failure')),
    message    text NOT NULL CHECK (char_length(message) <= 1024),
    uri        text CHECK (char_length(uri) BETWEEN 1 AND 2048),
    created_at timestamptz NOT NULL
);
-- An app's latest statuses, and the pruning of its oldest.
CREATE INDEX workspace_app_statuses_app ON workspace_app_statuses (agent_id, app, id DESC);

-- A dev container's state as its agent last reported it.
CREATE TABLE workspace_agent_devcontainers (
    agent_id   uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (name ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    state      text NOT NULL CHECK (state IN ('starting', 'running', 'error')),
    error      text CHECK (char_length(error) <= 4096),
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (agent_id, name),
    CONSTRAINT workspace_agent_devcontainers_error_when_failed CHECK ((state = 'error') = (error IS NOT NULL))
);
