-- The Terraform backend (issue 16): the drift check and build timings.
--
-- The drift check: right after a prebuild of a Terraform
-- template becomes eligible, a job of its own plans (never applies) what
-- claiming it would do, and records which resources the claim would
-- replace — once per preset (a preset belongs to one template version),
-- again only after the preset is invalidated.
--
-- It is a job on the queue like any other (priority 1, prebuild work,
-- initiated by the prebuilds user, with the prebuild's build's tags), so any
-- daemon that could build the prebuild can check it, and it survives a
-- restart like any job.

ALTER TABLE provisioner_jobs DROP CONSTRAINT provisioner_jobs_type_check;
ALTER TABLE provisioner_jobs ADD CONSTRAINT provisioner_jobs_type_check
    CHECK (type IN ('template_version_import', 'workspace_build', 'prebuild_drift_check'));

-- The latest check of each preset. `replaced` is set when the check's job
-- succeeds (empty: a claim replaces nothing); a failed job is told by the
-- job's own status and error.
CREATE TABLE prebuild_drift_checks (
    preset_id    uuid PRIMARY KEY REFERENCES template_version_presets (id) ON DELETE CASCADE,
    -- The prebuild whose claim was planned.
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    job_id       uuid NOT NULL UNIQUE REFERENCES provisioner_jobs (id),
    created_at   timestamptz NOT NULL,
    -- Addresses of the resources a claim would replace.
    replaced     text[],
    completed_at timestamptz,
    CHECK ((replaced IS NULL) = (completed_at IS NULL))
);

-- What a drift check's daemon gets when it takes the job is in the queue's
-- take (`take_provisioner_jobs`, migration 0028).

-- Build timings (issue 16): how long each stage of a job took, and each
-- action on each resource within it (Terraform's apply_start to
-- apply_complete), as its daemon reported them with the job's end.
CREATE TABLE provisioner_job_timings (
    id         bigserial PRIMARY KEY,
    job_id     uuid NOT NULL REFERENCES provisioner_jobs (id),
    stage      text NOT NULL CHECK (stage IN ('init', 'plan', 'apply')),
    action     text NOT NULL CHECK (action <> ''),
    -- A resource's address; NULL for the whole stage.
    resource   text CHECK (resource <> ''),
    started_at timestamptz NOT NULL,
    ended_at   timestamptz NOT NULL,
    CHECK (ended_at >= started_at)
);
CREATE INDEX provisioner_job_timings_job ON provisioner_job_timings (job_id);
