//! Resource limits under a flood: connections that never finish their
//! handshake hold at most `max_connections` slots, a newcomer takes the
//! slot of the oldest one still in its handshake (so legitimate clients are
//! served during the flood), only established connections make a server
//! refuse newcomers, the slow ones are dropped after `handshake_timeout`,
//! and memory stays bounded. The gateway and `ca serve` alike; both also
//! drop clients that trickle their headers (the CA their body too).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::gw_support::{CaServe, Gateway, HttpBackend, client_config, free_port, pki};
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
fn a_flood_of_unfinished_handshakes_is_capped_and_clients_are_served_during_it() {
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
handshake_timeout = "5s"
max_connections = 100

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

    // 300 connections that never send a ClientHello: each one past the
    // 100th takes the slot of the oldest, which is closed at once.
    let mut flood: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let started = Instant::now();
    for (i, s) in flood.iter_mut().take(200).enumerate() {
        assert!(
            tcp_closed_within(s, Duration::from_millis(1500)),
            "flood connection {i} still open after {:?}:\n{}",
            started.elapsed(),
            gw.log_text()
        );
    }
    let held = rss_kib(gw.child.id());
    // The newest 100 still hold their slots, and yet a real client gets in.
    let r = handshakes(&sb, port, "5");
    assert_eq!(r["completed"], 5, "{r}\n{}", gw.log_text());
    assert!(
        started.elapsed() < Duration::from_millis(4500),
        "served only after {:?}: the flood's handshake timeout may have freed the slots",
        started.elapsed()
    );

    // A flood that does not stop: a second client keeps opening silent
    // connections while real clients connect one after another.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // 200 a second: a pending handshake keeps its slot until 100
            // newer ones arrive, about half a second, far longer than a
            // real handshake on loopback takes, even on a busy machine
            // that accepts the flood in bursts. What a client needs is
            // that fewer than max_connections newcomers arrive during its
            // handshake: the promise scales with max_connections.
            let mut opened = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && opened.len() < 2000 {
                if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                    opened.push(s);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            opened
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let during = handshakes(&sb, port, "10");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // Kept open: the newest of them are still in their handshake.
    let flooded = flooder.join().unwrap();
    assert_eq!(during["completed"], 10, "{during}\n{}", gw.log_text());
    // It was still going when the clients were done.
    assert!(
        (20..2000).contains(&flooded.len()),
        "the flood opened {} connections",
        flooded.len()
    );

    let log = gw.log_text();
    let evicted = log.matches("reason=\"evicted\"").count();
    assert!(evicted >= 200, "only {evicted} evicted:\n{log}");
    assert_eq!(
        log.matches("reason=\"max_connections\"").count(),
        0,
        "{log}"
    );
    // The last silent ones are dropped after handshake_timeout.
    gw.wait_log("reason=\"handshake_timeout\"");
    // Bounded memory: 300 connections cost the gateway at most 100 slots'
    // worth (generous: a debug build, allocator slack).
    assert!(
        held < idle + 32 * 1024,
        "RSS went from {idle} KiB to {held} KiB under the flood"
    );
    drop((flood, flooded));
    assert_eq!(backend.bytes(), 0);
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A finished TLS handshake with the CA or the gateway at `port` (as
/// `localhost`), without a client certificate, trusting `ca/root.crt`.
fn tls_to(sb: &Sandbox, port: u16) -> Tls {
    let conn =
        rustls::ClientConnection::new(client_config(sb, None), "localhost".try_into().unwrap())
            .unwrap();
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
        ("handshake_timeout = \"10s\"", "handshake_timeout = \"8s\""),
        ("header_timeout = \"30s\"", "header_timeout = \"5s\""),
        ("request_timeout = \"60s\"", "request_timeout = \"5s\""),
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
    // A TLS 1.3 client is done with its handshake before the server has
    // read the client's Finished; until the server has, the connection
    // counts as still in its handshake and could be evicted. Give the
    // server that moment (it needs microseconds).
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    // Thirty that never send a ClientHello: ten take the free slots, each
    // of the other twenty takes the slot of the oldest, which is closed.
    let mut silent: Vec<TcpStream> = (0..30)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    while serve.log_text().matches("reason=\"evicted\"").count() < 20 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            serve.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for (i, s) in silent.iter_mut().enumerate() {
        let evicted = i < 20;
        let within = Duration::from_millis(if evicted { 2000 } else { 40 });
        assert_eq!(
            tcp_closed_within(s, within),
            evicted,
            "silent connection {i} (the oldest 20 are evicted)"
        );
    }

    // While the flood holds the other slots, a real client is served.
    let get_roots = |s: &mut Tls| {
        s.write_all(b"GET /v1/roots HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let got = tls_closed_within(s, Duration::from_secs(10)).expect("no answer");
        String::from_utf8_lossy(&got).into_owned()
    };
    let text = get_roots(&mut tls_to(&sb, port));
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    // Ten idle clients finish their handshakes (and then send nothing) and
    // take the slots of the last silent ones: now every slot holds an
    // established connection.
    let idle: Vec<Tls> = (0..10).map(|_| tls_to(&sb, port)).collect();
    for (i, s) in silent.iter_mut().enumerate() {
        assert!(
            tcp_closed_within(s, Duration::from_millis(500)),
            "silent connection {i} kept against established ones"
        );
    }
    // As above: the server's side of the idle clients' handshakes.
    std::thread::sleep(Duration::from_millis(300));
    // Everything so far must happen before the slow clients' 5s timeouts
    // free their slots, or what follows proves nothing.
    assert!(
        started.elapsed() < Duration::from_millis(4000),
        "the machine is too slow for this check: {:?} to get here",
        started.elapsed()
    );
    // With no handshake left to evict, a newcomer takes the slot of the
    // connection idle longest: the first client that sent half its
    // headers (no request in flight yet), not one whose request is in
    // flight (its body still coming).
    let text = get_roots(&mut tls_to(&sb, port));
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        tls_closed_within(&mut slow_headers[0], Duration::from_millis(500)).is_some(),
        "the connection idle longest kept its slot"
    );
    for (i, s) in slow_bodies.iter_mut().enumerate() {
        assert!(
            tls_closed_within(s, Duration::from_millis(40)).is_none(),
            "slow body {i} was evicted with its request in flight"
        );
    }

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
    for mut s in idle {
        tls_closed_within(&mut s, Duration::from_secs(10)).expect("idle client kept");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(4500),
        "dropped after {waited:?}, before the 5s timeouts"
    );

    // Slots are free again: a client is served, and one that never sends
    // a ClientHello is dropped after handshake_timeout.
    let text = get_roots(&mut tls_to(&sb, port));
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let mut lone = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let opened = Instant::now();
    assert!(tcp_closed_within(&mut lone, Duration::from_secs(10)));
    assert!(
        opened.elapsed() >= Duration::from_millis(7500),
        "a lone silent connection was dropped after {:?}",
        opened.elapsed()
    );

    // The server closes a connection before it logs why: wait for the
    // last line.
    let waiting = Instant::now();
    while !serve.log_text().contains("reason=\"handshake_timeout\"") {
        assert!(
            waiting.elapsed() < Duration::from_secs(5),
            "{}",
            serve.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = serve.log_text();
    let count = |reason: &str| log.matches(&format!("reason=\"{reason}\"")).count();
    assert_eq!(count("evicted"), 31, "{log}");
    assert!(count("handshake_timeout") >= 1, "{log}");
    assert!(count("request_timeout") >= 5, "{log}");
    // The idle ones, dropped by header_timeout before HTTP/1 or HTTP/2
    // was even chosen.
    assert!(count("header_timeout") >= 10, "{log}");
}

#[test]
fn ca_serve_refuses_newcomers_only_when_every_slot_has_a_request_in_flight() {
    let sb = Sandbox::new();
    sb.init_plain_ca("ca", &[]);
    let path = sb.path("ca/ca.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    assert!(toml.contains("max_connections = 4096"), "{toml}");
    std::fs::write(
        &path,
        toml.replace("max_connections = 4096", "max_connections = 3"),
    )
    .unwrap();
    let serve = CaServe::start(&sb, "ca");
    let port = serve.port;
    // Three requests in flight: headers sent, a body of 100 bytes
    // announced and not sent.
    let _in_flight: Vec<Tls> = (0..3)
        .map(|_| {
            let mut s = tls_to(&sb, port);
            s.write_all(
                b"POST /v1/enroll HTTP/1.1\r\nHost: localhost\r\n\
                  content-type: application/json\r\ncontent-length: 100\r\n\r\n{",
            )
            .unwrap();
            s
        })
        .collect();
    // The server's side of those handshakes and requests (microseconds).
    std::thread::sleep(Duration::from_millis(300));
    let mut newcomer = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(
        tcp_closed_within(&mut newcomer, Duration::from_millis(500)),
        "a newcomer was kept although every slot has a request in flight"
    );
    let started = Instant::now();
    while !serve.log_text().contains("reason=\"max_connections\"") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}",
            serve.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !serve.log_text().contains("reason=\"evicted\""),
        "{}",
        serve.log_text()
    );
}

#[test]
fn a_gateway_drops_clients_that_trickle_their_headers_or_send_nothing_and_then_serves_others() {
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
max_connections = 6

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
    // Three send half their headers; one the start of the HTTP/2 preface;
    // one nothing at all after the handshake (so HTTP/1 or HTTP/2 is never
    // even chosen); one speaks HTTP/2 (preface and SETTINGS) and then sends
    // no request, which hyper's HTTP/2 server alone would allow forever.
    let mut trickling: Vec<Tls> = (0..6)
        .map(|i| {
            let mut s = tls_to(&sb, port);
            match i {
                0..3 => s
                    .write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n")
                    .unwrap(),
                3 => s.write_all(b"PRI * HTTP/2").unwrap(),
                4 => {
                    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
                    // An empty SETTINGS frame (RFC 9113 §6.5).
                    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
                }
                _ => {}
            }
            s
        })
        .collect();
    // A TLS 1.3 client is done with its handshake before the server has
    // read its Finished; until then the connection could still be evicted.
    // Give the server that moment (it needs microseconds).
    std::thread::sleep(Duration::from_millis(300));
    // None has a request in flight: a newcomer takes the slot of the one
    // idle longest (the first trickling client) instead of being refused.
    let r = handshakes(&sb, port, "1");
    assert_eq!(r["completed"], 1, "{r}\n{}", gw.log_text());
    gw.wait_log("idle when server.max_connections (6) was reached");
    assert!(
        tls_closed_within(&mut trickling[0], Duration::from_millis(500)).is_some(),
        "the connection idle longest kept its slot"
    );

    for s in &mut trickling {
        tls_closed_within(s, Duration::from_secs(10)).expect("trickling or silent client kept");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1800),
        "dropped after {waited:?}, before the 2s header timeout"
    );
    let served = handshakes(&sb, port, "5");
    assert_eq!(served["completed"], 5, "{served}\n{}", gw.log_text());
    let log = gw.log_text();
    assert_eq!(
        log.matches("no request within 2s of the handshake").count(),
        2,
        "{log}"
    );
    assert!(log.contains("no request for 2s"), "{log}");
    assert_eq!(backend.bytes(), 0, "a partial request reached the backend");
}
