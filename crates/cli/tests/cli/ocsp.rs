//! The OCSP responder of `ca serve`, checked with `openssl ocsp` and linted
//! with pkilint's `lint_ocsp_response`.

use crate::gw_support::{CaServe, free_port};
use crate::lint::lint_ocsp_response;
use crate::support::{Sandbox, run_tool, tool};

fn ocsp(sb: &Sandbox, openssl: &std::path::Path, port: u16, respout: &str) -> String {
    let url = format!("https://localhost:{port}/v1/ocsp");
    let (code, text) = run_tool(
        sb,
        openssl,
        &[
            "ocsp",
            "-issuer",
            "ca/intermediate.crt",
            "-cert",
            "leaf.pem",
            "-url",
            &url,
            "-CAfile",
            "ca/root.crt",
            "-resp_text",
            "-respout",
            respout,
        ],
    );
    assert_eq!(code, 0, "{text}");
    text
}

#[test]
fn ocsp_says_good_then_revoked_with_reason_and_echoes_the_nonce() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_plain_ca("ca", &[]);
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
    let (code, text) = run_tool(&sb, &openssl, &["x509", "-in", "a.crt", "-out", "leaf.pem"]);
    assert_eq!(code, 0, "{text}");
    let port = free_port();
    let _serve = CaServe::on(&sb, "ca", port, None);

    let good = ocsp(&sb, &openssl, port, "good.der");
    assert!(good.contains("leaf.pem: good"), "{good}");
    assert!(good.contains("Response verify OK"), "{good}");
    // openssl sends a nonce by default; the response must carry it back.
    assert!(good.contains("OCSP Nonce"), "{good}");
    lint_ocsp_response(&sb, "good.der");

    sb.ok(&[
        "ca",
        "revoke",
        "--dir",
        "ca",
        "--cert",
        "a.crt",
        "--reason",
        "keyCompromise",
    ]);
    let revoked = ocsp(&sb, &openssl, port, "revoked.der");
    assert!(revoked.contains("leaf.pem: revoked"), "{revoked}");
    assert!(revoked.contains("Reason: keyCompromise"), "{revoked}");
    assert!(revoked.contains("Response verify OK"), "{revoked}");
    lint_ocsp_response(&sb, "revoked.der");
}

#[test]
fn ocsp_over_get_unknown_serials_and_malformed_requests() {
    let (Some(openssl), Some(curl)) = (tool("openssl"), tool("curl")) else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_plain_ca("ca", &[]);
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
    run_tool(&sb, &openssl, &["x509", "-in", "a.crt", "-out", "leaf.pem"]);
    let port = free_port();
    let _serve = CaServe::on(&sb, "ca", port, None);

    // GET with the base64 request in the path (RFC 6960 appendix A.1).
    let (code, text) = run_tool(
        &sb,
        &openssl,
        &[
            "ocsp",
            "-issuer",
            "ca/intermediate.crt",
            "-cert",
            "leaf.pem",
            "-no_nonce",
            "-reqout",
            "req.der",
        ],
    );
    assert_eq!(code, 0, "{text}");
    let (_, b64) = run_tool(&sb, &openssl, &["base64", "-A", "-in", "req.der"]);
    let encoded = b64
        .trim()
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let url = format!("https://localhost:{port}/v1/ocsp/{encoded}");
    let (code, text) = run_tool(
        &sb,
        &curl,
        &[
            "-sS",
            "--max-time",
            "5",
            "--cacert",
            "ca/root.crt",
            "-o",
            "get.der",
            &url,
        ],
    );
    assert_eq!(code, 0, "{text}");
    let (code, text) = run_tool(
        &sb,
        &openssl,
        &[
            "ocsp",
            "-respin",
            "get.der",
            "-issuer",
            "ca/intermediate.crt",
            "-cert",
            "leaf.pem",
            "-CAfile",
            "ca/root.crt",
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("leaf.pem: good"), "{text}");
    lint_ocsp_response(&sb, "get.der");

    // A serial this CA never issued: signed "unknown", not "good".
    let (code, text) = run_tool(
        &sb,
        &openssl,
        &[
            "ocsp",
            "-issuer",
            "ca/intermediate.crt",
            "-serial",
            "0x0123456789abcdef",
            "-url",
            &format!("https://localhost:{port}/v1/ocsp"),
            "-CAfile",
            "ca/root.crt",
            "-respout",
            "unknown.der",
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(": unknown"), "{text}");
    lint_ocsp_response(&sb, "unknown.der");

    // Garbage: an OCSP malformedRequest response (30 03 0a 01 01).
    std::fs::write(sb.path("junk.der"), b"not an ocsp request").unwrap();
    let (code, text) = run_tool(
        &sb,
        &curl,
        &[
            "-sS",
            "--max-time",
            "5",
            "--cacert",
            "ca/root.crt",
            "-H",
            "content-type: application/ocsp-request",
            "--data-binary",
            "@junk.der",
            "-o",
            "junk-resp.der",
            &format!("https://localhost:{port}/v1/ocsp"),
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        std::fs::read(sb.path("junk-resp.der")).unwrap(),
        [0x30, 0x03, 0x0a, 0x01, 0x01]
    );
    lint_ocsp_response(&sb, "junk-resp.der");

    // A request about another CA's certificate: unauthorized (6).
    sb.ok(&[
        "ca",
        "init",
        "--dir",
        "ca2",
        "--insecure-plaintext-root-key",
        "--name",
        "Other",
    ]);
    let (code, text) = run_tool(
        &sb,
        &openssl,
        &[
            "ocsp",
            "-issuer",
            "ca2/intermediate.crt",
            "-serial",
            "0x01",
            "-url",
            &format!("https://localhost:{port}/v1/ocsp"),
            "-CAfile",
            "ca/root.crt",
            "-respout",
            "unauthorized.der",
        ],
    );
    lint_ocsp_response(&sb, "unauthorized.der");
    assert!(
        text.contains("unauthorized") || text.contains("Unauthorized"),
        "exit {code}: {text}"
    );
}
