//! Revocation the gateway enforces: pushed by the control plane's feed,
//! closing live connections, refusing new handshakes, fail-closed or
//! fail-open when the control plane is gone, and refusing rollbacks.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::gw_support::{CaServe, Gateway, TcpBackend, free_port};
use crate::support::{Sandbox, tool};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One long-lived TLS connection echoing pings, and one client making a new
/// handshake every 100 ms; prints "ready", then one JSON line when both
/// have seen the end (or after `limit` seconds).
const WATCHER: &str = r#"
import json, socket, ssl, sys, threading, time
port, limit = int(sys.argv[1]), float(sys.argv[2])
def ctx():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.load_verify_locations("ca/root.crt")
    c.load_cert_chain("web.crt", "web.key")
    return c
out = {}
live = ctx().wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
live.settimeout(1.0)
live.sendall(b"ping"); assert live.recv(4) == b"ping"
def hold():
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            live.sendall(b"ping")
            if live.recv(4) != b"ping":
                out["closed_at"] = time.time(); return
        except Exception as e:
            out["closed_at"] = time.time(); out["closed_error"] = repr(e); return
        time.sleep(0.05)
def loop():
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            s = ctx().wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
            s.settimeout(1.0)
            s.sendall(b"hi")
            if s.recv(2) != b"hi":
                raise Exception("no echo")
            s.close()
        except Exception as e:
            out["refused_at"] = time.time(); out["refused_error"] = repr(e); return
        time.sleep(0.1)
a, b = threading.Thread(target=hold), threading.Thread(target=loop)
a.start(); b.start()
print("ready", flush=True)
a.join(); b.join()
print(json.dumps(out), flush=True)
"#;

fn setup(sb: &Sandbox) -> (u16, TcpBackend) {
    sb.init_plain_ca("ca", &[]);
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--profile",
        "server",
        "--out",
        "gw",
    ]);
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--spiffe-id",
        "spiffe://example.org/web",
        "--out",
        "web",
    ]);
    (free_port(), TcpBackend::start())
}

fn gateway_config(port: u16, upstream: std::net::SocketAddr, revocation: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"
cert = "gw.crt"
key = "gw.key"
client_ca = "ca/ca-bundle.pem"

[upstream]
address = "{upstream}"
protocol = "tcp"

[[policy.rule]]
name = "all"
effect = "allow"

[revocation]
{revocation}
"#
    )
}

