//! `UpstreamAuthority "disk"`: the server CA is signed by a CA whose cert and key are files.

use std::path::PathBuf;

/// Configuration of the disk upstream authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamDisk {
    /// PEM: the upstream CA certificate (then any chain up to the roots in `bundle_file_path`).
    pub cert_file_path: PathBuf,
    /// PEM: its private key.
    pub key_file_path: PathBuf,
    /// PEM: the trust roots; absent means the cert itself is the (self-signed) root.
    pub bundle_file_path: Option<PathBuf>,
}
