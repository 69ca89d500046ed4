//! `symbolon bench`: argument parsing and output for the load generators
//! in `symbolon-bench`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use symbolon_bench::handshake::HandshakeOptions;
use symbolon_bench::http::HttpOptions;
use symbolon_bench::issue::{ApiKind, ApiTarget, IssueOptions, IssueTarget};
use symbolon_bench::{Report, client_config, host_port};
use symbolon_pki::KeyType;

use crate::ca_dir::Ca;
use crate::commands::DirArg;
use crate::{CmdResult, Failure, fail, output};

/// Durations as elsewhere (10s, 2m), plus milliseconds (500ms): runs
/// and timeouts here are short.
fn duration_arg(s: &str) -> Result<Duration, String> {
    if let Some(ms) = s.trim().strip_suffix("ms")
        && let Ok(n) = ms.parse::<u64>()
    {
        return Ok(Duration::from_millis(n));
    }
    symbolon_core::parse_duration(s).map_err(|e| e.to_string())
}

/// Bytes, optionally with a unit: 512, 1KiB, 4k, 1MiB.
fn size_arg(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a size such as 1024, 1KiB or 4k"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use B, KiB or MiB)")),
    };
    n.checked_mul(mult)
        .filter(|&b| b <= 64 * 1024 * 1024)
        .ok_or_else(|| format!("{s:?}: at most 64 MiB"))
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Full or resumed mTLS handshakes per second against a TLS server (gateway, nginx, HAProxy, …).
    Handshake(HandshakeArgs),
    /// Keep-alive HTTP requests at a fixed rate (open loop); latency percentiles.
    Http(HttpArgs),
    /// Certificates issued and recorded per second: in process, over the API, or against cfssl.
    Issue(IssueArgs),
    /// The crypto bound: the most full mTLS handshakes one CPU-second can serve, per key type.
    Crypto(CryptoArgs),
}

