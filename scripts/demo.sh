#!/usr/bin/env bash
# Builds warmspace, runs the server with its built-in PostgreSQL, creates the
# first user and shows what is there. The server stays in the foreground;
# Ctrl-C stops it and its PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p warmspace
bin=$PWD/target/release/warmspace
address=${WARMSPACE_HTTP_ADDRESS:-127.0.0.1:3000}
url=http://$address
password=${WARMSPACE_DEMO_PASSWORD:-warmspace-demo}
export WARMSPACE_CONFIG_DIR=${WARMSPACE_CONFIG_DIR:-$PWD/.demo/client}

"$bin" server --http-address "$address" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server' EXIT INT TERM

for _ in $(seq 600); do
    curl -fsS "$url/healthz" >/dev/null 2>&1 && break
    kill -0 $server 2>/dev/null || { echo "the server exited" >&2; exit 1; }
    sleep 0.1
done

"$bin" login "$url" --first-user-username admin --first-user-email admin@example.com \
    --first-user-password "$password"
"$bin" users list
"$bin" templates push example --directory examples/echo
"$bin" templates presets list example
"$bin" templates push local --directory examples/exec

# Both examples keep warm pools (presets "us-small" and "default"): watch them fill.
for _ in $(seq 150); do
    "$bin" prebuilds status -o json | tr -d ' \n' | grep -q '"template_name":"local".*"eligible":1' && break
    sleep 0.2
done
"$bin" prebuilds status
"$bin" list --all --search owner:prebuilds

# Asking for what the "default" preset holds claims its warm workspace at once.
"$bin" show demo >/dev/null 2>&1 || "$bin" create demo --template local --parameter greeting=hello
"$bin" list
"$bin" prebuilds claims

cat <<MSG

warmspace is running at $url with its built-in PostgreSQL.
Logged in as admin@example.com (password: $password); the session is in $WARMSPACE_CONFIG_DIR.
Templates "example" (examples/echo, simulated) and "local" (examples/exec: each
workspace is a local process with a real agent) are pushed; both keep warm pools,
and workspace "demo" was claimed from the pool of "local" (which refilled).
Try, in another terminal:
    export WARMSPACE_CONFIG_DIR=$WARMSPACE_CONFIG_DIR
    $bin show demo
    $bin stop demo && $bin start demo
    $bin create sim --template example --preset us-small
    $bin prebuilds status
    $bin list --all --search owner:prebuilds
    $bin templates versions list example
    $bin templates presets list example -o json
    $bin provisioner jobs list
    $bin users create --username dev --email dev@example.com
    curl -s $url/api/v2/openapi.json | head
Press Ctrl-C to stop the server and its PostgreSQL.
MSG
wait $server
