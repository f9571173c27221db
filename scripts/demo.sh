#!/usr/bin/env bash
# Runs warmspace with its built-in PostgreSQL and both example templates,
# claims a workspace from a warm pool and waits for Ctrl-C. Safe to run again:
# it reuses its data, skips templates whose files have not changed and claims
# the next free name (demo, demo-2, demo-3 …).
#
# Settings (environment):
#   WARMSPACE_DEMO_DIR       everything the demo keeps (default: .demo in the
#                            repository, or /var/lib/warmspace-demo as root)
#   WARMSPACE_HTTP_ADDRESS   where the server listens (default 127.0.0.1:3000)
#   WARMSPACE_BIN            a warmspace binary to use instead of building one
#   WARMSPACE_DEMO_PASSWORD  the admin's password (default warmspace-demo)
#   WARMSPACE_DEMO_POOL_WAIT seconds to wait for each pool to fill (default 120)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

# The demo's own server and session, whatever the caller's shell points at.
unset WARMSPACE_URL WARMSPACE_SESSION_TOKEN WARMSPACE_POSTGRES_URL WARMSPACE_DATA_DIR

if [ -n "${WARMSPACE_BIN:-}" ]; then
    bin=$WARMSPACE_BIN
else
    cargo build --release --locked -p warmspace
    bin=$repo/target/release/warmspace
fi
if [ "$(id -u)" = 0 ]; then
    # The built-in PostgreSQL runs as the postgres user, who cannot reach root's home.
    default_dir=/var/lib/warmspace-demo
else
    default_dir=$repo/.demo
fi
demo_dir=${WARMSPACE_DEMO_DIR:-$default_dir}
address=${WARMSPACE_HTTP_ADDRESS:-127.0.0.1:3000}
url=http://$address
password=${WARMSPACE_DEMO_PASSWORD:-warmspace-demo}
pool_wait=${WARMSPACE_DEMO_POOL_WAIT:-120}

mkdir -p "$demo_dir"
chmod 755 "$demo_dir"
demo_dir=$(cd "$demo_dir" && pwd)
export WARMSPACE_CONFIG_DIR=$demo_dir/client
# Read by the exec and terraform examples (the server passes its environment on):
# each of its workspaces keeps its files and pid files under here.
export WARMSPACE_EXAMPLE_ROOT=$demo_dir/workspaces
log=$demo_dir/server.log

cat <<MSG
The demo keeps everything in $demo_dir:
    data/        the built-in PostgreSQL (users, templates, workspaces)
    client/      the CLI's session
    workspaces/  the files of the exec and terraform examples' workspaces
    server.log   the server's log
To start over: stop the demo (Ctrl-C), then rm -rf $demo_dir
MSG

server=""
cleaned=""

# Stops what the demo started: the exec example's workspaces (their
# processes), then the server and its PostgreSQL. Runs once, on Ctrl-C or on
# any exit.
cleanup() {
    [ -n "$cleaned" ] && return
    cleaned=1
    trap '' INT
    set +e
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        if [ -n "${logged_in:-}" ]; then
            stop_exec_workspaces
        fi
        echo "Stopping the server and its PostgreSQL …"
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
}

# The exec and terraform examples' workspaces are local processes that
# would outlive the server. Pausing reconciliation keeps the pools from being
# refilled while they are emptied (the next run resumes it); prebuilds are
# deleted, the others stopped (`warmspace start NAME` brings one back).
stop_exec_workspaces() {
    echo
    echo "Stopping the workspaces of templates local and terraform (local processes) …"
    "$bin" prebuilds pause >/dev/null && : >"$demo_dir/paused-by-demo" || true
    local name template failed=""
    for template in local terraform; do
        # A prebuild being created now would start its processes after the listing below.
        for _ in $(seq 300); do
            "$bin" list --all --search "template:$template" | awk 'NR > 1 { print $3 }' \
                | grep -qE '^(pending|starting)$' || break
            sleep 0.2
        done
        for name in $("$bin" list --all --search "template:$template status:running" | awk 'NR > 1 { print $1 }'); do
            case $name in
                prebuilds/*) "$bin" delete "$name" -y >/dev/null 2>&1 && echo "    deleted prebuild $name" ;;
                *) "$bin" stop "$name" >/dev/null 2>&1 && echo "    stopped $name" ;;
            esac || failed="$failed $name"
        done
    done
    if [ -n "$failed" ]; then
        echo "Could not stop:$failed. Their processes keep running; their pids are in" >&2
        echo "    $WARMSPACE_EXAMPLE_ROOT/*/workspace.pid and agent.pid (kill them by pid)." >&2
    fi
}

trap 'status=$?; cleanup; exit $status' EXIT
trap 'cleanup; exit 0' INT TERM

