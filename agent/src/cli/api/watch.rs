//! `api watch`: follows the `FetchX509SVID` stream and prints SPIRE's "Received ..." block
//! per update until interrupted. Like go-spiffe's watcher it reconnects after errors (each
//! printed on stderr) with a linear backoff (1s, 2s, ... 30s, reset by every update), and
//! gives up only on `InvalidArgument`.
//!
//! With `--write DIR` or `--config helper.conf` ([`WatchPlan`]) it also does spiffe-helper's
//! job: every X.509 update rewrites the SVID, key and bundle files and then starts, signals
//! or restarts the configured program; the JWT bundles file follows `FetchJWTBundles`; each
//! JWT-SVID file is refreshed at half its lifetime. `daemon_mode = false` writes everything
//! once and exits.

use std::cell::RefCell;
use std::future::Future;
use std::time::{Duration, Instant};

use signet_common::clock::{Clock as _, SystemClock};
use signet_proto::workload::{JwtBundlesRequest, X509svidRequest};
use tonic::Code;

use crate::cli::addr::Endpoint;
use crate::cli::client::{CliError, endpoint, stdout_error, workload_client};
use crate::cli::env::{Env, Io};
use crate::cli::flags::WatchFlags;
use crate::cli::jwt_files::{self, next_retry};
use crate::cli::watch_plan::{JwtBundleFile, JwtSvidFile, WatchPlan};
use crate::cli::x509::{self, X509Context};
use crate::cli::x509_writer::{X509Writer, ensure_dir};

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The output, shared by the concurrent parts of a watch (never borrowed across an await).
type Shared<'a, 'b> = RefCell<&'a mut Io<'b>>;

/// How a stream ended.
enum End {
    /// Report and reconnect.
    Retry(CliError),
    /// Report and stop.
    Fatal(CliError),
}

pub(super) async fn run(
    flags: &WatchFlags,
    env: &Env,
    io: &mut Io<'_>,
    interrupt: impl Future<Output = ()>,
) -> Result<(), CliError> {
    let Some(plan) = WatchPlan::from_flags(flags, env)? else {
        let endpoint = endpoint(&flags.socket, env)?;
        let out = RefCell::new(io);
        return tokio::select! {
            () = interrupt => Ok(()),
            r = x509_loop(&endpoint, &out, None) => r,
        };
    };
    for warning in &plan.warnings {
        let _ = writeln!(io.err, "{warning}");
    }
    if !plan.daemon {
        return once(plan, io).await;
    }
    make_jwt_dirs(&plan)?;
    let out = RefCell::new(io);
    let endpoint = plan.endpoint.clone();
    let hint = plan.hint.clone();
    let x509 = plan.x509.map(|files| {
        x509_loop(
            &endpoint,
            &out,
            Some(X509Writer::new(files, hint.clone(), plan.renew)),
        )
    });
    let bundle = plan
        .jwt_bundle
        .as_ref()
        .map(|file| jwt_bundle_loop(&endpoint, &out, file));
    let svids = (!plan.jwt_svids.is_empty()).then_some(async {
        let loops = plan
            .jwt_svids
            .iter()
            .map(|file| jwt_svid_loop(&endpoint, &out, file, &hint));
        futures::future::try_join_all(loops).await.map(|_| ())
    });
    tokio::select! {
        () = interrupt => Ok(()),
        r = or_pending(x509) => r,
        r = or_pending(bundle) => r,
        r = or_pending(svids) => r,
    }
}

