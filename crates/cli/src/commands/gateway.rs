//! `symbolon gateway` and `symbolon policy check`.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use symbolon_core::{RequestFacts, normalize_path};
use symbolon_node::gateway::config::Role;
use symbolon_pki::{Purpose, VerifyOptions, input};
use time::OffsetDateTime;

use crate::{CmdResult, Failure, output};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Gateway configuration (TOML).
    #[arg(long, env = "SYMBOLON_GATEWAY_CONFIG", value_name = "FILE")]
    config: PathBuf,
    /// Log lines as human-readable text or JSON objects.
    #[arg(long, value_enum, default_value = "human", env = "SYMBOLON_LOG_FORMAT")]
    log_format: LogFormat,
    /// Check the configuration and credentials, print a summary and exit.
    #[arg(long)]
    check: bool,
}

/// Human-readable logs on stderr, for the long-running commands.
pub fn init_logging_human() {
    init_logging(LogFormat::Human);
}

fn init_logging(format: LogFormat) {
    // SYMBOLON_LOG: error, warn, info (default) or debug.
    let level = match std::env::var("SYMBOLON_LOG")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Human => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

pub async fn run(args: GatewayArgs) -> CmdResult {
    // Everything is validated before any port is bound.
    let cfg = symbolon_node::load_config(&args.config)?;
    if args.check {
        match &cfg.role {
            Role::Server(s) => {
                symbolon_tls::load_certified_key(&s.cert, &s.key)?;
                symbolon_tls::TrustBundle::load(&s.client_ca)?;
                println!(
                    "{}: OK (server mode, listen {}, upstream {}, {} policy rule(s))",
                    args.config.display(),
                    s.listen,
                    cfg.upstream,
                    cfg.policy.rule_names().count()
                );
            }
            Role::Client(c) => {
                symbolon_tls::load_certified_key(&c.cert, &c.key)?;
                symbolon_tls::TrustBundle::load(&c.trust)?;
                println!(
                    "{}: OK (client mode, listen {}, upstream {})",
                    args.config.display(),
                    c.listen,
                    cfg.upstream
                );
            }
        }
        return Ok(());
    }
    init_logging(args.log_format);
    symbolon_node::run(cfg)
        .await
        .map_err(|e| anyhow!("{}: {e}", args.config.display()))?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct PolicyCheckArgs {
    /// Gateway configuration whose [[policy.rule]]s and client CA to use.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Client certificate (chain); omit to ask about an unauthenticated request.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    #[arg(long)]
    path: Option<String>,
    #[arg(long)]
    method: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct CheckJson<'a> {
    decision: &'static str,
    rule: Option<&'a str>,
    would_deny: Option<&'a str>,
    path: Option<&'a str>,
    identity: Option<String>,
}

pub fn policy_check(args: PolicyCheckArgs) -> CmdResult {
    let cfg = symbolon_node::load_config(&args.config)?;
    let peer = match &args.cert {
        None => None,
        Some(path) => {
            let mut chain = input::load_certificates(path)?;
            let leaf = chain.remove(0);
            let trust_file =
                match &cfg.role {
                    Role::Server(s) => s.client_ca.clone(),
                    Role::Client(_) => return Err(anyhow!(
                        "{}: policy applies to server mode; this is a client-mode configuration",
                        args.config.display()
                    )
                    .into()),
                };
            let trust = input::load_certificates(&trust_file)?;
            let opts = VerifyOptions {
                trust: &trust,
                intermediates: &chain,
                crls: &[],
                at: OffsetDateTime::now_utc(),
                purpose: Purpose::Client,
                name: None,
                max_intermediates: 4,
            };
            match symbolon_pki::verify(&leaf, &opts) {
                Ok(v) => Some(v.peer),
                Err(e) => {
                    if args.json {
                        output::json(&serde_json::json!({
                            "decision": "deny",
                            "stage": "handshake",
                            "reason": e.reason.as_str(),
                            "message": e.message,
                            "hint": e.hint,
                        }))?;
                    } else {
                        println!(
                            "deny: the certificate would be refused at the handshake: {}: {}; {}",
                            e.reason, e.message, e.hint
                        );
                    }
                    return Err(Failure::Negative);
                }
            }
        }
    };
    let path = match &args.path {
        Some(p) => Some(normalize_path(p).map_err(|e| anyhow!("--path {p:?}: {e}"))?),
        None => None,
    };
    let method = args.method.as_ref().map(|m| m.to_ascii_uppercase());
    let d = cfg.policy.evaluate(&RequestFacts {
        peer: peer.as_ref(),
        path: path.as_deref(),
        method: method.as_deref(),
        now: OffsetDateTime::now_utc(),
    });
    let identity = peer.as_ref().map(|p| {
        p.spiffe_id
            .clone()
            .or_else(|| p.dns.first().cloned())
            .unwrap_or_else(|| p.subject.clone())
    });
    if args.json {
        output::json(&CheckJson {
            decision: if d.is_allowed() { "allow" } else { "deny" },
            rule: d.rule(),
            would_deny: d.would_deny(),
            path: path.as_deref(),
            identity,
        })?;
    } else {
        let who = identity.unwrap_or_else(|| "an unauthenticated client".into());
        let what = match (&method, &path) {
            (Some(m), Some(p)) => format!(" {m} {p}"),
            (None, Some(p)) => format!(" {p}"),
            _ => String::new(),
        };
        if d.is_allowed() {
            match d.would_deny() {
                Some(rule) => println!(
                    "allow: {who}{what} — audit rule \"{rule}\" would deny it once enforced"
                ),
                None => println!("allow: {who}{what} by rule \"{}\"", d.rule_label()),
            }
        } else {
            match d.rule() {
                Some(rule) => println!("deny: {who}{what} by rule \"{rule}\""),
                None => println!("deny: {who}{what}: no rule allows it (no matching rule = deny)"),
            }
        }
    }
    if d.is_allowed() {
        Ok(())
    } else {
        Err(Failure::Negative)
    }
}
