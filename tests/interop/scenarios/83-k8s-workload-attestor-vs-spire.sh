#!/usr/bin/env bash
# The k8s workload attestor against SPIRE's: one real kube-apiserver (lib/kube.py) holds a
# workload Pod (two containers, an init container, labels, a ReplicaSet owner) on node
# k8s-node-1; the kubelet stand-in (target/debug/kubelet-standin) serves that node's PodList on
# HTTPS with the container statuses this scenario writes; a real spire-agent v1.13.3 and
# signet-agent, both attested to signet-server with k8s_psat (use_pod_uid_for_agent_id, one
# agent pod each), run with the same WorkloadAttestor "k8s" block (secure port, CA file,
# service account token, node_name = "k8s-node-1") under `unshare -m` with a private /etc/hosts
# naming the node 127.0.0.1, because SPIRE dials https://<node name>:<port>/pods. One workload
# process, moved into the container's kubelet-style cgroup v1 directory and run as uid 1337,
# calls both agents: the selector sets they log for it ("PID attested to have selectors" /
# "Attested workload") must be identical, k8s and unix alike; an entry written with every k8s
# selector SPIRE produced reaches the workload through signet-agent, and a `k8s:ns`+`k8s:sa`
# entry through both. Needs root and a writable cgroup v1 pids hierarchy. Always uses
# signet-server, whatever SERVER_IMPL says.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

export KUBE_BIN_DIR="${KUBE_BIN_DIR:-$SPIRE_BIN}"
STANDIN="$SIGNET_BIN/kubelet-standin"
require_bin "$SPIRE_SERVER" "$SPIRE_AGENT" "$SIGNET_SERVER" "$SIGNET_AGENT" "$STANDIN" \
    "$KUBE_BIN_DIR/kube-apiserver" "$KUBE_BIN_DIR/kine" "$SPIRE_BIN/spiffe-check"
[[ "$(id -u)" == 0 ]] || fail "needs root: it moves a process into a kubelet-style cgroup"
CG_ROOT=/sys/fs/cgroup/pids
[[ -f "$CG_ROOT/cgroup.procs" ]] || fail "needs a cgroup v1 pids hierarchy at $CG_ROOT"
TD=example.org
NODE=k8s-node-1
K="$WORKDIR/k8s"
kube() { python3 "$INTEROP_DIR/lib/kube.py" "$@"; }
json_field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval("d"+sys.argv[2]))' "$@"; }
hex64() { python3 -c 'import secrets; print(secrets.token_hex(32))'; }

