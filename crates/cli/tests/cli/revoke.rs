//! `symbolon ca revoke`, `ca crl` and `ca list --revoked/--expiring-within`:
//! revocations are recorded once, published in CRLs that OpenSSL parses,
//! trusts and enforces, with strictly increasing CRL numbers.

use std::path::Path;

use crate::support::{Sandbox, run_tool, tool};

fn ossl(sb: &Sandbox, openssl: &Path, args: &[&str]) -> String {
    let (code, out) = run_tool(sb, openssl, args);
    assert_eq!(code, 0, "openssl {args:?} failed:\n{out}");
    out
}

/// Issues a server certificate for `NAME.example.org` into `NAME.crt` (chain)
/// and `NAME.key`, and returns its serial as `ca list` prints it.
fn issue(sb: &Sandbox, name: &str, extra: &[&str]) -> String {
    let dns = format!("{name}.example.org");
    let mut args = vec![
        "ca", "issue", "--dir", "ca", "--dns", &dns, "--out", name, "--json",
    ];
    args.extend_from_slice(extra);
    sb.ok(&args).json()["serial"].as_str().unwrap().to_string()
}

fn list(sb: &Sandbox, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["ca", "list", "--dir", "ca", "--json"];
    args.extend_from_slice(extra);
    sb.ok(&args).json().as_array().unwrap().clone()
}

fn serials(items: &[serde_json::Value]) -> Vec<String> {
    items
        .iter()
        .map(|r| r["serial"].as_str().unwrap().to_string())
        .collect()
}

/// The value line under `label` in `openssl … -text` output.
fn value_after(text: &str, label: &str) -> String {
    let mut lines = text.lines();
    lines.find(|l| l.contains(label));
    lines
        .next()
        .unwrap_or_else(|| panic!("no {label} in:\n{text}"))
        .trim()
        .to_string()
}

#[test]
fn revoke_by_serial_is_listed_with_its_reason() {
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let a = issue(&sb, "a", &[]);
    let b = issue(&sb, "b", &[]);
    assert!(list(&sb, &["--revoked"]).is_empty());

    let r = sb.ok(&[
        "ca",
        "revoke",
        "--dir",
        "ca",
        &a,
        "--reason",
        "keyCompromise",
    ]);
    assert!(r.stdout.contains(&format!("Revoked {a}")), "{}", r.all());

    let revoked = list(&sb, &["--revoked"]);
    assert_eq!(
        serials(&revoked),
        [a.as_str()],
        "only {a} was revoked, not {b}"
    );
    assert_eq!(revoked[0]["status"], "revoked");
    assert_eq!(revoked[0]["revocation_reason"], "keyCompromise");
    assert!(revoked[0]["revoked_at"].is_string(), "{revoked:?}");
    // The unrevoked certificate stays valid in the full listing.
    let all = list(&sb, &[]);
    let b_rec = all.iter().find(|r| r["serial"] == b.as_str()).unwrap();
    assert_eq!(b_rec["status"], "valid");
    assert!(b_rec["revocation_reason"].is_null());
}

#[test]
fn revoke_by_cert_file_revokes_its_leaf() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let a = issue(&sb, "a", &[]);
    // a.crt holds leaf + intermediate; the leaf is the one to revoke.
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
    let revoked = list(&sb, &["--revoked"]);
    assert_eq!(serials(&revoked), [a.as_str()]);
    assert_eq!(revoked[0]["revocation_reason"], "superseded");
    // And the serial is the one OpenSSL reads from the file.
    let s = ossl(
        &sb,
        &openssl,
        &["x509", "-in", "a.crt", "-noout", "-serial"],
    );
    assert_eq!(
        s.trim()
            .strip_prefix("serial=")
            .unwrap()
            .to_ascii_lowercase(),
        a
    );
}

