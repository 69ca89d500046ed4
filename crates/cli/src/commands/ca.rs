//! `symbolon ca …`: create a CA, issue, sign, revoke, publish CRLs, list.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use symbolon_core::{Identity, IpNet, Namespace, format_delta, format_duration};
use symbolon_pki::PublicKeyData;
use symbolon_pki::files::{self, PRIVATE, PUBLIC};
use symbolon_pki::{
    CaOptions, IssuedCert, KeyType, LeafSpec, Profile, RevocationReason, Serial, input, to_pem,
};
use symbolon_store::{ListFilter, RevokeOutcome, Store};
use time::OffsetDateTime;

use super::DirArg;
use crate::ca_dir::{self, Ca, CaConfig, Lifetimes};
use crate::{CmdResult, fail, output};

fn duration_arg(s: &str) -> Result<Duration, String> {
    symbolon_core::parse_duration(s).map_err(|e| e.to_string())
}

// === ca init ===

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to create the CA in (must not exist, or be empty).
    #[arg(long, env = "SYMBOLON_CA_DIR", value_name = "DIR")]
    dir: PathBuf,
    /// CA name, shown in the root and intermediate subjects.
    #[arg(long, default_value = "Symbolon")]
    name: String,
    /// SPIFFE trust domain this CA certifies (spiffe://DOMAIN/...).
    #[arg(long, default_value = "symbolon.internal", value_name = "DOMAIN")]
    trust_domain: String,
    #[arg(long, default_value = "ecdsa-p256", value_name = "TYPE")]
    key_type: KeyType,
    #[arg(long, default_value = "10y", value_parser = duration_arg, value_name = "DURATION")]
    root_lifetime: Duration,
    #[arg(long, default_value = "1y", value_parser = duration_arg, value_name = "DURATION")]
    intermediate_lifetime: Duration,
    /// File holding the passphrase that encrypts the root key (or set SYMBOLON_ROOT_PASSPHRASE).
    #[arg(long, value_name = "FILE")]
    root_passphrase_file: Option<PathBuf>,
    /// Write the root key unencrypted (for throw-away test CAs only).
    #[arg(long)]
    insecure_plaintext_root_key: bool,
    /// DNS names this CA may certify: `example.org` exactly, `.example.org` for names below it.
    /// Default: the trust domain, names below it, and localhost.
    #[arg(long = "permit-dns", value_name = "RULE")]
    permit_dns: Vec<String>,
    /// IP ranges this CA may certify (default: 127.0.0.0/8 and ::1).
    #[arg(long = "permit-ip", value_name = "CIDR")]
    permit_ip: Vec<IpNet>,
    /// URI prefixes (other than SPIFFE IDs) this CA may certify.
    #[arg(long = "permit-uri", value_name = "PREFIX")]
    permit_uri: Vec<String>,
    /// Base URL where `symbolon ca serve` will be reachable; leaves then carry CRL and OCSP URLs.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
}

const MIN_PASSPHRASE: usize = 8;

fn root_passphrase(args: &InitArgs) -> anyhow::Result<Option<Vec<u8>>> {
    if args.insecure_plaintext_root_key {
        return Ok(None);
    }
    let (pw, source) = if let Some(file) = &args.root_passphrase_file {
        let bytes = input::read_file(file)?;
        let mut s = bytes;
        while s.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            s.pop();
        }
        (s, file.display().to_string())
    } else if let Ok(v) = std::env::var("SYMBOLON_ROOT_PASSPHRASE") {
        (v.into_bytes(), "SYMBOLON_ROOT_PASSPHRASE".to_string())
    } else {
        bail!(
            "the root key must be encrypted: give --root-passphrase-file FILE or set SYMBOLON_ROOT_PASSPHRASE (or --insecure-plaintext-root-key for a throw-away CA)"
        );
    };
    if String::from_utf8_lossy(&pw).chars().count() < MIN_PASSPHRASE {
        bail!(
            "{source}: the root passphrase is shorter than {MIN_PASSPHRASE} characters; use a longer one"
        );
    }
    Ok(Some(pw))
}

