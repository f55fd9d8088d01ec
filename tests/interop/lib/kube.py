#!/usr/bin/env python3
"""A real Kubernetes API server for tests: kube-apiserver on kine (SQLite), nothing else.

No kubelet, scheduler or controller-manager runs: pods are API objects with spec.nodeName set,
nodes are created by hand, and pod-bound service account tokens come from the TokenRequest API
(what a kubelet would write into a projected volume). Everything listens on 127.0.0.1.

  kube.py up DIR [--bin BINDIR] [--owner-pid PID [--cleanup]] [--issuer URL]
        start kine + kube-apiserver with their state in DIR (created, 0700), wait until
        /readyz answers, write DIR/cluster.json (below) and DIR/kubeconfig (admin), print
        the cluster.json path. With --owner-pid a watchdog stops the cluster when that
        process exits (a test binary that never runs its teardown), and with --cleanup
        it then removes DIR as well. The pids go to
        DIR/pids and, when $WORKDIR is set (interop scenarios), to $WORKDIR/pids.
  kube.py down DIR                 stop what `up` started (apiserver first, then kine)
  kube.py fixture DIR --ns NS --sa SA --node NODE --pod POD [--node-label K=V]...
        [--pod-label K=V]... [--host-ip IP]
        create (if missing) the namespace, service account, Node and Pod (bound to NODE,
        running as SA), set the pod's status.hostIP; print {"node_uid","pod_uid","sa_uid"}
  kube.py token DIR --ns NS --sa SA [--pod POD] [--audience A]... [--seconds N] [--out FILE]
        TokenRequest (bound to the pod if given); print the token or write it to FILE
  kube.py kubeconfig DIR --ns NS --sa SA --out FILE
        a kubeconfig that authenticates as that service account (a TokenRequest token)
  kube.py apply DIR FILE           create the objects in a JSON file (an object or a list)
  kube.py get DIR PATH             GET an API path, print the JSON body
  kube.py delete DIR PATH [--force]   DELETE (--force: grace period 0, as a pod needs
                                   when no kubelet ever confirms it stopped)

cluster.json: {"server", "token", "ca_file", "kubeconfig", "issuer", "sa_key" (PKCS#8 PEM,
the service-account signing key), "sa_pub", "dir", "pids": {"kine", "apiserver"}}.

Binaries: --bin, else $KUBE_BIN_DIR, else tests/interop/bin (tests/interop/build.sh builds
kube-apiserver and kine there).
"""

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BIN = os.path.join(os.path.dirname(HERE), "bin")
DEFAULT_ISSUER = "https://kubernetes.default.svc"
READY_TIMEOUT = 120