#[test]
fn revoke_accepts_the_serial_as_openssl_prints_it() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let a = issue(&sb, "a", &[]);
    // OpenSSL prints serials in upper-case hex, colon-separated in `-text`
    // output; operators paste either form.
    let s = ossl(
        &sb,
        &openssl,
        &["x509", "-in", "a.crt", "-noout", "-serial"],
    );
    let upper = s.trim().strip_prefix("serial=").unwrap().to_string();
    let colons: Vec<&str> = (0..upper.len())
        .step_by(2)
        .map(|i| &upper[i..i + 2])
        .collect();
    let pasted = colons.join(":");
    assert_ne!(pasted, a);
    sb.ok(&["ca", "revoke", "--dir", "ca", &pasted]);
    assert_eq!(serials(&list(&sb, &["--revoked"])), [a]);
}

#[test]
fn revoking_again_keeps_the_first_reason() {
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let a = issue(&sb, "a", &[]);
    sb.ok(&[
        "ca",
        "revoke",
        "--dir",
        "ca",
        &a,
        "--reason",
        "keyCompromise",
    ]);
    let first = list(&sb, &["--revoked"]);

    let r = sb.ok(&[
        "ca",
        "revoke",
        "--dir",
        "ca",
        "--cert",
        "a.crt",
        "--reason",
        "superseded",
    ]);
    assert!(r.stdout.contains("already revoked"), "{}", r.all());
    assert!(r.stdout.contains("keyCompromise"), "{}", r.all());
    let second = list(&sb, &["--revoked"]);
    assert_eq!(second, first, "a second revocation changed the record");
    assert_eq!(second[0]["revocation_reason"], "keyCompromise");
}

