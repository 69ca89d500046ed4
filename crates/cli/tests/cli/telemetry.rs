//! Gateway telemetry reaches the control plane's store, aggregated per
//! client identity and service; with the control plane down the gateway
//! keeps serving and only counts dropped reports; clients with hostile
//! certificates cannot get the reports refused.

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use symbolon_testkit::rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};

use crate::gw_support::{CaServe, Gateway, HttpBackend, client_config, free_port};
use crate::support::{Sandbox, run_tool, tool};

/// Sums telemetry rows by (client, kind, reason) straight from the store.
fn telemetry_rows(python: &Path, sb: &Sandbox) -> Vec<(String, String, String, i64)> {
    let script = "import sqlite3, json\nc = sqlite3.connect('ca/symbolon.db')\nprint(json.dumps(c.execute(\"SELECT client, kind, reason, SUM(count) FROM telemetry WHERE service = 'api' GROUP BY client, kind, reason ORDER BY client, kind\").fetchall()))";
    let o = Command::new(python)
        .args(["-c", script])
        .current_dir(sb.dir.path())
        .output()
        .unwrap();
    let v: Vec<(String, String, String, i64)> =
        serde_json::from_slice(&o.stdout).unwrap_or_default();
    v
}

/// A CA serving on its own port and a gateway in front of a backend that
/// reports to it every `interval` as service `api`, with metrics on
/// `mport`. The CA issued `gw` (the gateway's certificate, which serves and,
/// for telemetry, acts as a client), `web` (allowed by the policy) and
/// `evil` (no rule allows it).
struct Setup {
    serve: CaServe,
    _gw: Gateway,
    _backend: HttpBackend,
    port: u16,
    mport: u16,
}

fn setup(sb: &Sandbox, interval: &str) -> Setup {
    sb.init_ca(&[]);
    for (out, args) in [
        (
            "gw",
            &[
                "--dns",
                "localhost",
                "--ip",
                "127.0.0.1",
                "--spiffe-id",
                "spiffe://example.org/gateway",
                "--profile",
                "peer",
            ][..],
        ),
        ("web", &["--spiffe-id", "spiffe://example.org/web"][..]),
        ("evil", &["--spiffe-id", "spiffe://example.org/evil"][..]),
    ] {
        let mut all = vec!["ca", "issue", "--dir", "ca", "--out", out];
        all.extend_from_slice(args);
        sb.ok(&all);
    }
    let ca_port = free_port();
    let serve = CaServe::on(sb, "ca", ca_port, None);
    let backend = HttpBackend::start();
    let (port, mport) = (free_port(), free_port());
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ncert = \"gw.crt\"\nkey = \"gw.key\"\nclient_ca = \"ca/ca-bundle.pem\"\n\n[upstream]\naddress = \"{}\"\n\n[[policy.rule]]\nname = \"web\"\neffect = \"allow\"\nspiffe_id = [\"spiffe://example.org/web\"]\n\n[telemetry]\nurl = \"https://localhost:{ca_port}\"\nservice = \"api\"\ninterval = \"{interval}\"\n\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n",
        backend.addr
    );
    let gw = Gateway::start(sb, "gw.toml", &cfg, port);
    Setup {
        serve,
        _gw: gw,
        _backend: backend,
        port,
        mport,
    }
}

/// The status code of `GET /x` through the gateway at `port` with curl,
/// as client `cert` (`web`, `evil`) or with no certificate.
fn status(sb: &Sandbox, curl: &Path, port: u16, cert: Option<&str>) -> String {
    let mut args = vec![
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "5",
        "--cacert",
        "ca/root.crt",
    ];
    let (c, k);
    if let Some(name) = cert {
        c = format!("{name}.crt");
        k = format!("{name}.key");
        args.extend(["--cert", &c, "--key", &k]);
    }
    let url = format!("https://localhost:{port}/x");
    args.push(&url);
    run_tool(sb, curl, &args).1
}

