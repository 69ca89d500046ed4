//! `symbolon ca serve`, `symbolon ca token`, `symbolon enroll`, `symbolon agent`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use symbolon_core::{Identity, Metrics};
use symbolon_node::agent::client::CaUrl;
use symbolon_node::agent::{self, AgentOptions};
use symbolon_pki::KeyType;

use super::DirArg;
use crate::ca_dir::Ca;
use crate::{CmdResult, output};

fn duration_arg(s: &str) -> Result<Duration, String> {
    symbolon_core::parse_duration(s).map_err(|e| e.to_string())
}

// === ca serve ===

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    dir: DirArg,
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
    listen: SocketAddr,
    /// The URL clients use; its host goes into the CA's own certificate
    /// (default: public_url in ca.toml, else https://localhost:PORT).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
}

pub async fn serve(args: ServeArgs) -> CmdResult {
    crate::commands::gateway::init_logging_human();
    let mut ca = Ca::open(&args.dir).await?;
    if let Some(u) = &args.public_url {
        // Leaves issued from now on point their CRL and OCSP fields here.
        ca.auth.issuer.set_public_url(Some(u.clone()));
    }
    let url = args
        .public_url
        .clone()
        .or_else(|| ca.settings.raw.public_url.clone())
        .unwrap_or_else(|| format!("https://localhost:{}", args.listen.port()));
    let host = CaUrl::parse(&url)
        .map_err(|e| anyhow!(e.replace("--ca", "--public-url")))?
        .host;
    let mut names = vec![Identity::dns("localhost")?, Identity::ip("127.0.0.1")?];
    let extra = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Identity::Ip(ip),
        Err(_) => Identity::dns(&host).map_err(|e| anyhow!("--public-url: {e}"))?,
    };
    if !names.contains(&extra) {
        names.push(extra);
    }
    if !args.listen.ip().is_unspecified() && !args.listen.ip().is_loopback() {
        names.push(Identity::Ip(args.listen.ip()));
    }
    println!("Serving the CA at {url} (listening on {})", args.listen);
    println!(
        "Root fingerprint (SHA-256): {}",
        symbolon_pki::sha256_hex(&ca.auth.root)
    );
    symbolon_server::run(
        ca.auth,
        symbolon_server::ServeOptions {
            listen: args.listen,
            names,
            limits: ca.settings.limits.clone(),
        },
    )
    .await
    .map_err(|e| anyhow!(e))?;
    Ok(())
}

// === ca token ===

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("ids").required(true).multiple(true).args(["identity", "dns", "ip"])))]
pub struct TokenArgs {
    #[command(flatten)]
    dir: DirArg,
    /// SPIFFE ID or URI the token allows.
    #[arg(long, value_name = "URI")]
    identity: Vec<String>,
    #[arg(long, value_name = "NAME")]
    dns: Vec<String>,
    #[arg(long, value_name = "ADDR")]
    ip: Vec<String>,
    /// How long the token may be used (once).
    #[arg(long, default_value = "15m", value_parser = duration_arg, value_name = "DURATION")]
    ttl: Duration,
    #[arg(long)]
    json: bool,
}

pub async fn token(args: TokenArgs) -> CmdResult {
    let mut ids = Vec::new();
    for s in &args.identity {
        ids.push(Identity::uri(s).map_err(|e| anyhow!("--identity: {e}"))?);
    }
    for s in &args.dns {
        ids.push(Identity::dns(s).map_err(|e| anyhow!("--dns: {e}"))?);
    }
    for s in &args.ip {
        ids.push(Identity::ip(s).map_err(|e| anyhow!("--ip: {e}"))?);
    }
    let ca = Ca::open(&args.dir).await?;
    let result = ca.auth.create_token("cli", &ids, args.ttl).await;
    ca.auth.store.close().await;
    let (token, expires) = result?;
    if args.json {
        output::json(&serde_json::json!({
            "token": token,
            "identities": ids.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
            "expires_at": symbolon_pki::rfc3339(expires),
            "root_sha256": symbolon_pki::sha256_hex(&ca.auth.root),
        }))?;
    } else {
        println!("{token}");
        eprintln!(
            "One-time token for {}, valid until {}. Enroll with:\n  symbolon enroll --ca https://<ca-host>:8443 --fingerprint {} --token <token> --out <dir>",
            ids.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            symbolon_pki::rfc3339(expires),
            symbolon_pki::sha256_hex(&ca.auth.root)
        );
    }
    Ok(())
}

