//! `symbolon gateway` in HTTP mode, driven by real TLS clients (curl,
//! `openssl s_client`, Python's ssl module): what is accepted reaches the
//! backend with our identity header and nothing else; what is refused is
//! refused with the right reason code, in the log and on the wire, and
//! never reaches the backend at all. Also `symbolon policy check` and the
//! configuration checks that run before any port is bound.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use symbolon_testkit::leaf_params;
use symbolon_testkit::rcgen::{
    CertificateParams, DnType, DnValue, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType,
};
use time::OffsetDateTime;

use crate::gw_support::{Gateway, HttpBackend, free_port, pki, server_config};
use crate::support::{Sandbox, run_tool, tool};

pub(crate) const WEB_ID: &str = "spiffe://example.org/ns/prod/sa/web";
const XFCC: &str = "x-forwarded-client-cert";

/// The policy most tests run: `web` (in any namespace) may call anything but
/// `/admin/**`; nobody else may call anything.
const WEB_NO_ADMIN: &str = r#"
[[policy.rule]]
name = "web"
effect = "allow"
spiffe_id = ["spiffe://example.org/ns/*/sa/web"]

[[policy.rule]]
name = "no-admin"
effect = "deny"
paths = ["/admin/**"]
"#;

// --- helpers ---

/// A sandbox with the standard PKI, a backend and a gateway in front of it.
fn start(mode: &str, extra: &str) -> (Sandbox, HttpBackend, Gateway) {
    let sb = Sandbox::new();
    pki(&sb);
    let backend = HttpBackend::start();
    let port = free_port();
    let gw = Gateway::start(
        &sb,
        "gw.toml",
        &server_config(port, backend.addr, mode, "http", extra),
        port,
    );
    (sb, backend, gw)
}

/// `symbolon cert inspect FILE --json`, first certificate (the leaf).
fn inspect_leaf(sb: &Sandbox, file: &str) -> serde_json::Value {
    sb.ok(&["cert", "inspect", file, "--json"]).json()[0].clone()
}

fn fingerprint(sb: &Sandbox, file: &str) -> String {
    inspect_leaf(sb, file)["sha256_fingerprint"]
        .as_str()
        .unwrap()
        .to_string()
}

fn serial(sb: &Sandbox, file: &str) -> String {
    inspect_leaf(sb, file)["serial"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The XFCC header the gateway must send for `web.crt` — By is the gateway's
/// own URI SAN, Hash the leaf's DER SHA-256, Subject empty (the CA issues
/// SAN-only certificates).
fn web_xfcc(sb: &Sandbox) -> String {
    format!(
        "By=spiffe://example.org/gateway;Hash={};Subject=\"\";URI={WEB_ID}",
        fingerprint(sb, "web.crt")
    )
}

/// curl with a time bound, silent but showing errors, writing the body to
/// stdout and the status code after it on its own line.
fn curl(sb: &Sandbox, curl: &Path, args: &[&str]) -> (i32, String) {
    let mut all = vec!["-sS", "--max-time", "5", "-w", "\n%{http_code}"];
    all.extend_from_slice(args);
    run_tool(sb, curl, &all)
}

/// curl with `web.crt` against `path` (taken as is, no client-side `..`
/// resolution), returning (status, body).
fn get_as_web(sb: &Sandbox, c: &Path, gw: &Gateway, path: &str) -> (String, String) {
    let url = format!("https://localhost:{}{path}", gw.port);
    let (code, out) = curl(
        sb,
        c,
        &[
            "--path-as-is",
            "--cert",
            "web.crt",
            "--key",
            "web.key",
            "--cacert",
            "ca/root.crt",
            &url,
        ],
    );
    assert_eq!(code, 0, "curl {path}: {out}");
    let (body, status) = out.rsplit_once('\n').unwrap();
    (status.to_string(), body.to_string())
}

/// Runs `program args` with `stdin`, killing it (and failing) if it takes
/// longer than 15 s. Returns (exit code, stdout+stderr).
pub(crate) fn run_bounded(
    sb: &Sandbox,
    program: &Path,
    args: &[&str],
    stdin: &[u8],
) -> (i32, String) {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(sb.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Writing may fail if the peer refused and the tool already exited.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} {args:?} did not finish within 15 s", program.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = out_t.join().unwrap();
    text.extend(err_t.join().unwrap());
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&text).into_owned(),
    )
}

