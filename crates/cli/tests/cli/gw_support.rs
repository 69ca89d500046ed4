//! Gateway test fixtures: a CA with gateway and client certificates, a
//! backend that records exactly what reaches it, and the real gateway
//! binary run as a child process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::Sandbox;

/// A port free right now on 127.0.0.1, for a server a test starts later.
///
/// Not from `bind(0)`: that draws from the kernel's ephemeral range
/// (`ip_local_port_range`, 32768–60999 by default), where every outgoing connection of this busy test run
/// also gets its local port, so one could take the port between now and
/// the server's bind, and the test would then talk to itself. Ports here
/// come from below that range, each handed out once per process, from a
/// per-process offset so that two test processes rarely meet.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // The ephemeral range's first port (Linux's default when unreadable).
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let first = ephemeral.saturating_sub(12_000).max(1_024);
    let span = ephemeral.saturating_sub(first).max(1_000);
    let offset = (std::process::id() % 100) * 100;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < span, "no free port left below the ephemeral range");
        let port = (first + (offset + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A rustls client configuration trusting only `ca/root.crt`, presenting
/// `client` (certificate, PKCS#8 key) when given.
pub fn client_config(
    sb: &Sandbox,
    client: Option<(
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivatePkcs8KeyDer<'static>,
    )>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in symbolon_pki::input::load_certificates(&sb.path("ca/root.crt")).unwrap() {
        roots.add(c).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![cert], key.into())
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// One request as the backend saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Header names lower-cased; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
}

/// An HTTP/1.1 backend that answers 200 with a small JSON body and records
/// every request and every byte it receives.
pub struct HttpBackend {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub bytes: Arc<Mutex<usize>>,
}

impl HttpBackend {
    pub fn start() -> HttpBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let bytes = Arc::new(Mutex::new(0usize));
        let (s2, b2) = (seen.clone(), bytes.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (s3, b3) = (s2.clone(), b2.clone());
                std::thread::spawn(move || serve_http(conn, s3, b3));
            }
        });
        HttpBackend { addr, seen, bytes }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn bytes(&self) -> usize {
        *self.bytes.lock().unwrap()
    }
}

