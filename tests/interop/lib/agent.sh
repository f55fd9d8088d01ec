# Starting the agent under test (signet-agent, or spire-agent when AGENT_IMPL=spire) and the
# go-spiffe checker (bin/spiffe-check, built by build.sh from cmd/spiffe-check).
# Source after lib/common.sh and lib/server.sh.
# shellcheck shell=bash

: "${AGENT_IMPL:=signet}"
SPIFFE_CHECK="${SPIFFE_CHECK:-$SPIRE_BIN/spiffe-check}"

# require_agent_impl: fails unless the agent binary for AGENT_IMPL is built.
require_agent_impl() {
    case "$AGENT_IMPL" in
        signet) require_bin "$SIGNET_AGENT" ;;
        spire) require_bin "$SPIRE_AGENT" ;;
        *) fail "unknown AGENT_IMPL=$AGENT_IMPL" ;;
    esac
}

# start_agent <name> <join token>: starts the agent under test as background process <name>
# with $AGENT_CONF (see write_agent_conf) and waits for its Workload API socket.
start_agent() {
    local name="$1" token="$2"
    case "$AGENT_IMPL" in
        signet) start_bg "$name" "$SIGNET_AGENT" run --config "$AGENT_CONF" --join-token "$token" ;;
        spire) start_bg "$name" "$SPIRE_AGENT" run -config "$AGENT_CONF" -joinToken "$token" ;;
        *) fail "unknown AGENT_IMPL=$AGENT_IMPL" ;;
    esac
    wait_for_socket "$name" "$AGENT_SOCK" 60
}

# check <name> <spiffe-check args...>: runs spiffe-check (must succeed) against $AGENT_SOCK.
check() {
    local name="$1" sub="$2"; shift 2
    must "$name" "$SPIFFE_CHECK" "$sub" -addr "unix://$AGENT_SOCK" "$@"
}

# wait_for_svid <proc name> <spiffe id> [timeout]: polls spiffe-check x509 until the agent serves
# the ID as its default SVID, failing early if the agent process exits.
wait_for_svid() {
    local name="$1" id="$2" timeout="${3:-90}"
    local deadline=$((SECONDS + timeout))
    until "$SPIFFE_CHECK" x509 -addr "unix://$AGENT_SOCK" -expect "$id" -timeout 5s \
        >"$OUT/wait-svid.out" 2>"$OUT/wait-svid.err"; do
        is_running "$name" || fail "$name exited before serving $id"
        if ((SECONDS >= deadline)); then
            fail "no SVID $id from $name within ${timeout}s; last: $(tail -c 1000 "$OUT/wait-svid.err")"
        fi
        sleep 1
    done
    info "ok: $name serves $id (t+${SECONDS}s)"
}

# report_mints <proc name> <spiffe id>: informational; how many X509-SVIDs signet-agent logged
# minting for the ID (its DEBUG "SVID updated" lines), and when, with each one's expiry.
report_mints() {
    local name="$1" id="$2" log="$LOGDIR/$1.log"
    [[ "$AGENT_IMPL" == signet && -f "$log" ]] || return 0
    grep -F "SVID updated" "$log" | grep -F "spiffe_id=$id " >"$OUT/mints-$name.txt" || true
    info "$name minted $(wc -l <"$OUT/mints-$name.txt") X509-SVID(s) for $id (log time -> expires_at):"
    awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^expires_at=/) e = substr($i, 12); print "  | " $1 " -> " e }' \
        "$OUT/mints-$name.txt" | head -n 40
}

# --- clients nobody here wrote (installed by build.sh) -----------------------------------------
PYENV_PY="${PYENV_PY:-$SPIRE_BIN/py/bin/python}"

# pycheck <name> <spiffe_check.py args...>: py-spiffe (grpc C-core) against $AGENT_SOCK.
pycheck() {
    local name="$1" sub="$2"; shift 2
    must "$name" "$PYENV_PY" "$INTEROP_DIR/py/spiffe_check.py" "$sub" -addr "unix://$AGENT_SOCK" "$@"
}

# as_other_gid <cmd...>: runs a command with this uid but another gid and no supplementary
# groups (a workload that matches no `unix:gid` entry); needs root (setpriv).
as_other_gid() { setpriv --regid 54321 --clear-groups -- "$@"; }
can_change_gid() { [[ "$(id -u)" == 0 ]] && command -v setpriv >/dev/null; }

# javacheck <name> <SpiffeCheck args...>: java-spiffe (grpc-java, grpc-netty-linux) against
# $AGENT_SOCK; the jar and its classpath are built by build.sh into bin/java.
JAVA_CHECK_DIR="${JAVA_CHECK_DIR:-$SPIRE_BIN/java}"
javacheck() {
    local name="$1" sub="$2"; shift 2
    must "$name" java -cp "$JAVA_CHECK_DIR/build/spiffe-check.jar:$JAVA_CHECK_DIR/lib/*" \
        dev.signet.interop.SpiffeCheck "$sub" -addr "unix://$AGENT_SOCK" "$@"
}

# nodecheck <name> <expected id> <audience>: @grpc/grpc-js against $AGENT_SOCK.
nodecheck() {
    local name="$1"; shift
    must "$name" env NODE_PATH="$SPIRE_BIN/node/node_modules" node "$INTEROP_DIR/node/workload_check.js" "$AGENT_SOCK" "$@"
}
