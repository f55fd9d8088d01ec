#!/usr/bin/env bash
# Builds everything the interop scenarios need:
#   tests/interop/bin/spire-server, tests/interop/bin/spire-agent  (SPIRE, version pinned in go.mod)
#   tests/interop/bin/spiffe-check                                 (go-spiffe checker, cmd/spiffe-check)
#   tests/interop/bin/sds-check                                    (Envoy SDS v3 checker, cmd/sds-check)
#   tests/interop/bin/loadclient                                   (bench.sh's load client, cmd/loadclient)
#   tests/interop/bin/kube-apiserver                               (k8s.io/kubernetes, version pinned in kube/go.mod)
#   tests/interop/bin/kine                                         (github.com/k3s-io/kine on SQLite, version below)
#   tests/interop/bin/spire-controller-manager, bin/scm-crds/      (github.com/spiffe/spire-controller-manager, version
#                                                                   pinned in scm/go.mod; its CRDs from the module)
#   tests/interop/bin/py/                                          (venv: py-spiffe, grpcio, cryptography; pinned in
#                                                                   py/requirements.txt; SPIRE API stubs from proto/)
#   tests/interop/bin/node/                                        (@grpc/grpc-js, pinned in node/package-lock.json)
#   tests/interop/bin/java/                                        (java-spiffe + grpc-netty-linux checker, pinned in
#                                                                   java/pom.xml; built with Maven from Maven Central)
#   target/debug/signet-server, target/debug/signet-agent          (cargo build --workspace --bins)
# Idempotent: the SPIRE, kube-apiserver and kine binaries are rebuilt only when missing or built
# from another version (read back from the binary with `go version -m`);
# spiffe-check, sds-check and loadclient are always rebuilt (seconds; Go's build cache makes it a no-op when unchanged).
#
# Environment:
#   SKIP_CARGO_BUILD=1   do not run cargo (e.g. CI already built the workspace)
#   SKIP_SPIRE_BUILD=1   do not build SPIRE (scenarios needing it will fail)
#   SKIP_CHECKER_BUILD=1 do not build spiffe-check / sds-check (scenarios needing them will fail)
#   SKIP_KUBE_BUILD=1    do not build kube-apiserver / kine / spire-controller-manager (the Kubernetes tests
#                        will fail)
#   SKIP_CLIENTS_BUILD=1 do not install the Python / Node / Java clients (scenarios needing them will fail)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$here/bin"

log() { printf '[build] %s\n' "$*"; }

command -v go >/dev/null || { echo "[build] go is not installed" >&2; exit 1; }

spire_mod="github.com/spiffe/spire"
spire_version="$(cd "$here" && go list -m -f '{{.Version}}' "$spire_mod")"
# SPIRE prints this from `--version`; release builds stamp the tag without the leading v.
ldflags="-X ${spire_mod}/pkg/common/version.gittag=${spire_version#v}"

# Reports the version of module $2 (default $spire_mod) binary $1 was built from ("" if none /
# not a Go binary).
built_version() {
    [[ -x "$1" ]] || return 0
    go version -m "$1" 2>/dev/null | awk -v m="${2:-$spire_mod}" '($1 == "mod" || $1 == "dep") && $2 == m { print $3 }'
}

kube_mod="k8s.io/kubernetes"
kine_mod="github.com/k3s-io/kine"
kine_version="v0.17.5"

# kube-apiserver cannot be `go install`ed (k8s.io/kubernetes replaces its staging modules with
# local paths); kube/go.mod requires it and maps each staging module to its published version.
build_kube() {
    local kube_version have start
    kube_version="$(cd "$here/kube" && go list -m -f '{{.Version}}' "$kube_mod")"
    have="$(built_version "$bin/kube-apiserver" "$kube_mod")"
    if [[ "$have" == "$kube_version" ]]; then
        log "kube-apiserver $kube_version already built ($bin/kube-apiserver)"
    else
        mkdir -p "$bin"
        log "building kube-apiserver $kube_version into $bin (go $(go env GOVERSION); ~10-25 min cold)"
        start=$SECONDS
        local minor="${kube_version#v1.}"
        minor="${minor%%.*}"
        (cd "$here/kube" && go build -mod=readonly \
            -ldflags "-X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
            -o "$bin/kube-apiserver" "$kube_mod/cmd/kube-apiserver")
        log "kube-apiserver build took $((SECONDS - start))s"
    fi
    have="$(built_version "$bin/kine" "$kine_mod")"
    if [[ "$have" == "$kine_version" ]]; then
        log "kine $kine_version already built ($bin/kine)"
    else
        mkdir -p "$bin"
        log "building kine $kine_version into $bin (~3-5 min cold)"
        start=$SECONDS
        (cd "$here/kube" && GOBIN="$bin" go install "$kine_mod@$kine_version")
        log "kine build took $((SECONDS - start))s"
    fi
}

