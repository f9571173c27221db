-- The lifecycle executor: autostart, autostop (deadline, activity bump,
-- max deadline), failure TTL, dormancy and dormant auto-delete of people's
-- workspaces (never of unclaimed prebuilds).

-- Builds the executor queues are initiated by this system user: hidden from
-- listings, cannot log in, and (unlike the prebuilds user) its builds are a
-- person's business, at user priority.
INSERT INTO users (id, username, email, name, login_type, is_system)
VALUES ('0a7b1c3e-5d2f-4e6a-9b8c-1f2e3d4c5b6a', 'lifecycle', 'lifecycle@system.invalid',
        'Lifecycle', 'none', true);

-- A failed start stopped after the template's failure TTL.
ALTER TABLE workspace_builds DROP CONSTRAINT workspace_builds_reason_check;
ALTER TABLE workspace_builds ADD CONSTRAINT workspace_builds_reason_check
    CHECK (reason IN ('initiator', 'autostart', 'autostop', 'dormancy', 'failed_stop', 'failure_ttl',
                      'prebuild', 'claim'));
-- The deadline for which the owner was told "will stop in 30 minutes": once per deadline.
ALTER TABLE workspace_builds ADD COLUMN stop_notice_for timestamptz;

-- The hour (in the owner's time zone) at which the autostop requirement's days begin.
ALTER TABLE templates ADD COLUMN autostop_requirement_hour smallint NOT NULL DEFAULT 0
    CHECK (autostop_requirement_hour BETWEEN 0 AND 23);

-- The zone a person's autostop requirement and zone-less autostart schedules are read in.
ALTER TABLE users ADD COLUMN timezone text NOT NULL DEFAULT 'UTC' CHECK (length(timezone) BETWEEN 1 AND 64);

-- When the executor's last tick ran: an autostart schedule fires for a tick
-- when it fired after this (and after the workspace's latest build).
CREATE TABLE lifecycle_ticks (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_tick_at timestamptz NOT NULL
);

-- What the executor looks at: people's workspaces, not deleted.
CREATE INDEX workspaces_lifecycle ON workspaces (template_id)
    WHERE NOT deleted AND owner_id <> 'c42fdf75-3097-471c-8c33-fb52454d81c0';