async fn or_pending(f: Option<impl Future<Output = Result<(), CliError>>>) -> Result<(), CliError> {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

fn say(out: &Shared<'_, '_>, line: &str) -> Result<(), CliError> {
    let mut io = out.borrow_mut();
    writeln!(io.out, "{line}")
        .and_then(|()| io.out.flush())
        .map_err(stdout_error)
}

fn complain(out: &Shared<'_, '_>, line: &str) {
    let _ = writeln!(out.borrow_mut().err, "{line}");
}

/// Follows the X.509 stream, reconnecting, until a fatal error.
async fn x509_loop(
    endpoint: &Endpoint,
    out: &Shared<'_, '_>,
    mut writer: Option<X509Writer>,
) -> Result<(), CliError> {
    let mut last_update = Instant::now();
    let mut backoff = Duration::ZERO;
    loop {
        match follow(
            endpoint,
            out,
            writer.as_mut(),
            &mut last_update,
            &mut backoff,
        )
        .await
        {
            End::Fatal(e) => return Err(e),
            End::Retry(e) => complain(out, &e.0),
        }
        backoff = (backoff + Duration::from_secs(1)).min(MAX_BACKOFF);
        tokio::time::sleep(backoff).await;
    }
}

/// Connects and handles every update until the stream fails.
async fn follow(
    endpoint: &Endpoint,
    out: &Shared<'_, '_>,
    mut writer: Option<&mut X509Writer>,
    last_update: &mut Instant,
    backoff: &mut Duration,
) -> End {
    let mut client = match workload_client(endpoint).await {
        Ok(c) => c,
        Err(e) => return End::Retry(e),
    };
    let mut stream = match client.fetch_x509svid(X509svidRequest {}).await {
        Ok(resp) => resp.into_inner(),
        Err(s) => return status_end(s),
    };
    loop {
        let resp = match stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => return End::Retry(CliError::new("EOF")),
            Err(s) => return status_end(s),
        };
        let ctx = match parse(&resp) {
            Ok(ctx) => ctx,
            Err(e) => return End::Retry(e),
        };
        *backoff = Duration::ZERO;
        let printed = {
            let mut io = out.borrow_mut();
            x509::print(io.out, &ctx, last_update.elapsed()).and_then(|()| io.out.flush())
        };
        if let Err(e) = printed {
            return End::Fatal(stdout_error(e));
        }
        *last_update = Instant::now();
        if let Some(w) = writer.as_deref_mut()
            && let Err(e) = update_files(w, &ctx, out).await
        {
            return End::Fatal(e);
        }
    }
}

/// Writes the files of one update and renews; a failed write is reported (the program is
/// then not told), only a failed write to stdout ends the watch.
async fn update_files(
    w: &mut X509Writer,
    ctx: &X509Context,
    out: &Shared<'_, '_>,
) -> Result<(), CliError> {
    match w.write(ctx, SystemClock.unix_now()) {
        Ok(lines) => {
            for line in lines {
                say(out, &line)?;
            }
            for problem in w.renew().await {
                complain(out, &problem);
            }
        }
        Err(e) => complain(out, &format!("Unable to write the X.509 files: {e}")),
    }
    Ok(())
}

/// Parses a response; go-spiffe keys federated bundles by trust domain name.
fn parse(resp: &signet_proto::workload::X509svidResponse) -> Result<X509Context, CliError> {
    let mut ctx = x509::parse_response(resp)?;
    ctx.federated = std::mem::take(&mut ctx.federated)
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("spiffe://").unwrap_or(&k).to_owned(), v))
        .collect();
    Ok(ctx)
}

fn status_end(status: tonic::Status) -> End {
    if status.code() == Code::InvalidArgument {
        End::Fatal(status.into())
    } else {
        End::Retry(status.into())
    }
}