# spire-controller-manager: `go install ...@v0.6.3` asks the proxy for the module's version list
# (to look for a deprecation notice), which is not served here, so scm/go.mod requires the
# module (as a `tool`) and the binary is built from there. Its CRDs come from the same module.
scm_mod="github.com/spiffe/spire-controller-manager"
build_scm() {
    local scm_version have start dir
    scm_version="$(cd "$here/scm" && go list -m -f '{{.Version}}' "$scm_mod")"
    have="$(built_version "$bin/spire-controller-manager" "$scm_mod")"
    if [[ "$have" == "$scm_version" && -f "$bin/scm-crds/.version" && "$(cat "$bin/scm-crds/.version")" == "$scm_version" ]]; then
        log "spire-controller-manager $scm_version already built ($bin/spire-controller-manager)"
        return 0
    fi
    mkdir -p "$bin"
    log "building spire-controller-manager $scm_version into $bin (~5-6 min cold)"
    start=$SECONDS
    (cd "$here/scm" && go build -mod=readonly -o "$bin/spire-controller-manager" "$scm_mod/cmd")
    dir="$(cd "$here/scm" && go list -m -f '{{.Dir}}' "$scm_mod")"
    rm -rf "$bin/scm-crds"
    mkdir -p "$bin/scm-crds"
    cp "$dir"/config/crd/bases/spire.spiffe.io_*.yaml "$bin/scm-crds/"
    chmod 0644 "$bin/scm-crds/"*.yaml
    echo "$scm_version" > "$bin/scm-crds/.version"
    log "spire-controller-manager build took $((SECONDS - start))s"
}