pub async fn init(args: InitArgs) -> CmdResult {
    let dir = &args.dir;
    // Refuse before any expensive work, and never touch an existing CA.
    if dir.exists() {
        if !dir.is_dir() {
            fail!(
                "{}: exists and is not a directory; choose another --dir",
                dir.display()
            );
        }
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("{}: cannot read", dir.display()))?;
        if let Some(Ok(e)) = entries.next() {
            fail!(
                "{}: not empty (holds {}); refusing to touch an existing directory, choose a new --dir",
                dir.display(),
                e.file_name().to_string_lossy()
            );
        }
    }
    let passphrase = root_passphrase(&args)?;
    let td = args.trust_domain.trim().to_string();
    symbolon_core::SpiffeId::parse(&format!("spiffe://{td}")).map_err(|_| {
        anyhow!("--trust-domain {td:?}: not a valid SPIFFE trust domain (lower-case letters, digits, '.', '-', '_')")
    })?;
    let dns = if args.permit_dns.is_empty() {
        vec![td.clone(), format!(".{td}"), "localhost".to_string()]
    } else {
        args.permit_dns.clone()
    };
    let ip = if args.permit_ip.is_empty() {
        vec![
            "127.0.0.0/8".parse().map_err(|e: String| anyhow!(e))?,
            "::1/128".parse().map_err(|e: String| anyhow!(e))?,
        ]
    } else {
        args.permit_ip.clone()
    };
    let config = CaConfig {
        name: args.name.trim().to_string(),
        public_url: args.public_url.clone(),
        names: Namespace {
            trust_domain: Some(td.clone()),
            dns,
            ip,
            uri: args.permit_uri.clone(),
        },
        admins: vec![format!("spiffe://{td}/admin")],
        lifetimes: Lifetimes::default(),
        limits: Default::default(),
    };
    let config_path = dir.join(ca_dir::CONFIG);
    let settings = config.clone().validate(&config_path)?;

    let now = OffsetDateTime::now_utc();
    let ca = symbolon_pki::create_ca(
        &CaOptions {
            name: config.name.clone(),
            key_type: args.key_type,
            root_lifetime: args.root_lifetime,
            intermediate_lifetime: args.intermediate_lifetime,
        },
        now,
    )?;
    let root_key_pem = match &passphrase {
        Some(pw) => to_pem(
            "ENCRYPTED PRIVATE KEY",
            &symbolon_pki::encrypt_pkcs8(&ca.root_key_pkcs8, pw)?,
        ),
        None => to_pem("PRIVATE KEY", &ca.root_key_pkcs8),
    };
    let root_pem = to_pem("CERTIFICATE", &ca.root_der);
    let int_pem = to_pem("CERTIFICATE", &ca.intermediate_der);
    let int_key_pem = to_pem("PRIVATE KEY", &ca.intermediate_key_pkcs8);
    let bundle = format!("{int_pem}{root_pem}");
    let token_key = symbolon_pki::new_token_key();
    let toml_text = format!(
        "# Symbolon CA settings. [names] is what this CA may certify: edit it to\n# widen or narrow the namespace. Durations: 90s, 15m, 24h, 7d, 1y.\n{}",
        toml::to_string_pretty(&settings.raw)?
    );

    let created_dir = !dir.exists();
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the directory", dir.display()))?;
    let result = async {
        let staged = [
            (dir.join(ca_dir::ROOT_CERT), root_pem.as_bytes(), PUBLIC),
            (dir.join(ca_dir::ROOT_KEY), root_key_pem.as_bytes(), PRIVATE),
            (
                dir.join(ca_dir::INTERMEDIATE_CERT),
                int_pem.as_bytes(),
                PUBLIC,
            ),
            (
                dir.join(ca_dir::INTERMEDIATE_KEY),
                int_key_pem.as_bytes(),
                PRIVATE,
            ),
            (dir.join(ca_dir::BUNDLE), bundle.as_bytes(), PUBLIC),
            (dir.join(ca_dir::TOKEN_KEY), token_key.as_slice(), PRIVATE),
            (config_path.clone(), toml_text.as_bytes(), PUBLIC),
        ]
        .iter()
        .map(|(p, b, m)| files::stage(p, b, *m))
        .collect::<Result<Vec<_>, _>>()?;
        let store = Store::create(&dir.join(ca_dir::STORE)).await?;
        store.close().await;
        for f in staged {
            f.commit()?;
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        // Leave nothing behind: a half-made CA directory would block a retry.
        for name in [ca_dir::STORE, "symbolon.db-wal", "symbolon.db-shm"] {
            let _ = std::fs::remove_file(dir.join(name));
        }
        if created_dir {
            let _ = std::fs::remove_dir(dir);
        }
        return Err(e.into());
    }

    let fp = symbolon_pki::sha256_hex(&ca.root_der);
    let d = dir.display();
    println!("Created CA \"{}\" in {d}", config.name);
    println!(
        "  root          {d}/{}  (valid {}, {} key)",
        ca_dir::ROOT_CERT,
        format_duration(args.root_lifetime),
        args.key_type
    );
    println!(
        "  root key      {d}/{}  ({}; keep it offline, it is not needed to issue)",
        ca_dir::ROOT_KEY,
        if passphrase.is_some() {
            "encrypted with your passphrase"
        } else {
            "NOT ENCRYPTED"
        }
    );
    println!(
        "  intermediate  {d}/{} and {}  (valid {})",
        ca_dir::INTERMEDIATE_CERT,
        ca_dir::INTERMEDIATE_KEY,
        format_duration(args.intermediate_lifetime)
    );
    println!("  trust bundle  {d}/{}", ca_dir::BUNDLE);
    println!("  store         {d}/{}", ca_dir::STORE);
    println!(
        "  settings      {d}/{}  (trust domain {td})",
        ca_dir::CONFIG
    );
    println!();
    println!("Root fingerprint (SHA-256): {fp}");
    println!("Clients pin this fingerprint to bootstrap trust in this CA.");
    Ok(())
}

