//! Server side: a per-connection client-certificate verifier that records
//! the full outcome (a verified path, or the reason it failed), over shared
//! credentials, session cache and ticketer.

use std::collections::HashMap;
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
    verified: Arc<VerifiedChains>,
}

/// Client chains that verified against this configuration's trust bundle.
///
/// A service keeps one certificate for hours and opens many connections
/// with it; checking its chain's signatures again on every handshake (and
/// again on every resumption) is most of a handshake's CPU. A hit skips the
/// chain check only: the client still proves its key (CertificateVerify)
/// on every full handshake, and revocation is checked on every handshake,
/// never cached.
///
/// Keyed by the SHA-256 of the exact chain presented. An entry is used
/// only while `at` is inside the validity of every certificate on its
/// path. The cache belongs to one `ServerTls`, so a reload with a new
/// trust bundle starts empty. Failures are not cached.
#[derive(Debug, Default)]
struct VerifiedChains {
    entries: Mutex<HashMap<[u8; 32], CachedPath>>,
}

#[derive(Debug)]
struct CachedPath {
    path: VerifiedPath,
    from: OffsetDateTime,
    until: OffsetDateTime,
}

/// Enough for every client of a busy gateway; when full, the cache starts
/// over (a rare full verification is cheaper than tracking recency).
const VERIFIED_CHAINS: usize = 10_000;

impl VerifiedChains {
    fn key(chain: &[CertificateDer<'_>]) -> [u8; 32] {
        // Length-prefixed, so two different chains cannot concatenate to
        // the same bytes.
        let mut buf = Vec::with_capacity(chain.iter().map(|c| c.len() + 4).sum());
        for c in chain {
            buf.extend_from_slice(&(c.len() as u32).to_be_bytes());
            buf.extend_from_slice(c);
        }
        symbolon_pki::sha256(&buf)
    }

    fn get(&self, key: &[u8; 32], at: OffsetDateTime) -> Option<VerifiedPath> {
        let entries = self.entries.lock().ok()?;
        let hit = entries.get(key)?;
        (hit.from <= at && at <= hit.until).then(|| hit.path.clone())
    }

    fn put(&self, key: [u8; 32], path: &VerifiedPath) {
        let parse =
            |s: &str| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok();
        // The window every certificate on the path is valid in; a path
        // whose dates cannot be read is simply not cached.
        let mut from = OffsetDateTime::UNIX_EPOCH;
        let mut until = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(u32::MAX.into()) * 4;
        for c in &path.path {
            let (Some(nb), Some(na)) = (parse(&c.not_before), parse(&c.not_after)) else {
                return;
            };
            from = from.max(nb);
            until = until.min(na);
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= VERIFIED_CHAINS {
                entries.clear();
            }
            entries.insert(
                key,
                CachedPath {
                    path: path.clone(),
                    from,
                    until,
                },
            );
        }
    }
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
            verified: Arc::default(),
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
            verified: self.verified.clone(),
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
        cfg.ignore_client_order = true;
        cfg.session_storage = self.sessions.clone();
        cfg.ticketer = self.tickets.clone();
        Ok((Arc::new(cfg), outcome))
    }

