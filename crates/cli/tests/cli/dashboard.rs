//! The dashboard at `/ui/`: `ca serve` run as a child process and read with
//! curl (the CA's root as the only trust anchor), as an admin, as a local
//! caller without a certificate, and as callers who must be refused. Every
//! number a page shows is checked against what the CLI (`ca list`,
//! `ca audit verify`, `cert inspect`) says, and every page against its JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{IpAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::gw_support::free_port;
use crate::support::{Sandbox, run_tool, tool};

const BIN: &str = env!("CARGO_BIN_EXE_symbolon");
const ADMIN: &str = "spiffe://example.org/admin";
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; script-src 'none'";
const ADMIN_CERT: [&str; 4] = ["--cert", "admin.crt", "--key", "admin.key"];

// === fixtures ===

/// `symbolon ca serve --dir ca` on a free port, killed on drop.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// Listens on `ip` (127.0.0.1, or 0.0.0.0 to be reached from another
    /// address) and returns once it accepts connections: it binds only
    /// after issuing its own certificate, so it is ready then.
    fn start(sb: &Sandbox, ip: &str) -> Server {
        let port = free_port();
        let log = sb.path("serve.log");
        let f = File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(["ca", "serve", "--dir", "ca", "--listen"])
            .arg(format!("{ip}:{port}"))
            .current_dir(sb.dir.path())
            .env_remove("SYMBOLON_CA_DIR")
            .env_remove("SYMBOLON_DATABASE")
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        let mut s = Server { child, port, log };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("ca serve exited ({status}):\n{}", s.log_text());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "ca serve did not start:\n{}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Http {
    status: u16,
    /// Names lower-cased.
    headers: BTreeMap<String, String>,
    body: String,
}

impl Http {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}:\n{}", self.status, self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

