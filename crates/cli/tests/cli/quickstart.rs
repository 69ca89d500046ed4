//! `symbolon quickstart --exit` end to end: every claim it prints is
//! checked against the files it left and the certificates it issued.

use crate::support::Sandbox;

fn line_after<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"))
        .trim()
}

#[test]
fn quickstart_shows_an_allowed_and_a_denied_request_and_reuses_its_directory() {
    let sb = Sandbox::new();
    let r = sb.ok(&["quickstart", "--dir", "qs", "--exit"]);
    let out = &r.stdout;
    for step in 1..=6 {
        assert!(
            out.contains(&format!("[{step}/6]")),
            "step {step} missing:\n{out}"
        );
    }
    // The client's identity, and the certificate on disk says the same.
    let identity = line_after(out, "identity");
    assert_eq!(identity, "spiffe://quickstart.internal/demo/client");
    let inspect = sb
        .ok(&["cert", "inspect", "qs/client/cert.pem", "--json"])
        .json();
    assert_eq!(
        inspect[0]["subject_alt_names"],
        serde_json::json!([format!("URI:{identity}")])
    );
    let serial = line_after(out, "serial").split_whitespace().next().unwrap();
    assert_eq!(inspect[0]["serial"], serial);
    // It chains to the CA the quickstart made, and the CA recorded it.
    sb.ok(&[
        "cert",
        "verify",
        "qs/client/cert.pem",
        "--trust",
        "qs/ca/root.crt",
        "--purpose",
        "client",
        "--uri",
        identity,
    ]);
    let listed = sb.ok(&["ca", "list", "--dir", "qs/ca", "--json"]).json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["serial"] == serial),
        "client not recorded"
    );

    // The allowed request: 200 and the XFCC the backend received names the
    // client's certificate hash and SPIFFE ID.
    let statuses: Vec<&str> = out
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("status"))
        .map(str::trim)
        .collect();
    assert_eq!(statuses, ["200", "403"]);
    let xfcc = line_after(out, "the backend received x-forwarded-client-cert:");
    let hash = inspect[0]["sha256_fingerprint"].as_str().unwrap();
    assert!(xfcc.contains(&format!("Hash={hash}")), "{xfcc}");
    assert!(xfcc.contains(&format!("URI={identity}")), "{xfcc}");
    assert!(
        xfcc.starts_with("By=spiffe://quickstart.internal/gateway;"),
        "{xfcc}"
    );
    // The denied one, with its reason and rule.
    assert_eq!(
        line_after(out, "reason"),
        "policy_denied (rule \"no-admin\"); the backend received nothing"
    );
    // The curl command to try by hand uses files that exist.
    let curl = out
        .lines()
        .find(|l| l.contains("curl --cacert") && l.contains("--cert"))
        .unwrap();
    for f in ["qs/ca/root.crt", "qs/client/cert.pem", "qs/client/key.pem"] {
        assert!(curl.contains(f), "{curl}");
        assert!(sb.path(f).is_file(), "{f} missing");
    }
    assert!(out.contains("/metrics"), "{out}");

    // A second run reuses the CA (same root) and still works.
    let root_before = std::fs::read(sb.path("qs/ca/root.crt")).unwrap();
    let again = sb.ok(&["quickstart", "--dir", "qs", "--exit"]);
    assert!(again.stdout.contains("reusing the CA"), "{}", again.stdout);
    assert_eq!(
        std::fs::read(sb.path("qs/ca/root.crt")).unwrap(),
        root_before
    );
    let statuses: Vec<&str> = again
        .stdout
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("status"))
        .map(str::trim)
        .collect();
    assert_eq!(statuses, ["200", "403"]);
}