#[test]
fn revoking_an_unknown_serial_fails() {
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    issue(&sb, "a", &[]);
    let r = sb.run(&["ca", "revoke", "--dir", "ca", "deadbeef"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("deadbeef"), "{}", r.all());
    assert!(r.stderr.contains("not issued by this CA"), "{}", r.all());
    assert!(list(&sb, &["--revoked"]).is_empty());

    let r = sb.run(&["ca", "revoke", "--dir", "ca", "not-hex"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("invalid serial \"not-hex\""),
        "{}",
        r.all()
    );
}

#[test]
fn a_bad_reason_lists_the_valid_ones() {
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let a = issue(&sb, "a", &[]);
    let r = sb.run(&["ca", "revoke", "--dir", "ca", &a, "--reason", "bored"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("bored"), "{}", r.all());
    for valid in [
        "unspecified",
        "keyCompromise",
        "superseded",
        "cessationOfOperation",
    ] {
        assert!(
            r.stderr.contains(valid),
            "valid reason {valid} not listed:\n{}",
            r.all()
        );
    }
    assert!(
        list(&sb, &["--revoked"]).is_empty(),
        "revoked despite the bad reason"
    );
}

// === CRLs ===

#[test]
fn crl_lists_the_revoked_serial_with_its_reason() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let a = issue(&sb, "a", &[]);
    let b = issue(&sb, "b", &[]);
    let c = issue(&sb, "c", &[]);
    sb.ok(&[
        "ca",
        "revoke",
        "--dir",
        "ca",
        &a,
        "--reason",
        "keyCompromise",
    ]);
    sb.ok(&["ca", "revoke", "--dir", "ca", &c]);
    let r = sb.ok(&["ca", "crl", "--dir", "ca", "--out", "crl.pem"]);
    assert!(r.stdout.contains("2 revoked"), "{}", r.all());

    let text = ossl(&sb, &openssl, &["crl", "-in", "crl.pem", "-noout", "-text"]);
    let entry = |serial: &str| {
        let start = text
            .find(&format!("Serial Number: {}", serial.to_ascii_uppercase()))
            .unwrap_or_else(|| panic!("{serial} not in the CRL:\n{text}"));
        // The entry runs until the next one (or the CRL's signature).
        let rest = &text[start + 15..];
        rest[..rest
            .find("Serial Number:")
            .or_else(|| rest.find("Signature Algorithm"))
            .unwrap()]
            .to_string()
    };
    assert!(entry(&a).contains("Key Compromise"), "{text}");
    // RFC 5280 §5.3.1: "unspecified" is expressed by leaving reasonCode out.
    assert!(!entry(&c).contains("CRL Reason Code"), "{text}");
    assert!(
        !text.contains(&b.to_ascii_uppercase()),
        "unrevoked {b} is in the CRL:\n{text}"
    );
    assert_eq!(text.matches("Serial Number:").count(), 2, "{text}");

    let j = sb.ok(&["cert", "inspect", "crl.pem", "--json"]).json();
    let entries = j[0]["entries"].as_array().unwrap();
    let reason_of = |s: &str| entries.iter().find(|e| e["serial"] == s).unwrap()["reason"].clone();
    assert_eq!(reason_of(&a), "keyCompromise");
    assert_eq!(reason_of(&c), "unspecified");
    assert_eq!(entries.len(), 2);
}

#[test]
fn crl_numbers_strictly_increase() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    for n in 1..=3 {
        // PEM to a file, DER to a file and PEM to stdout all take a number.
        let (file, inform) = match n {
            1 => ("crl.pem", "PEM"),
            2 => ("crl.der", "DER"),
            _ => ("crl3.pem", "PEM"),
        };
        if n == 3 {
            let r = sb.ok(&["ca", "crl", "--dir", "ca"]);
            assert!(
                r.stdout.starts_with("-----BEGIN X509 CRL-----"),
                "{}",
                r.all()
            );
            std::fs::write(sb.path(file), &r.stdout).unwrap();
        } else {
            let mut args = vec!["ca", "crl", "--dir", "ca", "--out", file];
            if inform == "DER" {
                args.push("--der");
            }
            let r = sb.ok(&args);
            assert!(r.stdout.contains(&format!("CRL #{n}")), "{}", r.all());
        }
        let j = sb.ok(&["cert", "inspect", file, "--json"]).json();
        assert_eq!(j[0]["kind"], "crl");
        assert_eq!(j[0]["crl_number"], n.to_string());
        let text = ossl(
            &sb,
            &openssl,
            &["crl", "-inform", inform, "-in", file, "-noout", "-text"],
        );
        assert_eq!(
            value_after(&text, "X509v3 CRL Number"),
            n.to_string(),
            "{text}"
        );
    }
}

#[test]
fn openssl_enforces_the_crl() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    issue(&sb, "bad", &[]);
    issue(&sb, "good", &[]);
    // `openssl verify` reads one certificate per file: extract the leaves.
    for n in ["bad", "good"] {
        ossl(
            &sb,
            &openssl,
            &[
                "x509",
                "-in",
                &format!("{n}.crt"),
                "-out",
                &format!("{n}.leaf.pem"),
            ],
        );
    }
    let verify = |leaf: &str| {
        run_tool(
            &sb,
            &openssl,
            &[
                "verify",
                "-crl_check",
                "-CAfile",
                "ca/root.crt",
                "-untrusted",
                "ca/intermediate.crt",
                "-CRLfile",
                "crl.pem",
                leaf,
            ],
        )
    };

    // Before revocation the (empty) CRL accepts both.
    sb.ok(&["ca", "crl", "--dir", "ca", "--out", "crl.pem"]);
    let (code, out) = verify("bad.leaf.pem");
    assert_eq!(code, 0, "{out}");

    sb.ok(&[
        "ca",
        "revoke",
        "--dir",
        "ca",
        "--cert",
        "bad.crt",
        "--reason",
        "keyCompromise",
    ]);
    sb.ok(&["ca", "crl", "--dir", "ca", "--out", "crl.pem"]);
    let (code, out) = verify("bad.leaf.pem");
    assert_ne!(code, 0, "revoked leaf verified:\n{out}");
    assert!(out.contains("certificate revoked"), "{out}");
    let (code, out) = verify("good.leaf.pem");
    assert_eq!(code, 0, "unrevoked leaf failed:\n{out}");
    assert!(out.contains("good.leaf.pem: OK"), "{out}");
}