/// curl with the CA's root as the only trust anchor; `extra` adds a client
/// certificate, `--resolve`, a body…
fn curl(sb: &Sandbox, c: &Path, url: &str, extra: &[&str]) -> Http {
    let mut args = vec![
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        "ca/root.crt",
        "-D",
        "headers.txt",
        "-w",
        "\n%{http_code}",
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let (code, out) = run_tool(sb, c, &args);
    assert_eq!(code, 0, "curl {args:?} failed:\n{out}");
    let (body, status) = out.rsplit_once('\n').unwrap();
    let raw = std::fs::read_to_string(sb.path("headers.txt")).unwrap();
    let headers = raw
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Http {
        status: status.trim().parse().unwrap(),
        headers,
        body: body.to_string(),
    }
}

/// Headers every dashboard response carries, refusals included.
fn assert_secure(h: &Http, what: &str) {
    assert_eq!(h.header("content-security-policy"), CSP, "{what}");
    assert_eq!(h.header("x-frame-options"), "DENY", "{what}");
    assert_eq!(h.header("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(h.header("cache-control"), "no-store", "{what}");
}

/// A 200 HTML page that loads nothing from anywhere and runs no script.
fn page(sb: &Sandbox, c: &Path, srv: &Server, path: &str, extra: &[&str]) -> String {
    let h = curl(sb, c, &srv.url(path), extra);
    assert_eq!(h.status, 200, "{path}:\n{}\n{}", h.body, srv.log_text());
    assert_eq!(
        h.header("content-type"),
        "text/html; charset=utf-8",
        "{path}"
    );
    assert_secure(&h, path);
    assert!(h.body.starts_with("<!DOCTYPE html>"), "{path}: {}", h.body);
    for banned in [
        "<script",
        "<img",
        "<iframe",
        "<link",
        "<object",
        " src=\"",
        "href=\"http",
        "url(",
    ] {
        assert!(
            !h.body.contains(banned),
            "{path} contains {banned}:\n{}",
            h.body
        );
    }
    h.body
}

/// A 200 JSON answer from the dashboard's API.
fn api(sb: &Sandbox, c: &Path, srv: &Server, path: &str, extra: &[&str]) -> Value {
    let h = curl(sb, c, &srv.url(path), extra);
    assert_eq!(h.status, 200, "{path}:\n{}", h.body);
    assert!(
        h.header("content-type").starts_with("application/json"),
        "{path}"
    );
    assert_secure(&h, path);
    h.json()
}

/// A refusal: this status; JSON with this reason under /ui/api/, else an
/// HTML page naming the reason.
fn refused(
    sb: &Sandbox,
    c: &Path,
    srv: &Server,
    path: &str,
    extra: &[&str],
    status: u16,
    reason: &str,
) -> Http {
    let h = curl(sb, c, &srv.url(path), extra);
    assert_eq!(h.status, status, "{path}:\n{}", h.body);
    assert_secure(&h, path);
    if path.starts_with("/ui/api/") {
        let v = h.json();
        assert_eq!(v["reason"], reason, "{path}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    } else {
        assert_eq!(
            h.header("content-type"),
            "text/html; charset=utf-8",
            "{path}"
        );
        assert!(
            h.body.contains(&format!("<code>{reason}</code>")),
            "{path}:\n{}",
            h.body
        );
    }
    h
}

/// `ca issue … --json`; returns the serial.
fn issue(sb: &Sandbox, args: &[&str]) -> String {
    let mut all = vec!["ca", "issue", "--dir", "ca", "--json"];
    all.extend_from_slice(args);
    sb.ok(&all).json()["serial"].as_str().unwrap().to_string()
}

fn revoke(sb: &Sandbox, serial: &str, reason: &str) {
    sb.ok(&["ca", "revoke", "--dir", "ca", serial, "--reason", reason]);
}

/// The root fingerprint `ca init` printed.
fn init(sb: &Sandbox) -> String {
    let out = sb.init_ca(&[]).stdout;
    out.lines()
        .find_map(|l| l.strip_prefix("Root fingerprint (SHA-256): "))
        .unwrap()
        .trim()
        .to_string()
}

/// The number on the overview card `id`.
fn card(html: &str, id: &str) -> i64 {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no card {id}:\n{html}"));
    let rest = &html[at..];
    let n = &rest[rest.find("<div class=\"n\">").unwrap() + 15..];
    n[..n.find('<').unwrap()].parse().unwrap()
}

/// The target of the link with `rel` (prev/next), as a URL path.
fn rel_link(html: &str, rel: &str) -> Option<String> {
    let at = html.find(&format!("rel=\"{rel}\" href=\""))?;
    let rest = &html[at + rel.len() + 13..];
    Some(rest[..rest.find('"').unwrap()].replace("&amp;", "&"))
}

fn serials(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["serial"].as_str().unwrap().to_string())
        .collect()
}

fn time_of(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

/// An address of this machine that is not loopback, for reaching the
/// server as a remote client would. Connecting a UDP socket sends nothing;
/// it only asks the kernel which source address it would use.
fn non_loopback_ip() -> Option<IpAddr> {
    [
        "192.0.2.1:9",
        "198.51.100.1:9",
        "203.0.113.1:9",
        "10.255.255.1:9",
    ]
    .iter()
    .find_map(|target| {
        let s = UdpSocket::bind("0.0.0.0:0").ok()?;
        s.connect(target).ok()?;
        let ip = s.local_addr().ok()?.ip();
        (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
    })
}

/// What a gateway reports: 5 allowed, 2 denied, 1 failed handshake for
/// service `api`, trusting this CA's root and another CA.
fn report(root_fp: &str, root_subject: &str) -> Value {
    json!({
        "service": "api",
        "trust": [format!("{root_fp} {root_subject}"), format!("{} CN=Other CA", "0".repeat(64))],
        "counts": [
            {"client": "spiffe://example.org/web", "kind": "allowed", "reason": "", "count": 5},
            {"client": "spiffe://example.org/evil", "kind": "denied", "reason": "no matching rule", "count": 2},
            {"client": "unauthenticated", "kind": "failed", "reason": "no_client_cert", "count": 1},
        ],
    })
}

fn post_telemetry(sb: &Sandbox, c: &Path, srv: &Server, body: &Value, cert: &str) {
    std::fs::write(sb.path("report.json"), body.to_string()).unwrap();
    let (crt, key) = (format!("{cert}.crt"), format!("{cert}.key"));
    let h = curl(
        sb,
        c,
        &srv.url("/v1/telemetry"),
        &[
            "--cert",
            &crt,
            "--key",
            &key,
            "-H",
            "content-type: application/json",
            "--data-binary",
            "@report.json",
        ],
    );
    assert_eq!(h.status, 200, "{}", h.body);
}

// === pages against the store ===

#[test]
fn every_page_and_its_json_show_what_the_store_holds() {
    let Some(c) = tool("curl") else { return };
    let sb = Sandbox::new();
    let root_fp = init(&sb);
    issue(
        &sb,
        &[
            "--spiffe-id",
            ADMIN,
            "--profile",
            "client",
            "--out",
            "admin",
        ],
    );
    let long = issue(
        &sb,
        &[
            "--dns",
            "long.example.org",
            "--lifetime",
            "72h",
            "--out",
            "long",
        ],
    );
    let gone = issue(&sb, &["--dns", "gone.example.org", "--out", "gone"]);
    revoke(&sb, &gone, "keyCompromise");
    let srv = Server::start(&sb, "127.0.0.1");
    let now = OffsetDateTime::now_utc();

    // The overview's counts are `ca list`'s (which includes the HTTPS
    // certificate `ca serve` issued itself).
    let list = sb.ok(&["ca", "list", "--dir", "ca", "--json"]).json();
    let list = list.as_array().unwrap();
    let valid: Vec<&Value> = list.iter().filter(|c| c["status"] == "valid").collect();
    let expiring = valid
        .iter()
        .filter(|c| time_of(&c["not_after"]) <= now + time::Duration::days(7))
        .count() as i64;
    let expected = json!({
        "active": valid.len(),
        "expiring_7d": expiring,
        "expired": 0,
        "revoked": 1,
    });
    assert_eq!((valid.len(), expiring), (3, 2), "{list:?}");
    let overview = api(&sb, &c, &srv, "/ui/api/overview", &ADMIN_CERT);
    assert_eq!(overview["certificates"], expected, "{overview}");
    assert_eq!(overview["handshakes"]["success_rate"], Value::Null);
    let html = page(&sb, &c, &srv, "/ui/", &ADMIN_CERT);
    assert_eq!(card(&html, "active"), 3);
    assert_eq!(card(&html, "expiring-within-7-days"), 2);
    assert_eq!(card(&html, "expired"), 0);
    assert_eq!(card(&html, "revoked"), 1);
    assert!(
        html.contains("spiffe://example.org/admin (admin certificate"),
        "{html}"
    );
    let r = curl(&sb, &c, &srv.url("/ui"), &ADMIN_CERT);
    assert_eq!((r.status, r.header("location")), (308, "/ui/"));
    assert_secure(&r, "/ui");

    // Expiry: per UTC day from the start of today, unrevoked only.
    let today = now.replace_time(time::Time::MIDNIGHT);
    let mut per_day: BTreeMap<String, i64> = BTreeMap::new();
    for c in &valid {
        if time_of(&c["not_after"]) <= today + time::Duration::days(30) {
            *per_day
                .entry(c["not_after"].as_str().unwrap()[..10].to_string())
                .or_default() += 1;
        }
    }
    let expiry = api(&sb, &c, &srv, "/ui/api/expiry?days=30", &[]);
    let days = expiry["per_day"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(days[0]["date"], today.date().to_string());
    let shown: BTreeMap<String, i64> = days
        .iter()
        .filter(|d| d["count"] != 0)
        .map(|d| {
            (
                d["date"].as_str().unwrap().to_string(),
                d["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shown, per_day, "{expiry}");
    assert_eq!(expiry["total"], 2);
    let long_day = &list.iter().find(|c| c["serial"] == long.as_str()).unwrap()["not_after"]
        .as_str()
        .unwrap()[..10];
    let html = page(&sb, &c, &srv, "/ui/expiry?days=30", &[]);
    assert!(html.contains("id=\"expiry-chart\""), "{html}");
    for (date, n) in &per_day {
        assert!(
            html.contains(&format!("<title>{date}: {n} expiring</title>")),
            "{date}\n{html}"
        );
    }
    assert!(
        html.contains(&format!("<title>{long_day}: 1 expiring</title>")),
        "{html}"
    );
    // Ninety days reach the CA's own 30-day HTTPS certificate.
    assert_eq!(
        api(&sb, &c, &srv, "/ui/api/expiry?days=90", &[])["total"],
        3
    );
    refused(&sb, &c, &srv, "/ui/expiry?days=0", &[], 400, "malformed");
    refused(
        &sb,
        &c,
        &srv,
        "/ui/api/expiry?days=many",
        &[],
        400,
        "malformed",
    );

    // A certificate's page: chain, names, fingerprints, status, audit.
    let inter = sb
        .ok(&["cert", "inspect", "ca/intermediate.crt", "--json"])
        .json()[0]
        .clone();
    let listed = list.iter().find(|c| c["serial"] == gone.as_str()).unwrap();
    let detail = api(&sb, &c, &srv, &format!("/ui/api/certificates/{gone}"), &[]);
    assert_eq!(detail["status"], "revoked");
    assert_eq!(detail["revocation_reason"], "keyCompromise");
    assert_eq!(detail["sha256_fingerprint"], listed["sha256_fingerprint"]);
    assert_eq!(
        detail["details"]["subject_alt_names"],
        json!(["DNS:gone.example.org"])
    );
    let chain: Vec<(&str, &str)> = detail["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["role"].as_str().unwrap(),
                l["sha256_fingerprint"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        chain,
        [
            ("leaf", listed["sha256_fingerprint"].as_str().unwrap()),
            (
                "intermediate",
                inter["sha256_fingerprint"].as_str().unwrap()
            ),
            ("root", root_fp.as_str()),
        ]
    );
    let actions: Vec<&str> = detail["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["issue", "revoke"], "{detail}");
    assert!(
        detail["audit"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("keyCompromise")
    );
    let html = page(&sb, &c, &srv, &format!("/ui/certificates/{gone}"), &[]);
    for needle in [
        "<span class=\"badge bad\">revoked</span>",
        "(keyCompromise)",
        "<code>DNS:gone.example.org</code>",
        listed["sha256_fingerprint"].as_str().unwrap(),
        detail["details"]["spki_sha256"].as_str().unwrap(),
        &root_fp,
        "<strong>issue</strong>",
        "<strong>revoke</strong>",
        "-----BEGIN CERTIFICATE-----",
    ] {
        assert!(html.contains(needle), "{needle}:\n{html}");
    }
    // Serials are accepted as OpenSSL prints them too.
    let colons: Vec<String> = gone
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).to_uppercase())
        .collect();
    let same = api(
        &sb,
        &c,
        &srv,
        &format!("/ui/api/certificates/{}", colons.join(":")),
        &[],
    );
    assert_eq!(same["serial"], gone.as_str());
    refused(
        &sb,
        &c,
        &srv,
        "/ui/certificates/abcdef",
        &[],
        404,
        "not_found",
    );
    refused(
        &sb,
        &c,
        &srv,
        "/ui/api/certificates/xyz",
        &[],
        400,
        "malformed",
    );
    refused(&sb, &c, &srv, "/ui/no-such-page", &[], 404, "not_found");
    refused(&sb, &c, &srv, "/ui/api/no-such-data", &[], 404, "not_found");

    // Trust: root → intermediate → leaves; no gateway has reported yet.
    let trust = api(&sb, &c, &srv, "/ui/api/trust", &[]);
    assert_eq!(trust["root"]["sha256_fingerprint"], root_fp.as_str());
    assert_eq!(
        trust["intermediate"]["sha256_fingerprint"],
        inter["sha256_fingerprint"]
    );
    assert_eq!(trust["intermediate"]["subject"], inter["subject"]);
    assert_eq!(trust["leaves"], expected);
    assert_eq!(trust["gateways"], json!([]));
    let html = page(&sb, &c, &srv, "/ui/trust", &[]);
    assert!(html.contains("id=\"trust-graph\""), "{html}");
    assert!(html.contains(&root_fp), "{html}");
    assert!(html.contains("3 active, 2 expiring ≤7d"), "{html}");
    assert!(html.contains("No gateway has reported yet"), "{html}");

    // The other pages are there and empty where nothing was reported.
    let html = page(&sb, &c, &srv, "/ui/matrix", &[]);
    assert!(
        html.contains("No gateway has reported connections"),
        "{html}"
    );
    let html = page(&sb, &c, &srv, "/ui/certificates", &[]);
    assert!(html.contains(&format!("/ui/certificates/{gone}")), "{html}");
}

// === inventory ===

#[test]
fn inventory_searches_sorts_and_pages() {
    let Some(c) = tool("curl") else { return };
    let sb = Sandbox::new();
    init(&sb);
    let mut issued = BTreeMap::new();
    for i in 0..60 {
        let name = format!("svc-{i:02}.example.org");
        let serial = issue(&sb, &["--dns", &name, "--out", &format!("svc-{i:02}")]);
        issued.insert(serial, name);
    }
    let srv = Server::start(&sb, "127.0.0.1");

    // Fifty to a page; the pager's links keep the search and go on.
    let first = api(&sb, &c, &srv, "/ui/api/certificates?q=svc-", &[]);
    assert_eq!(
        (first["total"].as_i64(), first["pages"].as_i64()),
        (Some(60), Some(2))
    );
    assert_eq!(first["items"].as_array().unwrap().len(), 50);
    let html = page(&sb, &c, &srv, "/ui/certificates?q=svc-", &[]);
    assert_eq!(
        html.matches("<tr><td><a href=\"/ui/certificates/").count(),
        50
    );
    assert!(html.contains("page 1 of 2 (60 in all)"), "{html}");
    assert!(rel_link(&html, "prev").is_none());
    let next = rel_link(&html, "next").unwrap();
    assert_eq!(
        next,
        "/ui/certificates?q=svc-&sort=not_after&dir=asc&page=2"
    );
    let html2 = page(&sb, &c, &srv, &next, &[]);
    assert_eq!(
        html2.matches("<tr><td><a href=\"/ui/certificates/").count(),
        10
    );
    assert!(html2.contains("page 2 of 2 (60 in all)"), "{html2}");
    assert!(rel_link(&html2, "next").is_none());
    assert_eq!(
        rel_link(&html2, "prev").unwrap(),
        "/ui/certificates?q=svc-&sort=not_after&dir=asc&page=1"
    );
    let second = api(&sb, &c, &srv, &next.replace("/ui/", "/ui/api/"), &[]);
    let mut all: Vec<String> = serials(&first);
    all.extend(serials(&second));
    let all: BTreeSet<String> = all.into_iter().collect();
    assert_eq!(all, issued.keys().cloned().collect::<BTreeSet<_>>());

    // Sorting by each column, both ways.
    let by_name = api(
        &sb,
        &c,
        &srv,
        "/ui/api/certificates?q=svc&sort=identity&per_page=60",
        &[],
    );
    let names: Vec<&str> = by_name["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["identities"][0].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names[0], "DNS:svc-00.example.org");
    let desc = api(
        &sb,
        &c,
        &srv,
        "/ui/api/certificates?q=svc&sort=identity&dir=desc",
        &[],
    );
    assert_eq!(desc["items"][0]["identities"][0], "DNS:svc-59.example.org");
    let by_serial = api(
        &sb,
        &c,
        &srv,
        "/ui/api/certificates?q=svc&sort=serial&per_page=60",
        &[],
    );
    assert_eq!(
        serials(&by_serial),
        issued.keys().cloned().collect::<Vec<_>>()
    );
    let by_serial_desc = api(
        &sb,
        &c,
        &srv,
        "/ui/api/certificates?q=svc&sort=serial&dir=desc",
        &[],
    );
    assert_eq!(serials(&by_serial_desc)[0], *issued.keys().last().unwrap());
    for sort in ["not_after", "issued_at", "profile"] {
        let v = api(
            &sb,
            &c,
            &srv,
            &format!("/ui/api/certificates?sort={sort}&dir=desc"),
            &[],
        );
        assert_eq!(
            (v["sort"].as_str(), v["dir"].as_str()),
            (Some(sort), Some("desc"))
        );
    }
    // The current column's header flips the order; the others sort up.
    let html = page(
        &sb,
        &c,
        &srv,
        "/ui/certificates?q=svc&sort=serial&dir=asc",
        &[],
    );
    assert!(
        html.contains(
            "<th><a href=\"/ui/certificates?q=svc&amp;sort=serial&amp;dir=desc\">serial</a> ▲</th>"
        ),
        "{html}"
    );
    assert!(
        html.contains(
            "<th><a href=\"/ui/certificates?q=svc&amp;sort=identity&amp;dir=asc\">identity</a></th>"
        ),
        "{html}"
    );

    // Search: by name (any case), by part of a serial.
    let one = api(&sb, &c, &srv, "/ui/api/certificates?q=SVC-07", &[]);
    assert_eq!(one["total"], 1);
    assert_eq!(one["items"][0]["identities"][0], "DNS:svc-07.example.org");
    let (serial, _) = issued.iter().next().unwrap();
    let found = api(
        &sb,
        &c,
        &srv,
        &format!("/ui/api/certificates?q={}", &serial[4..20]),
        &[],
    );
    assert!(serials(&found).contains(serial), "{found}");
    let html = page(&sb, &c, &srv, "/ui/certificates?q=svc-07", &[]);
    assert!(html.contains("1 certificate matches."), "{html}");
    assert!(html.contains("value=\"svc-07\""), "{html}");

    // Status filter, and a smaller page size kept across pages.
    for (serial, _) in issued.iter().take(3) {
        revoke(&sb, serial, "superseded");
    }
    let revoked = api(&sb, &c, &srv, "/ui/api/certificates?status=revoked", &[]);
    assert_eq!(revoked["total"], 3);
    assert_eq!(revoked["items"][0]["status"], "revoked");
    let valid = api(
        &sb,
        &c,
        &srv,
        "/ui/api/certificates?q=svc&status=valid",
        &[],
    );
    assert_eq!(valid["total"], 57);
    let small = api(
        &sb,
        &c,
        &srv,
        "/ui/api/certificates?q=svc&per_page=7&page=9",
        &[],
    );
    assert_eq!(
        (
            small["pages"].as_i64(),
            small["items"].as_array().unwrap().len()
        ),
        (Some(9), 4)
    );
    let html = page(
        &sb,
        &c,
        &srv,
        "/ui/certificates?q=svc&per_page=7&page=2",
        &[],
    );
    assert_eq!(
        rel_link(&html, "next").unwrap(),
        "/ui/certificates?q=svc&sort=not_after&dir=asc&per_page=7&page=3"
    );

    for bad in [
        "/ui/certificates?sort=colour",
        "/ui/certificates?dir=up",
        "/ui/certificates?status=lost",
        "/ui/api/certificates?page=0",
        "/ui/api/certificates?per_page=501",
    ] {
        refused(&sb, &c, &srv, bad, &[], 400, "malformed");
    }
}

// === telemetry ===

#[test]
fn gateway_telemetry_shows_in_overview_matrix_and_trust() {
    let Some(c) = tool("curl") else { return };
    let sb = Sandbox::new();
    let root_fp = init(&sb);
    issue(
        &sb,
        &["--spiffe-id", "spiffe://example.org/gw", "--out", "gw"],
    );
    let root = sb.ok(&["cert", "inspect", "ca/root.crt", "--json"]).json()[0].clone();
    let root_subject = root["subject"].as_str().unwrap();
    let srv = Server::start(&sb, "127.0.0.1");
    post_telemetry(&sb, &c, &srv, &report(&root_fp, root_subject), "gw");

    // Success rate: 5 allowed of 5 + 1 failed; the denials are apart.
    let overview = api(&sb, &c, &srv, "/ui/api/overview", &[]);
    let h = &overview["handshakes"];
    assert_eq!(
        (
            h["allowed"].as_i64(),
            h["denied"].as_i64(),
            h["failed"].as_i64()
        ),
        (Some(5), Some(2), Some(1))
    );
    assert!(
        (h["success_rate"].as_f64().unwrap() - 5.0 / 6.0).abs() < 1e-9,
        "{h}"
    );
    assert_eq!(
        overview["top_reasons"],
        json!([
            {"kind": "denied", "reason": "no matching rule", "count": 2},
            {"kind": "failed", "reason": "no_client_cert", "count": 1},
        ])
    );
    let html = page(&sb, &c, &srv, "/ui/", &[]);
    assert!(html.contains("<div class=\"n\">83.3%</div>"), "{html}");
    assert!(
        html.contains("<code>no matching rule</code></td><td class=\"num\">2</td>"),
        "{html}"
    );
    assert!(
        html.contains("<code>no_client_cert</code></td><td class=\"num\">1</td>"),
        "{html}"
    );

    // The matrix: clients × services, three numbers per cell.
    let matrix = api(&sb, &c, &srv, "/ui/api/matrix?since=1h", &[]);
    assert_eq!(matrix["since"], "1h");
    assert_eq!(
        matrix["clients"],
        json!([
            "spiffe://example.org/evil",
            "spiffe://example.org/web",
            "unauthenticated"
        ])
    );
    assert_eq!(matrix["services"], json!(["api"]));
    assert_eq!(
        matrix["cells"],
        json!([
            {"client": "spiffe://example.org/evil", "service": "api", "allowed": 0, "denied": 2, "failed": 0},
            {"client": "spiffe://example.org/web", "service": "api", "allowed": 5, "denied": 0, "failed": 0},
            {"client": "unauthenticated", "service": "api", "allowed": 0, "denied": 0, "failed": 1},
        ])
    );
    assert_eq!(
        api(&sb, &c, &srv, "/ui/api/matrix?since=7d", &[])["cells"],
        matrix["cells"]
    );
    let html = page(&sb, &c, &srv, "/ui/matrix?since=1h", &[]);
    let web_row = &html[html.find("<code>spiffe://example.org/web</code>").unwrap()..];
    assert!(
        web_row.contains("<span class=\"allowed\">5</span> / <span class=\"denied\">0</span> / <span class=\"failed\">0</span>"),
        "{html}"
    );
    let drill = "/ui/matrix/cell?client=spiffe%3A%2F%2Fexample.org%2Fevil&service=api&since=1h";
    assert!(html.contains(&drill.replace('&', "&amp;")), "{html}");
    let cell = page(&sb, &c, &srv, drill, &[]);
    assert!(
        cell.contains("<code>no matching rule</code></td><td class=\"num\">2</td>"),
        "{cell}"
    );
    let cell = api(&sb, &c, &srv, &drill.replace("/ui/", "/ui/api/"), &[]);
    assert_eq!(cell["denied"], 2);
    assert_eq!(
        cell["reasons"],
        json!([{"kind": "denied", "reason": "no matching rule", "count": 2}])
    );
    // A pair that never talked is an empty cell; a cell must be named.
    let quiet = api(
        &sb,
        &c,
        &srv,
        "/ui/api/matrix/cell?client=nobody&service=api",
        &[],
    );
    assert_eq!(
        (
            quiet["allowed"].as_i64(),
            quiet["reasons"].as_array().unwrap().len()
        ),
        (Some(0), 0)
    );
    refused(
        &sb,
        &c,
        &srv,
        "/ui/matrix/cell?client=x",
        &[],
        400,
        "malformed",
    );
    refused(
        &sb,
        &c,
        &srv,
        "/ui/api/matrix?since=5m",
        &[],
        400,
        "malformed",
    );

    // Trust: the gateway trusts this CA's root and another CA.
    let trust = api(&sb, &c, &srv, "/ui/api/trust", &[]);
    let gw = &trust["gateways"][0];
    assert_eq!(
        (gw["gateway"].as_str(), gw["service"].as_str()),
        (Some("spiffe://example.org/gw"), Some("api"))
    );
    assert_eq!(gw["trusts_this_ca"], true);
    assert_eq!(gw["trust"][0]["matches"], "root");
    assert_eq!(gw["trust"][0]["subject"], root_subject);
    assert_eq!(gw["trust"][1]["matches"], Value::Null);
    assert_eq!(gw["trust"][1]["subject"], "CN=Other CA");
    let html = page(&sb, &c, &srv, "/ui/trust", &[]);
    assert!(
        html.contains("<span class=\"badge ok\">this CA's root</span>"),
        "{html}"
    );
    assert!(html.contains("another CA</span> CN=Other CA"), "{html}");
    assert!(html.contains("trusts this CA</text>"), "{html}");
}

// === audit ===

#[test]
fn audit_page_shows_the_chain_intact_then_broken() {
    let (Some(c), Some(python)) = (tool("curl"), tool("python3")) else {
        return;
    };
    let sb = Sandbox::new();
    init(&sb);
    let a = issue(&sb, &["--dns", "a.example.org", "--out", "a"]);
    issue(&sb, &["--dns", "b.example.org", "--out", "b"]);
    revoke(&sb, &a, "superseded");
    let srv = Server::start(&sb, "127.0.0.1");
    let verify = sb.ok(&["ca", "audit", "verify", "--dir", "ca"]).stdout;
    let n: i64 = verify
        .strip_prefix("audit chain intact: ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("{verify}"))
        .parse()
        .unwrap();
    assert!(n >= 4, "{verify}");

    let log = api(&sb, &c, &srv, "/ui/api/audit", &[]);
    assert_eq!(log["chain"]["intact"], true);
    assert_eq!(log["chain"]["records"], n);
    assert_eq!(log["chain"]["summary"], format!("intact, {n} records"));
    assert_eq!(log["total"], n);
    assert_eq!(log["records"][0]["seq"], n, "newest first: {log}");
    let html = page(&sb, &c, &srv, "/ui/audit", &[]);
    assert!(
        html.contains(&format!(
            "<p id=\"chain\" class=\"banner ok\">Audit chain intact, {n} records</p>"
        )),
        "{html}"
    );
    assert!(
        html.contains(&format!("href=\"/ui/certificates/{a}\"")),
        "{html}"
    );
    let two = api(&sb, &c, &srv, "/ui/api/audit?per_page=2&page=2", &[]);
    let seqs: Vec<i64> = two["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [n - 2, n - 3]);
    let html = page(&sb, &c, &srv, "/ui/audit?per_page=2", &[]);
    assert_eq!(
        rel_link(&html, "next").unwrap(),
        "/ui/audit?per_page=2&page=2"
    );

    // Someone edits the first record behind Symbolon's back.
    let (code, out) = run_tool(
        &sb,
        &python,
        &[
            "-c",
            "import sqlite3; c = sqlite3.connect('ca/symbolon.db'); \
             c.execute(\"UPDATE audit SET actor = 'x' WHERE seq = 1\"); c.commit()",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let log = api(&sb, &c, &srv, "/ui/api/audit", &[]);
    assert_eq!(log["chain"]["intact"], false);
    assert_eq!(log["chain"]["broken_at"], 1);
    let summary = log["chain"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("BROKEN at record #1: "), "{summary}");
    assert!(summary.contains("edited"), "{summary}");
    let html = page(&sb, &c, &srv, "/ui/audit", &[]);
    assert!(
        html.contains("<p id=\"chain\" class=\"banner bad\">Audit chain BROKEN at record #1: "),
        "{html}"
    );
}

// === access ===

#[test]
fn access_needs_an_admin_certificate_or_loopback() {
    let Some(c) = tool("curl") else { return };
    let sb = Sandbox::new();
    init(&sb);
    let admin = issue(
        &sb,
        &[
            "--spiffe-id",
            ADMIN,
            "--profile",
            "client",
            "--out",
            "admin",
        ],
    );
    issue(
        &sb,
        &[
            "--spiffe-id",
            "spiffe://example.org/web",
            "--profile",
            "client",
            "--out",
            "web",
        ],
    );
    // Listening on every address, so it can be reached from a non-loopback one.
    let srv = Server::start(&sb, "0.0.0.0");
    let web = ["--cert", "web.crt", "--key", "web.key"];

    // From this machine without a certificate: allowed.
    let html = page(&sb, &c, &srv, "/ui/", &[]);
    assert!(
        html.contains("local access (loopback, no client certificate)"),
        "{html}"
    );
    api(&sb, &c, &srv, "/ui/api/overview", &[]);
    page(&sb, &c, &srv, "/ui/", &ADMIN_CERT);

    // A certificate that is not an admin's is refused everywhere, before
    // anything about the request is looked at.
    for path in [
        "/ui/",
        "/ui/certificates?sort=bogus",
        "/ui/certificates/00",
        "/ui/expiry",
        "/ui/trust",
        "/ui/matrix",
        "/ui/matrix/cell",
        "/ui/audit",
        "/ui/nope",
        "/ui/api/overview",
        "/ui/api/certificates",
        "/ui/api/certificates/00",
        "/ui/api/expiry?days=-1",
        "/ui/api/trust",
        "/ui/api/matrix",
        "/ui/api/matrix/cell",
        "/ui/api/audit",
    ] {
        refused(&sb, &c, &srv, path, &web, 403, "not_admin");
    }
    let h = refused(&sb, &c, &srv, "/ui/", &web, 403, "not_admin");
    assert!(
        h.body.contains("spiffe://example.org/web is not an admin"),
        "{}",
        h.body
    );
    assert!(h.body.contains("How to get access"), "{}", h.body);
    assert!(
        h.body.contains("--profile client --out admin"),
        "{}",
        h.body
    );

    // From another address: only with the admin certificate.
    match non_loopback_ip() {
        None => {
            eprintln!("SKIPPED (non-loopback access): this machine has no non-loopback address")
        }
        Some(ip) => {
            let resolve = format!("localhost:{}:{ip}", srv.port);
            let remote = ["--resolve", resolve.as_str()];
            let h = refused(&sb, &c, &srv, "/ui/", &remote, 403, "admin_required");
            assert!(h.body.contains("How to get access"), "{}", h.body);
            refused(
                &sb,
                &c,
                &srv,
                "/ui/api/audit",
                &remote,
                403,
                "admin_required",
            );
            let mut as_admin = remote.to_vec();
            as_admin.extend_from_slice(&ADMIN_CERT);
            let html = page(&sb, &c, &srv, "/ui/certificates", &as_admin);
            assert!(
                html.contains(&format!("(admin certificate {admin})")),
                "{html}"
            );
        }
    }

    // A revoked admin certificate is refused at once, even from loopback.
    revoke(&sb, &admin, "keyCompromise");
    refused(&sb, &c, &srv, "/ui/", &ADMIN_CERT, 403, "revoked");
    refused(
        &sb,
        &c,
        &srv,
        "/ui/api/overview",
        &ADMIN_CERT,
        403,
        "revoked",
    );
}

// === escaping ===

#[test]
fn names_from_certificates_and_gateways_are_escaped() {
    let Some(c) = tool("curl") else { return };
    let sb = Sandbox::new();
    let root_fp = init(&sb);
    let xss = issue(
        &sb,
        &[
            "--dns",
            "xss.example.org",
            "--cn",
            "<script>x</script>",
            "--out",
            "xss",
        ],
    );
    issue(
        &sb,
        &["--spiffe-id", "spiffe://example.org/gw", "--out", "gw"],
    );
    let srv = Server::start(&sb, "127.0.0.1");
    let evil = "<img src=x onerror=alert(1)>";
    let body = json!({
        "service": "<b>svc</b>",
        "trust": [format!("{root_fp} CN=\"quoted\" & <root>")],
        "counts": [{"client": evil, "kind": "failed", "reason": "<i>why</i>", "count": 3}],
    });
    post_telemetry(&sb, &c, &srv, &body, "gw");

    let escaped = "CN=&lt;script&gt;x&lt;/script&gt;";
    let html = page(&sb, &c, &srv, "/ui/certificates?q=script", &[]);
    assert!(html.contains(escaped), "{html}");
    let html = page(&sb, &c, &srv, &format!("/ui/certificates/{xss}"), &[]);
    assert!(html.contains(&format!("<td>{escaped}</td>")), "{html}");
    let html = page(&sb, &c, &srv, "/ui/matrix", &[]);
    assert!(
        html.contains("<code>&lt;img src=x onerror=alert(1)&gt;</code>"),
        "{html}"
    );
    assert!(html.contains("<th>&lt;b&gt;svc&lt;/b&gt;</th>"), "{html}");
    assert!(
        html.contains("client=%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"),
        "{html}"
    );
    let html = page(&sb, &c, &srv, "/ui/", &[]);
    assert!(
        html.contains("<code>&lt;i&gt;why&lt;/i&gt;</code>"),
        "{html}"
    );
    let html = page(&sb, &c, &srv, "/ui/trust", &[]);
    assert!(
        html.contains("CN=&quot;quoted&quot; &amp; &lt;root&gt;"),
        "{html}"
    );
    assert!(!html.contains("<b>svc"), "{html}");
    page(&sb, &c, &srv, "/ui/audit", &[]);
    // The JSON twins carry the values as they are.
    let cert = api(&sb, &c, &srv, &format!("/ui/api/certificates/{xss}"), &[]);
    assert_eq!(cert["subject"], "CN=<script>x</script>");
    assert_eq!(
        api(&sb, &c, &srv, "/ui/api/matrix", &[])["clients"],
        json!([evil])
    );
}

// === in a browser ===

/// Every page in headless Chromium: it renders, and the browser reports no
/// Content-Security-Policy violation (an inline style the policy blocks, a
/// script, a request to another host). TLS is checked by the curl tests;
/// here the certificate is not the subject, so Chromium skips checking it.
#[test]
fn pages_render_in_chromium_without_policy_violations() {
    let (Some(c), Some(chromium)) = (tool("curl"), tool("chromium")) else {
        return;
    };
    let sb = Sandbox::new();
    let root_fp = init(&sb);
    issue(
        &sb,
        &["--spiffe-id", "spiffe://example.org/gw", "--out", "gw"],
    );
    let serial = issue(
        &sb,
        &["--dns", "a.example.org", "--lifetime", "72h", "--out", "a"],
    );
    let srv = Server::start(&sb, "127.0.0.1");
    post_telemetry(&sb, &c, &srv, &report(&root_fp, "CN=Test Root CA"), "gw");

    for (path, expect) in [
        ("/ui/", "83.3%"),
        ("/ui/certificates", "DNS:a.example.org"),
        (
            &format!("/ui/certificates/{serial}"),
            "-----BEGIN CERTIFICATE-----",
        ),
        ("/ui/expiry", "id=\"expiry-chart\""),
        ("/ui/trust", "id=\"trust-graph\""),
        ("/ui/matrix", "spiffe://example.org/evil"),
        (
            "/ui/matrix/cell?client=unauthenticated&service=api",
            "no_client_cert",
        ),
        ("/ui/audit", "Audit chain intact"),
    ] {
        let profile = sb.path("chromium-profile");
        let o = Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--ignore-certificate-errors",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(srv.url(path))
            .output()
            .unwrap();
        let (dom, log) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert!(o.status.success(), "chromium {path}:\n{log}");
        assert!(
            dom.contains(expect),
            "{path}: no {expect:?} in\n{dom}\n{log}"
        );
        let violations: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("Content Security Policy"))
            .collect();
        assert!(violations.is_empty(), "{path}: {violations:#?}");
    }
}
