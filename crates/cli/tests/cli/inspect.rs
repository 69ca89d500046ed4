//! `symbolon cert inspect`: certificates, chains, CSRs and CRLs, PEM or DER,
//! described in JSON whose facts OpenSSL confirms, and in plain text.

use std::path::Path;

use crate::support::{Sandbox, run_tool, tool};

fn ossl(sb: &Sandbox, openssl: &Path, args: &[&str]) -> String {
    let (code, out) = run_tool(sb, openssl, args);
    assert_eq!(code, 0, "openssl {args:?} failed:\n{out}");
    out
}

fn inspect_json(sb: &Sandbox, file: &str) -> Vec<serde_json::Value> {
    sb.ok(&["cert", "inspect", file, "--json"])
        .json()
        .as_array()
        .unwrap()
        .clone()
}

/// The SHA-256 fingerprint of a PEM certificate as OpenSSL computes it, in
/// Symbolon's form (lower-case hex, no colons).
fn openssl_fingerprint(sb: &Sandbox, openssl: &Path, pem: &str) -> String {
    let out = ossl(
        sb,
        openssl,
        &["x509", "-in", pem, "-noout", "-fingerprint", "-sha256"],
    );
    // "sha256 Fingerprint=12:0D:…" (the label's case varies by version).
    let hex = out.trim().split_once('=').unwrap().1;
    hex.replace(':', "").to_ascii_lowercase()
}

/// base64(SHA-256(DER SubjectPublicKeyInfo)), computed by OpenSSL alone.
fn openssl_spki_pin(sb: &Sandbox, openssl: &Path, pem: &str) -> String {
    ossl(
        sb,
        openssl,
        &[
            "x509",
            "-in",
            pem,
            "-noout",
            "-pubkey",
            "-out",
            "pin.pub.pem",
        ],
    );
    ossl(
        sb,
        openssl,
        &[
            "pkey",
            "-pubin",
            "-in",
            "pin.pub.pem",
            "-outform",
            "DER",
            "-out",
            "pin.pub.der",
        ],
    );
    ossl(
        sb,
        openssl,
        &[
            "dgst",
            "-sha256",
            "-binary",
            "-out",
            "pin.sha256",
            "pin.pub.der",
        ],
    );
    ossl(sb, openssl, &["base64", "-in", "pin.sha256"])
        .trim()
        .to_string()
}

/// Issues `NAME.crt` (leaf + intermediate) and extracts the leaf alone into
/// `NAME.leaf.pem`.
fn issue_leaf(sb: &Sandbox, openssl: &Path, name: &str, extra: &[&str]) {
    let mut args = vec!["ca", "issue", "--dir", "ca", "--out", name];
    args.extend_from_slice(extra);
    sb.ok(&args);
    ossl(
        sb,
        openssl,
        &[
            "x509",
            "-in",
            &format!("{name}.crt"),
            "-out",
            &format!("{name}.leaf.pem"),
        ],
    );
}

/// Checks the facts of `cert inspect --json` on a single certificate against
/// OpenSSL's reading of the same file.
fn assert_matches_openssl(sb: &Sandbox, openssl: &Path, pem: &str, c: &serde_json::Value) {
    assert_eq!(c["kind"], "certificate");
    assert_eq!(
        c["sha256_fingerprint"],
        openssl_fingerprint(sb, openssl, pem).as_str()
    );
    assert_eq!(
        c["spki_sha256"],
        openssl_spki_pin(sb, openssl, pem).as_str()
    );
    let serial = ossl(sb, openssl, &["x509", "-in", pem, "-noout", "-serial"]);
    assert_eq!(
        c["serial"],
        serial
            .trim()
            .strip_prefix("serial=")
            .unwrap()
            .to_ascii_lowercase()
            .as_str()
    );
}