step "a real kube-apiserver: two agent pods and a workload pod on $NODE"
must kube-up kube up "$K" --owner-pid $$
must fixture-a kube fixture "$K" --ns spire --sa spire-agent --node "$NODE" --pod spire-agent-a
must fixture-b kube fixture "$K" --ns spire --sa spire-agent --node "$NODE" --pod signet-agent-b
POD_A_UID="$(json_field "$OUT/fixture-a.out" '["pod_uid"]')"
POD_B_UID="$(json_field "$OUT/fixture-b.out" '["pod_uid"]')"
OWNER_UID="$(python3 -c 'import uuid; print(uuid.uuid4())')"
cat >"$WORKDIR/workload.json" <<EOF
[
 {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
 {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "frontend", "namespace": "shop"}},
 {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "frontend-5d4f8-x2x9q", "namespace": "shop",
   "labels": {"app": "frontend", "version": "v1", "spiffe.io/spire-managed-identity": "true"},
   "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "frontend-5d4f8",
                        "uid": "$OWNER_UID", "controller": true}]},
  "spec": {"serviceAccountName": "frontend", "nodeName": "$NODE",
   "initContainers": [{"name": "init", "image": "busybox:1.36"}],
   "containers": [{"name": "app", "image": "registry.example/shop/frontend:2.1"},
                  {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.28.0"}]}}
]
EOF
must apply kube apply "$K" "$WORKDIR/workload.json"
must get-pod kube get "$K" /api/v1/namespaces/shop/pods/frontend-5d4f8-x2x9q
POD_UID="$(json_field "$OUT/get-pod.out" '["metadata"]["uid"]')"
CID_APP="$(hex64)"; CID_PROXY="$(hex64)"; CID_INIT="$(hex64)"
cat >"$WORKDIR/status.json" <<EOF
{"status": {"phase": "Running", "hostIP": "127.0.0.1", "podIP": "10.244.0.7",
 "initContainerStatuses": [{"name": "init", "image": "docker.io/library/busybox:1.36",
   "imageID": "docker.io/library/busybox@sha256:7edf5efe6b86dbf01ccc3c76b32a37a8e23b84e6bad81ce8ae8c221fa456fda8",
   "containerID": "containerd://$CID_INIT", "ready": true, "restartCount": 0,
   "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
 "containerStatuses": [
  {"name": "app", "image": "registry.example/shop/frontend:2.1",
   "imageID": "registry.example/shop/frontend@sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
   "containerID": "containerd://$CID_APP", "ready": true, "started": true, "restartCount": 0,
   "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}},
  {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.28.0",
   "imageID": "docker.io/istio/proxyv2@sha256:0d6f82c9d9e6a2b4fbc2e12c6b3b5e3c4a4e2d38b9ba2a23f1f9e4a1d2c3b4a5",
   "containerID": "containerd://$CID_PROXY", "ready": true, "started": true, "restartCount": 0,
   "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}}
EOF
must patch-status kube patch "$K" /api/v1/namespaces/shop/pods/frontend-5d4f8-x2x9q/status "$WORKDIR/status.json"

step "the container's cgroup: $CG_ROOT/kubepods/burstable/pod$POD_UID/$CID_APP"
CG_POD="$CG_ROOT/kubepods/burstable/pod$POD_UID"
CG="$CG_POD/$CID_APP"
mkdir -p "$CG" || fail "cannot create $CG"
cleanup_cgroup() { rmdir "$CG" "$CG_POD" 2>/dev/null || true; }
trap 'rc=$?; cleanup_cgroup; (exit $rc); _cleanup' EXIT

step "the kubelet stand-in for $NODE (bearer token checked by TokenReview)"
start_bg kubelet "$STANDIN" --kubeconfig "$K/kubeconfig" --node "$NODE" --dir "$WORKDIR/kubelet"
wait_for "kubelet stand-in port" 30 test -s "$WORKDIR/kubelet/kubelet.port"
KUBELET_PORT="$(cat "$WORKDIR/kubelet/kubelet.port")"
must token-sa kube token "$K" --ns spire --sa spire-agent --pod spire-agent-a --out "$WORKDIR/sa-token"
must token-a kube token "$K" --ns spire --sa spire-agent --pod spire-agent-a --audience spire-server --out "$WORKDIR/psat-a"
must token-b kube token "$K" --ns spire --sa spire-agent --pod signet-agent-b --audience spire-server --out "$WORKDIR/psat-b"
printf '127.0.0.1 localhost %s\n::1 localhost ip6-localhost\n' "$NODE" >"$WORKDIR/hosts"

step "signet-server with k8s_psat (agent IDs by pod UID: one per agent pod)"
S="$WORKDIR/server"
mkdir -p "$S/data"
cat >"$S/server.conf" <<EOF
server {
    bind_address = "127.0.0.1"
    bind_port = $(free_port)
    socket_path = "$S/api.sock"
    trust_domain = "$TD"
    data_dir = "$S/data"
    log_level = "DEBUG"
}
plugins {
    DataStore "sled" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
    NodeAttestor "k8s_psat" {
        plugin_data {
            clusters = {
                "c1" = {
                    service_account_allow_list = ["spire:spire-agent"]
                    kube_config_file = "$K/kubeconfig"
                    use_pod_uid_for_agent_id = true
                }
            }
        }
    }
}
EOF
start_bg signet-server "$SIGNET_SERVER" run --config "$S/server.conf"
wait_for_socket signet-server "$S/api.sock" 60
wait_for "signet-server answers bundle show" 60 "$SPIRE_SERVER" bundle show -socketPath "$S/api.sock"
"$SPIRE_SERVER" bundle show -socketPath "$S/api.sock" >"$S/bundle.pem"
PORT="$(sed -n 's/^ *bind_port = //p' "$S/server.conf")"

# agent_conf <dir> <psat token>: both agents' configuration, the k8s block identical.
agent_conf() {
    local dir="$1" token="$2"
    mkdir -p "$dir/data"
    cat >"$dir/agent.conf" <<EOF
agent {
    data_dir = "$dir/data"
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = $PORT
    socket_path = "$dir/public/api.sock"
    trust_bundle_path = "$S/bundle.pem"
    trust_domain = "$TD"
}
plugins {
    NodeAttestor "k8s_psat" {
        plugin_data {
            cluster = "c1"
            token_path = "$token"
        }
    }
    KeyManager "memory" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
    WorkloadAttestor "k8s" {
        plugin_data {
            kubelet_secure_port = $KUBELET_PORT
            kubelet_ca_path = "$WORKDIR/kubelet/kubelet-ca.crt"
            token_path = "$WORKDIR/sa-token"
            node_name = "$NODE"
        }
    }
}
EOF
    sed 's/^/  | /' "$dir/agent.conf"
}
# in_hosts <cmd...>: the command in a mount namespace of its own whose /etc/hosts names the node.
in_hosts() { unshare -m bash -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$WORKDIR/hosts" "$@"; }

step "spire-agent and signet-agent with the same k8s attestor block, /etc/hosts naming $NODE"
A_SPIRE="$WORKDIR/spire-agent"
A_SIGNET="$WORKDIR/signet-agent"
agent_conf "$A_SPIRE" "$WORKDIR/psat-a"
agent_conf "$A_SIGNET" "$WORKDIR/psat-b"
start_bg spire-agent in_hosts "$SPIRE_AGENT" run -config "$A_SPIRE/agent.conf"
start_bg signet-agent in_hosts "$SIGNET_AGENT" run --config "$A_SIGNET/agent.conf"
wait_for_socket spire-agent "$A_SPIRE/public/api.sock" 60
wait_for_socket signet-agent "$A_SIGNET/public/api.sock" 60
chmod 0755 "$WORKDIR" "$A_SPIRE" "$A_SIGNET" "$A_SPIRE/public" "$A_SIGNET/public"
ID_SPIRE="spiffe://$TD/spire/agent/k8s_psat/c1/pod/$POD_A_UID"
ID_SIGNET="spiffe://$TD/spire/agent/k8s_psat/c1/pod/$POD_B_UID"
WANT="spiffe://$TD/ns/shop/sa/frontend"
for parent in "$ID_SPIRE" "$ID_SIGNET"; do
    must "entry-${parent##*/}" "$SPIRE_SERVER" entry create -socketPath "$S/api.sock" \
        -parentID "$parent" -spiffeID "$WANT" -selector k8s:ns:shop -selector k8s:sa:frontend
done

# as_workload <socket> <cmd args...>: run spiffe-check in the app container's cgroup as uid 1337.
as_workload() {
    local sock="$1"; shift
    bash -c 'echo $$ > "$0" && exec setpriv --reuid=1337 --regid=1337 --clear-groups "$@"' \
        "$CG/cgroup.procs" "$SPIRE_BIN/spiffe-check" x509 -addr "unix://$sock" "$@"
}

step "one workload process in the pod calls both agents"
wait_for "the workload's SVID through spire-agent" 60 as_workload "$A_SPIRE/public/api.sock" -expect "$WANT" -timeout 10s
must fetch-spire as_workload "$A_SPIRE/public/api.sock" -expect "$WANT" -timeout 20s
must fetch-signet as_workload "$A_SIGNET/public/api.sock" -expect "$WANT" -timeout 20s

step "both agents attested it to the same selectors"
# SPIRE: `selectors="[type:\"k8s\" value:\"ns:shop\" ...]"`; Signet: `Selector { kind: "k8s", value: "ns:shop" }`.
python3 - "$LOGDIR/spire-agent.log" "$LOGDIR/signet-agent.log" "$OUT" <<'PY'
import re, sys
spire_log, signet_log, out = sys.argv[1:4]
def last(path, marker, pattern):
    lines = [l for l in open(path, errors="replace") if marker in l and '"k8s' in l.replace('\\"', '"')]
    if not lines:
        sys.exit(f"no {marker!r} line with k8s selectors in {path}")
    text = lines[-1].replace('\\"', '"')
    return sorted(set(f"{t}:{v}" for t, v in re.findall(pattern, text)))
spire = last(spire_log, "PID attested to have selectors", r'type:"([^"]*)"\s+value:"([^"]*)"')
signet = last(signet_log, "Attested workload", r'kind: "([^"]*)", value: "([^"]*)"')
open(f"{out}/selectors-spire.txt", "w").write("\n".join(spire) + "\n")
open(f"{out}/selectors-signet.txt", "w").write("\n".join(signet) + "\n")
open(f"{out}/selectors-k8s.txt", "w").write("\n".join(s for s in spire if s.startswith("k8s:")) + "\n")
PY
[[ $? -eq 0 ]] || fail "could not read the selector sets from the agents' logs"
sed 's/^/  spire-agent | /' "$OUT/selectors-spire.txt"
assert_same_lines "selector sets of spire-agent and signet-agent" "$OUT/selectors-spire.txt" "$OUT/selectors-signet.txt"
for s in k8s:ns:shop k8s:sa:frontend "k8s:pod-uid:$POD_UID" k8s:pod-name:frontend-5d4f8-x2x9q \
    "k8s:node-name:$NODE" k8s:container-name:app k8s:pod-image-count:2 k8s:pod-init-image-count:1 \
    k8s:pod-label:app:frontend k8s:pod-owner:ReplicaSet:frontend-5d4f8 \
    "k8s:pod-owner-uid:ReplicaSet:$OWNER_UID" k8s:container-image:registry.example/shop/frontend:2.1 \
    k8s:pod-init-image:docker.io/library/busybox:1.36 unix:uid:1337; do
    grep -qxF -- "$s" "$OUT/selectors-signet.txt" || fail "selector $s missing"
done
assert_eq "k8s selectors" 21 "$(wc -l <"$OUT/selectors-k8s.txt")"

step "an entry written with every k8s selector SPIRE produced matches signet-agent's workload"
args=()
while read -r s; do args+=(-selector "$s"); done <"$OUT/selectors-k8s.txt"
must entry-all "$SPIRE_SERVER" entry create -socketPath "$S/api.sock" \
    -parentID "$ID_SIGNET" -spiffeID "spiffe://$TD/spire-written" "${args[@]}"
# The workload now has two identities (either may be the default one): look for it in the list.
has_svid() {
    local out
    out="$(as_workload "$A_SIGNET/public/api.sock" -expect "$WANT" -timeout 10s 2>&1 || true)"
    grep -q "spiffe://$TD/spire-written" <<<"$out"
}
wait_for "the SPIRE-written entry reaches the workload through signet-agent" 30 has_svid
echo PASS
