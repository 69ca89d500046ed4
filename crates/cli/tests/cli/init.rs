//! `symbolon ca init`: the files it writes, their modes, the encrypted root
//! key, every key type, and OpenSSL's view of the result.

use std::os::unix::fs::PermissionsExt;

use crate::support::{PASSPHRASE, Sandbox, run_tool, tool};

fn mode(sb: &Sandbox, rel: &str) -> u32 {
    std::fs::metadata(sb.path(rel))
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn init_writes_the_ca_layout_with_private_keys_0600() {
    let sb = Sandbox::new();
    let out = sb.init_ca(&[]);
    for f in [
        "root.crt",
        "intermediate.crt",
        "ca-bundle.pem",
        "ca.toml",
        "symbolon.db",
        "root.key",
        "intermediate.key",
    ] {
        assert!(sb.path(&format!("ca/{f}")).is_file(), "ca/{f} missing");
    }
    assert_eq!(mode(&sb, "ca/root.key"), 0o600);
    assert_eq!(mode(&sb, "ca/intermediate.key"), 0o600);
    assert_eq!(mode(&sb, "ca/root.crt"), 0o644);
    // No temporary files are left behind.
    assert!(
        !sb.files().iter().any(|f| f.contains(".tmp")),
        "{:?}",
        sb.files()
    );

    let root_key = std::fs::read_to_string(sb.path("ca/root.key")).unwrap();
    assert!(
        root_key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "{root_key}"
    );
    let toml = std::fs::read_to_string(sb.path("ca/ca.toml")).unwrap();
    assert!(toml.contains("trust_domain = \"example.org\""), "{toml}");

    // The printed fingerprint is the SHA-256 of the root certificate's DER.
    let inspect = sb.ok(&["cert", "inspect", "ca/root.crt", "--json"]).json();
    let fp = inspect[0]["sha256_fingerprint"].as_str().unwrap();
    assert!(
        out.stdout
            .contains(&format!("Root fingerprint (SHA-256): {fp}")),
        "{}",
        out.stdout
    );
    assert_eq!(inspect[0]["is_ca"], true);
    assert_eq!(inspect[0]["path_len"], 1);
    let inter = sb
        .ok(&["cert", "inspect", "ca/intermediate.crt", "--json"])
        .json();
    assert_eq!(inter[0]["path_len"], 0);
    assert!(
        inter[0]["key_usage"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "keyCertSign")
    );
}

#[test]
fn openssl_agrees_with_the_fingerprint_and_opens_the_root_key_only_with_the_passphrase() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    let out = sb.init_ca(&[]);
    let (code, text) = run_tool(
        &sb,
        &openssl,
        &[
            "x509",
            "-in",
            "ca/root.crt",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    assert_eq!(code, 0, "{text}");
    let openssl_fp = text
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase();
    assert!(
        out.stdout.contains(&openssl_fp),
        "openssl says {openssl_fp}, we printed:\n{}",
        out.stdout
    );

    let (code, text) = run_tool(
        &sb,
        &openssl,
        &[
            "pkey",
            "-in",
            "ca/root.key",
            "-passin",
            "file:pass.txt",
            "-noout",
        ],
    );
    assert_eq!(code, 0, "openssl could not decrypt the root key: {text}");
    std::fs::write(sb.path("wrong.txt"), "not the passphrase").unwrap();
    let (code, _) = run_tool(
        &sb,
        &openssl,
        &[
            "pkey",
            "-in",
            "ca/root.key",
            "-passin",
            "file:wrong.txt",
            "-noout",
        ],
    );
    assert_ne!(code, 0, "a wrong passphrase opened the root key");
    // The decrypted key is the one the root certificate certifies.
    let (_, from_key) = run_tool(
        &sb,
        &openssl,
        &[
            "pkey",
            "-in",
            "ca/root.key",
            "-passin",
            "file:pass.txt",
            "-pubout",
        ],
    );
    let (_, from_cert) = run_tool(
        &sb,
        &openssl,
        &["x509", "-in", "ca/root.crt", "-noout", "-pubkey"],
    );
    assert_eq!(from_key, from_cert);
    let (code, text) = run_tool(
        &sb,
        &openssl,
        &["verify", "-CAfile", "ca/root.crt", "ca/intermediate.crt"],
    );
    assert_eq!(code, 0, "{text}");
}

#[test]
fn passphrase_can_come_from_the_environment() {
    let sb = Sandbox::new();
    let out = sb
        .cmd(&["ca", "init", "--dir", "ca"])
        .env("SYMBOLON_ROOT_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = std::fs::read_to_string(sb.path("ca/root.key")).unwrap();
    assert!(key.contains("ENCRYPTED PRIVATE KEY"));
}

#[test]
fn plaintext_root_key_only_when_asked_explicitly() {
    let sb = Sandbox::new();
    let r = sb.run(&["ca", "init", "--dir", "ca"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--root-passphrase-file"), "{}", r.stderr);
    assert!(!sb.path("ca").exists());
    let r = sb.ok(&["ca", "init", "--dir", "ca", "--insecure-plaintext-root-key"]);
    assert!(r.stdout.contains("NOT ENCRYPTED"), "{}", r.stdout);
    let key = std::fs::read_to_string(sb.path("ca/root.key")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn every_key_type_makes_a_ca_that_issues_leaves_openssl_accepts() {
    let openssl = tool("openssl");
    for kt in [
        "ecdsa-p256",
        "ecdsa-p384",
        "ed25519",
        "rsa-2048",
        "rsa-3072",
        "rsa-4096",
    ] {
        let sb = Sandbox::new();
        sb.ok(&[
            "ca",
            "init",
            "--dir",
            "ca",
            "--key-type",
            kt,
            "--insecure-plaintext-root-key",
            "--trust-domain",
            "example.org",
        ]);
        sb.ok(&[
            "ca",
            "issue",
            "--dir",
            "ca",
            "--dns",
            "a.example.org",
            "--key-type",
            kt,
            "--out",
            "leaf",
        ]);
        let info = sb.ok(&["cert", "inspect", "leaf.crt", "--json"]).json();
        let alg = info[0]["key"]["algorithm"].as_str().unwrap().to_string();
        let expected = match kt {
            "ecdsa-p256" => "ECDSA P-256",
            "ecdsa-p384" => "ECDSA P-384",
            "ed25519" => "Ed25519",
            _ => "RSA",
        };
        assert_eq!(alg, expected, "{kt}");
        if kt.starts_with("rsa-") {
            assert_eq!(
                info[0]["key"]["bits"].to_string(),
                kt.trim_start_matches("rsa-")
            );
        }
        sb.ok(&[
            "cert",
            "verify",
            "leaf.crt",
            "--trust",
            "ca/root.crt",
            "--dns",
            "a.example.org",
        ]);
        if let Some(openssl) = &openssl {
            let (code, text) = run_tool(
                &sb,
                openssl,
                &[
                    "verify",
                    "-CAfile",
                    "ca/root.crt",
                    "-untrusted",
                    "ca/intermediate.crt",
                    "leaf.crt",
                ],
            );
            assert_eq!(code, 0, "{kt}: {text}");
        }
    }
}

#[test]
fn lifetimes_and_names_are_applied() {
    let sb = Sandbox::new();
    sb.ok(&[
        "ca",
        "init",
        "--dir",
        "ca",
        "--insecure-plaintext-root-key",
        "--root-lifetime",
        "2y",
        "--intermediate-lifetime",
        "30d",
        "--name",
        "Acme Corp",
    ]);
    let root = sb.ok(&["cert", "inspect", "ca/root.crt", "--json"]).json();
    let inter = sb
        .ok(&["cert", "inspect", "ca/intermediate.crt", "--json"])
        .json();
    assert_eq!(root[0]["subject"], "O=Acme Corp, CN=Acme Corp Root CA");
    assert_eq!(
        inter[0]["subject"],
        "O=Acme Corp, CN=Acme Corp Intermediate CA"
    );
    let parse = |v: &serde_json::Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let root_days = (parse(&root[0]["not_after"]) - parse(&root[0]["not_before"])).whole_days();
    let inter_days = (parse(&inter[0]["not_after"]) - parse(&inter[0]["not_before"])).whole_days();
    assert_eq!(root_days, 730);
    assert_eq!(inter_days, 30);
}

#[test]
fn an_intermediate_outliving_the_root_is_refused_and_nothing_is_written() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("pass.txt"), PASSPHRASE).unwrap();
    let r = sb.run(&[
        "ca",
        "init",
        "--dir",
        "ca",
        "--root-passphrase-file",
        "pass.txt",
        "--root-lifetime",
        "1y",
        "--intermediate-lifetime",
        "2y",
    ]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("intermediate lifetime"), "{}", r.stderr);
    assert!(!sb.path("ca").exists(), "{:?}", sb.files());
}
