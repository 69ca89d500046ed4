//! `symbolon ca issue`: profiles, SPIFFE rules, the CA's namespace, and the
//! rule that nothing is handed out before it is recorded.

use std::os::unix::fs::PermissionsExt;

use crate::support::{Sandbox, run_tool, tool};

fn list(sb: &Sandbox) -> Vec<serde_json::Value> {
    sb.ok(&["ca", "list", "--dir", "ca", "--json"])
        .json()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn issues_a_server_certificate_recorded_before_it_is_written() {
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let out = sb
        .ok(&[
            "ca",
            "issue",
            "--dir",
            "ca",
            "--dns",
            "api.example.org",
            "--ip",
            "127.0.0.1",
            "--out",
            "api",
            "--json",
        ])
        .json();
    let serial = out["serial"].as_str().unwrap();
    // 128 random bits: at most 32 hex digits, and (almost always) close to it.
    assert!(serial.len() <= 32 && serial.len() >= 24, "{serial}");
    assert_eq!(out["profile"], "server");
    assert_eq!(
        std::fs::metadata(sb.path("api.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let recorded = list(&sb);
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["serial"], serial);
    assert_eq!(recorded[0]["status"], "valid");
    assert_eq!(recorded[0]["sha256_fingerprint"], out["sha256_fingerprint"]);

    let chain = sb.ok(&["cert", "inspect", "api.crt", "--json"]).json();
    assert_eq!(chain.as_array().unwrap().len(), 2, "leaf + intermediate");
    assert_eq!(chain[0]["serial"], serial);
    assert_eq!(
        chain[0]["extended_key_usage"],
        serde_json::json!(["serverAuth"])
    );
    assert_eq!(
        chain[0]["subject_alt_names"],
        serde_json::json!(["DNS:api.example.org", "IP:127.0.0.1"])
    );
    assert_eq!(
        chain[0]["key_usage"],
        serde_json::json!(["digitalSignature"])
    );
    assert_eq!(chain[0]["is_ca"], false);
    // Default lifetime 24h, backdated one minute for clock skew.
    assert!(
        chain[0]["validity"]
            .as_str()
            .unwrap()
            .starts_with("expires in 23h")
            || chain[0]["validity"]
                .as_str()
                .unwrap()
                .starts_with("expires in 1d")
    );

    sb.ok(&[
        "cert",
        "verify",
        "api.crt",
        "--trust",
        "ca/root.crt",
        "--purpose",
        "server",
        "--dns",
        "api.example.org",
    ]);
    sb.ok(&[
        "cert",
        "verify",
        "api.crt",
        "--trust",
        "ca/root.crt",
        "--ip",
        "127.0.0.1",
    ]);
    if let Some(openssl) = tool("openssl") {
        let (code, text) = run_tool(
            &sb,
            &openssl,
            &[
                "verify",
                "-CAfile",
                "ca/root.crt",
                "-untrusted",
                "ca/intermediate.crt",
                "-purpose",
                "sslserver",
                "api.crt",
            ],
        );
        assert_eq!(code, 0, "{text}");
        // The key on disk belongs to the certificate.
        let (_, from_key) = run_tool(&sb, &openssl, &["pkey", "-in", "api.key", "-pubout"]);
        let (_, from_cert) = run_tool(
            &sb,
            &openssl,
            &["x509", "-in", "api.crt", "-noout", "-pubkey"],
        );
        assert_eq!(from_key, from_cert);
    }
}

#[test]
fn spiffe_identities_default_to_peer_and_follow_svid_rules() {
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let out = sb
        .ok(&[
            "ca",
            "issue",
            "--dir",
            "ca",
            "--spiffe-id",
            "spiffe://example.org/ns/prod/sa/web",
            "--out",
            "web",
            "--json",
        ])
        .json();
    assert_eq!(out["profile"], "peer");
    let c = sb.ok(&["cert", "inspect", "web.crt", "--json"]).json();
    assert_eq!(
        c[0]["extended_key_usage"],
        serde_json::json!(["serverAuth", "clientAuth"])
    );
    assert_eq!(
        c[0]["subject_alt_names"],
        serde_json::json!(["URI:spiffe://example.org/ns/prod/sa/web"])
    );
    sb.ok(&[
        "cert",
        "verify",
        "web.crt",
        "--trust",
        "ca/root.crt",
        "--purpose",
        "client",
        "--uri",
        "spiffe://example.org/ns/prod/sa/web",
    ]);
    if let Some(openssl) = tool("openssl") {
        let (code, text) = run_tool(
            &sb,
            &openssl,
            &[
                "verify",
                "-CAfile",
                "ca/root.crt",
                "-untrusted",
                "ca/intermediate.crt",
                "-purpose",
                "sslclient",
                "web.crt",
            ],
        );
        assert_eq!(code, 0, "{text}");
    }

    // Two SPIFFE IDs, or a SPIFFE ID plus another URI, break the one-URI-SAN rule.
    for extra in [
        ["--spiffe-id", "spiffe://example.org/other"],
        ["--uri", "urn:example:x"],
    ] {
        let mut args = vec![
            "ca",
            "issue",
            "--dir",
            "ca",
            "--spiffe-id",
            "spiffe://example.org/a",
            "--out",
            "bad",
        ];
        args.extend_from_slice(&extra);
        let r = sb.run(&args);
        assert_eq!(r.code, 2, "{}", r.all());
        assert!(r.stderr.contains("exactly one"), "{}", r.stderr);
    }
    assert!(!sb.path("bad.crt").exists() && !sb.path("bad.key").exists());
    assert_eq!(list(&sb).len(), 1, "a refused request was recorded");
}

#[test]
fn client_profile_and_lifetime() {
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--dns",
        "worker.example.org",
        "--profile",
        "client",
        "--lifetime",
        "2h",
        "--cn",
        "worker",
        "--out",
        "w",
    ]);
    let c = sb.ok(&["cert", "inspect", "w.crt", "--json"]).json();
    assert_eq!(
        c[0]["extended_key_usage"],
        serde_json::json!(["clientAuth"])
    );
    assert_eq!(c[0]["subject"], "CN=worker");
    assert!(
        c[0]["validity"]
            .as_str()
            .unwrap()
            .starts_with("expires in 2h")
            || c[0]["validity"]
                .as_str()
                .unwrap()
                .starts_with("expires in 1h 59m"),
        "{}",
        c[0]["validity"]
    );
    let r = sb.run(&[
        "cert",
        "verify",
        "w.crt",
        "--trust",
        "ca/root.crt",
        "--purpose",
        "server",
        "--json",
    ]);
    assert_eq!(r.code, 1);
    assert_eq!(r.json()["reason"], "bad_eku");
}

#[test]
fn names_outside_the_namespace_are_refused_and_leave_nothing() {
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let before = sb.files();
    for (flag, value) in [
        ("--dns", "evil.com"),
        ("--dns", "example.org.evil.com"),
        ("--ip", "10.0.0.1"),
        ("--spiffe-id", "spiffe://other.org/x"),
        ("--uri", "https://example.org/x"),
    ] {
        let r = sb.run(&["ca", "issue", "--dir", "ca", flag, value, "--out", "x"]);
        assert_eq!(r.code, 2, "{flag} {value}: {}", r.all());
        assert!(
            r.stderr.contains("outside the CA's namespace"),
            "{flag} {value}: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains("ca.toml"),
            "the error should say where to widen the namespace: {}",
            r.stderr
        );
    }
    assert_eq!(sb.files(), before, "a refused request wrote files");
    assert!(list(&sb).is_empty(), "a refused request was recorded");

    // Widening the namespace in ca.toml is what makes it pass.
    let toml = std::fs::read_to_string(sb.path("ca/ca.toml")).unwrap();
    std::fs::write(
        sb.path("ca/ca.toml"),
        toml.replace("\"localhost\",", "\"localhost\",\n    \".evil.com\","),
    )
    .unwrap();
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--dns",
        "www.evil.com",
        "--out",
        "x",
    ]);
}

