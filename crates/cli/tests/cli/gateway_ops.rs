//! `symbolon gateway` in operation: hot reload under load, broken reloads
//! and SIGHUP, TCP mode with PROXY protocol v2 and policy, client mode
//! (against the gateway itself and against nginx), and re-verification of
//! resumed TLS sessions. The peers are real, independent TLS stacks —
//! Python's `ssl`, `openssl s_client`, curl, nginx — never our own rustls.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::gw_support::{Gateway, HttpBackend, TcpBackend, free_port, pki, server_config};
use crate::support::{Sandbox, tool};

const WEB_ID: &str = "spiffe://example.org/ns/prod/sa/web";

/// Only the web workload may connect.
const ALLOW_WEB: &str = r#"[[policy.rule]]
name = "web-only"
effect = "allow"
spiffe_id = ["spiffe://example.org/ns/prod/sa/web"]
"#;

/// The log line of a successful reload (state.rs).
const RELOADED: &str = "reloaded certificate, trust bundle and policy";

// --- helpers ---------------------------------------------------------------

/// Replaces a file the way deployment tools do (write a temp file in the
/// same directory, then rename over), so the gateway never reads a torn
/// file and any refusal we see is about the content, not the write.
fn replace_file(dst: &Path, contents: &[u8]) {
    let tmp = dst.with_extension("swap-tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, dst).unwrap();
}

fn read(sb: &Sandbox, rel: &str) -> Vec<u8> {
    std::fs::read(sb.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Waits until `needle` occurs at least `n` times in the gateway's log
/// (`wait_log` only knows "at least once"; reloads repeat the same line).
fn wait_log_count(gw: &Gateway, needle: &str, n: usize, within: Duration) -> String {
    let started = Instant::now();
    loop {
        let text = gw.log_text();
        if text.matches(needle).count() >= n {
            return text;
        }
        assert!(
            started.elapsed() < within,
            "log never contained {needle:?} {n} time(s):\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `probe` until it returns `Some`, or fails with `what`.
fn eventually<T>(what: &str, within: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(started.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GETs the Prometheus text from the metrics listener.
fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "metrics answered:\n{out}");
    out
}

/// The value of one series (`name{labels}` exactly as rendered); 0 when the
/// series does not exist yet, as Prometheus would treat it.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// A child process whose stdout and stderr go to files in the sandbox (so
/// progress lines can be read while it runs), killed on drop.
struct Proc {
    child: Child,
    out: PathBuf,
    name: String,
}

impl Proc {
    fn spawn(sb: &Sandbox, name: &str, cmd: &mut Command) -> Proc {
        let out = sb.path(&format!("{name}.out"));
        let child = cmd
            .current_dir(sb.dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(sb.path(&format!("{name}.err"))).unwrap())
            .spawn()
            .unwrap();
        Proc {
            child,
            out,
            name: name.to_string(),
        }
    }

    fn output(&self) -> String {
        let err = self.out.with_extension("err");
        format!(
            "{}{}",
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn wait_output(&mut self, needle: &str, within: Duration) {
        let started = Instant::now();
        while !self.output().contains(needle) {
            assert!(
                self.running(),
                "{} exited before printing {needle:?}:\n{}",
                self.name,
                self.output()
            );
            assert!(
                started.elapsed() < within,
                "{} never printed {needle:?}:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the exit (killing it after `within`): (exit code, output).
    fn finish(&mut self, within: Duration) -> (i32, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), self.output());
            }
            if started.elapsed() > within {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not finish within {within:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_bounded(sb: &Sandbox, name: &str, cmd: &mut Command, within: Duration) -> (i32, String) {
    Proc::spawn(sb, name, cmd).finish(within)
}

/// Python helpers shared by the scripts: a client context that verifies the
/// gateway (CA + hostname) and presents a client certificate.
const PY_COMMON: &str = r#"
import json, os, random, socket, ssl, sys, time

def context(cert, key, ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    return ctx

def connect(ctx, port, session=None):
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="localhost", session=session)
"#;

/// One connection streaming a deterministic pattern while reading the echo
/// back, until `stop` exists (and at least 2 MB went through). In-flight
/// data is bounded so neither side can deadlock on full buffers.
const PY_STREAM: &str = r#"
port, cert, key, ca, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
PERIOD = 65521  # prime, so chunks never line up with the pattern
BASE = random.Random(20240601).randbytes(PERIOD) * 2
def pattern(off, n):
    s = off % PERIOD
    return BASE[s:s + n]
CHUNK, WINDOW, MIN = 8192, 65536, 2 * 1024 * 1024
s = connect(context(cert, key, ca), port)
s.settimeout(10)
sent = received = 0
def drain(target):
    global received
    while received < target:
        data = s.recv(16384)
        if not data:
            sys.exit(f"FAIL: connection closed after {received} echoed bytes (sent {sent})")
        if data != pattern(received, len(data)):
            sys.exit(f"FAIL: echoed bytes differ at offset {received}")
        received += len(data)
chunk = pattern(0, CHUNK)
s.sendall(chunk)
sent += CHUNK
drain(sent)
print("READY", flush=True)
deadline = time.monotonic() + 20
while not (sent >= MIN and os.path.exists(stop)):
    if time.monotonic() > deadline:
        sys.exit(f"FAIL: no stop signal within 20 s (sent {sent})")
    s.sendall(pattern(sent, CHUNK))
    sent += CHUNK
    drain(sent - WINDOW)
    time.sleep(0.01)
drain(sent)
s.close()
print(f"OK sent={sent} received={received}", flush=True)
"#;

/// One connection: print our source port, send a payload, read until the
/// echo ends with it, EOF, error or 3 s; print what came back.
const PY_SEND: &str = r#"
port, cert, key, ca, payload = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].encode()
s = connect(context(cert, key, ca), port)
print(json.dumps({"port": s.getsockname()[1]}), flush=True)
s.settimeout(3)
got, end = b"", "echoed"
try:
    s.sendall(payload)
    while not got.endswith(payload):
        d = s.recv(65536)
        if not d:
            end = "eof"
            break
        got += d
except socket.timeout:
    end = "timeout"
except (ssl.SSLError, OSError) as e:
    end = f"error: {e!r}"
print(json.dumps({"received": got.hex(), "end": end}), flush=True)
"#;

/// HTTP GETs with session resumption: a full handshake, a resumed control
/// request, then (after `go` appears) a resumed request with the session
/// saved from the control. Sessions are saved only after reading a full
/// response: TLS 1.3 tickets arrive after the handshake.
const PY_RESUME: &str = r#"
port, cert, key, ca, go = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = context(cert, key, ca)
def get(step, path, session=None):
    try:
        s = connect(ctx, port, session)
    except (ssl.SSLError, OSError) as e:
        print(json.dumps({"step": step, "handshake": f"error: {e!r}"}), flush=True)
        return None
    reused = s.session_reused
    s.settimeout(5)
    data, end = b"", "eof"
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except (ssl.SSLError, OSError) as e:
        end = f"error: {e!r}"
    sess = s.session
    s.close()
    status = data.split(b" ")[1].decode() if data.startswith(b"HTTP/") else "none"
    print(json.dumps({"step": step, "handshake": "ok", "reused": reused, "status": status, "end": end}), flush=True)
    return sess
first = get("first", "/first")
control = get("control", "/control", first)
print("READY", flush=True)
deadline = time.monotonic() + 15
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit("FAIL: no go signal within 15 s")
    time.sleep(0.05)
get("after", "/after", control)
"#;

fn python_script(sb: &Sandbox, name: &str, body: &str) -> String {
    let file = format!("{name}.py");
    std::fs::write(sb.path(&file), format!("{PY_COMMON}{body}")).unwrap();
    file
}

/// The JSON object on the first output line that has `key`.
fn json_line(out: &str, key: &str) -> serde_json::Value {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get(key).is_some())
        .unwrap_or_else(|| panic!("no JSON line with {key:?} in:\n{out}"))
}

/// Python sends `payload` over one mTLS connection: (client source port,
/// bytes that came back, how the read ended).
fn py_send(
    sb: &Sandbox,
    py: &Path,
    port: u16,
    client: &str,
    payload: &str,
) -> (u16, Vec<u8>, String) {
    let script = python_script(sb, "send", PY_SEND);
    let (cert, key) = (format!("{client}.crt"), format!("{client}.key"));
    let (code, out) = run_bounded(
        sb,
        "send",
        Command::new(py).args([
            "-u",
            &script,
            &port.to_string(),
            &cert,
            &key,
            "trust-anchor.crt",
            payload,
        ]),
        Duration::from_secs(15),
    );
    assert_eq!(code, 0, "python client failed:\n{out}");
    let port = json_line(&out, "port")["port"].as_u64().unwrap() as u16;
    let res = json_line(&out, "received");
    let hex = res["received"].as_str().unwrap();
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    (port, bytes, res["end"].as_str().unwrap().to_string())
}

/// The serial of the certificate the gateway presents to a new handshake,
/// as `openssl s_client` receives it (uppercase hex, like `x509 -serial`).
fn served_serial(sb: &Sandbox, openssl: &Path, port: u16) -> Option<String> {
    let (_, out) = run_bounded(
        sb,
        "s_client",
        Command::new(openssl).args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
            "-cert",
            "web.crt",
            "-key",
            "web.key",
            "-CAfile",
            "trust-anchor.crt",
            "-verify_return_error",
        ]),
        Duration::from_secs(10),
    );
    let begin = out.find("-----BEGIN CERTIFICATE-----")?;
    let end = out[begin..].find("-----END CERTIFICATE-----")? + begin + 25;
    std::fs::write(sb.path("served.pem"), &out[begin..end]).unwrap();
    Some(file_serial(sb, openssl, "served.pem"))
}

/// The serial of the first certificate in a PEM file, per OpenSSL.
fn file_serial(sb: &Sandbox, openssl: &Path, rel: &str) -> String {
    let (code, out) =
        crate::support::run_tool(sb, openssl, &["x509", "-noout", "-serial", "-in", rel]);
    assert_eq!(code, 0, "{out}");
    out.trim().strip_prefix("serial=").unwrap().to_string()
}

/// The CA root the test clients trust, kept apart from `ca/root.crt`,
/// which several tests rewrite as the gateway's client_ca.
fn keep_trust_anchor(sb: &Sandbox) {
    std::fs::copy(sb.path("ca/root.crt"), sb.path("trust-anchor.crt")).unwrap();
}

/// A gateway's config with a [metrics] listener appended.
fn with_metrics(config: String, metrics_port: u16) -> String {
    format!("{config}\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n")
}

fn client_config(listen: u16, upstream: u16, identity: &str) -> String {
    format!(
        r#"[client]
listen = "127.0.0.1:{listen}"
cert = "web.crt"
key = "web.key"
trust = "ca/root.crt"
handshake_timeout = "3s"
{identity}

[upstream]
address = "127.0.0.1:{upstream}"
protocol = "tcp"
"#
    )
}

/// curl through a client-mode gateway (plain HTTP): (exit code, status
/// code or 000, body).
fn curl_plain(sb: &Sandbox, curl: &Path, port: u16, path: &str) -> (i32, String, String) {
    let (code, out) = run_bounded(
        sb,
        "curl",
        Command::new(curl).args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "curl-body.txt",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{port}{path}"),
        ]),
        Duration::from_secs(15),
    );
    let body = std::fs::read_to_string(sb.path("curl-body.txt")).unwrap_or_default();
    let _ = std::fs::remove_file(sb.path("curl-body.txt"));
    (code, out, body)
}

fn spki_pin(sb: &Sandbox, cert: &str) -> String {
    let j = sb.ok(&["cert", "inspect", cert, "--json"]).json();
    j[0]["spki_sha256"].as_str().unwrap().to_string()
}

// --- 1. reload under load ----------------------------------------------------

/// Five rotations of certificate, key and client CA bundle while one
/// connection streams megabytes: the stream never notices, new handshakes
/// get the new certificate, and the reloads are logged and counted.
#[test]
fn reload_under_load_keeps_open_connections_and_serves_new_certificate() {
    let (Some(py), Some(openssl)) = (tool("python3"), tool("openssl")) else {
        return;
    };
    let sb = Sandbox::new();
    pki(&sb);
    keep_trust_anchor(&sb);
    // Issued before the stream starts so each rotation is a quick copy.
    for i in 1..=5 {
        sb.ok(&[
            "ca",
            "issue",
            "--dir",
            "ca",
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
            "--spiffe-id",
            "spiffe://example.org/gateway",
            "--profile",
            "server",
            "--out",
            &format!("gw-new{i}"),
        ]);
    }
    let root = read(&sb, "ca/root.crt");
    let bundle = read(&sb, "ca/ca-bundle.pem");
    assert_ne!(root, bundle);

    let backend = TcpBackend::start();
    let (port, mport) = (free_port(), free_port());
    let cfg = with_metrics(
        server_config(port, backend.addr, "strict", "tcp", ALLOW_WEB),
        mport,
    );
    let gw = Gateway::start(&sb, "gw.toml", &cfg, port);
    let old_serial = file_serial(&sb, &openssl, "gw.crt");
    assert_eq!(
        served_serial(&sb, &openssl, port).as_deref(),
        Some(old_serial.as_str())
    );

    let script = python_script(&sb, "stream", PY_STREAM);
    let mut stream = Proc::spawn(
        &sb,
        "stream",
        Command::new(&py).args([
            "-u",
            &script,
            &port.to_string(),
            "web.crt",
            "web.key",
            "trust-anchor.crt",
            "stop",
        ]),
    );
    stream.wait_output("READY", Duration::from_secs(10));

    for i in 1..=5 {
        replace_file(&sb.path("gw.crt"), &read(&sb, &format!("gw-new{i}.crt")));
        replace_file(&sb.path("gw.key"), &read(&sb, &format!("gw-new{i}.key")));
        // Alternate between two valid bundles: root only, root+intermediate.
        let ca = if i % 2 == 1 { &bundle } else { &root };
        replace_file(&sb.path("ca/root.crt"), ca);
        std::thread::sleep(Duration::from_millis(400));
    }
    let new_serial = file_serial(&sb, &openssl, "gw-new5.crt");
    assert_ne!(new_serial, old_serial);
    eventually(
        "the rotated certificate on new handshakes",
        Duration::from_secs(10),
        || {
            (served_serial(&sb, &openssl, port).as_deref() == Some(new_serial.as_str()))
                .then_some(())
        },
    );
    // The reloads happened while the stream was still open, or the test
    // proves nothing about open connections.
    assert!(
        stream.running(),
        "the stream ended before the reloads were done:\n{}",
        stream.output()
    );

    std::fs::write(sb.path("stop"), b"").unwrap();
    let (code, out) = stream.finish(Duration::from_secs(20));
    assert_eq!(
        code,
        0,
        "streaming client saw a problem:\n{out}\n--- gateway\n{}",
        gw.log_text()
    );
    let sent: usize = out
        .split("sent=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in:\n{out}"));
    assert!(sent >= 2 * 1024 * 1024, "{out}");
    // Everything the client sent reached the backend (on one connection;
    // the s_client probes send no data).
    let received = backend.received.lock().unwrap().clone();
    assert_eq!(received.iter().filter(|r| !r.is_empty()).count(), 1);
    assert_eq!(backend.total_bytes(), sent);

    let log = gw.log_text();
    assert!(log.contains(RELOADED), "{log}");
    assert!(log.contains("trigger=\"file change\""), "{log}");
    let text = scrape(mport);
    let ok = metric(&text, "symbolon_gateway_reloads_total{result=\"ok\"}");
    assert!(ok >= 1.0, "{text}");
}

// --- 2. broken reload keeps serving, SIGHUP ---------------------------------

/// Garbage, then a certificate that does not match the key: both reloads
/// are refused, logged and counted, and new handshakes keep getting the old
/// certificate. Fixing the files recovers; SIGHUP reloads on demand.
#[test]
fn broken_reload_keeps_serving_old_certificate_and_sighup_reloads() {
    let (Some(py), Some(openssl)) = (tool("python3"), tool("openssl")) else {
        return;
    };
    let sb = Sandbox::new();
    pki(&sb);
    keep_trust_anchor(&sb);
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--spiffe-id",
        "spiffe://example.org/gateway",
        "--profile",
        "server",
        "--out",
        "gw-new",
    ]);
    let backend = TcpBackend::start();
    let (port, mport) = (free_port(), free_port());
    let cfg = with_metrics(
        server_config(port, backend.addr, "strict", "tcp", ALLOW_WEB),
        mport,
    );
    let gw = Gateway::start(&sb, "gw.toml", &cfg, port);
    let old_serial = file_serial(&sb, &openssl, "gw.crt");
    let works = |expected: &str| {
        assert_eq!(
            served_serial(&sb, &openssl, port).as_deref(),
            Some(expected)
        );
        let (_, got, end) = py_send(&sb, &py, port, "web", "ping");
        assert_eq!(got, b"ping", "echo ended with {end}\n{}", gw.log_text());
    };
    works(&old_serial);

    // Garbage certificate.
    replace_file(&sb.path("gw.crt"), b"this is not a certificate\n");
    let log = wait_log_count(&gw, "reload refused", 1, Duration::from_secs(10));
    assert!(log.contains("gw.crt"), "the refusal names the file:\n{log}");
    works(&old_serial);

    // A valid certificate that is not for gw.key.
    replace_file(&sb.path("gw.crt"), &read(&sb, "gw-new.crt"));
    let log = wait_log_count(&gw, "reload refused", 2, Duration::from_secs(10));
    assert!(log.contains("does not belong"), "{log}");
    works(&old_serial);
    let text = scrape(mport);
    assert!(
        metric(&text, "symbolon_gateway_reloads_total{result=\"error\"}") >= 2.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "symbolon_gateway_reloads_total{result=\"ok\"}"),
        0.0,
        "{text}"
    );

    // The matching key arrives: the pair loads and is served.
    replace_file(&sb.path("gw.key"), &read(&sb, "gw-new.key"));
    wait_log_count(&gw, RELOADED, 1, Duration::from_secs(10));
    let new_serial = file_serial(&sb, &openssl, "gw-new.crt");
    assert_ne!(new_serial, old_serial);
    works(&new_serial);

    // Nothing changed on disk: only the signal can trigger this reload.
    let hup = Command::new("kill")
        .args(["-HUP", &gw.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let log = wait_log_count(&gw, RELOADED, 2, Duration::from_secs(10));
    let line = log.lines().filter(|l| l.contains(RELOADED)).nth(1).unwrap();
    assert!(line.contains("trigger=\"SIGHUP\""), "{line}");
    works(&new_serial);
    let text = scrape(mport);
    assert_eq!(
        metric(&text, "symbolon_gateway_reloads_total{result=\"ok\"}"),
        2.0,
        "{text}"
    );
}

// --- 3. PROXY protocol v2 -----------------------------------------------------

/// A parsed PROXY v2 header (TCP over IPv4) and what followed it.
#[derive(Debug)]
struct ProxyV2 {
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    tlvs: Vec<(u8, Vec<u8>)>,
    rest: Vec<u8>,
}

fn parse_tlvs(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 3, "truncated TLV: {b:?}");
        let len = u16::from_be_bytes([b[1], b[2]]) as usize;
        assert!(
            b.len() >= 3 + len,
            "TLV length {len} beyond the header: {b:?}"
        );
        out.push((b[0], b[3..3 + len].to_vec()));
        b = &b[3 + len..];
    }
    out
}

fn parse_proxy_v2(b: &[u8]) -> ProxyV2 {
    assert!(b.len() >= 16, "too short for a PROXY v2 header: {b:?}");
    assert_eq!(&b[..12], b"\r\n\r\n\0\r\nQUIT\n", "signature");
    assert_eq!(b[12], 0x21, "version 2, PROXY command");
    assert_eq!(b[13], 0x11, "AF_INET, STREAM");
    let len = u16::from_be_bytes([b[14], b[15]]) as usize;
    assert!(
        b.len() >= 16 + len,
        "header length {len} beyond the data received"
    );
    assert!(len >= 12, "no room for IPv4 addresses");
    let h = &b[16..16 + len];
    ProxyV2 {
        src: (
            h[0..4].try_into().unwrap(),
            u16::from_be_bytes([h[8], h[9]]),
        ),
        dst: (
            h[4..8].try_into().unwrap(),
            u16::from_be_bytes([h[10], h[11]]),
        ),
        tlvs: parse_tlvs(&h[12..]),
        rest: b[16 + len..].to_vec(),
    }
}

/// Waits until the backend's first connection has at least `n` bytes.
fn first_connection(backend: &TcpBackend, n: usize) -> Vec<u8> {
    eventually("bytes at the backend", Duration::from_secs(5), || {
        let r = backend.received.lock().unwrap();
        r.first().filter(|c| c.len() >= n).cloned()
    })
}

#[test]
fn tcp_mode_sends_proxy_v2_header_with_identity_then_the_payload() {
    let Some(py) = tool("python3") else {
        return;
    };
    let sb = Sandbox::new();
    pki(&sb);
    keep_trust_anchor(&sb);
    let backend = TcpBackend::start();
    let port = free_port();
    let cfg = server_config(port, backend.addr, "strict", "tcp", ALLOW_WEB).replace(
        "protocol = \"tcp\"",
        "protocol = \"tcp\"\nproxy_protocol = true",
    );
    let gw = Gateway::start(&sb, "gw.toml", &cfg, port);

    let (client_port, echoed, end) = py_send(&sb, &py, port, "web", "hello");
    assert!(
        echoed.ends_with(b"hello"),
        "echo ended with {end}\n{}",
        gw.log_text()
    );
    // Gateway::start's readiness probe never completes a handshake, so the
    // only connection that reached the backend is the client's.
    let received = backend.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:?}");
    let pp = parse_proxy_v2(&received[0]);
    assert_eq!(pp.src, ([127, 0, 0, 1], client_port));
    assert_eq!(pp.dst, ([127, 0, 0, 1], port));
    assert_eq!(pp.rest, b"hello", "exactly the payload after the header");
    // The client saw its echo: header and all, because the backend echoes.
    assert_eq!(echoed, received[0]);

    let ssl = pp
        .tlvs
        .iter()
        .find(|(t, _)| *t == 0x20)
        .map(|(_, v)| v.clone());
    let ssl = ssl.unwrap_or_else(|| panic!("no PP2_TYPE_SSL TLV: {:?}", pp.tlvs));
    assert!(ssl.len() >= 5);
    assert_eq!(ssl[0] & 0x07, 0x07, "PP2_CLIENT_SSL|CERT_CONN|CERT_SESS");
    assert_eq!(&ssl[1..5], &[0, 0, 0, 0], "verify = 0 (verified)");
    let subs = parse_tlvs(&ssl[5..]);
    let version = subs
        .iter()
        .find(|(t, _)| *t == 0x21)
        .map(|(_, v)| v.as_slice());
    assert_eq!(version, Some(&b"TLSv1.3"[..]), "{subs:?}");

    let id = pp
        .tlvs
        .iter()
        .find(|(t, _)| *t == 0xE0)
        .map(|(_, v)| v.clone());
    let id = String::from_utf8(id.unwrap_or_else(|| panic!("no 0xE0 TLV: {:?}", pp.tlvs))).unwrap();
    assert!(id.contains(&format!("URI={WEB_ID}")), "{id}");
    assert!(id.contains("By=spiffe://example.org/gateway"), "{id}");
    let fp = sb.ok(&["cert", "inspect", "web.crt", "--json"]).json()[0]["sha256_fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(id.contains(&format!("Hash={fp}")), "{id}");
}

#[test]
fn tcp_mode_without_proxy_protocol_forwards_exactly_the_payload() {
    let Some(py) = tool("python3") else {
        return;
    };
    let sb = Sandbox::new();
    pki(&sb);
    keep_trust_anchor(&sb);
    let backend = TcpBackend::start();
    let port = free_port();
    let gw = Gateway::start(
        &sb,
        "gw.toml",
        &server_config(port, backend.addr, "strict", "tcp", ALLOW_WEB),
        port,
    );
    let (_, echoed, end) = py_send(&sb, &py, port, "web", "hello");
    assert_eq!(echoed, b"hello", "echo ended with {end}\n{}", gw.log_text());
    assert_eq!(first_connection(&backend, 5), b"hello");
    assert_eq!(backend.total_bytes(), 5);
}

// --- 4. TCP mode policy --------------------------------------------------------

#[test]
fn tcp_mode_denied_identity_never_reaches_the_backend() {
    let Some(py) = tool("python3") else {
        return;
    };
    let sb = Sandbox::new();
    pki(&sb);
    keep_trust_anchor(&sb);
    let backend = TcpBackend::start();
    let port = free_port();
    let gw = Gateway::start(
        &sb,
        "gw.toml",
        &server_config(port, backend.addr, "strict", "tcp", ALLOW_WEB),
        port,
    );

    let (_, echoed, end) = py_send(&sb, &py, port, "other", "hello");
    assert!(
        echoed.is_empty(),
        "a denied client got data back: {echoed:?}"
    );
    assert!(
        end == "eof" || end.starts_with("error"),
        "the connection was not closed: {end}"
    );
    let log = gw.wait_log("connection denied");
    assert!(log.contains("reason=\"policy_denied\""), "{log}");
    assert_eq!(
        backend.received.lock().unwrap().len(),
        0,
        "the gateway connected upstream"
    );

    // Control: the same gateway forwards the allowed identity, so the
    // denial above is the policy's doing.
    let (_, echoed, end) = py_send(&sb, &py, port, "web", "hello");
    assert_eq!(echoed, b"hello", "{end}");
    assert_eq!(backend.received.lock().unwrap().len(), 1);
}

// --- 5. client mode against the gateway ------------------------------------

/// Gateway A (server mode, HTTP) in front of an HTTP backend, and gateway B
/// (client mode) in front of A with the given identity settings.
struct ClientChain {
    backend: HttpBackend,
    _a: Gateway,
    b: Gateway,
}

fn client_chain(sb: &Sandbox, identity: &str) -> ClientChain {
    let backend = HttpBackend::start();
    let (pa, pb) = (free_port(), free_port());
    let a = Gateway::start(
        sb,
        "a.toml",
        &server_config(pa, backend.addr, "strict", "http", ALLOW_WEB),
        pa,
    );
    let b = Gateway::start(sb, "b.toml", &client_config(pb, pa, identity), pb);
    ClientChain { backend, _a: a, b }
}

#[test]
fn client_mode_originates_mtls_and_checks_the_server_identity() {
    let Some(curl) = tool("curl") else {
        return;
    };
    let sb = Sandbox::new();
    pki(&sb);

    let chain = client_chain(&sb, "server_spiffe_id = \"spiffe://example.org/gateway\"");
    let (code, status, body) = curl_plain(&sb, &curl, chain.b.port, "/x");
    assert_eq!(
        (code, status.as_str()),
        (0, "200"),
        "{body}\n{}",
        chain.b.log_text()
    );
    assert!(body.contains("\"path\":\"/x\""), "{body}");
    let seen = chain.backend.requests();
    assert_eq!(seen.len(), 1);
    let xfcc = seen[0]
        .headers
        .get("x-forwarded-client-cert")
        .cloned()
        .unwrap_or_default();
    assert!(xfcc.contains(&format!("URI={WEB_ID}")), "{xfcc:?}");
    drop(chain);

    let chain = client_chain(
        &sb,
        "server_spiffe_id = \"spiffe://example.org/not-the-gateway\"",
    );
    let (code, status, _) = curl_plain(&sb, &curl, chain.b.port, "/x");
    assert_ne!(
        code, 0,
        "curl succeeded through a gateway with the wrong identity ({status})"
    );
    assert_ne!(status, "200");
    // The verifier's line names the reason; the per-connection line says
    // "malformed" (see the ignored test below).
    let log = chain.b.wait_log("upstream handshake refused");
    assert!(log.contains("name_mismatch"), "{log}");
    assert_eq!(chain.backend.bytes(), 0);
    drop(chain);

    let pin = spki_pin(&sb, "gw.crt");
    let chain = client_chain(&sb, &format!("server_spki_sha256 = \"{pin}\""));
    let (code, status, body) = curl_plain(&sb, &curl, chain.b.port, "/pinned");
    assert_eq!(
        (code, status.as_str()),
        (0, "200"),
        "{body}\n{}",
        chain.b.log_text()
    );
    assert_eq!(chain.backend.requests().len(), 1);
    drop(chain);

    // The pin of another key (a well-formed base64 SHA-256).
    let wrong = spki_pin(&sb, "other.crt");
    assert_ne!(wrong, pin);
    let chain = client_chain(&sb, &format!("server_spki_sha256 = \"{wrong}\""));
    let (code, status, _) = curl_plain(&sb, &curl, chain.b.port, "/x");
    assert_ne!(code, 0, "curl succeeded despite a wrong pin ({status})");
    chain.b.wait_log("reason=\"name_mismatch\"");
    assert_eq!(chain.backend.bytes(), 0);
}

// --- 6. client mode against nginx, and its config validation ---------------

/// nginx, found on PATH or at /usr/sbin/nginx (Debian does not put /usr/sbin
/// on a user's PATH); otherwise `tool`'s skip/fail semantics.
fn nginx() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nginx"))
            .find(|p| p.is_file())
    });
    let sbin = Path::new("/usr/sbin/nginx");
    on_path
        .or_else(|| sbin.is_file().then(|| sbin.to_path_buf()))
        .or_else(|| tool("nginx"))
}

