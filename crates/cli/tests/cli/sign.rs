//! `symbolon ca sign`: CSRs made by OpenSSL are signed into certificates
//! OpenSSL accepts, carrying the requester's key and names; every request
//! the CA must refuse is refused with the file named, nothing recorded and
//! nothing written.

use std::path::Path;

use crate::support::{Sandbox, run_tool, tool};

/// Runs openssl, asserting success, and returns its stdout+stderr.
fn ossl(sb: &Sandbox, openssl: &Path, args: &[&str]) -> String {
    let (code, out) = run_tool(sb, openssl, args);
    assert_eq!(code, 0, "openssl {args:?} failed:\n{out}");
    out
}

/// An EC P-256 key and a CSR for it (`NAME.csr`, key in `NAME.key`).
fn ec_csr(sb: &Sandbox, openssl: &Path, name: &str, subj: &str, extra: &[&str]) -> String {
    csr(
        sb,
        openssl,
        name,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        subj,
        extra,
    )
}

fn csr(
    sb: &Sandbox,
    openssl: &Path,
    name: &str,
    key: &[&str],
    subj: &str,
    extra: &[&str],
) -> String {
    let file = format!("{name}.csr");
    let keyout = format!("{name}.key");
    let mut args = vec![
        "req", "-new", "-nodes", "-keyout", &keyout, "-out", &file, "-subj", subj,
    ];
    args.extend_from_slice(key);
    args.extend_from_slice(extra);
    ossl(sb, openssl, &args);
    file
}

/// The value line under "X509v3 Subject Alternative Name:" in `openssl … -text`.
fn san_of(text: &str) -> String {
    let mut lines = text.lines();
    lines.find(|l| l.contains("X509v3 Subject Alternative Name"));
    lines
        .next()
        .unwrap_or_else(|| panic!("no subjectAltName in:\n{text}"))
        .trim()
        .to_string()
}

fn records(sb: &Sandbox) -> Vec<serde_json::Value> {
    sb.ok(&["ca", "list", "--dir", "ca", "--json"])
        .json()
        .as_array()
        .unwrap()
        .clone()
}

/// Signs `csr` (PEM or DER per `inform`) and checks the result with OpenSSL:
/// the chain verifies, and the certificate carries the CSR's names and key.
/// Returns the issued serial.
fn sign_and_check(sb: &Sandbox, openssl: &Path, csr: &str, inform: &str) -> String {
    let out = sb
        .ok(&[
            "ca", "sign", csr, "--dir", "ca", "--out", "out.crt", "--json",
        ])
        .json();
    let v = ossl(
        sb,
        openssl,
        &[
            "verify",
            "-CAfile",
            "ca/root.crt",
            "-untrusted",
            "ca/intermediate.crt",
            "out.crt",
        ],
    );
    assert!(v.contains("out.crt: OK"), "{v}");

    let cert_text = ossl(sb, openssl, &["x509", "-in", "out.crt", "-noout", "-text"]);
    let csr_text = ossl(
        sb,
        openssl,
        &["req", "-inform", inform, "-in", csr, "-noout", "-text"],
    );
    assert_eq!(san_of(&cert_text), san_of(&csr_text));

    let cert_key = ossl(
        sb,
        openssl,
        &["x509", "-in", "out.crt", "-noout", "-pubkey"],
    );
    let csr_key = ossl(
        sb,
        openssl,
        &["req", "-inform", inform, "-in", csr, "-noout", "-pubkey"],
    );
    assert!(cert_key.contains("BEGIN PUBLIC KEY"), "{cert_key}");
    assert_eq!(
        cert_key, csr_key,
        "the certificate does not carry the CSR's public key"
    );

    // The serial OpenSSL reads from the certificate is the one recorded.
    let serial = ossl(
        sb,
        openssl,
        &["x509", "-in", "out.crt", "-noout", "-serial"],
    );
    let serial = serial
        .trim()
        .strip_prefix("serial=")
        .unwrap()
        .to_ascii_lowercase();
    assert_eq!(out["serial"], serial.as_str());
    assert!(
        records(sb).iter().any(|r| r["serial"] == serial.as_str()),
        "serial {serial} is not in `ca list`"
    );
    serial
}

