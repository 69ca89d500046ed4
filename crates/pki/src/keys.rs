//! Key generation, key files (plain and passphrase-encrypted PKCS#8) and the
//! minimum-strength rule applied to every key we sign or accept.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use aws_lc_rs::cipher::{
    AES_256, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::pbkdf2;
use rcgen::KeyPair;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::PkiError;
use crate::der;

/// The key types Symbolon generates. ECDSA P-256 is the default: fast
/// handshakes, small certificates, supported by every TLS stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyType {
    #[default]
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeyType {
    pub const ALL: &'static [KeyType] = &[
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Ed25519,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
        }
    }

    /// Generates a fresh key pair of this type.
    pub fn generate(self) -> Result<KeyPair, PkiError> {
        let rsa = |size| KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size);
        let kp = match self {
            KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyType::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeyType::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
            KeyType::Rsa2048 => rsa(rcgen::RsaKeySize::_2048),
            KeyType::Rsa3072 => rsa(rcgen::RsaKeySize::_3072),
            KeyType::Rsa4096 => rsa(rcgen::RsaKeySize::_4096),
        };
        kp.map_err(|e| PkiError::Crypto(format!("generating a {} key failed: {e}", self.as_str())))
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        KeyType::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = KeyType::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown key type {s:?}; use one of {}", names.join(", "))
            })
    }
}

/// What a public key is, for display and for the strength rule.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// `ECDSA P-256`, `RSA`, `Ed25519`, …
    pub algorithm: String,
    pub bits: usize,
}

impl fmt::Display for KeyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.algorithm == "RSA" {
            write!(f, "RSA {} bits", self.bits)
        } else {
            f.write_str(&self.algorithm)
        }
    }
}

/// Describes a SubjectPublicKeyInfo and applies the minimum-strength rule:
/// RSA of at least 2048 bits and a multiple of 8, ECDSA on P-256/P-384/P-521,
/// or Ed25519. DSA, small RSA and other curves are refused.
///
/// Returns the description either way, and whether it is acceptable.
pub fn key_info(spki: &SubjectPublicKeyInfo<'_>) -> (KeyInfo, Result<(), String>) {
    let alg = spki.algorithm.algorithm.to_id_string();
    let info = |algorithm: &str, bits| KeyInfo {
        algorithm: algorithm.to_string(),
        bits,
    };
    match alg.as_str() {
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => {
            let bits = spki.parsed().map(|k| k.key_size()).unwrap_or(0);
            let verdict = if bits < 2048 {
                Err(format!(
                    "RSA key of {bits} bits is too weak; use at least 2048 bits"
                ))
            } else if !bits.is_multiple_of(8) {
                Err(format!("RSA key of {bits} bits is not a multiple of 8"))
            } else {
                Ok(())
            };
            (info("RSA", bits), verdict)
        }
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                "1.2.840.10045.3.1.7" => (info("ECDSA P-256", 256), Ok(())),
                "1.3.132.0.34" => (info("ECDSA P-384", 384), Ok(())),
                "1.3.132.0.35" => (info("ECDSA P-521", 521), Ok(())),
                other => (
                    info(&format!("ECDSA curve {other}"), 0),
                    Err(format!(
                        "EC curve {other} is not accepted; use P-256, P-384 or P-521"
                    )),
                ),
            }
        }
        "1.3.101.112" => (info("Ed25519", 256), Ok(())),
        "1.2.840.10040.4.1" => (
            info("DSA", spki.parsed().map(|k| k.key_size()).unwrap_or(0)),
            Err("DSA keys are not accepted; use ECDSA P-256".to_string()),
        ),
        other => (
            info(other, 0),
            Err(format!(
                "public key algorithm {other} is not accepted; use ECDSA P-256"
            )),
        ),
    }
}

/// Parses a DER SubjectPublicKeyInfo and applies [`key_info`]'s rule.
pub fn check_spki_der(spki_der: &[u8]) -> Result<KeyInfo, String> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|_| "the public key is not a valid SubjectPublicKeyInfo".to_string())?;
    let (info, verdict) = key_info(&spki);
    verdict.map(|()| info)
}

/// Key identifier per RFC 7093 §2 method 1: the leftmost 160 bits of the
/// SHA-256 of the subjectPublicKey BIT STRING value. Linters recognise it,
/// unlike a hash over the whole SubjectPublicKeyInfo.
pub fn key_identifier(spki_der: &[u8]) -> Result<Vec<u8>, PkiError> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der).map_err(|_| {
        PkiError::Refused("the public key is not a valid SubjectPublicKeyInfo".into())
    })?;
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &spki.subject_public_key.data);
    Ok(digest.as_ref()[..20].to_vec())
}