/// nginx as a foreground child with everything (pid, logs, temp files)
/// inside the sandbox; killed on drop. `master_process off` keeps it one
/// process: run as root, a master would hand requests to workers running as
/// `nobody`, which cannot enter the 0700 sandbox; and killing the child
/// then kills all of nginx.
struct Nginx {
    proc: Proc,
    port: u16,
}

impl Nginx {
    fn start(sb: &Sandbox, bin: &Path) -> Nginx {
        let port = free_port();
        let dir = sb.path("nginx");
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let d = dir.display();
        let root = sb.dir.path().display();
        let conf = format!(
            r#"worker_processes 1;
master_process off;
pid {d}/nginx.pid;
error_log {d}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/logs/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {root}/gw.crt;
        ssl_certificate_key {root}/gw.key;
        ssl_client_certificate {root}/ca/ca-bundle.pem;
        ssl_verify_client on;
        ssl_verify_depth 2;
        location / {{
            return 200 "$ssl_client_serial|$ssl_client_verify\n";
        }}
    }}
}}
"#
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let dir_s = dir.to_str().unwrap().to_string();
        let proc = Proc::spawn(
            sb,
            "nginx",
            Command::new(bin).args([
                "-p",
                &dir_s,
                "-e",
                &format!("{dir_s}/logs/startup.log"),
                "-c",
                &format!("{dir_s}/nginx.conf"),
                "-g",
                "daemon off;",
            ]),
        );
        let mut n = Nginx { proc, port };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let logs = std::fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default();
            assert!(
                n.proc.running(),
                "nginx exited:\n{}\n{logs}",
                n.proc.output()
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx did not start:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }
}

