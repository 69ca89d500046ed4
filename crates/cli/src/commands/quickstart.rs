//! `symbolon quickstart`: the whole system on one machine in one command —
//! a CA served over HTTPS, an echo backend, a gateway with a sample policy,
//! a client enrolled with a one-time token, one allowed and one denied mTLS
//! request — explained step by step.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use clap::{Args, Parser};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use symbolon_core::Identity;
use symbolon_node::agent::{self, client::CaUrl};
use symbolon_pki::{KeyType, LeafSpec, Profile, PublicKeyData, files};
use symbolon_tls::CaAnchor;
use tokio::net::TcpStream;

use super::{DirArg, ca};
use crate::CmdResult;
use crate::ca_dir::Ca;

const TRUST_DOMAIN: &str = "quickstart.internal";

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Where to keep the demo's CA, certificates and configs (reused on later runs).
    #[arg(long, default_value = "symbolon-quickstart", value_name = "DIR")]
    dir: PathBuf,
    /// Stop after the demo instead of running until Ctrl-C.
    #[arg(long)]
    exit: bool,
}

#[derive(Parser)]
struct InitWrapper {
    #[command(flatten)]
    args: ca::InitArgs,
}

/// The preferred port if free, else any free one (the demo must start even
/// when 8443 is taken).
fn pick_port(preferred: u16) -> anyhow::Result<u16> {
    if StdListener::bind(("127.0.0.1", preferred)).is_ok() {
        return Ok(preferred);
    }
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_for(port: u16, what: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(anyhow!("{what} did not start on port {port}"))
}

fn step(n: u32, text: &str) {
    println!("\n[{n}/6] {text}");
}

/// The demo backend: answers every request with what it received, so the
/// identity the gateway forwarded can be seen.
async fn echo_backend(listener: tokio::net::TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                |req: hyper::Request<hyper::body::Incoming>| async move {
                    let headers: serde_json::Map<String, serde_json::Value> = req
                        .headers()
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.to_string(),
                                serde_json::Value::String(v.to_str().unwrap_or("").to_string()),
                            )
                        })
                        .collect();
                    let body = serde_json::json!({"method": req.method().as_str(), "path": req.uri().path(), "headers": headers});
                    hyper::Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body.to_string())))
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// One HTTPS GET with our client certificate; returns (status, body).
async fn get(
    gw_port: u16,
    root: &symbolon_pki::CertificateDer<'static>,
    client: &Path,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    let ck = symbolon_tls::load_certified_key(
        &client.join(agent::CERT_FILE),
        &client.join(agent::KEY_FILE),
    )?;
    let config =
        symbolon_tls::ca_client_config(CaAnchor::Root(root.clone()), "localhost", Some(ck))?;
    let tcp = TcpStream::connect(("127.0.0.1", gw_port)).await?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(rustls::pki_types::ServerName::try_from("localhost")?, tcp)
        .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", format!("localhost:{gw_port}"))
        .body(Full::new(Bytes::new()))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).to_string()))
}

