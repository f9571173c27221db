-- A template may require its workspaces to start on its active version: the
-- lifecycle executor's autostart then builds the active version rather than
-- the one of the workspace's latest build.
ALTER TABLE templates ADD COLUMN require_active_version boolean NOT NULL DEFAULT false;