#[derive(Debug, Args)]
pub struct CryptoArgs {
    /// Key types to measure (repeatable; default: all).
    #[arg(long = "key-type", value_name = "TYPE")]
    key_types: Vec<KeyType>,
    /// CPU time spent measuring each operation.
    #[arg(long, default_value = "1s", value_parser = duration_arg, value_name = "DURATION")]
    time: Duration,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Our client certificate and how we check the server.
#[derive(Debug, Args)]
pub struct ClientCertArgs {
    /// Client certificate chain (PEM, leaf first).
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// The client certificate's private key.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// CA certificates the server's certificate must chain to.
    #[arg(long, value_name = "FILE")]
    trust: Option<PathBuf>,
    /// The DNS name or IP address the server's certificate must carry
    /// (default: the target's host).
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
}

impl ClientCertArgs {
    fn config(
        &self,
        host: &str,
    ) -> Result<
        (
            Arc<rustls::ClientConfig>,
            rustls::pki_types::ServerName<'static>,
        ),
        Failure,
    > {
        let (Some(cert), Some(key), Some(trust)) = (&self.cert, &self.key, &self.trust) else {
            fail!(
                "mTLS needs --cert, --key and --trust (the client certificate, its key, and the CA bundle for the server)"
            )
        };
        let name = self.server_name.as_deref().unwrap_or(host);
        Ok(client_config(cert, key, trust, name)?)
    }
}

/// How a run ends and what it prints.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress line on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct HandshakeArgs {
    /// The TLS server, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    target: String,
    #[command(flatten)]
    client: ClientCertArgs,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    concurrency: usize,
    /// Run this long.
    #[arg(long, default_value = "10s", value_parser = duration_arg, value_name = "DURATION", conflicts_with = "count")]
    duration: Duration,
    /// Run exactly this many handshakes instead.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Resume sessions (after one untimed full handshake per worker).
    #[arg(long)]
    resume: bool,
    /// Count a handshake as failed after this long.
    #[arg(long, default_value = "10s", value_parser = duration_arg, value_name = "DURATION")]
    timeout: Duration,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub struct HttpArgs {
    /// https://HOST:PORT/PATH through mTLS, or http://… for a baseline straight to a backend.
    #[arg(long, value_name = "URL")]
    target: String,
    #[command(flatten)]
    client: ClientCertArgs,
    /// Requests per second offered, whatever the server's pace.
    #[arg(long, default_value_t = 1000.0, value_name = "R")]
    rate: f64,
    /// Keep-alive connections the requests are spread over.
    #[arg(long, default_value_t = 16, value_name = "N")]
    connections: usize,
    #[arg(long, default_value = "10s", value_parser = duration_arg, value_name = "DURATION")]
    duration: Duration,
    /// Request body (POST); 0 sends GET. Accepts 1024, 1KiB, 4k.
    #[arg(long, default_value = "0", value_parser = size_arg, value_name = "SIZE")]
    body_size: usize,
    /// Count a request as failed after this long.
    #[arg(long, default_value = "10s", value_parser = duration_arg, value_name = "DURATION")]
    timeout: Duration,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Api {
    /// `symbolon ca serve`: a one-time token (created with the admin --cert) and a CSR per certificate.
    Symbolon,
    /// `cfssl serve`: POST /api/v1/cfssl/sign with a CSR.
    Cfssl,
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// A CA's API: https://HOST:PORT for `ca serve`, http(s)://… for cfssl.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "dir",
        required_unless_present = "dir"
    )]
    ca: Option<String>,
    /// Issue in this process from a CA directory instead (records real
    /// certificates in its store: use a scratch CA). Not read from
    /// SYMBOLON_CA_DIR: benchmarking a production CA by accident would fill
    /// its store.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// With --dir: the store (sqlite:PATH or postgres://…).
    #[arg(long, value_name = "URL", requires = "dir", hide_env_values = true)]
    database: Option<String>,
    /// The kind of CA behind --ca.
    #[arg(long, value_enum, default_value = "symbolon")]
    api: Api,
    #[command(flatten)]
    client: ClientCertArgs,
    /// Identity of each certificate; {n} becomes its number
    /// (e.g. spiffe://example.org/bench/{n}).
    #[arg(long, value_name = "TEMPLATE")]
    identity: String,
    #[arg(long, default_value_t = 1000, value_name = "N")]
    count: u64,
    /// Certificates requested at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    concurrency: usize,
    /// Key type of the CSRs (over an API) or certificates (in process).
    #[arg(long, default_value = "ecdsa-p256", value_name = "TYPE")]
    key_type: KeyType,
    #[command(flatten)]
    run: RunArgs,
}

pub async fn run(cmd: BenchCommand) -> CmdResult {
    match cmd {
        BenchCommand::Handshake(a) => handshake(a).await,
        BenchCommand::Http(a) => http(a).await,
        BenchCommand::Issue(a) => issue(a).await,
        BenchCommand::Crypto(a) => crypto(a),
    }
}