#[test]
fn client_mode_talks_to_nginx_with_ssl_verify_client() {
    let (Some(curl), Some(openssl), Some(nginx_bin)) = (tool("curl"), tool("openssl"), nginx())
    else {
        return;
    };
    let sb = Sandbox::new();
    pki(&sb);
    let nginx = Nginx::start(&sb, &nginx_bin);
    let pb = free_port();
    let b = Gateway::start(
        &sb,
        "b.toml",
        &client_config(
            pb,
            nginx.port,
            "server_spiffe_id = \"spiffe://example.org/gateway\"",
        ),
        pb,
    );
    let (code, status, body) = curl_plain(&sb, &curl, pb, "/");
    assert_eq!(
        (code, status.as_str()),
        (0, "200"),
        "{body}\n{}",
        b.log_text()
    );
    let (serial, verify) = body
        .trim()
        .split_once('|')
        .unwrap_or_else(|| panic!("{body:?}"));
    assert_eq!(verify, "SUCCESS", "{body}");
    // nginx saw the client certificate the gateway was configured with.
    assert_eq!(
        serial.to_ascii_uppercase(),
        file_serial(&sb, &openssl, "web.crt")
    );
}

#[test]
fn client_mode_config_is_validated_before_listening() {
    let sb = Sandbox::new();
    pki(&sb);
    let port = free_port();
    let run = |name: &str, cfg: &str| {
        std::fs::write(sb.path(name), cfg).unwrap();
        run_bounded(
            &sb,
            name,
            sb.cmd(&["gateway", "--config", name])
                .env_remove("SYMBOLON_GATEWAY_CONFIG"),
            Duration::from_secs(10),
        )
    };
    let good = client_config(
        port,
        1,
        "server_spiffe_id = \"spiffe://example.org/gateway\"",
    );

    let open = good.replace(&format!("127.0.0.1:{port}"), &format!("0.0.0.0:{port}"));
    let (code, out) = run("open.toml", &open);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("open.toml") && out.contains("client.listen"),
        "{out}"
    );
    assert!(out.contains("loopback"), "{out}");

    let anonymous = good.replace("server_spiffe_id = \"spiffe://example.org/gateway\"", "");
    let (code, out) = run("anonymous.toml", &anonymous);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("server_spiffe_id") && out.contains("server_spki_sha256"),
        "{out}"
    );

    // Control: the same file with a loopback listener and an identity passes.
    std::fs::write(sb.path("good.toml"), &good).unwrap();
    let (code, out) = run_bounded(
        &sb,
        "good",
        &mut sb.cmd(&["gateway", "--config", "good.toml", "--check"]),
        Duration::from_secs(10),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("client mode"), "{out}");
}