// === issuance, shared by issue and sign ===

/// Signs in memory; nothing is handed out until [`record`] succeeds.
fn sign_leaf(ca: &Ca, spki: &[u8], spec: &LeafSpec) -> anyhow::Result<IssuedCert> {
    Ok(ca.auth.sign(spki, spec)?)
}

/// Records a signed certificate durably (returns after the commit).
async fn record(ca: &Ca, cert: &IssuedCert, action: &str) -> anyhow::Result<()> {
    Ok(ca
        .auth
        .record(
            cert,
            symbolon_store::Audit {
                actor: "cli",
                action,
            },
        )
        .await?)
}

/// Refuses an output path whose directory is missing or that exists
/// (unless `force`), before anything is signed or recorded.
fn check_out_path(path: &Path, force: bool) -> anyhow::Result<()> {
    if !force && path.exists() {
        bail!(
            "{}: already exists; choose another --out or pass --force to replace it",
            path.display()
        );
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        bail!("{}: no such directory for --out", parent.display());
    }
    Ok(())
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("identity").required(true).multiple(true).args(["spiffe_id", "dns", "ip", "uri"])))]
pub struct IssueArgs {
    #[command(flatten)]
    dir: DirArg,
    /// SPIFFE ID (spiffe://trust-domain/path); at most one.
    #[arg(long, value_name = "URI")]
    spiffe_id: Vec<String>,
    #[arg(long, value_name = "NAME")]
    dns: Vec<String>,
    #[arg(long, value_name = "ADDR")]
    ip: Vec<String>,
    #[arg(long, value_name = "URI")]
    uri: Vec<String>,
    /// Subject common name (informational: names are checked against SANs only).
    #[arg(long, value_name = "NAME")]
    cn: Option<String>,
    /// server, client or peer (both). Default: peer for SPIFFE IDs, else server.
    #[arg(long)]
    profile: Option<Profile>,
    /// Default: lifetimes.default_leaf in ca.toml (24h).
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    lifetime: Option<Duration>,
    #[arg(long, default_value = "ecdsa-p256", value_name = "TYPE")]
    key_type: KeyType,
    /// Writes PREFIX.crt (leaf + intermediate) and PREFIX.key (0600).
    #[arg(long, value_name = "PREFIX")]
    out: PathBuf,
    /// Replace existing PREFIX.crt / PREFIX.key.
    #[arg(long)]
    force: bool,
    #[arg(long)]
    json: bool,
}