#[test]
fn crl_signature_verifies_against_the_intermediate() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let a = issue(&sb, "a", &[]);
    sb.ok(&["ca", "revoke", "--dir", "ca", &a]);
    sb.ok(&["ca", "crl", "--dir", "ca", "--out", "crl.pem"]);
    let out = ossl(
        &sb,
        &openssl,
        &[
            "crl",
            "-in",
            "crl.pem",
            "-CAfile",
            "ca/intermediate.crt",
            "-noout",
        ],
    );
    assert!(out.contains("verify OK"), "{out}");
    // The same check against the root (which did not sign it) must not pass,
    // or the check above proves nothing.
    let (_, out) = run_tool(
        &sb,
        &openssl,
        &["crl", "-in", "crl.pem", "-CAfile", "ca/root.crt", "-noout"],
    );
    assert!(!out.contains("verify OK"), "{out}");
}

#[test]
fn der_crl_parses_with_openssl() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let a = issue(&sb, "a", &[]);
    sb.ok(&[
        "ca",
        "revoke",
        "--dir",
        "ca",
        &a,
        "--reason",
        "cessationOfOperation",
    ]);
    sb.ok(&["ca", "crl", "--dir", "ca", "--der", "--out", "crl.der"]);
    let bytes = std::fs::read(sb.path("crl.der")).unwrap();
    assert_eq!(bytes[0], 0x30, "not DER (PEM?)");
    let text = ossl(
        &sb,
        &openssl,
        &["crl", "-inform", "DER", "-in", "crl.der", "-noout", "-text"],
    );
    assert!(
        text.contains(&format!("Serial Number: {}", a.to_ascii_uppercase())),
        "{text}"
    );
    assert!(text.contains("Cessation Of Operation"), "{text}");
}

#[test]
fn next_update_follows_the_flag() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let span = |file: &str| {
        let out = ossl(
            &sb,
            &openssl,
            &[
                "crl",
                "-in",
                file,
                "-noout",
                "-lastupdate",
                "-nextupdate",
                "-dateopt",
                "iso_8601",
            ],
        );
        let fmt =
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
        let get = |key: &str| {
            let v = out
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("{key} in {out}"));
            time::PrimitiveDateTime::parse(v.trim(), fmt).unwrap()
        };
        get("nextUpdate=") - get("lastUpdate=")
    };
    sb.ok(&["ca", "crl", "--dir", "ca", "--out", "default.pem"]);
    assert_eq!(
        span("default.pem"),
        time::Duration::hours(24),
        "ca.toml's crl_next_update is 24h"
    );
    sb.ok(&[
        "ca",
        "crl",
        "--dir",
        "ca",
        "--next-update",
        "48h",
        "--out",
        "long.pem",
    ]);
    assert_eq!(span("long.pem"), time::Duration::hours(48));
}

// === ca list --expiring-within ===

#[test]
fn expiring_within_selects_by_not_after() {
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let short = issue(&sb, "short", &["--lifetime", "1h"]);
    let long = issue(&sb, "long", &["--lifetime", "24h"]);
    let gone = issue(&sb, "gone", &["--lifetime", "1h"]);
    sb.ok(&["ca", "revoke", "--dir", "ca", &gone]);

    // Revoked certificates are not "expiring": only valid ones are listed.
    assert_eq!(
        serials(&list(&sb, &["--expiring-within", "2h"])),
        [short.as_str()],
        "long is {long}, revoked is {gone}"
    );
    let mut within_2d = serials(&list(&sb, &["--expiring-within", "2d"]));
    within_2d.sort();
    let mut want = vec![short, long];
    want.sort();
    assert_eq!(within_2d, want);
}