#[test]
fn signs_an_ec_csr_as_a_server_certificate() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let csr = ec_csr(
        &sb,
        &openssl,
        "x",
        "/CN=x.example.org",
        &["-addext", "subjectAltName=DNS:x.example.org"],
    );
    sign_and_check(&sb, &openssl, &csr, "PEM");

    // Default profile for DNS names is server: serverAuth and nothing else.
    let eku = ossl(
        &sb,
        &openssl,
        &[
            "x509",
            "-in",
            "out.crt",
            "-noout",
            "-ext",
            "extendedKeyUsage",
        ],
    );
    assert!(eku.contains("TLS Web Server Authentication"), "{eku}");
    assert!(!eku.contains("Client"), "{eku}");
    assert_eq!(records(&sb)[0]["profile"], "server");
}

#[test]
fn signs_an_rsa_2048_csr() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let csr = csr(
        &sb,
        &openssl,
        "r",
        &["-newkey", "rsa:2048"],
        "/CN=r.example.org",
        &["-addext", "subjectAltName=DNS:r.example.org,IP:127.0.0.1"],
    );
    sign_and_check(&sb, &openssl, &csr, "PEM");
}

#[test]
fn signs_a_der_csr() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let pem = ec_csr(
        &sb,
        &openssl,
        "d",
        "/CN=d",
        &["-addext", "subjectAltName=DNS:d.example.org"],
    );
    ossl(
        &sb,
        &openssl,
        &["req", "-in", &pem, "-outform", "DER", "-out", "d.der"],
    );
    // Make sure the input really is DER, so the test cannot pass on PEM.
    assert_eq!(std::fs::read(sb.path("d.der")).unwrap()[0], 0x30);
    sign_and_check(&sb, &openssl, "d.der", "DER");
}

#[test]
fn client_profile_gives_client_auth_only() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let csr = ec_csr(
        &sb,
        &openssl,
        "c",
        "/CN=c",
        &["-addext", "subjectAltName=DNS:c.example.org"],
    );
    sb.ok(&[
        "ca",
        "sign",
        &csr,
        "--dir",
        "ca",
        "--profile",
        "client",
        "--out",
        "c.crt",
    ]);
    let eku = ossl(
        &sb,
        &openssl,
        &["x509", "-in", "c.crt", "-noout", "-ext", "extendedKeyUsage"],
    );
    assert!(eku.contains("TLS Web Client Authentication"), "{eku}");
    assert!(!eku.contains("Server"), "{eku}");
    assert_eq!(records(&sb)[0]["profile"], "client");
}

#[test]
fn lifetime_sets_not_after() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let csr = ec_csr(
        &sb,
        &openssl,
        "l",
        "/CN=l",
        &["-addext", "subjectAltName=DNS:l.example.org"],
    );
    sb.ok(&[
        "ca",
        "sign",
        &csr,
        "--dir",
        "ca",
        "--lifetime",
        "1h",
        "--out",
        "l.crt",
    ]);
    let dates = ossl(
        &sb,
        &openssl,
        &[
            "x509",
            "-in",
            "l.crt",
            "-noout",
            "-startdate",
            "-enddate",
            "-dateopt",
            "iso_8601",
        ],
    );
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    let get = |key: &str| {
        let line = dates
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {dates}"));
        time::PrimitiveDateTime::parse(line.trim(), fmt).unwrap()
    };
    let span = get("notAfter=") - get("notBefore=");
    // notBefore is backdated a little for clock skew; allow ±2 minutes.
    let diff = (span - time::Duration::hours(1)).abs();
    assert!(
        diff <= time::Duration::minutes(2),
        "validity is {span}, expected about 1h:\n{dates}"
    );
}

