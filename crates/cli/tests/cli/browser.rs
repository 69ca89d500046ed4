//! End to end in a real browser: `ca serve` and a gateway, allowed, denied
//! and failing traffic through the gateway, then the dashboard loaded in
//! headless Chromium. The connection matrix must show those counts and the
//! inventory the certificates; a screenshot of each page is kept as a test
//! artifact under the test target's temporary directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::gw_support::{CaServe, Gateway, HttpBackend, free_port};
use crate::support::{Sandbox, run_tool, tool};

/// Chromium as the probe machine runs it: headless, no sandbox (root), no
/// background networking (the machine has no network beyond loopback).
fn chromium(bin: &Path, profile: &Path, extra: &[&str], url: &str) -> (bool, String) {
    let o = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // The dashboard's TLS is the CA's private PKI; TLS itself is
            // tested with curl, OpenSSL and Python elsewhere.
            "--ignore-certificate-errors",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_dashboard_in_chromium_shows_real_gateway_traffic_and_the_inventory() {
    let (Some(curl), Some(browser)) = (tool("curl"), tool("chromium")) else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
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
    let _ca = CaServe::on(&sb, "ca", ca_port, None);
    let backend = HttpBackend::start();
    let port = free_port();
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ncert = \"gw.crt\"\nkey = \"gw.key\"\nclient_ca = \"ca/ca-bundle.pem\"\n\n[upstream]\naddress = \"{}\"\n\n[[policy.rule]]\nname = \"web-only\"\neffect = \"allow\"\nspiffe_id = [\"spiffe://example.org/web\"]\n\n[telemetry]\nurl = \"https://localhost:{ca_port}\"\nservice = \"orders\"\ninterval = \"1s\"\n",
        backend.addr
    );
    let _gw = Gateway::start(&sb, "gw.toml", &cfg, port);

    // 3 allowed, 2 denied by policy, 1 failed handshake (no certificate).
    let call = |cert: Option<&str>| {
        let url = format!("https://localhost:{port}/orders");
        let mut args: Vec<String> = [
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            "--cacert",
            "ca/root.crt",
        ]
        .map(String::from)
        .to_vec();
        if let Some(c) = cert {
            args.extend([
                "--cert".into(),
                format!("{c}.crt"),
                "--key".into(),
                format!("{c}.key"),
            ]);
        }
        args.push(url);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tool(&sb, &curl, &refs).1
    };
    for _ in 0..3 {
        assert_eq!(call(Some("web")), "200");
    }
    for _ in 0..2 {
        assert_eq!(call(Some("evil")), "403");
    }
    assert_ne!(call(None), "200");

    // Wait for the telemetry to land (JSON behind the matrix page).
    let api = format!("https://localhost:{ca_port}/ui/api/matrix?since=1h");
    let started = Instant::now();
    loop {
        let (_, body) = run_tool(
            &sb,
            &curl,
            &["-s", "--max-time", "5", "--cacert", "ca/root.crt", &api],
        );
        if body.contains("spiffe://example.org/evil")
            && body.contains("unauthenticated")
            && body.contains("spiffe://example.org/web")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "telemetry never reached the dashboard: {body}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let profile = sb.path("chromium-profile");
    let page = |path: &str| format!("https://localhost:{ca_port}{path}");
    let (ok, dom) = chromium(
        &browser,
        &profile,
        &["--dump-dom"],
        &page("/ui/matrix?since=1h"),
    );
    assert!(ok, "chromium failed on the matrix");
    let cell = |client: &str| -> String {
        let at = dom
            .find(client)
            .unwrap_or_else(|| panic!("{client} not in the matrix:\n{dom}"));
        let row = &dom[at..];
        let td = row
            .find("class=\"cell\"")
            .expect("no cell after the client");
        let text = &row[td..row[td..].find("</td>").map(|e| td + e).unwrap()];
        let strip: String = {
            let mut out = String::new();
            let mut tag = false;
            for ch in text.chars() {
                match ch {
                    '<' => tag = true,
                    '>' => tag = false,
                    c if !tag => out.push(c),
                    _ => {}
                }
            }
            out
        };
        strip
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .trim_start_matches("class=\"cell\"")
            .trim()
            .to_string()
    };
    assert!(dom.contains("orders"), "service missing:\n{dom}");
    assert!(
        cell("spiffe://example.org/web").ends_with("3 / 0 / 0"),
        "web cell: {}",
        cell("spiffe://example.org/web")
    );
    assert!(
        cell("spiffe://example.org/evil").ends_with("0 / 2 / 0"),
        "evil cell: {}",
        cell("spiffe://example.org/evil")
    );
    assert!(
        cell("unauthenticated").ends_with("0 / 0 / 1"),
        "unauthenticated cell: {}",
        cell("unauthenticated")
    );

    let (ok, dom) = chromium(
        &browser,
        &profile,
        &["--dump-dom"],
        &page("/ui/certificates"),
    );
    assert!(ok);
    for cert in ["web", "evil", "gw"] {
        let serial = sb
            .ok(&["cert", "inspect", &format!("{cert}.crt"), "--json"])
            .json()[0]["serial"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            dom.contains(&serial),
            "{cert} ({serial}) not in the inventory"
        );
    }

    // A screenshot of each page, kept as a test artifact.
    let dir = artifacts();
    for (name, path) in [
        ("overview", "/ui/"),
        ("inventory", "/ui/certificates"),
        ("expiry", "/ui/expiry?days=30"),
        ("trust", "/ui/trust"),
        ("matrix", "/ui/matrix?since=1h"),
        ("audit", "/ui/audit"),
    ] {
        let file = dir.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&file);
        let (ok, _) = chromium(
            &browser,
            &profile,
            &[&format!("--screenshot={}", file.display())],
            &page(path),
        );
        assert!(ok, "screenshot of {path} failed");
        let png = std::fs::read(&file).unwrap_or_default();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "{name}: no real screenshot"
        );
    }
    eprintln!("dashboard screenshots in {}", dir.display());
}