/// `openssl s_client` sending one raw HTTP/1.1 GET for `path`. `cert` is
/// (certificate chain file, key file) or none.
fn s_client(
    sb: &Sandbox,
    openssl: &Path,
    gw: &Gateway,
    cert: Option<(&str, &str)>,
    path: &str,
) -> (i32, String) {
    let connect = format!("127.0.0.1:{}", gw.port);
    let mut args = vec!["s_client"];
    if let Some((c, k)) = cert {
        // -cert sends only the first certificate; -cert_chain sends the
        // intermediate too (the gateway trusts only the root).
        args.extend(["-cert", c, "-cert_chain", c, "-key", k]);
    }
    args.extend([
        "-CAfile",
        "ca/root.crt",
        "-connect",
        &connect,
        "-servername",
        "localhost",
        "-quiet",
    ]);
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    run_bounded(sb, openssl, &args, request.as_bytes())
}

const PY_CLIENT: &str = r#"
import socket, ssl, sys
port, cert, key, ca, path = sys.argv[1:6]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.load_cert_chain(cert, key)
with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
print(data.split(b"\r\n", 1)[0].decode())
"#;

/// A client certificate signed by the sandbox CA's intermediate (so the
/// chain is otherwise valid), written as `name.crt` (leaf + intermediate)
/// and `name.key`. For what `ca issue` refuses to make.
pub(crate) fn mint_client(sb: &Sandbox, name: &str, params: &CertificateParams) {
    let int_pem = std::fs::read_to_string(sb.path("ca/intermediate.crt")).unwrap();
    let int_key =
        KeyPair::from_pem(&std::fs::read_to_string(sb.path("ca/intermediate.key")).unwrap())
            .unwrap();
    let issuer = Issuer::from_ca_cert_pem(&int_pem, int_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(
        sb.path(&format!("{name}.crt")),
        format!("{}{int_pem}", cert.pem()),
    )
    .unwrap();
    std::fs::write(sb.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
}

/// Client-only leaf parameters for `WEB_ID`.
pub(crate) fn web_like_params() -> CertificateParams {
    let mut p = leaf_params("web.example.org");
    p.distinguished_name = Default::default();
    p.subject_alt_names = vec![SanType::URI(WEB_ID.try_into().unwrap())];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p
}

/// A second CA in `ca2` (named `name`, same trust domain) and a client
/// `stranger.crt` from it with web's SPIFFE ID: only the CA differs.
fn stranger_ca(sb: &Sandbox, name: &str) {
    sb.ok(&[
        "ca",
        "init",
        "--dir",
        "ca2",
        "--name",
        name,
        "--insecure-plaintext-root-key",
        "--trust-domain",
        "example.org",
    ]);
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca2",
        "--spiffe-id",
        WEB_ID,
        "--out",
        "stranger",
    ]);
}

/// Asserts curl with `cert`/`key` is refused at the handshake, the log has
/// one line with `reason`, and not one byte reached the backend. Returns
/// the log line.
fn refused_at_handshake(
    sb: &Sandbox,
    c: &Path,
    backend: &HttpBackend,
    gw: &Gateway,
    cert: Option<(&str, &str)>,
    reason: &str,
) -> String {
    let url = format!("https://localhost:{}/hello", gw.port);
    let mut args = vec!["--cacert", "ca/root.crt", &url];
    if let Some((crt, key)) = cert {
        args.extend(["--cert", crt, "--key", key]);
    }
    let (code, out) = curl(sb, c, &args);
    assert_ne!(
        code, 0,
        "curl succeeded although it should be refused:\n{out}"
    );
    let needle = format!("reason=\"{reason}\"");
    let log = gw.wait_log(&needle);
    let line = log
        .lines()
        .find(|l| l.contains(&needle))
        .unwrap()
        .to_string();
    assert!(line.contains("handshake refused"), "{line}");
    assert_eq!(
        backend.bytes(),
        0,
        "bytes reached the backend: {:?}",
        backend.requests()
    );
    line
}

/// Like `refused_at_handshake`, for a backend that has already seen traffic
/// (the caller compares byte counts itself).
fn refused_at_handshake_after(
    sb: &Sandbox,
    c: &Path,
    gw: &Gateway,
    cert: (&str, &str),
    reason: &str,
) {
    let url = format!("https://localhost:{}/health", gw.port);
    let (code, out) = curl(
        sb,
        c,
        &[
            "--cacert",
            "ca/root.crt",
            "--cert",
            cert.0,
            "--key",
            cert.1,
            &url,
        ],
    );
    assert_ne!(
        code, 0,
        "curl succeeded although it should be refused:\n{out}"
    );
    gw.wait_log(&format!("reason=\"{reason}\""));
}

