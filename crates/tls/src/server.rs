//! Server side: a per-connection client-certificate verifier that records
//! the full outcome (a verified path, or the reason it failed), over shared
//! credentials, session cache and ticketer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use symbolon_pki::{Purpose, VerifiedPath, VerifyError, VerifyOptions};
use time::OffsetDateTime;

use crate::{TlsError, TrustBundle};

/// Whether a client certificate is required.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthMode {
    /// No certificate, no connection (`certificate_required` alert).
    Strict,
    /// A certificate is requested; without one the connection proceeds
    /// unauthenticated and policy decides. A certificate that is presented
    /// but invalid is still refused.
    Permissive,
}

/// What the verifier concluded for one handshake. `None` after a resumed
/// session, where rustls does not call the verifier: the caller must
/// re-verify the peer certificate against the current trust bundle.
pub type HandshakeOutcome = Arc<Mutex<Option<Result<VerifiedPath, VerifyError>>>>;

#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A revocation check run after the chain verifies, on every full and
/// resumed handshake. It must answer from memory: it is on the handshake
/// path.
pub trait RevocationCheck: Send + Sync + std::fmt::Debug {
    /// `Err((reason, sentence))` when the certificate must be refused.
    fn check(&self, peer: &symbolon_core::PeerCert) -> Result<(), (symbolon_core::Reason, String)>;
}

/// Everything needed to make a server config, shared by every connection.
#[derive(Clone, Debug)]
pub struct ServerTls {
    cert: Arc<CertifiedKey>,
    trust: Arc<TrustBundle>,
    mode: ClientAuthMode,
    alpn: Vec<Vec<u8>>,
    provider: Arc<CryptoProvider>,
    sessions: Arc<dyn StoresServerSessions>,
    tickets: Arc<dyn ProducesTickets>,
    revocation: Option<Arc<dyn RevocationCheck>>,
}

/// Resumption state kept across reloads, so a certificate rotation does not
/// force every client into a full handshake.
#[derive(Clone, Debug)]
pub struct SessionState {
    sessions: Arc<dyn StoresServerSessions>,
    tickets: Arc<dyn ProducesTickets>,
}

impl SessionState {
    pub fn new() -> Result<SessionState, TlsError> {
        Ok(SessionState {
            sessions: rustls::server::ServerSessionMemoryCache::new(64 * 1024),
            tickets: rustls::crypto::aws_lc_rs::Ticketer::new()?,
        })
    }
}

impl ServerTls {
    pub fn new(
        cert: Arc<CertifiedKey>,
        trust: Arc<TrustBundle>,
        mode: ClientAuthMode,
        alpn: Vec<Vec<u8>>,
        state: &SessionState,
    ) -> ServerTls {
        ServerTls {
            cert,
            trust,
            mode,
            alpn,
            provider: crate::provider(),
            sessions: state.sessions.clone(),
            tickets: state.tickets.clone(),
            revocation: None,
        }
    }

    /// The same configuration stapling `ocsp` (a DER OCSPResponse for our
    /// own certificate) to every handshake (RFC 6066).
    pub fn with_ocsp(&self, ocsp: Vec<u8>) -> ServerTls {
        let mut ck = (*self.cert).clone();
        ck.ocsp = Some(ocsp);
        ServerTls {
            cert: Arc::new(ck),
            ..self.clone()
        }
    }

    /// Adds a revocation check to every handshake (full and resumed).
    pub fn with_revocation(mut self, check: Arc<dyn RevocationCheck>) -> ServerTls {
        self.revocation = Some(check);
        self
    }

    pub fn trust(&self) -> &Arc<TrustBundle> {
        &self.trust
    }

    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.cert
    }

    /// A config for one connection, and the slot its verifier fills.
    pub fn for_connection(&self) -> Result<(Arc<ServerConfig>, HandshakeOutcome), TlsError> {
        let outcome: HandshakeOutcome = Arc::new(Mutex::new(None));
        let verifier = Arc::new(ConnVerifier {
            trust: self.trust.clone(),
            revocation: self.revocation.clone(),
            mode: self.mode,
            algs: self.provider.signature_verification_algorithms,
            outcome: outcome.clone(),
        });
        let mut cfg = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(crate::PROTOCOL_VERSIONS)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(FixedCert(self.cert.clone())));
        cfg.alpn_protocols = self.alpn.clone();
        cfg.session_storage = self.sessions.clone();
        cfg.ticketer = self.tickets.clone();
        Ok((Arc::new(cfg), outcome))
    }

    /// Re-verifies a peer certificate (after resumption, where no verifier
    /// ran) against the current trust bundle.
    pub fn reverify(&self, chain: &[CertificateDer<'_>]) -> Result<VerifiedPath, VerifyError> {
        verify_client(
            &self.trust,
            self.revocation.as_deref(),
            chain,
            OffsetDateTime::now_utc(),
        )
    }
}

fn verify_client(
    trust: &TrustBundle,
    revocation: Option<&dyn RevocationCheck>,
    chain: &[CertificateDer<'_>],
    at: OffsetDateTime,
) -> Result<VerifiedPath, VerifyError> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(VerifyError {
            reason: symbolon_core::Reason::NoClientCert,
            message: "no client certificate".into(),
            hint: "present a client certificate".into(),
            certificate: None,
        });
    };
    let opts = VerifyOptions {
        trust: &trust.certs,
        intermediates,
        crls: &[],
        at,
        purpose: Purpose::Client,
        name: None,
        max_intermediates: 4,
    };
    let path = symbolon_pki::verify(leaf, &opts)?;
    if let Some(r) = revocation
        && let Err((reason, message)) = r.check(&path.peer)
    {
        return Err(VerifyError {
            reason,
            message,
            hint: "the certificate cannot be used any more; issue a new one".into(),
            certificate: path.path.first().cloned().map(Box::new),
        });
    }
    Ok(path)
}

#[derive(Debug)]
struct ConnVerifier {
    trust: Arc<TrustBundle>,
    revocation: Option<Arc<dyn RevocationCheck>>,
    mode: ClientAuthMode,
    algs: WebPkiSupportedAlgorithms,
    outcome: HandshakeOutcome,
}

impl ClientCertVerifier for ConnVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mode == ClientAuthMode::Strict
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.trust.subjects
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let at = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(now.as_secs());
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        let result = verify_client(&self.trust, self.revocation.as_deref(), &chain, at);
        let verdict = match &result {
            Ok(_) => Ok(ClientCertVerified::assertion()),
            Err(e) => Err(rustls::Error::InvalidCertificate(crate::certificate_error(
                e.reason,
            ))),
        };
        if let Ok(mut slot) = self.outcome.lock() {
            *slot = Some(result);
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
