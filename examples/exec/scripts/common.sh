# Where a workspace keeps its files, and the process recorded in the state file.
home="${WARMSPACE_EXAMPLE_ROOT:-${TMPDIR:-/tmp}/warmspace-example}/$WARMSPACE_WORKSPACE_ID"
pid=""
if [ -s "$WARMSPACE_STATE_FILE" ]; then
    pid=$(sed -n 's/^pid=//p' "$WARMSPACE_STATE_FILE")
fi

running() {
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

stop_process() {
    if running; then
        kill "$pid"
        echo "stopped workspace process $pid"
    else
        echo "no workspace process running"
    fi
}
