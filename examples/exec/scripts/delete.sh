#!/bin/sh
set -eu
. "$(dirname "$0")/common.sh"
stop_processes
rm -rf "$home"
echo "removed $home"
: >"$WARMSPACE_STATE_FILE"
