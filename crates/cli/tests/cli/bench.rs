//! `symbolon bench`: the load generators against the real gateway, the
//! real `ca serve`, a CA directory in process, and `cfssl serve`. The
//! tests check what was counted (completed, failed by reason, resumed),
//! what reached the backend and the store, and that latency is measured
//! open loop; they never judge speed.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::gw_support::{CaServe, Gateway, HttpBackend, free_port, pki, server_config};
use crate::support::{Sandbox, run_tool, tool};

const WEB_ONLY: &str = r#"
[[policy.rule]]
name = "web"
effect = "allow"
spiffe_id = ["spiffe://example.org/ns/prod/sa/web"]
"#;

fn gateway(sb: &Sandbox, backend: &HttpBackend, protocol: &str) -> Gateway {
    let port = free_port();
    Gateway::start(
        sb,
        "gw.toml",
        &server_config(port, backend.addr, "strict", protocol, WEB_ONLY),
        port,
    )
}

/// Runs `symbolon bench ARGS --json -q`; returns (exit code, report, stderr).
fn bench<S: AsRef<str>>(sb: &Sandbox, args: &[S]) -> (i32, Value, String) {
    let mut all = vec!["bench"];
    all.extend(args.iter().map(AsRef::as_ref));
    all.extend_from_slice(&["--json", "-q"]);
    let r = sb.run(&all);
    let report = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
    (r.code, report, r.stderr)
}

/// `args` followed by client certificate NAME.crt/NAME.key and the test root.
fn as_client(args: &[&str], name: &str) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    v.extend([
        "--cert".into(),
        format!("{name}.crt"),
        "--key".into(),
        format!("{name}.key"),
        "--trust".into(),
        "ca/root.crt".into(),
    ]);
    v
}

fn check_latency(report: &Value) {
    let l = &report["latency_us"];
    let (min, p50, p99, max) = (
        l["min"].as_f64().unwrap(),
        l["p50"].as_f64().unwrap(),
        l["p99"].as_f64().unwrap(),
        l["max"].as_f64().unwrap(),
    );
    assert!(
        0.0 < min && min <= p50 && p50 <= p99 && p99 <= max,
        "{report}"
    );
}

// === handshake ===

#[test]
fn handshake_counts_full_then_resumed_handshakes_the_gateway_accepted() {
    let sb = Sandbox::new();
    pki(&sb);
    let backend = HttpBackend::start();
    let gw = gateway(&sb, &backend, "http");
    let target = format!("127.0.0.1:{}", gw.port);
    let base = [
        "handshake",
        "--target",
        &target,
        "--count",
        "40",
        "--concurrency",
        "4",
    ];

    let (code, r, err) = bench(&sb, &as_client(&base, "web"));
    assert_eq!(code, 0, "{r}\n{err}");
    assert_eq!(r["completed"], 40, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["results"]["full"], 40, "{r}");
    assert_eq!(r["results"]["resumed"], 0, "{r}");
    assert_eq!(r["settings"]["mode"], "full", "{r}");
    check_latency(&r);

    let mut resumed = as_client(&base, "web");
    resumed.push("--resume".into());
    let (code, r, err) = bench(&sb, &resumed);
    assert_eq!(code, 0, "{r}\n{err}");
    assert_eq!(r["completed"], 40, "{r}");
    // Every timed handshake resumed a session: tickets flow back over the
    // close_notify exchange.
    assert_eq!(r["results"]["resumed"], 40, "{r}");
    assert_eq!(r["results"]["full"], 0, "{r}");
    // A handshake is not an HTTP request: nothing reached the backend.
    assert_eq!(backend.bytes(), 0);
}