// === enroll ===

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The CA's URL (https://host:port).
    #[arg(long, env = "SYMBOLON_CA_URL", value_name = "URL")]
    ca: String,
    /// SHA-256 fingerprint of the CA's root (printed by `ca init` and `ca token`).
    #[arg(long, env = "SYMBOLON_CA_FINGERPRINT", value_name = "SHA256")]
    fingerprint: String,
    /// The one-time token from `symbolon ca token`.
    #[arg(
        long,
        env = "SYMBOLON_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: String,
    /// Directory for cert.pem, key.pem (0600) and ca.pem.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[arg(long, default_value = "ecdsa-p256", value_name = "TYPE")]
    key_type: KeyType,
    #[arg(long)]
    json: bool,
}

pub async fn enroll(args: EnrollArgs) -> CmdResult {
    let fp = args.fingerprint.replace(':', "").to_ascii_lowercase();
    if fp.len() != 64 || !fp.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(anyhow!(
            "--fingerprint: expected 64 hex digits (the root's SHA-256), got {:?}",
            args.fingerprint
        )
        .into());
    }
    let ca = CaUrl::parse(&args.ca).map_err(|e| anyhow!(e))?;
    let done = agent::enroll(&ca, &fp, &args.token, &args.out, args.key_type)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    if args.json {
        output::json(&serde_json::json!({
            "serial": done.serial, "not_after": done.not_after, "identities": done.identities,
            "certificate": args.out.join(agent::CERT_FILE), "key": args.out.join(agent::KEY_FILE), "ca": args.out.join(agent::CA_FILE),
        }))?;
    } else {
        println!(
            "Enrolled {} (serial {}, valid until {})",
            done.identities.join(", "),
            done.serial,
            done.not_after
        );
        println!(
            "  {}  {}  {}",
            args.out.join(agent::CERT_FILE).display(),
            args.out.join(agent::KEY_FILE).display(),
            args.out.join(agent::CA_FILE).display()
        );
        println!(
            "Keep it fresh: symbolon agent --ca {} --dir {}",
            args.ca,
            args.out.display()
        );
    }
    Ok(())
}

// === agent ===

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[arg(long, env = "SYMBOLON_CA_URL", value_name = "URL")]
    ca: String,
    /// Directory holding cert.pem, key.pem and ca.pem (from `symbolon enroll`).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Renew after this fraction of the lifetime has passed.
    #[arg(long, default_value_t = 0.66, value_name = "FRACTION")]
    renew_at: f64,
    /// Shell command to run after each renewal (in DIR).
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// Signal to send after each renewal, as PID:SIGNAL (e.g. 1234:HUP).
    #[arg(long, value_name = "PID:SIGNAL")]
    signal: Option<String>,
    /// Renew once now and exit.
    #[arg(long)]
    once: bool,
    #[arg(long, default_value = "ecdsa-p256", value_name = "TYPE")]
    key_type: KeyType,
    /// Serve Prometheus metrics on this address.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

pub async fn agent(args: AgentArgs) -> CmdResult {
    crate::commands::gateway::init_logging_human();
    if !(0.1..=0.95).contains(&args.renew_at) {
        return Err(anyhow!(
            "--renew-at {}: use a fraction between 0.1 and 0.95",
            args.renew_at
        )
        .into());
    }
    let signal = match &args.signal {
        None => None,
        Some(s) => {
            let (pid, sig) = s
                .split_once(':')
                .ok_or_else(|| anyhow!("--signal {s:?}: write it as PID:SIGNAL, e.g. 1234:HUP"))?;
            let pid: u32 = pid
                .parse()
                .map_err(|_| anyhow!("--signal {s:?}: {pid:?} is not a process id"))?;
            if sig.is_empty() || !sig.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(anyhow!("--signal {s:?}: {sig:?} is not a signal name").into());
            }
            Some((pid, sig.to_string()))
        }
    };
    let metrics = Arc::new(Metrics::new(agent::METRICS));
    if let Some(addr) = args.metrics {
        symbolon_node::metrics_server::start(addr, "--metrics", metrics.clone())
            .await
            .map_err(|e| anyhow!(e))?;
    }
    let opts = AgentOptions {
        ca: CaUrl::parse(&args.ca).map_err(|e| anyhow!(e))?,
        dir: args.dir,
        renew_at: args.renew_at,
        exec: args.exec,
        signal,
        once: args.once,
        key_type: args.key_type,
    };
    agent::run_agent(opts, metrics)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