#[test]
fn malformed_identities_name_the_flag() {
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    for (flag, value, says) in [
        ("--dns", "bad name.example.org", "--dns"),
        ("--ip", "300.1.1.1", "--ip"),
        ("--spiffe-id", "spiffe://example.org/a/../b", "--spiffe-id"),
        ("--uri", "no-scheme", "--uri"),
    ] {
        let r = sb.run(&["ca", "issue", "--dir", "ca", flag, value, "--out", "x"]);
        assert_eq!(r.code, 2, "{}", r.all());
        assert!(r.stderr.contains(says), "{flag}: {}", r.stderr);
    }
    let r = sb.run(&["ca", "issue", "--dir", "ca", "--out", "x"]);
    assert_eq!(r.code, 2, "no identity must be refused: {}", r.all());
}

#[test]
fn serials_are_unique_across_many_issuances() {
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    for i in 0..20 {
        sb.ok(&[
            "ca",
            "issue",
            "--dir",
            "ca",
            "--dns",
            &format!("n{i}.example.org"),
            "--out",
            &format!("n{i}"),
        ]);
    }
    let serials: std::collections::HashSet<String> = list(&sb)
        .iter()
        .map(|r| r["serial"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(serials.len(), 20);
}

#[test]
fn public_url_adds_crl_and_ocsp_locations() {
    let sb = Sandbox::new();
    sb.init_ca(&["--public-url", "https://ca.example.org:8443/"]);
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--dns",
        "a.example.org",
        "--out",
        "a",
    ]);
    let c = sb.ok(&["cert", "inspect", "a.crt", "--json"]).json();
    assert_eq!(
        c[0]["crl_distribution_points"],
        serde_json::json!(["https://ca.example.org:8443/v1/crl"])
    );
    assert_eq!(
        c[0]["ocsp_urls"],
        serde_json::json!(["https://ca.example.org:8443/v1/ocsp"])
    );
    if let Some(openssl) = tool("openssl") {
        let (_, text) = run_tool(
            &sb,
            &openssl,
            &["x509", "-in", "a.crt", "-noout", "-ocsp_uri"],
        );
        assert_eq!(text.trim(), "https://ca.example.org:8443/v1/ocsp");
    }
}
