//! Regression tests named after what broke.

use crate::gw_support::{CaServe, free_port};
use crate::support::{Sandbox, run_tool, tool};

/// An enrolling client chose the certificate's common name through its CSR,
/// and policies (`cn = [...]`) and upstreams (XFCC `Subject=`) trust CNs.
#[test]
fn enrollment_ignores_the_common_name_the_requester_asks_for() {
    let (Some(openssl), Some(curl)) = (tool("openssl"), tool("curl")) else {
        return;
    };
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    let port = free_port();
    let mut serve = CaServe::on(&sb, "ca", port, None);
    let token = sb
        .ok(&[
            "ca",
            "token",
            "--dir",
            "ca",
            "--identity",
            "spiffe://example.org/dev",
            "--json",
        ])
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, text) = run_tool(
        &sb,
        &openssl,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "k.pem",
            "-subj",
            "/CN=admin",
            "-addext",
            "subjectAltName=URI:spiffe://example.org/dev",
            "-out",
            "r.csr",
        ],
    );
    assert_eq!(code, 0, "{text}");
    let csr = std::fs::read_to_string(sb.path("r.csr")).unwrap();
    std::fs::write(
        sb.path("body.json"),
        serde_json::json!({"token": token, "csr": csr}).to_string(),
    )
    .unwrap();
    let (code, answer) = run_tool(
        &sb,
        &curl,
        &[
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            "ca/root.crt",
            "-H",
            "content-type: application/json",
            "--data-binary",
            "@body.json",
            &format!("https://localhost:{port}/v1/enroll"),
        ],
    );
    serve.kill9();
    assert_eq!(code, 0, "{answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    std::fs::write(sb.path("issued.pem"), v["certificate"].as_str().unwrap()).unwrap();
    let info = sb.ok(&["cert", "inspect", "issued.pem", "--json"]).json();
    assert_eq!(
        info[0]["subject_alt_names"],
        serde_json::json!(["URI:spiffe://example.org/dev"])
    );
    assert!(
        !info[0]["subject"].as_str().unwrap().contains("admin"),
        "the CSR's CN reached the certificate: {}",
        info[0]["subject"]
    );
}