/// GET http://ADDR/metrics, retried briefly: the metrics listener is bound
/// just after the gateway's own port, which is what `Gateway::start` waits for.
fn metrics(sb: &Sandbox, c: &Path, port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let started = Instant::now();
    loop {
        let (code, out) = curl(sb, c, &[&url]);
        if code == 0 {
            return out;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "metrics endpoint unreachable: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// --- 1. accepted: every client gets through, with our XFCC ---

#[test]
fn curl_with_web_cert_gets_200_and_backend_sees_one_request_with_our_xfcc() {
    let Some(c) = tool("curl") else { return };
    let (sb, backend, gw) = start("strict", WEB_NO_ADMIN);
    let (status, body) = get_as_web(&sb, &c, &gw, "/hello");
    assert_eq!(status, "200", "{body}");
    // The body is the backend's own, proving the response came from it.
    assert_eq!(body, r#"{"path":"/hello","body_len":0}"#);
    let seen = backend.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "/hello");
    assert_eq!(seen[0].headers.get(XFCC), Some(&web_xfcc(&sb)), "{seen:?}");
}

#[test]
fn python_ssl_client_with_web_cert_gets_200() {
    let Some(py) = tool("python3") else { return };
    let (sb, backend, gw) = start("strict", WEB_NO_ADMIN);
    std::fs::write(sb.path("client.py"), PY_CLIENT).unwrap();
    let port = gw.port.to_string();
    let (code, out) = run_bounded(
        &sb,
        &py,
        &[
            "client.py",
            &port,
            "web.crt",
            "web.key",
            "ca/root.crt",
            "/py",
        ],
        b"",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "HTTP/1.1 200 OK");
    let seen = backend.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/py");
    assert_eq!(seen[0].headers.get(XFCC), Some(&web_xfcc(&sb)), "{seen:?}");
}

#[test]
fn openssl_s_client_with_web_cert_gets_200() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let (sb, backend, gw) = start("strict", WEB_NO_ADMIN);
    let (code, out) = s_client(&sb, &openssl, &gw, Some(("web.crt", "web.key")), "/x");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("HTTP/1.1 200 OK\r\n"), "{out}");
    let seen = backend.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/x");
    assert_eq!(seen[0].headers.get(XFCC), Some(&web_xfcc(&sb)), "{seen:?}");
}

#[test]
fn http2_client_gets_200_and_backend_gets_http1_with_xfcc() {
    let Some(c) = tool("curl") else { return };
    let (sb, backend, gw) = start("strict", WEB_NO_ADMIN);
    let url = format!("https://localhost:{}/h2", gw.port);
    let (code, out) = curl(
        &sb,
        &c,
        &[
            "--http2",
            "--cert",
            "web.crt",
            "--key",
            "web.key",
            "--cacert",
            "ca/root.crt",
            "-w",
            "\n%{http_code} %{http_version}",
            &url,
        ],
    );
    assert_eq!(code, 0, "{out}");
    // This -w replaces curl()'s: status code, then the negotiated version.
    assert!(out.ends_with("\n200 2"), "not HTTP/2 200: {out}");
    let seen = backend.requests();
    // The backend parses HTTP/1.x only: an HTTP/2 preface would show up as
    // method PRI, path `*`.
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/h2")
    );
    assert_eq!(seen[0].headers.get(XFCC), Some(&web_xfcc(&sb)), "{seen:?}");
    // HTTP/2 has no Host header (:authority instead); HTTP/1.1 requires one.
    let host = format!("localhost:{}", gw.port);
    assert_eq!(seen[0].headers.get("host"), Some(&host), "{seen:?}");
}

// --- 2. a client cannot forge the identity header ---

#[test]
fn client_sent_xfcc_headers_never_reach_the_backend() {
    let Some(c) = tool("curl") else { return };
    let (sb, backend, gw) = start("strict", WEB_NO_ADMIN);
    let url = format!("https://localhost:{}/forged", gw.port);
    let base = [
        "--cert",
        "web.crt",
        "--key",
        "web.key",
        "--cacert",
        "ca/root.crt",
    ];
    let cases: [&[&str]; 3] = [
        &["-H", "x-forwarded-client-cert: By=evil"],
        &[
            "-H",
            "x-forwarded-client-cert: By=evil",
            "-H",
            "X-Forwarded-Client-Cert: By=evil;URI=spiffe://example.org/ns/prod/sa/admin",
        ],
        // HTTP/2 carries headers differently (HPACK, lower-case names).
        &["--http2", "-H", "x-forwarded-client-cert: By=evil"],
    ];
    for extra in cases {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        args.push(&url);
        let (code, out) = curl(&sb, &c, &args);
        assert_eq!(code, 0, "{out}");
        assert!(out.ends_with("\n200"), "{extra:?}: {out}");
    }
    let seen = backend.requests();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let ours = web_xfcc(&sb);
    for s in &seen {
        // Repeated headers are joined with ", " by the backend, so a
        // forwarded forged copy would make this differ.
        assert_eq!(s.headers.get(XFCC), Some(&ours), "{s:?}");
    }
}

