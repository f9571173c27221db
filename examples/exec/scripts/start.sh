#!/bin/sh
# Launches the stand-in for a workspace: a background process that lives
# until `stop`. Its output goes to a file, not to this build's log.
set -eu
. "$(dirname "$0")/common.sh"

mkdir -p "$home"
if running; then
    echo "workspace process $pid is already running"
else
    nohup sh -c 'while true; do echo "$(date) $0 from $1"; sleep 5; done' \
        "$WARMSPACE_PARAM_GREETING" "$WARMSPACE_WORKSPACE_NAME" >"$home/workspace.log" 2>&1 &
    pid=$!
    echo "workspace process started (pid $pid) for $WARMSPACE_OWNER_NAME in $home"
fi
printf 'pid=%s\nhome=%s\n' "$pid" "$home" >"$WARMSPACE_STATE_FILE"
cat >"$WARMSPACE_RESULT_FILE" <<JSON
{"resources": [{"address": "local_process.workspace", "type": "local_process"}]}
JSON
