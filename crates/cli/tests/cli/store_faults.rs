//! Store faults: with its SQLite store on a full filesystem, or its
//! PostgreSQL database unreachable, `ca serve` refuses to issue with a
//! clear reason, hands out no certificate it did not record, burns no
//! token, and issues again as soon as the fault clears, without a restart.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use symbolon_core::Identity;
use symbolon_node::agent::client::{CaUrl, post_json};
use symbolon_tls::CaAnchor;

use crate::gw_support::{CaServe, free_port};
use crate::replicas::Database;
use crate::support::{Sandbox, tool};

/// A small tmpfs mounted for this test, unmounted on drop.
struct Mount {
    dir: PathBuf,
}

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
    }
}

/// Fills the filesystem holding `dir` to the last byte.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&block).is_err() {
            break;
        }
    }
    let one = [0u8; 1];
    while f.write_all(&one).is_ok() {}
    let _ = f.sync_all();
    path
}

fn token(sb: &Sandbox, n: usize) -> String {
    let r = sb.ok(&[
        "ca",
        "token",
        "--dir",
        "mnt/ca",
        "--identity",
        &format!("spiffe://example.org/fault/{n}"),
        "--ttl",
        "1h",
    ]);
    r.stdout.trim().to_string()
}

fn stored(sb: &Sandbox) -> usize {
    let r = sb.ok(&["ca", "list", "--dir", "mnt/ca", "--json"]);
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["identities"].to_string().contains("/fault/"))
        .count()
}

#[test]
fn a_full_disk_refuses_to_issue_and_recovers_without_a_restart() {
    let Some(_mount_tool) = tool("mount") else {
        return;
    };
    let sb = Sandbox::new();
    let _mnt = Mount::tmpfs(&sb.path("mnt"), "8m");
    sb.ok(&[
        "ca",
        "init",
        "--dir",
        "mnt/ca",
        "--insecure-plaintext-root-key",
        "--trust-domain",
        "example.org",
    ]);
    let tokens: Vec<String> = (0..3).map(|n| token(&sb, n)).collect();
    let serve = CaServe::start(&sb, "mnt/ca");
    let ca = CaUrl {
        host: "localhost".into(),
        port: serve.port,
    };
    let root = symbolon_pki::input::load_certificates(&sb.path("mnt/ca/root.crt"))
        .unwrap()
        .remove(0);
    let key = symbolon_pki::KeyType::EcdsaP256.generate().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let enroll = |n: usize| {
        let id: Identity = format!("spiffe://example.org/fault/{n}").parse().unwrap();
        let csr = symbolon_node::agent::csr_pem(&[id], &key).unwrap();
        rt.block_on(post_json(
            &ca,
            CaAnchor::Root(root.clone()),
            None,
            "/v1/enroll",
            &json!({"token": tokens[n], "csr": csr}),
        ))
    };

    // Disk full: refused as store_unavailable, nothing recorded.
    let filler = fill(&sb.path("mnt"));
    let e = enroll(0).expect_err("issued on a full disk");
    assert!(e.to_string().contains("store_unavailable"), "{e}");
    assert!(e.to_string().contains("503"), "{e}");
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(stored(&sb), 0);
    // Space again: the same token still works (the refused attempt burned
    // nothing), without restarting the CA.
    let ok = enroll(0).unwrap_or_else(|e| panic!("{e}\n{}", serve.log_text()));
    assert!(ok["serial"].is_string(), "{ok}");
    assert_eq!(stored(&sb), 1);

    let ok = enroll(1).unwrap_or_else(|e| panic!("{e}\n{}", serve.log_text()));
    assert!(ok["serial"].is_string(), "{ok}");
    let ok = enroll(2).unwrap_or_else(|e| panic!("{e}\n{}", serve.log_text()));
    assert!(ok["serial"].is_string(), "{ok}");
    assert_eq!(stored(&sb), 3);
    assert!(
        serve.log_text().contains("store failure"),
        "{}",
        serve.log_text()
    );
    let audit = sb.ok(&["ca", "audit", "verify", "--dir", "mnt/ca"]);
    assert!(audit.stdout.contains("intact"), "{}", audit.all());
    drop(serve);
}

/// A TCP proxy to PostgreSQL that can be cut: when down it closes every
/// open connection and drops new ones at once.
struct PgProxy {
    port: u16,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl PgProxy {
    fn start() -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, open2) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", 5432)) else {
                    continue;
                };
                {
                    let mut o = open2.lock().unwrap();
                    o.push(client.try_clone().unwrap());
                    o.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        PgProxy { port, up, open }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for s in self.open.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

#[test]
fn an_unreachable_database_refuses_to_issue_and_recovers_without_a_restart() {
    let Some(psql) = tool("psql") else {
        return;
    };
    let Some(db) = Database::create(&psql) else {
        return;
    };
    let proxy = PgProxy::start();
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/{}",
        proxy.port,
        db.url().rsplit('/').next().unwrap()
    );
    let sb = Sandbox::new();
    sb.ok(&[
        "ca",
        "init",
        "--dir",
        "ca",
        "--insecure-plaintext-root-key",
        "--trust-domain",
        "example.org",
    ]);
    let tokens: Vec<String> = (0..2)
        .map(|n| {
            sb.ok(&[
                "ca",
                "token",
                "--dir",
                "ca",
                "--database",
                &url,
                "--identity",
                &format!("spiffe://example.org/fault/{n}"),
            ])
            .stdout
            .trim()
            .to_string()
        })
        .collect();
    let serve = CaServe::on(&sb, "ca", free_port(), Some(&url));
    let ca = CaUrl {
        host: "localhost".into(),
        port: serve.port,
    };
    let root = symbolon_pki::input::load_certificates(&sb.path("ca/root.crt"))
        .unwrap()
        .remove(0);
    let key = symbolon_pki::KeyType::EcdsaP256.generate().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let enroll = |n: usize| {
        let id: Identity = format!("spiffe://example.org/fault/{n}").parse().unwrap();
        let csr = symbolon_node::agent::csr_pem(&[id], &key).unwrap();
        rt.block_on(post_json(
            &ca,
            CaAnchor::Root(root.clone()),
            None,
            "/v1/enroll",
            &json!({"token": tokens[n], "csr": csr}),
        ))
    };
    assert!(enroll(0).unwrap()["serial"].is_string());

    proxy.set_up(false);
    let e = enroll(1).expect_err("issued without its database");
    assert!(e.to_string().contains("store_unavailable"), "{e}");
    proxy.set_up(true);
    // The same token, once the database is back: nothing was burned.
    let ok = enroll(1).unwrap_or_else(|e| panic!("{e}"));
    assert!(ok["serial"].is_string(), "{ok}");
    let list = sb.ok(&["ca", "list", "--dir", "ca", "--database", &url, "--json"]);
    let faults = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["identities"].to_string().contains("/fault/"))
        .count();
    assert_eq!(faults, 2);
    let audit = sb.ok(&["ca", "audit", "verify", "--dir", "ca", "--database", &url]);
    assert!(audit.stdout.contains("intact"), "{}", audit.all());
    drop(serve);
}