/// An allowed identity whose subject holds a control character: no header
/// value can carry it, and the request must be refused, not forwarded
/// without the identity (the backend would take it for an anonymous one).
#[test]
fn an_identity_that_cannot_be_written_into_xfcc_is_refused_not_forwarded_bare() {
    let Some(c) = tool("curl") else { return };
    let (sb, backend, gw) = start("strict", WEB_NO_ADMIN);
    let mut p = web_like_params();
    p.distinguished_name
        .push(DnType::CommonName, DnValue::Utf8String("web\nops".into()));
    mint_client(&sb, "ctl", &p);
    let url = format!("https://localhost:{}/hello", gw.port);
    let (code, out) = curl(
        &sb,
        &c,
        &[
            "--cert",
            "ctl.crt",
            "--key",
            "ctl.key",
            "--cacert",
            "ca/root.crt",
            &url,
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("\n403"), "{out}");
    assert!(out.contains("\"reason\":\"malformed\""), "{out}");
    gw.wait_log("x-forwarded-client-cert");
    assert_eq!(backend.bytes(), 0, "{:?}", backend.requests());
}

// --- 3. refusals: right reason, zero bytes upstream ---

#[test]
fn no_client_cert_is_refused_at_handshake_with_certificate_required() {
    let (Some(c), Some(openssl)) = (tool("curl"), tool("openssl")) else {
        return;
    };
    let (sb, backend, gw) = start("strict", WEB_NO_ADMIN);
    refused_at_handshake(&sb, &c, &backend, &gw, None, "no_client_cert");
    let (code, out) = s_client(&sb, &openssl, &gw, None, "/x");
    assert_ne!(code, 0, "{out}");
    // TLS 1.3's certificate_required alert (116), not a generic failure.
    assert!(out.contains("alert certificate required"), "{out}");
    assert!(!out.contains("HTTP/1.1"), "{out}");
    assert_eq!(backend.bytes(), 0);
}

#[test]
fn client_cert_from_another_ca_is_refused_as_unknown_ca() {
    let (Some(c), Some(openssl)) = (tool("curl"), tool("openssl")) else {
        return;
    };
    let (sb, backend, gw) = start("strict", WEB_NO_ADMIN);
    // The same SPIFFE ID, from a CA the gateway does not trust.
    stranger_ca(&sb, "Stranger");
    let line = refused_at_handshake(
        &sb,
        &c,
        &backend,
        &gw,
        Some(("stranger.crt", "stranger.key")),
        "unknown_ca",
    );
    assert!(line.contains(&serial(&sb, "stranger.crt")), "{line}");
    let (code, out) = s_client(
        &sb,
        &openssl,
        &gw,
        Some(("stranger.crt", "stranger.key")),
        "/x",
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("alert unknown ca"), "{out}");
    assert_eq!(backend.bytes(), 0);
}

#[test]

fn client_cert_from_another_ca_with_the_same_names_is_refused_as_unknown_ca() {
    let Some(c) = tool("curl") else { return };
    let (sb, backend, gw) = start("strict", WEB_NO_ADMIN);
    // `ca init` names every CA "Symbolon Root CA" / "Symbolon Intermediate
    // CA" unless told otherwise, so two independently made CAs (staging and
    // production, say) share names. The stranger's chain is intact; its
    // intermediate just does not chain to our root.
    stranger_ca(&sb, "Symbolon");
    let line = refused_at_handshake(
        &sb,
        &c,
        &backend,
        &gw,
        Some(("stranger.crt", "stranger.key")),
        "unknown_ca",
    );
    assert!(line.contains(&serial(&sb, "stranger.crt")), "{line}");
}

#[test]
fn expired_client_cert_is_refused_as_expired_naming_its_serial() {
    let (Some(c), Some(openssl)) = (tool("curl"), tool("openssl")) else {
        return;
    };
    let (sb, backend, gw) = start("strict", WEB_NO_ADMIN);
    let mut p = web_like_params();
    let now = OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(2);
    p.not_after = now - time::Duration::days(1);
    mint_client(&sb, "expired", &p);
    let line = refused_at_handshake(
        &sb,
        &c,
        &backend,
        &gw,
        Some(("expired.crt", "expired.key")),
        "expired",
    );
    let serial = serial(&sb, "expired.crt");
    assert!(line.contains(&format!("serial={serial}")), "{line}");
    let (code, out) = s_client(
        &sb,
        &openssl,
        &gw,
        Some(("expired.crt", "expired.key")),
        "/x",
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("alert certificate expired"), "{out}");
    assert_eq!(backend.bytes(), 0);
}

#[test]
fn server_auth_only_cert_as_client_cert_is_refused_as_bad_eku() {
    let Some(c) = tool("curl") else { return };
    let (sb, backend, gw) = start("strict", WEB_NO_ADMIN);
    let line = refused_at_handshake(
        &sb,
        &c,
        &backend,
        &gw,
        Some(("server-only.crt", "server-only.key")),
        "bad_eku",
    );
    assert!(line.contains(&serial(&sb, "server-only.crt")), "{line}");
}

#[test]
fn ca_certificate_as_client_cert_is_refused_as_ca_used_as_leaf() {
    let Some(c) = tool("curl") else { return };
    let (sb, backend, gw) = start("strict", WEB_NO_ADMIN);
    let line = refused_at_handshake(
        &sb,
        &c,
        &backend,
        &gw,
        Some(("ca/intermediate.crt", "ca/intermediate.key")),
        "ca_used_as_leaf",
    );
    assert!(line.contains(&serial(&sb, "ca/intermediate.crt")), "{line}");
}

#[test]
fn spiffe_id_only_in_common_name_is_not_an_identity() {
    let Some(c) = tool("curl") else { return };
    let (sb, backend, gw) = start("strict", WEB_NO_ADMIN);
    // Valid chain, clientAuth, but the SPIFFE ID is only in the CN and the
    // one SAN is DNS: a policy on spiffe_id must not be satisfied by a CN.
    let mut p = leaf_params("x.example.org");
    p.distinguished_name = Default::default();
    p.distinguished_name.push(DnType::CommonName, WEB_ID);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    mint_client(&sb, "cn-only", &p);
    let url = format!("https://localhost:{}/hello", gw.port);
    let (code, out) = curl(
        &sb,
        &c,
        &[
            "--cert",
            "cn-only.crt",
            "--key",
            "cn-only.key",
            "--cacert",
            "ca/root.crt",
            &url,
        ],
    );
    assert_eq!(code, 0, "{out}");
    let (body, status) = out.rsplit_once('\n').unwrap();
    assert_eq!(status, "403", "{out}");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"reason": "policy_denied", "rule": "no matching rule"})
    );
    gw.wait_log("reason=\"policy_denied\"");
    assert_eq!(backend.bytes(), 0, "{:?}", backend.requests());
}

