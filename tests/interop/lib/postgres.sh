# A throwaway PostgreSQL cluster for a scenario, from Debian's server binaries (`.ci/run`
# installs `postgresql` if `initdb` is missing). Source after lib/common.sh.
# shellcheck shell=bash

# start_postgres: initdb into $WORKDIR/pg and starts it as background process "pg" on a free
# 127.0.0.1 port (trust authentication, fsync off). As root, initdb and postgres run as the
# package's postgres user (they refuse root), and $WORKDIR is opened to other uids (0755).
# Sets PG_BIN, PSQL, PG_PORT and PG_CS (the connection string of database "postgres" as user
# postgres, no TLS).
start_postgres() {
    PG_BIN="$(dirname "$(command -v initdb 2>/dev/null || compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1 || true)")"
    [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/postgres" ]] || fail "PostgreSQL server binaries not found (apt-get install postgresql)"
    PSQL="$(command -v psql || echo "$PG_BIN/psql")"
    local dir="$WORKDIR/pg" as_pg=()
    mkdir -p "$dir/sock"
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || fail "running as root without a postgres user"
        chown -R postgres "$dir"
        chmod 755 "$WORKDIR"
        as_pg=(setpriv --reuid postgres --regid "$(id -g postgres)" --clear-groups --)
    fi
    must initdb "${as_pg[@]}" "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync
    PG_PORT="$(free_port)"
    start_bg pg "${as_pg[@]}" "$PG_BIN/postgres" -D "$dir/data" -p "$PG_PORT" -k "$dir/sock" \
        -c listen_addresses=127.0.0.1 -c fsync=off
    wait_for_log pg "database system is ready to accept connections" 60
    PG_CS="dbname=postgres user=postgres host=127.0.0.1 port=$PG_PORT sslmode=disable"
}

# psql_do <name> <database> <sql>: runs the SQL through psql as user postgres (must succeed).
psql_do() {
    must "$1" "$PSQL" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$2" -v ON_ERROR_STOP=1 -c "$3"
}

# use_postgres_datastore <server.conf> <connection string>: replaces the config's DataStore block
# (write_server_conf's "sled" or "sql" sqlite3) by `DataStore "sql"` with database_type
# "postgres" on that database.
use_postgres_datastore() {
    python3 - "$1" "$2" <<'PY' || fail "no DataStore block in $1"
import re, sys
text = open(sys.argv[1]).read()
block = 'DataStore "sql" {\n        plugin_data {\n            database_type = "postgres"\n            connection_string = "%s"\n        }\n    }' % sys.argv[2]
text, n = re.subn(r'DataStore "(sql|sled)" \{.*?\n    \}', lambda m: block, text, flags=re.S)
assert n == 1
open(sys.argv[1], "w").write(text)
PY
    sed 's/^/  | /' "$1"
}
