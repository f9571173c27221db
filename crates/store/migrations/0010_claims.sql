-- A miss whose preset keeps no pool is `no_pool`, no longer `no_preset`.
ALTER TABLE claim_attempts DROP CONSTRAINT claim_attempts_reason_check;
ALTER TABLE claim_attempts ADD CONSTRAINT claim_attempts_reason_check
    CHECK (reason IN ('no_preset', 'no_pool', 'no_eligible', 'paused', 'hard_limited', 'backoff',
                      'parameter_mismatch'));
