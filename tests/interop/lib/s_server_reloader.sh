#!/usr/bin/env bash
# s_server_reloader.sh <port> <cert> <key> <log> [pid file]
#
# `openssl s_server` loads its certificate and key once and has no reload signal (SIGHUP ends
# it), so this wrapper stands for a server that reloads on a signal: it runs
# `openssl s_server -www` with <cert>/<key> on 127.0.0.1:<port>, and on SIGHUP stops it and
# starts a new one that reads the files again. Each start appends
# "started <s_server pid> <serial of the leaf in <cert>>" to <log>. Its own PID goes to
# [pid file] (for a pid_file_name signal) and to $WORKDIR/pids (so run.sh reaps it).
# It waits for <cert> and <key> to exist before the first start. SIGTERM/SIGINT stop both.
set -u
port="$1" cert="$2" key="$3" log="$4" pidfile="${5:-}"
child=""

[[ -n "$pidfile" ]] && echo $$ >"$pidfile"
[[ -n "${WORKDIR:-}" ]] && echo $$ >>"$WORKDIR/pids"

start() {
    local serial
    serial="$(openssl x509 -in "$cert" -noout -serial | sed 's/^serial=//')"
    openssl s_server -quiet -www -accept "127.0.0.1:$port" -cert "$cert" -key "$key" </dev/null &
    child=$!
    echo "started $child $serial" >>"$log"
}

stop_child() {
    [[ -n "$child" ]] || return 0
    kill "$child" 2>/dev/null
    wait "$child" 2>/dev/null
    child=""
}

# The traps only set a flag or stop: a signal arriving in the middle of start() must not
# start a second s_server before the first one's PID is known.
reload=0
trap 'reload=1' HUP
trap 'stop_child; exit 0' TERM INT

until [[ -s "$cert" && -s "$key" ]]; do sleep 0.1; done
start
while :; do
    if ((reload)); then
        reload=0
        stop_child
        start
    fi
    # An interruptible pause: `wait` returns as soon as a trapped signal arrives.
    sleep 0.2 &
    wait $! 2>/dev/null || true
done