# Its own session: a Ctrl-C in the terminal reaches this script, which stops
# the workspaces while the server still runs, and not the server directly.
setsid "$bin" server --http-address "$address" --data-dir "$demo_dir/data" >>"$log" 2>&1 &
server=$!

for _ in $(seq 600); do
    curl -fsS "$url/healthz" >/dev/null 2>&1 && break
    if ! kill -0 "$server" 2>/dev/null; then
        echo "The server exited; the end of its log ($log):" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    sleep 0.1
done
curl -fsS "$url/healthz" >/dev/null 2>&1 || { echo "The server did not answer on $url within 60 s; see $log" >&2; exit 1; }

"$bin" login "$url" --first-user-username admin --first-user-email admin@example.com \
    --first-user-password "$password"
logged_in=1
if [ -e "$demo_dir/paused-by-demo" ]; then
    # The previous run paused reconciliation while it emptied the pool.
    "$bin" prebuilds resume
    rm -f "$demo_dir/paused-by-demo"
fi
"$bin" users list

# Pushing files identical to the active version creates no version (the
# CLI says "unchanged"), so a second run keeps the warm pools.
"$bin" templates push example --directory examples/echo
"$bin" templates presets list example
"$bin" templates push local --directory examples/exec
# The terraform example needs the Terraform CLI (its import fails without it).
terraform=""
if command -v terraform >/dev/null; then
    "$bin" templates push terraform --directory examples/terraform
    terraform=1
else
    echo "No terraform on PATH: skipping the terraform example (see README.md, Set-up)."
fi

# Waits until the active version's preset keeps as many eligible prebuilds as
# it desires; says which pool did not fill in time.
wait_for_pool() {
    local template=$1 preset=$2 row desired="?" eligible="?"
    local deadline=$((SECONDS + pool_wait))
    echo "Waiting for the pool of $template/$preset to fill …"
    while :; do
        row=$("$bin" prebuilds status -o json | tr -d ' \n' | sed 's/},{/}\n{/g' \
            | grep "\"template_name\":\"$template\"" | grep "\"preset_name\":\"$preset\"" \
            | grep '"version_active":true' | head -n 1 || true)
        if [ -n "$row" ]; then
            desired=$(sed -n 's/.*"desired":\([0-9]*\).*/\1/p' <<<"$row")
            eligible=$(sed -n 's/.*"eligible":\([0-9]*\).*/\1/p' <<<"$row")
            if [ "$eligible" -ge "$desired" ]; then
                echo "    $template/$preset: $eligible of $desired eligible"
                return
            fi
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "The pool of $template/$preset did not fill within $pool_wait s ($eligible of $desired eligible);" \
                "see warmspace prebuilds status and $log" >&2
            return
        fi
        sleep 0.2
    done
}
wait_for_pool example us-small
wait_for_pool local default
if [ -n "$terraform" ]; then wait_for_pool terraform default; fi
"$bin" prebuilds status
"$bin" list --all --search owner:prebuilds

# The next free name: demo, then demo-2, demo-3 … on later runs.
name=demo
n=1
while "$bin" show "$name" >/dev/null 2>&1; do
    n=$((n + 1))
    name=demo-$n
done
# The "default" preset keeps a warm workspace: asking for it claims one at once.
"$bin" create "$name" --template local --preset default
"$bin" list
"$bin" prebuilds claims

cat <<MSG

warmspace is running at $url with its built-in PostgreSQL (data in $demo_dir).
Logged in as admin@example.com (password: $password); the session is in $WARMSPACE_CONFIG_DIR.
Templates "example" (examples/echo, simulated), "local" (examples/exec: each
workspace is a local process with a real agent) and, with terraform on PATH,
"terraform" (examples/terraform: the same, made by Terraform) are pushed; all
keep warm pools, and workspace "$name" was claimed from the pool of "local"
(which refilled).
Try, in another terminal:
    export WARMSPACE_CONFIG_DIR=$WARMSPACE_CONFIG_DIR
    $bin show $name
    $bin stop $name && $bin start $name
    $bin create sim --template example --preset us-small
    $bin prebuilds status
    $bin list --all --search owner:prebuilds
    $bin templates versions list example
    $bin templates presets list example -o json
    $bin provisioner jobs list
    $bin users create --username dev --email dev@example.com
    curl -s $url/api/v2/openapi.json | head
    $bin create tf --template terraform    # a claim: see the replaced home in its log
Ctrl-C stops the exec and terraform examples' workspaces (their processes; prebuilds are
deleted, the others stopped), then the server and its PostgreSQL. Running this
script again reuses everything in $demo_dir.
Press Ctrl-C to stop.
MSG
wait "$server"
