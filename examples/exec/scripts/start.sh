#!/bin/sh
# Launches the stand-in for a workspace (a background process that lives
# until `stop`) and the workspace's agent. Their output goes to files, not to
# this build's log.
set -eu
. "$(dirname "$0")/common.sh"

mkdir -p "$home"
if alive "$pid"; then
    echo "workspace process $pid is already running"
else
    nohup sh -c 'while true; do echo "$(date) $0 from $1"; sleep 5; done' \
        "$WARMSPACE_PARAM_GREETING" "$WARMSPACE_WORKSPACE_NAME" >"$home/workspace.log" 2>&1 &
    pid=$!
    echo "$pid" >"$home/workspace.pid"
    echo "workspace process started (pid $pid) for $WARMSPACE_OWNER_NAME in $home"
fi

# A build that issues the agent a token (re)starts it. A claim issues none:
# the agent already running serves the new owner after re-initialising.
if [ -n "${WARMSPACE_AGENT_TOKEN_MAIN:-}" ]; then
    if alive "$agent_pid"; then
        kill "$agent_pid"
    fi
    WARMSPACE_AGENT_URL="$WARMSPACE_URL" WARMSPACE_AGENT_TOKEN="$WARMSPACE_AGENT_TOKEN_MAIN" \
        nohup "$WARMSPACE_BINARY" agent >"$home/agent.log" 2>&1 &
    agent_pid=$!
    echo "$agent_pid" >"$home/agent.pid"
    echo "agent started (pid $agent_pid)"
fi
save_state
cat >"$WARMSPACE_RESULT_FILE" <<JSON
{"resources": [{"address": "local_process.workspace", "type": "local_process"}]}
JSON
