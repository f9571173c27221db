-- Reconciliation reads each preset's history newest first and stops after
-- a few rows, however long the history: the newest creations of a preset
-- (claimed or deleted since, so the prebuild indexes do not hold them), and
-- the failures since the look-back window, reached by time.
CREATE INDEX workspaces_preset_created ON workspaces (preset_id, created_at DESC) WHERE preset_id IS NOT NULL;
CREATE INDEX provisioner_jobs_failed ON provisioner_jobs (completed_at) WHERE status = 'failed' AND NOT interrupted;
CREATE INDEX prebuild_events_agents_not_ready ON prebuild_events (at)
    WHERE event = 'deleted' AND reason = 'agents_not_ready';
