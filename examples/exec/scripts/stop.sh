#!/bin/sh
set -eu
. "$(dirname "$0")/common.sh"
stop_process
printf 'home=%s\n' "$home" >"$WARMSPACE_STATE_FILE"
