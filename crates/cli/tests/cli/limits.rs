//! Resource limits under a flood: connections that never finish their
//! handshake hold at most `max_connections` slots, the excess is refused
//! at once, the slow ones are dropped after `handshake_timeout`, memory
//! stays bounded, and a legitimate client is served once slots free up.
//! The gateway and `ca serve` alike; both also drop clients that trickle
//! their headers (the CA their body too).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::gw_support::{CaServe, Gateway, HttpBackend, free_port, pki};
use crate::support::Sandbox;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn handshakes(sb: &Sandbox, port: u16, count: &str) -> Value {
    let r = sb.run(&[
        "bench",
        "handshake",
        "--target",
        &format!("127.0.0.1:{port}"),
        "--cert",
        "web.crt",
        "--key",
        "web.key",
        "--trust",
        "ca/root.crt",
        "--count",
        count,
        "--concurrency",
        "1",
        "--timeout",
        "5s",
        "--json",
        "-q",
    ]);
    serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{}", r.all()))
}

#[test]
fn a_flood_of_unfinished_handshakes_is_capped_timed_out_and_then_clients_are_served() {
    let sb = Sandbox::new();
    pki(&sb);
    let backend = HttpBackend::start();
    let port = free_port();
    let config = format!(
        r#"[server]
listen = "127.0.0.1:{port}"
cert = "gw.crt"
key = "gw.key"
client_ca = "ca/root.crt"
handshake_timeout = "2s"
max_connections = 20

[upstream]
address = "{}"
protocol = "http"

[[policy.rule]]
name = "web"
effect = "allow"
spiffe_id = ["spiffe://example.org/ns/prod/sa/web"]
"#,
        backend.addr
    );
    let gw = Gateway::start(&sb, "gw.toml", &config, port);
    let idle = rss_kib(gw.child.id());

    // 200 connections that never send a ClientHello.
    let flood: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    gw.wait_log("server.max_connections (20) reached");
    let held = rss_kib(gw.child.id());
    // While every slot is held, a real client is refused, not queued.
    let r = handshakes(&sb, port, "1");
    assert_eq!(r["completed"], 0, "{r}");
    assert_eq!(r["failed"], 1, "{r}");

    // The slow ones are dropped after handshake_timeout; then clients get in.
    gw.wait_log("reason=\"handshake_timeout\"");
    let mut served = Value::Null;
    for _ in 0..50 {
        served = handshakes(&sb, port, "5");
        if served["completed"] == 5 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(served["completed"], 5, "{served}\n{}", gw.log_text());
    let log = gw.log_text();
    let refused = log.matches("reason=\"max_connections\"").count();
    let timed_out = log.matches("reason=\"handshake_timeout\"").count();
    assert!(refused >= 180, "only {refused} refused:\n{log}");
    assert!(
        (1..=20).contains(&timed_out),
        "{timed_out} timed out:\n{log}"
    );
    // Bounded memory: 200 connections cost the gateway at most 20 slots'
    // worth (generous: a debug build, allocator slack).
    assert!(
        held < idle + 32 * 1024,
        "RSS went from {idle} KiB to {held} KiB under the flood"
    );
    drop(flood);
    assert_eq!(backend.bytes(), 0);
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A finished TLS handshake with the CA or the gateway at `port` (as
/// `localhost`), without a client certificate, trusting `ca/root.crt`.
fn tls_to(sb: &Sandbox, port: u16) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    for c in symbolon_pki::input::load_certificates(&sb.path("ca/root.crt")).unwrap() {
        roots.add(c).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, TcpStream::connect(("127.0.0.1", port)).unwrap());
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    s
}

/// Reads until the peer closes the connection (EOF or an error) or
/// `within` passes: what was received, if it closed.
fn closed_within(s: &mut dyn Read, sock: &TcpStream, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(got),
        }
    }
    None
}

fn tcp_closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let sock = s.try_clone().unwrap();
    closed_within(s, &sock, within).is_some()
}

fn tls_closed_within(s: &mut Tls, within: Duration) -> Option<Vec<u8>> {
    let sock = s.sock.try_clone().unwrap();
    closed_within(s, &sock, within)
}

