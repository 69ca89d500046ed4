//! The gateway's TOML configuration: parsed and validated completely before
//! any port is bound. Every error names the file, the key and what was
//! expected. Relative paths are relative to the config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use symbolon_core::{Policy, PolicyConfig, parse_duration};

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub server: Option<ServerSection>,
    pub client: Option<ClientSection>,
    pub upstream: UpstreamSection,
    #[serde(default)]
    pub policy: PolicyConfig,
    pub metrics: Option<MetricsSection>,
    pub revocation: Option<RevocationSection>,
    pub telemetry: Option<TelemetrySection>,
}

/// Where to send telemetry for the dashboard.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    /// Control plane base URL (https://host:port).
    pub url: String,
    /// The service name shown in the connection matrix.
    pub service: String,
    #[serde(default = "five_seconds")]
    pub interval: String,
}

fn five_seconds() -> String {
    "5s".into()
}

/// Where revocation data comes from and what to do without it.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationSection {
    /// Control plane base URL (https://host:port): its revocation feed.
    pub feed: Option<String>,
    /// CRL URLs (https://…) or files.
    #[serde(default)]
    pub crl: Vec<String>,
    /// Ask OCSP for client certificates without a fresh cached answer.
    #[serde(default)]
    pub ocsp: bool,
    /// OCSP responder to use instead of the certificate's AIA URL.
    pub ocsp_url: Option<String>,
    #[serde(default = "sixty_seconds")]
    pub crl_refresh: String,
    #[serde(default = "fail_closed")]
    pub on_unavailable: String,
    #[serde(default = "ten_minutes")]
    pub max_staleness: String,
}

fn sixty_seconds() -> String {
    "60s".into()
}
fn fail_closed() -> String {
    "fail-closed".into()
}
fn ten_minutes() -> String {
    "10m".into()
}

/// Validated `[revocation]`.
#[derive(Clone, Debug)]
pub struct RevocationSettings {
    pub sources: crate::gateway::revocation::Sources,
    pub fail_open: bool,
    pub max_staleness: Duration,
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    #[serde(default = "strict")]
    pub mode: String,
    #[serde(default = "ten_seconds")]
    pub handshake_timeout: String,
    /// HTTP mode: to send a request's headers, or sit idle between requests.
    #[serde(default = "thirty_seconds")]
    pub header_timeout: String,
    #[serde(default = "max_connections")]
    pub max_connections: usize,
    pub max_connection_lifetime: Option<String>,
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    pub listen: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA bundle the upstream server's certificate must chain to.
    pub trust: PathBuf,
    pub server_spiffe_id: Option<String>,
    pub server_dns: Option<String>,
    pub server_spki_sha256: Option<String>,
    #[serde(default = "ten_seconds")]
    pub handshake_timeout: String,
    #[serde(default = "max_connections")]
    pub max_connections: usize,
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub address: String,
    #[serde(default = "http")]
    pub protocol: String,
    #[serde(default)]
    pub proxy_protocol: bool,
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub listen: String,
}

fn strict() -> String {
    "strict".into()
}
fn ten_seconds() -> String {
    "10s".into()
}
fn thirty_seconds() -> String {
    "30s".into()
}
fn max_connections() -> usize {
    10_000
}
fn http() -> String {
    "http".into()
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Tcp,
}

/// A validated configuration with resolved paths and parsed values.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub file: PathBuf,
    pub raw: GatewayConfig,
    pub role: Role,
    pub upstream: SocketAddr,
    pub upstream_host: String,
    pub protocol: Protocol,
    pub proxy_protocol: bool,
    pub policy: Arc<Policy>,
    pub metrics: Option<SocketAddr>,
    /// (control plane, service, interval).
    pub telemetry: Option<(crate::agent::client::CaUrl, String, Duration)>,
}

#[derive(Clone, Debug)]
pub enum Role {
    Server(ServerSettings),
    Client(ClientSettings),
}

#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    pub permissive: bool,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub max_connection_lifetime: Option<Duration>,
    pub revocation: Option<RevocationSettings>,
}

#[derive(Clone, Debug)]
pub struct ClientSettings {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub trust: PathBuf,
    pub identity: symbolon_tls::ServerIdentity,
    pub handshake_timeout: Duration,
    pub max_connections: usize,
}

/// Reads and validates a gateway configuration file.
pub fn load(file: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
        file: file.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    parse(file, &text)
}

