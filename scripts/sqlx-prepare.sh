#!/usr/bin/env bash
# Regenerates the offline data of the compile-time checked queries
# (`sqlx::query!`, `query_as!`, `query_scalar!` in crates/store) in `.sqlx/`
# at the workspace root, from scratch. Builds read that data instead of a
# database (`.cargo/config.toml` sets SQLX_OFFLINE=true), so a clean clone
# builds with no database at all.
#
# Run it after changing any checked query or adding a migration, and commit
# `.sqlx/` with the change: an offline build fails on a query whose text has
# no data there. It needs no sqlx-cli: it starts a throwaway PostgreSQL from
# the machine's server binaries (as the `postgres` user when run as root),
# listening only on a Unix socket in a temporary directory, applies
# crates/store/migrations/*.sql in order with psql, then builds the store
# crate online, which makes the sqlx macros write one `query-<hash>.json`
# per query, and replaces `.sqlx/` with what they wrote. The cluster and its
# directory are removed on exit. Running it twice in a row leaves the same
# `.sqlx/`.
#
# The server binaries are found like the built-in PostgreSQL finds them
# (crates/store/src/embedded.rs): $WARMSPACE_POSTGRES_BIN_DIR, else
# `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

has_server() { [ -x "$1/postgres" ] && [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ]; }

find_bin_dir() {
    if [ -n "${WARMSPACE_POSTGRES_BIN_DIR:-}" ]; then
        has_server "$WARMSPACE_POSTGRES_BIN_DIR" && { echo "$WARMSPACE_POSTGRES_BIN_DIR"; return; }
        echo "WARMSPACE_POSTGRES_BIN_DIR=$WARMSPACE_POSTGRES_BIN_DIR holds no PostgreSQL server binaries" >&2
        return 1
    fi
    local dir
    if dir=$(pg_config --bindir 2>/dev/null) && has_server "$dir"; then
        echo "$dir"
        return
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -rn); do
        has_server "$dir" && { echo "$dir"; return; }
    done
    echo "no PostgreSQL server binaries found (looked at \$WARMSPACE_POSTGRES_BIN_DIR, \`pg_config --bindir\`" \
        "and /usr/lib/postgresql/*/bin); on Debian or Ubuntu: apt-get install postgresql" >&2
    return 1
}

bin_dir=$(find_bin_dir)
psql=$bin_dir/psql
[ -x "$psql" ] || psql=$(command -v psql) || { echo "psql not found" >&2; exit 1; }

# PostgreSQL refuses to run as root: as root, the cluster runs as `postgres`.
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || {
        echo "running as root, the cluster runs as the \`postgres\` user, which does not exist" >&2
        exit 1
    }
    as_pg=(runuser -u postgres --)
fi

# A short path: the socket's path must fit in 107 bytes.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/warmspace-sqlx-XXXXXX")
data=$tmp/data
cleanup() {
    local status=$?
    if [ -f "$data/postmaster.pid" ]; then
        (cd "$tmp" && "${as_pg[@]}" "$bin_dir/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1) || true
    fi
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ${#as_pg[@]} -gt 0 ]; then
    chmod 755 "$tmp"
    chown postgres: "$tmp"
    "${as_pg[@]}" test -w "$tmp" || {
        echo "the postgres user cannot reach $tmp (every parent must be searchable by it); set TMPDIR" >&2
        exit 1
    }
fi

# The postgres user may not be able to enter the working directory: run from $tmp.
(
    cd "$tmp"
    "${as_pg[@]}" "$bin_dir/initdb" --pgdata "$data" --username postgres --auth trust --encoding UTF8 \
        --locale C --no-sync >"$tmp/initdb.log" 2>&1 || { cat "$tmp/initdb.log" >&2; exit 1; }
    # No TCP: only a socket in $tmp. Nothing here needs to survive a crash.
    "${as_pg[@]}" "$bin_dir/pg_ctl" -D "$data" -l "$tmp/postgres.log" -w -t 60 \
        -o "-c listen_addresses= -c unix_socket_directories=$tmp -c unix_socket_permissions=0700 -c port=5432 \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null || { cat "$tmp/postgres.log" >&2; exit 1; }
)

unset PGSERVICE PGOPTIONS PGDATABASE PGUSER PGHOST PGPORT
pg() { "$psql" -X -q -v ON_ERROR_STOP=1 -h "$tmp" -p 5432 -U postgres "$@"; }
pg -d postgres -c "CREATE DATABASE warmspace"
for migration in $(ls crates/store/migrations/*.sql | sort); do
    # One transaction per migration, as sqlx's migrator applies them.
    pg -d warmspace --single-transaction -f "$migration"
done

# Written aside and swapped in only once the build succeeds: a failed run
# leaves `.sqlx/` as it was. Starting empty drops the data of queries that
# no longer exist.
out=$tmp/sqlx
mkdir "$out"
# The macros run again only when the crate is recompiled.
touch crates/store/src/*.rs
# Set here, these win over `.cargo/config.toml`'s `[env]` (which sets no `force`).
DATABASE_URL="postgres:///warmspace?host=$tmp&port=5432&user=postgres" SQLX_OFFLINE=false \
    SQLX_OFFLINE_DIR="$out" cargo check --locked -p warmspace-store --all-targets

count=$(find "$out" -name 'query-*.json' | wc -l)
if [ "$count" -eq 0 ]; then
    echo "no query data was written (is SQLX_OFFLINE forced on somewhere?)" >&2
    exit 1
fi
rm -rf "$root/.sqlx"
cp -R "$out" "$root/.sqlx"
echo "wrote the data of $count queries to .sqlx/"