#[test]
fn handshake_refusals_are_counted_by_the_alert_the_server_sent() {
    let sb = Sandbox::new();
    pki(&sb);
    sb.init_plain_ca("ca2", &[]);
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca2",
        "--spiffe-id",
        "spiffe://example.org/ns/prod/sa/web",
        "--out",
        "stranger",
    ]);
    let backend = HttpBackend::start();
    let gw = gateway(&sb, &backend, "http");
    let target = format!("127.0.0.1:{}", gw.port);
    // In TLS 1.3 the client's side of the handshake completes before the
    // server judges its certificate: the refusal must still be counted.
    let base = [
        "handshake",
        "--target",
        &target,
        "--count",
        "10",
        "--concurrency",
        "2",
    ];
    let (code, r, _) = bench(&sb, &as_client(&base, "stranger"));
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["completed"], 0, "{r}");
    assert_eq!(r["failed"], 10, "{r}");
    assert_eq!(r["errors"]["alert_unknown_ca"], 10, "{r}");
    assert!(r["latency_us"].is_null(), "{r}");
    gw.wait_log("reason=\"unknown_ca\"");

    // Nothing listening: refused connections, by name.
    let closed = format!("127.0.0.1:{}", free_port());
    let base = ["handshake", "--target", &closed, "--count", "3"];
    let (code, r, _) = bench(&sb, &as_client(&base, "web"));
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["errors"]["connection_refused"], 3, "{r}");
    assert_eq!(backend.bytes(), 0);
}

#[test]
fn handshake_checks_the_servers_name_and_refuses_bad_arguments() {
    let sb = Sandbox::new();
    pki(&sb);
    let backend = HttpBackend::start();
    let gw = gateway(&sb, &backend, "http");
    let target = format!("127.0.0.1:{}", gw.port);
    // The gateway's certificate names localhost and 127.0.0.1, not this.
    let mut args = as_client(&["handshake", "--target", &target, "--count", "2"], "web");
    args.extend(["--server-name".into(), "api.example.org".into()]);
    let (code, r, _) = bench(&sb, &args);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["errors"]["server_cert_not_valid_for_name"], 2, "{r}");

    let r = sb.run(&["bench", "handshake", "--target", &target, "--count", "1"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("--cert, --key and --trust"),
        "{}",
        r.all()
    );
    let r = sb.run(&[
        "bench",
        "handshake",
        "--target",
        "nohost",
        "--cert",
        "web.crt",
        "--key",
        "web.key",
        "--trust",
        "ca/root.crt",
    ]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("HOST:PORT"), "{}", r.all());
    let r = sb.run(&[
        "bench",
        "handshake",
        "--target",
        &target,
        "--cert",
        "web.crt",
        "--key",
        "other.key",
        "--trust",
        "ca/root.crt",
    ]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("does not belong"), "{}", r.all());
}

// === http ===

#[test]
fn http_offers_every_request_through_the_gateway_on_keep_alive_connections() {
    let sb = Sandbox::new();
    pki(&sb);
    let backend = HttpBackend::start();
    let gw = gateway(&sb, &backend, "http");
    let url = format!("https://localhost:{}/orders", gw.port);
    let base = [
        "http",
        "--target",
        &url,
        "--rate",
        "200",
        "--duration",
        "1s",
        "--connections",
        "4",
        "--body-size",
        "1KiB",
    ];
    let (code, r, err) = bench(&sb, &as_client(&base, "web"));
    assert_eq!(code, 0, "{r}\n{err}");
    assert_eq!(r["settings"]["requests_offered"], 200, "{r}");
    assert_eq!(r["completed"], 200, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["results"]["reconnects"], 0, "{r}");
    check_latency(&r);
    let seen = backend.requests();
    assert_eq!(seen.len(), 200);
    for s in &seen {
        assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/orders"));
        assert_eq!(s.headers["content-length"], "1024");
        assert!(
            s.headers["x-forwarded-client-cert"].contains("spiffe://example.org/ns/prod/sa/web"),
            "{s:?}"
        );
    }

    // The same against the backend directly: the baseline for added latency.
    let direct = format!("http://{}/orders", backend.addr);
    let (code, r, err) = bench(
        &sb,
        &[
            "http",
            "--target",
            &direct,
            "--rate",
            "100",
            "--duration",
            "1s",
        ],
    );
    assert_eq!(code, 0, "{r}\n{err}");
    assert_eq!(r["completed"], 100, "{r}");
    assert_eq!(backend.requests().len(), 300);
}