/// Validates the text of the configuration file `file` (which names it in
/// errors and anchors relative paths). Not pure: it checks that the named
/// certificate and key files exist, reads `server.client_ca` when
/// `[revocation]` is set, resolves `upstream.address` and reads zoneinfo
/// for IANA time-zone names in policy windows.
pub fn parse(file: &Path, text: &str) -> Result<Loaded, ConfigError> {
    let err = |message: String| ConfigError {
        file: file.to_path_buf(),
        message,
    };
    let raw: GatewayConfig =
        toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_string()))?;
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let addr = |key: &str, v: &str| -> Result<SocketAddr, ConfigError> {
        v.parse().map_err(|_| {
            err(format!(
                "{key}: {v:?} is not an address; write it like 127.0.0.1:8443"
            ))
        })
    };
    let dur = |key: &str, v: &str| parse_duration(v).map_err(|e| err(format!("{key}: {e}")));
    let must_exist = |key: &str, p: &Path| -> Result<(), ConfigError> {
        if p.is_file() {
            Ok(())
        } else {
            Err(err(format!("{key}: {} does not exist", p.display())))
        }
    };

    let role = match (&raw.server, &raw.client) {
        (Some(_), Some(_)) => {
            return Err(err(
                "give either [server] (terminate mTLS) or [client] (originate mTLS), not both"
                    .into(),
            ));
        }
        (None, None) => return Err(err("missing [server] or [client] section".into())),
        (Some(s), None) => {
            let permissive = match s.mode.as_str() {
                "strict" => false,
                "permissive" => true,
                other => {
                    return Err(err(format!(
                        "server.mode: {other:?}; use \"strict\" or \"permissive\""
                    )));
                }
            };
            let (cert, key, client_ca) = (resolve(&s.cert), resolve(&s.key), resolve(&s.client_ca));
            must_exist("server.cert", &cert)?;
            must_exist("server.key", &key)?;
            must_exist("server.client_ca", &client_ca)?;
            if s.max_connections == 0 {
                return Err(err("server.max_connections: must be at least 1".into()));
            }
            let revocation = match &raw.revocation {
                None => None,
                Some(r) => Some(revocation_settings(r, &client_ca, &resolve, &err)?),
            };
            Role::Server(ServerSettings {
                listen: addr("server.listen", &s.listen)?,
                cert,
                key,
                client_ca,
                permissive,
                handshake_timeout: dur("server.handshake_timeout", &s.handshake_timeout)?,
                header_timeout: dur("server.header_timeout", &s.header_timeout)?,
                max_connections: s.max_connections,
                revocation,
                max_connection_lifetime: s
                    .max_connection_lifetime
                    .as_deref()
                    .map(|v| dur("server.max_connection_lifetime", v))
                    .transpose()?,
            })
        }
        (None, Some(c)) => {
            let listen = addr("client.listen", &c.listen)?;
            if !listen.ip().is_loopback() {
                return Err(err(format!(
                    "client.listen: {listen} is not a loopback address; client mode accepts plain text and must stay on this machine"
                )));
            }
            if c.server_spiffe_id.is_none()
                && c.server_dns.is_none()
                && c.server_spki_sha256.is_none()
            {
                return Err(err("[client]: name the upstream's identity with server_spiffe_id, server_dns or server_spki_sha256; chaining to the CA alone is not enough".into()));
            }
            if let Some(id) = &c.server_spiffe_id {
                symbolon_core::SpiffeId::parse(id)
                    .map_err(|e| err(format!("client.server_spiffe_id: {e}")))?;
            }
            let (cert, key, trust) = (resolve(&c.cert), resolve(&c.key), resolve(&c.trust));
            must_exist("client.cert", &cert)?;
            must_exist("client.key", &key)?;
            must_exist("client.trust", &trust)?;
            Role::Client(ClientSettings {
                listen,
                cert,
                key,
                trust,
                identity: symbolon_tls::ServerIdentity {
                    spiffe_id: c.server_spiffe_id.clone(),
                    dns: c.server_dns.clone(),
                    ip: None,
                    spki_sha256: c.server_spki_sha256.clone(),
                },
                handshake_timeout: dur("client.handshake_timeout", &c.handshake_timeout)?,
                max_connections: c.max_connections.max(1),
            })
        }
    };

    let upstream_host = raw.upstream.address.clone();
    let upstream = resolve_addr(&raw.upstream.address).ok_or_else(|| {
        err(format!(
            "upstream.address: {:?} is not host:port that resolves",
            raw.upstream.address
        ))
    })?;
    let protocol = match raw.upstream.protocol.as_str() {
        "http" => Protocol::Http,
        "tcp" => Protocol::Tcp,
        other => {
            return Err(err(format!(
                "upstream.protocol: {other:?}; use \"http\" or \"tcp\""
            )));
        }
    };
    if raw.upstream.proxy_protocol && protocol != Protocol::Tcp {
        return Err(err("upstream.proxy_protocol: only with protocol = \"tcp\" (HTTP mode forwards identity in x-forwarded-client-cert)".into()));
    }
    if matches!(role, Role::Client(_)) && raw.revocation.is_some() {
        return Err(err("[revocation] applies to server mode (client certificates); client mode verifies the upstream's identity".into()));
    }
    if matches!(role, Role::Client(_)) && (protocol != Protocol::Tcp || raw.upstream.proxy_protocol)
    {
        return Err(err(
            "client mode forwards bytes: set upstream.protocol = \"tcp\" and no proxy_protocol"
                .into(),
        ));
    }
    let policy =
        Policy::compile(&raw.policy, &crate::zones::resolve).map_err(|e| err(e.to_string()))?;
    let metrics = raw
        .metrics
        .as_ref()
        .map(|m| addr("metrics.listen", &m.listen))
        .transpose()?;
    let telemetry = match &raw.telemetry {
        None => None,
        Some(t) => {
            let url = crate::agent::client::CaUrl::parse(&t.url)
                .map_err(|e| err(format!("telemetry.url: {}", e.replace("--ca ", ""))))?;
            if t.service.trim().is_empty() {
                return Err(err("telemetry.service: name the service (shown in the dashboard's connection matrix)".into()));
            }
            if matches!(role, Role::Client(_)) {
                return Err(err("[telemetry] applies to server mode".into()));
            }
            let dur =
                |key: &str, v: &str| parse_duration(v).map_err(|e| err(format!("{key}: {e}")));
            Some((
                url,
                t.service.clone(),
                dur("telemetry.interval", &t.interval)?,
            ))
        }
    };
    Ok(Loaded {
        file: file.to_path_buf(),
        role,
        upstream,
        upstream_host,
        protocol,
        proxy_protocol: raw.upstream.proxy_protocol,
        policy: Arc::new(policy),
        metrics,
        telemetry,
        raw,
    })
}

