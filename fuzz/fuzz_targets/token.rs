//! Enrollment tokens (`symbolon1.<claims>.<mac>`).
//!
//! - `verify_token` and `token_claims_unverified` never panic, whatever the
//!   string;
//! - sign → verify returns exactly the claims signed (when the token fits
//!   the 8 KiB bound `verify_token` enforces; a longer one is `Malformed`);
//! - changing any single byte of a valid token makes it fail to verify;
//! - another 32-byte key (the size `new_token_key` makes) does not verify it.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use symbolon_pki::{TokenClaims, TokenError, sign_token, token_claims_unverified, verify_token};

#[derive(Debug, Arbitrary)]
struct Input {
    key: Vec<u8>,
    other_key: [u8; 32],
    id: String,
    identities: Vec<String>,
    issued_at: i64,
    expires_at: i64,
    /// Which byte to change, and to what (xor, never 0).
    at: u16,
    xor: std::num::NonZeroU8,
}

fuzz_target!(|data: &[u8]| {
    // The whole input as a token string (the seeds are real tokens), then
    // the same bytes as a description of claims to sign.
    let raw = String::from_utf8_lossy(data);
    let _ = verify_token(b"fuzz", &raw);
    let _ = token_claims_unverified(&raw);
    let Ok(input) = Input::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let _ = verify_token(&input.key, &raw);

    let claims = TokenClaims {
        id: input.id,
        identities: input.identities,
        issued_at: input.issued_at,
        expires_at: input.expires_at,
    };
    let token = sign_token(&input.key, &claims);
    if token.trim().len() > 8192 {
        assert_eq!(verify_token(&input.key, &token), Err(TokenError::Malformed));
        return;
    }
    assert_eq!(verify_token(&input.key, &token).as_ref(), Ok(&claims));
    assert_eq!(token_claims_unverified(&token).as_ref(), Ok(&claims));

    let mut bytes = token.clone().into_bytes();
    let i = usize::from(input.at) % bytes.len();
    bytes[i] ^= input.xor.get();
    if let Ok(changed) = String::from_utf8(bytes) {
        assert!(
            verify_token(&input.key, &changed).is_err(),
            "byte {i} changed and the token still verifies: {changed:?}"
        );
    }

    if input.key.len() == 32 && input.key[..] != input.other_key[..] {
        assert!(verify_token(&input.other_key, &token).is_err());
    }
});