    /// Re-verifies a peer certificate (after resumption, where no verifier
    /// ran) against the current trust bundle.
    pub fn reverify(&self, chain: &[CertificateDer<'_>]) -> Result<VerifiedPath, VerifyError> {
        verify_client(
            &self.trust,
            &self.verified,
            self.revocation.as_deref(),
            chain,
            OffsetDateTime::now_utc(),
        )
    }
}

fn verify_client(
    trust: &TrustBundle,
    verified: &VerifiedChains,
    revocation: Option<&dyn RevocationCheck>,
    chain: &[CertificateDer<'_>],
    at: OffsetDateTime,
) -> Result<VerifiedPath, VerifyError> {
    let path = verify_chain(trust, verified, chain, at)?;
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

/// The chain check, answered from the cache when this exact chain has
/// verified before and every certificate on its path is still in date.
fn verify_chain(
    trust: &TrustBundle,
    verified: &VerifiedChains,
    chain: &[CertificateDer<'_>],
    at: OffsetDateTime,
) -> Result<VerifiedPath, VerifyError> {
    let key = VerifiedChains::key(chain);
    if let Some(path) = verified.get(&key, at) {
        return Ok(path);
    }
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
    verified.put(key, &path);
    Ok(path)
}

#[derive(Debug)]
struct ConnVerifier {
    trust: Arc<TrustBundle>,
    verified: Arc<VerifiedChains>,
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
        let result = verify_client(
            &self.trust,
            &self.verified,
            self.revocation.as_deref(),
            &chain,
            at,
        );
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use symbolon_core::Reason;
    use symbolon_testkit::{TestCa, ca_params, leaf_params};

    use super::*;

    fn der(b: &[u8]) -> CertificateDer<'static> {
        CertificateDer::from(b.to_vec())
    }

    #[test]
    fn a_cached_chain_is_answered_only_inside_every_certificates_validity() {
        let root = TestCa::root(ca_params("Cache Root", None));
        let inter = root.sub_ca(ca_params("Cache Intermediate", Some(0)));
        let leaf = inter.leaf(leaf_params("client.example"));
        let trust = TrustBundle::from_certs(vec![der(&root.der)]);
        let cache = VerifiedChains::default();
        let chain = [der(&leaf.der), der(&inter.der)];
        let now = OffsetDateTime::now_utc();

        let first = verify_chain(&trust, &cache, &chain, now).unwrap();
        assert_eq!(cache.entries.lock().unwrap().len(), 1);
        let again = verify_chain(&trust, &cache, &chain, now).unwrap();
        assert_eq!(again.peer.serial, first.peer.serial);
        assert_eq!(again.path.len(), 3);

        // Outside the leaf's validity the cache does not answer: the full
        // check runs and refuses, with its own reason.
        let later = now + Duration::from_secs(2 * 86_400);
        let e = verify_chain(&trust, &cache, &chain, later).unwrap_err();
        assert_eq!(e.reason, Reason::Expired);
        let earlier = now - Duration::from_secs(2 * 3600);
        let e = verify_chain(&trust, &cache, &chain, earlier).unwrap_err();
        assert_eq!(e.reason, Reason::NotYetValid);
    }

    #[test]
    fn a_cached_chain_does_not_vouch_for_another_chain_or_another_trust_bundle() {
        let root = TestCa::root(ca_params("Cache Root", None));
        let inter = root.sub_ca(ca_params("Cache Intermediate", Some(0)));
        let leaf = inter.leaf(leaf_params("client.example"));
        let trust = TrustBundle::from_certs(vec![der(&root.der)]);
        let cache = VerifiedChains::default();
        let now = OffsetDateTime::now_utc();
        verify_chain(&trust, &cache, &[der(&leaf.der), der(&inter.der)], now).unwrap();

        // A forged intermediate with the same name, presented with a leaf
        // it did not sign, and a leaf of the forger's own: both refused,
        // and failures are not cached.
        let forger = TestCa::root(ca_params("Cache Root", None));
        let forged = forger.sub_ca(ca_params("Cache Intermediate", Some(0)));
        let forged_leaf = forged.leaf(leaf_params("client.example"));
        assert!(verify_chain(&trust, &cache, &[der(&leaf.der), der(&forged.der)], now).is_err());
        assert!(
            verify_chain(
                &trust,
                &cache,
                &[der(&forged_leaf.der), der(&inter.der)],
                now
            )
            .is_err()
        );
        assert!(
            verify_chain(
                &trust,
                &cache,
                &[der(&forged_leaf.der), der(&forged.der)],
                now
            )
            .is_err()
        );
        assert_eq!(cache.entries.lock().unwrap().len(), 1);

        // A configuration with another trust bundle (what a reload makes)
        // starts with its own, empty cache: the chain is checked anew.
        let state = SessionState::new().unwrap();
        let other = ServerTls::new(
            certified_key(&forger, "gw.example"),
            Arc::new(TrustBundle::from_certs(vec![der(&forger.der)])),
            ClientAuthMode::Strict,
            vec![],
            &state,
        );
        let e = other
            .reverify(&[der(&leaf.der), der(&inter.der)])
            .unwrap_err();
        assert_eq!(e.reason, Reason::UnknownCa);
    }

    fn certified_key(ca: &TestCa, dns: &str) -> Arc<CertifiedKey> {
        let leaf = ca.leaf(leaf_params(dns));
        crate::certified_key_from_der(vec![der(&leaf.der)], leaf.key.serialize_der()).unwrap()
    }

    #[test]
    fn a_full_cache_starts_over_instead_of_growing() {
        let root = TestCa::root(ca_params("Cache Root", None));
        let leaf = root.leaf(leaf_params("client.example"));
        let trust = TrustBundle::from_certs(vec![der(&root.der)]);
        let cache = VerifiedChains::default();
        let path =
            verify_chain(&trust, &cache, &[der(&leaf.der)], OffsetDateTime::now_utc()).unwrap();
        for i in 0..VERIFIED_CHAINS as u32 + 5 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            cache.put(key, &path);
            assert!(cache.entries.lock().unwrap().len() <= VERIFIED_CHAINS);
        }
    }

    /// Regression: a client certificate with `api.example.org\0.evil.test`
    /// as a DNS SAN passed the handshake (the NUL went unnoticed) and was
    /// left to policy; next to an allowed name it was accepted outright.
    #[test]
    fn a_san_with_a_nul_control_or_non_ascii_character_is_malformed_whatever_else_it_names() {
        use symbolon_testkit::rcgen::{CustomExtension, SanType};

        let root = TestCa::root(ca_params("San Root", None));
        let trust = TrustBundle::from_certs(vec![der(&root.der)]);
        let now = OffsetDateTime::now_utc();
        let refused = |p| {
            let leaf = root.leaf(p);
            verify_chain(&trust, &VerifiedChains::default(), &[der(&leaf.der)], now)
                .map(|_| ())
                .unwrap_err()
                .reason
        };
        // Each next to a good name that on its own is accepted.
        for bad in [
            SanType::DnsName("api.example.org\0.evil.test".try_into().unwrap()),
            SanType::URI("spiffe://example.org/web\0.evil.test".try_into().unwrap()),
            SanType::Rfc822Name("ops@example.org\r\nBcc: x".try_into().unwrap()),
        ] {
            let mut p = leaf_params("client.example");
            p.subject_alt_names.push(bad.clone());
            assert_eq!(refused(p), Reason::Malformed, "{bad:?}");
        }
        // What the parser lets through beyond IA5: UTF-8 (a Cyrillic `а`)
        // and bytes that are not UTF-8 at all, as raw dNSNames.
        for name in [&b"\xd0\xb0pi.example.org"[..], &b"api\xff.example.org"[..]] {
            let mut gn = vec![0x82, name.len() as u8];
            gn.extend_from_slice(name);
            let mut san = vec![0x30, gn.len() as u8];
            san.extend(gn);
            let mut p = leaf_params("client.example");
            p.subject_alt_names.clear();
            p.custom_extensions = vec![CustomExtension::from_oid_content(&[2, 5, 29, 17], san)];
            assert_eq!(refused(p), Reason::Malformed, "{name:?}");
        }
        let leaf = root.leaf(leaf_params("client.example"));
        verify_chain(&trust, &VerifiedChains::default(), &[der(&leaf.der)], now).unwrap();
    }
}

#[cfg(test)]
mod suite_order_tests {
    #![allow(clippy::unwrap_used)]

    use rustls::pki_types::ServerName;
    use symbolon_testkit::{TestCa, ca_params, leaf_params};

    use super::*;

    /// Moves TLS records between the two sides until both are done.
    fn handshake(client: &mut rustls::ClientConnection, server: &mut rustls::ServerConnection) {
        for _ in 0..20 {
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
            }
            server.process_new_packets().unwrap();
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
            }
            client.process_new_packets().unwrap();
            if !client.is_handshaking() && !server.is_handshaking() {
                return;
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn the_server_picks_aes_128_gcm_sha256_even_when_the_client_prefers_aes_256() {
        let root = TestCa::root(ca_params("Suite Root", None));
        let server_leaf = root.leaf(leaf_params("gw.example"));
        let client_leaf = root.leaf(leaf_params("client.example"));
        let state = SessionState::new().unwrap();
        let tls = ServerTls::new(
            crate::certified_key_from_der(
                vec![CertificateDer::from(server_leaf.der.clone())],
                server_leaf.key.serialize_der(),
            )
            .unwrap(),
            Arc::new(TrustBundle::from_certs(vec![CertificateDer::from(
                root.der.clone(),
            )])),
            ClientAuthMode::Strict,
            vec![],
            &state,
        );
        let (server_config, _) = tls.for_connection().unwrap();

        // rustls' own default order puts AES-256-GCM-SHA384 first, as
        // OpenSSL does.
        let client_provider = rustls::crypto::aws_lc_rs::default_provider();
        assert_eq!(
            client_provider.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
        );
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(root.der.clone())).unwrap();
        let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(client_provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from(client_leaf.der.clone())],
                rustls::pki_types::PrivateKeyDer::Pkcs8(client_leaf.key.serialize_der().into()),
            )
            .unwrap();
        let mut client = rustls::ClientConnection::new(
            Arc::new(client_config),
            ServerName::try_from("gw.example").unwrap(),
        )
        .unwrap();
        let mut server = rustls::ServerConnection::new(server_config).unwrap();
        handshake(&mut client, &mut server);
        assert_eq!(
            server.negotiated_cipher_suite().unwrap().suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );

        // Nothing was dropped: the same suites, reordered.
        let ours: Vec<_> = crate::provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        let mut theirs: Vec<_> = rustls::crypto::aws_lc_rs::default_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(ours.len(), theirs.len());
        for s in &ours {
            theirs.retain(|t| t != s);
        }
        assert!(theirs.is_empty());
        assert_eq!(ours[0], rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    }
}