#[test]
fn without_out_the_chain_goes_to_stdout() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let csr = ec_csr(
        &sb,
        &openssl,
        "s",
        "/CN=s",
        &["-addext", "subjectAltName=DNS:s.example.org"],
    );
    let r = sb.ok(&["ca", "sign", &csr, "--dir", "ca"]);
    assert_eq!(
        r.stdout.matches("-----BEGIN CERTIFICATE-----").count(),
        2,
        "{}",
        r.all()
    );
    std::fs::write(sb.path("s.crt"), &r.stdout).unwrap();
    let v = ossl(
        &sb,
        &openssl,
        &[
            "verify",
            "-CAfile",
            "ca/root.crt",
            "-untrusted",
            "ca/intermediate.crt",
            "s.crt",
        ],
    );
    assert!(v.contains("s.crt: OK"), "{v}");
}

// === refusals ===

/// Runs `ca sign CSR --out refused.crt EXTRA…` and asserts it is refused:
/// exit 2, stderr names the CSR and contains every word of `why`, no record
/// is added and no file appears (SQLite's own journal files aside).
fn assert_refused(sb: &Sandbox, csr: &str, extra: &[&str], why: &[&str]) {
    let before_records = records(sb).len();
    let before_files = output_files(sb);
    let mut args = vec!["ca", "sign", csr, "--dir", "ca", "--out", "refused.crt"];
    args.extend_from_slice(extra);
    let r = sb.run(&args);
    assert_eq!(r.code, 2, "expected exit 2:\n{}", r.all());
    assert!(
        r.stderr.contains(csr),
        "stderr does not name {csr}:\n{}",
        r.all()
    );
    for w in why {
        assert!(
            r.stderr.contains(w),
            "stderr does not say {w:?}:\n{}",
            r.all()
        );
    }
    assert!(r.stdout.is_empty(), "{}", r.all());
    assert_eq!(
        records(sb).len(),
        before_records,
        "a refused CSR was recorded"
    );
    assert!(
        !sb.path("refused.crt").exists(),
        "--out was written for a refused CSR"
    );
    assert_eq!(
        output_files(sb),
        before_files,
        "a refused CSR left files behind"
    );
}

/// Every file in the sandbox except SQLite's WAL/SHM journal files, whose
/// presence depends on how the store connection closed, not on output.
fn output_files(sb: &Sandbox) -> Vec<String> {
    sb.files()
        .into_iter()
        .filter(|f| !f.ends_with("-wal") && !f.ends_with("-shm"))
        .collect()
}

#[test]
fn refuses_a_csr_with_a_bad_signature() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let pem = ec_csr(
        &sb,
        &openssl,
        "t",
        "/CN=t",
        &["-addext", "subjectAltName=DNS:t.example.org"],
    );
    ossl(
        &sb,
        &openssl,
        &["req", "-in", &pem, "-outform", "DER", "-out", "t.der"],
    );
    // A CSR ends with its signature BIT STRING, so the last byte lies inside
    // the signature (the low byte of ECDSA's s): flipping a bit keeps the DER
    // well-formed but breaks proof of possession.
    let mut der = std::fs::read(sb.path("t.der")).unwrap();
    *der.last_mut().unwrap() ^= 0x01;
    std::fs::write(sb.path("tampered.der"), &der).unwrap();
    // OpenSSL still parses it and reports the broken signature (3.0 exits 0
    // on a failed `-verify`, so read the message).
    let check = run_tool(
        &sb,
        &openssl,
        &[
            "req",
            "-inform",
            "DER",
            "-in",
            "tampered.der",
            "-noout",
            "-verify",
        ],
    )
    .1;
    assert!(
        check.contains("verify failure"),
        "the tampering did not hit the signature:\n{check}"
    );
    assert_refused(&sb, "tampered.der", &[], &["signature does not verify"]);
}

