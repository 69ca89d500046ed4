//! The CA directory: its file layout, `ca.toml`, and loading the online
//! issuer and store from it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use symbolon_core::{Namespace, parse_duration};
use symbolon_pki::{Issuer, input};
use symbolon_server::Authority;
use symbolon_store::Store;

pub const ROOT_CERT: &str = "root.crt";
pub const ROOT_KEY: &str = "root.key";
pub const INTERMEDIATE_CERT: &str = "intermediate.crt";
pub const INTERMEDIATE_KEY: &str = "intermediate.key";
pub const BUNDLE: &str = "ca-bundle.pem";
pub const STORE: &str = "symbolon.db";
pub const CONFIG: &str = "ca.toml";
pub const TOKEN_KEY: &str = "token.key";

/// `ca.toml`, as written by `ca init` and edited by operators.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// Shown in certificate subjects and output.
    pub name: String,
    /// Base URL where `ca serve` is reachable; leaves then carry CRL
    /// distribution point and OCSP URLs under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    pub names: Namespace,
    /// SPIFFE IDs or DNS names whose client certificates may use the admin
    /// API of `ca serve` (list certificates, revoke any, create tokens).
    #[serde(default)]
    pub admins: Vec<String>,
    #[serde(default)]
    pub lifetimes: Lifetimes,
    #[serde(default)]
    pub limits: Limits,
}

/// What one client may hold of `ca serve`: slots, and how long it may take
/// to handshake, to send a request's headers (or sit idle between
/// requests), and to send a whole request.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Connections served at once. When all are taken, a newcomer takes
    /// the slot of the oldest still in its handshake, else of the one idle
    /// longest; only when every one has a request in flight is it closed.
    #[serde(default = "max_connections")]
    pub max_connections: usize,
    #[serde(default = "handshake_timeout")]
    pub handshake_timeout: String,
    /// Also how long an idle keep-alive connection is kept.
    #[serde(default = "header_timeout")]
    pub header_timeout: String,
    /// From the end of the headers to the response, body upload included.
    #[serde(default = "request_timeout")]
    pub request_timeout: String,
}

fn max_connections() -> usize {
    4096
}
fn handshake_timeout() -> String {
    "10s".into()
}
fn header_timeout() -> String {
    "30s".into()
}
fn request_timeout() -> String {
    "60s".into()
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: max_connections(),
            handshake_timeout: handshake_timeout(),
            header_timeout: header_timeout(),
            request_timeout: request_timeout(),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifetimes {
    /// Lifetime of a leaf when none is asked for.
    #[serde(default = "default_leaf")]
    pub default_leaf: String,
    /// The longest leaf lifetime this CA grants.
    #[serde(default = "max_leaf")]
    pub max_leaf: String,
    /// How far ahead a CRL's nextUpdate is set.
    #[serde(default = "crl_next_update")]
    pub crl_next_update: String,
    /// How long gateway telemetry is kept for the dashboard.
    #[serde(default = "telemetry_retention")]
    pub telemetry_retention: String,
}

fn telemetry_retention() -> String {
    "7d".into()
}

fn default_leaf() -> String {
    "24h".into()
}
fn max_leaf() -> String {
    "90d".into()
}
fn crl_next_update() -> String {
    "24h".into()
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            default_leaf: default_leaf(),
            max_leaf: max_leaf(),
            crl_next_update: crl_next_update(),
            telemetry_retention: telemetry_retention(),
        }
    }
}

/// `ca.toml` after validation: durations parsed, names checked.
#[derive(Clone, Debug)]
pub struct Settings {
    pub raw: CaConfig,
    pub default_leaf: Duration,
    pub max_leaf: Duration,
    pub crl_next_update: Duration,
    pub telemetry_retention: Duration,
    pub limits: symbolon_server::Limits,
}

