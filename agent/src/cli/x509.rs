//! An `X509SVIDResponse` read the way SPIRE's CLI reads it: parsed and checked (each SVID
//! must chain to its own bundle), then printed as the "Received N svid(s)" block.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use signet_proto::workload::X509svidResponse;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::cli::client::CliError;
use crate::cli::format::{go_duration, go_time};

/// One certificate and its validity (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cert {
    pub(crate) der: Vec<u8>,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

/// One SVID of the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Svid {
    pub(crate) spiffe_id: String,
    pub(crate) hint: String,
    /// Leaf first, then intermediates.
    pub(crate) certs: Vec<Cert>,
    /// PKCS#8 DER.
    pub(crate) key_der: Vec<u8>,
    /// The SVID's own trust domain's authorities.
    pub(crate) bundle: Vec<Cert>,
}

/// A parsed response: the SVIDs and the federated bundles they all share, keyed as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct X509Context {
    pub(crate) svids: Vec<Svid>,
    pub(crate) federated: BTreeMap<String, Vec<Cert>>,
}

/// Parses every SVID, key and bundle of `resp`, with SPIRE's error wording.
pub(crate) fn parse_response(resp: &X509svidResponse) -> Result<X509Context, CliError> {
    if resp.svids.is_empty() {
        return Err(CliError::new("workload response contains no svids"));
    }
    let mut federated = BTreeMap::new();
    for (domain, der) in &resp.federated_bundles {
        let certs = parse_certs(der).map_err(|e| {
            CliError::new(format!(
                "failed to parse bundle for federated domain {domain:?}: {e}"
            ))
        })?;
        if certs.is_empty() {
            return Err(CliError::new(format!(
                "no certificates in bundle for federated domain {domain:?}"
            )));
        }
        federated.insert(domain.clone(), certs);
    }
    let mut svids = Vec::with_capacity(resp.svids.len());
    for (i, svid) in resp.svids.iter().enumerate() {
        let parsed = parse_svid(svid).map_err(|e| {
            CliError::new(format!(
                "failed to parse svid entry {i} for spiffe id {:?}: {e}",
                svid.spiffe_id
            ))
        })?;
        svids.push(parsed);
    }
    Ok(X509Context { svids, federated })
}

fn parse_svid(svid: &signet_proto::workload::X509svid) -> Result<Svid, String> {
    let certs = parse_certs(&svid.x509_svid)?;
    if certs.is_empty() {
        return Err("no certificates found".into());
    }
    rcgen::KeyPair::try_from(&svid.x509_svid_key[..])
        .map_err(|e| format!("failed to parse private key: {e}"))?;
    let bundle =
        parse_certs(&svid.bundle).map_err(|e| format!("failed to parse trust bundle: {e}"))?;
    if bundle.is_empty() {
        return Err("no certificates in trust bundle".into());
    }
    Ok(Svid {
        spiffe_id: svid.spiffe_id.clone(),
        hint: svid.hint.clone(),
        certs,
        key_der: svid.x509_svid_key.to_vec(),
        bundle,
    })
}

/// Splits concatenated DER certificates.
pub(crate) fn parse_certs(mut buf: &[u8]) -> Result<Vec<Cert>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (rest, cert) = X509Certificate::from_der(buf)
            .map_err(|e| format!("x509: malformed certificate: {e}"))?;
        let used = buf.len() - rest.len();
        out.push(Cert {
            der: buf[..used].to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        });
        buf = rest;
    }
    Ok(out)
}

/// Checks each SVID against its bundle at `now` (Unix seconds), as go-spiffe's
/// `x509svid.Verify` does.
pub(crate) fn verify(ctx: &X509Context, now: i64) -> Result<(), CliError> {
    for svid in &ctx.svids {
        verify_svid(svid, now).map_err(|e| {
            CliError::new(format!(
                "{:?} SVID failed verification against bundle: {e}",
                svid.spiffe_id
            ))
        })?;
    }
    Ok(())
}

