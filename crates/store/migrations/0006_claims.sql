-- Every claim attempt, hit or miss, with its reason and latency: what hit
-- rates, replay and forecasting are computed from.

CREATE TABLE claim_attempts (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    template_id  uuid NOT NULL REFERENCES templates (id),
    -- The preset the request used or matched; null when none applied.
    preset_id    uuid REFERENCES template_version_presets (id),
    user_id      uuid NOT NULL REFERENCES users (id),
    hit          boolean NOT NULL,
    reason       text CHECK (reason IN ('no_preset', 'no_eligible', 'paused', 'hard_limited', 'backoff',
                                        'parameter_mismatch')),
    workspace_id uuid REFERENCES workspaces (id),
    -- From the request's arrival to the claim (or cold build) being queued.
    latency_ms   double precision NOT NULL CHECK (latency_ms >= 0),
    -- For hits: when the claim transaction was about to commit.
    committed_at timestamptz,
    CONSTRAINT claim_attempts_miss_has_reason CHECK (hit = (reason IS NULL)),
    CONSTRAINT claim_attempts_hit_has_workspace CHECK (NOT hit OR (workspace_id IS NOT NULL AND committed_at IS NOT NULL))
);
CREATE INDEX claim_attempts_preset ON claim_attempts (preset_id, at);
CREATE INDEX claim_attempts_template ON claim_attempts (template_id, at);