#[test]
fn http_counts_policy_denials_by_status_and_nothing_reaches_the_backend() {
    let sb = Sandbox::new();
    pki(&sb);
    let backend = HttpBackend::start();
    let gw = gateway(&sb, &backend, "http");
    let url = format!("https://localhost:{}/", gw.port);
    let base = ["http", "--target", &url, "--rate", "50", "--duration", "1s"];
    let (code, r, err) = bench(&sb, &as_client(&base, "other"));
    assert_eq!(code, 1, "{r}\n{err}");
    assert_eq!(r["completed"], 0, "{r}");
    assert_eq!(r["errors"]["status_403"], 50, "{r}");
    assert_eq!(backend.bytes(), 0);

    let r = sb.run(&["bench", "http", "--target", "ftp://x/", "--rate", "1"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("https:// or http://"), "{}", r.all());
    let r = sb.run(&[
        "bench",
        "http",
        "--target",
        "http://127.0.0.1:1/",
        "--rate",
        "0",
    ]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("positive"), "{}", r.all());
    let r = sb.run(&[
        "bench",
        "http",
        "--target",
        "http://127.0.0.1:1/",
        "--body-size",
        "3 parsecs",
    ]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("unknown unit"), "{}", r.all());
}

/// A keep-alive HTTP/1.1 server that stalls `stall` before answering its
/// `nth` request (counting from 0) and answers every other one at once.
fn stalling_backend(nth: usize, stall: Duration) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut count = 0;
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let mut out = conn.try_clone().unwrap();
            let mut reader = BufReader::new(conn);
            loop {
                let mut line = String::new();
                // Headers end at the empty line; GETs carry no body.
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                if line != "\r\n" {
                    break;
                }
                if count == nth {
                    std::thread::sleep(stall);
                }
                count += 1;
                if out
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .is_err()
                {
                    break;
                }
            }
        }
    });
    addr
}

#[test]
fn http_latency_counts_the_wait_behind_a_slow_response_from_when_each_request_was_due() {
    // One connection, 100 requests/s for 1 s; request 10 is answered after
    // 400 ms. The ~30 requests due during that stall wait behind it: an
    // open-loop generator reports them as late (p90 above 100 ms); a
    // closed-loop one would report one slow request and a fast p90.
    let addr = stalling_backend(10, Duration::from_millis(400));
    let sb = Sandbox::new();
    let url = format!("http://{addr}/");
    let (code, r, err) = bench(
        &sb,
        &[
            "http",
            "--target",
            &url,
            "--rate",
            "100",
            "--duration",
            "1s",
            "--connections",
            "1",
        ],
    );
    assert_eq!(code, 0, "{r}\n{err}");
    assert_eq!(r["completed"], 100, "{r}");
    let l = &r["latency_us"];
    assert!(l["max"].as_f64().unwrap() >= 390_000.0, "{r}");
    assert!(l["p90"].as_f64().unwrap() >= 100_000.0, "{r}");
}

// === issue ===

fn ca_list_ids(sb: &Sandbox, dir: &str) -> Vec<String> {
    let r = sb.ok(&["ca", "list", "--dir", dir, "--json"]);
    let mut ids: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["identities"].as_array().unwrap().clone())
        .map(|i| i.as_str().unwrap().to_string())
        .filter(|i| i.contains("/bench/"))
        .collect();
    ids.sort();
    ids
}

fn expected_ids(n: usize) -> Vec<String> {
    let mut ids: Vec<String> = (0..n)
        .map(|i| format!("spiffe://example.org/bench/{i}"))
        .collect();
    ids.sort();
    ids
}

