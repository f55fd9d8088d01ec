#!/usr/bin/env bash
# The Rust tests that need a real kube-apiserver (tests/tests/k8s_*.rs): `cargo test --workspace`
# ignores them (the binaries do not exist yet when CI runs it), so the interop suite runs them
# here with `--ignored`, against kube-apiserver and kine from tests/interop/build.sh (each test
# binary starts its own clusters through tests/interop/lib/kube.py). Fails unless every one of
# them ran and passed: none may be skipped.
# Signet only: with SERVER_IMPL=spire there is nothing to check and the scenario is skipped.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

if [[ "$SERVER_IMPL" != signet ]]; then
    info "skipped: the Rust Kubernetes tests drive Signet only (SERVER_IMPL=$SERVER_IMPL)"
    echo PASS
    exit 0
fi
export KUBE_BIN_DIR="${KUBE_BIN_DIR:-$SPIRE_BIN}"
require_bin "$KUBE_BIN_DIR/kube-apiserver" "$KUBE_BIN_DIR/kine"

tests=()
for f in "$REPO_ROOT"/tests/tests/k8s_*.rs; do
    name="$(basename "$f" .rs)"
    grep -q '#\[ignore' "$f" && tests+=(--test "$name")
done
[[ ${#tests[@]} -gt 0 ]] || fail "no Kubernetes test files found"

step "cargo test --workspace ${tests[*]} -- --ignored"
cd "$REPO_ROOT"
set +e
cargo test --workspace "${tests[@]}" -- --ignored --test-threads 2 2>&1 | tee "$OUT/cargo.log"
rc=${PIPESTATUS[0]}
set -e
[[ $rc -eq 0 ]] || fail "cargo test exited $rc"

step "every Kubernetes test ran"
ran=0
while read -r n; do ran=$((ran + n)); done < <(sed -n 's/^test result: ok\. \([0-9]*\) passed; 0 failed; 0 ignored.*/\1/p' "$OUT/cargo.log")
want=0
for f in "$REPO_ROOT"/tests/tests/k8s_*.rs; do
    want=$((want + $(grep -c '^#\[ignore = "needs kube-apiserver' "$f" || true)))
done
assert_eq "Kubernetes tests passed" "$want" "$ran"
if grep -qE '^test result: .* [1-9][0-9]* ignored' "$OUT/cargo.log"; then
    fail "some Kubernetes tests were ignored"
fi
echo PASS