// --- 7. resumption re-authorization -----------------------------------------

#[test]
fn resumed_session_is_refused_after_the_client_ca_changes() {
    let Some(py) = tool("python3") else {
        return;
    };
    let sb = Sandbox::new();
    pki(&sb);
    keep_trust_anchor(&sb);
    // An unrelated CA with the same names as ours (`ca init` names every
    // CA "Symbolon Root CA" by default): the harder case for the verifier,
    // which must still call it an unknown CA, not a bad signature.
    sb.init_plain_ca("ca2", &[]);
    let backend = HttpBackend::start();
    let port = free_port();
    let gw = Gateway::start(
        &sb,
        "gw.toml",
        &server_config(port, backend.addr, "strict", "http", ALLOW_WEB),
        port,
    );

    let script = python_script(&sb, "resume", PY_RESUME);
    let mut client = Proc::spawn(
        &sb,
        "resume",
        Command::new(&py).args([
            "-u",
            &script,
            &port.to_string(),
            "web.crt",
            "web.key",
            "trust-anchor.crt",
            "go",
        ]),
    );
    client.wait_output("READY", Duration::from_secs(15));
    let out = client.output();
    let first = client_step(&out, "first");
    assert_eq!(first["status"], "200", "{out}");
    assert_eq!(first["reused"], false, "{out}");
    // Control: resumption works while the trust bundle is unchanged, so the
    // refusal below is the re-verification, not a failed resumption.
    let control = client_step(&out, "control");
    assert_eq!(control["reused"], true, "python could not resume:\n{out}");
    assert_eq!(control["status"], "200", "{out}");

    replace_file(&sb.path("ca/root.crt"), &read(&sb, "ca2/root.crt"));
    wait_log_count(&gw, RELOADED, 1, Duration::from_secs(10));
    std::fs::write(sb.path("go"), b"").unwrap();
    let (code, out) = client.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{out}");
    let after = client_step(&out, "after");
    assert_eq!(after["handshake"], "ok", "{out}");
    assert_eq!(
        after["reused"], true,
        "the last request did not resume, so it tests nothing:\n{out}"
    );
    assert_ne!(
        after["status"], "200",
        "a resumed session bypassed the new trust bundle:\n{out}"
    );
    let log = gw.wait_log("resumed session no longer valid");
    let line = log
        .lines()
        .find(|l| l.contains("resumed session no longer valid"))
        .unwrap();
    assert!(line.contains("reason=\"unknown_ca\""), "{line}");
    let paths: Vec<String> = backend.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/first", "/control"]);
}

