//! One-time enrollment tokens: `symbolon1.<claims>.<mac>`, both parts
//! base64url. The MAC is HMAC-SHA256 under the CA's token key, so a token
//! cannot be forged or altered; single use is enforced by the store.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use symbolon_core::Identity;

const PREFIX: &str = "symbolon1";

/// What a token allows: exactly these identities, until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenClaims {
    /// Random 128-bit id (hex): the store's key for single use.
    pub id: String,
    /// Identities in their displayed form (`spiffe://…`, `DNS:…`, `IP:…`).
    pub identities: Vec<String>,
    pub issued_at: i64,
    pub expires_at: i64,
}

impl TokenClaims {
    pub fn parsed_identities(&self) -> Result<Vec<Identity>, String> {
        self.identities
            .iter()
            .map(|s| s.parse::<Identity>().map_err(|e| e.to_string()))
            .collect()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    #[error("the token is malformed (expected symbolon1.<claims>.<mac>)")]
    Malformed,
    #[error("the token's signature does not verify: it was altered, or made by another CA")]
    BadSignature,
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::sign(&k, data).as_ref().to_vec()
}

pub fn sign_token(key: &[u8], claims: &TokenClaims) -> String {
    let body = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signed = format!("{PREFIX}.{body}");
    let tag = B64.encode(mac(key, signed.as_bytes()));
    format!("{signed}.{tag}")
}

/// Checks the MAC (in constant time) before looking at the claims.
pub fn verify_token(key: &[u8], token: &str) -> Result<TokenClaims, TokenError> {
    let token = token.trim();
    if token.len() > 8192 {
        return Err(TokenError::Malformed);
    }
    let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (prefix, body) = signed.split_once('.').ok_or(TokenError::Malformed)?;
    if prefix != PREFIX {
        return Err(TokenError::Malformed);
    }
    let tag = B64.decode(tag).map_err(|_| TokenError::Malformed)?;
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::verify(&k, signed.as_bytes(), &tag).map_err(|_| TokenError::BadSignature)?;
    let json = B64.decode(body).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
}

/// Reads a token's claims WITHOUT checking its MAC: for the enrolling
/// client, which cannot check it and only needs to know which identities
/// to put in its CSR. The CA always verifies.
pub fn token_claims_unverified(token: &str) -> Result<TokenClaims, TokenError> {
    let mut parts = token.trim().split('.');
    let (Some(PREFIX), Some(body), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let json = B64.decode(body).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
}

/// 32 random bytes for a new token key.
pub fn new_token_key() -> Vec<u8> {
    let mut k = vec![0u8; 32];
    // As for serials: no entropy means no safe way to continue.
    aws_lc_rs::rand::fill(&mut k).expect("the system random number generator failed");
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> TokenClaims {
        TokenClaims {
            id: "ab".repeat(16),
            identities: vec![
                "spiffe://example.org/dev".into(),
                "DNS:dev.example.org".into(),
            ],
            issued_at: 1,
            expires_at: 2,
        }
    }

    #[test]
    fn tokens_round_trip_and_resist_tampering() {
        let key = new_token_key();
        let t = sign_token(&key, &claims());
        assert_eq!(verify_token(&key, &t).unwrap(), claims());
        assert_eq!(
            verify_token(&new_token_key(), &t),
            Err(TokenError::BadSignature)
        );
        // Altering the claims (more identities, later expiry) breaks the MAC.
        let (_, body, tag) = {
            let mut p = t.split('.');
            (p.next().unwrap(), p.next().unwrap(), p.next().unwrap())
        };
        let mut forged = claims();
        forged.identities.push("DNS:evil.org".into());
        let forged_body = B64.encode(serde_json::to_vec(&forged).unwrap());
        assert_ne!(forged_body, body);
        assert_eq!(
            verify_token(&key, &format!("symbolon1.{forged_body}.{tag}")),
            Err(TokenError::BadSignature)
        );
        for bad in [
            "",
            "x",
            "symbolon1.x",
            "other.a.b",
            "symbolon1.!!.??",
            &"a".repeat(9000),
        ] {
            assert!(verify_token(&key, bad).is_err(), "{bad:?}");
        }
        assert_eq!(claims().parsed_identities().unwrap().len(), 2);
    }
}