fn run_watcher(
    sb: &Sandbox,
    python: &std::path::Path,
    port: u16,
    limit: u32,
    revoke: impl FnOnce(),
) -> (f64, serde_json::Value) {
    std::fs::write(sb.path("watch.py"), WATCHER).unwrap();
    let mut child = Command::new(python)
        .args(["watch.py", &port.to_string(), &limit.to_string()])
        .current_dir(sb.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    // Let both clients run against a good certificate first.
    std::thread::sleep(Duration::from_millis(500));
    let at = now();
    revoke();
    let result: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    child.wait().unwrap();
    (at, result)
}

/// Waits until the gateway accepts the client: the feed's snapshot has
/// arrived (before that, fail-closed rightly refuses everyone).
fn wait_fresh(python: &std::path::Path, sb: &Sandbox, port: u16) {
    let started = Instant::now();
    while !handshake_ok(python, sb, port) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the gateway never got fresh revocation data"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn serial(sb: &Sandbox) -> String {
    sb.ok(&["cert", "inspect", "web.crt", "--json"]).json()[0]["serial"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn revoking_by_cli_closes_live_connections_and_refuses_new_handshakes() {
    let Some(python) = tool("python3") else {
        return;
    };
    let sb = Sandbox::new();
    let (port, backend) = setup(&sb);
    let ca_port = free_port();
    let _serve = CaServe::on(&sb, "ca", ca_port, None);
    let cfg = gateway_config(
        port,
        backend.addr,
        &format!("feed = \"https://localhost:{ca_port}\"\nmax_staleness = \"30s\""),
    );
    let gw = Gateway::start(&sb, "gw.toml", &cfg, port);
    gw.wait_log("following the revocation feed");
    wait_fresh(&python, &sb, port);

    let serial = serial(&sb);
    let (at, out) = run_watcher(&sb, &python, port, 10, || {
        sb.ok(&[
            "ca",
            "revoke",
            "--dir",
            "ca",
            "--cert",
            "web.crt",
            "--reason",
            "keyCompromise",
        ]);
    });
    let closed = out["closed_at"]
        .as_f64()
        .unwrap_or_else(|| panic!("live connection never closed: {out}"));
    let refused = out["refused_at"]
        .as_f64()
        .unwrap_or_else(|| panic!("new handshakes never refused: {out}"));
    // A generous bound here; bench/ measures the real distribution.
    assert!(
        closed - at < 5.0,
        "live connection closed {:.2}s after revocation",
        closed - at
    );
    assert!(
        refused - at < 5.0,
        "handshakes refused {:.2}s after revocation",
        refused - at
    );
    let log = gw.wait_log("reason=\"revoked\"");
    assert!(
        log.contains(&format!("serial={serial}")) || log.contains(&serial),
        "{log}"
    );
    assert!(
        log.contains("connection closed: client certificate revoked"),
        "{log}"
    );
    // Backend: no bytes after the revocation from new connections beyond
    // what the live one had sent before it was cut.
    assert!(backend.total_bytes() > 0);
}

#[test]
fn revoking_by_api_is_pushed_too() {
    let (Some(python), Some(curl)) = (tool("python3"), tool("curl")) else {
        return;
    };
    let sb = Sandbox::new();
    let (port, backend) = setup(&sb);
    let ca_port = free_port();
    let _serve = CaServe::on(&sb, "ca", ca_port, None);
    let cfg = gateway_config(
        port,
        backend.addr,
        &format!("feed = \"https://localhost:{ca_port}\""),
    );
    let gw = Gateway::start(&sb, "gw.toml", &cfg, port);
    gw.wait_log("following the revocation feed");
    wait_fresh(&python, &sb, port);
    let serial = serial(&sb);
    let (at, out) = run_watcher(&sb, &python, port, 10, || {
        let body = format!("{{\"serial\":\"{serial}\",\"reason\":\"keyCompromise\"}}");
        let o = Command::new(&curl)
            .args([
                "-sS",
                "--max-time",
                "5",
                "--cacert",
                "ca/root.crt",
                "--cert",
                "web.crt",
                "--key",
                "web.key",
                "-X",
                "POST",
                "-d",
                &body,
            ])
            .arg(format!("https://localhost:{ca_port}/v1/revoke"))
            .current_dir(sb.dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    });
    assert!(
        out["closed_at"].as_f64().is_some_and(|t| t - at < 5.0),
        "{out}"
    );
    assert!(
        out["refused_at"].as_f64().is_some_and(|t| t - at < 5.0),
        "{out}"
    );
}

fn handshake_ok(python: &std::path::Path, sb: &Sandbox, port: u16) -> bool {
    let script = format!(
        "import socket, ssl\nc = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\nc.load_verify_locations('ca/root.crt')\nc.load_cert_chain('web.crt', 'web.key')\ns = c.wrap_socket(socket.create_connection(('127.0.0.1', {port})), server_hostname='localhost')\ns.settimeout(2)\ns.sendall(b'hi')\nassert s.recv(2) == b'hi'\n"
    );
    Command::new(python)
        .args(["-c", &script])
        .current_dir(sb.dir.path())
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn control_plane_down_fail_closed_then_catches_up() {
    let Some(python) = tool("python3") else {
        return;
    };
    let sb = Sandbox::new();
    let (port, backend) = setup(&sb);
    let ca_port = free_port();
    let serve = CaServe::on(&sb, "ca", ca_port, None);
    let cfg = gateway_config(
        port,
        backend.addr,
        &format!(
            "feed = \"https://localhost:{ca_port}\"\non_unavailable = \"fail-closed\"\nmax_staleness = \"3s\""
        ),
    );
    let gw = Gateway::start(&sb, "gw.toml", &cfg, port);
    gw.wait_log("following the revocation feed");
    // Fresh data (once the snapshot arrived) allows the handshake.
    wait_fresh(&python, &sb, port);

    drop(serve);
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !handshake_ok(&python, &sb, port),
        "stale data with fail-closed must refuse"
    );
    let log = gw.wait_log("reason=\"revocation_unavailable\"");
    assert!(log.contains("fail-closed"), "{log}");

    // Revoked while the control plane was down; when it returns the gateway
    // catches up and refuses the certificate.
    sb.ok(&["ca", "revoke", "--dir", "ca", "--cert", "web.crt"]);
    let _serve = CaServe::on(&sb, "ca", ca_port, None);
    let started = Instant::now();
    loop {
        let log = gw.log_text();
        if log.contains("certificate revoked") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "gateway never caught up:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!handshake_ok(&python, &sb, port));
    gw.wait_log("reason=\"revoked\"");
}

#[test]
fn control_plane_down_fail_open_passes_with_a_warning() {
    let Some(python) = tool("python3") else {
        return;
    };
    let sb = Sandbox::new();
    let (port, backend) = setup(&sb);
    let ca_port = free_port();
    let serve = CaServe::on(&sb, "ca", ca_port, None);
    let cfg = gateway_config(
        port,
        backend.addr,
        &format!(
            "feed = \"https://localhost:{ca_port}\"\non_unavailable = \"fail-open\"\nmax_staleness = \"2s\"\n\n[metrics]\nlisten = \"127.0.0.1:{}\"",
            free_port()
        ),
    );
    let gw = Gateway::start(&sb, "gw.toml", &cfg, port);
    gw.wait_log("following the revocation feed");
    drop(serve);
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        handshake_ok(&python, &sb, port),
        "fail-open must let the handshake pass"
    );
    let log = gw.wait_log("fail-open");
    assert!(log.contains("stale"), "{log}");
}

#[test]
fn a_crl_with_a_lower_number_is_refused() {
    let Some(python) = tool("python3") else {
        return;
    };
    let sb = Sandbox::new();
    let (port, backend) = setup(&sb);
    // CRL #1 (nothing revoked) kept aside; CRL #2 lists web.
    sb.ok(&["ca", "crl", "--dir", "ca", "--out", "crl1.pem"]);
    sb.ok(&["ca", "revoke", "--dir", "ca", "--cert", "web.crt"]);
    sb.ok(&["ca", "crl", "--dir", "ca", "--out", "crl.pem"]);
    let mport = free_port();
    let cfg = gateway_config(
        port,
        backend.addr,
        &format!(
            "crl = [\"crl.pem\"]\ncrl_refresh = \"1s\"\n\n[metrics]\nlisten = \"127.0.0.1:{mport}\""
        ),
    );
    let gw = Gateway::start(&sb, "gw.toml", &cfg, port);
    gw.wait_log("certificate revoked");
    assert!(!handshake_ok(&python, &sb, port), "revoked by CRL");
    // Roll the file back to the older CRL: refused, the revocation stays.
    std::fs::copy(sb.path("crl1.pem"), sb.path("crl.pem")).unwrap();
    let log = gw.wait_log("lower than");
    assert!(log.contains("ALERT"), "{log}");
    assert!(
        !handshake_ok(&python, &sb, port),
        "a rollback must not un-revoke"
    );
    let curl = tool("curl");
    if let Some(curl) = curl {
        let o = Command::new(curl)
            .args(["-s", &format!("http://127.0.0.1:{mport}/metrics")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("symbolon_gateway_revocation_rollbacks_total{source=\"crl\"}"),
            "{text}"
        );
    }
}

#[test]
fn the_gateway_staples_ocsp_for_its_own_certificate() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    let ca_port = free_port();
    sb.init_plain_ca(
        "ca",
        &["--public-url", &format!("https://localhost:{ca_port}")],
    );
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--profile",
        "server",
        "--out",
        "gw",
    ]);
    let _serve = CaServe::on(&sb, "ca", ca_port, None);
    let backend = TcpBackend::start();
    let port = free_port();
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ncert = \"gw.crt\"\nkey = \"gw.key\"\nclient_ca = \"ca/ca-bundle.pem\"\nmode = \"permissive\"\n\n[upstream]\naddress = \"{}\"\nprotocol = \"tcp\"\n",
        backend.addr
    );
    let gw = Gateway::start(&sb, "gw.toml", &cfg, port);
    gw.wait_log("stapling a fresh OCSP response");
    let out = Command::new(&openssl)
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
            "-status",
            "-CAfile",
            "ca/root.crt",
        ])
        .current_dir(sb.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("OCSP Response Status: successful"), "{text}");
    assert!(text.contains("Cert Status: good"), "{text}");
}

