-- Workspace apps opened through the server, in the connection log: which
-- app, and the HTTP status of the latest request of the entry (an entry
-- covers one person's requests to one app from one address while they keep
-- coming; a WebSocket is an entry of its own).
ALTER TABLE connection_log
    ADD COLUMN app         text CHECK (app ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    ADD COLUMN http_status smallint CHECK (http_status BETWEEN 100 AND 599),
    ADD CONSTRAINT connection_log_app_for_apps CHECK ((type = 'app') = (app IS NOT NULL)),
    ADD CONSTRAINT connection_log_http_status_for_apps CHECK (http_status IS NULL OR type = 'app');
-- Finding the entry a new request to an app continues.
CREATE INDEX connection_log_app_sessions ON connection_log (user_id, agent_id, app, client_address, ended_at DESC)
    WHERE type = 'app';