#[test]
fn gateway_telemetry_reaches_the_store_and_a_dead_control_plane_costs_only_a_counter() {
    let (Some(python), Some(curl)) = (tool("python3"), tool("curl")) else {
        return;
    };
    let sb = Sandbox::new();
    let s = setup(&sb, "1s");
    let (port, mport) = (s.port, s.mport);
    let get = |cert: Option<&str>| status(&sb, &curl, port, cert);
    assert_eq!(get(Some("web")), "200");
    assert_eq!(get(Some("web")), "200");
    assert_eq!(get(Some("evil")), "403");
    assert_ne!(get(None), "200");

    let started = Instant::now();
    let want = vec![
        (
            "spiffe://example.org/evil".to_string(),
            "denied".to_string(),
            "no matching rule".to_string(),
            1,
        ),
        (
            "spiffe://example.org/web".to_string(),
            "allowed".to_string(),
            String::new(),
            2,
        ),
        (
            "unauthenticated".to_string(),
            "failed".to_string(),
            "no_client_cert".to_string(),
            1,
        ),
    ];
    loop {
        if telemetry_rows(&python, &sb) == want {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "telemetry never arrived: {:?}",
            telemetry_rows(&python, &sb)
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // The gateway's policy is in the audit trail, and a change is audited.
    let policy_changes = || -> Vec<serde_json::Value> {
        let list = sb
            .ok(&["ca", "audit", "list", "--dir", "ca", "--json"])
            .json();
        list.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "policy_change")
            .cloned()
            .collect()
    };
    let first = policy_changes();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["actor"], "gateway:spiffe://example.org/gateway");
    assert_eq!(first[0]["detail"]["rules"], serde_json::json!(["web"]));
    let changed = std::fs::read_to_string(sb.path("gw.toml"))
        .unwrap()
        .replace("[telemetry]", "[[policy.rule]]\nname = \"no-admin\"\neffect = \"deny\"\npaths = [\"/admin/**\"]\n\n[telemetry]");
    std::fs::write(sb.path("gw.toml"), changed).unwrap();
    let started = Instant::now();
    while policy_changes().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the policy change was never audited"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let second = &policy_changes()[1];
    assert_eq!(
        second["detail"]["rules"],
        serde_json::json!(["web", "no-admin"])
    );
    assert_eq!(
        second["detail"]["previous"],
        first[0]["detail"]["policy_sha256"]
    );
    sb.ok(&["ca", "audit", "verify", "--dir", "ca"]);

    // The control plane goes away: traffic still flows, reports are dropped.
    drop(s.serve);
    assert_eq!(get(Some("web")), "200");
    let started = Instant::now();
    loop {
        let (_, text) = run_tool(
            &sb,
            &curl,
            &["-s", &format!("http://127.0.0.1:{mport}/metrics")],
        );
        if text.contains("symbolon_gateway_telemetry_reports_total{result=\"dropped\"}") {
            assert!(
                text.contains("symbolon_gateway_telemetry_reports_total{result=\"sent\"}"),
                "{text}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no dropped report counted:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(get(Some("web")), "200");
}

/// Presents `cert` (with `key`, PKCS#8) to the gateway at `port` and waits
/// until the gateway has judged it: the handshake fails or the connection
/// closes (bounded).
fn present(sb: &Sandbox, port: u16, cert: CertificateDer<'static>, key: Vec<u8>) {
    let config = client_config(sb, Some((cert, PrivatePkcs8KeyDer::from(key))));
    let conn = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    // In TLS 1.3 the client finishes first; the refusal arrives as an
    // alert on the first read.
    let mut buf = [0u8; 64];
    let judged = tls.read(&mut buf);
    assert!(
        !matches!(judged, Ok(n) if n > 0),
        "the gateway accepted a certificate from an unknown CA"
    );
}

/// Certificates from no trusted CA are refused and counted per subject,
/// which their holder chooses. Hundreds of long distinct subjects in one
/// interval (more than one request body's worth of counts) and one
/// subject longer than a report may carry made the control plane refuse
/// the gateway's whole report (413, then 400), so the allowed traffic in
/// the same interval never reached the dashboard either.
#[test]
fn bug_hostile_client_certificates_cannot_blind_telemetry() {
    let (Some(python), Some(curl)) = (tool("python3"), tool("curl")) else {
        return;
    };
    let sb = Sandbox::new();
    // One long interval, so that everything below lands in the gateway's
    // first report, whose counts then far exceed one request body.
    let t0 = Instant::now();
    let s = setup(&sb, "10s");
    let key = KeyPair::generate().unwrap();
    // 150 subjects of ~1.9 KB: about 300 KB of counts.
    let mut cns: Vec<String> = (0..150)
        .map(|i| format!("{i:03}{}", "h".repeat(1900)))
        .collect();
    cns.push("z".repeat(6000));
    for cn in &cns {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn.as_str());
        // A client certificate in every way but its issuer.
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.self_signed(&key).unwrap();
        present(&sb, s.port, cert.der().clone(), key.serialize_der());
    }
    assert_eq!(status(&sb, &curl, s.port, Some("web")), "200");
    assert!(
        t0.elapsed() < Duration::from_secs(9),
        "too slow to fit in one report interval: {:?}",
        t0.elapsed()
    );

    let started = Instant::now();
    loop {
        let rows = telemetry_rows(&python, &sb);
        let refused: Vec<&String> = rows
            .iter()
            .filter(|r| r.1 == "failed" && r.2 == "unknown_ca")
            .map(|r| &r.0)
            .collect();
        let web = rows
            .iter()
            .find(|r| r.0 == "spiffe://example.org/web" && r.1 == "allowed");
        if let Some(web) = web
            && refused.len() == cns.len()
        {
            assert_eq!(web.3, 1);
            assert!(refused.iter().all(|c| c.len() <= 2048), "{refused:?}");
            let cut: Vec<_> = refused.iter().filter(|c| c.ends_with('…')).collect();
            assert_eq!(cut.len(), 1, "the 6,000-byte subject is cut, only it");
            assert!(cut[0].contains("zzzz"), "{}", cut[0]);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "telemetry lost: {} of {} refused subjects and {web:?} arrived; kinds: {:?}\n{}",
            refused.len(),
            cns.len(),
            rows.iter()
                .map(|r| (&r.1, &r.2, r.0.len()))
                .collect::<Vec<_>>(),
            s.serve.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
