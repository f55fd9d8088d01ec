//! `api fetch x509 --write DIR`: SPIRE's file names and modes. Per SVID `i`: `svid.<i>.pem`
//! (leaf and intermediates), `svid.<i>.key` (PKCS#8 PEM, 0600), `bundle.<i>.pem`, and per
//! federated trust domain `j` (sorted) `federated_bundle.<i>.<j>.pem`. Certificates are
//! 0644. Each file is written to a temporary name and renamed into place.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::cli::client::CliError;
use crate::cli::x509::{Cert, X509Context};

const PUBLIC_MODE: u32 = 0o644;
const PRIVATE_MODE: u32 = 0o600;

/// Writes every SVID, key and bundle of `ctx` under `dir`, announcing each file on `out`.
pub(crate) fn write_files(
    dir: &Path,
    ctx: &X509Context,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    for (i, svid) in ctx.svids.iter().enumerate() {
        let svid_path = dir.join(format!("svid.{i}.pem"));
        let key_path = dir.join(format!("svid.{i}.key"));
        let bundle_path = dir.join(format!("bundle.{i}.pem"));

        announce(
            out,
            format!("Writing SVID #{i} to file {}.", svid_path.display()),
        )?;
        write_file(&svid_path, certs_pem(&svid.certs).as_bytes(), PUBLIC_MODE)?;

        announce(
            out,
            format!("Writing key #{i} to file {}.", key_path.display()),
        )?;
        write_file(
            &key_path,
            pem_block("PRIVATE KEY", &svid.key_der).as_bytes(),
            PRIVATE_MODE,
        )?;

        announce(
            out,
            format!("Writing bundle #{i} to file {}.", bundle_path.display()),
        )?;
        write_file(
            &bundle_path,
            certs_pem(&svid.bundle).as_bytes(),
            PUBLIC_MODE,
        )?;

        for (j, (domain, certs)) in ctx.federated.iter().enumerate() {
            let path = dir.join(format!("federated_bundle.{i}.{j}.pem"));
            announce(
                out,
                format!(
                    "Writing federated bundle #{j} for trust domain {domain} to file {}.",
                    path.display()
                ),
            )?;
            write_file(&path, certs_pem(certs).as_bytes(), PUBLIC_MODE)?;
        }
    }
    Ok(())
}

fn announce(out: &mut dyn Write, line: String) -> Result<(), CliError> {
    writeln!(out, "{line}").map_err(|e| CliError::new(format!("write to stdout: {e}")))
}

fn certs_pem(certs: &[Cert]) -> String {
    certs
        .iter()
        .map(|c| pem_block("CERTIFICATE", &c.der))
        .collect()
}

/// One PEM block with 64-column base64, as Go's `pem.EncodeToMemory` writes it.
pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Replaces `path` with `data`: written to a sibling temporary file created with `mode`,
/// synced, then renamed over `path`.
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), CliError> {
    let tmp = temp_sibling(path);
    let result = write_new(&tmp, data, mode).and_then(|()| std::fs::rename(&tmp, path));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CliError::new(format!("open {}: {}", path.display(), e))
    })
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

fn temp_sibling(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}
