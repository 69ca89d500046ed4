//! CSR intake: `check_csr` on arbitrary DER (PEM-wrapped input is unwrapped
//! first, as `load_csr` would).
//!
//! - never panics;
//! - an accepted CSR has at least one identity, sorted and without
//!   duplicates, and a public key `check_spki_der` accepts;
//! - `describe_csr` (what `cert inspect` shows) agrees: it parses the same
//!   bytes, says the signature is valid and that no CA certificate is asked
//!   for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use symbolon_pki::{check_csr, check_spki_der, describe_csr};

fn check(der: &[u8]) {
    let described = describe_csr(der);
    let Ok(csr) = check_csr(der) else {
        return;
    };
    assert!(!csr.identities.is_empty());
    assert!(
        csr.identities.windows(2).all(|w| w[0] < w[1]),
        "not sorted and unique"
    );
    assert!(
        check_spki_der(&csr.spki_der).is_ok(),
        "accepted key rejected on re-read"
    );
    let d = described.expect("check_csr accepted what describe_csr cannot parse");
    assert!(d.signature_valid);
    assert!(!d.requests_ca);
    assert!(!d.subject_alt_names.is_empty());
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.starts_with(b"-----BEGIN")
        && let Ok(objects) = symbolon_pki::input::parse_objects("fuzz.csr".as_ref(), data)
    {
        for o in objects {
            check(&o.der);
        }
    }
});
