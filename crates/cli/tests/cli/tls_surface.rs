//! The gateway's TLS surface as an outside scanner sees it: `sslscan`
//! against strict and permissive gateways shows only TLS 1.2 and 1.3, only
//! AEAD suites with ephemeral key exchange, no renegotiation, and exactly
//! the configured CA as acceptable client-certificate issuers.

use crate::gw_support::{Gateway, HttpBackend, free_port, pki, server_config};
use crate::support::{Sandbox, run_tool, tool};

fn scan(sb: &Sandbox, sslscan: &std::path::Path, port: u16) -> String {
    let (code, out) = run_tool(
        sb,
        sslscan,
        &[
            "--no-colour",
            "--show-client-cas",
            &format!("127.0.0.1:{port}"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    out
}

fn check_surface(out: &str) -> Vec<String> {
    for (proto, state) in [
        ("SSLv2", "disabled"),
        ("SSLv3", "disabled"),
        ("TLSv1.0", "disabled"),
        ("TLSv1.1", "disabled"),
        ("TLSv1.2", "enabled"),
        ("TLSv1.3", "enabled"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(proto) && l.split_whitespace().nth(1) == Some(state)),
            "{proto} should be {state}:\n{out}"
        );
    }
    assert!(out.contains("Session renegotiation not supported"), "{out}");
    let suites: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with("Preferred") || l.starts_with("Accepted"))
        .map(str::to_string)
        .collect();
    assert!(!suites.is_empty(), "no cipher suites listed:\n{out}");
    for s in &suites {
        let aead = s.contains("GCM") || s.contains("CHACHA20");
        let weak = [
            "CBC", "RC4", "DES", "NULL", "EXP", "MD5", "-SHA ", "PSK", "ANON",
        ]
        .iter()
        .any(|w| s.to_ascii_uppercase().contains(w));
        assert!(aead && !weak, "not an AEAD suite: {s}\n{out}");
        if s.contains("TLSv1.2") {
            assert!(s.contains("ECDHE"), "TLS 1.2 without ephemeral ECDH: {s}");
        }
    }
    suites
}

/// The acceptable client CA names sslscan printed.
fn client_cas(out: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.contains("Acceptable client certificate CA names"))
        .skip(1)
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn sslscan_sees_only_tls12_and_13_aead_suites_and_only_the_configured_ca() {
    let Some(sslscan) = tool("sslscan") else {
        return;
    };
    let sb = Sandbox::new();
    pki(&sb);
    // A second CA that exists on the machine but is not configured.
    sb.ok(&[
        "ca",
        "init",
        "--dir",
        "ca2",
        "--name",
        "Stranger",
        "--insecure-plaintext-root-key",
    ]);
    let backend = HttpBackend::start();
    for mode in ["strict", "permissive"] {
        let port = free_port();
        let _gw = Gateway::start(
            &sb,
            &format!("gw-{mode}.toml"),
            &server_config(port, backend.addr, mode, "http", ""),
            port,
        );
        let out = scan(&sb, &sslscan, port);
        let suites = check_surface(&out);
        assert!(
            suites.iter().any(|s| s.contains("TLSv1.3")),
            "{mode}: no TLS 1.3 suite:\n{out}"
        );
        if mode == "permissive" {
            // Without a required certificate the scanner completes TLS 1.2
            // handshakes too, so their suites are listed and checked.
            assert!(
                suites.iter().any(|s| s.contains("TLSv1.2")),
                "permissive: no TLS 1.2 suite listed:\n{out}"
            );
        }
        assert_eq!(
            client_cas(&out),
            vec!["/O=Symbolon/CN=Symbolon Root CA".to_string()],
            "{mode}:\n{out}"
        );
        assert!(!out.contains("Stranger"), "{out}");
    }
    // The scans never got as far as a request.
    assert_eq!(backend.bytes(), 0);
}
