#!/usr/bin/env node
// Node's @grpc/grpc-js (pure JS HTTP/2) on the Workload API socket, with the Workload API
// proto loaded from proto/ by @grpc/proto-loader. A plain client for "unix://<path>": no
// channel option overrides the authority.
//
//   node workload_check.js <socket path> <expected SPIFFE ID> <audience>
//
// FetchX509SVID (first response): default SVID has the ID, every certificate of the chain
// is issued and signed by the next, the last by a root of the bundle, the leaf's URI SAN is
// the ID and the key matches; FetchX509Bundles has the trust domain; FetchJWTSVID, then
// ValidateJWTSVID for the audience (ok) and a wrong one (InvalidArgument, SPIRE's text); a
// call without the security header (InvalidArgument "security header missing from
// request"). Exits 0, or prints "workload_check.js: FAIL: <why>" and exits 1.
'use strict';

const path = require('path');
const crypto = require('crypto');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const [socket, expect, audience] = process.argv.slice(2);
const fail = (why) => {
  console.error(`workload_check.js: FAIL: ${why}`);
  process.exit(1);
};
if (!socket || !expect || !audience) fail('usage: workload_check.js <socket> <id> <audience>');

const protoRoot = path.resolve(__dirname, '../../../proto/proto');
const def = loader.loadSync(path.join(protoRoot, 'workload.proto'), {
  includeDirs: [protoRoot],
  keepCase: true,
  longs: String,
  defaults: true,
});
const Api = grpc.loadPackageDefinition(def).SpiffeWorkloadAPI;
const client = new Api(`unix://${socket}`, grpc.credentials.createInsecure());
const header = () => {
  const m = new grpc.Metadata();
  m.set('workload.spiffe.io', 'true');
  return m;
};

// Splits concatenated DER certificates (SEQUENCE, definite length).
function splitDer(buf) {
  const out = [];
  let i = 0;
  while (i < buf.length) {
    if (buf[i] !== 0x30) fail(`not a DER SEQUENCE at offset ${i}`);
    let len = buf[i + 1];
    let head = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + buf[i + 2 + k];
      head = 2 + n;
    }
    out.push(new crypto.X509Certificate(buf.subarray(i, i + head + len)));
    i += head + len;
  }
  return out;
}

function firstResponse(method, request) {
  return new Promise((resolve, reject) => {
    const call = client[method](request, header());
    call.on('data', (msg) => {
      resolve(msg);
      call.cancel();
    });
    call.on('error', (e) => {
      if (e.code !== grpc.status.CANCELLED) reject(e);
    });
  });
}

const unary = (method, request, metadata = header()) =>
  new Promise((resolve, reject) =>
    client[method](request, metadata, (err, res) => (err ? reject(err) : resolve(res))));

async function main() {
  const x509 = await firstResponse('FetchX509SVID', {});
  const svid = x509.svids[0];
  if (svid.spiffe_id !== expect) fail(`default SVID is ${svid.spiffe_id}, want ${expect}`);
  const chain = splitDer(svid.x509_svid);
  const roots = splitDer(svid.bundle);
  const now = Date.now();
  chain.forEach((cert, i) => {
    if (new Date(cert.validFrom) > now || new Date(cert.validTo) < now) fail(`cert ${i} not valid now`);
    const issuer = chain[i + 1] || roots.find((r) => cert.checkIssued(r));
    if (!issuer || !cert.checkIssued(issuer) || !cert.verify(issuer.publicKey)) {
      fail(`certificate ${i} (${cert.subject}) is not signed by the next one or a bundle root`);
    }
  });
  if (chain[0].subjectAltName !== `URI:${expect}`) fail(`leaf SAN ${chain[0].subjectAltName}`);
  const key = crypto.createPrivateKey({ key: svid.x509_svid_key, format: 'der', type: 'pkcs8' });
  const spki = (k) => (k.type === 'public' ? k : crypto.createPublicKey(k)).export({ type: 'spki', format: 'der' });
  if (!spki(key).equals(spki(chain[0].publicKey))) fail('private key does not match the leaf');
  console.log(`SPIFFE ID: ${svid.spiffe_id}`);
  console.log(`Chain: ${chain.length} certificate(s), verified to ${roots.length} root(s)`);

  const bundles = await firstResponse('FetchX509Bundles', {});
  const td = expect.split('/').slice(0, 3).join('/');
  if (!bundles.bundles[td]) fail(`FetchX509Bundles lacks ${td}: ${Object.keys(bundles.bundles)}`);

  const jwt = await unary('FetchJWTSVID', { audience: [audience], spiffe_id: '' });
  const token = jwt.svids[0].svid;
  if (jwt.svids[0].spiffe_id !== expect) fail(`JWT-SVID for ${jwt.svids[0].spiffe_id}`);
  const ok = await unary('ValidateJWTSVID', { audience, svid: token });
  if (ok.spiffe_id !== expect) fail(`ValidateJWTSVID returned ${ok.spiffe_id}`);
  const wrong = `not-${audience}`;
  try {
    await unary('ValidateJWTSVID', { audience: wrong, svid: token });
    fail('ValidateJWTSVID accepted the wrong audience');
  } catch (e) {
    const want = `expected audience in ["${wrong}"] (audience=["${audience}"])`;
    if (e.code !== grpc.status.INVALID_ARGUMENT || !e.details.includes(want)) {
      fail(`wrong audience: ${e.code} ${e.details}, want InvalidArgument containing ${want}`);
    }
    console.log(`Wrong audience: ${e.details}`);
  }

  try {
    await unary('FetchJWTSVID', { audience: [audience], spiffe_id: '' }, new grpc.Metadata());
    fail('a call without the security header succeeded');
  } catch (e) {
    if (e.code !== grpc.status.INVALID_ARGUMENT || e.details !== 'security header missing from request') {
      fail(`without the header: ${e.code} ${e.details}`);
    }
    console.log(`No header: ${e.details}`);
  }
  client.close();
}

main().catch((e) => fail(e.stack || String(e)));
