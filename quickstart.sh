#!/usr/bin/env bash
# Signet quick start: builds Signet, starts a server and an agent on embedded defaults (sled
# store, self-signed CA, a join token made on the fly, a demo entry for your uid), shows a
# workload getting its identity, then keeps both running until Ctrl-C.
#
#   ./quickstart.sh
#
# Everything lives under ./.data/quickstart (recreated on every run). Set
# QUICKSTART_ONESHOT=1 to stop right after the first fetch (used by the tests).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
data="$root/.data/quickstart"
server_sock="$data/server/api.sock"
agent_sock="$data/agent/api.sock"
agent_admin="$data/agent-admin/api.sock"
server="${CARGO_TARGET_DIR:-$root/target}/debug/signet-server"
agent="${CARGO_TARGET_DIR:-$root/target}/debug/signet-agent"
td="example.org"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

say "Building Signet (cargo build --workspace --bins)"
cargo build --workspace --bins

rm -rf "$data"
mkdir -p "$data/server" "$data/agent"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 8081)

cat > "$data/server.conf" <<CONF
server {
    bind_address = "127.0.0.1"
    bind_port = "$port"
    socket_path = "$server_sock"
    trust_domain = "$td"
    data_dir = "$data/server"
    log_level = "INFO"
}
plugins {
    DataStore "sled" {
        plugin_data {}
    }
    KeyManager "disk" {
        plugin_data {}
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
}
CONF

pids=()
cleanup() {
    trap - INT TERM EXIT
    if [[ ${#pids[@]} -gt 0 ]]; then
        say "Stopping agent and server"
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
}
trap cleanup INT TERM EXIT

say "Starting signet-server (trust domain $td, agent API 127.0.0.1:$port, log $data/server.log)"
"$server" run --config "$data/server.conf" >"$data/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    "$server" healthcheck --socket-path "$server_sock" >/dev/null 2>&1 && break
    sleep 0.1
done
"$server" healthcheck --socket-path "$server_sock"

"$server" bundle show --socket-path "$server_sock" >"$data/bundle.pem"
token=$("$server" token generate --socket-path "$server_sock" --ttl 600 | sed -n 's/^Token: //p')
agent_id="spiffe://$td/spire/agent/join_token/$token"
say "Registering spiffe://$td/demo for uid $(id -u) under $agent_id"
"$server" entry create --socket-path "$server_sock" \
    --parent-id "$agent_id" --spiffe-id "spiffe://$td/demo" --selector "unix:uid:$(id -u)"

cat > "$data/agent.conf" <<CONF
agent {
    data_dir = "$data/agent"
    log_level = "INFO"
    server_address = "127.0.0.1"
    server_port = "$port"
    socket_path = "$agent_sock"
    admin_socket_path = "$agent_admin"
    trust_domain = "$td"
    trust_bundle_path = "$data/bundle.pem"
}
plugins {
    KeyManager "disk" {
        plugin_data {
            directory = "$data/agent"
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
CONF

say "Starting signet-agent with a one-time join token (log $data/agent.log)"
"$agent" run --config "$data/agent.conf" --join-token "$token" >"$data/agent.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    "$agent" api fetch x509 --socket-path "$agent_sock" --silent >/dev/null 2>&1 && break
    sleep 0.1
done

say "A workload (this shell, uid $(id -u)) fetches its identity:"
"$agent" api fetch x509 --socket-path "$agent_sock"

say "The mTLS checklist for this shell (signet-agent doctor) and the server (signet-server doctor):"
"$agent" doctor --config "$data/agent.conf" --peer "spiffe://$td/demo"
"$server" doctor --socket-path "$server_sock" --spiffe-id "spiffe://$td/demo"

if [[ "${QUICKSTART_ONESHOT:-}" == "1" ]]; then
    exit 0
fi

cat <<MSG

Signet is running. Try, in another terminal:
    $agent api fetch x509 --socket-path $agent_sock
    $agent api fetch jwt --audience demo --socket-path $agent_sock
    $agent api watch --socket-path $agent_sock
    $agent doctor --config $data/agent.conf --peer spiffe://$td/demo
    SPIFFE_ENDPOINT_SOCKET=unix://$agent_sock <any go-spiffe or spiffe-crate program>
    $server entry show --socket-path $server_sock
Press Ctrl-C to stop both.
MSG
wait "${pids[@]}"
