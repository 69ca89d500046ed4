//! A reference server for the benchmark suite: bare tokio + rustls with
//! rustls' own WebPKI client verifier, no policy, no HTTP, no logging. It
//! accepts a connection, completes the mTLS handshake, reads until the
//! client closes and closes. What it reaches in handshakes per CPU-second
//! on a machine is the ceiling for any rustls server there, kernel and
//! runtime costs included.
//!
//!   bare_rustls LISTEN CERT_CHAIN KEY CLIENT_CA

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, cert, key, ca] = &args[..] else {
        return Err("usage: bare_rustls LISTEN CERT_CHAIN KEY CLIENT_CA".into());
    };
    let provider = symbolon_tls::provider();
    let certified = symbolon_tls::load_certified_key(cert.as_ref(), key.as_ref())?;
    let mut roots = rustls::RootCertStore::empty();
    for c in symbolon_tls::TrustBundle::load(ca.as_ref())?.certs {
        roots.add(c)?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(
        symbolon_pki::input::load_private_key(key.as_ref(), None)?
            .serialize_der()
            .into(),
    );
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(symbolon_tls::PROTOCOL_VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certified.cert.clone(), key_der)?;
    config.ignore_client_order = true;
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(listen).await?;
    eprintln!("bare rustls listening on {listen}");
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut buf = [0u8; 4096];
            while let Ok(n) = tls.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            let _ = tls.shutdown().await;
        });
    }
}
