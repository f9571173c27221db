-- When template admins were last told of each preset's trouble, by the
-- server's clock: failed creations are told in one digest per preset at most
-- once an hour, reaching the hard limit once per run of failures. One row per
-- preset that ever had trouble, read and written by its primary key.
CREATE TABLE prebuild_notices (
    preset_id              uuid PRIMARY KEY REFERENCES template_version_presets (id) ON DELETE CASCADE,
    failures_notified_at   timestamptz,
    hard_limit_notified_at timestamptz
);
