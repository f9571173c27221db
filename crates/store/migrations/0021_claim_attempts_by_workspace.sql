-- How each workspace on the dashboard was made (claimed in N ms, or built
-- cold and why) is read by workspace: without this, every listing scanned
-- every claim attempt ever recorded.
CREATE INDEX claim_attempts_workspace ON claim_attempts (workspace_id) WHERE workspace_id IS NOT NULL;