fn serve_http(conn: TcpStream, seen: Arc<Mutex<Vec<Seen>>>, bytes: Arc<Mutex<usize>>) {
    let mut out = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(n) => *bytes.lock().unwrap() += n,
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(n) => *bytes.lock().unwrap() += n,
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers
                    .entry(k.trim().to_ascii_lowercase())
                    .and_modify(|e: &mut String| {
                        e.push_str(", ");
                        e.push_str(v.trim());
                    })
                    .or_insert_with(|| v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        *bytes.lock().unwrap() += len;
        seen.lock().unwrap().push(Seen {
            method,
            path: path.clone(),
            headers,
        });
        let payload = format!("{{\"path\":{path:?},\"body_len\":{len}}}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}",
            payload.len()
        );
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// A TCP backend that echoes every byte back and records everything it
/// received (so a PROXY header can be checked).
pub struct TcpBackend {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl TcpBackend {
    pub fn start() -> TcpBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let r2 = received.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let r3 = r2.clone();
                std::thread::spawn(move || {
                    let idx = {
                        let mut r = r3.lock().unwrap();
                        r.push(Vec::new());
                        r.len() - 1
                    };
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                r3.lock().unwrap()[idx].extend_from_slice(&buf[..n]);
                                if conn.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        TcpBackend { addr, received }
    }

    pub fn total_bytes(&self) -> usize {
        self.received.lock().unwrap().iter().map(Vec::len).sum()
    }
}

/// A running `symbolon gateway`, killed on drop. Its log (stderr) is kept.
pub struct Gateway {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Gateway {
    /// Writes `config` to `name` in the sandbox and starts the gateway,
    /// waiting until `port` accepts connections.
    pub fn start(sb: &Sandbox, name: &str, config: &str, port: u16) -> Gateway {
        let cfg = sb.path(name);
        std::fs::write(&cfg, config).unwrap();
        let log = sb.path(&format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_symbolon"))
            .args(["gateway", "--config", cfg.to_str().unwrap()])
            .current_dir(sb.dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut gw = Gateway { child, port, log };
        // Its own "listening" line, not only an open port: something else
        // on the port must not pass for the gateway.
        let started = Instant::now();
        while !gw.log_text().contains("listening")
            || TcpStream::connect(("127.0.0.1", port)).is_err()
        {
            if let Some(status) = gw.child.try_wait().unwrap() {
                panic!("gateway exited ({status}):\n{}", gw.log_text());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "gateway did not start:\n{}",
                gw.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        gw
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (log lines are written when
    /// the refusal happens, which may be just after the client gives up).
    pub fn wait_log(&self, needle: &str) -> String {
        let started = Instant::now();
        loop {
            let text = self.log_text();
            if text.contains(needle) {
                return text;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "log never contained {needle:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA (trust domain example.org) with:
/// - `gw.crt/key`: the gateway (server profile, localhost + 127.0.0.1, SPIFFE ID spiffe://example.org/gateway)
/// - `web.crt/key`: client spiffe://example.org/ns/prod/sa/web (peer)
/// - `other.crt/key`: client spiffe://example.org/ns/prod/sa/other (peer)
/// - `server-only.crt/key`: server profile for localhost (serverAuth only)
pub fn pki(sb: &Sandbox) {
    sb.ok(&[
        "ca",
        "init",
        "--dir",
        "ca",
        "--insecure-plaintext-root-key",
        "--trust-domain",
        "example.org",
    ]);
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
        "gw",
    ]);
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--spiffe-id",
        "spiffe://example.org/ns/prod/sa/web",
        "--out",
        "web",
    ]);
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--spiffe-id",
        "spiffe://example.org/ns/prod/sa/other",
        "--out",
        "other",
    ]);
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--dns",
        "localhost",
        "--profile",
        "server",
        "--out",
        "server-only",
    ]);
}

/// A server-mode config in front of `upstream`.
pub fn server_config(
    port: u16,
    upstream: SocketAddr,
    mode: &str,
    protocol: &str,
    extra: &str,
) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"
cert = "gw.crt"
key = "gw.key"
client_ca = "ca/root.crt"
mode = "{mode}"
handshake_timeout = "3s"

[upstream]
address = "{upstream}"
protocol = "{protocol}"

{extra}
"#
    )
}

/// `symbolon ca serve --dir DIR` as a child process, killed on drop, with
/// its output appended to a log file. Ready once the port accepts: the
/// listener is bound only after the CA has issued its own HTTPS certificate.
pub struct CaServe {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
    args: Vec<String>,
    cwd: PathBuf,
}

impl CaServe {
    /// On a free port, with the CA directory's own SQLite store.
    pub fn start(sb: &Sandbox, dir: &str) -> CaServe {
        CaServe::on(sb, dir, free_port(), None)
    }

    /// On `port` (for configs written before the CA starts), optionally
    /// with `--database URL`.
    pub fn on(sb: &Sandbox, dir: &str, port: u16, database: Option<&str>) -> CaServe {
        let mut args: Vec<String> = ["ca", "serve", "--dir", dir, "--listen"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(format!("127.0.0.1:{port}"));
        if let Some(db) = database {
            args.extend(["--database".to_string(), db.to_string()]);
        }
        let mut s = CaServe {
            child: None,
            port,
            log: sb.path(&format!("serve-{}-{port}.log", dir.replace('/', "-"))),
            args,
            cwd: sb.dir.path().to_path_buf(),
        };
        s.restart();
        s
    }

    /// Starts the process (again, after [`CaServe::kill9`]) and waits until
    /// it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "ca serve is already running");
        // This start's own "CA serving" line (the log is appended to across
        // restarts), not only an open port: something else on the port
        // must not pass for the CA.
        let serving = |s: &CaServe| s.log_text().matches("CA serving").count();
        let before = serving(self);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_symbolon"))
            .args(&self.args)
            .current_dir(&self.cwd)
            .env_remove("SYMBOLON_CA_DIR")
            .env_remove("SYMBOLON_ROOT_PASSPHRASE")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        while serving(self) == before || TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("ca serve exited ({status}):\n{}", self.log_text());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "ca serve did not start:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (`Child::kill`): no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for CaServe {
    fn drop(&mut self) {
        self.kill9();
    }
}
