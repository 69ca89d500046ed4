//! Gateway telemetry reaches the control plane's store, aggregated per
//! client identity and service; with the control plane down the gateway
//! keeps serving and only counts dropped reports.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::gw_support::{CaServe, Gateway, HttpBackend, free_port};
use crate::support::{Sandbox, run_tool, tool};

/// Sums telemetry rows by (client, kind, reason) straight from the store.
fn telemetry_rows(python: &std::path::Path, sb: &Sandbox) -> Vec<(String, String, String, i64)> {
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

#[test]
fn gateway_telemetry_reaches_the_store_and_a_dead_control_plane_costs_only_a_counter() {
    let (Some(python), Some(curl)) = (tool("python3"), tool("curl")) else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    // The gateway's certificate serves and, for telemetry, acts as a client.
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
        "peer",
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
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--spiffe-id",
        "spiffe://example.org/evil",
        "--out",
        "evil",
    ]);
    let ca_port = free_port();
    let serve = CaServe::on(&sb, "ca", ca_port, None);
    let backend = HttpBackend::start();
    let (port, mport) = (free_port(), free_port());
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ncert = \"gw.crt\"\nkey = \"gw.key\"\nclient_ca = \"ca/ca-bundle.pem\"\n\n[upstream]\naddress = \"{}\"\n\n[[policy.rule]]\nname = \"web\"\neffect = \"allow\"\nspiffe_id = [\"spiffe://example.org/web\"]\n\n[telemetry]\nurl = \"https://localhost:{ca_port}\"\nservice = \"api\"\ninterval = \"1s\"\n\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n",
        backend.addr
    );
    let _gw = Gateway::start(&sb, "gw.toml", &cfg, port);
    let get = |cert: Option<&str>| {
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
        run_tool(&sb, &curl, &args).1
    };
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
    drop(serve);
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
