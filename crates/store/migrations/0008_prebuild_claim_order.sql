-- A claim takes a preset's oldest eligible prebuild. Walking the preset's
-- unclaimed prebuilds in that order straight from an index lets the claim
-- stop at the first one it can lock, instead of sorting the whole pool.
-- It serves everything the narrower index served too.
CREATE INDEX workspaces_prebuilds_by_age ON workspaces (preset_id, created_at, id)
    WHERE owner_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0' AND NOT deleted;
DROP INDEX workspaces_prebuilds;
