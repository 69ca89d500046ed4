//! `symbolon bench issue`: certificates signed and durably recorded per
//! second, in process (sign + commit to the store, as `ca issue` does) or
//! over a CA's API (one-time token + CSR per certificate, as `symbolon
//! enroll` does), or against `cfssl serve` signing the same kind of CSRs.
//!
//! Everything that is not the CA's work is prepared before the clock
//! starts: keys, CSRs and (for Symbolon's API) the one-time tokens.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use rcgen::PublicKeyData;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use symbolon_core::Identity;
use symbolon_pki::{KeyType, LeafSpec, Profile};
use symbolon_server::Authority;
use symbolon_store::Audit;

use crate::http::{http_reason, open};
use crate::{BenchError, Progress, Report, Samples};

/// Which CA does the issuing.
#[derive(Debug)]
pub enum IssueTarget {
    /// This process signs and commits to the CA directory's store.
    InProcess(Arc<Authority>),
    /// A CA reached over HTTP(S).
    Api(ApiTarget),
}

#[derive(Clone, Debug)]
pub struct ApiTarget {
    pub url: String,
    pub addr: SocketAddr,
    /// The Host header.
    pub authority: String,
    /// TLS to the CA (required for Symbolon, whose token calls need an
    /// admin certificate); `None` for plain HTTP.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    pub kind: ApiKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKind {
    /// `symbolon ca serve`: POST /v1/tokens (admin), then POST /v1/enroll.
    Symbolon,
    /// `cfssl serve`: POST /api/v1/cfssl/sign with the CSR.
    Cfssl,
}

#[derive(Debug)]
pub struct IssueOptions {
    pub target: IssueTarget,
    /// Identity per certificate; `{n}` is replaced by its number.
    pub identity: String,
    pub count: u64,
    pub concurrency: usize,
    pub key_type: KeyType,
    pub quiet: bool,
}

