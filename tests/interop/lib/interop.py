#!/usr/bin/env python3
"""Normalises CLI output (SPIRE's pretty text or any protojson-like JSON) for comparisons.

Every sub-command reads one file and prints canonical, tab-separated lines that bash can diff:

  entries FILE       id  spiffe_id  parent_id  selectors(sorted, comma)  x509_ttl  jwt_ttl  revision
  entries-full FILE  as `entries`, then admin downstream store_svid expires_at hint
                     dns_names(sorted) federates_with(sorted); JSON input only
  count FILE         the N of "Found N entr(y|ies)" / "Found N attested agent(s)" (0 for "No ...")
  token FILE         the join token value
  agents FILE        spiffe_id  attestation_type  banned  can_reattest
  bundle-pem FILE    X.509 authorities of a SPIFFE bundle (JWKS JSON) as PEM, in document order
  bundle-jwt FILE    kid of every jwt-svid key of a SPIFFE bundle, one per line
  bundle-json FILE   the same as bundle-pem but from a protojson types.Bundle ("x509_authorities")
  svids FILE         spiffe_id of every SVID in `spire-agent api fetch x509 -output json`, sorted
  jwt FILE BUNDLE DIR  decodes the JWT in FILE, finds its kid among the jwt_authorities of the
                     protojson bundle BUNDLE, writes DIR/{pub.pem,sig.der,input.bin} for
                     `openssl dgst -verify`, and prints "alg=.. kid=.. digest=.." then the claims JSON
  json-get FILE KEY  a top-level (dotted) key of a JSON document

Standard library only.
"""

import base64
import json
import re
import sys
import textwrap


def die(msg):
    print(f"interop.py: {msg}", file=sys.stderr)
    sys.exit(2)


