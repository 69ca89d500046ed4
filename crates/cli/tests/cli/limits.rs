//! Resource limits under a flood: connections that never finish their
//! handshake hold at most `max_connections` slots, the excess is refused
//! at once, the slow ones are dropped after `handshake_timeout`, memory
//! stays bounded, and a legitimate client is served once slots free up.

use std::net::TcpStream;

use serde_json::Value;

use crate::gw_support::{Gateway, HttpBackend, free_port, pki};
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
