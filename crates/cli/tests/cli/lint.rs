//! pkilint (DigiCert's RFC 5280 / RFC 6960 linter) over everything the real
//! binary issues: roots, intermediates and leaves of every key type and
//! profile, leaves from `ca sign`, enrollment and renewal, revocation
//! pointers, CRLs (empty and not, PEM and DER), and every kind of OCSP response the
//! responder sends (good, revoked, unknown, malformedRequest, unauthorized)
//! under every key type. Nothing at WARNING or above may be found, save one
//! documented false positive for SPIFFE IDs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::control_plane::{DEV, curl, enroll, fingerprint_in, openssl_csr, post, token};
use crate::gw_support::{CaServe, free_port};
use crate::support::{Sandbox, run_tool, tool};

/// The pkilint entry points, or `None` (skip) when pkilint is not installed.
struct Pkilint {
    cert: PathBuf,
    crl: PathBuf,
    ocsp: PathBuf,
}

fn pkilint() -> Option<Pkilint> {
    Some(Pkilint {
        cert: tool("lint_pkix_cert")?,
        crl: tool("lint_crl")?,
        ocsp: tool("lint_ocsp_response")?,
    })
}

/// One pkilint finding.
#[derive(Debug)]
struct Finding {
    severity: String,
    code: String,
    message: String,
    node: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) at {}: {}",
            self.code, self.severity, self.node, self.message
        )
    }
}

/// Runs a pkilint command with `-s WARNING -f JSON` in the sandbox and
/// returns its findings. Only stdout is parsed, so Python warnings on stderr
/// cannot break the JSON.
fn run_lint(sb: &Sandbox, linter: &Path, args: &[&str]) -> Vec<Finding> {
    let out = Command::new(linter)
        .arg("lint")
        .args(["-s", "WARNING", "-f", "JSON"])
        .args(args)
        .current_dir(sb.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = || format!("{} {args:?}:\n{stdout}\n{stderr}", linter.display());
    // pkilint exits 1 when it reports findings; anything else is a crash or
    // a refused input, which must not pass as "no findings".
    let code = out.status.code();
    assert!(matches!(code, Some(0 | 1)), "exit {code:?}: {}", context());
    let json: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", context()));
    let results = json["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results array: {}", context()));
    let mut findings = Vec::new();
    for r in results {
        for d in r["finding_descriptions"].as_array().unwrap() {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            findings.push(Finding {
                severity: s(&d["severity"]),
                code: s(&d["code"]),
                message: s(&d["message"]),
                node: s(&r["node_path"]),
            });
        }
    }
    assert_eq!(
        code == Some(0),
        findings.is_empty(),
        "exit code and findings disagree: {}",
        context()
    );
    findings
}

/// pkilint checks URIs with the Python `validators` package, which accepts
/// only ftp, ftps, git, http, https, rtsp, sftp, ssh and telnet. Every SPIFFE
/// ID (`spiffe://…`, which RFC 3986 allows and the SPIFFE spec requires in
/// the SAN) is therefore reported as invalid. That one finding, for that
/// scheme only, is pkilint's limitation and not ours.
fn is_spiffe_uri_false_positive(f: &Finding) -> bool {
    f.code == "pkix.invalid_uri_syntax"
        && f.message
            .split('"')
            .nth(1)
            .is_some_and(|uri| uri.starts_with("spiffe://"))
}

fn assert_clean(what: &str, findings: Vec<Finding>) {
    let left: Vec<String> = findings
        .iter()
        .filter(|f| !is_spiffe_uri_false_positive(f))
        .map(|f| f.to_string())
        .collect();
    assert!(
        left.is_empty(),
        "pkilint findings in {what}:\n{}",
        left.join("\n")
    );
}

fn lint_cert(sb: &Sandbox, p: &Pkilint, file: &str) {
    assert_clean(file, run_lint(sb, &p.cert, &[file]));
}

fn lint_crl(sb: &Sandbox, p: &Pkilint, file: &str) {
    assert_clean(
        file,
        run_lint(sb, &p.crl, &["-t", "CRL", "-p", "PKIX", file]),
    );
}

/// Lints one DER OCSP response in the sandbox; a no-op when pkilint is not
/// installed (which fails the run under `SYMBOLON_REQUIRE_ALL`).
pub(crate) fn lint_ocsp_response(sb: &Sandbox, file: &str) {
    if let Some(p) = pkilint() {
        lint_ocsp(sb, &p, file);
    }
}