def load_json(text):
    text = text.strip()
    if not text or text[0] not in "[{":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def id_str(v):
    """A SPIFFE ID given as a string or as {trust_domain, path}."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        td = v.get("trust_domain", v.get("trustDomain", ""))
        return f"spiffe://{td}{v.get('path', '')}"
    return str(v)


def sel_str(s):
    if isinstance(s, str):
        return s
    return f"{s.get('type', '')}:{s.get('value', '')}"


def ttl_str(v):
    v = int(v or 0)
    return "default" if v == 0 else str(v)


def first(d, *keys, default=None):
    for k in keys:
        if k in d:
            return d[k]
    return default


# --- entries --------------------------------------------------------------------------------------

def entry_line(e):
    return "\t".join([
        str(first(e, "id", "entry_id", "entryId", default="")),
        id_str(first(e, "spiffe_id", "spiffeId")),
        id_str(first(e, "parent_id", "parentId")),
        ",".join(sorted(sel_str(s) for s in first(e, "selectors", default=[]) or [])),
        ttl_str(first(e, "x509_svid_ttl", "x509SvidTtl", "ttl", default=0)),
        ttl_str(first(e, "jwt_svid_ttl", "jwtSvidTtl", default=0)),
        str(int(first(e, "revision_number", "revisionNumber", "revision", default=0) or 0)),
    ])


def entry_full_line(e):
    return "\t".join([
        entry_line(e),
        str(bool(first(e, "admin", default=False))).lower(),
        str(bool(first(e, "downstream", default=False))).lower(),
        str(bool(first(e, "store_svid", "storeSvid", default=False))).lower(),
        str(int(first(e, "expires_at", "expiresAt", default=0) or 0)),
        first(e, "hint", default="") or "",
        ",".join(sorted(first(e, "dns_names", "dnsNames", default=[]) or [])),
        ",".join(sorted(first(e, "federates_with", "federatesWith", default=[]) or [])),
    ])


def json_entries(doc):
    """Finds entries in ListEntriesResponse, BatchCreateEntryResponse, a bare Entry or a list."""
    if isinstance(doc, list):
        out = []
        for d in doc:
            out.extend(json_entries(d))
        return out
    if not isinstance(doc, dict):
        return []
    if "entries" in doc:
        return json_entries(doc["entries"] or [])
    if "results" in doc:
        out = []
        for r in doc["results"] or []:
            code = (r.get("status") or {}).get("code", 0)
            if code in (0, "OK", None) and r.get("entry"):
                out.append(r["entry"])
        return out
    if "entry" in doc and isinstance(doc["entry"], dict):
        return [doc["entry"]]
    if any(k in doc for k in ("spiffe_id", "spiffeId")):
        return [doc]
    return []


PRETTY_KEYS = {
    "Entry ID": "id",
    "SPIFFE ID": "spiffe_id",
    "Parent ID": "parent_id",
    "Revision": "revision_number",
    "X509-SVID TTL": "x509_svid_ttl",
    "JWT-SVID TTL": "jwt_svid_ttl",
    "Selector": "selectors",
}


def pretty_blocks(text, starts=()):
    """Splits SPIRE-style 'Key   : value' output into blocks. A block ends at a blank line or
    just before a key listed in `starts` (so output without blank separators still splits)."""
    blocks, cur = [], []
    for line in text.splitlines():
        if not line.strip():
            if cur:
                blocks.append(cur)
                cur = []
            continue
        m = re.match(r"^\s*([A-Za-z][A-Za-z0-9 _-]*?)\s*:\s?(.*)$", line)
        if not m:
            continue
        key = m.group(1).strip()
        if key in starts and cur and any(k == key for k, _ in cur):
            blocks.append(cur)
            cur = []
        cur.append((key, m.group(2).strip()))
    if cur:
        blocks.append(cur)
    return blocks


def pretty_entries(text):
    out = []
    for block in pretty_blocks(text, starts=("Entry ID",)):
        keys = [k for k, _ in block]
        if "Entry ID" not in keys and "SPIFFE ID" not in keys:
            continue
        if "Parent ID" not in keys:  # an agent block, not an entry
            continue
        e = {"selectors": []}
        for k, v in block:
            f = PRETTY_KEYS.get(k)
            if f == "selectors":
                e["selectors"].append(v)
            elif f in ("x509_svid_ttl", "jwt_svid_ttl"):
                e[f] = 0 if v == "default" else int(v)
            elif f == "revision_number":
                e[f] = int(v)
            elif f:
                e[f] = v
        out.append(e)
    return out


def cmd_entries(text):
    doc = load_json(text)
    ents = json_entries(doc) if doc is not None else pretty_entries(text)
    for e in ents:
        print(entry_line(e))


def cmd_entries_full(text):
    doc = load_json(text)
    if doc is None:
        die("entries-full needs JSON output")
    for e in json_entries(doc):
        print(entry_full_line(e))


def cmd_count(text):
    doc = load_json(text)
    if doc is not None:
        if isinstance(doc, dict) and "count" in doc:
            print(int(doc["count"]))
            return
        if isinstance(doc, dict) and "agents" in doc:
            print(len(doc["agents"] or []))
            return
        print(len(json_entries(doc)))
        return
    m = re.search(r"Found (\d+) ", text)
    if m:
        print(int(m.group(1)))
    elif re.search(r"^No .* found", text, re.M):
        print(0)
    else:
        die("no count in output")


def cmd_token(text):
    doc = load_json(text)
    if isinstance(doc, dict):
        v = first(doc, "value", "token")
        if v:
            print(v)
            return
    m = re.search(r"Token:\s*(\S+)", text)
    if not m:
        die("no token in output")
    print(m.group(1))


def cmd_agents(text):
    doc = load_json(text)
    agents = []
    if doc is not None:
        items = doc.get("agents", []) if isinstance(doc, dict) else doc
        for a in items or []:
            agents.append((
                id_str(first(a, "id", "spiffe_id", "spiffeId")),
                first(a, "attestation_type", "attestationType", default=""),
                str(bool(first(a, "banned", default=False))).lower(),
                str(bool(first(a, "can_reattest", "canReattest", default=False))).lower(),
            ))
    else:
        for block in pretty_blocks(text, starts=("SPIFFE ID",)):
            d = {}
            for k, v in block:
                d[k] = v
            if "SPIFFE ID" not in d or "Attestation type" not in d:
                continue
            agents.append((d["SPIFFE ID"], d["Attestation type"],
                           d.get("Banned", "false").lower(), d.get("Can re-attest", "false").lower()))
    for a in agents:
        print("\t".join(a))


def b64url_or_std(s):
    s = s.strip()
    pad = "=" * (-len(s) % 4)
    try:
        return base64.b64decode(s + pad, validate=True)
    except Exception:
        return base64.urlsafe_b64decode(s + pad)


def der_to_pem(der):
    b = base64.b64encode(der).decode()
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(textwrap.wrap(b, 64)) + "\n-----END CERTIFICATE-----"


def cmd_bundle_pem(text):
    doc = load_json(text)
    if not isinstance(doc, dict) or "keys" not in doc:
        die("not a SPIFFE bundle (JWKS with 'keys')")
    for k in doc["keys"]:
        if k.get("use") == "x509-svid":
            x5c = k.get("x5c") or []
            if len(x5c) != 1:
                die(f"x509-svid key with {len(x5c)} x5c certificates (want exactly 1)")
            print(der_to_pem(base64.b64decode(x5c[0])))


def cmd_bundle_jwt(text):
    doc = load_json(text)
    if not isinstance(doc, dict) or "keys" not in doc:
        die("not a SPIFFE bundle (JWKS with 'keys')")
    for k in doc["keys"]:
        if k.get("use") == "jwt-svid":
            print(k.get("kid", ""))


def cmd_bundle_json(text):
    doc = load_json(text)
    if not isinstance(doc, dict):
        die("not a JSON bundle")
    if "bundles" in doc:
        doc = (doc["bundles"] or [{}])[0]
    for a in first(doc, "x509_authorities", "x509Authorities", default=[]) or []:
        print(der_to_pem(b64url_or_std(a["asn1"])))


def cmd_svids(text):
    doc = load_json(text)
    if not isinstance(doc, dict):
        die("not JSON")
    for sid in sorted(id_str(first(v, "spiffe_id", "spiffeId")) for v in doc.get("svids") or []):
        print(sid)


def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def der_int(raw):
    raw = raw.lstrip(b"\x00") or b"\x00"
    if raw[0] & 0x80:
        raw = b"\x00" + raw
    return b"\x02" + der_len(len(raw)) + raw


def cmd_jwt(text, bundle_path, outdir):
    parts = text.strip().split(".")
    if len(parts) != 3:
        die("not a compact JWS")
    header = json.loads(b64url_or_std(parts[0]))
    claims = json.loads(b64url_or_std(parts[1]))
    sig = b64url_or_std(parts[2])
    alg, kid = header.get("alg", ""), header.get("kid", "")
    with open(bundle_path, encoding="utf-8") as f:
        bundle = json.load(f)
    if "bundles" in bundle:
        bundle = (bundle["bundles"] or [{}])[0]
    keys = {a.get("key_id", a.get("keyId")): a for a in
            first(bundle, "jwt_authorities", "jwtAuthorities", default=[]) or []}
    if kid not in keys:
        die(f"kid {kid!r} not among the bundle's JWT authorities {sorted(keys)}")
    pub = b64url_or_std(first(keys[kid], "public_key", "publicKey"))
    with open(f"{outdir}/pub.pem", "w", encoding="ascii") as f:
        b = base64.b64encode(pub).decode()
        f.write("-----BEGIN PUBLIC KEY-----\n" + "\n".join(textwrap.wrap(b, 64)) + "\n-----END PUBLIC KEY-----\n")
    if alg.startswith("ES"):
        half = len(sig) // 2
        body = der_int(sig[:half]) + der_int(sig[half:])
        sig = b"\x30" + der_len(len(body)) + body
    with open(f"{outdir}/sig.der", "wb") as f:
        f.write(sig)
    with open(f"{outdir}/input.bin", "wb") as f:
        f.write(f"{parts[0]}.{parts[1]}".encode())
    digest = {"256": "sha256", "384": "sha384", "512": "sha512"}.get(alg[2:], "unknown")
    print(f"alg={alg} kid={kid} typ={header.get('typ', '')} digest={digest}")
    print(json.dumps(claims, sort_keys=True))


def cmd_json_get(text, key):
    doc = load_json(text)
    if doc is None:
        die("not JSON")
    for part in key.split("."):
        if isinstance(doc, list):
            doc = doc[int(part)]
        else:
            doc = doc.get(part)
        if doc is None:
            die(f"no key {key}")
    print(doc if not isinstance(doc, (dict, list)) else json.dumps(doc))


def main(argv):
    if len(argv) < 3:
        die(__doc__)
    cmd, path = argv[1], argv[2]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    handlers = {
        "entries": cmd_entries,
        "entries-full": cmd_entries_full,
        "count": cmd_count,
        "token": cmd_token,
        "agents": cmd_agents,
        "bundle-pem": cmd_bundle_pem,
        "bundle-jwt": cmd_bundle_jwt,
        "bundle-json": cmd_bundle_json,
        "svids": cmd_svids,
    }
    if cmd == "json-get":
        cmd_json_get(text, argv[3])
    elif cmd == "jwt":
        cmd_jwt(text, argv[3], argv[4])
    elif cmd in handlers:
        handlers[cmd](text)
    else:
        die(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