fn identities(args: &IssueArgs) -> anyhow::Result<Vec<Identity>> {
    let mut ids = Vec::new();
    for s in &args.spiffe_id {
        ids.push(Identity::spiffe(s).map_err(|e| anyhow!("--spiffe-id: {e}"))?);
    }
    for s in &args.dns {
        ids.push(Identity::dns(s).map_err(|e| anyhow!("--dns: {e}"))?);
    }
    for s in &args.ip {
        ids.push(Identity::ip(s).map_err(|e| anyhow!("--ip: {e}"))?);
    }
    for s in &args.uri {
        ids.push(Identity::uri(s).map_err(|e| anyhow!("--uri: {e}"))?);
    }
    ids.dedup();
    Ok(ids)
}

fn with_suffix(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

#[derive(serde::Serialize)]
struct IssuedJson<'a> {
    serial: String,
    identities: Vec<String>,
    profile: &'a str,
    not_before: String,
    not_after: String,
    sha256_fingerprint: String,
    certificate: Option<String>,
    key: Option<String>,
}

fn issued_json<'a>(c: &'a IssuedCert, cert: Option<&Path>, key: Option<&Path>) -> IssuedJson<'a> {
    IssuedJson {
        serial: c.serial.to_hex(),
        identities: c.identities.iter().map(|i| i.to_string()).collect(),
        profile: c.profile.as_str(),
        not_before: symbolon_pki::rfc3339(c.not_before),
        not_after: symbolon_pki::rfc3339(c.not_after),
        sha256_fingerprint: c.fingerprint(),
        certificate: cert.map(|p| p.display().to_string()),
        key: key.map(|p| p.display().to_string()),
    }
}

pub async fn issue(args: IssueArgs) -> CmdResult {
    let ids = identities(&args)?;
    let crt_path = with_suffix(&args.out, ".crt");
    let key_path = with_suffix(&args.out, ".key");
    for p in [&crt_path, &key_path] {
        check_out_path(p, args.force)?;
    }
    let ca = Ca::open(&args.dir).await?;
    let outcome = async {
        let spec = LeafSpec {
            profile: args.profile.unwrap_or_else(|| Profile::default_for(&ids)),
            identities: ids,
            common_name: args.cn.clone(),
            lifetime: args.lifetime.unwrap_or(ca.settings.default_leaf),
        };
        spec.validate()?;
        let key = args.key_type.generate()?;
        // Stage both files first: if the store refuses, nothing appears; once
        // the record is committed, both files go into place.
        let key_file = files::stage(
            &key_path,
            to_pem("PRIVATE KEY", &key.serialize_der()).as_bytes(),
            PRIVATE,
        )?;
        let cert = sign_leaf(&ca, &key.subject_public_key_info(), &spec)?;
        let crt_file = files::stage(&crt_path, cert.chain_pem().as_bytes(), PUBLIC)?;
        record(&ca, &cert, "issue").await?;
        key_file.commit()?;
        crt_file.commit()?;
        anyhow::Ok(cert)
    }
    .await;
    ca.auth.store.close().await;
    let cert = outcome?;

    if args.json {
        output::json(&issued_json(&cert, Some(&crt_path), Some(&key_path)))?;
    } else {
        let ids: Vec<String> = cert.identities.iter().map(|i| i.to_string()).collect();
        println!("Issued {} certificate {}", cert.profile, cert.serial);
        println!("  identities  {}", ids.join(", "));
        println!(
            "  valid       {} → {} ({})",
            symbolon_pki::rfc3339(cert.not_before),
            symbolon_pki::rfc3339(cert.not_after),
            format_delta(OffsetDateTime::now_utc(), cert.not_after).replace("in ", "expires in ")
        );
        println!(
            "  certificate {}  (leaf + intermediate)",
            crt_path.display()
        );
        println!(
            "  key         {}  (mode 0600, {})",
            key_path.display(),
            args.key_type
        );
    }
    Ok(())
}

