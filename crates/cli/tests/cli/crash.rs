//! Crash consistency: `ca serve` is killed with SIGKILL at random moments
//! while many enrollments run concurrently, and restarted each time. Then:
//! every certificate a client received is in the store and can be revoked,
//! no used token can be used again, and the audit chain verifies. On SQLite
//! and on PostgreSQL.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use symbolon_core::Identity;
use symbolon_node::agent::client::{CaUrl, post_json};
use symbolon_tls::CaAnchor;

use crate::gw_support::{CaServe, free_port};
use crate::replicas::Database;
use crate::support::{Sandbox, tool};

const ENROLLMENTS: usize = 2000;
const KILLS: usize = 5;

/// A cheap pseudo-random number from the clock (no rand dependency).
fn jitter(max_ms: u64) -> Duration {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    Duration::from_millis(n % max_ms)
}

fn crash_during_enrollments(database: Option<&str>) {
    let sb = Sandbox::new();
    sb.init_plain_ca("ca", &[]);
    let mut issue = vec![
        "ca",
        "issue",
        "--dir",
        "ca",
        "--spiffe-id",
        "spiffe://example.org/admin",
        "--out",
        "admin",
    ];
    if let Some(db) = database {
        issue.extend(["--database", db]);
    }
    sb.ok(&issue);
    let server = Arc::new(Mutex::new(CaServe::on(&sb, "ca", free_port(), database)));
    let port = server.lock().unwrap().port;
    let ca = CaUrl {
        host: "localhost".into(),
        port,
    };
    let root = symbolon_pki::input::load_certificates(&sb.path("ca/root.crt"))
        .unwrap()
        .remove(0);
    let admin =
        symbolon_tls::load_certified_key(&sb.path("admin.crt"), &sb.path("admin.key")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Tokens first, with the server up.
    let tokens: Vec<String> = rt.block_on(async {
        let mut out = Vec::new();
        for i in 0..ENROLLMENTS {
            let answer = post_json(
                &ca,
                CaAnchor::Root(root.clone()),
                Some(admin.clone()),
                "/v1/tokens",
                &json!({"identities": [format!("spiffe://example.org/crash/{i}")], "ttl": "1h"}),
            )
            .await
            .unwrap();
            out.push(answer["token"].as_str().unwrap().to_string());
        }
        out
    });

    // The killer: SIGKILL at random moments while the enrollments run.
    let chaos = Instant::now();
    let running = Arc::new(AtomicBool::new(true));
    let killer = {
        let (server, running) = (server.clone(), running.clone());
        std::thread::spawn(move || {
            let mut kills = 0;
            while kills < KILLS && running.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(150) + jitter(350));
                let mut s = server.lock().unwrap();
                s.kill9();
                kills += 1;
                std::thread::sleep(jitter(100));
                s.restart();
            }
            kills
        })
    };

    // Enrollments, 16 at a time; each outcome kept: the certificate the
    // client received, or nothing.
    let key = symbolon_pki::KeyType::EcdsaP256.generate().unwrap();
    let jobs: Vec<(usize, String, String)> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let id: Identity = format!("spiffe://example.org/crash/{i}").parse().unwrap();
            let csr = symbolon_node::agent::csr_pem(&[id], &key).unwrap();
            (i, t.clone(), csr)
        })
        .collect();
    // Like a real client, each retries while the CA is unreachable (or
    // answers 5xx while it starts). A request that was recorded but whose
    // answer was lost to the crash comes back as token_used: that token is
    // spent and the client holds nothing (nothing was handed out unrecorded).
    let (received, spent): (Vec<(usize, String)>, Vec<usize>) = rt.block_on(async {
        let jobs = Arc::new(Mutex::new(jobs));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (jobs, ca, root) = (jobs.clone(), ca.clone(), root.clone());
            tasks.push(tokio::spawn(async move {
                let (mut got, mut spent) = (Vec::new(), Vec::new());
                loop {
                    let Some((i, token, csr)) = jobs.lock().unwrap().pop() else {
                        break;
                    };
                    let started = Instant::now();
                    loop {
                        match post_json(
                            &ca,
                            CaAnchor::Root(root.clone()),
                            None,
                            "/v1/enroll",
                            &json!({"token": token, "csr": csr}),
                        )
                        .await
                        {
                            Ok(answer) => {
                                got.push((i, answer["serial"].as_str().unwrap().to_string()));
                                break;
                            }
                            Err(e) if e.is_retryable() => {
                                assert!(
                                    started.elapsed() < Duration::from_secs(60),
                                    "enrollment {i} never got through: {e}"
                                );
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Err(e) => {
                                assert!(e.to_string().contains("token_used"), "{e}");
                                spent.push(i);
                                break;
                            }
                        }
                    }
                }
                (got, spent)
            }));
        }
        let (mut all, mut spent) = (Vec::new(), Vec::new());
        for t in tasks {
            let (g, s) = t.await.unwrap();
            all.extend(g);
            spent.extend(s);
        }
        (all, spent)
    });
    running.store(false, Ordering::Relaxed);
    let kills = killer.join().unwrap();
    eprintln!(
        "{} of {ENROLLMENTS} enrollments answered, {} recorded but unanswered, across {kills} SIGKILLs in {:.1} s",
        received.len(),
        spent.len(),
        chaos.elapsed().as_secs_f64()
    );
    assert!(
        kills >= 2,
        "the server was killed {kills} time(s) during the run"
    );
    // Every token ended one way or the other; only requests in flight at a
    // kill can have lost their answer.
    assert_eq!(received.len() + spent.len(), ENROLLMENTS);
    assert!(
        spent.len() <= 16 * kills,
        "{} tokens spent without an answer",
        spent.len()
    );

    // Everything a client received is in the store, once.
    let mut list = vec!["ca", "list", "--dir", "ca", "--json"];
    if let Some(db) = database {
        list.extend(["--database", db]);
    }
    let listed: Value = sb.ok(&list).json();
    let stored: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["serial"].as_str().unwrap().to_string())
        .collect();
    let unique: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "duplicate serials in the store");
    for (_, serial) in &received {
        assert!(
            unique.contains(serial),
            "a client received {serial}, which the store does not have"
        );
    }
    // One enrollment certificate per spent token, no more (the store also
    // holds the admin's and one HTTPS certificate per `ca serve` start).
    let enrolled = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["identities"]
                .to_string()
                .contains("spiffe://example.org/crash/")
        })
        .count();
    assert_eq!(enrolled, received.len() + spent.len());

    // No token that paid for a received certificate can be used again.
    // The CA rate-limits failed token attempts per address (20 a minute,
    // in memory), so the replays go in chunks with a restart in between.
    let sample: Vec<&(usize, String)> = received
        .iter()
        .step_by((received.len() / 60).max(1))
        .take(60)
        .collect();
    let key = symbolon_pki::KeyType::EcdsaP256.generate().unwrap();
    for chunk in sample.chunks(15) {
        {
            let mut s = server.lock().unwrap();
            s.kill9();
            s.restart();
        }
        rt.block_on(async {
            for (i, _) in chunk {
                let id: Identity = format!("spiffe://example.org/crash/{i}").parse().unwrap();
                let csr = symbolon_node::agent::csr_pem(&[id], &key).unwrap();
                let again = post_json(
                    &ca,
                    CaAnchor::Root(root.clone()),
                    None,
                    "/v1/enroll",
                    &json!({"token": tokens[*i], "csr": csr}),
                )
                .await;
                let e = again.expect_err("a used token bought a second certificate");
                assert!(e.to_string().contains("token_used"), "{e}");
            }
        });
    }
    rt.block_on(async {
        // Every received certificate can be revoked.
        for (_, serial) in received.iter().take(50) {
            let r = post_json(
                &ca,
                CaAnchor::Root(root.clone()),
                Some(admin.clone()),
                "/v1/revoke",
                &json!({"serial": serial, "reason": "keyCompromise"}),
            )
            .await
            .unwrap_or_else(|e| panic!("revoking {serial}: {e}"));
            assert_eq!(r["serial"], json!(serial), "{r}");
            assert_eq!(r["already_revoked"], json!(false), "{r}");
        }
    });

    let mut verify = vec!["ca", "audit", "verify", "--dir", "ca"];
    if let Some(db) = database {
        verify.extend(["--database", db]);
    }
    let audit = sb.ok(&verify);
    assert!(audit.stdout.contains("intact"), "{}", audit.all());
}

#[test]
fn sigkill_during_concurrent_enrollments_on_sqlite_loses_nothing() {
    crash_during_enrollments(None);
}

#[test]
fn sigkill_during_concurrent_enrollments_on_postgresql_loses_nothing() {
    let Some(psql) = tool("psql") else {
        return;
    };
    let Some(db) = Database::create(&psql) else {
        return;
    };
    crash_during_enrollments(Some(&db.url()));
}