// === encrypted PKCS#8 ===

const OID_PBES2: &str = "1.2.840.113549.1.5.13";
const OID_PBKDF2: &str = "1.2.840.113549.1.5.12";
const OID_HMAC_SHA256: &str = "1.2.840.113549.2.9";
const OID_AES256_CBC: &str = "2.16.840.1.101.3.4.1.42";

/// PBKDF2-HMAC-SHA256 work factor for new files (OWASP's 2023 figure). The
/// root key is opened only for rare offline operations, so its cost is fine.
pub const PBKDF2_ITERATIONS: u32 = 600_000;

/// Refuse files asking for absurd work, so a crafted file cannot hang us.
const MAX_ITERATIONS: u64 = 10_000_000;

/// Wraps a PKCS#8 private key as an RFC 5958 EncryptedPrivateKeyInfo with
/// PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), the form OpenSSL writes and reads.
pub fn encrypt_pkcs8(pkcs8: &[u8], passphrase: &[u8]) -> Result<Vec<u8>, PkiError> {
    encrypt_pkcs8_with(pkcs8, passphrase, PBKDF2_ITERATIONS)
}

pub(crate) fn encrypt_pkcs8_with(
    pkcs8: &[u8],
    passphrase: &[u8],
    iterations: u32,
) -> Result<Vec<u8>, PkiError> {
    if passphrase.is_empty() {
        return Err(PkiError::Crypto("the passphrase is empty".into()));
    }
    let crypto =
        |what: &str| PkiError::Crypto(format!("encrypting the private key failed: {what}"));
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| crypto("no randomness"))?;
    aws_lc_rs::rand::fill(&mut iv).map_err(|_| crypto("no randomness"))?;
    let iterations_nz = NonZeroU32::new(iterations).ok_or_else(|| crypto("zero iterations"))?;
    let mut key = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations_nz,
        &salt,
        passphrase,
        &mut key,
    );
    let cipher = UnboundCipherKey::new(&AES_256, &key)
        .and_then(PaddedBlockEncryptingKey::cbc_pkcs7)
        .map_err(|_| crypto("AES key"))?;
    let mut data = pkcs8.to_vec();
    cipher
        .less_safe_encrypt(&mut data, EncryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| crypto("AES-CBC"))?;

    let pbkdf2_params = der::seq(&[
        &der::tlv(der::OCTET_STRING, &salt),
        &der::uint(iterations as u64),
        &der::seq(&[&der::oid(OID_HMAC_SHA256), &der::tlv(der::NULL, &[])]),
    ]);
    let kdf = der::seq(&[&der::oid(OID_PBKDF2), &pbkdf2_params]);
    let enc = der::seq(&[&der::oid(OID_AES256_CBC), &der::tlv(der::OCTET_STRING, &iv)]);
    let alg = der::seq(&[&der::oid(OID_PBES2), &der::seq(&[&kdf, &enc])]);
    Ok(der::seq(&[&alg, &der::tlv(der::OCTET_STRING, &data)]))
}