// === ca sign ===

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The CSR file (PEM or DER).
    csr: PathBuf,
    #[command(flatten)]
    dir: DirArg,
    #[arg(long)]
    profile: Option<Profile>,
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    lifetime: Option<Duration>,
    /// Write the chain (leaf + intermediate) here; default: standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Replace an existing --out file.
    #[arg(long)]
    force: bool,
    #[arg(long)]
    json: bool,
}

pub async fn sign(args: SignArgs) -> CmdResult {
    if let Some(out) = &args.out {
        check_out_path(out, args.force)?;
    }
    let der = input::load_csr(&args.csr)?;
    let csr = symbolon_pki::check_csr(&der).map_err(|e| anyhow!("{}: {e}", args.csr.display()))?;
    let ca = Ca::open(&args.dir).await?;
    let outcome = async {
        let spec = LeafSpec {
            profile: args
                .profile
                .unwrap_or_else(|| Profile::default_for(&csr.identities)),
            identities: csr.identities.clone(),
            common_name: csr.common_name.clone().filter(|cn| cn.len() <= 64),
            lifetime: args.lifetime.unwrap_or(ca.settings.default_leaf),
        };
        spec.validate()
            .map_err(|e| anyhow!("{}: {e}", args.csr.display()))?;
        let cert = sign_leaf(&ca, &csr.spki_der, &spec)
            .map_err(|e| anyhow!("{}: {e:#}", args.csr.display()))?;
        // Stage the output before recording, so a write failure records
        // nothing; once recorded, the file goes into place.
        let staged = match &args.out {
            Some(path) => Some(files::stage(path, cert.chain_pem().as_bytes(), PUBLIC)?),
            None => None,
        };
        record(&ca, &cert, "sign")
            .await
            .map_err(|e| anyhow!("{}: {e:#}", args.csr.display()))?;
        if let Some(f) = staged {
            f.commit()?;
        }
        anyhow::Ok(cert)
    }
    .await;
    ca.auth.store.close().await;
    let cert = outcome?;
    match &args.out {
        Some(path) => {
            if args.json {
                output::json(&issued_json(&cert, Some(path), None))?;
            } else {
                println!(
                    "Signed {} certificate {} for {} → {}",
                    cert.profile,
                    cert.serial,
                    cert.identities
                        .iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    path.display()
                );
            }
        }
        None if args.json => {
            let mut j = issued_json(&cert, None, None);
            j.certificate = Some(cert.chain_pem());
            output::json(&j)?;
        }
        None => print!("{}", cert.chain_pem()),
    }
    Ok(())
}

// === ca revoke ===

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["serial", "cert"])))]
pub struct RevokeArgs {
    /// Serial number in hex, as `ca list` prints it.
    serial: Option<String>,
    #[command(flatten)]
    dir: DirArg,
    /// Revoke the certificate in this file instead of naming its serial.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    #[arg(long, default_value = "unspecified")]
    reason: RevocationReason,
}

pub async fn revoke(args: RevokeArgs) -> CmdResult {
    let serial = match (&args.serial, &args.cert) {
        (Some(s), _) => Serial::parse_hex(s).map_err(|e| anyhow!(e))?,
        (None, Some(path)) => {
            let certs = input::load_certificates(path)?;
            symbolon_pki::certificate_serial(&certs[0])
                .ok_or_else(|| anyhow!("{}: unreadable certificate", path.display()))?
        }
        (None, None) => fail!("give a SERIAL or --cert FILE"),
    };
    let ca = Ca::open(&args.dir).await?;
    let hex = serial.to_hex();
    let now = OffsetDateTime::now_utc();
    let outcome = ca
        .auth
        .store
        .revoke(
            &hex,
            args.reason.as_str(),
            now,
            symbolon_store::Audit {
                actor: "cli",
                action: "revoke",
            },
        )
        .await;
    // A revocation is published at once as a new CRL: a running `ca serve`
    // sees the new CRL number and pushes it down its revocation feed.
    let crl = match &outcome {
        Ok(RevokeOutcome::Revoked) => Some(ca.auth.publish_crl(None).await),
        _ => None,
    };
    ca.auth.store.close().await;
    let outcome = outcome?;
    match outcome {
        RevokeOutcome::Revoked => {
            println!("Revoked {hex} ({}) at {}", args.reason, symbolon_pki::rfc3339(now));
            match crl {
                Some(Ok(c)) => println!("Published CRL #{} (served by `ca serve` at /v1/crl and on its revocation feed)", c.number),
                Some(Err(e)) => eprintln!("warning: the revocation is recorded but publishing the CRL failed: {e}; run `symbolon ca crl --dir {}`", args.dir.dir.display()),
                None => {}
            }
            Ok(())
        }
        RevokeOutcome::AlreadyRevoked { at, reason } => {
            println!("{hex} was already revoked at {} ({reason}); nothing changed", symbolon_pki::rfc3339(at));
            Ok(())
        }
        RevokeOutcome::NotFound => Err(anyhow!(
            "serial {hex} was not issued by this CA (not in {}); check it with `symbolon ca list --dir {}`",
            args.dir.dir.join(ca_dir::STORE).display(),
            args.dir.dir.display()
        )
        .into()),
    }
}

