//! Store faults: with its SQLite store on a full filesystem or on one the
//! kernel turned read-only, or its PostgreSQL database unreachable or
//! read-only, `ca serve` refuses to
//! issue with a clear reason, hands out no certificate it did not record,
//! burns no token, and issues again as soon as the fault clears (without a
//! restart, save after a filesystem repair, which needs the store closed). OCSP answers `tryLater` while the store cannot be read, and
//! keeps answering from a read-only one.

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
use crate::lint::lint_ocsp_response;
use crate::replicas::Database;
use crate::support::{Sandbox, run_tool, tool};

/// Enrolls `spiffe://example.org/fault/N` with a token for it, over HTTPS
/// at a running `ca serve`, as an agent would.
struct Enroller {
    ca: CaUrl,
    root: rustls::pki_types::CertificateDer<'static>,
    key: rcgen::KeyPair,
    rt: tokio::runtime::Runtime,
}

impl Enroller {
    fn new(sb: &Sandbox, dir: &str, serve: &CaServe) -> Enroller {
        let root = symbolon_pki::input::load_certificates(&sb.path(&format!("{dir}/root.crt")))
            .unwrap()
            .remove(0);
        Enroller {
            ca: CaUrl {
                host: "localhost".into(),
                port: serve.port,
            },
            root,
            key: symbolon_pki::KeyType::EcdsaP256.generate().unwrap(),
            rt: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    fn enroll(&self, n: usize, token: &str) -> Result<serde_json::Value, String> {
        let id: Identity = format!("spiffe://example.org/fault/{n}").parse().unwrap();
        let csr = symbolon_node::agent::csr_pem(&[id], &self.key).unwrap();
        self.rt
            .block_on(post_json(
                &self.ca,
                CaAnchor::Root(self.root.clone()),
                None,
                "/v1/enroll",
                &json!({"token": token, "csr": csr}),
            ))
            .map_err(|e| e.to_string())
    }
}

/// `openssl ocsp` about `cert` (a leaf PEM in the sandbox) at `serve`,
/// the DER response saved as `out` (also when it is an error response).
fn ocsp(sb: &Sandbox, serve: &CaServe, dir: &str, cert: &str, out: &str) -> String {
    let openssl = tool("openssl").expect("openssl (checked by the caller)");
    let url = format!("{}/v1/ocsp", serve.url());
    let (_, text) = run_tool(
        sb,
        &openssl,
        &[
            "ocsp",
            "-issuer",
            &format!("{dir}/intermediate.crt"),
            "-cert",
            cert,
            "-url",
            &url,
            "-CAfile",
            &format!("{dir}/root.crt"),
            "-respout",
            out,
        ],
    );
    text
}

/// The first certificate (the leaf) of an enrollment answer, as PEM in
/// `file`.
fn save_leaf(sb: &Sandbox, answer: &serde_json::Value, file: &str) {
    let chain = answer["certificate"]
        .as_str()
        .unwrap_or_else(|| panic!("no certificate in {answer}"));
    const END: &str = "-----END CERTIFICATE-----\n";
    let end = chain.find(END).unwrap() + END.len();
    std::fs::write(sb.path(file), &chain[..end]).unwrap();
}

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

    /// An ext4 filesystem in the image file `image`, mounted with
    /// `errors=remount-ro` (the default on many distributions): on an
    /// error the kernel makes it read-only until it is repaired.
    fn ext4(image: &Path, dir: &Path) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        run_ok("mount", &["-o", "loop,errors=remount-ro"], &[image, dir]);
        Mount {
            dir: dir.to_path_buf(),
        }
    }
}