pub async fn run(opts: IssueOptions) -> Result<Report, BenchError> {
    if !opts.identity.contains("{n}") {
        return Err(BenchError::Usage(format!(
            "--identity {:?} must contain {{n}}: every certificate needs its own name",
            opts.identity
        )));
    }
    let ids: Vec<Identity> = (0..opts.count)
        .map(|n| {
            let s = opts.identity.replace("{n}", &n.to_string());
            s.parse::<Identity>()
                .map_err(|e| BenchError::Usage(format!("--identity: {s}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let concurrency = opts.concurrency.max(1);
    let (label, target_name) = match &opts.target {
        IssueTarget::InProcess(_) => ("in process", "in-process".to_string()),
        IssueTarget::Api(a) if a.kind == ApiKind::Cfssl => ("cfssl API", a.url.clone()),
        IssueTarget::Api(a) => ("Symbolon API", a.url.clone()),
    };
    let jobs = match &opts.target {
        IssueTarget::InProcess(_) => ids.into_iter().map(Job::InProcess).collect(),
        IssueTarget::Api(api) => prepare_api(api, ids, concurrency, opts.key_type).await?,
    };
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Progress::default());
    progress.spawn_printer("issue", opts.quiet);
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (jobs, next, progress) = (jobs.clone(), next.clone(), progress.clone());
        let target = match &opts.target {
            IssueTarget::InProcess(a) => Worker::InProcess {
                auth: a.clone(),
                spki: opts
                    .key_type
                    .generate()
                    .map_err(|e| BenchError::Usage(e.to_string()))?
                    .subject_public_key_info(),
            },
            IssueTarget::Api(api) => Worker::Api {
                api: api.clone(),
                sender: None,
            },
        };
        workers.push(tokio::spawn(async move {
            let mut target = target;
            let mut samples = Samples::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(job) = jobs.get(i) else { break };
                let t = Instant::now();
                match target.issue(job).await {
                    Ok(()) => {
                        samples.ok(t.elapsed());
                        progress.ok();
                    }
                    Err(reason) => {
                        samples.error(reason);
                        progress.failed();
                    }
                }
            }
            samples
        }));
    }
    let mut all = Samples::new();
    for w in workers {
        if let Ok(s) = w.await {
            all.merge(s);
        }
    }
    let elapsed = start.elapsed();
    progress.finish();
    let mut settings = BTreeMap::new();
    settings.insert("ca", json!(label));
    settings.insert("count", json!(opts.count));
    settings.insert("concurrency", json!(concurrency));
    settings.insert("key_type", json!(opts.key_type.as_str()));
    Ok(all.report("issue", &target_name, elapsed, settings, BTreeMap::new()))
}

enum Job {
    InProcess(Identity),
    /// A CSR and, for Symbolon, the token that pays for it.
    Api {
        csr: String,
        token: Option<String>,
    },
}

enum Worker {
    InProcess {
        auth: Arc<Authority>,
        spki: Vec<u8>,
    },
    Api {
        api: ApiTarget,
        sender: Option<SendRequest<Full<Bytes>>>,
    },
}

impl Worker {
    async fn issue(&mut self, job: &Job) -> Result<(), String> {
        match (self, job) {
            (Worker::InProcess { auth, spki }, Job::InProcess(id)) => {
                let spec = LeafSpec {
                    profile: Profile::default_for(std::slice::from_ref(id)),
                    identities: vec![id.clone()],
                    common_name: None,
                    lifetime: auth.default_leaf,
                };
                let cert = auth
                    .sign(spki, &spec)
                    .map_err(|e| format!("refused: {e}"))?;
                auth.record(
                    &cert,
                    Audit {
                        actor: "bench",
                        action: "issue",
                    },
                )
                .await
                .map_err(|e| format!("store: {e}"))
            }
            (Worker::Api { api, sender }, Job::Api { csr, token }) => {
                let (path, body) = match api.kind {
                    ApiKind::Symbolon => (
                        "/v1/enroll",
                        json!({"token": token.as_deref().unwrap_or_default(), "csr": csr}),
                    ),
                    ApiKind::Cfssl => ("/api/v1/cfssl/sign", json!({"certificate_request": csr})),
                };
                let answer = call(api, sender, path, &body).await?;
                let issued = match api.kind {
                    ApiKind::Symbolon => answer["certificate"].as_str().is_some(),
                    ApiKind::Cfssl => {
                        answer["success"] == json!(true)
                            && answer["result"]["certificate"].as_str().is_some()
                    }
                };
                if issued {
                    Ok(())
                } else {
                    Err("answer_without_certificate".into())
                }
            }
            _ => Err("internal: job and worker kinds differ".into()),
        }
    }
}

/// Keys, CSRs and tokens, made before timing starts.
async fn prepare_api(
    api: &ApiTarget,
    ids: Vec<Identity>,
    concurrency: usize,
    key_type: KeyType,
) -> Result<Vec<Job>, BenchError> {
    let mut csrs = Vec::with_capacity(ids.len());
    for id in &ids {
        let key = key_type
            .generate()
            .map_err(|e| BenchError::Usage(e.to_string()))?;
        let csr = symbolon_node::agent::csr_pem(std::slice::from_ref(id), &key)
            .map_err(|e| BenchError::Usage(format!("CSR for {id}: {e}")))?;
        csrs.push(csr);
    }
    if api.kind == ApiKind::Cfssl {
        return Ok(csrs
            .into_iter()
            .map(|csr| Job::Api { csr, token: None })
            .collect());
    }
    // Tokens, concurrently over keep-alive connections; any refusal stops
    // the run before it starts (usually: the certificate is not an admin).
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (api, ids, next) = (api.clone(), ids.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = None;
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(id) = ids.get(i) else { break };
                let body = json!({"identities": [id.to_string()], "ttl": "1h"});
                let answer = call(&api, &mut sender, "/v1/tokens", &body).await?;
                let token = answer["token"]
                    .as_str()
                    .ok_or("the token answer has no token")?;
                out.push((i, token.to_string()));
            }
            Ok::<_, String>(out)
        }));
    }
    let mut tokens = vec![String::new(); ids.len()];
    for t in tasks {
        let made = t
            .await
            .map_err(|e| BenchError::Usage(format!("token task: {e}")))?
            .map_err(|e| {
                BenchError::Usage(format!(
                    "cannot create enrollment tokens at {}: {e} (the --cert must be an admin in the CA's ca.toml)",
                    api.url
                ))
            })?;
        for (i, tok) in made {
            tokens[i] = tok;
        }
    }
    Ok(csrs
        .into_iter()
        .zip(tokens)
        .map(|(csr, token)| Job::Api {
            csr,
            token: Some(token),
        })
        .collect())
}

/// POSTs JSON on a keep-alive connection (reopened when broken) and
/// returns the JSON answer; a refusal becomes `refused_<reason>` or
/// `status_<code>`.
async fn call(
    api: &ApiTarget,
    sender: &mut Option<SendRequest<Full<Bytes>>>,
    path: &str,
    body: &Value,
) -> Result<Value, String> {
    let s = match sender {
        Some(s) if !s.is_closed() => s,
        _ => sender.insert(open(api.addr, api.tls.as_ref()).await?),
    };
    let outcome = async {
        s.ready().await.map_err(http_reason)?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(hyper::header::HOST, &api.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| format!("request_{e}"))?;
        let resp = s.send_request(req).await.map_err(http_reason)?;
        let status = resp.status();
        let data = resp
            .into_body()
            .collect()
            .await
            .map_err(http_reason)?
            .to_bytes();
        let answer: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(match answer["reason"].as_str() {
                Some(r) => format!("refused_{r}"),
                None => format!("status_{}", status.as_u16()),
            });
        }
        Ok(answer)
    };
    match tokio::time::timeout(Duration::from_secs(30), outcome).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            if !e.starts_with("refused_") && !e.starts_with("status_") {
                *sender = None;
            }
            Err(e)
        }
        Err(_) => {
            *sender = None;
            Err("timeout".into())
        }
    }
}
