//! `symbolon bench http`: keep-alive HTTP/1.1 requests at a fixed rate.
//!
//! Open loop: request `i` is due at `start + i / rate` and goes to
//! connection `i mod connections`. When its connection is still busy with
//! an earlier response at that moment, its latency runs from when it was
//! due, so time spent waiting behind a slow response is counted (no
//! coordinated omission): if the server cannot keep up, latencies grow
//! instead of the offered rate quietly dropping. When the connection was
//! free, latency runs from when the request was sent: the timer that wakes
//! the generator fires up to a millisecond late, and that lateness is the
//! generator's, not the server's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{Progress, Report, Samples, classify};

#[derive(Clone, Debug)]
pub struct HttpOptions {
    pub url: String,
    pub addr: SocketAddr,
    /// The Host header and path+query sent.
    pub authority: String,
    pub path: String,
    /// `None` for plain HTTP (a baseline straight to a backend).
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    pub rate: f64,
    pub connections: usize,
    pub duration: Duration,
    /// Request body bytes; 0 sends GET, more sends POST.
    pub body_size: usize,
    pub timeout: Duration,
    pub quiet: bool,
}

pub async fn run(opts: HttpOptions) -> Report {
    let progress = Arc::new(Progress::default());
    progress.spawn_printer("http", opts.quiet);
    let body = Bytes::from(vec![b'x'; opts.body_size]);
    let connections = opts.connections.max(1);
    let interval = Duration::from_secs_f64(1.0 / opts.rate);
    let total = (opts.duration.as_secs_f64() * opts.rate).round() as u64;
    // Connections are opened before the clock starts: this measures
    // requests on established keep-alive connections.
    let mut senders = Vec::with_capacity(connections);
    let mut setup = Samples::new();
    for _ in 0..connections {
        match connect(&opts).await {
            Ok(s) => senders.push(Some(s)),
            Err(reason) => {
                setup.error(format!("connect_{reason}"));
                senders.push(None);
            }
        }
    }
    let start = Instant::now() + Duration::from_millis(20);
    let mut workers = Vec::new();
    for (k, sender) in senders.into_iter().enumerate() {
        let (opts, body, progress) = (opts.clone(), body.clone(), progress.clone());
        workers.push(tokio::spawn(async move {
            let mut samples = Samples::new();
            let mut sender = sender;
            let (mut bytes_in, mut reconnects, mut i) = (0u64, 0u64, k as u64);
            // When this connection's previous response arrived.
            let mut free_since = Instant::now();
            while i < total {
                let due = start + interval.mul_f64(i as f64);
                let busy_at_due = free_since > due;
                tokio::time::sleep_until(due.into()).await;
                let from = if busy_at_due { due } else { Instant::now() };
                i += connections as u64;
                // A server may close an idle keep-alive connection (or
                // speak HTTP/1.0); open a new one before the request.
                if sender.as_ref().is_some_and(|s| s.is_closed()) {
                    sender = None;
                    reconnects += 1;
                }
                let s = match sender.as_mut() {
                    Some(s) => s,
                    None => match connect(&opts).await {
                        Ok(s) => sender.insert(s),
                        Err(reason) => {
                            samples.error(format!("connect_{reason}"));
                            progress.failed();
                            free_since = Instant::now();
                            continue;
                        }
                    },
                };
                match tokio::time::timeout(opts.timeout, request(s, &opts, body.clone())).await {
                    Ok(Ok(n)) => {
                        samples.ok(from.elapsed());
                        bytes_in += n;
                        progress.ok();
                    }
                    Ok(Err(reason)) => {
                        // A refused request leaves the connection usable;
                        // a broken one is replaced before the next request.
                        if !reason.starts_with("status_") {
                            sender = None;
                        }
                        samples.error(reason);
                        progress.failed();
                    }
                    Err(_) => {
                        sender = None;
                        samples.error("timeout");
                        progress.failed();
                    }
                }
                free_since = Instant::now();
            }
            (samples, bytes_in, reconnects)
        }));
    }
    let mut all = setup;
    let (mut bytes_in, mut reconnects) = (0, 0);
    for w in workers {
        if let Ok((s, b, r)) = w.await {
            all.merge(s);
            bytes_in += b;
            reconnects += r;
        }
    }
    let elapsed = start.elapsed();
    progress.finish();
    let mut settings = BTreeMap::new();
    settings.insert("rate_per_s", json!(opts.rate));
    settings.insert("connections", json!(connections));
    settings.insert("duration_s", json!(opts.duration.as_secs_f64()));
    settings.insert("body_size", json!(opts.body_size));
    settings.insert("requests_offered", json!(total));
    let mut results = BTreeMap::new();
    results.insert("response_bytes", json!(bytes_in));
    // Connections the server closed between requests, replaced untimed
    // (the next request's latency still counts from when it was due).
    results.insert("reconnects", json!(reconnects));
    all.report("http", &opts.url, elapsed, settings, results)
}

async fn connect(opts: &HttpOptions) -> Result<SendRequest<Full<Bytes>>, String> {
    open(opts.addr, opts.tls.as_ref()).await
}

/// A keep-alive HTTP/1.1 connection, over TLS when `tls` is given.
pub(crate) async fn open(
    addr: SocketAddr,
    tls: Option<&(Arc<ClientConfig>, ServerName<'static>)>,
) -> Result<SendRequest<Full<Bytes>>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| classify(&e))?;
    let _ = tcp.set_nodelay(true);
    match tls {
        Some((config, name)) => {
            let tls = TlsConnector::from(config.clone())
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| classify(&e))?;
            handshake(TokioIo::new(tls)).await
        }
        None => handshake(TokioIo::new(tcp)).await,
    }
}

async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("http_{e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request; the response body is read to the end. Returns its size.
async fn request(
    sender: &mut SendRequest<Full<Bytes>>,
    opts: &HttpOptions,
    body: Bytes,
) -> Result<u64, String> {
    sender.ready().await.map_err(http_reason)?;
    let method = if body.is_empty() {
        Method::GET
    } else {
        Method::POST
    };
    let req = Request::builder()
        .method(method)
        .uri(&opts.path)
        .header(hyper::header::HOST, &opts.authority)
        .body(Full::new(body))
        .map_err(|e| format!("request_{e}"))?;
    let resp = sender.send_request(req).await.map_err(http_reason)?;
    let status = resp.status();
    let data = resp
        .into_body()
        .collect()
        .await
        .map_err(http_reason)?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("status_{}", status.as_u16()));
    }
    Ok(data.len() as u64)
}

pub(crate) fn http_reason(e: hyper::Error) -> String {
    use std::error::Error;
    // The TLS or socket error underneath, when there is one.
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return classify(io);
        }
        source = s.source();
    }
    if e.is_incomplete_message() || e.is_closed() {
        "closed_by_peer".into()
    } else {
        "http_error".into()
    }
}