/// Runs a system command, which must succeed (`paths` after `args`).
fn run_ok(program: &str, args: &[&str], paths: &[&Path]) {
    let out = Command::new(program)
        .args(args)
        .args(paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} {paths:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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

/// A CA in `ca` whose store is the PostgreSQL database at `url`, and
/// tokens for `spiffe://example.org/fault/0..n`.
fn ca_on_postgres(url: &str, n: usize) -> (Sandbox, Vec<String>) {
    let sb = Sandbox::new();
    sb.init_plain_ca("ca", &[]);
    let tokens = (0..n)
        .map(|i| {
            let id = format!("spiffe://example.org/fault/{i}");
            let args = [
                "ca",
                "token",
                "--dir",
                "ca",
                "--database",
                url,
                "--identity",
                &id,
            ];
            sb.ok(&args).stdout.trim().to_string()
        })
        .collect();
    (sb, tokens)
}

/// The CA of the tests whose store is on a filesystem of their own.
const MNT_CA: &[&str] = &["--dir", "mnt/ca"];

/// How many fault certificates are recorded in the store that `store`
/// names (`--dir …`, maybe `--database …`).
fn recorded(sb: &Sandbox, store: &[&str]) -> usize {
    let mut list = vec!["ca", "list", "--json"];
    list.extend_from_slice(store);
    sb.ok(&list)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["identities"].to_string().contains("/fault/"))
        .count()
}

/// Exactly `n` fault certificates are recorded in `store`, and its audit
/// chain is intact.
fn assert_recorded_and_intact(sb: &Sandbox, store: &[&str], n: usize) {
    assert_eq!(recorded(sb, store), n, "fault certificates recorded");
    let mut verify = vec!["ca", "audit", "verify"];
    verify.extend_from_slice(store);
    let audit = sb.ok(&verify);
    assert!(audit.stdout.contains("intact"), "{}", audit.all());
}

#[test]
fn a_full_disk_refuses_to_issue_and_recovers_without_a_restart() {
    let Some(_mount_tool) = tool("mount") else {
        return;
    };
    let sb = Sandbox::new();
    let _mnt = Mount::tmpfs(&sb.path("mnt"), "8m");
    sb.init_plain_ca("mnt/ca", &[]);
    let tokens: Vec<String> = (0..3).map(|n| token(&sb, n)).collect();
    let serve = CaServe::start(&sb, "mnt/ca");
    let client = Enroller::new(&sb, "mnt/ca", &serve);
    let enroll = |n: usize| client.enroll(n, &tokens[n]);

    // Disk full: refused as store_unavailable, nothing recorded.
    let filler = fill(&sb.path("mnt"));
    let e = enroll(0).expect_err("issued on a full disk");
    assert!(e.contains("store_unavailable"), "{e}");
    assert!(e.contains("503"), "{e}");
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(recorded(&sb, MNT_CA), 0);
    // Space again: the same token still works (the refused attempt burned
    // nothing), without restarting the CA.
    let ok = enroll(0).unwrap_or_else(|e| panic!("{e}\n{}", serve.log_text()));
    assert!(ok["serial"].is_string(), "{ok}");
    assert_eq!(recorded(&sb, MNT_CA), 1);

    let ok = enroll(1).unwrap_or_else(|e| panic!("{e}\n{}", serve.log_text()));
    assert!(ok["serial"].is_string(), "{ok}");
    let ok = enroll(2).unwrap_or_else(|e| panic!("{e}\n{}", serve.log_text()));
    assert!(ok["serial"].is_string(), "{ok}");
    assert_recorded_and_intact(&sb, MNT_CA, 3);
    assert!(
        serve.log_text().contains("store failure"),
        "{}",
        serve.log_text()
    );
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
    let (sb, tokens) = ca_on_postgres(&url, 2);
    let serve = CaServe::on(&sb, "ca", free_port(), Some(&url));
    let client = Enroller::new(&sb, "ca", &serve);
    let enroll = |n: usize| client.enroll(n, &tokens[n]);
    let first = enroll(0).unwrap();
    assert!(first["serial"].is_string(), "{first}");
    save_leaf(&sb, &first, "leaf.pem");

    proxy.set_up(false);
    let e = enroll(1).expect_err("issued without its database");
    assert!(e.contains("store_unavailable"), "{e}");
    // OCSP cannot look the certificate up: tryLater (3), never "good".
    ocsp(&sb, &serve, "ca", "leaf.pem", "trylater.der");
    assert_eq!(
        std::fs::read(sb.path("trylater.der")).unwrap(),
        [0x30, 0x03, 0x0a, 0x01, 0x03]
    );
    lint_ocsp_response(&sb, "trylater.der");
    proxy.set_up(true);
    // The same token, once the database is back: nothing was burned.
    let ok = enroll(1).unwrap_or_else(|e| panic!("{e}"));
    assert!(ok["serial"].is_string(), "{ok}");
    assert_recorded_and_intact(&sb, &["--dir", "ca", "--database", &url], 2);
    drop(serve);
}

/// A PostgreSQL database that an operator (or a failover onto a standby)
/// makes read-only while `ca serve` runs: every session the CA opens from
/// then on refuses writes. Issuance is refused as `store_unavailable`
/// without burning the token, OCSP keeps answering from the readable store,
/// and once the database is writable again the CA issues with the same
/// token without a restart, although its pooled sessions were opened
/// read-only.
#[test]
fn a_read_only_database_refuses_to_issue_and_recovers_without_a_restart() {
    let (Some(psql), Some(_)) = (tool("psql"), tool("openssl")) else {
        return;
    };
    let Some(db) = Database::create(&psql) else {
        return;
    };
    let url = db.url();
    let (sb, tokens) = ca_on_postgres(&url, 2);
    let serve = CaServe::on(&sb, "ca", free_port(), Some(&url));
    let client = Enroller::new(&sb, "ca", &serve);
    let first = client.enroll(0, &tokens[0]).unwrap();
    save_leaf(&sb, &first, "leaf.pem");

    // Read-only for every new session; the CA's open sessions are cut, as
    // a failover would, so it reconnects into read-only sessions.
    db.admin(&format!(
        "ALTER DATABASE {} SET default_transaction_read_only = on",
        db.name()
    ));
    db.admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
        db.name()
    ));
    for _ in 0..2 {
        let e = client
            .enroll(1, &tokens[1])
            .expect_err("issued into a read-only database");
        assert!(e.contains("503") && e.contains("store_unavailable"), "{e}");
    }
    assert!(
        serve.log_text().contains("read-only transaction"),
        "the log should say why: {}",
        serve.log_text()
    );
    let text = ocsp(&sb, &serve, "ca", "leaf.pem", "good.der");
    assert!(text.contains("leaf.pem: good"), "{text}");
    lint_ocsp_response(&sb, "good.der");

    // Writable again for new sessions only: the CA's pooled sessions were
    // opened read-only and must be replaced, not reused.
    db.admin(&format!(
        "ALTER DATABASE {} RESET default_transaction_read_only",
        db.name()
    ));
    let ok = client
        .enroll(1, &tokens[1])
        .unwrap_or_else(|e| panic!("{e}\n{}", serve.log_text()));
    assert!(ok["serial"].is_string(), "{ok}");
    assert_recorded_and_intact(&sb, &["--dir", "ca", "--database", &url], 2);
    drop(serve);
}

