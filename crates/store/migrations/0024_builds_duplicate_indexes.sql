-- Two indexes on workspace_builds repeat a unique constraint's index, and
-- every build inserted (each job queued, each claim) and every build update
-- that cannot stay on its page wrote all of them (issue 12):
-- `workspace_builds_job` is `job_id`'s UNIQUE index again, and
-- `workspace_builds_latest` is the UNIQUE (workspace_id, build_number)
-- index in the other direction, which a B-tree reads backwards just as well.
DROP INDEX workspace_builds_job;
DROP INDEX workspace_builds_latest;
