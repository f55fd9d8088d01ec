# Starting the server under test (signet-server, or spire-server when SERVER_IMPL=spire) and
# talking to it with both CLIs.
# shellcheck shell=bash

TRUST_DOMAIN="${TRUST_DOMAIN:-example.org}"

# write_server_conf <dir> [extra server-block lines]: writes <dir>/server.conf for SERVER_IMPL;
# sets SERVER_CONF, SERVER_SOCK, SERVER_PORT, SERVER_DIR.
write_server_conf() {
    SERVER_DIR="$1"
    local extra="${2:-}"
    mkdir -p "$SERVER_DIR/data"
    SERVER_CONF="$SERVER_DIR/server.conf"
    SERVER_SOCK="$SERVER_DIR/api.sock"
    SERVER_PORT="$(free_port)"
    local datastore
    if [[ "$SERVER_IMPL" == spire ]]; then
        datastore="DataStore \"sql\" {
        plugin_data {
            database_type = \"sqlite3\"
            connection_string = \"$SERVER_DIR/data/datastore.sqlite3\"
        }
    }"
    else
        datastore='DataStore "sled" {
        plugin_data {}
    }'
    fi
    cat >"$SERVER_CONF" <<EOF
server {
    bind_address = "127.0.0.1"
    bind_port = $SERVER_PORT
    socket_path = "$SERVER_SOCK"
    trust_domain = "$TRUST_DOMAIN"
    data_dir = "$SERVER_DIR/data"
    log_level = "DEBUG"
$extra
}

plugins {
    $datastore

    KeyManager "disk" {
        plugin_data {
            keys_path = "$SERVER_DIR/keys.json"
        }
    }

    NodeAttestor "join_token" {
        plugin_data {}
    }
}
EOF
    info "server config ($SERVER_IMPL) at $SERVER_CONF:"
    sed 's/^/  | /' "$SERVER_CONF"
}

# start_server [name]: starts the server under test with $SERVER_CONF as background process
# <name> (default "server") and waits until its admin socket $SERVER_SOCK answers GetBundle
# through the real spire-server CLI.
start_server() {
    local name="${1:-server}"
    case "$SERVER_IMPL" in
        signet)
            require_bin "$SIGNET_SERVER"
            start_bg "$name" "$SIGNET_SERVER" run --config "$SERVER_CONF"
            ;;
        spire)
            start_bg "$name" "$SPIRE_SERVER" run -config "$SERVER_CONF"
            ;;
        *) fail "unknown SERVER_IMPL=$SERVER_IMPL" ;;
    esac
    wait_for_socket "$name" "$SERVER_SOCK" 60
    local deadline=$((SECONDS + 60))
    until "$SPIRE_SERVER" bundle show -socketPath "$SERVER_SOCK" >"$OUT/ready.out" 2>"$OUT/ready.err"; do
        is_running "$name" || fail "$name exited during startup"
        if ((SECONDS >= deadline)); then
            fail "$name did not answer 'spire-server bundle show' within 60s: $(cat "$OUT/ready.err")"
        fi
        sleep 0.5
    done
    info "ok: $name answers on $SERVER_SOCK"
}

# spire_cli <name> <subcommand words and flags...>: the real spire-server CLI against the server.
spire_cli() {
    local name="$1"; shift
    must "$name" "$SPIRE_SERVER" "$@" -socketPath "$SERVER_SOCK"
}
spire_cli_try() {
    local name="$1"; shift
    run_cli "$name" "$SPIRE_SERVER" "$@" -socketPath "$SERVER_SOCK"
}

# own_cli <name> <signet-server CLI words and --long-flags...>: the server's own CLI.
# With SERVER_IMPL=spire the same call is translated to spire-server flags.
own_cli() {
    local name="$1"; shift
    if [[ "$SERVER_IMPL" == signet ]]; then
        must "$name" "$SIGNET_SERVER" "$@" --socket-path "$SERVER_SOCK"
        return
    fi
    local args=() a
    for a in "$@"; do
        case "$a" in
            --spiffe-id) args+=(-spiffeID) ;;
            --parent-id) args+=(-parentID) ;;
            --entry-id) args+=(-entryID) ;;
            --selector) args+=(-selector) ;;
            --x509-svid-ttl) args+=(-x509SVIDTTL) ;;
            --jwt-svid-ttl) args+=(-jwtSVIDTTL) ;;
            --store-svid) args+=(-storeSVID) ;;
            --*) # --federates-with -> -federatesWith, --id -> -id
                args+=("-$(sed -E 's/^--//; s/-([a-z])/\U\1/g' <<<"$a")") ;;
            *) args+=("$a") ;;
        esac
    done
    must "$name" "$SPIRE_SERVER" "${args[@]}" -socketPath "$SERVER_SOCK"
}

# Fingerprints (SHA-256, one per line, sorted) of every certificate in a PEM file.
pem_fingerprints() {
    local file="$1" tmp
    tmp="$(mktemp -d "$WORKDIR/pem.XXXX")"
    awk -v d="$tmp" '/-----BEGIN CERTIFICATE-----/ { n++; f = sprintf("%s/%03d.pem", d, n) } n { print > f } /-----END CERTIFICATE-----/ { close(f) }' "$file"
    local c
    for c in "$tmp"/*.pem; do
        [[ -e "$c" ]] || continue
        openssl x509 -in "$c" -noout -fingerprint -sha256 | sed 's/^.*=//'
    done | sort
}

pem_count() { grep -c -- '-----BEGIN CERTIFICATE-----' "$1" || true; }

# write_agent_conf <dir> <bootstrap bundle pem>: a spire-agent config pointing at the server under
# test (join_token node attestor, unix workload attestor); sets AGENT_CONF and AGENT_SOCK.
write_agent_conf() {
    local dir="$1" bundle="$2"
    mkdir -p "$dir/data"
    AGENT_CONF="$dir/agent.conf"
    AGENT_SOCK="$dir/agent.sock"
    cat >"$AGENT_CONF" <<EOC
agent {
    data_dir = "$dir/data"
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = $SERVER_PORT
    socket_path = "$AGENT_SOCK"
    trust_bundle_path = "$bundle"
    trust_domain = "$TRUST_DOMAIN"
}

plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
EOC
    info "agent config at $AGENT_CONF:"
    sed 's/^/  | /' "$AGENT_CONF"
}