def die(msg):
    print(f"kube.py: {msg}", file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child of ours is not alive
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def wait_for_file_text(path, text, proc, what, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            die(f"{what} exited with {proc.returncode}; log: {tail(path)}")
        try:
            with open(path, errors="replace") as f:
                if text in f.read():
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    die(f"{what} not ready after {timeout}s; log: {tail(path)}")


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


# --- API calls ------------------------------------------------------------------------------


class Api:
    def __init__(self, cluster):
        self.server = cluster["server"]
        self.token = cluster["token"]
        self.ctx = ssl.create_default_context(cafile=cluster["ca_file"])

    def call(self, method, path, body=None, content_type="application/json", ok=(200, 201)):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = {"message": text}
            if e.code in ok:
                return e.code, parsed
            return e.code, parsed

    def must(self, method, path, body=None, ok=(200, 201), **kw):
        code, out = self.call(method, path, body, **kw)
        if code not in ok:
            die(f"{method} {path}: HTTP {code}: {out.get('message', out)}")
        return out

    def create(self, path, body):
        """POST, tolerating AlreadyExists (returns the existing object)."""
        code, out = self.call("POST", path, body)
        if code == 409:
            name = body["metadata"]["name"]
            return self.must("GET", f"{path}/{name}")
        if code not in (200, 201):
            die(f"POST {path}: HTTP {code}: {out.get('message', out)}")
        return out


# Collection paths of the kinds tests create.
CORE = {"Namespace": "namespaces", "Node": "nodes", "ServiceAccount": "serviceaccounts",
        "Pod": "pods", "ConfigMap": "configmaps", "Secret": "secrets", "Service": "services",
        "Endpoints": "endpoints"}
GROUPED = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
           "Role": "roles", "RoleBinding": "rolebindings",
           "StatefulSet": "statefulsets", "DaemonSet": "daemonsets", "Deployment": "deployments",
           "PodDisruptionBudget": "poddisruptionbudgets",
           "CustomResourceDefinition": "customresourcedefinitions",
           "ClusterSPIFFEID": "clusterspiffeids", "ClusterStaticEntry": "clusterstaticentries",
           "ClusterFederatedTrustDomain": "clusterfederatedtrustdomains"}
CLUSTER_SCOPED = {"Namespace", "Node", "ClusterRole", "ClusterRoleBinding",
                  "CustomResourceDefinition", "ClusterSPIFFEID", "ClusterStaticEntry",
                  "ClusterFederatedTrustDomain"}


def collection(obj):
    kind, version = obj["kind"], obj["apiVersion"]
    plural = CORE.get(kind) or GROUPED.get(kind)
    if plural is None:
        die(f"kind {kind} is not supported by kube.py apply")
    base = f"/api/{version}" if "/" not in version else f"/apis/{version}"
    if kind in CLUSTER_SCOPED:
        return f"{base}/{plural}"
    ns = obj["metadata"].get("namespace", "default")
    return f"{base}/namespaces/{ns}/{plural}"


# --- commands -------------------------------------------------------------------------------


def load(dir_):
    try:
        with open(os.path.join(dir_, "cluster.json")) as f:
            return json.load(f)
    except OSError as e:
        die(f"no cluster in {dir_}: {e}")


def cmd_up(a):
    bin_dir = a.bin or os.environ.get("KUBE_BIN_DIR") or DEFAULT_BIN
    apiserver = os.path.join(bin_dir, "kube-apiserver")
    kine = os.path.join(bin_dir, "kine")
    for b in (apiserver, kine):
        if not os.access(b, os.X_OK):
            die(f"missing {b} (run tests/interop/build.sh)")
    d = os.path.abspath(a.dir)
    os.makedirs(d, mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)
    for sub in ("certs", "kine"):
        os.makedirs(os.path.join(d, sub), mode=0o700, exist_ok=True)

    # Service-account signing key (EC P-256, PKCS#8 so tests can sign tokens with it too).
    ec_key, sa_key, sa_pub = (os.path.join(d, n) for n in ("sa-ec.key", "sa.key", "sa.pub"))
    run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ec_key])
    run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", ec_key, "-out", sa_key])
    run(["openssl", "ec", "-in", ec_key, "-pubout", "-out", sa_pub])
    os.remove(ec_key)
    token = secrets.token_hex(24)
    tokens = os.path.join(d, "tokens.csv")
    with open(os.open(tokens, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(f'{token},admin,admin-uid,"system:masters"\n')

    kine_port, api_port = free_port(), free_port()
    kine_log = os.path.join(d, "kine.log")
    api_log = os.path.join(d, "kube-apiserver.log")
    kine_proc = subprocess.Popen(
        [kine, "--endpoint", f"sqlite://{d}/kine/state.db",
         "--listen-address", f"127.0.0.1:{kine_port}", "--metrics-bind-address", "0"],
        stdout=open(kine_log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=d)
    record_pid(d, kine_proc.pid)
    wait_for_file_text(kine_log, "Kine available at", kine_proc, "kine", 60)

    issuer = a.issuer or DEFAULT_ISSUER
    api_proc = subprocess.Popen(
        [apiserver,
         f"--etcd-servers=http://127.0.0.1:{kine_port}",
         f"--service-account-issuer={issuer}",
         f"--service-account-signing-key-file={sa_key}",
         f"--service-account-key-file={sa_pub}",
         f"--token-auth-file={tokens}",
         f"--cert-dir={d}/certs",
         f"--secure-port={api_port}",
         "--bind-address=127.0.0.1",
         "--advertise-address=127.0.0.1",
         "--authorization-mode=RBAC",
         "--service-cluster-ip-range=10.0.0.0/24",
         "--profiling=false",
         "--enable-priority-and-fairness=false"],
        stdout=open(api_log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=d)
    record_pid(d, api_proc.pid)

    server = f"https://127.0.0.1:{api_port}"
    cluster = {"server": server, "token": token, "ca_file": os.path.join(d, "ca.crt"),
               "kubeconfig": os.path.join(d, "kubeconfig"), "issuer": issuer,
               "sa_key": sa_key, "sa_pub": sa_pub, "dir": d,
               "pids": {"kine": kine_proc.pid, "apiserver": api_proc.pid}}
    # The apiserver writes its self-signed serving cert (leaf, then its CA) before it listens.
    crt = os.path.join(d, "certs", "apiserver.crt")
    deadline = time.time() + READY_TIMEOUT
    while not os.path.exists(crt):
        if api_proc.poll() is not None:
            die(f"kube-apiserver exited with {api_proc.returncode}; log: {tail(api_log)}")
        if time.time() > deadline:
            die(f"kube-apiserver wrote no certificate in {READY_TIMEOUT}s; log: {tail(api_log)}")
        time.sleep(0.1)
    time.sleep(0.2)
    with open(crt) as f:
        blocks = f.read().split("-----END CERTIFICATE-----")
    ca = blocks[-2].strip() + "\n-----END CERTIFICATE-----\n"
    with open(cluster["ca_file"], "w") as f:
        f.write(ca[ca.index("-----BEGIN"):])
    write_kubeconfig(cluster["kubeconfig"], server, cluster["ca_file"], "admin", token)

    api = Api(cluster)
    while True:
        if api_proc.poll() is not None:
            die(f"kube-apiserver exited with {api_proc.returncode}; log: {tail(api_log)}")
        try:
            req = urllib.request.Request(server + "/readyz")
            req.add_header("Authorization", "Bearer " + token)
            with urllib.request.urlopen(req, context=api.ctx, timeout=5) as resp:
                if resp.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.time() > deadline:
            die(f"kube-apiserver not ready after {READY_TIMEOUT}s; log: {tail(api_log)}")
        time.sleep(0.2)

    path = os.path.join(d, "cluster.json")
    with open(path, "w") as f:
        json.dump(cluster, f, indent=2)
    if a.owner_pid:
        start_watchdog(d, a.owner_pid, [api_proc.pid, kine_proc.pid], a.cleanup)
    print(path)


def record_pid(d, pid):
    targets = [os.path.join(d, "pids")]
    if os.environ.get("WORKDIR"):
        targets.append(os.path.join(os.environ["WORKDIR"], "pids"))
    for t in targets:
        with open(t, "a") as f:
            f.write(f"{pid}\n")


def write_kubeconfig(path, server, ca_file, user, token):
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {server}
    certificate-authority: {ca_file}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: test
  context:
    cluster: test
    user: {user}
current-context: test
"""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)


def stop(pids, grace=3.0):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            continue
        deadline = time.time() + grace
        while alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def start_watchdog(d, owner, pids, cleanup):
    if os.fork() != 0:
        return
    # The watchdog, in the caller's process group (so run.sh reaps it too), detached from
    # the caller's stdout so `up` returns at once.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    while alive(owner) and any(alive(p) for p in pids):
        time.sleep(1)
    stop(pids)
    if cleanup and not alive(owner):
        shutil.rmtree(d, ignore_errors=True)
    os._exit(0)


def cmd_down(a):
    c = load(a.dir)
    stop([c["pids"]["apiserver"], c["pids"]["kine"]])


def cmd_fixture(a):
    c = load(a.dir)
    api = Api(c)
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": a.ns}})
    sa = api.create(f"/api/v1/namespaces/{a.ns}/serviceaccounts",
                    {"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": a.sa, "namespace": a.ns}})
    node = api.create("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                        "metadata": {"name": a.node,
                                                     "labels": labels(a.node_label)}})
    pod = api.create(f"/api/v1/namespaces/{a.ns}/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": a.pod, "namespace": a.ns, "labels": labels(a.pod_label)},
        "spec": {"serviceAccountName": a.sa, "nodeName": a.node,
                 "containers": [{"name": "agent", "image": "spire-agent:test"}]}})
    if a.host_ip:
        api.must("PATCH", f"/api/v1/namespaces/{a.ns}/pods/{a.pod}/status",
                 {"status": {"hostIP": a.host_ip, "phase": "Running"}},
                 content_type="application/merge-patch+json")
    print(json.dumps({"node_uid": node["metadata"]["uid"], "pod_uid": pod["metadata"]["uid"],
                      "sa_uid": sa["metadata"]["uid"]}))


def labels(pairs):
    out = {}
    for p in pairs or []:
        k, _, v = p.partition("=")
        out[k] = v
    return out


def request_token(api, ns, sa, pod=None, audiences=None, seconds=600):
    spec = {"expirationSeconds": seconds}
    if audiences:
        spec["audiences"] = audiences
    if pod:
        spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod}
    out = api.must("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
                   {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": spec})
    return out["status"]["token"]


def cmd_token(a):
    api = Api(load(a.dir))
    token = request_token(api, a.ns, a.sa, a.pod, a.audience, a.seconds)
    if a.out:
        tmp = a.out + ".tmp"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(token)
        os.replace(tmp, a.out)  # as the kubelet does: the agent never reads half a token
    else:
        print(token)


def cmd_kubeconfig(a):
    c = load(a.dir)
    token = request_token(Api(c), a.ns, a.sa, seconds=24 * 3600)
    write_kubeconfig(a.out, c["server"], c["ca_file"], f"{a.ns}-{a.sa}", token)


def cmd_apply(a):
    api = Api(load(a.dir))
    with open(a.file) as f:
        doc = json.load(f)
    for obj in doc if isinstance(doc, list) else [doc]:
        api.create(collection(obj), obj)


def cmd_get(a):
    code, out = Api(load(a.dir)).call("GET", a.path)
    print(json.dumps(out, indent=2))
    sys.exit(0 if code == 200 else 1)


def cmd_patch(a):
    with open(a.file) as f:
        body = json.load(f)
    print(json.dumps(Api(load(a.dir)).must("PATCH", a.path, body,
                                           content_type="application/merge-patch+json")))


def cmd_delete(a):
    path = a.path + ("?gracePeriodSeconds=0" if a.force else "")
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0} if a.force else None
    Api(load(a.dir)).must("DELETE", path, body, ok=(200, 202))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up")
    up.add_argument("dir")
    up.add_argument("--bin")
    up.add_argument("--owner-pid", type=int)
    up.add_argument("--cleanup", action="store_true")
    up.add_argument("--issuer")
    up.set_defaults(fn=cmd_up)
    down = sub.add_parser("down")
    down.add_argument("dir")
    down.set_defaults(fn=cmd_down)
    fx = sub.add_parser("fixture")
    fx.add_argument("dir")
    for opt in ("--ns", "--sa", "--node", "--pod"):
        fx.add_argument(opt, required=True)
    fx.add_argument("--node-label", action="append")
    fx.add_argument("--pod-label", action="append")
    fx.add_argument("--host-ip")
    fx.set_defaults(fn=cmd_fixture)
    tk = sub.add_parser("token")
    tk.add_argument("dir")
    tk.add_argument("--ns", required=True)
    tk.add_argument("--sa", required=True)
    tk.add_argument("--pod")
    tk.add_argument("--audience", action="append")
    tk.add_argument("--seconds", type=int, default=600)
    tk.add_argument("--out")
    tk.set_defaults(fn=cmd_token)
    kc = sub.add_parser("kubeconfig")
    kc.add_argument("dir")
    kc.add_argument("--ns", required=True)
    kc.add_argument("--sa", required=True)
    kc.add_argument("--out", required=True)
    kc.set_defaults(fn=cmd_kubeconfig)
    ap = sub.add_parser("apply")
    ap.add_argument("dir")
    ap.add_argument("file")
    ap.set_defaults(fn=cmd_apply)
    g = sub.add_parser("get")
    g.add_argument("dir")
    g.add_argument("path")
    g.set_defaults(fn=cmd_get)
    dl = sub.add_parser("delete")
    dl.add_argument("dir")
    dl.add_argument("path")
    dl.add_argument("--force", action="store_true")
    dl.set_defaults(fn=cmd_delete)
    pa = sub.add_parser("patch", help="merge-patch PATH (e.g. a pod's /status) with FILE (JSON)")
    pa.add_argument("dir")
    pa.add_argument("path")
    pa.add_argument("file")
    pa.set_defaults(fn=cmd_patch)
    a = p.parse_args()
    try:
        a.fn(a)
    except subprocess.CalledProcessError as e:
        die(f"{' '.join(e.cmd)} failed: {e.stderr.decode(errors='replace')}")


if __name__ == "__main__":
    main()
