# Where a workspace keeps its files, and the processes recorded in the state
# file the server hands from build to build.
home="${WARMSPACE_EXAMPLE_ROOT:-${TMPDIR:-/tmp}/warmspace-example}/$WARMSPACE_WORKSPACE_ID"
pid=""
agent_pid=""
if [ -s "$WARMSPACE_STATE_FILE" ]; then
    pid=$(sed -n 's/^pid=//p' "$WARMSPACE_STATE_FILE")
    agent_pid=$(sed -n 's/^agent_pid=//p' "$WARMSPACE_STATE_FILE")
fi

alive() {
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null
}

save_state() {
    printf 'pid=%s\nagent_pid=%s\nhome=%s\n' "$pid" "$agent_pid" "$home" >"$WARMSPACE_STATE_FILE"
}

stop_processes() {
    for p in "$agent_pid" "$pid"; do
        if alive "$p"; then
            kill "$p"
            echo "stopped process $p"
        fi
    done
    pid=""
    agent_pid=""
}