pub async fn run(args: QuickstartArgs) -> CmdResult {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let ca_path = dir.join("ca");
    println!("Symbolon quickstart in {}", dir.display());

    step(
        1,
        "Certificate authority: offline root, online intermediate, SQLite store",
    );
    if ca_path.join(crate::ca_dir::CONFIG).is_file() {
        println!("    reusing the CA in {}", ca_path.display());
    } else {
        // The root key is encrypted; for the demo its random passphrase is
        // kept beside it (mode 0600). A real root key stays offline.
        let pass_file = dir.join("root-passphrase.txt");
        if !pass_file.exists() {
            let pw: String =
                symbolon_pki::Serial::random().to_hex() + &symbolon_pki::Serial::random().to_hex();
            files::write_atomic(&pass_file, pw.as_bytes(), files::PRIVATE)?;
        }
        let w = InitWrapper::try_parse_from([
            "init",
            "--dir",
            &ca_path.to_string_lossy(),
            "--name",
            "Quickstart",
            "--trust-domain",
            TRUST_DOMAIN,
            "--root-passphrase-file",
            &pass_file.to_string_lossy(),
        ])
        .map_err(|e| anyhow!("{e}"))?;
        ca::init(w.args).await?;
    }
    let dir_arg = DirArg {
        dir: ca_path.clone(),
        database: None,
    };
    let ca = Ca::open(&dir_arg).await?;
    let root = ca.auth.root.clone();
    let fingerprint = symbolon_pki::sha256_hex(&root);

    let ca_port = pick_port(8443)?;
    let gw_port = pick_port(9443)?;
    let backend_port = pick_port(9080)?;
    let metrics_port = pick_port(9090)?;

    // The gateway's own certificate, issued (and recorded) by the CA.
    let gw_key = KeyType::EcdsaP256.generate()?;
    let gw_spec = LeafSpec {
        identities: vec![
            Identity::dns("localhost")?,
            Identity::ip("127.0.0.1")?,
            Identity::spiffe(&format!("spiffe://{TRUST_DOMAIN}/gateway"))?,
        ],
        common_name: None,
        profile: Profile::Server,
        lifetime: ca.auth.default_leaf,
    };
    let gw_cert = ca.auth.sign(&gw_key.subject_public_key_info(), &gw_spec)?;
    ca.auth
        .record(
            &gw_cert,
            symbolon_store::Audit {
                actor: "quickstart",
                action: "issue",
            },
        )
        .await?;
    files::write_all_atomic(&[
        (
            &dir.join("gateway.crt"),
            gw_cert.chain_pem().as_bytes(),
            files::PUBLIC,
        ),
        (
            &dir.join("gateway.key"),
            symbolon_pki::to_pem("PRIVATE KEY", &gw_key.serialize_der()).as_bytes(),
            files::PRIVATE,
        ),
    ])?;
    let token = ca
        .auth
        .create_token(
            "quickstart",
            &[Identity::spiffe(&format!(
                "spiffe://{TRUST_DOMAIN}/demo/client"
            ))?],
            Duration::from_secs(600),
        )
        .await?
        .0;

    let serve_names = vec![Identity::dns("localhost")?, Identity::ip("127.0.0.1")?];
    let listen: SocketAddr = ([127, 0, 0, 1], ca_port).into();
    let limits = ca.settings.limits.clone();
    tokio::spawn(async move {
        if let Err(e) = symbolon_server::run(
            ca.auth,
            symbolon_server::ServeOptions {
                listen,
                names: serve_names,
                limits,
            },
        )
        .await
        {
            eprintln!("error: the CA stopped: {e}");
        }
    });
    wait_for(ca_port, "the CA").await?;
    println!("    CA serving at https://localhost:{ca_port} (root fingerprint {fingerprint})");

    step(2, "Demo backend: echoes every request it receives");
    let backend = tokio::net::TcpListener::bind(("127.0.0.1", backend_port)).await?;
    tokio::spawn(echo_backend(backend));
    println!("    listening on http://127.0.0.1:{backend_port} (plain HTTP, loopback only)");

    step(3, "Gateway: mTLS in front of the backend, with a policy");
    let gw_config = format!(
        r#"# Written by `symbolon quickstart`: edit it and the gateway reloads.
[server]
listen = "127.0.0.1:{gw_port}"
cert = "gateway.crt"
key = "gateway.key"
client_ca = "ca/ca-bundle.pem"
mode = "strict"

[upstream]
address = "127.0.0.1:{backend_port}"
protocol = "http"

[[policy.rule]]
name = "demo-clients"
effect = "allow"
spiffe_id = ["spiffe://{TRUST_DOMAIN}/demo/*"]

[[policy.rule]]
name = "no-admin"
effect = "deny"
paths = ["/admin/**"]

[metrics]
listen = "127.0.0.1:{metrics_port}"
"#
    );
    let gw_file = dir.join("gateway.toml");
    files::write_atomic(&gw_file, gw_config.as_bytes(), files::PUBLIC)?;
    let cfg = symbolon_node::load_config(&gw_file)?;
    tokio::spawn(async move {
        if let Err(e) = symbolon_node::run(cfg).await {
            eprintln!("error: the gateway stopped: {e}");
        }
    });
    wait_for(gw_port, "the gateway").await?;
    println!(
        "    https://localhost:{gw_port} → http://127.0.0.1:{backend_port}; policy: allow spiffe://{TRUST_DOMAIN}/demo/*, deny /admin/** ({})",
        gw_file.display()
    );

    step(
        4,
        "Client: enrolled with a one-time token (its key never leaves this directory)",
    );
    let client_dir = dir.join("client");
    let url = CaUrl {
        host: "localhost".into(),
        port: ca_port,
    };
    let enrolled = agent::enroll(&url, &fingerprint, &token, &client_dir, KeyType::EcdsaP256)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    println!("    identity  {}", enrolled.identities.join(", "));
    println!(
        "    serial    {} (valid until {})",
        enrolled.serial, enrolled.not_after
    );
    println!(
        "    files     {}/{{cert.pem,key.pem,ca.pem}}",
        client_dir.display()
    );

    step(5, "Allowed request: GET /hello with the client certificate");
    let (status, body) = get(gw_port, &root, &client_dir, "/hello").await?;
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let xfcc = seen["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap_or("(none)");
    println!("    status    {status}");
    println!("    the backend received x-forwarded-client-cert: {xfcc}");
    if status != 200 {
        return Err(anyhow!("the allowed request got {status}: {body}").into());
    }

    step(
        6,
        "Denied request: GET /admin/secret with the same certificate",
    );
    let (status, body) = get(gw_port, &root, &client_dir, "/admin/secret").await?;
    let denial: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    println!("    status    {status}");
    println!(
        "    reason    {} (rule \"{}\"); the backend received nothing",
        denial["reason"].as_str().unwrap_or("?"),
        denial["rule"].as_str().unwrap_or("?")
    );
    if status != 403 {
        return Err(anyhow!("the denied request got {status}: {body}").into());
    }

    println!("\nTry it yourself:");
    println!(
        "    curl --cacert {d}/ca/root.crt --cert {d}/client/cert.pem --key {d}/client/key.pem https://localhost:{gw_port}/hello",
        d = dir.display()
    );
    println!(
        "    curl --cacert {d}/ca/root.crt https://localhost:{gw_port}/hello   # no certificate: refused at the handshake",
        d = dir.display()
    );
    println!(
        "Metrics:   http://127.0.0.1:{metrics_port}/metrics (gateway), https://localhost:{ca_port}/metrics (CA)"
    );
    println!("CA API:    https://localhost:{ca_port}/v1/openapi.json");
    if args.exit {
        println!("\nDone (--exit).");
        return Ok(());
    }
    println!("\nRunning; press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await.ok();
    Ok(())
}