#[test]
fn issue_in_process_records_every_certificate_with_its_audit_record() {
    let sb = Sandbox::new();
    pki(&sb);
    let (code, r, err) = bench(
        &sb,
        &[
            "issue",
            "--dir",
            "ca",
            "--identity",
            "spiffe://example.org/bench/{n}",
            "--count",
            "60",
            "--concurrency",
            "6",
        ],
    );
    assert_eq!(code, 0, "{r}\n{err}");
    assert_eq!(r["completed"], 60, "{r}");
    assert_eq!(r["settings"]["ca"], "in process", "{r}");
    check_latency(&r);
    assert_eq!(ca_list_ids(&sb, "ca"), expected_ids(60));
    let audit = sb.ok(&["ca", "audit", "verify", "--dir", "ca"]);
    assert!(audit.stdout.contains("intact"), "{}", audit.all());

    // Names outside the CA's namespace are refused, each one counted.
    let (code, r, _) = bench(
        &sb,
        &[
            "issue",
            "--dir",
            "ca",
            "--identity",
            "spiffe://elsewhere.org/bench/{n}",
            "--count",
            "5",
        ],
    );
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["failed"], 5, "{r}");
    let reasons: Vec<&String> = r["errors"].as_object().unwrap().keys().collect();
    assert!(reasons.iter().all(|k| k.starts_with("refused")), "{r}");
    assert_eq!(ca_list_ids(&sb, "ca").len(), 60);

    let r = sb.run(&[
        "bench",
        "issue",
        "--dir",
        "ca",
        "--identity",
        "spiffe://example.org/same",
    ]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("{n}"), "{}", r.all());
}

#[test]
fn issue_over_the_api_redeems_one_token_per_certificate() {
    let sb = Sandbox::new();
    pki(&sb);
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--spiffe-id",
        "spiffe://example.org/admin",
        "--out",
        "admin",
    ]);
    let serve = CaServe::start(&sb, "ca");
    let url = serve.url();
    let admin = [
        "--cert",
        "admin.crt",
        "--key",
        "admin.key",
        "--trust",
        "ca/root.crt",
    ];
    let mut args = vec![
        "issue",
        "--ca",
        &url,
        "--identity",
        "spiffe://example.org/bench/{n}",
        "--count",
        "40",
        "--concurrency",
        "4",
    ];
    args.extend_from_slice(&admin);
    let (code, r, err) = bench(&sb, &args);
    assert_eq!(code, 0, "{r}\n{err}\n{}", serve.log_text());
    assert_eq!(r["completed"], 40, "{r}");
    assert_eq!(r["settings"]["ca"], "Symbolon API", "{r}");
    assert_eq!(ca_list_ids(&sb, "ca"), expected_ids(40));
    // Every certificate was paid for by its own token: 40 enroll records.
    let audit = sb.ok(&["ca", "audit", "list", "--dir", "ca", "--json"]);
    let enrolls = audit
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "enroll")
        .count();
    assert_eq!(enrolls, 40, "{}", audit.stdout);

    // A certificate that is not an admin cannot make tokens: refused up front.
    let web = [
        "--cert",
        "web.crt",
        "--key",
        "web.key",
        "--trust",
        "ca/root.crt",
    ];
    let mut args = vec![
        "bench",
        "issue",
        "--ca",
        &url,
        "--identity",
        "spiffe://example.org/bench/x{n}",
        "--count",
        "3",
    ];
    args.extend_from_slice(&web);
    let r = sb.run(&args);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("refused_not_admin"), "{}", r.all());
    assert!(
        r.stderr.contains("admin in the CA's ca.toml"),
        "{}",
        r.all()
    );
    assert_eq!(ca_list_ids(&sb, "ca").len(), 40);
}

