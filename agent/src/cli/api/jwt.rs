//! `api fetch jwt` and `api validate jwt`, printed like SPIRE's.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use signet_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse,
};
use tonic::Code;

use crate::cli::client::{
    CliError, deadline_exceeded, emit, endpoint, timed, with_timeout, workload_client,
};
use crate::cli::env::{Env, Io};
use crate::cli::flags::{FetchJwtFlags, Output, ValidateJwtFlags};
use crate::cli::json;

/// Fetches the JWT bundles (first stream message), then a JWT-SVID per identity.
pub(super) async fn fetch(
    flags: &FetchJwtFlags,
    env: &Env,
    io: &mut Io<'_>,
) -> Result<(), CliError> {
    let audience: Vec<String> = flags
        .audience
        .iter()
        .filter(|a| !a.is_empty())
        .cloned()
        .collect();
    if audience.is_empty() {
        return Err(CliError::new("audience must be specified"));
    }
    let endpoint = endpoint(&flags.call.socket, env)?;
    let timeout = flags.call.timeout;
    let mut client = with_timeout(timeout, async {
        workload_client(&endpoint)
            .await
            .map_err(|e| e.context("failed to receive JWT bundles"))
    })
    .await?;
    let bundles = with_timeout(timeout, async {
        let mut stream = client
            .fetch_jwt_bundles(JwtBundlesRequest {})
            .await?
            .into_inner();
        stream.message().await?.ok_or_else(|| CliError::new("EOF"))
    })
    .await?;
    let request = JwtsvidRequest {
        audience,
        spiffe_id: flags.spiffe_id.clone().unwrap_or_default(),
    };
    let svids = with_timeout(timeout, async {
        Ok(client.fetch_jwtsvid(request).await?.into_inner())
    })
    .await?;
    let text = match flags.call.output {
        Output::Json => json::encode(vec![
            json::jwt_svid_response(&svids),
            json::jwt_bundles_response(&bundles),
        ]),
        Output::Pretty => pretty_jwt(&svids, &bundles),
    };
    emit(io.out, &text)
}

/// `token(<id>):\n\t<jwt>` (and `hint(<id>)` when set) per SVID, then `bundle(<td>):\n\t<jwks>`.
pub(crate) fn pretty_jwt(svids: &JwtsvidResponse, bundles: &JwtBundlesResponse) -> String {
    let mut out = String::new();
    for svid in &svids.svids {
        let _ = writeln!(out, "token({}):\n\t{}", svid.spiffe_id, svid.svid);
        if !svid.hint.is_empty() {
            let _ = writeln!(out, "hint({}):\n\t{}", svid.spiffe_id, svid.hint);
        }
    }
    let sorted: BTreeMap<_, _> = bundles.bundles.iter().collect();
    for (domain, jwks) in sorted {
        let _ = writeln!(
            out,
            "bundle({domain}):\n\t{}",
            String::from_utf8_lossy(jwks)
        );
    }
    out
}

const UNABLE: &str = "unable to validate JWT SVID";

/// Asks the agent to validate a JWT-SVID for one audience.
pub(super) async fn validate(
    flags: &ValidateJwtFlags,
    env: &Env,
    io: &mut Io<'_>,
) -> Result<(), CliError> {
    if flags.audience.is_empty() {
        return Err(CliError::new("audience must be specified"));
    }
    if flags.svid.is_empty() {
        return Err(CliError::new("svid must be specified"));
    }
    let endpoint = endpoint(&flags.call.socket, env)?;
    let request = ValidateJwtsvidRequest {
        audience: flags.audience.clone(),
        svid: flags.svid.clone(),
    };
    let call = async {
        let mut client = workload_client(&endpoint)
            .await
            .map_err(|e| e.context(UNABLE))?;
        match client.validate_jwtsvid(request).await {
            Ok(resp) => Ok(resp.into_inner()),
            Err(s) if s.code() == Code::InvalidArgument => {
                Err(CliError::new(format!("SVID is not valid: {}", s.message())))
            }
            Err(s) => Err(CliError::from(s).context(UNABLE)),
        }
    };
    let resp = timed(flags.call.timeout, call)
        .await
        .unwrap_or_else(|| Err(deadline_exceeded().context(UNABLE)))?;
    let text = match flags.call.output {
        Output::Json => json::encode(vec![json::validate_response(&resp)]),
        Output::Pretty => pretty_validate(&resp),
    };
    emit(io.out, &text)
}

/// `SVID is valid.`, the SPIFFE ID and the claims as compact JSON with sorted keys.
pub(crate) fn pretty_validate(resp: &ValidateJwtsvidResponse) -> String {
    let claims = resp.claims.as_ref().map_or_else(
        || "{}".to_owned(),
        |c| json::struct_json(c, false).to_string(),
    );
    format!(
        "SVID is valid.\nSPIFFE ID : {}\nClaims    : {claims}\n",
        resp.spiffe_id
    )
}
