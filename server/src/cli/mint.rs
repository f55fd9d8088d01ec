//! `x509 mint` and `jwt mint`: SVIDs minted by the server for an arbitrary SPIFFE ID.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, Subcommand};
use serde_json::json;
use signet_common::clock::{Clock, SystemClock};
use signet_proto::spire::api::server::bundle::v1::GetBundleRequest;
use signet_proto::spire::api::server::svid::v1::{MintJwtsvidRequest, MintX509svidRequest};

use crate::cli::client::{Admin, RpcError};
use crate::cli::common::AdminArgs;
use crate::cli::env::Env;
use crate::cli::output::{OutputFormat, b64, pem_block, print_json, print_struct, rfc3339};
use crate::cli::protojson;

/// `x509` subcommands.
#[derive(Debug, Subcommand)]
pub enum X509Command {
    /// Mints an X509-SVID.
    Mint(X509MintArgs),
}

/// `jwt` subcommands.
#[derive(Debug, Subcommand)]
pub enum JwtCommand {
    /// Mints a JWT-SVID.
    Mint(JwtMintArgs),
}

/// `x509 mint` flags.
#[derive(Debug, Clone, Args)]
pub struct X509MintArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// SPIFFE ID of the X509-SVID.
    #[arg(long)]
    pub spiffe_id: Option<String>,
    /// TTL of the X509-SVID (a duration such as 1h or 90s; bare numbers are seconds).
    #[arg(long, value_parser = parse_ttl)]
    pub ttl: Option<Duration>,
    /// DNS name that will be included in the SVID. Can be used more than once.
    #[arg(long)]
    pub dns: Vec<String>,
    /// Directory to write output to instead of stdout.
    #[arg(long)]
    pub write: Option<PathBuf>,
}

/// `jwt mint` flags.
#[derive(Debug, Clone, Args)]
pub struct JwtMintArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// SPIFFE ID of the JWT-SVID.
    #[arg(long)]
    pub spiffe_id: Option<String>,
    /// TTL of the JWT-SVID (a duration such as 5m or 90s; bare numbers are seconds).
    #[arg(long, value_parser = parse_ttl)]
    pub ttl: Option<Duration>,
    /// Audience claim that will be included in the SVID. Can be used more than once.
    #[arg(long)]
    pub audience: Vec<String>,
    /// File to write the token to instead of stdout.
    #[arg(long)]
    pub write: Option<PathBuf>,
}

/// A Go-style duration (`1h30m`, `90s`) or a number of seconds.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Whole seconds, rounded up, as the API's `int32`.
fn ttl_seconds(ttl: Option<Duration>) -> anyhow::Result<i32> {
    let ttl = ttl.unwrap_or_default();
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i32::try_from(secs).map_err(|_| anyhow::anyhow!("invalid value for TTL: {secs}s"))
}

fn required_id(flag: Option<&String>) -> anyhow::Result<signet_common::id::SpiffeId> {
    let Some(id) = flag else {
        anyhow::bail!("--spiffe-id must be specified");
    };
    Ok(signet_common::id::parse_id(id)?)
}

/// Warns when the server issued something shorter-lived than asked (more than a second of
/// slack, since expiry times are whole seconds).
fn warn_if_capped(env: &mut Env<'_>, what: &str, expires_at: i64, ttl: i32) -> anyhow::Result<()> {
    if ttl > 0 && expires_at + 1 < SystemClock.unix_now() + i64::from(ttl) {
        writeln!(
            env.stderr,
            "{what} lifetime was capped shorter than specified ttl; expires {:?}",
            rfc3339(expires_at)
        )?;
    }
    Ok(())
}

