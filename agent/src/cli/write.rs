//! SVID files. [`spire_layout`] is SPIRE's `api fetch x509 -write` layout: per SVID `i`,
//! `svid.<i>.pem` (leaf and intermediates), `svid.<i>.key` (PKCS#8 PEM, 0600),
//! `bundle.<i>.pem`, and per federated trust domain `j` (sorted) `federated_bundle.<i>.<j>.pem`;
//! certificates are 0644. Every file is replaced atomically ([`atomic_file`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::cli::atomic_file::{self, FileSet};
use crate::cli::client::CliError;
use crate::cli::x509::{Cert, X509Context};

/// Default mode of certificate and bundle files.
pub(crate) const CERT_MODE: u32 = 0o644;
/// Default mode of private key files.
pub(crate) const KEY_MODE: u32 = 0o600;

/// The modes files are written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Modes {
    /// Certificates and bundles.
    pub(crate) cert: u32,
    /// Private keys.
    pub(crate) key: u32,
}

impl Default for Modes {
    fn default() -> Self {
        Self {
            cert: CERT_MODE,
            key: KEY_MODE,
        }
    }
}

/// One file to write, and what it holds (for the "Writing ... to file ..." line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutFile {
    pub(crate) what: String,
    pub(crate) path: PathBuf,
    pub(crate) data: Vec<u8>,
    pub(crate) mode: u32,
}

impl OutFile {
    /// `Writing <what> to file <path>.`
    pub(crate) fn announcement(&self) -> String {
        format!("Writing {} to file {}.", self.what, self.path.display())
    }
}

/// SPIRE's `-write` files for every SVID of `ctx`.
pub(crate) fn spire_layout(dir: &Path, ctx: &X509Context, modes: Modes) -> Vec<OutFile> {
    let mut files = Vec::new();
    for (i, svid) in ctx.svids.iter().enumerate() {
        files.push(OutFile {
            what: format!("SVID #{i}"),
            path: dir.join(format!("svid.{i}.pem")),
            data: certs_pem(&svid.certs).into_bytes(),
            mode: modes.cert,
        });
        files.push(OutFile {
            what: format!("key #{i}"),
            path: dir.join(format!("svid.{i}.key")),
            data: pem_block("PRIVATE KEY", &svid.key_der).into_bytes(),
            mode: modes.key,
        });
        files.push(OutFile {
            what: format!("bundle #{i}"),
            path: dir.join(format!("bundle.{i}.pem")),
            data: certs_pem(&svid.bundle).into_bytes(),
            mode: modes.cert,
        });
        for (j, (domain, certs)) in ctx.federated.iter().enumerate() {
            files.push(OutFile {
                what: format!("federated bundle #{j} for trust domain {domain}"),
                path: dir.join(format!("federated_bundle.{i}.{j}.pem")),
                data: certs_pem(certs).into_bytes(),
                mode: modes.cert,
            });
        }
    }
    files
}

/// `api fetch x509 --write DIR`: writes SPIRE's files, announcing each on `out`.
pub(crate) fn write_files(
    dir: &Path,
    ctx: &X509Context,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    for file in spire_layout(dir, ctx, Modes::default()) {
        writeln!(out, "{}", file.announcement())
            .map_err(|e| CliError::new(format!("write to stdout: {e}")))?;
        atomic_file::replace(&file.path, &file.data, file.mode)
            .map_err(|e| open_error(&file, &e))?;
    }
    Ok(())
}

/// Stages every file, then renames them all into place.
pub(crate) fn write_all(files: &[OutFile]) -> Result<(), CliError> {
    let mut set = FileSet::default();
    for file in files {
        set.stage(&file.path, &file.data, file.mode)
            .map_err(|e| open_error(file, &e))?;
    }
    set.commit()
        .map_err(|e| CliError::new(format!("rename into {}: {e}", dir_of(files))))
}

fn dir_of(files: &[OutFile]) -> String {
    files
        .first()
        .and_then(|f| f.path.parent())
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn open_error(file: &OutFile, e: &std::io::Error) -> CliError {
    CliError::new(format!("open {}: {e}", file.path.display()))
}

/// The certificates as consecutive PEM blocks.
pub(crate) fn certs_pem<'a>(certs: impl IntoIterator<Item = &'a Cert>) -> String {
    certs
        .into_iter()
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