#[test]
fn other_spiffe_id_gets_403_no_matching_rule_and_a_log_line_with_its_serial() {
    let Some(c) = tool("curl") else { return };
    let (sb, backend, gw) = start("strict", WEB_NO_ADMIN);
    let url = format!("https://localhost:{}/hello", gw.port);
    let (code, out) = curl(
        &sb,
        &c,
        &[
            "--cert",
            "other.crt",
            "--key",
            "other.key",
            "--cacert",
            "ca/root.crt",
            &url,
        ],
    );
    assert_eq!(code, 0, "{out}");
    let (body, status) = out.rsplit_once('\n').unwrap();
    assert_eq!(status, "403", "{out}");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"reason": "policy_denied", "rule": "no matching rule"})
    );
    let log = gw.wait_log("reason=\"policy_denied\"");
    let line = log.lines().find(|l| l.contains("policy_denied")).unwrap();
    assert!(
        line.contains(&format!("serial={}", serial(&sb, "other.crt"))),
        "{line}"
    );
    assert!(
        line.contains("spiffe_id=spiffe://example.org/ns/prod/sa/other"),
        "{line}"
    );
    assert!(line.contains("rule=\"no matching rule\""), "{line}");
    assert_eq!(backend.bytes(), 0, "{:?}", backend.requests());
}