fn client_step(out: &str, name: &str) -> serde_json::Value {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["step"] == name)
        .unwrap_or_else(|| panic!("no step {name:?} in:\n{out}"))
}

/// A trust bundle holding a different root with the same names as the
/// client's real root (two `ca init`s without --name): the leaf →
/// intermediate link is intact, the intermediate → root link is not, so the
/// verdict is unknown_ca (as OpenSSL says), never a bad signature on the
/// leaf. The gateway logs this same verdict, e.g. for the resumed session
/// in `resumed_session_is_refused_after_the_client_ca_changes`.
#[test]
fn foreign_root_with_the_same_name_is_unknown_ca() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    pki(&sb);
    sb.init_plain_ca("ca2", &[]);
    // The independent checker: leaf → intermediate verifies, and the
    // foreign root is not accepted as the intermediate's issuer.
    let (code, out) = crate::support::run_tool(
        &sb,
        &openssl,
        &[
            "verify",
            "-CAfile",
            "ca/root.crt",
            "-untrusted",
            "web.crt",
            "web.crt",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = crate::support::run_tool(
        &sb,
        &openssl,
        &[
            "verify",
            "-CAfile",
            "ca2/root.crt",
            "-untrusted",
            "web.crt",
            "web.crt",
        ],
    );
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("unable to get local issuer certificate"),
        "{out}"
    );

    let r = sb.run(&[
        "cert",
        "verify",
        "web.crt",
        "--trust",
        "ca2/root.crt",
        "--purpose",
        "client",
    ]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stdout.starts_with("unknown_ca:"), "{}", r.all());
    assert!(
        !r.all().contains("the signature on leaf"),
        "the leaf's signature is valid:\n{}",
        r.all()
    );
}

