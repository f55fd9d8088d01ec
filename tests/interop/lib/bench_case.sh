# One case of bench.sh, run in its own process: BENCH_IMPL (spire or signet) picks the server
# and agent; figures are printed as "result <name> <value> <unit>" lines.
# shellcheck shell=bash

SERVER_IMPL="$BENCH_IMPL"
AGENT_IMPL="$BENCH_IMPL"
# shellcheck source=tests/interop/lib/common.sh
source "$here/lib/common.sh"
# shellcheck source=tests/interop/lib/server.sh
source "$here/lib/server.sh"
# shellcheck source=tests/interop/lib/agent.sh
source "$here/lib/agent.sh"

LOADCLIENT="$SPIRE_BIN/loadclient"
# The bench's workload: this process's group (the burst's probe runs as another group).
WORKLOAD_SELECTOR="unix:gid:$(id -g)"
# Entries nobody attests: they load the server without being minted by the agent.
NOBODY="spiffe://$TRUST_DOMAIN/spire/agent/join_token/nobody"

emit() { echo "result $1 $2 $3"; }

# load <loadclient args...>: runs the load client; its figures go to stdout.
load() { "$LOADCLIENT" "$@"; }

rss_mb() { # rss_mb <pid>
    awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}
rss_of() { # rss_of <process name> <result name>
    local var="PID_$1"
    emit "$2" "$(rss_mb "${!var}")" MB
}

now_ns() { date +%s%N; }

# bench_server: a fresh server at INFO (as deployed), its bundle, a join token and the ID the
# agent will have; sets BUNDLE, TOKEN, AGENT_ID.
bench_server() {
    # SPIRE limits each agent to 500 signatures/s of each kind by default; the bench measures
    # how fast it signs, so that limit is off unless BENCH_SPIRE_RATELIMIT=1 (signet-server has
    # no such limit and ignores the key).
    local extra='    ratelimit {
        signing = false
    }'
    [[ "${BENCH_SPIRE_RATELIMIT:-}" == 1 ]] && extra=""
    write_server_conf "$WORKDIR/server" "$extra" >&2
    sed -i 's/log_level = "DEBUG"/log_level = "INFO"/' "$SERVER_CONF"
    start_server >&2
    BUNDLE="$WORKDIR/bundle.pem"
    "$SPIRE_SERVER" bundle show -socketPath "$SERVER_SOCK" >"$BUNDLE"
    TOKEN="$("$SPIRE_SERVER" token generate -ttl 3600 -socketPath "$SERVER_SOCK" | awk '/^Token:/ { print $2 }')"
    [[ -n "$TOKEN" ]] || fail "no join token"
    AGENT_ID="spiffe://$TRUST_DOMAIN/spire/agent/join_token/$TOKEN"
}

bench_agent() {
    write_agent_conf "$WORKDIR/agent" "$BUNDLE" >&2
    sed -i 's/log_level = "DEBUG"/log_level = "INFO"/' "$AGENT_CONF"
    # spire-agent keeps at most 1000 X509-SVIDs by default and, with more entries for one
    # workload, evicts and re-mints them forever: room for the largest scale size, in both.
    sed -i 's/^agent {$/agent {\n    x509_svid_cache_max_size = 20000/' "$AGENT_CONF"
    # 1000 concurrent clients of one uid: above signet-agent's default per-uid connection
    # limit (256; spire-agent has none).
    if [[ "$AGENT_IMPL" == signet ]]; then
        sed -i 's/^agent {$/agent {\n    workload_api_max_conns_per_uid = 2048/' "$AGENT_CONF"
    fi
    start_agent agent "$TOKEN" >&2
}

# restart_server <result name>: stops the server, starts it again and times it to the first
# answer of its admin API.
restart_server() {
    stop_bg server
    local t0
    t0="$(now_ns)"
    case "$SERVER_IMPL" in
        signet) start_bg server "$SIGNET_SERVER" run --config "$SERVER_CONF" >&2 ;;
        spire) start_bg server "$SPIRE_SERVER" run -config "$SERVER_CONF" >&2 ;;
    esac
    load ready -socket "$SERVER_SOCK" -since "$t0" -name "$1"
}

