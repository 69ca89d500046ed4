//! Command-line definitions (clap) and dispatch.

mod bench;
mod ca;
mod cert;
mod docs;
mod gateway;
mod quickstart;
mod serve;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::CmdResult;

/// Mutual TLS in one binary: private CA, certificate tools, gateway, agent.
#[derive(Debug, Parser)]
#[command(name = "symbolon", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole system in one minute: CA, gateway, backend, enrolled client, allowed and denied requests.
    Quickstart(quickstart::QuickstartArgs),
    /// Run a private certificate authority: create it, issue, sign, revoke, serve.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Inspect and verify certificates, CSRs and CRLs.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Get a first certificate from the CA with a one-time token.
    Enroll(serve::EnrollArgs),
    /// Keep a certificate fresh: renew before expiry, install atomically, run a hook.
    Agent(serve::AgentArgs),
    /// Run the mTLS gateway (server or client mode, from its config file).
    Gateway(gateway::GatewayArgs),
    /// Ask a gateway's policy what it decides for a certificate.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Measure: mTLS handshakes, HTTP latency through a gateway, certificate issuance.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions(docs::CompletionsArgs),
    /// Print or write man pages.
    Man(docs::ManArgs),
    /// Print the Markdown command reference (docs/cli.md).
    Reference,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the decision for a client certificate (and path/method) and the rule that made it.
    Check(gateway::PolicyCheckArgs),
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a CA: an offline root, an online intermediate, and the store.
    Init(ca::InitArgs),
    /// Generate a key and issue a certificate for it.
    Issue(ca::IssueArgs),
    /// Sign a certificate signing request (PEM or DER).
    Sign(ca::SignArgs),
    /// Revoke a certificate by serial or by file.
    Revoke(ca::RevokeArgs),
    /// Sign a new CRL with a strictly increasing CRL number.
    Crl(ca::CrlArgs),
    /// List issued certificates.
    List(ca::ListArgs),
    /// Run the CA online: enrollment, renewal, revocation, CRL (HTTPS API).
    Serve(serve::ServeArgs),
    /// Create a one-time enrollment token for given identities.
    Token(serve::TokenArgs),
    /// The tamper-evident audit trail: verify the chain, list records.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every record's hash and link; exit 0 intact, 1 broken (naming the record).
    Verify(ca::AuditVerifyArgs),
    /// List audit records.
    List(ca::AuditListArgs),
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Describe certificates, chains, CSRs and CRLs (PEM or DER).
    Inspect(cert::InspectArgs),
    /// Verify a certificate's path to a trust anchor; exit 0 valid, 1 invalid, 2 unusable input.
    Verify(cert::VerifyArgs),
}

/// The CA directory every `ca` command works on.
#[derive(Debug, Args)]
pub struct DirArg {
    /// CA directory (made by `symbolon ca init`).
    #[arg(long, env = "SYMBOLON_CA_DIR", value_name = "DIR")]
    pub dir: PathBuf,
    /// The store: `sqlite:PATH` (default: DIR/symbolon.db) or
    /// `postgres://…`, shared by several `ca serve` replicas.
    #[arg(
        long,
        env = "SYMBOLON_DATABASE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database: Option<String>,
}

pub async fn run(cli: Cli) -> CmdResult {
    match cli.command {
        Command::Ca(c) => match c {
            CaCommand::Init(a) => ca::init(a).await,
            CaCommand::Issue(a) => ca::issue(a).await,
            CaCommand::Sign(a) => ca::sign(a).await,
            CaCommand::Revoke(a) => ca::revoke(a).await,
            CaCommand::Crl(a) => ca::crl(a).await,
            CaCommand::List(a) => ca::list(a).await,
            CaCommand::Serve(a) => serve::serve(a).await,
            CaCommand::Token(a) => serve::token(a).await,
            CaCommand::Audit(AuditCommand::Verify(a)) => ca::audit_verify(a).await,
            CaCommand::Audit(AuditCommand::List(a)) => ca::audit_list(a).await,
        },
        Command::Cert(c) => match c {
            CertCommand::Inspect(a) => cert::inspect(a),
            CertCommand::Verify(a) => cert::verify(a),
        },
        Command::Gateway(a) => gateway::run(a).await,
        Command::Enroll(a) => serve::enroll(a).await,
        Command::Quickstart(a) => quickstart::run(a).await,
        Command::Bench(c) => bench::run(c).await,
        Command::Completions(a) => docs::completions(a),
        Command::Man(a) => docs::man(a),
        Command::Reference => docs::reference(),
        Command::Agent(a) => serve::agent(a).await,
        Command::Policy(PolicyCommand::Check(a)) => gateway::policy_check(a),
    }
}
