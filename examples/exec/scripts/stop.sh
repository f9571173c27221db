#!/bin/sh
set -eu
. "$(dirname "$0")/common.sh"
stop_processes
save_state
