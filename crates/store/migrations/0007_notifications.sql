-- The inbox: per-user notifications, read in the UI or with
-- `warmspace notifications`.

CREATE TABLE notifications (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      text NOT NULL,
    content    text NOT NULL,
    -- A short machine-readable kind such as 'prebuild_resources_replaced'.
    kind       text NOT NULL CHECK (kind ~ '^[a-z0-9]+(_[a-z0-9]+)*$'),
    -- An optional link-like target, e.g. a workspace id.
    target_id  uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at    timestamptz
);
-- A user's inbox, newest first.
CREATE INDEX notifications_user ON notifications (user_id, created_at DESC);
-- The unread count and the unread-only listing, without scanning what was read.
CREATE INDEX notifications_user_unread ON notifications (user_id, created_at DESC) WHERE read_at IS NULL;