fn lint_ocsp(sb: &Sandbox, p: &Pkilint, file: &str) {
    let der = std::fs::read(sb.path(file)).unwrap();
    assert!(!der.is_empty(), "{file} is empty: no response to lint");
    assert_clean(
        file,
        run_lint(sb, &p.ocsp, &["--document-format", "DER", file]),
    );
}

/// `openssl ocsp` against `ca serve` at `port` about `what` (`-cert FILE`
/// or `-serial 0x…`), issuer `dir`'s intermediate; the DER response is
/// saved as `out` and openssl's text returned.
fn fetch_ocsp(sb: &Sandbox, port: u16, dir: &str, what: [&str; 2], out: &str) -> String {
    let openssl = tool("openssl").expect("openssl (checked by the caller)");
    let issuer = format!("{dir}/intermediate.crt");
    let root = format!("{dir}/root.crt");
    let url = format!("https://localhost:{port}/v1/ocsp");
    let (code, text) = run_tool(
        sb,
        &openssl,
        &[
            "ocsp", "-issuer", &issuer, what[0], what[1], "-url", &url, "-CAfile", &root,
            "-respout", out,
        ],
    );
    assert_eq!(code, 0, "openssl ocsp {what:?}: {text}");
    text
}

/// `ca issue --out PREFIX ARGS`, then the leaf alone in PREFIX.leaf.pem.
fn issue_leaf(sb: &Sandbox, ca: &str, prefix: &str, args: &[&str]) -> String {
    let mut all = vec!["ca", "issue", "--dir", ca, "--out", prefix];
    all.extend_from_slice(args);
    sb.ok(&all);
    leaf_of(sb, &format!("{prefix}.crt"), &format!("{prefix}.leaf.pem"))
}

/// The leaf alone (the first PEM block of `chain`, a file in the sandbox
/// that must also hold its issuer) written to `out`, whose name is
/// returned: pkilint lints exactly one certificate per file.
fn leaf_of(sb: &Sandbox, chain: &str, out: &str) -> String {
    let text = std::fs::read_to_string(sb.path(chain)).unwrap();
    write_leaf(sb, &text, out)
}

fn write_leaf(sb: &Sandbox, chain: &str, out: &str) -> String {
    const END: &str = "-----END CERTIFICATE-----\n";
    let end = chain.find(END).unwrap() + END.len();
    assert!(
        chain[end..].contains("BEGIN CERTIFICATE"),
        "{out}: expected leaf + intermediate:\n{chain}"
    );
    std::fs::write(sb.path(out), &chain[..end]).unwrap();
    out.to_string()
}

/// A CA of `key_type` made by the binary: its root, its intermediate, a
/// leaf of the same key type (SPIFFE ID and DNS name, peer profile), the
/// OCSP responses `ca serve` gives about it (good, then revoked with a
/// reason, and unknown for a serial never issued), and a CRL revoking it,
/// all signed with that key type.
fn lint_ca_of_key_type(key_type: &str) {
    let (Some(p), Some(_)) = (pkilint(), tool("openssl")) else {
        return;
    };
    let sb = Sandbox::new();
    let dir = format!("ca-{key_type}");
    sb.ok(&[
        "ca",
        "init",
        "--dir",
        &dir,
        "--key-type",
        key_type,
        "--insecure-plaintext-root-key",
        "--trust-domain",
        "example.org",
    ]);
    lint_cert(&sb, &p, &format!("{dir}/root.crt"));
    lint_cert(&sb, &p, &format!("{dir}/intermediate.crt"));
    let leaf = issue_leaf(
        &sb,
        &dir,
        "peer",
        &[
            "--spiffe-id",
            "spiffe://example.org/ns/x/sa/y",
            "--dns",
            "a.example.org",
            "--key-type",
            key_type,
        ],
    );
    lint_cert(&sb, &p, &leaf);

    let port = free_port();
    let _serve = CaServe::on(&sb, &dir, port, None);
    let good = fetch_ocsp(&sb, port, &dir, ["-cert", &leaf], "good.der");
    assert!(good.contains(": good"), "{good}");
    lint_ocsp(&sb, &p, "good.der");
    let unknown = fetch_ocsp(
        &sb,
        port,
        &dir,
        ["-serial", "0x0123456789abcdef"],
        "unknown.der",
    );
    assert!(unknown.contains(": unknown"), "{unknown}");
    lint_ocsp(&sb, &p, "unknown.der");

    sb.ok(&[
        "ca",
        "revoke",
        "--dir",
        &dir,
        "--cert",
        "peer.crt",
        "--reason",
        "keyCompromise",
    ]);
    let revoked = fetch_ocsp(&sb, port, &dir, ["-cert", &leaf], "revoked.der");
    assert!(revoked.contains("Reason: keyCompromise"), "{revoked}");
    lint_ocsp(&sb, &p, "revoked.der");

    sb.ok(&["ca", "crl", "--dir", &dir, "--out", "crl.pem"]);
    lint_crl(&sb, &p, "crl.pem");
}