/// Opens an EncryptedPrivateKeyInfo written by [`encrypt_pkcs8`] or by
/// OpenSSL with `-v2 aes-256-cbc` (PBKDF2 with HMAC-SHA256, AES-256-CBC).
pub fn decrypt_pkcs8(encrypted: &[u8], passphrase: &[u8]) -> Result<Vec<u8>, PkiError> {
    let unsupported = |what: &str| {
        PkiError::Crypto(format!(
            "unsupported encrypted key ({what}); Symbolon reads PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC"
        ))
    };
    let malformed = || unsupported("malformed EncryptedPrivateKeyInfo");
    let mut outer = der::Reader::new(encrypted);
    let mut epki = der::Reader::new(outer.expect(der::SEQUENCE).ok_or_else(malformed)?);
    let mut alg = der::Reader::new(epki.expect(der::SEQUENCE).ok_or_else(malformed)?);
    let data = epki.expect(der::OCTET_STRING).ok_or_else(malformed)?;
    if alg.expect(der::OID).ok_or_else(malformed)? != &der::oid(OID_PBES2)[2..] {
        return Err(unsupported("not PBES2"));
    }
    let mut params = der::Reader::new(alg.expect(der::SEQUENCE).ok_or_else(malformed)?);
    let mut kdf = der::Reader::new(params.expect(der::SEQUENCE).ok_or_else(malformed)?);
    if kdf.expect(der::OID).ok_or_else(malformed)? != &der::oid(OID_PBKDF2)[2..] {
        return Err(unsupported("key derivation is not PBKDF2"));
    }
    let mut kdf_params = der::Reader::new(kdf.expect(der::SEQUENCE).ok_or_else(malformed)?);
    let salt = kdf_params.expect(der::OCTET_STRING).ok_or_else(malformed)?;
    let iterations = kdf_params.uint().ok_or_else(malformed)?;
    if kdf_params.peek_tag() == Some(der::INTEGER) {
        let key_len = kdf_params.uint().ok_or_else(malformed)?;
        if key_len != 32 {
            return Err(unsupported("key length is not 32"));
        }
    }
    // The PRF defaults to HMAC-SHA1 when absent; we only read SHA-256.
    let mut prf = der::Reader::new(
        kdf_params
            .expect(der::SEQUENCE)
            .ok_or_else(|| unsupported("PRF is HMAC-SHA1"))?,
    );
    if prf.expect(der::OID).ok_or_else(malformed)? != &der::oid(OID_HMAC_SHA256)[2..] {
        return Err(unsupported("PRF is not HMAC-SHA256"));
    }
    let mut enc = der::Reader::new(params.expect(der::SEQUENCE).ok_or_else(malformed)?);
    if enc.expect(der::OID).ok_or_else(malformed)? != &der::oid(OID_AES256_CBC)[2..] {
        return Err(unsupported("cipher is not AES-256-CBC"));
    }
    let iv: [u8; 16] = enc
        .expect(der::OCTET_STRING)
        .and_then(|v| v.try_into().ok())
        .ok_or_else(malformed)?;
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(unsupported("iteration count out of range"));
    }
    let mut key = [0u8; 32];
    let iterations = NonZeroU32::new(iterations as u32).ok_or_else(malformed)?;
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        passphrase,
        &mut key,
    );
    let cipher = UnboundCipherKey::new(&AES_256, &key)
        .and_then(PaddedBlockDecryptingKey::cbc_pkcs7)
        .map_err(|_| malformed())?;
    let mut buf = data.to_vec();
    let plain = cipher
        .decrypt(&mut buf, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| PkiError::WrongPassphrase)?;
    // A wrong passphrase usually fails the padding check; when the padding
    // happens to look valid, the result is not a key and the caller's parse
    // fails. Check here too, so both cases say "wrong passphrase".
    let plain = plain.to_vec();
    if der::Reader::new(&plain).expect(der::SEQUENCE).is_none() {
        return Err(PkiError::WrongPassphrase);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;

    #[test]
    fn encrypted_pkcs8_round_trips_and_refuses_wrong_passphrase() {
        let kp = KeyType::EcdsaP256.generate().unwrap();
        let der = kp.serialize_der();
        let enc = encrypt_pkcs8_with(&der, b"correct horse", 1000).unwrap();
        assert!(
            !enc.windows(der.len()).any(|w| w == der.as_slice()),
            "plaintext leaked"
        );
        assert_eq!(decrypt_pkcs8(&enc, b"correct horse").unwrap(), der);
        assert!(matches!(
            decrypt_pkcs8(&enc, b"wrong"),
            Err(PkiError::WrongPassphrase)
        ));
        assert!(encrypt_pkcs8(&der, b"").is_err());
    }

    #[test]
    fn decrypt_refuses_garbage_without_panicking() {
        let enc = encrypt_pkcs8_with(b"\x30\x03\x02\x01\x00", b"pw", 10).unwrap();
        for cut in 0..enc.len() {
            assert!(decrypt_pkcs8(&enc[..cut], b"pw").is_err());
        }
        let mut flipped = enc.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(decrypt_pkcs8(&flipped, b"pw").is_err());
    }

    #[test]
    fn key_types_generate_keys_that_pass_the_strength_rule() {
        for kt in [
            KeyType::EcdsaP256,
            KeyType::EcdsaP384,
            KeyType::Ed25519,
            KeyType::Rsa2048,
        ] {
            let kp = kt.generate().unwrap();
            let info = check_spki_der(&kp.subject_public_key_info()).unwrap();
            assert!(info.bits >= 256, "{kt}: {info:?}");
            assert_eq!(kt.as_str().parse::<KeyType>().unwrap(), kt);
        }
        assert!(
            "dsa-1024"
                .parse::<KeyType>()
                .unwrap_err()
                .contains("ecdsa-p256")
        );
    }
}
