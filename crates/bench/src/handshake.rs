//! `symbolon bench handshake`: mTLS handshakes as fast as `concurrency`
//! workers can open them, each on a new TCP connection.
//!
//! In TLS 1.3 a client finishes its side of the handshake before the server
//! has judged the client's certificate, so a handshake only counts once the
//! server has confirmed it: we send close_notify and read until the server
//! closes. A refusal arrives there as an alert, counted by its name. The
//! same exchange delivers the session tickets that `--resume` needs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{Budget, Progress, Report, Samples, classify};

#[derive(Clone, Debug)]
pub struct HandshakeOptions {
    pub target: SocketAddr,
    pub server_name: ServerName<'static>,
    pub tls: Arc<ClientConfig>,
    pub concurrency: usize,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    /// Resume sessions (TLS 1.3 tickets or 1.2 session IDs) after one full
    /// handshake per worker.
    pub resume: bool,
    /// Give up on one handshake after this long.
    pub timeout: Duration,
    pub quiet: bool,
}

/// What one connection ended as.
enum Outcome {
    Done { resumed: bool },
    Failed(String),
}

pub async fn run(opts: HandshakeOptions) -> Report {
    let mut config = (*opts.tls).clone();
    config.resumption = if opts.resume {
        // Enough room for a few tickets per worker.
        Resumption::in_memory_sessions(opts.concurrency.max(1) * 8)
    } else {
        Resumption::disabled()
    };
    let connector = TlsConnector::from(Arc::new(config));

    let progress = Arc::new(Progress::default());
    progress.spawn_printer(
        if opts.resume {
            "handshake (resumed)"
        } else {
            "handshake (full)"
        },
        opts.quiet,
    );
    // Resumed runs start from one untimed full handshake per worker, so
    // every timed handshake has a ticket to offer.
    if opts.resume {
        for _ in 0..opts.concurrency.max(1) {
            let _ = once(&connector, &opts).await;
        }
    }
    let budget = Arc::new(Budget::new(opts.duration, opts.count));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency.max(1) {
        let (connector, opts, budget, progress) = (
            connector.clone(),
            opts.clone(),
            budget.clone(),
            progress.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut samples = Samples::new();
            let (mut resumed, mut full) = (0u64, 0u64);
            while budget.take() {
                let t = Instant::now();
                match once(&connector, &opts).await {
                    Outcome::Done { resumed: r } => {
                        samples.ok(t.elapsed());
                        progress.ok();
                        if r { resumed += 1 } else { full += 1 }
                    }
                    Outcome::Failed(reason) => {
                        samples.error(reason);
                        progress.failed();
                    }
                }
            }
            (samples, resumed, full)
        }));
    }
    let mut all = Samples::new();
    let (mut resumed, mut full) = (0u64, 0u64);
    for w in workers {
        if let Ok((s, r, f)) = w.await {
            all.merge(s);
            resumed += r;
            full += f;
        }
    }
    let elapsed = start.elapsed();
    progress.finish();
    let mut settings = BTreeMap::new();
    settings.insert("mode", json!(if opts.resume { "resumed" } else { "full" }));
    settings.insert("concurrency", json!(opts.concurrency));
    if let Some(c) = opts.count {
        settings.insert("count", json!(c));
    } else {
        settings.insert(
            "duration_s",
            json!(
                opts.duration
                    .unwrap_or(Duration::from_secs(10))
                    .as_secs_f64()
            ),
        );
    }
    let mut results = BTreeMap::new();
    results.insert("resumed", json!(resumed));
    results.insert("full", json!(full));
    all.report(
        "handshake",
        &opts.target.to_string(),
        elapsed,
        settings,
        results,
    )
}

async fn once(connector: &TlsConnector, opts: &HandshakeOptions) -> Outcome {
    match tokio::time::timeout(opts.timeout, attempt(connector, opts)).await {
        Ok(Ok(resumed)) => Outcome::Done { resumed },
        Ok(Err(reason)) => Outcome::Failed(reason),
        Err(_) => Outcome::Failed("timeout".into()),
    }
}

async fn attempt(connector: &TlsConnector, opts: &HandshakeOptions) -> Result<bool, String> {
    let tcp = TcpStream::connect(opts.target)
        .await
        .map_err(|e| classify(&e))?;
    let _ = tcp.set_nodelay(true);
    let mut tls = connector
        .connect(opts.server_name.clone(), tcp)
        .await
        .map_err(|e| classify(&e))?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    // close_notify, then read to the end: a refusal of our certificate
    // arrives here as an alert, tickets as post-handshake messages.
    tls.shutdown().await.map_err(|e| classify(&e))?;
    let mut buf = [0u8; 1024];
    loop {
        match tls.read(&mut buf).await {
            Ok(0) => return Ok(resumed),
            Ok(_) => continue,
            // The server closed without close_notify after accepting us.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(resumed),
            Err(e) => return Err(classify(&e)),
        }
    }
}
