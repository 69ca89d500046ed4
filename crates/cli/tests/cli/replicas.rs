//! Two `ca serve` replicas sharing one PostgreSQL: concurrent enrollment
//! with no duplicate serial, single-use tokens across replicas, and one
//! revocation state served by both.

use std::process::{Command, Stdio};

use crate::gw_support::{CaServe, free_port};
use crate::support::{Sandbox, run_tool, tool};

/// A database created for this test and dropped afterwards.
pub struct Database {
    psql: std::path::PathBuf,
    name: String,
}

impl Database {
    pub fn create(psql: &std::path::Path) -> Option<Database> {
        let name = format!("symbolon_r_{}_{}", std::process::id(), free_port());
        let out = as_superuser(psql, &format!("CREATE DATABASE {name}"));
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr).to_string();
            if std::env::var("SYMBOLON_REQUIRE_ALL").is_ok_and(|v| v == "1") {
                panic!("PostgreSQL on 127.0.0.1:5432 is required (SYMBOLON_REQUIRE_ALL=1): {msg}");
            }
            eprintln!("SKIPPED: PostgreSQL not usable: {msg}");
            return None;
        }
        Some(Database {
            psql: psql.to_path_buf(),
            name,
        })
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `sql` as the superuser, connected to the `postgres` database.
    pub fn admin(&self, sql: &str) {
        let out = as_superuser(&self.psql, sql);
        assert!(
            out.status.success(),
            "psql -c {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `psql -c SQL` as the superuser, connected to the `postgres` database.
fn as_superuser(psql: &std::path::Path, sql: &str) -> std::process::Output {
    Command::new(psql)
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            sql,
        ])
        .output()
        .unwrap()
}

impl Drop for Database {
    fn drop(&mut self) {
        as_superuser(
            &self.psql,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn fingerprint(init_stdout: &str) -> String {
    init_stdout
        .lines()
        .find_map(|l| l.strip_prefix("Root fingerprint (SHA-256): "))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn two_replicas_share_serials_tokens_and_revocations() {
    let (Some(psql), Some(curl), Some(openssl)) = (tool("psql"), tool("curl"), tool("openssl"))
    else {
        return;
    };
    let Some(db) = Database::create(&psql) else {
        return;
    };
    let url = db.url();
    let sb = Sandbox::new();
    let init = sb.init_plain_ca("ca", &[]);
    let fp = fingerprint(&init.stdout);
    let (pa, pb) = (free_port(), free_port());
    let _a = CaServe::on(&sb, "ca", pa, Some(&url));
    let _b = CaServe::on(&sb, "ca", pb, Some(&url));

    // Tokens made against the shared store; each enrolled through one
    // replica, concurrently.
    let tokens: Vec<String> = (0..8)
        .map(|i| {
            let r = sb.ok(&[
                "ca",
                "token",
                "--dir",
                "ca",
                "--database",
                &url,
                "--identity",
                &format!("spiffe://example.org/dev/{i}"),
                "--json",
            ]);
            r.json()["token"].as_str().unwrap().to_string()
        })
        .collect();
    let bin = env!("CARGO_BIN_EXE_symbolon");
    let mut children = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let port = if i % 2 == 0 { pa } else { pb };
        children.push(
            Command::new(bin)
                .args([
                    "enroll",
                    "--ca",
                    &format!("https://localhost:{port}"),
                    "--fingerprint",
                    &fp,
                    "--token",
                    t,
                    "--out",
                    &format!("dev{i}"),
                ])
                .current_dir(sb.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "enroll failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Every token replayed on the *other* replica is refused.
    for (i, t) in tokens.iter().enumerate() {
        let port = if i % 2 == 0 { pb } else { pa };
        let r = sb.run(&[
            "enroll",
            "--ca",
            &format!("https://localhost:{port}"),
            "--fingerprint",
            &fp,
            "--token",
            t,
            "--out",
            &format!("again{i}"),
        ]);
        assert_eq!(r.code, 2, "{}", r.all());
        assert!(r.stderr.contains("token_used"), "{}", r.stderr);
        assert!(!sb.path(&format!("again{i}")).exists());
    }

    // One store, no duplicate serial: 8 devices + each replica's own certificate.
    let list = sb
        .ok(&["ca", "list", "--dir", "ca", "--database", &url, "--json"])
        .json();
    let serials: std::collections::HashSet<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["serial"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(list.as_array().unwrap().len(), 10);
    assert_eq!(serials.len(), 10);

    // Concurrent renewals through both replicas: new serials, still unique.
    let mut children = Vec::new();
    for i in 1..8 {
        let port = if i % 2 == 0 { pa } else { pb };
        children.push(
            Command::new(bin)
                .args([
                    "agent",
                    "--ca",
                    &format!("https://localhost:{port}"),
                    "--dir",
                    &format!("dev{i}"),
                    "--once",
                ])
                .current_dir(sb.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "renew failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = sb
        .ok(&["ca", "list", "--dir", "ca", "--database", &url, "--json"])
        .json();
    let serials: std::collections::HashSet<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["serial"].as_str().unwrap().to_string())
        .collect();
    assert_eq!((list.as_array().unwrap().len(), serials.len()), (17, 17));

    // Revoke through replica A (the certificate revokes itself) ...
    let (_, serial) = run_tool(
        &sb,
        &openssl,
        &["x509", "-in", "dev0/cert.pem", "-noout", "-serial"],
    );
    let serial = serial
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase();
    let body = format!("{{\"serial\":\"{serial}\",\"reason\":\"keyCompromise\"}}");
    let (code, text) = run_tool(
        &sb,
        &curl,
        &[
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            "dev0/ca.pem",
            "--cert",
            "dev0/cert.pem",
            "--key",
            "dev0/key.pem",
            "-X",
            "POST",
            "-d",
            &body,
            &format!("https://localhost:{pa}/v1/revoke"),
        ],
    );
    assert_eq!(code, 0, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    let number = answer["crl_number"].as_u64().unwrap();

    // ... and replica B serves the same revocation, with a CRL number that
    // did not go backwards.
    let (code, text) = run_tool(
        &sb,
        &curl,
        &[
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            "ca/root.crt",
            "-o",
            "b.crl",
            &format!("https://localhost:{pb}/v1/crl"),
        ],
    );
    assert_eq!(code, 0, "{text}");
    let crl = sb.ok(&["cert", "inspect", "b.crl", "--json"]).json();
    let entries: Vec<&str> = crl[0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["serial"].as_str().unwrap())
        .collect();
    assert_eq!(entries, [serial.as_str()]);
    assert!(
        crl[0]["crl_number"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= number
    );
    // Both replicas appended to one audit chain, which verifies from the
    // database alone.
    let audit = sb
        .ok(&["ca", "audit", "list", "--database", &url, "--json"])
        .json();
    let enrolls = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "enroll")
        .count();
    let renews = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "renew")
        .count();
    assert_eq!((enrolls, renews), (8, 7));
    let v = sb.ok(&["ca", "audit", "verify", "--database", &url]);
    assert!(v.stdout.starts_with("audit chain intact"), "{}", v.stdout);

    // Renewal of the revoked certificate through replica B is refused.
    let r = sb.run(&[
        "agent",
        "--ca",
        &format!("https://localhost:{pb}"),
        "--dir",
        "dev0",
        "--once",
    ]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("revoked"), "{}", r.stderr);
}