/// A fresh P-256 key and a CSR for `id` (URI SAN) and `dns` (DNS SANs), with an empty subject.
pub fn key_and_csr(
    id: &signet_common::id::SpiffeId,
    dns: &[String],
) -> anyhow::Result<(rcgen::KeyPair, Vec<u8>)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .context("unable to generate key")?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from(id.to_string()).context("unable to generate CSR")?,
    )];
    for name in dns {
        let name = rcgen::string::Ia5String::try_from(name.as_str())
            .with_context(|| format!("invalid DNS name {name:?}"))?;
        params.subject_alt_names.push(rcgen::SanType::DnsName(name));
    }
    let csr = params
        .serialize_request(&key)
        .context("unable to generate CSR")?;
    Ok((key, csr.der().to_vec()))
}

/// `x509 mint`'s JSON result (SPIRE's field order).
#[derive(Debug, serde::Serialize)]
struct X509MintResult {
    x509_svid: Vec<String>,
    private_key: String,
    root_cas: Vec<String>,
}

pub(crate) async fn execute_x509(cmd: X509Command, env: &mut Env<'_>) -> anyhow::Result<()> {
    let X509Command::Mint(args) = cmd;
    let id = required_id(args.spiffe_id.as_ref())?;
    let ttl = ttl_seconds(args.ttl)?;
    let (key, csr) = key_and_csr(&id, &args.dns)?;
    let mut admin = Admin::new(&args.common.socket.socket_path);
    let svid = admin
        .svid()
        .await?
        .mint_x509svid(MintX509svidRequest { csr, ttl })
        .await
        .map_err(RpcError)
        .context("unable to mint SVID")?
        .into_inner()
        .svid
        .unwrap_or_default();
    if svid.cert_chain.is_empty() {
        anyhow::bail!("server response missing SVID chain");
    }
    let bundle = admin
        .bundle()
        .await?
        .get_bundle(GetBundleRequest { output_mask: None })
        .await
        .map_err(RpcError)
        .context("unable to get bundle")?
        .into_inner();
    if bundle.x509_authorities.is_empty() {
        anyhow::bail!("server response missing X509 Authorities");
    }
    warn_if_capped(env, "X509-SVID", svid.expires_at, ttl)?;
    let key_der = key.serialize_der();
    let roots: Vec<&[u8]> = bundle
        .x509_authorities
        .iter()
        .map(|a| a.asn1.as_slice())
        .collect();
    let svid_pem: String = svid
        .cert_chain
        .iter()
        .map(|c| pem_block("CERTIFICATE", c))
        .collect();
    let key_pem = pem_block("PRIVATE KEY", &key_der);
    let bundle_pem: String = roots.iter().map(|c| pem_block("CERTIFICATE", c)).collect();
    if let Some(dir) = &args.write {
        let svid_path = dir.join("svid.pem");
        write_file(&svid_path, &svid_pem, 0o644).context("unable to write SVID")?;
        writeln!(env.stdout, "X509-SVID written to {}", svid_path.display())?;
        let key_path = dir.join("key.pem");
        write_file(&key_path, &key_pem, 0o600).context("unable to write key")?;
        writeln!(env.stdout, "Private key written to {}", key_path.display())?;
        let bundle_path = dir.join("bundle.pem");
        write_file(&bundle_path, &bundle_pem, 0o644).context("unable to write bundle")?;
        writeln!(env.stdout, "Root CAs written to {}", bundle_path.display())?;
        return Ok(());
    }
    if args.common.output == OutputFormat::Json {
        let result = X509MintResult {
            x509_svid: svid.cert_chain.iter().map(|c| b64(c)).collect(),
            private_key: b64(&key_der),
            root_cas: roots.iter().map(|c| b64(c)).collect(),
        };
        print_struct(env.stdout, &result)?;
        return Ok(());
    }
    write!(
        env.stdout,
        "X509-SVID:\n{svid_pem}\nPrivate key:\n{key_pem}\nRoot CAs:\n{bundle_pem}\n"
    )?;
    Ok(())
}