fn crypto(a: CryptoArgs) -> CmdResult {
    let types = if a.key_types.is_empty() {
        KeyType::ALL.to_vec()
    } else {
        a.key_types.clone()
    };
    let mut costs = Vec::new();
    for kt in types {
        costs.push(symbolon_bench::crypto::measure(kt, a.time)?);
    }
    if a.json {
        output::json(&costs)?;
        return Ok(());
    }
    println!(
        "Server-side crypto per full TLS 1.3 mTLS handshake: 1 signature + 2 verifications + 1 X25519 exchange ({} time, aws-lc-rs)",
        costs.first().map(|c| c.clock).unwrap_or("thread CPU")
    );
    let rows: Vec<Vec<String>> = costs
        .iter()
        .map(|c| {
            vec![
                c.key_type.to_string(),
                format!("{:.1}", c.sign_us),
                format!("{:.1}", c.verify_us),
                format!("{:.1}", c.x25519_us),
                format!("{:.1}", c.handshake_us),
                format!("{:.0}", c.handshakes_per_cpu_s),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &[
                "KEY TYPE",
                "SIGN µs",
                "VERIFY µs",
                "X25519 µs",
                "HANDSHAKE µs",
                "HANDSHAKES/CPU-s",
            ],
            &rows
        )
    );
    Ok(())
}

async fn handshake(a: HandshakeArgs) -> CmdResult {
    let (host, port) = host_port(&a.target, None)?;
    let (tls, server_name) = a.client.config(&host)?;
    let addr = resolve(&host, port, "--target").await?;
    let report = symbolon_bench::handshake::run(HandshakeOptions {
        target: addr,
        server_name,
        tls,
        concurrency: a.concurrency,
        duration: Some(a.duration),
        count: a.count,
        resume: a.resume,
        timeout: a.timeout,
        quiet: a.run.quiet,
    })
    .await;
    finish(&report, &a.run)
}

async fn http(a: HttpArgs) -> CmdResult {
    let (https, rest) = match (
        a.target.strip_prefix("https://"),
        a.target.strip_prefix("http://"),
    ) {
        (Some(r), _) => (true, r),
        (None, Some(r)) => (false, r),
        _ => fail!(
            "--target {:?}: must start with https:// or http://",
            a.target
        ),
    };
    if !(a.rate.is_finite() && a.rate > 0.0) {
        fail!(
            "--rate {}: must be a positive number of requests per second",
            a.rate
        );
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = host_port(authority, Some(if https { 443 } else { 80 }))?;
    let tls = if https {
        Some(a.client.config(&host)?)
    } else {
        None
    };
    let addr = resolve(&host, port, "--target").await?;
    let report = symbolon_bench::http::run(HttpOptions {
        url: a.target.clone(),
        addr,
        authority: authority.to_string(),
        path: path.to_string(),
        tls,
        rate: a.rate,
        connections: a.connections,
        duration: a.duration,
        body_size: a.body_size,
        timeout: a.timeout,
        quiet: a.run.quiet,
    })
    .await;
    finish(&report, &a.run)
}

async fn issue(a: IssueArgs) -> CmdResult {
    let mut opened = None;
    let target = match (&a.ca, &a.dir) {
        (Some(url), _) => {
            let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
                (Some(r), _) => (true, r),
                (None, Some(r)) => (false, r),
                _ => fail!("--ca {url:?}: must start with https:// (or http:// for cfssl)"),
            };
            let authority = rest.split('/').next().unwrap_or_default();
            let (host, port) = host_port(authority, Some(if https { 443 } else { 80 }))?;
            let kind = match a.api {
                Api::Symbolon => ApiKind::Symbolon,
                Api::Cfssl => ApiKind::Cfssl,
            };
            if kind == ApiKind::Symbolon && !https {
                fail!("--ca {url:?}: `symbolon ca serve` speaks HTTPS only");
            }
            let tls = if https {
                Some(a.client.config(&host)?)
            } else {
                None
            };
            IssueTarget::Api(ApiTarget {
                url: url.clone(),
                addr: resolve(&host, port, "--ca").await?,
                authority: authority.to_string(),
                tls,
                kind,
            })
        }
        (None, Some(dir)) => {
            let ca = Ca::open(&DirArg {
                dir: dir.clone(),
                database: a.database.clone(),
            })
            .await?;
            let auth = Arc::new(ca.auth);
            opened = Some(auth.clone());
            IssueTarget::InProcess(auth)
        }
        (None, None) => fail!("give --ca URL (a running CA) or --dir DIR (issue in process)"),
    };
    let outcome = symbolon_bench::issue::run(IssueOptions {
        target,
        identity: a.identity.clone(),
        count: a.count,
        concurrency: a.concurrency,
        key_type: a.key_type,
        quiet: a.run.quiet,
    })
    .await;
    if let Some(auth) = opened {
        auth.store.close().await;
    }
    finish(&outcome?, &a.run)
}

async fn resolve(host: &str, port: u16, flag: &str) -> Result<std::net::SocketAddr, Failure> {
    match tokio::net::lookup_host((host, port)).await {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => Ok(a),
            None => fail!("{flag}: {host} has no address"),
        },
        Err(e) => fail!("{flag}: cannot resolve {host}: {e}"),
    }
}

/// Prints the report; exit 1 when any operation failed, so scripts notice.
fn finish(report: &Report, run: &RunArgs) -> CmdResult {
    if run.json {
        output::json(report)?;
    } else {
        print!("{}", report.text());
    }
    if report.failed > 0 {
        return Err(Failure::Negative);
    }
    if report.completed == 0 {
        fail!("nothing completed; the run was too short to measure anything");
    }
    Ok(())
}
