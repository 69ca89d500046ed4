//! The CA's control plane: `ca serve` run as a child process and driven by
//! independent clients (curl, openssl) and by the real `symbolon enroll`
//! and `symbolon agent`. Every refusal is checked for its exact status and
//! reason, and for leaving nothing behind (no files, no store records).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::gw_support::{CaServe, free_port};
use crate::support::{Run, Sandbox, run_tool, tool};

const BIN: &str = env!("CARGO_BIN_EXE_symbolon");
pub(crate) const DEV: &str = "spiffe://example.org/dev";
const ADMIN: &str = "spiffe://example.org/admin";

// === fixtures ===

/// Another `symbolon` process in the background (the agent), killed on
/// drop, with stdout and stderr in a log file.
struct Background {
    child: Child,
    log: PathBuf,
}

impl Background {
    fn spawn(sb: &Sandbox, args: &[&str], log: &str) -> Background {
        let log = sb.path(log);
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(args)
            .current_dir(sb.dir.path())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        Background { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for exit (bounded) and returns the exit code.
    fn wait(&mut self, limit: Duration) -> i32 {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                started.elapsed() < limit,
                "still running after {limit:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ca init` of a test CA in `ca/`; returns the root fingerprint exactly as
/// `ca init` prints it (what an operator would hand to enrolling clients).
fn new_ca(sb: &Sandbox) -> String {
    fingerprint_in(&sb.init_ca(&[]).stdout)
}

pub(crate) fn fingerprint_in(out: &str) -> String {
    let fp = out
        .lines()
        .find_map(|l| l.strip_prefix("Root fingerprint (SHA-256): "))
        .unwrap_or_else(|| panic!("no root fingerprint in:\n{out}"))
        .trim()
        .to_string();
    assert_eq!(fp.len(), 64, "{fp}");
    fp
}

/// A one-time token from `ca token` (stdout is the token alone).
pub(crate) fn token(sb: &Sandbox, dir: &str, identity: &str, ttl: &str) -> String {
    let r = sb.ok(&[
        "ca",
        "token",
        "--dir",
        dir,
        "--identity",
        identity,
        "--ttl",
        ttl,
    ]);
    let t = r.stdout.trim().to_string();
    assert!(t.starts_with("symbolon1."), "{}", r.all());
    t
}

pub(crate) fn enroll(sb: &Sandbox, srv: &CaServe, fp: &str, token: &str, out: &str) -> Run {
    sb.run(&[
        "enroll",
        "--ca",
        &srv.url(),
        "--fingerprint",
        fp,
        "--token",
        token,
        "--out",
        out,
    ])
}

/// `ca list --json` of `ca/`: what the store has recorded.
fn ca_list(sb: &Sandbox) -> Value {
    sb.ok(&["ca", "list", "--dir", "ca", "--json"]).json()
}

fn listed(list: &Value, serial: &str) -> Option<Value> {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["serial"] == serial)
        .cloned()
}

/// The first object `cert inspect --json` reports (the leaf, or the CRL).
fn inspect(sb: &Sandbox, path: &str) -> Value {
    sb.ok(&["cert", "inspect", path, "--json"]).json()[0].clone()
}

fn serial_of(sb: &Sandbox, path: &str) -> String {
    inspect(sb, path)["serial"].as_str().unwrap().to_string()
}

fn not_after_of(sb: &Sandbox, path: &str) -> OffsetDateTime {
    OffsetDateTime::parse(inspect(sb, path)["not_after"].as_str().unwrap(), &Rfc3339).unwrap()
}

/// An --out directory after a refused enroll: absent, or empty.
fn assert_nothing_written(sb: &Sandbox, out: &str) {
    let p = sb.path(out);
    if p.exists() {
        let left: Vec<_> = std::fs::read_dir(&p).unwrap().collect();
        assert!(left.is_empty(), "{out} is not empty: {left:?}");
    }
}

/// Issues a certificate from the CLI (e.g. the admin client certificate).
fn issue(sb: &Sandbox, spiffe_id: &str, profile: &str, out: &str) -> String {
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--spiffe-id",
        spiffe_id,
        "--profile",
        profile,
        "--out",
        out,
    ]);
    serial_of(sb, &format!("{out}.crt"))
}

pub(crate) struct Http {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Http {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}:\n{}", self.status, self.body))
    }
}

/// curl with the CA's root as the only trust anchor, a time limit, and the
/// status code appended on a last line.
pub(crate) fn curl(sb: &Sandbox, curl: &Path, args: &[&str]) -> Http {
    let mut all = vec![
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        "ca/root.crt",
        "-w",
        "\n%{http_code}",
    ];
    all.extend_from_slice(args);
    let (code, out) = run_tool(sb, curl, &all);
    assert_eq!(code, 0, "curl {args:?} failed:\n{out}");
    let (body, status) = out.rsplit_once('\n').unwrap();
    Http {
        status: status.trim().parse().unwrap(),
        body: body.to_string(),
    }
}

