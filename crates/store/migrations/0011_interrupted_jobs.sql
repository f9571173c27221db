-- A job failed because its daemon stopped under it (a shutdown past its
-- grace, or a lease that ran out), not because of what it ran. Such a
-- failure says nothing about the template: prebuild backoff and the hard
-- limit do not count it.
ALTER TABLE provisioner_jobs
    ADD COLUMN interrupted boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT provisioner_jobs_interrupted_failed CHECK (NOT interrupted OR status IN ('failed', 'canceled'));
