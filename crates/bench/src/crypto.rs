//! `symbolon bench crypto`: the crypto bound of a full TLS 1.3 mTLS
//! handshake on this machine, for each key type we issue.
//!
//! The server's unavoidable work per full handshake is one signature (its
//! CertificateVerify), two verifications (the client's CertificateVerify
//! and the client leaf's signature by its issuer) and one X25519 key
//! exchange (key generation + agreement). Timing each with the same
//! library the gateway uses (aws-lc-rs) on one thread, by the thread's CPU
//! time, gives the most full handshakes one CPU-second could possibly
//! serve; a server's measured handshakes per CPU-second divided by this is
//! how much of the CPU goes to anything else.

use std::time::{Duration, Instant};

use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde::Serialize;
use symbolon_pki::KeyType;

/// A TLS 1.3 CertificateVerify input is 64 spaces, a context string and
/// a transcript hash: about this long.
const MESSAGE: [u8; 130] = [0x20; 130];

/// One key type's costs, in microseconds of CPU.
#[derive(Clone, Debug, Serialize)]
pub struct CryptoCost {
    pub key_type: &'static str,
    pub sign_us: f64,
    pub verify_us: f64,
    pub x25519_us: f64,
    /// sign + 2 × verify + X25519.
    pub handshake_us: f64,
    /// 1 s / handshake_us: the bound.
    pub handshakes_per_cpu_s: f64,
    /// How the time was read: "thread CPU" or "wall" (when the per-thread
    /// CPU clock is not available).
    pub clock: &'static str,
}

#[derive(Debug, thiserror::Error)]
#[error("crypto benchmark for {key_type}: {what} failed")]
pub struct CryptoError {
    key_type: &'static str,
    what: &'static str,
}

/// Measures each operation for about `per_op` of CPU time.
pub fn measure(key_type: KeyType, per_op: Duration) -> Result<CryptoCost, CryptoError> {
    let kt = key_type.as_str();
    let fail = |what| CryptoError { key_type: kt, what };
    let rng = SystemRandom::new();
    let signer = Signer::new(key_type).ok_or_else(|| fail("key generation"))?;
    let sig = signer.sign(&rng).ok_or_else(|| fail("signing"))?;
    let (pk, alg) = signer.verifier();
    let public = signature::UnparsedPublicKey::new(alg, pk);
    public
        .verify(&MESSAGE, &sig)
        .map_err(|_| fail("verification"))?;

    let (sign_us, clock) = per_call(per_op, || signer.sign(&rng).is_some());
    let (verify_us, _) = per_call(per_op, || public.verify(&MESSAGE, &sig).is_ok());
    let client = EphemeralPrivateKey::generate(&X25519, &rng)
        .and_then(|k| k.compute_public_key())
        .map_err(|_| fail("X25519 key generation"))?;
    let (x25519_us, _) = per_call(per_op, || x25519(&rng, client.as_ref()).is_some());
    if [sign_us, verify_us, x25519_us]
        .iter()
        .any(|v| !v.is_finite())
    {
        return Err(fail("an operation"));
    }
    let handshake_us = sign_us + 2.0 * verify_us + x25519_us;
    Ok(CryptoCost {
        key_type: kt,
        sign_us,
        verify_us,
        x25519_us,
        handshake_us,
        handshakes_per_cpu_s: 1e6 / handshake_us,
        clock,
    })
}

/// An ephemeral X25519 key, its public half (sent in the ServerHello) and
/// the agreement with the client's public key: the server's part of the
/// key exchange in a full handshake.
fn x25519(rng: &SystemRandom, client_public: &[u8]) -> Option<()> {
    let mine = EphemeralPrivateKey::generate(&X25519, rng).ok()?;
    let _server_public = mine.compute_public_key().ok()?;
    agreement::agree_ephemeral(
        mine,
        UnparsedPublicKey::new(&X25519, client_public),
        (),
        |_| Ok(()),
    )
    .ok()
}