// === ca crl ===

#[derive(Debug, Args)]
pub struct CrlArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Write the CRL here (PEM; DER with --der); default: standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[arg(long)]
    der: bool,
    /// Default: lifetimes.crl_next_update in ca.toml (24h).
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    next_update: Option<Duration>,
}

pub async fn crl(args: CrlArgs) -> CmdResult {
    let ca = Ca::open(&args.dir).await?;
    let now = OffsetDateTime::now_utc();
    let outcome = ca.auth.publish_crl(args.next_update).await;
    ca.auth.store.close().await;
    let record = outcome?;
    let bytes = if args.der {
        record.der.clone()
    } else {
        to_pem("X509 CRL", &record.der).into_bytes()
    };
    match &args.out {
        Some(path) => {
            files::write_atomic(path, &bytes, PUBLIC)?;
            let summary = symbolon_pki::describe_crl(&record.der, now)
                .ok_or_else(|| anyhow!("the new CRL does not parse"))?;
            println!(
                "Wrote CRL #{} with {} revoked certificate(s) to {} (next update {})",
                record.number,
                summary.entries.len(),
                path.display(),
                symbolon_pki::rfc3339(record.next_update)
            );
        }
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(())
}

// === ca list ===

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Only valid certificates expiring within this time (e.g. 7d).
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    expiring_within: Option<Duration>,
    /// Only revoked certificates.
    #[arg(long)]
    revoked: bool,
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct ListedJson {
    serial: String,
    status: &'static str,
    subject: String,
    identities: Vec<String>,
    profile: String,
    not_before: String,
    not_after: String,
    sha256_fingerprint: String,
    revoked_at: Option<String>,
    revocation_reason: Option<String>,
}

pub async fn list(args: ListArgs) -> CmdResult {
    let ca = Ca::open(&args.dir).await?;
    let now = OffsetDateTime::now_utc();
    let filter = ListFilter {
        expiring_within: args.expiring_within,
        revoked_only: args.revoked,
    };
    let records = ca.auth.store.list(&filter, now).await;
    ca.auth.store.close().await;
    let records = records?;
    if args.json {
        let items: Vec<ListedJson> = records
            .iter()
            .map(|r| ListedJson {
                serial: r.serial.clone(),
                status: r.status(now).as_str(),
                subject: r.subject.clone(),
                identities: r.identities.clone(),
                profile: r.profile.clone(),
                not_before: symbolon_pki::rfc3339(r.not_before),
                not_after: symbolon_pki::rfc3339(r.not_after),
                sha256_fingerprint: r.fingerprint.clone(),
                revoked_at: r.revoked_at.map(symbolon_pki::rfc3339),
                revocation_reason: r.revocation_reason.clone(),
            })
            .collect();
        output::json(&items)?;
        return Ok(());
    }
    if records.is_empty() {
        println!("No certificates match.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.serial.clone(),
                r.status(now).as_str().to_string(),
                format!(
                    "{} ({})",
                    symbolon_pki::rfc3339(r.not_after),
                    format_delta(now, r.not_after)
                ),
                r.profile.clone(),
                r.identities.join(", "),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["SERIAL", "STATUS", "NOT AFTER", "PROFILE", "IDENTITIES"],
            &rows
        )
    );
    Ok(())
}

// === ca audit ===

/// Where the audit trail is: a CA directory's store, or a database URL
/// (no CA keys are needed to check or read it).
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("store").required(true).multiple(true).args(["dir", "database"])))]
pub struct StoreArg {
    /// CA directory whose store to read.
    #[arg(long, env = "SYMBOLON_CA_DIR", value_name = "DIR")]
    dir: Option<PathBuf>,
    /// `sqlite:PATH` or `postgres://…`.
    #[arg(
        long,
        env = "SYMBOLON_DATABASE",
        value_name = "URL",
        hide_env_values = true
    )]
    database: Option<String>,
}