#[test]
fn path_tricks_that_reach_admin_are_denied_by_the_admin_rule() {
    let Some(c) = tool("curl") else { return };
    let (sb, backend, gw) = start("strict", WEB_NO_ADMIN);
    for path in [
        "/admin/x",
        "/public/%2e%2e/admin/x",
        "/public/%2E%2E/admin/x",
        "/public/.%2e/admin/x",
        "/public/..%2fadmin/x",
        "//admin/x",
        "/./admin/x",
        "/admin%2Fx",
        "/admin%2fx",
        "/%61dmin/x",
        "/Public/../admin/x",
        "/admin",
        "/admin/x?q=1",
    ] {
        let (status, body) = get_as_web(&sb, &c, &gw, path);
        assert_eq!(status, "403", "{path} was not denied: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"reason": "policy_denied", "rule": "no-admin"}),
            "{path}"
        );
    }
    assert_eq!(backend.bytes(), 0, "{:?}", backend.requests());

    // What is allowed reaches the backend with the path policy judged.
    for (sent, forwarded) in [
        ("/public/x", "/public/x"),
        ("/public/./a/../x", "/public/x"),
        ("//public///x", "/public/x"),
        ("/public/%78?q=%2e%2e", "/public/x?q=%2e%2e"),
    ] {
        let (status, body) = get_as_web(&sb, &c, &gw, sent);
        assert_eq!(status, "200", "{sent}: {body}");
        let last = backend.requests().pop().unwrap();
        assert_eq!(last.path, forwarded, "{sent}");
    }
}

// --- 4. permissive mode ---

#[test]
fn permissive_mode_lets_unauthenticated_requests_reach_only_unauthenticated_rules() {
    let Some(c) = tool("curl") else { return };
    let policy = r#"
[[policy.rule]]
name = "public-health"
effect = "allow"
unauthenticated = true
paths = ["/health"]

[[policy.rule]]
name = "web"
effect = "allow"
spiffe_id = ["spiffe://example.org/ns/*/sa/web"]
"#;
    let (sb, backend, gw) = start("permissive", policy);
    let anon = |path: &str, extra: &[&str]| {
        let url = format!("https://localhost:{}{path}", gw.port);
        let mut args = vec!["--cacert", "ca/root.crt"];
        args.extend_from_slice(extra);
        args.push(&url);
        let (code, out) = curl(&sb, &c, &args);
        assert_eq!(code, 0, "{path}: {out}");
        let (body, status) = out.rsplit_once('\n').unwrap();
        (status.to_string(), body.to_string())
    };

    // A forged XFCC on an unauthenticated request must not pass either:
    // there is no identity to replace it with.
    let (status, body) = anon(
        "/health",
        &[
            "-H",
            "x-forwarded-client-cert: By=evil;URI=spiffe://example.org/ns/prod/sa/web",
        ],
    );
    assert_eq!(status, "200", "{body}");
    let seen = backend.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/health");
    assert_eq!(seen[0].headers.get(XFCC), None, "{seen:?}");

    let (status, body) = anon("/data", &[]);
    assert_eq!(status, "403", "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"reason": "policy_denied", "rule": "no matching rule"})
    );
    gw.wait_log("unauthenticated");
    assert_eq!(
        backend.requests().len(),
        1,
        "the 403 request reached the backend"
    );

    let (status, body) = get_as_web(&sb, &c, &gw, "/data");
    assert_eq!(status, "200", "{body}");
    let last = backend.requests().pop().unwrap();
    assert_eq!(last.path, "/data");
    assert_eq!(last.headers.get(XFCC), Some(&web_xfcc(&sb)));

    // Permissive means "a certificate is optional", not "any certificate".
    stranger_ca(&sb, "Stranger");
    let before = backend.bytes();
    refused_at_handshake_after(&sb, &c, &gw, ("stranger.crt", "stranger.key"), "unknown_ca");
    assert_eq!(
        backend.bytes(),
        before,
        "the refused client reached the backend"
    );
}

// --- 5. audit rules allow, log and count ---