#[test]
fn issue_against_cfssl_serve_signs_the_same_csrs() {
    let (Some(cfssl), Some(openssl)) = (tool("cfssl"), tool("openssl")) else {
        return;
    };
    let sb = Sandbox::new();
    let (code, out) = run_tool(
        &sb,
        &openssl,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "cf-key.pem",
            "-out",
            "cf.pem",
            "-subj",
            "/CN=cfssl test CA",
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    assert_eq!(code, 0, "{out}");
    std::fs::write(
        sb.path("cf.json"),
        r#"{"signing":{"default":{"expiry":"24h","usages":["digital signature","client auth","server auth"]}}}"#,
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(cfssl)
        .args(["serve", "-address", "127.0.0.1", "-port", &port.to_string()])
        .args([
            "-ca",
            "cf.pem",
            "-ca-key",
            "cf-key.pem",
            "-config",
            "cf.json",
        ])
        .current_dir(sb.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "cfssl serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://127.0.0.1:{port}");
    let (code, r, err) = bench(
        &sb,
        &[
            "issue",
            "--ca",
            &url,
            "--api",
            "cfssl",
            "--identity",
            "spiffe://example.org/bench/{n}",
            "--count",
            "20",
            "--concurrency",
            "2",
        ],
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code, 0, "{r}\n{err}");
    assert_eq!(r["completed"], 20, "{r}");
    assert_eq!(r["settings"]["ca"], "cfssl API", "{r}");
}

// === crypto ===

#[test]
fn crypto_reports_the_bound_per_key_type() {
    let sb = Sandbox::new();
    let r = sb.ok(&[
        "bench",
        "crypto",
        "--key-type",
        "ecdsa-p256",
        "--key-type",
        "ed25519",
        "--time",
        "50ms",
        "--json",
    ]);
    let costs = r.json();
    let costs = costs.as_array().unwrap();
    assert_eq!(costs.len(), 2, "{}", r.stdout);
    assert_eq!(costs[0]["key_type"], "ecdsa-p256");
    assert_eq!(costs[1]["key_type"], "ed25519");
    for c in costs {
        let f = |k: &str| c[k].as_f64().unwrap();
        assert!(
            f("sign_us") > 0.0 && f("verify_us") > 0.0 && f("x25519_us") > 0.0,
            "{c}"
        );
        let sum = f("sign_us") + 2.0 * f("verify_us") + f("x25519_us");
        assert!((f("handshake_us") - sum).abs() < 1e-6, "{c}");
        assert!(
            (f("handshakes_per_cpu_s") * f("handshake_us") - 1e6).abs() < 1e-3,
            "{c}"
        );
    }
    let r = sb.ok(&[
        "bench",
        "crypto",
        "--key-type",
        "rsa-2048",
        "--time",
        "50ms",
    ]);
    assert!(
        r.stdout.contains("HANDSHAKES/CPU-s") && r.stdout.contains("rsa-2048"),
        "{}",
        r.stdout
    );
    let r = sb.run(&["bench", "crypto", "--key-type", "dsa-512"]);
    assert_eq!(r.code, 2, "{}", r.all());
}

#[test]
fn a_progress_line_each_second_goes_to_stderr_unless_quiet() {
    let sb = Sandbox::new();
    pki(&sb);
    let backend = HttpBackend::start();
    let direct = format!("http://{}/", backend.addr);
    let args = [
        "bench",
        "http",
        "--target",
        &direct,
        "--rate",
        "20",
        "--duration",
        "3s",
    ];
    let r = sb.ok(&args);
    let progress: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("http:") && l.contains("completed") && l.contains("failed"))
        .collect();
    assert!(progress.len() >= 2, "{}", r.stderr);
    // The report itself is on stdout, untouched by the progress lines.
    assert!(r.stdout.starts_with("http against "), "{}", r.stdout);
    let mut quiet = args.to_vec();
    quiet.push("-q");
    let r = sb.ok(&quiet);
    assert!(!r.stderr.contains("completed"), "{}", r.stderr);
}
