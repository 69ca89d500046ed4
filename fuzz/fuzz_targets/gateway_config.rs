//! The gateway's TOML configuration: `gateway::config::parse(file, text)`,
//! which `load` calls after reading the file.
//!
//! `parse` is not pure. What this target does about each effect:
//! - it checks that `cert`, `key`, `client_ca`/`trust` exist: the config
//!   "lives" in a temporary directory holding `cert.pem`, `key.pem` and
//!   `ca.pem` (a CA certificate made at start-up), so relative names reach
//!   the later checks;
//! - it reads `server.client_ca` for `[revocation]`: that is `ca.pem`;
//! - it resolves `upstream.address` with the system resolver (DNS): only
//!   configs whose address is a literal `ip:port` are validated, so no
//!   run depends on the network; other configs are fuzzed up to TOML
//!   deserialisation;
//! - it reads `/usr/share/zoneinfo/<name>` for IANA zones in policy windows.
//!
//! Properties:
//! - never panics;
//! - text that does not deserialise into `GatewayConfig` is refused, and
//!   every refusal names the file;
//! - accepted configs are consistent: client mode listens on loopback only
//!   and forwards TCP without PROXY protocol; server mode has at least one
//!   connection and an existing client CA; PROXY protocol only with TCP;
//!   `raw` is the deserialised text.
#![no_main]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use symbolon_node::GatewayConfig;
use symbolon_node::gateway::config::{Protocol, Role, parse};

fn config_file() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = symbolon_pki::create_ca(
            &symbolon_pki::CaOptions {
                name: "Fuzz".into(),
                key_type: symbolon_pki::KeyType::EcdsaP256,
                root_lifetime: Duration::from_secs(86_400),
                intermediate_lifetime: Duration::from_secs(3600),
            },
            time::OffsetDateTime::now_utc(),
        )
        .expect("create a CA");
        let pem = symbolon_pki::to_pem("CERTIFICATE", &ca.root_der);
        std::fs::write(dir.path().join("ca.pem"), pem).expect("write ca.pem");
        std::fs::write(dir.path().join("cert.pem"), b"").expect("write cert.pem");
        std::fs::write(dir.path().join("key.pem"), b"").expect("write key.pem");
        let file = dir.path().join("gateway.toml");
        (dir, file)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = config_file();
    let raw = match toml::from_str::<GatewayConfig>(text) {
        Ok(raw) => raw,
        Err(_) => {
            let e = parse(file, text).expect_err("parse accepted what serde refused");
            assert_eq!(&e.file, file);
            return;
        }
    };
    if raw.upstream.address.parse::<SocketAddr>().is_err() {
        return; // would ask DNS
    }
    let loaded = match parse(file, text) {
        Ok(l) => l,
        Err(e) => {
            assert_eq!(&e.file, file);
            assert!(e.to_string().starts_with(&file.display().to_string()));
            return;
        }
    };
    assert_eq!(&loaded.file, file);
    assert_eq!(loaded.upstream_host, raw.upstream.address);
    if loaded.proxy_protocol {
        assert_eq!(loaded.protocol, Protocol::Tcp);
    }
    match &loaded.role {
        Role::Client(c) => {
            assert!(c.listen.ip().is_loopback());
            assert_eq!(loaded.protocol, Protocol::Tcp);
            assert!(!loaded.proxy_protocol);
            assert!(loaded.telemetry.is_none());
            assert!(c.max_connections >= 1);
            assert!(c.cert.is_file() && c.key.is_file() && c.trust.is_file());
        }
        Role::Server(s) => {
            assert!(s.max_connections >= 1);
            assert!(s.cert.is_file() && s.key.is_file() && s.client_ca.is_file());
            if let Some(r) = &s.revocation {
                assert!(!r.sources.anchors.is_empty());
            }
        }
    }
});