/// The CA directory on an ext4 filesystem that meets an error and is
/// turned read-only by the kernel (`errors=remount-ro`) while `ca serve`
/// runs: issuance is refused as `store_unavailable`, nothing unrecorded is
/// handed out, the token is not burned; after the operator stops the CA,
/// repairs the filesystem (`e2fsck`) and mounts it again, the same token
/// works.
#[test]
fn a_filesystem_turned_read_only_refuses_to_issue_and_issues_after_repair() {
    let (Some(_), Some(_), Some(_)) = (tool("mount"), tool("mkfs.ext4"), tool("e2fsck")) else {
        return;
    };
    let sb = Sandbox::new();
    let image = sb.path("ext4.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    run_ok("mkfs.ext4", &["-q"], &[&image]);
    let mnt = sb.path("mnt");
    let mount = Mount::ext4(&image, &mnt);
    sb.init_plain_ca("mnt/ca", &[]);
    let tokens: Vec<String> = (0..2).map(|n| token(&sb, n)).collect();
    let mut serve = CaServe::start(&sb, "mnt/ca");
    let client = Enroller::new(&sb, "mnt/ca", &serve);
    assert!(client.enroll(0, &tokens[0]).unwrap()["serial"].is_string());

    // A filesystem error: ext4 turns the mount read-only at once.
    let source = Command::new("findmnt")
        .args(["-n", "-o", "SOURCE"])
        .arg(&mnt)
        .output()
        .unwrap();
    let device = String::from_utf8_lossy(&source.stdout).trim().to_string();
    let name = device.rsplit('/').next().unwrap();
    std::fs::write(format!("/sys/fs/ext4/{name}/trigger_fs_error"), "test\n").unwrap();
    let e = client
        .enroll(1, &tokens[1])
        .expect_err("issued on a read-only filesystem");
    assert!(e.contains("503") && e.contains("store_unavailable"), "{e}");

    // The operator's repair: stop the CA, unmount, fsck, mount, start.
    serve.kill9();
    run_ok("umount", &[], &[&mnt]);
    drop(mount);
    let fsck = Command::new("e2fsck")
        .arg("-fy")
        .arg(&image)
        .output()
        .unwrap();
    // 0: clean, 1: errors corrected.
    assert!(
        matches!(fsck.status.code(), Some(0 | 1)),
        "e2fsck: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let _mount = Mount::ext4(&image, &mnt);
    serve.restart();
    let ok = client
        .enroll(1, &tokens[1])
        .unwrap_or_else(|e| panic!("{e}\n{}", serve.log_text()));
    assert!(ok["serial"].is_string(), "{ok}");
    assert_recorded_and_intact(&sb, MNT_CA, 2);
}
