//! Regression tests named after what broke.

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::gw_support::free_port;
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
    let mut serve = Command::new(env!("CARGO_BIN_EXE_symbolon"))
        .args([
            "ca",
            "serve",
            "--dir",
            "ca",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .current_dir(sb.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "ca serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let _ = serve.kill();
    let _ = serve.wait();
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