/// POSTs `body` (raw bytes, sent as JSON) to `url`, with extra curl args
/// (e.g. a client certificate).
pub(crate) fn post_raw(sb: &Sandbox, c: &Path, url: &str, body: &[u8], extra: &[&str]) -> Http {
    std::fs::write(sb.path("req.json"), body).unwrap();
    let mut args = vec![
        "-H",
        "content-type: application/json",
        "--data-binary",
        "@req.json",
    ];
    args.extend_from_slice(extra);
    args.push(url);
    curl(sb, c, &args)
}

pub(crate) fn post(sb: &Sandbox, c: &Path, url: &str, body: &Value, extra: &[&str]) -> Http {
    post_raw(sb, c, url, body.to_string().as_bytes(), extra)
}

/// A refusal: exactly this status, JSON with this reason and a sentence.
fn assert_refused(h: &Http, status: u16, reason: &str) -> Value {
    assert_eq!(h.status, status, "{}", h.body);
    let v = h.json();
    assert_eq!(v["reason"], reason, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v
}

/// A PEM CSR made by OpenSSL (independent of the product) for `san`.
pub(crate) fn openssl_csr(sb: &Sandbox, openssl: &Path, name: &str, san: &str) -> String {
    let (code, out) = run_tool(
        sb,
        openssl,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            &format!("subjectAltName={san}"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    std::fs::read_to_string(sb.path(&format!("{name}.csr"))).unwrap()
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
/// The sample may carry further labels, so that adding a label to a metric
/// does not break tests about the others.
fn sample(text: &str, series: &str) -> Option<f64> {
    let (name, labels) = split_series(series);
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        let (n, have) = split_series(s);
        (n == name && labels.iter().all(|x| have.contains(x))).then(|| v.trim().parse().unwrap())
    })
}

fn split_series(s: &str) -> (&str, Vec<&str>) {
    match s.split_once('{') {
        Some((n, rest)) => (
            n,
            rest.trim_end_matches('}')
                .split(',')
                .filter(|x| !x.is_empty())
                .collect(),
        ),
        None => (s, Vec::new()),
    }
}

// base64url without padding, as tokens use it (no base64 crate among the
// test dependencies).
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64url_decode(s: &str) -> Vec<u8> {
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in s.bytes() {
        let v = B64.iter().position(|&b| b == c).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn b64url_encode(data: &[u8]) -> String {
    let (mut out, mut acc, mut bits) = (String::new(), 0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(B64[((acc >> bits) & 63) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(B64[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

/// The token with one character of its claims changed (`from` → `to` in
/// the decoded JSON), MAC left as it was.
fn forge(token: &str, from: &str, to: &str) -> String {
    let mut parts = token.split('.');
    let (prefix, claims, mac) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let decoded = b64url_decode(claims);
    // The helper itself must be right, or the test would prove nothing.
    assert_eq!(b64url_encode(&decoded), claims);
    let json = String::from_utf8(decoded).unwrap();
    assert!(json.contains(from), "{json}");
    let altered = json.replace(from, to);
    assert_eq!(altered.len(), json.len());
    format!("{prefix}.{}.{mac}", b64url_encode(altered.as_bytes()))
}

// === 1. enroll → renew → revoke ===

#[test]
fn enroll_renew_revoke_end_to_end() {
    let (Some(curl_bin), Some(openssl)) = (tool("curl"), tool("openssl")) else {
        return;
    };
    let sb = Sandbox::new();
    let fp = new_ca(&sb);
    let srv = CaServe::start(&sb, "ca");

    let tok = token(&sb, "ca", DEV, "15m");
    let r = enroll(&sb, &srv, &fp, &tok, "dev");
    assert_eq!(r.code, 0, "{}\n{}", r.all(), srv.log_text());
    assert!(
        r.stdout.contains(&format!("Enrolled {DEV} (serial ")),
        "{}",
        r.all()
    );
    let mut files: Vec<_> = std::fs::read_dir(sb.path("dev"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["ca.pem", "cert.pem", "key.pem"]);
    let mode = std::fs::metadata(sb.path("dev/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key.pem mode {mode:o}");
    // ca.pem is the pinned root, nothing else.
    assert_eq!(inspect(&sb, "dev/ca.pem")["sha256_fingerprint"], fp);
    sb.ok(&["cert", "verify", "dev/cert.pem", "--trust", "ca/root.crt"]);
    let leaf = inspect(&sb, "dev/cert.pem");
    assert_eq!(leaf["subject_alt_names"], json!([format!("URI:{DEV}")]));
    // The identity is in the SANs only; rcgen's placeholder subject
    // (CN=rcgen self signed cert) must not leak into the certificate.
    assert!(!leaf["subject"].to_string().contains("rcgen"), "{leaf}");
    let first = leaf["serial"].as_str().unwrap().to_string();
    assert!(r.stdout.contains(&first), "{}", r.all());
    let rec = listed(&ca_list(&sb), &first).expect("enrolled certificate not in ca list");
    assert_eq!(rec["identities"], json!([DEV]));
    assert_eq!(rec["status"], "valid");

    // Renewal: a new key and serial for the same identity; the old one
    // stays on record.
    let old_key = std::fs::read(sb.path("dev/key.pem")).unwrap();
    let r = sb.run(&["agent", "--ca", &srv.url(), "--dir", "dev", "--once"]);
    assert_eq!(r.code, 0, "{}\n{}", r.all(), srv.log_text());
    let renewed = inspect(&sb, "dev/cert.pem");
    let second = renewed["serial"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(renewed["subject_alt_names"], json!([format!("URI:{DEV}")]));
    assert!(
        !renewed["subject"].to_string().contains("rcgen"),
        "{renewed}"
    );
    assert_ne!(std::fs::read(sb.path("dev/key.pem")).unwrap(), old_key);
    sb.ok(&["cert", "verify", "dev/cert.pem", "--trust", "ca/root.crt"]);
    let list = ca_list(&sb);
    assert_eq!(listed(&list, &first).unwrap()["identities"], json!([DEV]));
    assert_eq!(listed(&list, &second).unwrap()["identities"], json!([DEV]));

    // Self-revocation over mTLS with the certificate itself.
    let h = post(
        &sb,
        &curl_bin,
        &format!("{}/v1/revoke", srv.url()),
        &json!({"serial": second, "reason": "keyCompromise"}),
        &["--cert", "dev/cert.pem", "--key", "dev/key.pem"],
    );
    assert_eq!(h.status, 200, "{}", h.body);
    let v = h.json();
    assert_eq!(v["serial"], second);
    assert_eq!(v["reason"], "keyCompromise");
    assert_eq!(v["already_revoked"], false);
    let crl_number = v["crl_number"].as_u64().expect("crl_number");

    let h = curl(
        &sb,
        &curl_bin,
        &["-o", "crl.der", &format!("{}/v1/crl", srv.url())],
    );
    assert_eq!(h.status, 200);
    let (code, text) = run_tool(
        &sb,
        &openssl,
        &["crl", "-inform", "DER", "-in", "crl.der", "-text", "-noout"],
    );
    assert_eq!(code, 0, "{text}");
    let want = second.to_ascii_uppercase();
    let at = text
        .find(&format!("Serial Number: {}", want.trim_start_matches('0')))
        .or_else(|| text.find(&format!("Serial Number: {want}")))
        .unwrap_or_else(|| panic!("serial {want} not in the CRL:\n{text}"));
    let entry: String = text[at..].lines().take(5).collect::<Vec<_>>().join("\n");
    assert!(entry.contains("Key Compromise"), "{entry}");
    assert_eq!(
        inspect(&sb, "crl.der")["crl_number"],
        crl_number.to_string()
    );

    // A revoked certificate cannot be renewed; nothing is replaced.
    let before = std::fs::read(sb.path("dev/cert.pem")).unwrap();
    let r = sb.run(&["agent", "--ca", &srv.url(), "--dir", "dev", "--once"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("revoked"), "{}", r.all());
    assert_eq!(std::fs::read(sb.path("dev/cert.pem")).unwrap(), before);
}

// === 2. enroll refusals ===

#[test]
fn enroll_refusals_write_and_record_nothing() {
    let sb = Sandbox::new();
    let fp = new_ca(&sb);
    let other_fp = fingerprint_in(&sb.init_plain_ca("other", &[]).stdout);
    assert_ne!(other_fp, fp);
    // Made first so the 11-second wait overlaps the other cases.
    let short = token(&sb, "ca", "spiffe://example.org/short", "10s");
    let short_made = Instant::now();
    let srv = CaServe::start(&sb, "ca");

    let refused = |tok: &str, out: &str, needles: &[&str]| {
        let before = ca_list(&sb);
        let r = enroll(&sb, &srv, &fp, tok, out);
        assert_eq!(r.code, 2, "{}", r.all());
        for n in needles {
            assert!(r.stderr.contains(n), "{n:?} not in:\n{}", r.all());
        }
        assert_nothing_written(&sb, out);
        assert_eq!(ca_list(&sb), before, "a refused enroll changed the store");
    };

    // Replay: the first use works, the second is refused.
    let tok = token(&sb, "ca", DEV, "15m");
    let r = enroll(&sb, &srv, &fp, &tok, "first");
    assert_eq!(r.code, 0, "{}", r.all());
    refused(&tok, "replay", &["403", "token_used"]);

    // One character of the claims changed; the MAC no longer matches.
    let tok = token(&sb, "ca", "spiffe://example.org/forged-a", "15m");
    refused(
        &forge(&tok, "/forged-a", "/forged-b"),
        "forged",
        &["403", "token_invalid"],
    );
    // The genuine token was not touched by the forgery attempt.
    let r = enroll(&sb, &srv, &fp, &tok, "genuine");
    assert_eq!(r.code, 0, "{}", r.all());

    // A token made by another CA (same trust domain, other token key).
    let foreign = token(&sb, "other", "spiffe://example.org/foreign", "15m");
    refused(&foreign, "foreign", &["403", "token_invalid"]);

    // A wrong pin (another CA's root): the handshake fails, so the token
    // is never sent and stays usable.
    let tok = token(&sb, "ca", "spiffe://example.org/pinned", "15m");
    let before = ca_list(&sb);
    let r = enroll(&sb, &srv, &other_fp, &tok, "wrongpin");
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("TLS"), "{}", r.all());
    assert_nothing_written(&sb, "wrongpin");
    assert_eq!(ca_list(&sb), before);
    let r = enroll(&sb, &srv, &fp, &tok, "pinned");
    assert_eq!(r.code, 0, "{}", r.all());

    // Expired: the minimum ttl is 10s.
    let wait = Duration::from_secs(11).saturating_sub(short_made.elapsed());
    std::thread::sleep(wait);
    refused(&short, "expired", &["403", "token_expired"]);
}

/// Regression: with a wrong --fingerprint the client's message does not say that
/// the pinned fingerprint was not presented.
#[test]
fn bug_wrong_fingerprint_message_names_the_pin() {
    let sb = Sandbox::new();
    new_ca(&sb);
    let srv = CaServe::start(&sb, "ca");
    let tok = token(&sb, "ca", DEV, "15m");
    let r = enroll(&sb, &srv, &"ab".repeat(32), &tok, "dev");
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("fingerprint"), "{}", r.all());
    assert!(r.stderr.contains(&"ab".repeat(32)), "{}", r.all());
}

/// Regression: pinning the intermediate's fingerprint (not the root's) passes the
/// handshake, burns the token and records a certificate, and only then does
/// enroll refuse to install it.
#[test]
fn bug_pinning_intermediate_burns_token() {
    let sb = Sandbox::new();
    let fp = new_ca(&sb);
    let srv = CaServe::start(&sb, "ca");
    let inter = inspect(&sb, "ca/intermediate.crt")["sha256_fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let tok = token(&sb, "ca", DEV, "15m");
    let before = ca_list(&sb);
    let r = enroll(&sb, &srv, &inter, &tok, "dev");
    assert_eq!(r.code, 2, "{}", r.all());
    assert_nothing_written(&sb, "dev");
    assert_eq!(
        ca_list(&sb),
        before,
        "a refused enroll recorded a certificate"
    );
    let r = enroll(&sb, &srv, &fp, &tok, "dev");
    assert_eq!(r.code, 0, "the token was burned:\n{}", r.all());
}

// === 3. API bad input ===

#[test]
fn api_refuses_bad_input_with_json_reasons() {
    let (Some(c), Some(openssl)) = (tool("curl"), tool("openssl")) else {
        return;
    };
    let sb = Sandbox::new();
    let fp = new_ca(&sb);
    let admin_serial = issue(&sb, ADMIN, "client", "admin");
    let srv = CaServe::start(&sb, "ca");
    let r = enroll(&sb, &srv, &fp, &token(&sb, "ca", DEV, "15m"), "dev");
    assert_eq!(r.code, 0, "{}", r.all());
    let dev_serial = serial_of(&sb, "dev/cert.pem");
    let url = |p: &str| format!("{}{p}", srv.url());
    let dev_cert = ["--cert", "dev/cert.pem", "--key", "dev/key.pem"];
    let admin_cert = ["--cert", "admin.crt", "--key", "admin.key"];

    // Each refusal: exact status and reason, and the store unchanged.
    let before = ca_list(&sb);
    let check = |h: Http, status: u16, reason: &str| -> Value {
        let v = assert_refused(&h, status, reason);
        assert_eq!(ca_list(&sb), before, "refusal {reason} changed the store");
        v
    };

    let tok = token(&sb, "ca", DEV, "15m");
    check(
        post_raw(&sb, &c, &url("/v1/enroll"), b"{bad", &[]),
        400,
        "malformed",
    );
    let v = check(
        post(
            &sb,
            &c,
            &url("/v1/enroll"),
            &json!({"token": tok, "csr": "x", "extra": 1}),
            &[],
        ),
        400,
        "malformed",
    );
    assert!(v["message"].as_str().unwrap().contains("extra"), "{v}");
    check(
        post(
            &sb,
            &c,
            &url("/v1/enroll"),
            &json!({"token": tok, "csr": "not a PEM block"}),
            &[],
        ),
        400,
        "bad_csr",
    );
    let evil = openssl_csr(&sb, &openssl, "evil", "DNS:evil.example.org");
    let v = check(
        post(
            &sb,
            &c,
            &url("/v1/enroll"),
            &json!({"token": tok, "csr": evil}),
            &[],
        ),
        403,
        "name_not_permitted",
    );
    assert!(
        v["message"].as_str().unwrap().contains("evil.example.org"),
        "{v}"
    );
    let big = json!({"token": tok, "csr": "A".repeat(70 * 1024)});
    check(
        post(&sb, &c, &url("/v1/enroll"), &big, &[]),
        413,
        "too_large",
    );
    // None of the refusals above consumed the token.
    let r = enroll(&sb, &srv, &fp, &tok, "dev2");
    assert_eq!(r.code, 0, "{}", r.all());
    let before = ca_list(&sb);
    let check = |h: Http, status: u16, reason: &str| -> Value {
        let v = assert_refused(&h, status, reason);
        assert_eq!(ca_list(&sb), before, "refusal {reason} changed the store");
        v
    };

    let csr = openssl_csr(&sb, &openssl, "renew", &format!("URI:{DEV}"));
    check(
        post(&sb, &c, &url("/v1/renew"), &json!({"csr": csr}), &[]),
        401,
        "no_client_cert",
    );

    check(
        curl(&sb, &c, &[&url("/v1/certificates")]),
        401,
        "no_client_cert",
    );
    let mut args = dev_cert.to_vec();
    let certs_url = url("/v1/certificates");
    args.push(&certs_url);
    check(curl(&sb, &c, &args), 403, "not_admin");
    let mut args = admin_cert.to_vec();
    args.push(&certs_url);
    let h = curl(&sb, &c, &args);
    assert_eq!(h.status, 200, "{}", h.body);
    let all = h.json();
    assert!(listed(&all, &dev_serial).is_some(), "{all}");
    assert!(listed(&all, &admin_serial).is_some(), "{all}");
    assert_eq!(
        all.as_array().unwrap().len(),
        before.as_array().unwrap().len()
    );

    // A non-admin may revoke only itself.
    check(
        post(
            &sb,
            &c,
            &url("/v1/revoke"),
            &json!({"serial": admin_serial}),
            &dev_cert,
        ),
        403,
        "not_admin",
    );
    check(
        post(
            &sb,
            &c,
            &url("/v1/tokens"),
            &json!({"identities": ["spiffe://example.org/x"]}),
            &dev_cert,
        ),
        403,
        "not_admin",
    );
    check(curl(&sb, &c, &[&url("/v1/nope")]), 404, "not_found");

    // An admin-made token works with the real client.
    let h = post(
        &sb,
        &c,
        &url("/v1/tokens"),
        &json!({"identities": ["spiffe://example.org/viaapi"], "ttl": "5m"}),
        &admin_cert,
    );
    assert_eq!(h.status, 200, "{}", h.body);
    let tok = h.json()["token"].as_str().unwrap().to_string();
    let r = enroll(&sb, &srv, &fp, &tok, "viaapi");
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        inspect(&sb, "viaapi/cert.pem")["subject_alt_names"],
        json!(["URI:spiffe://example.org/viaapi"])
    );
}

/// `json` followed by spaces up to exactly `len` bytes: still valid JSON,
/// so only its size can be the reason for a refusal.
fn padded_json(json: &Value, len: usize) -> Vec<u8> {
    let mut body = json.to_string().into_bytes();
    assert!(body.len() <= len);
    body.resize(len, b' ');
    body
}

#[test]
fn every_request_body_over_the_limit_is_refused_and_changes_nothing() {
    let (Some(c), Some(openssl)) = (tool("curl"), tool("openssl")) else {
        return;
    };
    const MAX: usize = symbolon_server::MAX_BODY;
    let sb = Sandbox::new();
    let fp = new_ca(&sb);
    issue(&sb, ADMIN, "client", "admin");
    let srv = CaServe::start(&sb, "ca");
    let r = enroll(&sb, &srv, &fp, &token(&sb, "ca", DEV, "15m"), "dev");
    assert_eq!(r.code, 0, "{}", r.all());
    let dev_serial = serial_of(&sb, "dev/cert.pem");
    let url = |p: &str| format!("{}{p}", srv.url());
    let dev = ["--cert", "dev/cert.pem", "--key", "dev/key.pem"];
    let admin = ["--cert", "admin.crt", "--key", "admin.key"];
    let tok = token(&sb, "ca", DEV, "15m");
    let before = ca_list(&sb);

    // Each endpoint with a body it would otherwise act on (issue, renew,
    // revoke, make a token, record a report), and the credentials it asks
    // for, so that only the size stands in the way.
    let enroll_csr = openssl_csr(&sb, &openssl, "big-enroll", &format!("URI:{DEV}"));
    let renew_csr = openssl_csr(&sb, &openssl, "big-renew", &format!("URI:{DEV}"));
    let cases: [(&str, Value, &[&str]); 5] = [
        ("/v1/enroll", json!({"token": tok, "csr": enroll_csr}), &[]),
        ("/v1/renew", json!({"csr": renew_csr}), &dev),
        (
            "/v1/revoke",
            json!({"serial": dev_serial, "reason": "keyCompromise"}),
            &admin,
        ),
        (
            "/v1/tokens",
            json!({"identities": [DEV], "ttl": "1h"}),
            &admin,
        ),
        (
            "/v1/telemetry",
            json!({"service": "api", "counts": []}),
            &dev,
        ),
    ];
    let chunked = ["-H", "transfer-encoding: chunked"];
    for (path, body, creds) in &cases {
        let big = padded_json(body, MAX + 1);
        // Announced by Content-Length, and streamed in chunks with no
        // length announced: both are cut off at the limit.
        for framing in [&[][..], &chunked[..]] {
            let extra = [*creds, framing].concat();
            let h = post_raw(&sb, &c, &url(path), &big, &extra);
            let v = assert_refused(&h, 413, "too_large");
            assert!(
                v["message"].as_str().unwrap().contains(&MAX.to_string()),
                "{path}: {v}"
            );
        }
    }
    // Nothing was issued, revoked or spent: the token still enrolls.
    assert_eq!(ca_list(&sb), before);
    let r = enroll(&sb, &srv, &fp, &tok, "dev2");
    assert_eq!(r.code, 0, "{}", r.all());

    // The limit is the limit: a body of exactly MAX bytes is read and
    // judged on its content (here a token that is not valid).
    let exact = padded_json(&json!({"token": "symbolon1.x", "csr": "x"}), MAX);
    let h = post_raw(&sb, &c, &url("/v1/enroll"), &exact, &[]);
    assert_refused(&h, 403, "token_invalid");
}

#[test]
fn token_failures_are_rate_limited() {
    let Some(c) = tool("curl") else { return };
    let sb = Sandbox::new();
    let fp = new_ca(&sb);
    let srv = CaServe::start(&sb, "ca");
    let url = format!("{}/v1/enroll", srv.url());
    let good = token(&sb, "ca", DEV, "15m");
    let bad = forge(&good, "/dev", "/dew");
    let body = json!({"token": bad, "csr": "x"});
    // 20 failures a minute are tolerated, each refused on its merits.
    for i in 0..20 {
        let h = post(&sb, &c, &url, &body, &[]);
        assert_eq!(h.status, 403, "attempt {i}: {}", h.body);
        assert_eq!(h.json()["reason"], "token_invalid");
    }
    let before = ca_list(&sb);
    assert_refused(&post(&sb, &c, &url, &body, &[]), 429, "rate_limited");
    // From now on even a valid token is turned away, without burning it.
    let r = enroll(&sb, &srv, &fp, &good, "dev");
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("rate_limited"), "{}", r.all());
    assert_nothing_written(&sb, "dev");
    assert_eq!(ca_list(&sb), before);
    let m = curl(&sb, &c, &[&format!("{}/metrics", srv.url())]);
    assert_eq!(
        sample(
            &m.body,
            "symbolon_ca_token_refusals_total{reason=\"rate_limited\"}"
        ),
        Some(2.0),
        "{}",
        m.body
    );
}

// === 4. CRL, roots, OpenAPI, metrics ===

#[test]
fn crl_roots_openapi_and_metrics() {
    let Some(c) = tool("curl") else { return };
    let sb = Sandbox::new();
    let fp = new_ca(&sb);
    issue(&sb, ADMIN, "client", "admin");
    let a = issue(&sb, "spiffe://example.org/a", "peer", "a");
    let b = issue(&sb, "spiffe://example.org/b", "peer", "b");
    let srv = CaServe::start(&sb, "ca");
    let url = |p: &str| format!("{}{p}", srv.url());

    let h = curl(&sb, &c, &[&url("/v1/roots")]);
    assert_eq!(h.status, 200);
    assert_eq!(
        h.body,
        std::fs::read_to_string(sb.path("ca/root.crt")).unwrap()
    );

    let crl = |name: &str| -> Value {
        let h = curl(&sb, &c, &["-o", name, &url("/v1/crl")]);
        assert_eq!(h.status, 200);
        inspect(&sb, name)
    };
    let number = |v: &Value| -> u64 { v["crl_number"].as_str().unwrap().parse().unwrap() };
    let revoked = |v: &Value| -> Vec<String> {
        let mut s: Vec<String> = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["serial"].as_str().unwrap().to_string())
            .collect();
        s.sort();
        s
    };
    let c0 = crl("crl0.der");
    assert_eq!(revoked(&c0), Vec::<String>::new());

    // The admin revokes a; b revokes itself.
    let h = post(
        &sb,
        &c,
        &url("/v1/revoke"),
        &json!({"serial": a, "reason": "superseded"}),
        &["--cert", "admin.crt", "--key", "admin.key"],
    );
    assert_eq!(h.status, 200, "{}", h.body);
    let c1 = crl("crl1.der");
    assert!(number(&c1) > number(&c0), "{c0}\n{c1}");
    assert_eq!(h.json()["crl_number"].as_u64(), Some(number(&c1)));
    assert_eq!(revoked(&c1), std::slice::from_ref(&a));

    let h = post(
        &sb,
        &c,
        &url("/v1/revoke"),
        &json!({"serial": b}),
        &["--cert", "b.crt", "--key", "b.key"],
    );
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(h.json()["reason"], "unspecified");
    let c2 = crl("crl2.der");
    assert!(number(&c2) > number(&c1), "{c1}\n{c2}");
    let mut both = vec![a.clone(), b];
    both.sort();
    assert_eq!(revoked(&c2), both);

    // Revoking again changes nothing and publishes no new CRL.
    let h = post(
        &sb,
        &c,
        &url("/v1/revoke"),
        &json!({"serial": a, "reason": "keyCompromise"}),
        &["--cert", "admin.crt", "--key", "admin.key"],
    );
    assert_eq!(h.status, 200, "{}", h.body);
    let v = h.json();
    assert_eq!(v["already_revoked"], true, "{v}");
    assert_eq!(v["reason"], "superseded", "{v}");
    assert_eq!(v["crl_number"], Value::Null, "{v}");
    assert_eq!(number(&crl("crl3.der")), number(&c2));

    let h = curl(&sb, &c, &[&url("/v1/openapi.json")]);
    assert_eq!(h.status, 200);
    let doc = h.json();
    for p in [
        "/v1/enroll",
        "/v1/renew",
        "/v1/revoke",
        "/v1/tokens",
        "/v1/crl",
        "/v1/roots",
        "/v1/certificates",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing from {doc}");
    }

    // One enrollment, so the issuance counter has a sample.
    let r = enroll(&sb, &srv, &fp, &token(&sb, "ca", DEV, "15m"), "dev");
    assert_eq!(r.code, 0, "{}", r.all());
    let m = curl(&sb, &c, &[&url("/metrics")]).body;
    assert_eq!(
        sample(&m, "symbolon_ca_crl_number"),
        Some(number(&c2) as f64),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "symbolon_ca_certificates_issued_total{operation=\"enroll\",outcome=\"issued\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "symbolon_ca_revocations_total{reason=\"superseded\"}"),
        Some(1.0),
        "{m}"
    );
}

/// Regression: request metrics are labelled with any /v1/ path a client sends, so
/// anyone can create unbounded label values.
#[test]
fn bug_metrics_label_unknown_v1_paths_verbatim() {
    let Some(c) = tool("curl") else { return };
    let sb = Sandbox::new();
    new_ca(&sb);
    let srv = CaServe::start(&sb, "ca");
    let h = curl(&sb, &c, &[&format!("{}/v1/made-up-7f3a", srv.url())]);
    assert_refused(&h, 404, "not_found");
    let m = curl(&sb, &c, &[&format!("{}/metrics", srv.url())]).body;
    assert!(!m.contains("made-up-7f3a"), "{m}");
    assert_eq!(
        sample(
            &m,
            "symbolon_ca_requests_total{path=\"other\",status=\"404\"}"
        ),
        Some(1.0),
        "{m}"
    );
}

/// Regression: the CA keeps honouring an admin client certificate after it has
/// been revoked.
#[test]
fn bug_revoked_admin_certificate_keeps_admin_rights() {
    let Some(c) = tool("curl") else { return };
    let sb = Sandbox::new();
    new_ca(&sb);
    let serial = issue(&sb, ADMIN, "client", "admin");
    let srv = CaServe::start(&sb, "ca");
    let admin = ["--cert", "admin.crt", "--key", "admin.key"];
    let h = post(
        &sb,
        &c,
        &format!("{}/v1/revoke", srv.url()),
        &json!({"serial": serial, "reason": "keyCompromise"}),
        &admin,
    );
    assert_eq!(h.status, 200, "{}", h.body);
    let h = post(
        &sb,
        &c,
        &format!("{}/v1/tokens", srv.url()),
        &json!({"identities": ["spiffe://example.org/x"]}),
        &admin,
    );
    assert!(
        (400..500).contains(&h.status) && !h.body.contains("\"token\""),
        "a revoked admin certificate minted a token: {} {}",
        h.status,
        h.body
    );
}

// === 5. the agent with 30-second certificates ===

/// Sets `default_leaf` in ca/ca.toml (before the server starts).
fn set_default_leaf(sb: &Sandbox, value: &str) {
    let path = sb.path("ca/ca.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    assert!(toml.contains("default_leaf = \"24h\""), "{toml}");
    std::fs::write(
        &path,
        toml.replace(
            "default_leaf = \"24h\"",
            &format!("default_leaf = \"{value}\""),
        ),
    )
    .unwrap();
}

#[test]
fn agent_keeps_short_lived_certificate_fresh_across_ca_restart() {
    let Some(c) = tool("curl") else { return };
    let sb = Sandbox::new();
    let fp = new_ca(&sb);
    set_default_leaf(&sb, "30s");
    let mut srv = CaServe::start(&sb, "ca");
    let r = enroll(&sb, &srv, &fp, &token(&sb, "ca", DEV, "15m"), "dev");
    assert_eq!(r.code, 0, "{}", r.all());
    // The CA applied the 30-second default.
    let left = not_after_of(&sb, "dev/cert.pem") - OffsetDateTime::now_utc();
    assert!(
        left <= time::Duration::seconds(31) && left > time::Duration::seconds(20),
        "{left}"
    );

    // --renew-at 0.5: renewals every ~15 s (plus up to 5% jitter), so the
    // run below sees three of them even with the CA down for one.
    let mport = free_port();
    let metrics = format!("127.0.0.1:{mport}");
    let url = srv.url();
    let mut agent = Background::spawn(
        &sb,
        &[
            "agent",
            "--ca",
            &url,
            "--dir",
            "dev",
            "--renew-at",
            "0.5",
            "--exec",
            "echo renewed >> hook.log",
            "--metrics",
            &metrics,
        ],
        "agent.log",
    );
    let started = Instant::now();
    let mut serials = vec![serial_of(&sb, "dev/cert.pem")];
    // The CA is down from 26 s to 34 s: over the second renewal (due at
    // 30–33 s), so the agent must retry and keep its certificate meanwhile.
    let (down_at, up_at) = (Duration::from_secs(26), Duration::from_secs(34));
    let mut at_restart: Option<String> = None;
    loop {
        let t = started.elapsed();
        if t >= down_at && at_restart.is_none() && srv.is_running() {
            srv.kill9();
        }
        if t >= up_at && !srv.is_running() {
            srv.restart();
            at_restart = Some(serials.last().unwrap().clone());
        }
        let v = sb.run(&["cert", "verify", "dev/cert.pem", "--trust", "ca/root.crt"]);
        assert_eq!(
            v.code,
            0,
            "at {t:?} the installed certificate did not verify:\n{}\n--- agent\n{}",
            v.all(),
            agent.log_text()
        );
        let s = serial_of(&sb, "dev/cert.pem");
        if serials.last() != Some(&s) {
            serials.push(s);
        }
        assert!(
            agent.child.try_wait().unwrap().is_none(),
            "the agent exited:\n{}",
            agent.log_text()
        );
        let renewed_after_restart = at_restart
            .as_ref()
            .is_some_and(|r| serials.last() != Some(r));
        if renewed_after_restart && serials.len() >= 4 {
            break;
        }
        assert!(
            t < Duration::from_secs(60),
            "after {t:?}: serials {serials:?}, restarted at {at_restart:?}\n--- agent\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    let m = curl(&sb, &c, &[&format!("http://{metrics}/metrics")]);
    assert_eq!(m.status, 200);
    let ok = sample(&m.body, "symbolon_agent_renewals_total{result=\"ok\"}")
        .unwrap_or_else(|| panic!("{}", m.body));
    assert!(ok >= 3.0, "{}", m.body);
    // Attempts while the CA was down failed and were retried.
    let failed = sample(&m.body, "symbolon_agent_renewals_total{result=\"error\"}");
    assert!(failed.is_some_and(|n| n >= 1.0), "{}", m.body);
    assert!(
        agent
            .log_text()
            .contains("renewal failed, keeping the current certificate"),
        "{}",
        agent.log_text()
    );
    let hook = std::fs::read_to_string(sb.path("dev/hook.log")).unwrap();
    assert!(hook.lines().count() >= 3, "{hook:?}");
    assert!(hook.lines().all(|l| l == "renewed"), "{hook:?}");
    // Every certificate the agent installed was recorded, including the one
    // issued by the restarted CA.
    let list = ca_list(&sb);
    for s in &serials {
        assert_eq!(
            listed(&list, s).map(|r| r["identities"].clone()),
            Some(json!([DEV])),
            "{s}"
        );
    }
}

/// Regression: the agent counts the one-minute backdating of notBefore as part of
/// the lifetime, so short-lived certificates are renewed almost at once
/// and then over and over (about once a second for 30 s certificates).
#[test]
fn bug_agent_renews_short_certificates_far_too_early() {
    let sb = Sandbox::new();
    let fp = new_ca(&sb);
    set_default_leaf(&sb, "30s");
    let srv = CaServe::start(&sb, "ca");
    let r = enroll(&sb, &srv, &fp, &token(&sb, "ca", DEV, "15m"), "dev");
    assert_eq!(r.code, 0, "{}", r.all());
    let url = srv.url();
    let agent = Background::spawn(
        &sb,
        &[
            "agent",
            "--ca",
            &url,
            "--dir",
            "dev",
            "--exec",
            "echo renewed >> hook.log",
        ],
        "agent.log",
    );
    // Renewal is due after 0.66 × 30 s ≈ 20 s; none may happen in 12 s.
    std::thread::sleep(Duration::from_secs(12));
    let hook = std::fs::read_to_string(sb.path("dev/hook.log")).unwrap_or_default();
    assert_eq!(
        hook.lines().count(),
        0,
        "renewed within 12 s of issuance:\n{}",
        agent.log_text()
    );
}

// === 6. an agent whose certificate has expired ===

#[test]
fn agent_with_expired_certificate_asks_for_new_enrollment() {
    let sb = Sandbox::new();
    new_ca(&sb);
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--spiffe-id",
        DEV,
        "--lifetime",
        "10s",
        "--out",
        "short",
    ]);
    std::fs::create_dir(sb.path("dev")).unwrap();
    for (from, to) in [
        ("short.crt", "dev/cert.pem"),
        ("short.key", "dev/key.pem"),
        ("ca/root.crt", "dev/ca.pem"),
    ] {
        std::fs::copy(sb.path(from), sb.path(to)).unwrap();
    }
    // The CA is up, so the refusal is about the certificate, not the network.
    let srv = CaServe::start(&sb, "ca");
    let started = Instant::now();
    while sb
        .run(&["cert", "verify", "dev/cert.pem", "--trust", "ca/root.crt"])
        .code
        == 0
    {
        assert!(started.elapsed() < Duration::from_secs(20), "never expired");
        std::thread::sleep(Duration::from_millis(500));
    }
    let before = sb.files();

    // Both the daemon and --once give up at once rather than retrying.
    let url = srv.url();
    let mut agent = Background::spawn(&sb, &["agent", "--ca", &url, "--dir", "dev"], "agent.log");
    assert_eq!(
        agent.wait(Duration::from_secs(20)),
        2,
        "{}",
        agent.log_text()
    );
    let log = agent.log_text();
    assert!(log.contains("expired"), "{log}");
    assert!(log.contains("enroll again with a new token"), "{log}");
    let r = sb.run(&["agent", "--ca", &url, "--dir", "dev", "--once"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("enroll again with a new token"),
        "{}",
        r.all()
    );
    let mut after = sb.files();
    after.retain(|f| f != "agent.log");
    let mut before = before;
    before.retain(|f| f != "agent.log");
    assert_eq!(after, before);
    assert_eq!(
        std::fs::read(sb.path("dev/cert.pem")).unwrap(),
        std::fs::read(sb.path("short.crt")).unwrap()
    );
}
