-- Pool insight reads the claim attempts and prebuild events of a window
-- (up to 90 days back from now), across every template and preset: by
-- time, from these indexes, not by walking each preset's own.
CREATE INDEX claim_attempts_at ON claim_attempts (at);
CREATE INDEX prebuild_events_at ON prebuild_events (at);