#[test]
fn the_ocsp_source_refuses_a_revoked_certificate_and_fails_closed_without_a_responder() {
    let Some(python) = tool("python3") else {
        return;
    };
    let sb = Sandbox::new();
    let ca_port = free_port();
    sb.init_plain_ca(
        "ca",
        &["--public-url", &format!("https://localhost:{ca_port}")],
    );
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--profile",
        "server",
        "--out",
        "gw",
    ]);
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--spiffe-id",
        "spiffe://example.org/web",
        "--out",
        "web",
    ]);
    let serve = CaServe::on(&sb, "ca", ca_port, None);
    let backend = TcpBackend::start();
    let port = free_port();
    let cfg = gateway_config(
        port,
        backend.addr,
        "ocsp = true\non_unavailable = \"fail-closed\"",
    );
    let gw = Gateway::start(&sb, "gw.toml", &cfg, port);
    assert!(
        handshake_ok(&python, &sb, port),
        "OCSP good must pass:\n{}",
        gw.log_text()
    );
    // A certificate revoked before its first use is refused by OCSP.
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--spiffe-id",
        "spiffe://example.org/web",
        "--out",
        "web2",
        "--force",
    ]);
    sb.ok(&[
        "ca",
        "revoke",
        "--dir",
        "ca",
        "--cert",
        "web2.crt",
        "--reason",
        "keyCompromise",
    ]);
    std::fs::copy(sb.path("web2.crt"), sb.path("web.crt")).unwrap();
    std::fs::copy(sb.path("web2.key"), sb.path("web.key")).unwrap();
    assert!(
        !handshake_ok(&python, &sb, port),
        "revoked by OCSP must be refused"
    );
    let log = gw.wait_log("OCSP says");
    assert!(log.contains("reason=\"revoked\""), "{log}");
    // No responder and no cached answer: fail closed.
    drop(serve);
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--spiffe-id",
        "spiffe://example.org/web",
        "--out",
        "web",
        "--force",
    ]);
    assert!(
        !handshake_ok(&python, &sb, port),
        "no OCSP answer with fail-closed must refuse"
    );
    gw.wait_log("reason=\"revocation_unavailable\"");
    assert_eq!(
        backend.total_bytes(),
        2,
        "only the first (good) connection reached the backend"
    );
}