#[test]
fn describes_an_ec_leaf() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    issue_leaf(
        &sb,
        &openssl,
        "a",
        &["--dns", "a.example.org", "--ip", "127.0.0.1"],
    );
    let j = inspect_json(&sb, "a.leaf.pem");
    assert_eq!(j.len(), 1);
    let c = &j[0];
    assert_matches_openssl(&sb, &openssl, "a.leaf.pem", c);
    assert_eq!(
        c["subject_alt_names"],
        serde_json::json!(["DNS:a.example.org", "IP:127.0.0.1"])
    );
    assert_eq!(c["key"]["algorithm"], "ECDSA P-256");
    assert_eq!(c["key"]["bits"], 256);
    assert_eq!(c["extended_key_usage"], serde_json::json!(["serverAuth"]));
    assert_eq!(c["is_ca"], false);
    assert_eq!(c["self_signed"], false);
    assert!(
        c["validity"].as_str().unwrap().starts_with("expires in "),
        "{c}"
    );
}

#[test]
fn describes_an_rsa_client_leaf() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    issue_leaf(
        &sb,
        &openssl,
        "r",
        &[
            "--dns",
            "r.example.org",
            "--key-type",
            "rsa-2048",
            "--profile",
            "client",
        ],
    );
    let c = &inspect_json(&sb, "r.leaf.pem")[0];
    // A different SPKI encoding than EC: the pin must still match OpenSSL's.
    assert_matches_openssl(&sb, &openssl, "r.leaf.pem", c);
    assert_eq!(c["key"]["algorithm"], "RSA");
    assert_eq!(c["key"]["bits"], 2048);
    assert_eq!(c["extended_key_usage"], serde_json::json!(["clientAuth"]));
}

#[test]
fn describes_a_chain_file_as_two_certificates() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    issue_leaf(&sb, &openssl, "a", &["--dns", "a.example.org"]);
    let j = inspect_json(&sb, "a.crt");
    assert_eq!(j.len(), 2, "{j:?}");
    assert_matches_openssl(&sb, &openssl, "a.leaf.pem", &j[0]);
    assert_eq!(j[0]["is_ca"], false);
    // The second is the issuing intermediate, in file order.
    assert_matches_openssl(&sb, &openssl, "ca/intermediate.crt", &j[1]);
    assert_eq!(j[1]["is_ca"], true);
    assert_eq!(j[1]["self_signed"], false);
    assert_eq!(j[0]["issuer"], j[1]["subject"]);

    let text = sb.ok(&["cert", "inspect", "a.crt"]).stdout;
    assert!(
        text.contains("#1 of 2") && text.contains("#2 of 2"),
        "{text}"
    );
    assert!(text.contains("CA certificate"), "{text}");
}

#[test]
fn describes_a_der_certificate_like_its_pem() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    issue_leaf(&sb, &openssl, "a", &["--dns", "a.example.org"]);
    ossl(
        &sb,
        &openssl,
        &[
            "x509",
            "-in",
            "a.leaf.pem",
            "-outform",
            "DER",
            "-out",
            "a.der",
        ],
    );
    let der = inspect_json(&sb, "a.der");
    let pem = inspect_json(&sb, "a.leaf.pem");
    assert_eq!(der.len(), 1);
    for field in [
        "kind",
        "serial",
        "subject",
        "subject_alt_names",
        "sha256_fingerprint",
        "spki_sha256",
        "key",
    ] {
        assert_eq!(
            der[0][field], pem[0][field],
            "{field} differs between DER and PEM"
        );
    }
    assert_matches_openssl(&sb, &openssl, "a.leaf.pem", &der[0]);
}

#[test]
fn human_output_shows_expiry_and_fingerprint() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    issue_leaf(
        &sb,
        &openssl,
        "a",
        &["--dns", "a.example.org", "--lifetime", "48h"],
    );
    let r = sb.ok(&["cert", "inspect", "a.leaf.pem"]);
    let text = &r.stdout;
    assert!(text.starts_with("Certificate\n"), "{text}");
    // 48h minus the seconds the test took: "expires in 47h 59m" or "in 2d".
    assert!(text.contains("expires in "), "{text}");
    assert!(text.contains("DNS:a.example.org"), "{text}");
    assert!(
        text.contains(&openssl_fingerprint(&sb, &openssl, "a.leaf.pem")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "sha256//{}",
            openssl_spki_pin(&sb, &openssl, "a.leaf.pem")
        )),
        "{text}"
    );
    assert!(text.contains("not a CA"), "{text}");
}