/// Average CPU microseconds per call of `op`, measured for about `budget`.
fn per_call(budget: Duration, mut op: impl FnMut() -> bool) -> (f64, &'static str) {
    // Warm up caches and lazy initialisation.
    for _ in 0..10 {
        if !op() {
            return (f64::NAN, "");
        }
    }
    let clock = CpuClock::start();
    let mut n = 0u64;
    while clock.elapsed() < budget {
        for _ in 0..16 {
            if !op() {
                return (f64::NAN, "");
            }
        }
        n += 16;
    }
    (clock.elapsed().as_secs_f64() * 1e6 / n as f64, clock.kind())
}

enum Signer {
    Ecdsa(EcdsaKeyPair, &'static signature::EcdsaVerificationAlgorithm),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

impl Signer {
    fn new(key_type: KeyType) -> Option<Signer> {
        Some(match key_type {
            KeyType::EcdsaP256 => Signer::Ecdsa(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING).ok()?,
                &signature::ECDSA_P256_SHA256_ASN1,
            ),
            KeyType::EcdsaP384 => Signer::Ecdsa(
                EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_ASN1_SIGNING).ok()?,
                &signature::ECDSA_P384_SHA384_ASN1,
            ),
            KeyType::Ed25519 => Signer::Ed25519(Ed25519KeyPair::generate().ok()?),
            KeyType::Rsa2048 => Signer::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).ok()?),
            KeyType::Rsa3072 => Signer::Rsa(RsaKeyPair::generate(KeySize::Rsa3072).ok()?),
            KeyType::Rsa4096 => Signer::Rsa(RsaKeyPair::generate(KeySize::Rsa4096).ok()?),
        })
    }

    /// TLS 1.3 signs with ECDSA, Ed25519 or RSA-PSS.
    fn sign(&self, rng: &SystemRandom) -> Option<Vec<u8>> {
        match self {
            Signer::Ecdsa(k, _) => Some(k.sign(rng, &MESSAGE).ok()?.as_ref().to_vec()),
            Signer::Ed25519(k) => Some(k.sign(&MESSAGE).as_ref().to_vec()),
            Signer::Rsa(k) => {
                let mut out = vec![0u8; k.public_modulus_len()];
                k.sign(&signature::RSA_PSS_SHA256, rng, &MESSAGE, &mut out)
                    .ok()?;
                Some(out)
            }
        }
    }

    fn verifier(&self) -> (Vec<u8>, &'static dyn signature::VerificationAlgorithm) {
        match self {
            Signer::Ecdsa(k, alg) => (k.public_key().as_ref().to_vec(), *alg),
            Signer::Ed25519(k) => (k.public_key().as_ref().to_vec(), &signature::ED25519),
            Signer::Rsa(k) => (
                k.public_key().as_ref().to_vec(),
                &signature::RSA_PSS_2048_8192_SHA256,
            ),
        }
    }
}

/// This thread's CPU time (Linux `/proc/thread-self/schedstat`, in
/// nanoseconds), or wall time where that file is missing.
struct CpuClock {
    start: Option<u64>,
    wall: Instant,
}

impl CpuClock {
    fn start() -> CpuClock {
        CpuClock {
            start: thread_cpu_ns(),
            wall: Instant::now(),
        }
    }

    fn elapsed(&self) -> Duration {
        match (self.start, thread_cpu_ns()) {
            (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)),
            _ => self.wall.elapsed(),
        }
    }

    fn kind(&self) -> &'static str {
        if self.start.is_some() {
            "thread CPU"
        } else {
            "wall"
        }
    }
}

fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_type_signs_verifies_and_adds_up() {
        for kt in [KeyType::EcdsaP256, KeyType::Ed25519, KeyType::Rsa2048] {
            let c = measure(kt, Duration::from_millis(20)).unwrap();
            assert!(
                c.sign_us > 0.0 && c.verify_us > 0.0 && c.x25519_us > 0.0,
                "{c:?}"
            );
            let sum = c.sign_us + 2.0 * c.verify_us + c.x25519_us;
            assert!((c.handshake_us - sum).abs() < 1e-9, "{c:?}");
            assert!((c.handshakes_per_cpu_s * c.handshake_us - 1e6).abs() < 1e-3);
        }
    }
}
