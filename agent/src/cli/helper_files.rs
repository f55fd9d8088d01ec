//! spiffe-helper's X.509 files: one SVID (the first, or the one with the configured hint) in
//! three files, as spiffe-helper's `disk.WriteX509Context` fills them: the SVID file holds the
//! leaf and its intermediates (only the leaf with `add_intermediates_to_bundle`, the
//! intermediates then follow the authorities in the bundle file), the key file the PKCS#8
//! key, the bundle file the SVID's own trust domain's authorities, then (with
//! `include_federated_domains`) every federated domain's in trust-domain order; with
//! `omit_expired`, certificates already expired are left out of both certificate files.

use crate::cli::client::CliError;
use crate::cli::watch_plan::HelperNames;
use crate::cli::write::{Modes, OutFile, certs_pem, pem_block};
use crate::cli::x509::{Cert, Svid, X509Context};

/// The SVID with `hint`, or the first one when `hint` is empty.
pub(crate) fn pick<'a>(ctx: &'a X509Context, hint: &str) -> Result<&'a Svid, CliError> {
    let found = if hint.is_empty() {
        ctx.svids.first()
    } else {
        ctx.svids.iter().find(|s| s.hint == hint)
    };
    found.ok_or_else(|| CliError::new("failed to find the hinted x509 SVID"))
}

/// The three files for `ctx` under `dir`; `now` is Unix seconds (for `omit_expired`).
pub(crate) fn helper_layout(
    dir: &std::path::Path,
    ctx: &X509Context,
    names: &HelperNames,
    hint: &str,
    modes: Modes,
    now: i64,
) -> Result<Vec<OutFile>, CliError> {
    let svid = pick(ctx, hint)?;
    let own_domain = trust_domain_of(&svid.spiffe_id);
    let mut chain: Vec<&Cert> = svid.certs.iter().collect();
    let mut bundle: Vec<&Cert> = svid.bundle.iter().collect();
    if names.add_intermediates_to_bundle {
        bundle.extend(chain.drain(1..));
    }
    if names.include_federated_domains {
        for (domain, certs) in &ctx.federated {
            if trust_domain_of(domain) != own_domain {
                bundle.extend(certs);
            }
        }
    }
    let keep = |c: &&Cert| !names.omit_expired || c.not_after >= now;
    Ok(vec![
        OutFile {
            what: "SVID".into(),
            path: dir.join(&names.svid),
            data: certs_pem(chain.into_iter().filter(keep)).into_bytes(),
            mode: modes.cert,
        },
        OutFile {
            what: "key".into(),
            path: dir.join(&names.key),
            data: pem_block("PRIVATE KEY", &svid.key_der).into_bytes(),
            mode: modes.key,
        },
        OutFile {
            what: "bundle".into(),
            path: dir.join(&names.bundle),
            data: certs_pem(bundle.into_iter().filter(keep)).into_bytes(),
            mode: modes.cert,
        },
    ])
}

/// `example.org` for `spiffe://example.org/...`, `example.org`, or `spiffe://example.org`.
fn trust_domain_of(id: &str) -> &str {
    let rest = id.strip_prefix("spiffe://").unwrap_or(id);
    rest.split('/').next().unwrap_or(rest)
}