#[test]
fn ca_serve_caps_connections_and_drops_slow_handshakes_headers_and_bodies() {
    let sb = Sandbox::new();
    sb.init_plain_ca("ca", &[]);
    // `ca init` writes the defaults; tighten them.
    let path = sb.path("ca/ca.toml");
    let mut toml = std::fs::read_to_string(&path).unwrap();
    for (from, to) in [
        ("max_connections = 4096", "max_connections = 20"),
        ("handshake_timeout = \"10s\"", "handshake_timeout = \"2s\""),
        ("header_timeout = \"30s\"", "header_timeout = \"2s\""),
        ("request_timeout = \"60s\"", "request_timeout = \"2s\""),
    ] {
        assert!(toml.contains(from), "ca.toml has no {from}:\n{toml}");
        toml = toml.replace(from, to);
    }
    std::fs::write(&path, toml).unwrap();
    let serve = CaServe::start(&sb, "ca");
    let port = serve.port;

    // Five clients send half their headers, five their headers and a
    // tenth of the body they announced.
    let mut slow_headers: Vec<Tls> = (0..5)
        .map(|_| {
            let mut s = tls_to(&sb, port);
            s.write_all(b"GET /v1/roots HTTP/1.1\r\nHost: localhost\r\n")
                .unwrap();
            s
        })
        .collect();
    let mut slow_bodies: Vec<Tls> = (0..5)
        .map(|_| {
            let mut s = tls_to(&sb, port);
            s.write_all(
                b"POST /v1/enroll HTTP/1.1\r\nHost: localhost\r\n\
                  content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"token\":",
            )
            .unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    // Thirty that never send a ClientHello: ten take the free slots, the
    // other twenty are closed as they arrive, and so is one more client.
    let mut silent: Vec<TcpStream> = (0..30)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let refused_at_once = silent
        .iter_mut()
        .filter_map(|s| tcp_closed_within(s, Duration::from_millis(40)).then_some(()))
        .count();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the check itself took too long to mean anything"
    );
    assert_eq!(refused_at_once, 20, "{}", serve.log_text());
    let mut late = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(
        tcp_closed_within(&mut late, Duration::from_millis(500)),
        "a client beyond max_connections was kept"
    );

    // Each slow kind is dropped by its own timeout, not before.
    for s in &mut slow_headers {
        tls_closed_within(s, Duration::from_secs(10)).expect("slow headers kept");
    }
    for s in &mut slow_bodies {
        let got = tls_closed_within(s, Duration::from_secs(10)).expect("slow body kept");
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 408") && text.contains("request_timeout"),
            "{text}"
        );
    }
    for s in &mut silent {
        assert!(tcp_closed_within(s, Duration::from_secs(10)));
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1800),
        "dropped after {waited:?}, before the 2s timeouts"
    );

    // Slots are free again: a client is served.
    let mut ok = tls_to(&sb, port);
    ok.write_all(b"GET /v1/roots HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let got = tls_closed_within(&mut ok, Duration::from_secs(10)).expect("no answer");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    let log = serve.log_text();
    assert!(
        log.matches("reason=\"max_connections\"").count() >= 21,
        "{log}"
    );
    assert!(
        log.matches("reason=\"handshake_timeout\"").count() >= 10,
        "{log}"
    );
    assert!(
        log.matches("reason=\"request_timeout\"").count() >= 5,
        "{log}"
    );
}

#[test]
fn a_gateway_drops_clients_that_trickle_their_headers_and_then_serves_others() {
    let sb = Sandbox::new();
    pki(&sb);
    let backend = HttpBackend::start();
    let port = free_port();
    // Permissive: anyone may finish a handshake, so only the header
    // timeout stands between a trickling client and a slot kept forever.
    let config = format!(
        r#"[server]
listen = "127.0.0.1:{port}"
cert = "gw.crt"
key = "gw.key"
client_ca = "ca/root.crt"
mode = "permissive"
header_timeout = "2s"
max_connections = 5

[upstream]
address = "{}"
protocol = "http"

[[policy.rule]]
name = "web"
effect = "allow"
spiffe_id = ["spiffe://example.org/ns/prod/sa/web"]
"#,
        backend.addr
    );
    let gw = Gateway::start(&sb, "gw.toml", &config, port);
    let started = Instant::now();
    let mut trickling: Vec<Tls> = (0..5)
        .map(|_| {
            let mut s = tls_to(&sb, port);
            s.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n")
                .unwrap();
            s
        })
        .collect();
    let r = handshakes(&sb, port, "1");
    assert_eq!(
        r["completed"], 0,
        "a client got in past max_connections: {r}"
    );
    gw.wait_log("server.max_connections (5) reached");

    for s in &mut trickling {
        tls_closed_within(s, Duration::from_secs(10)).expect("trickling client kept");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1800),
        "dropped after {waited:?}, before the 2s header timeout"
    );
    let served = handshakes(&sb, port, "5");
    assert_eq!(served["completed"], 5, "{served}\n{}", gw.log_text());
    assert_eq!(backend.bytes(), 0, "a partial request reached the backend");
}
