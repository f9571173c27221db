-- Prebuilds whose agents never become ready are failures after this long
-- (from the end of their start build), and are replaced.
ALTER TABLE templates
    ADD COLUMN agent_ready_timeout_ms bigint NOT NULL DEFAULT 600000 CHECK (agent_ready_timeout_ms > 0);

-- A preset's typical build-to-eligible time is read from its prebuilds'
-- `created` and `eligible` events, newest first.
CREATE INDEX prebuild_events_preset_event ON prebuild_events (preset_id, event, at DESC);