fn resolve_addr(s: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs().ok()?.next()
}

fn revocation_settings(
    r: &RevocationSection,
    client_ca: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    err: &dyn Fn(String) -> ConfigError,
) -> Result<RevocationSettings, ConfigError> {
    use crate::agent::client::CaUrl;
    use crate::gateway::revocation::CrlSource;
    let fail_open = match r.on_unavailable.as_str() {
        "fail-closed" => false,
        "fail-open" => true,
        other => {
            return Err(err(format!(
                "revocation.on_unavailable: {other:?}; use \"fail-closed\" or \"fail-open\""
            )));
        }
    };
    let dur =
        |key: &str, v: &str| parse_duration(v).map_err(|e| err(format!("revocation.{key}: {e}")));
    let feed = r
        .feed
        .as_deref()
        .map(|u| {
            CaUrl::parse(u).map_err(|e| err(format!("revocation.feed: {}", e.replace("--ca ", ""))))
        })
        .transpose()?;
    let mut crls = Vec::new();
    for c in &r.crl {
        if c.starts_with("https://") {
            let url = CaUrl::parse(c)
                .map_err(|e| err(format!("revocation.crl: {}", e.replace("--ca ", ""))))?;
            let path = c
                .splitn(4, '/')
                .nth(3)
                .map(|p| format!("/{p}"))
                .unwrap_or_else(|| "/v1/crl".into());
            crls.push(CrlSource::Url(url, path));
        } else if c.contains("://") {
            return Err(err(format!(
                "revocation.crl: {c:?}: use an https:// URL or a file path"
            )));
        } else {
            crls.push(CrlSource::File(resolve(Path::new(c))));
        }
    }
    if feed.is_none() && crls.is_empty() && !r.ocsp {
        return Err(err(
            "[revocation]: give a source: feed = \"https://ca:8443\", crl = [\"…\"] and/or ocsp = true".into(),
        ));
    }
    if let Some(u) = &r.ocsp_url {
        CaUrl::parse(u)
            .map_err(|e| err(format!("revocation.ocsp_url: {}", e.replace("--ca ", ""))))?;
    }
    let anchors = symbolon_pki::input::load_certificates(client_ca)
        .map_err(|e| err(format!("server.client_ca: {e}")))?;
    Ok(RevocationSettings {
        sources: crate::gateway::revocation::Sources {
            feed,
            ocsp: r.ocsp,
            ocsp_url: r.ocsp_url.clone(),
            crls,
            crl_refresh: dur("crl_refresh", &r.crl_refresh)?,
            anchors,
        },
        fail_open,
        max_staleness: dur("max_staleness", &r.max_staleness)?,
    })
}
