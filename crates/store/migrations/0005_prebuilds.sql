-- Prebuild reconciliation: site-wide settings, presets whose creations
-- cannot validate, and the history of every prebuild's life (what demand
-- forecasting, replay and cost reports will be built on).

CREATE TABLE prebuild_settings (
    singleton             boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    reconciliation_paused boolean NOT NULL DEFAULT false,
    updated_at            timestamptz NOT NULL DEFAULT now()
);
INSERT INTO prebuild_settings DEFAULT VALUES;

-- A creation that failed parameter validation is never retried (until a new
-- version brings new presets).
ALTER TABLE template_version_presets
    ADD COLUMN validation_error text;

CREATE INDEX workspaces_prebuilds ON workspaces (preset_id)
    WHERE owner_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0' AND NOT deleted;
CREATE INDEX workspace_builds_job ON workspace_builds (job_id);

CREATE TABLE prebuild_events (
    id           bigserial PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    preset_id    uuid NOT NULL REFERENCES template_version_presets (id),
    event        text NOT NULL CHECK (event IN ('created', 'eligible', 'claimed', 'expired', 'deleted')),
    -- Why a prebuild was deleted: surplus, expired, inactive, failed.
    reason       text,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX prebuild_events_workspace ON prebuild_events (workspace_id, event);
CREATE INDEX prebuild_events_preset ON prebuild_events (preset_id, at);