pub(crate) async fn execute_jwt(cmd: JwtCommand, env: &mut Env<'_>) -> anyhow::Result<()> {
    let JwtCommand::Mint(args) = cmd;
    let id = required_id(args.spiffe_id.as_ref())?;
    if args.audience.is_empty() {
        anyhow::bail!("at least one audience must be specified");
    }
    let ttl = ttl_seconds(args.ttl)?;
    let resp = Admin::new(&args.common.socket.socket_path)
        .svid()
        .await?
        .mint_jwtsvid(MintJwtsvidRequest {
            id: Some((&id).into()),
            audience: args.audience.clone(),
            ttl,
        })
        .await
        .map_err(RpcError)
        .context("unable to mint SVID")?
        .into_inner();
    let token = resp
        .svid
        .as_ref()
        .map(|s| s.token.as_str())
        .unwrap_or_default();
    if token.is_empty() {
        anyhow::bail!("server response missing token");
    }
    match token_expiry(token) {
        Ok(exp) => warn_if_capped(env, "JWT-SVID", exp, ttl)?,
        Err(e) => writeln!(env.stderr, "Unable to determine JWT-SVID lifetime: {e:#}")?,
    }
    if let Some(path) = &args.write {
        write_file(path, token, 0o600).context("unable to write token")?;
        writeln!(env.stdout, "JWT-SVID written to {}", path.display())?;
        return Ok(());
    }
    if args.common.output == OutputFormat::Json {
        print_json(
            env.stdout,
            json!({"svid": protojson::jwt_svid(resp.svid.as_ref())}),
        )?;
        return Ok(());
    }
    writeln!(env.stdout, "{token}")?;
    Ok(())
}

/// The `exp` claim of a JWT, read without verifying it.
fn token_expiry(token: &str) -> anyhow::Result<i64> {
    let payload = token.split('.').nth(1).context("malformed token")?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).context("malformed token")?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).context("malformed token")?;
    claims
        .get("exp")
        .and_then(serde_json::Value::as_f64)
        .map(|exp| exp as i64)
        .context("no expiry claim")
}

/// Writes `data` to `path` with `mode`, also when the file already existed.
fn write_file(path: &Path, data: &str, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(data.as_bytes())
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::{FromDer, GeneralName, X509CertificationRequest};

    use super::*;

    #[test]
    fn ttls_accept_go_durations_and_seconds() {
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_ttl("soon").is_err());
        assert_eq!(ttl_seconds(Some(Duration::from_millis(1500))).unwrap(), 2);
        assert_eq!(ttl_seconds(None).unwrap(), 0);
    }

    #[test]
    fn csr_carries_the_spiffe_id_and_dns_names() {
        let id = signet_common::id::parse_id("spiffe://example.org/web").unwrap();
        let (_key, der) = key_and_csr(&id, &["web.example.org".to_owned()]).unwrap();
        let (_, csr) = X509CertificationRequest::from_der(&der).unwrap();
        signet_common::sigcheck::verify_csr(&csr).unwrap();
        assert_eq!(csr.certification_request_info.subject.iter().count(), 0);
        let sans: Vec<String> = csr
            .requested_extensions()
            .into_iter()
            .flatten()
            .filter_map(|ext| match ext {
                x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) => {
                    Some(san.general_names.iter().map(|n| match n {
                        GeneralName::URI(u) => format!("uri:{u}"),
                        GeneralName::DNSName(d) => format!("dns:{d}"),
                        other => format!("{other:?}"),
                    }))
                }
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(
            sans,
            ["uri:spiffe://example.org/web", "dns:web.example.org"]
        );
    }

    #[test]
    fn reads_the_expiry_of_a_token() {
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"spiffe://td/a","exp":1714564800}"#);
        assert_eq!(
            token_expiry(&format!("e30.{claims}.sig")).unwrap(),
            1_714_564_800
        );
        assert!(token_expiry("garbage").is_err());
    }

    #[test]
    fn written_keys_are_private_even_over_an_old_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_file(&path, "new", 0o600).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    }
}