impl StoreArg {
    async fn open(&self) -> anyhow::Result<Store> {
        Ok(match (&self.database, &self.dir) {
            (Some(url), _)
                if url.starts_with("postgres://") || url.starts_with("postgresql://") =>
            {
                Store::open_postgres(url).await?
            }
            (Some(url), _) => match url.strip_prefix("sqlite:") {
                Some(path) => Store::open(Path::new(path)).await?,
                None => {
                    bail!("--database {url:?}: use sqlite:PATH or postgres://user@host:5432/db")
                }
            },
            (None, Some(dir)) => Store::open(&dir.join(ca_dir::STORE)).await?,
            (None, None) => bail!("give --dir DIR or --database URL"),
        })
    }
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    #[command(flatten)]
    store: StoreArg,
    #[arg(long)]
    json: bool,
}

/// Verifies the audit chain; exit 0 intact, 1 broken (naming the record).
pub async fn audit_verify(args: AuditVerifyArgs) -> CmdResult {
    let store = args.store.open().await?;
    let result = store.verify_audit().await;
    store.close().await;
    match result? {
        Ok((n, head)) => {
            if args.json {
                output::json(&serde_json::json!({"intact": true, "records": n, "head": head}))?;
            } else {
                println!("audit chain intact: {n} record(s), head {head}");
            }
            Ok(())
        }
        Err(b) => {
            if args.json {
                output::json(
                    &serde_json::json!({"intact": false, "record": b.seq, "problem": b.problem}),
                )?;
            } else {
                println!("audit chain BROKEN at record #{}: {}", b.seq, b.problem);
            }
            Err(crate::Failure::Negative)
        }
    }
}

#[derive(Debug, Args)]
pub struct AuditListArgs {
    #[command(flatten)]
    store: StoreArg,
    /// Only records from this time on: RFC 3339, or a duration back from now (e.g. 24h).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    #[arg(long)]
    json: bool,
}

pub async fn audit_list(args: AuditListArgs) -> CmdResult {
    let since = match &args.since {
        None => None,
        Some(s) => Some(
            match OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
                Ok(t) => t,
                Err(_) => {
                    let d = symbolon_core::parse_duration(s)
                    .map_err(|_| anyhow!("--since {s:?}: give an RFC 3339 time (2026-11-25T00:00:00Z) or a duration back from now (24h)"))?;
                    OffsetDateTime::now_utc()
                        - time::Duration::try_from(d)
                            .map_err(|_| anyhow!("--since: out of range"))?
                }
            },
        ),
    };
    let store = args.store.open().await?;
    let records = store.audit_records(since).await;
    store.close().await;
    let records = records?;
    if args.json {
        let items: Vec<serde_json::Value> = records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "seq": r.seq,
                    "at": symbolon_pki::rfc3339(r.at),
                    "actor": r.actor,
                    "action": r.action,
                    "subject": r.subject,
                    "detail": serde_json::from_str::<serde_json::Value>(&r.detail).unwrap_or(serde_json::Value::String(r.detail.clone())),
                    "hash": r.hash,
                })
            })
            .collect();
        output::json(&items)?;
        return Ok(());
    }
    if records.is_empty() {
        println!("No audit records match.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.seq.to_string(),
                symbolon_pki::rfc3339(r.at),
                r.action.clone(),
                r.subject.clone(),
                r.actor.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["#", "AT", "ACTION", "SUBJECT", "ACTOR"], &rows)
    );
    Ok(())
}