impl CaConfig {
    pub fn validate(self, file: &Path) -> anyhow::Result<Settings> {
        let f = file.display();
        let dur = |key: &str, v: &str| {
            parse_duration(v).map_err(|e| anyhow::anyhow!("{f}: lifetimes.{key}: {e}"))
        };
        let default_leaf = dur("default_leaf", &self.lifetimes.default_leaf)?;
        let max_leaf = dur("max_leaf", &self.lifetimes.max_leaf)?;
        let crl_next_update = dur("crl_next_update", &self.lifetimes.crl_next_update)?;
        let telemetry_retention = dur("telemetry_retention", &self.lifetimes.telemetry_retention)?;
        let limit = |key: &str, v: &str| {
            let d = parse_duration(v).map_err(|e| anyhow::anyhow!("{f}: limits.{key}: {e}"))?;
            if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
                bail!("{f}: limits.{key}: {v:?} must be between 1s and 1h");
            }
            Ok(d)
        };
        let l = &self.limits;
        let limits = symbolon_server::Limits {
            max_connections: l.max_connections,
            handshake_timeout: limit("handshake_timeout", &l.handshake_timeout)?,
            header_timeout: limit("header_timeout", &l.header_timeout)?,
            request_timeout: limit("request_timeout", &l.request_timeout)?,
        };
        if !(1..=1_000_000).contains(&l.max_connections) {
            bail!(
                "{f}: limits.max_connections: {} must be between 1 and 1000000",
                l.max_connections
            );
        }
        if default_leaf > max_leaf {
            bail!(
                "{f}: lifetimes.default_leaf ({}) is longer than lifetimes.max_leaf ({}); shorten it or raise max_leaf",
                self.lifetimes.default_leaf,
                self.lifetimes.max_leaf
            );
        }
        if crl_next_update < Duration::from_secs(60) {
            bail!("{f}: lifetimes.crl_next_update must be at least 1m");
        }
        if self.name.trim().is_empty() {
            bail!("{f}: name: must not be empty");
        }
        if let Some(td) = &self.names.trust_domain {
            symbolon_core::SpiffeId::parse(&format!("spiffe://{td}"))
                .map_err(|_| anyhow::anyhow!("{f}: names.trust_domain: {td:?} is not a valid SPIFFE trust domain (lower-case letters, digits, '.', '-', '_')"))?;
        }
        for rule in &self.names.dns {
            let name = rule.strip_prefix('.').unwrap_or(rule);
            symbolon_core::Identity::dns(name)
                .map_err(|e| anyhow::anyhow!("{f}: names.dns: {e}"))?;
        }
        if let Some(url) = &self.public_url
            && !url.starts_with("https://")
            && !url.starts_with("http://")
        {
            bail!("{f}: public_url: {url:?} must start with https:// (or http://)");
        }
        Ok(Settings {
            raw: self,
            default_leaf,
            max_leaf,
            crl_next_update,
            telemetry_retention,
            limits,
        })
    }
}

pub fn load_settings(dir: &Path) -> anyhow::Result<Settings> {
    let file = dir.join(CONFIG);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !dir.exists() {
                bail!(
                    "{}: no such CA directory; create one with `symbolon ca init --dir {}`",
                    dir.display(),
                    dir.display()
                );
            }
            bail!(
                "{}: not found; is {} a CA directory made by `symbolon ca init`?",
                file.display(),
                dir.display()
            );
        }
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", file.display())),
    };
    let raw: CaConfig =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    raw.validate(&file)
}

/// An opened CA: settings, the online issuer, the store.
pub struct Ca {
    pub settings: Settings,
    pub auth: Authority,
}

/// The token key: 32 random bytes, created on first use (0600).
fn token_key(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(TOKEN_KEY);
    match std::fs::read(&path) {
        Ok(k) if k.len() == 32 => Ok(k),
        Ok(_) => bail!(
            "{}: not a 32-byte token key; delete it to make a new one (outstanding tokens stop working)",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let k = symbolon_pki::new_token_key();
            symbolon_pki::files::write_atomic(&path, &k, symbolon_pki::files::PRIVATE)?;
            Ok(k)
        }
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
}

impl Ca {
    pub async fn open(arg: &crate::commands::DirArg) -> anyhow::Result<Ca> {
        let dir = arg.dir.as_path();
        let settings = load_settings(dir)?;
        let cert_path = dir.join(INTERMEDIATE_CERT);
        let mut certs = input::load_certificates(&cert_path)?;
        let cert = certs.remove(0);
        let key = input::load_private_key(&dir.join(INTERMEDIATE_KEY), None)?;
        let issuer = Issuer::new(cert, key)
            .map_err(|e| anyhow::anyhow!("{}: {e}", cert_path.display()))?
            .with_public_url(settings.raw.public_url.clone());
        let root = input::load_certificates(&dir.join(ROOT_CERT))?.remove(0);
        let token_key = token_key(dir)?;
        let store = match arg.database.as_deref() {
            None => Store::open(&dir.join(STORE)).await?,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Store::open_postgres(url).await?
            }
            Some(url) => match url.strip_prefix("sqlite:") {
                Some(path) => Store::open(Path::new(path)).await?,
                None => {
                    bail!("--database {url:?}: use sqlite:PATH or postgres://user@host:5432/db")
                }
            },
        };
        let auth = Authority {
            issuer,
            store,
            namespace: settings.raw.names.clone(),
            default_leaf: settings.default_leaf,
            max_leaf: settings.max_leaf,
            crl_next_update: settings.crl_next_update,
            telemetry_retention: settings.telemetry_retention,
            root,
            token_key,
            admins: settings.raw.admins.clone(),
            config_hint: format!("lifetimes.max_leaf in {}", dir.join(CONFIG).display()),
        };
        Ok(Ca { settings, auth })
    }
}