// --- product bugs, demonstrated ---------------------------------------------

/// Client mode refuses an upstream whose SPIFFE ID is wrong (covered
/// above), but the per-connection log line and the handshake metric call
/// it "malformed": `symbolon_tls::certificate_error` has no arm for
/// `Reason::NameMismatch`, so it becomes `BadEncoding`, which `reason_for`
/// maps back to `Malformed`. (An SPKI pin mismatch is reported correctly:
/// that path returns `NotValidForName` directly.)
#[test]

fn client_mode_reports_name_mismatch_as_name_mismatch() {
    let Some(curl) = tool("curl") else {
        return;
    };
    let sb = Sandbox::new();
    pki(&sb);
    let backend = HttpBackend::start();
    let (pa, pb, mport) = (free_port(), free_port(), free_port());
    let _a = Gateway::start(
        &sb,
        "a.toml",
        &server_config(pa, backend.addr, "strict", "http", ALLOW_WEB),
        pa,
    );
    let identity = "server_spiffe_id = \"spiffe://example.org/not-the-gateway\"";
    let b = Gateway::start(
        &sb,
        "b.toml",
        &with_metrics(client_config(pb, pa, identity), mport),
        pb,
    );
    let (code, _, _) = curl_plain(&sb, &curl, pb, "/x");
    assert_ne!(code, 0);
    let log = b.wait_log("upstream handshake refused");
    let line = log
        .lines()
        .find(|l| l.contains("upstream handshake refused"))
        .unwrap();
    assert!(line.contains("reason=\"name_mismatch\""), "{line}");
    let text = scrape(mport);
    let series = |reason: &str| {
        format!("symbolon_gateway_handshakes_total{{result=\"error\",reason=\"{reason}\"}}")
    };
    assert!(metric(&text, &series("name_mismatch")) >= 1.0, "{text}");
    assert_eq!(metric(&text, &series("malformed")), 0.0, "{text}");
}