build_spire() {
    local stale=()
    for tool in spire-server spire-agent; do
        local have
        have="$(built_version "$bin/$tool")"
        if [[ "$have" == "$spire_version" ]]; then
            log "$tool $spire_version already built ($bin/$tool)"
        else
            stale+=("$tool")
        fi
    done
    [[ ${#stale[@]} -eq 0 ]] && return 0

    mkdir -p "$bin"
    local pkgs=()
    for tool in "${stale[@]}"; do pkgs+=("$spire_mod/cmd/$tool"); done
    log "building ${stale[*]} $spire_version into $bin (go $(go env GOVERSION))"
    local start=$SECONDS
    (cd "$here" && go build -mod=readonly -ldflags "$ldflags" -o "$bin/" "${pkgs[@]}")
    log "SPIRE build took $((SECONDS - start))s"
    for tool in "${stale[@]}"; do
        log "$("$bin/$tool" --version 2>&1 | head -n1 | sed "s/^/$tool version /")"
    done
}

build_checker() {
    mkdir -p "$bin"
    log "building spiffe-check (go-spiffe $(cd "$here" && go list -m -f '{{.Version}}' github.com/spiffe/go-spiffe/v2)) into $bin"
    local start=$SECONDS
    (cd "$here" && go build -mod=readonly -o "$bin/spiffe-check" ./cmd/spiffe-check)
    log "spiffe-check build took $((SECONDS - start))s"
    log "building sds-check (go-control-plane $(cd "$here" && go list -m -f '{{.Version}}' github.com/envoyproxy/go-control-plane/envoy)) into $bin"
    start=$SECONDS
    (cd "$here" && go build -mod=readonly -o "$bin/sds-check" ./cmd/sds-check)
    log "sds-check build took $((SECONDS - start))s"
    log "building loadclient (bench.sh's go-spiffe / spire-api-sdk load client) into $bin"
    start=$SECONDS
    (cd "$here" && go build -mod=readonly -o "$bin/loadclient" ./cmd/loadclient)
    log "loadclient build took $((SECONDS - start))s"
}

# The version stamp of an install: its pins plus the files it is generated from.
stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

# Python clients: one venv with the pinned py-spiffe, grpcio (C-core), grpcio-tools and
# cryptography, and grpcio stubs for SPIRE's server API generated from proto/.
build_python() {
    local venv="$bin/py" req="$here/py/requirements.txt" want
    want="$(python3 --version 2>&1) $(stamp_of "$req" "$root"/proto/proto/spire/api/*/*.proto "$root"/proto/proto/spire/api/server/*/v1/*.proto)"
    if [[ -f "$venv/.stamp" && "$(cat "$venv/.stamp")" == "$want" ]]; then
        log "python clients already installed ($venv)"
        return 0
    fi
    local start=$SECONDS
    log "installing python clients into $venv ($(python3 --version 2>&1))"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$req"
    mkdir -p "$venv/gen"
    (cd "$root/proto/proto" && "$venv/bin/python" -m grpc_tools.protoc -I . \
        --python_out="$venv/gen" --grpc_python_out="$venv/gen" \
        spire/api/types/types.proto spire/api/server/entry/v1/entry.proto \
        spire/api/server/bundle/v1/bundle.proto workload.proto)
    echo "$want" >"$venv/.stamp"
    log "python clients took $((SECONDS - start))s"
}

# Node clients: @grpc/grpc-js and @grpc/proto-loader from node/package-lock.json (npm ci).
build_node() {
    local dir="$bin/node" want
    want="$(node --version 2>&1) $(stamp_of "$here/node/package.json" "$here/node/package-lock.json")"
    if [[ -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$want" ]]; then
        log "node clients already installed ($dir)"
        return 0
    fi
    local start=$SECONDS
    log "installing node clients into $dir (node $(node --version 2>&1))"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$here/node/package.json" "$here/node/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --silent)
    echo "$want" >"$dir/.stamp"
    log "node clients took $((SECONDS - start))s"
}

# Java clients: java-spiffe-core + grpc-netty-linux (grpc-java) and java/src, built with Maven
# into bin/java (build/spiffe-check.jar, lib/ = its runtime classpath). Maven's output goes to
# bin/java-build.log and is shown only if the build fails.
build_java() {
    local dir="$bin/java" log="$bin/java-build.log" want
    want="$(java -version 2>&1 | head -n1) $(mvn -v 2>/dev/null | head -n1 | tr -cd '[:alnum:] .-') $(stamp_of "$here/java/pom.xml" $(find "$here/java/src" -type f | sort))"
    if [[ -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$want" ]]; then
        log "java clients already built ($dir)"
        return 0
    fi
    local start=$SECONDS
    log "building java clients into $dir ($(java -version 2>&1 | head -n1))"
    rm -rf "$dir"
    if ! (cd "$here/java" && mvn -B -q -Dstyle.color=never -Dout="$dir" package) >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        log "java clients: mvn package failed (full log: $log)"
        return 1
    fi
    echo "$want" >"$dir/.stamp"
    log "java clients took $((SECONDS - start))s"
}

build_clients() {
    mkdir -p "$bin"
    build_python
    build_node
    build_java
}

build_signet() {
    log "cargo build --workspace --bins (in $root)"
    local start=$SECONDS
    (cd "$root" && cargo build --workspace --bins)
    log "cargo build took $((SECONDS - start))s"
    for b in signet-server signet-agent; do
        if [[ -x "$root/target/debug/$b" ]]; then
            log "have $root/target/debug/$b"
        else
            log "WARNING: $root/target/debug/$b was not produced"
        fi
    done
}

if [[ "${SKIP_SPIRE_BUILD:-}" == 1 ]]; then log "SKIP_SPIRE_BUILD=1: not building SPIRE"; else build_spire; fi
if [[ "${SKIP_KUBE_BUILD:-}" == 1 ]]; then log "SKIP_KUBE_BUILD=1: not building kube-apiserver / kine / spire-controller-manager"; else build_kube; build_scm; fi
if [[ "${SKIP_CHECKER_BUILD:-}" == 1 ]]; then log "SKIP_CHECKER_BUILD=1: not building spiffe-check / sds-check"; else build_checker; fi
if [[ "${SKIP_CLIENTS_BUILD:-}" == 1 ]]; then log "SKIP_CLIENTS_BUILD=1: not installing client libraries"; else build_clients; fi
if [[ "${SKIP_CARGO_BUILD:-}" == 1 ]]; then log "SKIP_CARGO_BUILD=1: not running cargo"; else build_signet; fi
log "done"