#[test]
fn pkilint_finds_nothing_in_an_ecdsa_p256_ca() {
    lint_ca_of_key_type("ecdsa-p256");
}

#[test]
fn pkilint_finds_nothing_in_an_ecdsa_p384_ca() {
    lint_ca_of_key_type("ecdsa-p384");
}

#[test]
fn pkilint_finds_nothing_in_an_ed25519_ca() {
    lint_ca_of_key_type("ed25519");
}

#[test]
fn pkilint_finds_nothing_in_an_rsa_2048_ca() {
    lint_ca_of_key_type("rsa-2048");
}

#[test]
fn pkilint_finds_nothing_in_leaves_of_every_profile() {
    let Some(p) = pkilint() else {
        return;
    };
    let sb = Sandbox::new();
    // The default test CA: encrypted root key, trust domain example.org.
    sb.init_ca(&[]);
    lint_cert(&sb, &p, "ca/root.crt");
    lint_cert(&sb, &p, "ca/intermediate.crt");
    let leaves = [
        (
            "server",
            &["--dns", "a.example.org", "--profile", "server"][..],
        ),
        (
            "client",
            &["--dns", "b.example.org", "--profile", "client"][..],
        ),
        (
            "peer",
            &["--spiffe-id", "spiffe://example.org/ns/x/sa/y"][..],
        ),
        ("ip", &["--ip", "127.0.0.1"][..]),
        (
            "cn",
            &["--dns", "c.example.org", "--cn", "c.example.org"][..],
        ),
    ];
    for (prefix, args) in leaves {
        let leaf = issue_leaf(&sb, "ca", prefix, args);
        lint_cert(&sb, &p, &leaf);
    }
}

/// `leaf` carries a CRL distribution point and an OCSP URL.
fn assert_revocation_pointers(sb: &Sandbox, leaf: &str) {
    let j = sb.ok(&["cert", "inspect", leaf, "--json"]).json();
    let cdp = j[0]["crl_distribution_points"].as_array().unwrap();
    let ocsp = j[0]["ocsp_urls"].as_array().unwrap();
    assert!(!cdp.is_empty() && !ocsp.is_empty(), "{leaf}: {j}");
}

#[test]
fn pkilint_finds_nothing_in_revocation_pointers_and_crl() {
    let Some(p) = pkilint() else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&["--public-url", "https://ca.example.org"]);
    let server = issue_leaf(&sb, "ca", "s", &["--dns", "a.example.org"]);
    let peer = issue_leaf(
        &sb,
        "ca",
        "p",
        &["--spiffe-id", "spiffe://example.org/ns/x/sa/y"],
    );

    // Only meaningful if the extensions under test are really there.
    assert_revocation_pointers(&sb, &server);

    lint_cert(&sb, &p, &server);
    lint_cert(&sb, &p, &peer);

    // Two entries, so the CRL has revokedCertificates with reason codes.
    sb.ok(&["ca", "revoke", "--dir", "ca", "--cert", "s.crt"]);
    sb.ok(&[
        "ca",
        "revoke",
        "--dir",
        "ca",
        "--cert",
        "p.crt",
        "--reason",
        "keyCompromise",
    ]);
    sb.ok(&["ca", "crl", "--dir", "ca", "--out", "crl.pem"]);
    let j = sb.ok(&["cert", "inspect", "crl.pem", "--json"]).json();
    assert_eq!(j[0]["entries"].as_array().unwrap().len(), 2, "{j}");
    lint_crl(&sb, &p, "crl.pem");
}