#[test]
fn refuses_a_weak_rsa_1024_key() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let csr = csr(
        &sb,
        &openssl,
        "weak",
        &["-newkey", "rsa:1024"],
        "/CN=w",
        &["-addext", "subjectAltName=DNS:w.example.org"],
    );
    assert_refused(&sb, &csr, &[], &["weak key", "1024"]);
}

#[test]
fn refuses_a_csr_asking_for_a_ca() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let csr = ec_csr(
        &sb,
        &openssl,
        "subca",
        "/CN=sub",
        &[
            "-addext",
            "subjectAltName=DNS:sub.example.org",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
    );
    assert_refused(&sb, &csr, &[], &["CA certificate"]);
}

#[test]
fn refuses_a_name_outside_the_namespace() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    // One permitted name does not carry a forbidden one along with it.
    let csr = ec_csr(
        &sb,
        &openssl,
        "evil",
        "/CN=evil",
        &["-addext", "subjectAltName=DNS:ok.example.org,DNS:evil.com"],
    );
    assert_refused(&sb, &csr, &[], &["evil.com", "outside"]);
}

#[test]
fn refuses_a_csr_without_subject_alt_names() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    // The CN is a permitted name, but identities come from SANs only.
    let csr = ec_csr(&sb, &openssl, "nosan", "/CN=nosan.example.org", &[]);
    assert_refused(&sb, &csr, &[], &["no subjectAltName"]);
}

#[test]
fn refuses_a_spiffe_id_in_another_trust_domain() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let csr = ec_csr(
        &sb,
        &openssl,
        "spiffe",
        "/CN=x",
        &["-addext", "subjectAltName=URI:spiffe://other.org/x"],
    );
    assert_refused(&sb, &csr, &[], &["other.org", "trust domain"]);
}

#[test]
fn refuses_a_lifetime_beyond_max_leaf() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let csr = ec_csr(
        &sb,
        &openssl,
        "long",
        "/CN=x",
        &["-addext", "subjectAltName=DNS:long.example.org"],
    );
    assert_refused(
        &sb,
        &csr,
        &["--lifetime", "400d"],
        &["lifetime", "max_leaf", "90d"],
    );
}

#[test]
fn refuses_a_sha1_signed_csr() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let (code, out) = run_tool(
        &sb,
        &openssl,
        &[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-sha1",
            "-keyout",
            "sha1.key",
            "-out",
            "sha1.csr",
            "-subj",
            "/CN=x",
            "-addext",
            "subjectAltName=DNS:sha1.example.org",
        ],
    );
    if code != 0 {
        // Some OpenSSL builds refuse to sign with SHA-1 at all.
        eprintln!("SKIPPED: this openssl cannot make a SHA-1 CSR:\n{out}");
        return;
    }
    let text = ossl(
        &sb,
        &openssl,
        &["req", "-in", "sha1.csr", "-noout", "-text"],
    );
    assert!(text.contains("sha1WithRSAEncryption"), "{text}");
    assert_refused(&sb, "sha1.csr", &[], &["SHA-1"]);
}

/// `ca issue` checks that --out's directory exists before it signs; `ca sign`
/// must too, or a certificate is recorded (and counts as issued) that nobody
/// ever received.
#[test]
fn refuses_an_out_path_in_a_missing_directory_before_signing() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let csr = ec_csr(
        &sb,
        &openssl,
        "n",
        "/CN=n",
        &["-addext", "subjectAltName=DNS:n.example.org"],
    );
    let before = records(&sb).len();
    let r = sb.run(&["ca", "sign", &csr, "--dir", "ca", "--out", "nodir/n.crt"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("nodir"), "{}", r.all());
    assert!(!sb.path("nodir").exists());
    assert_eq!(
        records(&sb).len(),
        before,
        "a certificate was recorded but never written out"
    );
}
