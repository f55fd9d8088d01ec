#!/usr/bin/env bash
# Signet against SPIRE, side by side on this machine: the same trust domain, TTLs, configs and
# client (bin/loadclient: go-spiffe for the Workload API, spire-api-sdk for the admin API), each
# case on a fresh server and agent, SPIRE and Signet alternated (A B, then B A). Prints a table
# of medians over the rounds with the range and the ratio (how many times better Signet is).
# Not part of .ci/run: it measures, it asserts nothing.
#
# Usage: tests/interop/build.sh && tests/interop/bench.sh
# Environment:
#   BENCH_ROUNDS=2            rounds (each runs every case for both)
#   BENCH_GROUPS=main,scale,100k
#                             main: the per-row figures; scale: agent start -> N SVIDs and JWT/s
#                             at the sizes below; 100k: a server holding 100,000 entries
#   BENCH_IMPLS=spire,signet  which stacks to run
#   BENCH_SCALE_SIZES="250 1000 2000 4000 6000"
#   BENCH_BIG=100000          entries of the 100k group
#   BENCH_SKIP_CARGO=1        do not run `cargo build --release --bins` (SIGNET_BIN must hold them)
#   SIGNET_BIN                signet binaries (default target/release), SPIRE_BIN (default bin/)
#   BENCH_OUT                 results directory (default a new temp dir; results.txt holds every
#                             figure as "impl round name value unit")
#
# SPIRE takes over an hour to create 100k entries through its API here, so the 100k group loads
# them straight into spire-server's sqlite file (copies of one entry made through the API) and
# creates Signet's through the API; both are then restarted, listed and measured the same way.
# Dropping the page cache for the cold restart needs root; without it that row is left out.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [[ "${1:-}" == --case ]]; then
    shift
    # shellcheck source=tests/interop/lib/bench_case.sh
    source "$here/lib/bench_case.sh"
    bench_case "$@"
    exit 0
fi

rounds="${BENCH_ROUNDS:-2}"
IFS=, read -r -a groups <<<"${BENCH_GROUPS:-main,scale,100k}"
IFS=, read -r -a impls <<<"${BENCH_IMPLS:-spire,signet}"
read -r -a sizes <<<"${BENCH_SCALE_SIZES:-250 1000 2000 4000 6000}"
export SPIRE_BIN="${SPIRE_BIN:-$here/bin}"
export SIGNET_BIN="${SIGNET_BIN:-${CARGO_TARGET_DIR:-$root/target}/release}"
export BENCH_BIG="${BENCH_BIG:-100000}"
out="${BENCH_OUT:-$(mktemp -d /tmp/signet-bench.XXXXXX)}"
mkdir -p "$out"
results="$out/results.txt"
: >"$results"

for b in "$SPIRE_BIN/spire-server" "$SPIRE_BIN/spire-agent" "$SPIRE_BIN/loadclient"; do
    [[ -x "$b" ]] || { echo "bench: missing $b (run tests/interop/build.sh)" >&2; exit 1; }
done
if [[ "${BENCH_SKIP_CARGO:-}" != 1 ]]; then
    echo "bench: cargo build --release --bins" >&2
    (cd "$root" && cargo build --release --bins)
fi
for b in "$SIGNET_BIN/signet-server" "$SIGNET_BIN/signet-agent"; do
    [[ -x "$b" ]] || { echo "bench: missing $b (release build)" >&2; exit 1; }
done

# run_case <impl> <round> <group> [args]: one case in its own process and temp dir; its
# "result" lines go to results.txt, its log to $out/logs.
run_case() {
    local impl="$1" round="$2" group="$3"; shift 3
    local tag="$group${1:+-$1}-$impl-$round" start=$SECONDS
    mkdir -p "$out/logs"
    printf 'bench: round %s %-14s %-6s ' "$round" "$group${1:+ $1}" "$impl" >&2
    if WORKDIR="$(mktemp -d "$out/work.XXXXXX")" BENCH_IMPL="$impl" \
        bash "$0" --case "$group" "$@" >"$out/logs/$tag.out" 2>"$out/logs/$tag.log"; then
        awk -v impl="$impl" -v round="$round" '$1 == "result" { print impl, round, $2, $3, $4 }' \
            "$out/logs/$tag.out" >>"$results"
        echo "done in $((SECONDS - start))s" >&2
    else
        echo "FAILED after $((SECONDS - start))s (log: $out/logs/$tag.log)" >&2
        tail -n 30 "$out/logs/$tag.log" >&2
    fi
}

for round in $(seq "$rounds"); do
    order=("${impls[@]}")
    if ((round % 2 == 0)); then
        order=()
        for ((i = ${#impls[@]} - 1; i >= 0; i--)); do order+=("${impls[$i]}"); done
    fi
    for group in "${groups[@]}"; do
        case "$group" in
            main | 100k) for impl in "${order[@]}"; do run_case "$impl" "$round" "$group"; done ;;
            scale)
                for n in "${sizes[@]}"; do
                    for impl in "${order[@]}"; do run_case "$impl" "$round" scale "$n"; done
                done
                ;;
            *) echo "bench: unknown group $group" >&2; exit 2 ;;
        esac
    done
done

{
    echo "Signet $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?') vs SPIRE $("$SPIRE_BIN/spire-server" --version 2>&1 | head -n1)"
    echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), load average at the end $(cut -d' ' -f1-3 /proc/loadavg), $rounds round(s)"
    echo
    python3 "$here/lib/bench_table.py" "$results" "${sizes[@]}"
} | tee "$out/table.md"
echo "bench: results in $out" >&2