#[test]
fn describes_a_csr() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    ossl(
        &sb,
        &openssl,
        &[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-keyout",
            "c.key",
            "-out",
            "c.csr",
            "-subj",
            "/CN=c.example.org",
            "-addext",
            "subjectAltName=DNS:c.example.org,IP:127.0.0.1,URI:spiffe://example.org/c",
        ],
    );
    let j = inspect_json(&sb, "c.csr");
    assert_eq!(j.len(), 1);
    let c = &j[0];
    assert_eq!(c["kind"], "csr");
    assert_eq!(c["subject"], "CN=c.example.org");
    assert_eq!(
        c["subject_alt_names"],
        serde_json::json!([
            "DNS:c.example.org",
            "IP:127.0.0.1",
            "URI:spiffe://example.org/c"
        ])
    );
    assert_eq!(c["key"]["algorithm"], "ECDSA P-384");
    assert_eq!(c["signature_algorithm"], "ecdsa-with-SHA256");
    assert_eq!(c["signature_valid"], true);
    assert_eq!(c["requests_ca"], false);
    let text = sb.ok(&["cert", "inspect", "c.csr"]).stdout;
    assert!(text.contains("Certificate signing request"), "{text}");
    assert!(text.contains("(valid)"), "{text}");
}

#[test]
fn shows_a_tampered_csr_and_a_ca_request() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    ossl(
        &sb,
        &openssl,
        &[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            "c.key",
            "-outform",
            "DER",
            "-out",
            "c.der",
            "-subj",
            "/CN=c",
            "-addext",
            "subjectAltName=DNS:c.example.org",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
    );
    let c = &inspect_json(&sb, "c.der")[0];
    assert_eq!(c["kind"], "csr", "a DER CSR is recognised as one");
    assert_eq!(c["signature_valid"], true);
    assert_eq!(c["requests_ca"], true);

    // The last byte of a CSR is inside its signature.
    let mut der = std::fs::read(sb.path("c.der")).unwrap();
    *der.last_mut().unwrap() ^= 0x01;
    std::fs::write(sb.path("tampered.der"), &der).unwrap();
    // Inspecting describes rather than judges: it shows the bad signature.
    let c = &inspect_json(&sb, "tampered.der")[0];
    assert_eq!(c["signature_valid"], false);
    let text = sb.ok(&["cert", "inspect", "tampered.der"]).stdout;
    assert!(text.contains("INVALID"), "{text}");
    assert!(text.contains("a CA certificate"), "{text}");
}

#[test]
fn describes_a_crl() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    issue_leaf(&sb, &openssl, "a", &["--dns", "a.example.org"]);
    sb.ok(&[
        "ca",
        "revoke",
        "--dir",
        "ca",
        "--cert",
        "a.crt",
        "--reason",
        "superseded",
    ]);
    sb.ok(&["ca", "crl", "--dir", "ca", "--out", "crl.pem"]);
    let j = inspect_json(&sb, "crl.pem");
    assert_eq!(j.len(), 1);
    let c = &j[0];
    assert_eq!(c["kind"], "crl");
    // `ca revoke` published CRL #1 itself; this one is #2.
    assert_eq!(c["crl_number"], "2");
    assert_eq!(
        c["issuer"],
        inspect_json(&sb, "ca/intermediate.crt")[0]["subject"]
    );
    let serial = inspect_json(&sb, "a.leaf.pem")[0]["serial"].clone();
    assert_eq!(c["entries"].as_array().unwrap().len(), 1);
    assert_eq!(c["entries"][0]["serial"], serial);
    assert_eq!(c["entries"][0]["reason"], "superseded");
    assert!(
        c["validity"]
            .as_str()
            .unwrap()
            .starts_with("next update in "),
        "{c}"
    );
    // OpenSSL agrees on what is in it.
    let text = ossl(&sb, &openssl, &["crl", "-in", "crl.pem", "-noout", "-text"]);
    assert!(
        text.contains(&serial.as_str().unwrap().to_ascii_uppercase()),
        "{text}"
    );

    let human = sb.ok(&["cert", "inspect", "crl.pem"]).stdout;
    assert!(human.contains("Certificate revocation list"), "{human}");
    assert!(human.contains("1 certificate(s)"), "{human}");
    assert!(human.contains(serial.as_str().unwrap()), "{human}");
}