#[test]
fn audit_deny_rule_allows_but_logs_and_counts() {
    let Some(c) = tool("curl") else { return };
    let mport = free_port();
    let policy = format!(
        r#"
[[policy.rule]]
name = "allow-all"
effect = "allow"

[[policy.rule]]
name = "future-no-delete"
effect = "deny"
mode = "audit"
methods = ["DELETE"]

[metrics]
listen = "127.0.0.1:{mport}"
"#
    );
    let (sb, backend, gw) = start("strict", &policy);
    let url = format!("https://localhost:{}/thing", gw.port);
    let (code, out) = curl(
        &sb,
        &c,
        &[
            "-X",
            "DELETE",
            "--cert",
            "web.crt",
            "--key",
            "web.key",
            "--cacert",
            "ca/root.crt",
            &url,
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("\n200"), "{out}");
    let seen = backend.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("DELETE", "/thing")
    );

    let log = gw.wait_log("mode=\"audit\"");
    let line = log.lines().find(|l| l.contains("mode=\"audit\"")).unwrap();
    assert!(line.contains("would be denied"), "{line}");
    assert!(line.contains("rule=\"future-no-delete\""), "{line}");
    assert!(line.contains("DELETE /thing"), "{line}");

    let text = metrics(&sb, &c, mport);
    assert!(
        text.contains(
            "symbolon_gateway_policy_decisions_total{rule=\"future-no-delete\",effect=\"audit_deny\"} 1\n"
        ),
        "{text}"
    );
    // Allowed, but not counted as a plain allow as well, and never a deny.
    assert!(!text.contains("effect=\"deny\""), "{text}");

    // A GET does not trip the audit rule.
    let (code, out) = curl(
        &sb,
        &c,
        &[
            "--cert",
            "web.crt",
            "--key",
            "web.key",
            "--cacert",
            "ca/root.crt",
            &url,
        ],
    );
    assert_eq!(code, 0, "{out}");
    let text = metrics(&sb, &c, mport);
    assert!(
        text.contains("symbolon_gateway_policy_decisions_total{rule=\"future-no-delete\",effect=\"audit_deny\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "symbolon_gateway_policy_decisions_total{rule=\"allow-all\",effect=\"allow\"} 1\n"
        ),
        "{text}"
    );
}

// --- 6. metrics ---

#[test]
fn metrics_count_handshakes_requests_and_show_certificate_expiry() {
    let Some(c) = tool("curl") else { return };
    let mport = free_port();
    let extra = format!("{WEB_NO_ADMIN}\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n");
    let (sb, _backend, gw) = start("strict", &extra);
    let (status, body) = get_as_web(&sb, &c, &gw, "/hello");
    assert_eq!(status, "200", "{body}");
    let url = format!("https://localhost:{}/hello", gw.port);
    let (code, out) = curl(&sb, &c, &["--cacert", "ca/root.crt", &url]);
    assert_ne!(code, 0, "{out}");
    gw.wait_log("reason=\"no_client_cert\"");

    let text = metrics(&sb, &c, mport);
    for want in [
        "symbolon_gateway_handshakes_total{result=\"ok\",reason=\"full\"} 1\n",
        "symbolon_gateway_handshakes_total{result=\"error\",reason=\"no_client_cert\"} 1\n",
        "symbolon_gateway_requests_total{status=\"200\"} 1\n",
        "# TYPE symbolon_gateway_handshake_duration_seconds histogram\n",
        "symbolon_gateway_handshake_duration_seconds_count 1\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // The expiry gauges carry the real notAfter of each certificate.
    let ts = |file: &str| {
        let na = inspect_leaf(&sb, file)["not_after"]
            .as_str()
            .unwrap()
            .to_string();
        OffsetDateTime::parse(&na, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    };
    let server = format!(
        "symbolon_gateway_certificate_expiry_timestamp_seconds{{kind=\"server\",subject=\"CN=localhost\"}} {}\n",
        ts("gw.crt")
    );
    assert!(text.contains(&server), "missing {server:?} in:\n{text}");
    let root_subject = inspect_leaf(&sb, "ca/root.crt")["subject"]
        .as_str()
        .unwrap()
        .to_string();
    let ca = format!(
        "symbolon_gateway_certificate_expiry_timestamp_seconds{{kind=\"client_ca\",subject=\"{root_subject}\"}} {}\n",
        ts("ca/root.crt")
    );
    assert!(text.contains(&ca), "missing {ca:?} in:\n{text}");
}

// --- 7. policy check ---

#[test]
fn policy_check_answers_like_the_gateway() {
    let sb = Sandbox::new();
    pki(&sb);
    let upstream = "127.0.0.1:9".parse().unwrap();
    std::fs::write(
        sb.path("gw.toml"),
        server_config(free_port(), upstream, "strict", "http", WEB_NO_ADMIN),
    )
    .unwrap();
    let check = |args: &[&str]| {
        let mut all = vec!["policy", "check", "--config", "gw.toml"];
        all.extend_from_slice(args);
        sb.run(&all)
    };

    let r = check(&["--cert", "web.crt", "--path", "/admin/x", "--method", "GET"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(
        r.stdout.trim(),
        format!("deny: {WEB_ID} GET /admin/x by rule \"no-admin\"")
    );

    // The path is normalised exactly as the gateway does it.
    let r = check(&[
        "--cert",
        "web.crt",
        "--path",
        "/public/%2e%2e/admin/x",
        "--json",
    ]);
    assert_eq!(r.code, 1, "{}", r.all());
    let j = r.json();
    assert_eq!(j["decision"], "deny", "{j}");
    assert_eq!(j["rule"], "no-admin", "{j}");
    assert_eq!(j["path"], "/admin/x", "{j}");

    let r = check(&["--cert", "web.crt", "--path", "/x", "--method", "get"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        r.stdout.trim(),
        format!("allow: {WEB_ID} GET /x by rule \"web\"")
    );

    let r = check(&["--cert", "web.crt", "--path", "/x", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let j = r.json();
    assert_eq!(j["decision"], "allow", "{j}");
    assert_eq!(j["rule"], "web", "{j}");
    assert_eq!(j["identity"], WEB_ID, "{j}");

    let r = check(&["--cert", "other.crt", "--path", "/x"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout
            .starts_with("deny: spiffe://example.org/ns/prod/sa/other /x"),
        "{}",
        r.all()
    );
    assert!(r.stdout.contains("no matching rule"), "{}", r.all());
    let r = check(&["--cert", "other.crt", "--path", "/x", "--json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let j = r.json();
    assert_eq!(j["decision"], "deny", "{j}");
    assert_eq!(j["rule"], serde_json::Value::Null, "{j}");

    // Without a certificate: what a permissive gateway would decide.
    let r = check(&["--path", "/x"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.starts_with("deny: an unauthenticated client /x"),
        "{}",
        r.all()
    );

    stranger_ca(&sb, "Stranger");
    let r = check(&["--cert", "stranger.crt", "--path", "/x"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout
            .starts_with("deny: the certificate would be refused at the handshake: unknown_ca:"),
        "{}",
        r.all()
    );
}

#[test]

fn policy_check_json_for_a_certificate_refused_at_handshake_is_json() {
    let sb = Sandbox::new();
    pki(&sb);
    std::fs::write(
        sb.path("gw.toml"),
        server_config(
            free_port(),
            "127.0.0.1:9".parse().unwrap(),
            "strict",
            "http",
            WEB_NO_ADMIN,
        ),
    )
    .unwrap();
    stranger_ca(&sb, "Stranger");
    let r = sb.run(&[
        "policy",
        "check",
        "--config",
        "gw.toml",
        "--cert",
        "stranger.crt",
        "--path",
        "/x",
        "--json",
    ]);
    assert_eq!(r.code, 1, "{}", r.all());
    let j = r.json();
    assert_eq!(j["decision"], "deny", "{j}");
    assert!(j.to_string().contains("unknown_ca"), "{j}");
}

// --- 8. configuration is checked before binding ---

#[test]
fn bad_config_exits_2_naming_file_and_key_before_binding() {
    let sb = Sandbox::new();
    pki(&sb);
    let upstream = "127.0.0.1:9".parse().unwrap();
    let good = |port| server_config(port, upstream, "strict", "http", WEB_NO_ADMIN);
    // (file, text to replace in a good config, replacement, what stderr
    // must name).
    let cases = [
        (
            "mode.toml",
            "mode = \"strict\"",
            "mode = \"sometimes\"",
            "server.mode: \"sometimes\"",
        ),
        (
            "paths.toml",
            "paths = [\"/admin/**\"]",
            "paths = [\"admin\"]",
            "paths: \"admin\" must start with '/'",
        ),
        (
            "missing.toml",
            "cert = \"gw.crt\"",
            "cert = \"gone.crt\"",
            "server.cert: gone.crt does not exist",
        ),
        (
            "typo.toml",
            "handshake_timeout",
            "handshake_timout",
            "handshake_timout",
        ),
    ];
    for (name, from, to, want) in cases {
        // Hold the listen port ourselves: a gateway that bound before
        // validating would fail with "cannot listen" instead. (Probing the
        // port after the process has exited would prove nothing, and races
        // with parallel tests that bind ephemeral ports.)
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let text = good(port).replace(from, to);
        assert_ne!(text, good(port), "{name}: the replacement did not apply");
        std::fs::write(sb.path(name), &text).unwrap();
        let started = Instant::now();
        let (code, out) = run_bounded(
            &sb,
            Path::new(env!("CARGO_BIN_EXE_symbolon")),
            &["gateway", "--config", name],
            b"",
        );
        assert_eq!(code, 2, "{name}: {out}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name}: slow exit"
        );
        assert!(
            out.contains(name),
            "{name}: stderr does not name the file: {out}"
        );
        assert!(
            out.contains(want),
            "{name}: stderr does not name {want:?}: {out}"
        );
        assert!(!out.contains("cannot listen"), "{name}: bound first: {out}");
        drop(holder);
    }

    // Control: the held port is what a binding gateway trips over, so the
    // check above can tell "validated first" from "bound first".
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    std::fs::write(sb.path("good.toml"), good(port)).unwrap();
    let (code, out) = run_bounded(
        &sb,
        Path::new(env!("CARGO_BIN_EXE_symbolon")),
        &["gateway", "--config", "good.toml"],
        b"",
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("server.listen: cannot listen on"), "{out}");
}