/// What reaches relying parties by the other roads: `ca sign` of OpenSSL
/// CSRs (RSA-3072 and RSA-4096 keys, a subject with more than a CN), a
/// certificate from `symbolon enroll` and one from `/v1/renew`, the CRL
/// `ca serve` publishes before any revocation (no entries), and a DER CRL
/// from `ca crl --der` after one. The CA has a public URL, so every leaf
/// carries CRL and OCSP pointers.
#[test]
fn pkilint_finds_nothing_in_signed_csrs_enrollments_renewals_and_served_crls() {
    let (Some(p), Some(c), Some(openssl)) = (pkilint(), tool("curl"), tool("openssl")) else {
        return;
    };
    let sb = Sandbox::new();
    let fp = fingerprint_in(
        &sb.init_ca(&["--public-url", "https://ca.example.org"])
            .stdout,
    );

    for (name, key) in [("rsa3072", "rsa:3072"), ("rsa4096", "rsa:4096")] {
        let (code, out) = run_tool(
            &sb,
            &openssl,
            &[
                "req",
                "-new",
                "-newkey",
                key,
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-subj",
                &format!("/C=DE/O=Acme Devices/OU=Fleet/CN={name}.example.org"),
                "-addext",
                &format!("subjectAltName=DNS:{name}.example.org,DNS:alt.example.org"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        assert_eq!(code, 0, "{out}");
        let crt = format!("{name}.crt");
        sb.ok(&[
            "ca",
            "sign",
            &format!("{name}.csr"),
            "--dir",
            "ca",
            "--profile",
            "client",
            "--lifetime",
            "7d",
            "--out",
            &crt,
        ]);
        let leaf = leaf_of(&sb, &crt, &format!("{name}.leaf.pem"));
        let j = sb.ok(&["cert", "inspect", &leaf, "--json"]).json();
        let bits: u64 = key[4..].parse().unwrap();
        assert_eq!(
            j[0]["key"],
            json!({"algorithm": "RSA", "bits": bits}),
            "{j}"
        );
        assert_revocation_pointers(&sb, &leaf);
        lint_cert(&sb, &p, &leaf);
    }

    let srv = CaServe::start(&sb, "ca");
    let crl_url = format!("{}/v1/crl", srv.url());
    let h = curl(&sb, &c, &["-o", "served-empty.crl", &crl_url]);
    assert_eq!(h.status, 200);
    let j = sb
        .ok(&["cert", "inspect", "served-empty.crl", "--json"])
        .json();
    assert_eq!(j[0]["entries"].as_array().map(Vec::len), Some(0), "{j}");
    lint_crl(&sb, &p, "served-empty.crl");

    let r = enroll(&sb, &srv, &fp, &token(&sb, "ca", DEV, "15m"), "dev");
    assert_eq!(r.code, 0, "{}", r.all());
    let enrolled = leaf_of(&sb, "dev/cert.pem", "enrolled.leaf.pem");
    assert_revocation_pointers(&sb, &enrolled);
    lint_cert(&sb, &p, &enrolled);

    let csr = openssl_csr(&sb, &openssl, "renewal", &format!("URI:{DEV}"));
    let h = post(
        &sb,
        &c,
        &format!("{}/v1/renew", srv.url()),
        &json!({ "csr": csr }),
        &["--cert", "dev/cert.pem", "--key", "dev/key.pem"],
    );
    assert_eq!(h.status, 200, "{}", h.body);
    let chain = h.json()["certificate"].as_str().unwrap().to_string();
    let renewed = write_leaf(&sb, &chain, "renewed.leaf.pem");
    assert_revocation_pointers(&sb, &renewed);
    lint_cert(&sb, &p, &renewed);

    sb.ok(&[
        "ca",
        "revoke",
        "--dir",
        "ca",
        "--cert",
        &renewed,
        "--reason",
        "superseded",
    ]);
    sb.ok(&["ca", "crl", "--dir", "ca", "--der", "--out", "crl.der"]);
    let j = sb.ok(&["cert", "inspect", "crl.der", "--json"]).json();
    assert_eq!(j[0]["entries"].as_array().map(Vec::len), Some(1), "{j}");
    lint_crl(&sb, &p, "crl.der");
}