/// Follows `FetchJWTBundles`, rewriting the bundles file on every update.
async fn jwt_bundle_loop(
    endpoint: &Endpoint,
    out: &Shared<'_, '_>,
    file: &JwtBundleFile,
) -> Result<(), CliError> {
    let mut backoff = Duration::ZERO;
    loop {
        let end = async {
            let mut client = workload_client(endpoint).await.map_err(End::Retry)?;
            let mut stream = client
                .fetch_jwt_bundles(JwtBundlesRequest {})
                .await
                .map_err(status_end)?
                .into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(resp)) => {
                        backoff = Duration::ZERO;
                        match jwt_files::write_bundle(file, &resp) {
                            Ok(()) => say(
                                out,
                                &format!("Writing JWT bundle to file {}.", file.path.display()),
                            )
                            .map_err(End::Fatal)?,
                            Err(e) => complain(out, &e.0),
                        }
                    }
                    Ok(None) => return Err::<(), _>(End::Retry(CliError::new("EOF"))),
                    Err(s) => return Err(status_end(s)),
                }
            }
        }
        .await;
        match end {
            Ok(()) => {}
            Err(End::Fatal(e)) => return Err(e),
            Err(End::Retry(e)) => complain(out, &e.0),
        }
        backoff = (backoff + Duration::from_secs(1)).min(MAX_BACKOFF);
        tokio::time::sleep(backoff).await;
    }
}

/// Keeps one JWT-SVID file current.
async fn jwt_svid_loop(
    endpoint: &Endpoint,
    out: &Shared<'_, '_>,
    file: &JwtSvidFile,
    hint: &str,
) -> Result<(), CliError> {
    let mut retry = None;
    loop {
        let wait = match fetch_jwt_svid(endpoint, file, hint).await {
            Ok(wait) => {
                retry = None;
                say(out, &jwt_announcement(file))?;
                wait
            }
            Err(e) => {
                complain(out, &format!("Unable to fetch JWT SVID: {e}"));
                let d = next_retry(retry);
                retry = Some(d);
                d
            }
        };
        tokio::time::sleep(wait).await;
    }
}

fn jwt_announcement(file: &JwtSvidFile) -> String {
    format!(
        "Writing JWT-SVID for audience {:?} to file {}.",
        file.audience,
        file.path.display()
    )
}

async fn fetch_jwt_svid(
    endpoint: &Endpoint,
    file: &JwtSvidFile,
    hint: &str,
) -> Result<Duration, CliError> {
    let mut client = workload_client(endpoint).await?;
    let resp = client
        .fetch_jwtsvid(jwt_files::request(file))
        .await?
        .into_inner();
    jwt_files::write_svid(file, &resp, hint, SystemClock.unix_now())
}

/// Creates the directories of the JWT files (the X.509 writer creates its own).
fn make_jwt_dirs(plan: &WatchPlan) -> Result<(), CliError> {
    let bundle = plan.jwt_bundle.iter().map(|f| &f.path);
    for path in bundle.chain(plan.jwt_svids.iter().map(|f| &f.path)) {
        if let Some(dir) = path.parent() {
            ensure_dir(dir)?;
        }
    }
    Ok(())
}

/// `daemon_mode = false`: everything once, then exit (no command, no signal).
async fn once(plan: WatchPlan, io: &mut Io<'_>) -> Result<(), CliError> {
    let endpoint = &plan.endpoint;
    make_jwt_dirs(&plan)?;
    if let Some(files) = plan.x509.clone() {
        let resp = super::fetch_x509::fetch_first(endpoint).await?;
        let ctx = parse(&resp)?;
        let mut writer = X509Writer::new(files, plan.hint.clone(), plan.renew.clone());
        for line in writer.write(&ctx, SystemClock.unix_now())? {
            writeln!(io.out, "{line}").map_err(stdout_error)?;
        }
    }
    if let Some(file) = &plan.jwt_bundle {
        let mut client = workload_client(endpoint).await?;
        let mut stream = client
            .fetch_jwt_bundles(JwtBundlesRequest {})
            .await?
            .into_inner();
        let resp = stream
            .message()
            .await?
            .ok_or_else(|| CliError::new("EOF"))?;
        jwt_files::write_bundle(file, &resp)?;
        writeln!(
            io.out,
            "Writing JWT bundle to file {}.",
            file.path.display()
        )
        .map_err(stdout_error)?;
    }
    for file in &plan.jwt_svids {
        fetch_jwt_svid(endpoint, file, &plan.hint).await?;
        writeln!(io.out, "{}", jwt_announcement(file)).map_err(stdout_error)?;
    }
    Ok(())
}