fn verify_svid(svid: &Svid, now: i64) -> Result<(), String> {
    let id = signet_common::id::parse_id(&svid.spiffe_id).map_err(|e| e.to_string())?;
    let certs = svid
        .certs
        .iter()
        .map(|c| parse_one(&c.der))
        .collect::<Result<Vec<_>, _>>()?;
    let roots = svid
        .bundle
        .iter()
        .map(|c| parse_one(&c.der))
        .collect::<Result<Vec<_>, _>>()?;
    let Some((leaf, intermediates)) = certs.split_first() else {
        return Err("x509svid: empty certificates chain".into());
    };
    let leaf_id = signet_common::x509::spiffe_id_of_cert(&svid.certs[0].der)
        .ok_or("x509svid: could not get leaf SPIFFE ID: certificate has no valid SPIFFE ID")?;
    if leaf.is_ca() {
        return Err("x509svid: leaf certificate with CA flag set to true".into());
    }
    if let Ok(Some(ku)) = leaf.key_usage() {
        if ku.value.key_cert_sign() {
            return Err("x509svid: leaf certificate with KeyCertSign key usage".into());
        }
        if ku.value.crl_sign() {
            return Err("x509svid: leaf certificate with KeyCrlSign key usage".into());
        }
    }
    if leaf_id.trust_domain_name() != id.trust_domain_name() {
        return Err(format!(
            "x509svid: could not get X509 bundle: x509bundle: no X.509 bundle found for trust domain: {:?}",
            leaf_id.trust_domain_name()
        ));
    }
    verify_chain(leaf, intermediates, &roots, now)
        .map_err(|e| format!("x509svid: could not verify leaf certificate: x509: {e}"))
}

fn parse_one(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| format!("x509: malformed certificate: {e}"))
}

/// Walks from the leaf through the intermediates to a bundle authority, checking each
/// signature and each certificate's validity at `now`.
fn verify_chain(
    leaf: &X509Certificate<'_>,
    intermediates: &[X509Certificate<'_>],
    roots: &[X509Certificate<'_>],
    now: i64,
) -> Result<(), String> {
    let mut current = leaf;
    let mut used = vec![false; intermediates.len()];
    loop {
        check_validity(current, now)?;
        if let Some(root) = roots.iter().find(|r| signed_by(current, r)) {
            return check_validity(root, now);
        }
        let next = intermediates
            .iter()
            .enumerate()
            .find(|(i, c)| !used[*i] && c.is_ca() && signed_by(current, c));
        match next {
            Some((i, cert)) => {
                used[i] = true;
                current = cert;
            }
            None => return Err("certificate signed by unknown authority".into()),
        }
    }
}

fn signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    cert.issuer().as_raw() == issuer.subject().as_raw()
        && signet_common::sigcheck::verify_cert(cert, issuer.public_key()).is_ok()
}

fn check_validity(cert: &X509Certificate<'_>, now: i64) -> Result<(), String> {
    let (before, after) = (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    );
    if now < before {
        return Err(format!(
            "certificate has expired or is not yet valid: current time {} is before {}",
            go_time(now),
            go_time(before)
        ));
    }
    if now > after {
        return Err(format!(
            "certificate has expired or is not yet valid: current time {} is after {}",
            go_time(now),
            go_time(after)
        ));
    }
    Ok(())
}

/// The block SPIRE prints per response: a count line, then each SVID with its validity
/// windows, then a blank line.
pub(crate) fn print(out: &mut dyn Write, ctx: &X509Context, elapsed: Duration) -> io::Result<()> {
    let n = ctx.svids.len();
    let plural = if n == 1 { "" } else { "s" };
    writeln!(
        out,
        "Received {n} svid{plural} after {}",
        go_duration(elapsed)
    )?;
    for svid in &ctx.svids {
        writeln!(out)?;
        print_svid(out, svid)?;
        for (domain, certs) in &ctx.federated {
            for (i, ca) in certs.iter().enumerate() {
                let num = i + 1;
                writeln!(
                    out,
                    "[{domain}] CA #{num} Valid After:\t{}",
                    go_time(ca.not_before)
                )?;
                writeln!(
                    out,
                    "[{domain}] CA #{num} Valid Until:\t{}",
                    go_time(ca.not_after)
                )?;
            }
        }
    }
    writeln!(out)
}

fn print_svid(out: &mut dyn Write, svid: &Svid) -> io::Result<()> {
    writeln!(out, "SPIFFE ID:\t\t{}", svid.spiffe_id)?;
    if !svid.hint.is_empty() {
        writeln!(out, "Hint:\t\t\t{}", svid.hint)?;
    }
    if let Some(leaf) = svid.certs.first() {
        writeln!(out, "SVID Valid After:\t{}", go_time(leaf.not_before))?;
        writeln!(out, "SVID Valid Until:\t{}", go_time(leaf.not_after))?;
    }
    for (i, c) in svid.certs.iter().enumerate().skip(1) {
        writeln!(
            out,
            "Intermediate #{i} Valid After:\t{}",
            go_time(c.not_before)
        )?;
        writeln!(
            out,
            "Intermediate #{i} Valid Until:\t{}",
            go_time(c.not_after)
        )?;
    }
    for (i, ca) in svid.bundle.iter().enumerate() {
        let num = i + 1;
        writeln!(out, "CA #{num} Valid After:\t{}", go_time(ca.not_before))?;
        writeln!(out, "CA #{num} Valid Until:\t{}", go_time(ca.not_after))?;
    }
    Ok(())
}
