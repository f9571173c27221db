-- The lives of prebuilds that overlap a window [since, until], read by pool
-- insight (from their `created` event) and by the dashboard's pool history
-- (from their `eligible` event): one definition for both. A life runs from
-- the prebuild's first `starting` event to its first `claimed`, `deleted` or
-- `expired` one (open while it has none). Only rows of the window are read:
-- the prebuilds with an event in it (by `prebuild_events_at`) and those alive
-- now (by `workspaces_prebuilds`), each then by `prebuild_events_workspace`.
-- A plain SQL function with one SELECT: the planner inlines it into the
-- query that calls it.
CREATE FUNCTION prebuild_lives(since timestamptz, until timestamptz, starting text)
RETURNS TABLE (workspace_id uuid, preset_id uuid, started_at timestamptz, ended_at timestamptz)
LANGUAGE sql STABLE AS $$
    WITH ids AS (
        SELECT e.workspace_id FROM prebuild_events e WHERE e.at >= since AND e.at <= until
        UNION
        SELECT w.id FROM workspaces w
        WHERE w.owner_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0' AND NOT w.deleted AND w.preset_id IS NOT NULL)
    SELECT ids.workspace_id, s.preset_id, s.at, x.ended_at
    FROM ids
    CROSS JOIN LATERAL (SELECT e.preset_id, e.at FROM prebuild_events e
                        WHERE e.workspace_id = ids.workspace_id AND e.event = starting
                        ORDER BY e.at LIMIT 1) s
    CROSS JOIN LATERAL (SELECT min(e.at) AS ended_at FROM prebuild_events e
                        WHERE e.workspace_id = ids.workspace_id AND e.event IN ('claimed', 'deleted', 'expired')) x
    WHERE s.at <= until AND (x.ended_at IS NULL OR x.ended_at >= since)
$$;