can_drop_caches() { [[ -w /proc/sys/vm/drop_caches ]]; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

case_main() {
    bench_server
    local addr="unix://$WORKDIR/agent/agent.sock"
    load create -socket "$SERVER_SOCK" -n 1 -parent "$AGENT_ID" -prefix w -selector "$WORKLOAD_SELECTOR" -name setup >/dev/null
    load create -socket "$SERVER_SOCK" -n 1 -parent "$AGENT_ID" -prefix probe -selector unix:gid:54321 -name setup >/dev/null
    bench_agent
    load watch -addr "$addr" -want 1 -timeout 60s -name first >/dev/null
    sleep 2
    rss_of server rss_idle_server
    rss_of agent rss_idle_agent

    load fetch -addr "$addr" -clients 1 -rounds 300 -name fetch1
    load fetch -addr "$addr" -clients 100 -rounds 10 -name fetch100
    load fetch -addr "$addr" -clients 1000 -rounds 3 -name fetch1000
    load jwt -addr "$addr" -subject "spiffe://$TRUST_DOMAIN/w/0" -clients 16 -for 5s -name jwt
    load mint -socket "$SERVER_SOCK" -clients 8 -for 5s -trust-domain "$TRUST_DOMAIN" -name mint
    load propagation -addr "$addr" -socket "$SERVER_SOCK" -n 10 -parent "$AGENT_ID" -prefix prop \
        -selector "$WORKLOAD_SELECTOR" -name propagation

    # 1000 new entries for the running agent, while a workload of another group (one entry of
    # its own) keeps asking for its SVID on new connections.
    local stop="$WORKDIR/probe.stop" probe_pid=""
    if can_change_gid; then
        as_other_gid "$LOADCLIENT" probe -addr "$addr" -stop "$stop" -name burst_probe >"$WORKDIR/probe.out" &
        probe_pid=$!
        sleep 1
    fi
    load burst -addr "$addr" -socket "$SERVER_SOCK" -n 1000 -parent "$AGENT_ID" -prefix burst \
        -selector "$WORKLOAD_SELECTOR" -name burst
    if [[ -n "$probe_pid" ]]; then
        touch "$stop"
        wait "$probe_pid" || fail "the probe failed"
        cat "$WORKDIR/probe.out"
    fi
    sleep 2
    rss_of agent rss_agent_burst

    load create -socket "$SERVER_SOCK" -n 10000 -parent "$NOBODY" -prefix other -selector unix:uid:99999 -name create
    sleep 1
    rss_of server rss_server_10k
    stop_bg agent
    restart_server restart10k
}

case_scale() {
    local n="$1"
    bench_server
    load create -socket "$SERVER_SOCK" -n "$n" -parent "$AGENT_ID" -prefix s -selector "$WORKLOAD_SELECTOR" -name setup >/dev/null
    # spire-server answers agents from a cache it refreshes every 5 s: let it hold the entries,
    # or the agent's first sync would find none of them.
    sleep 6
    local t0
    t0="$(now_ns)"
    bench_agent
    load watch -addr "unix://$AGENT_SOCK" -want "$n" -since "$t0" -timeout 600s -name "sync_$n"
    load jwt -addr "unix://$AGENT_SOCK" -subject "spiffe://$TRUST_DOMAIN/s/0" -clients 16 -for 3s -name "jwt_$n"
    sleep 1
    rss_of agent "rss_agent_$n"
}

case_100k() {
    bench_server
    if [[ "$SERVER_IMPL" == spire ]]; then
        load create -socket "$SERVER_SOCK" -n 1 -parent "$NOBODY" -prefix big -selector unix:uid:99999 -name setup >/dev/null
        stop_bg server
        python3 "$here/lib/bench_spire_sqlite.py" "$SERVER_DIR/data/datastore.sqlite3" "$BENCH_BIG" >&2
    else
        load create -socket "$SERVER_SOCK" -n "$BENCH_BIG" -parent "$NOBODY" -prefix big -selector unix:uid:99999 -name create100k
    fi
    restart_server restart100k_warm
    sleep 1
    rss_of server rss_server_100k_start
    load list -socket "$SERVER_SOCK" -page 500 -name list100k
    sleep 1
    rss_of server rss_server_100k
    emit disk100k "$(du -sm "$SERVER_DIR/data" | cut -f1)" MB
    if can_drop_caches; then
        stop_bg server
        drop_caches
        restart_server restart100k_cold
    fi
}

bench_case() {
    local group="$1"; shift
    "case_$group" "$@"
}
