//! OCSP requests as the CA's responder receives them (`parse_ocsp_request`),
//! and the response it signs for whatever parsed.
//!
//! Input starting with 0x30 (a DER SEQUENCE, like the seeds) is parsed as
//! is; anything else describes a well-formed request (hash algorithm,
//! hashes, serials, nonce) that is encoded here, independently of the
//! library, and must parse back to the same serials and nonce.
//!
//! - never panics;
//! - an accepted request has 1..=32 CertIDs, serials that round-trip
//!   through hex, and a nonce of at most 128 bytes;
//! - the CA signs a response for any accepted request, and the response
//!   echoes the nonce.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use symbolon_pki::{
    CaOptions, Issuer, KeyPair, KeyType, OcspRequest, OcspStatus, Serial, create_ca,
    parse_ocsp_request,
};
use time::OffsetDateTime;

/// An intermediate CA made at start-up (never stored anywhere).
fn issuer() -> &'static Issuer {
    static ISSUER: OnceLock<Issuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        let ca = create_ca(
            &CaOptions {
                name: "Fuzz".into(),
                key_type: KeyType::EcdsaP256,
                root_lifetime: Duration::from_secs(86_400),
                intermediate_lifetime: Duration::from_secs(3600),
            },
            OffsetDateTime::now_utc(),
        )
        .expect("create a CA");
        let key = KeyPair::try_from(ca.intermediate_key_pkcs8.as_slice()).expect("key");
        Issuer::new(ca.intermediate_der, key).expect("issuer")
    })
}

// === a tiny DER writer, independent of the library's ===

fn tlv(tag: u8, v: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match v.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(v);
    out
}

const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const NONCE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02];

#[derive(Debug, Arbitrary)]
struct One {
    sha256: bool,
    name_hash: Vec<u8>,
    key_hash: Vec<u8>,
    serial: Vec<u8>,
    with_null_params: bool,
}

#[derive(Debug, Arbitrary)]
struct Built {
    ids: Vec<One>,
    version: bool,
    nonce: Option<Vec<u8>>,
    critical: bool,
}

/// Encodes `b`; returns the DER and the serials as the parser must read
/// them (a positive INTEGER of 1..=21 bytes).
fn encode(b: &Built) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut list = Vec::new();
    let mut serials = Vec::new();
    for one in &b.ids {
        let mut serial: Vec<u8> = one.serial.iter().copied().take(20).collect();
        if serial.first().is_none_or(|b| b & 0x80 != 0) {
            serial.insert(0, 0);
        }
        let mut alg = tlv(0x06, if one.sha256 { SHA256 } else { SHA1 });
        if one.with_null_params {
            alg.extend(tlv(0x05, &[]));
        }
        let cid = [
            tlv(0x30, &alg),
            tlv(0x04, &one.name_hash),
            tlv(0x04, &one.key_hash),
            tlv(0x02, &serial),
        ]
        .concat();
        list.extend(tlv(0x30, &tlv(0x30, &cid)));
        serials.push(serial);
    }
    let mut tbs = Vec::new();
    if b.version {
        tbs.extend(tlv(0xa0, &tlv(0x02, &[0])));
    }
    tbs.extend(tlv(0x30, &list));
    if let Some(n) = &b.nonce {
        let mut ext = tlv(0x06, NONCE);
        if b.critical {
            ext.extend(tlv(0x01, &[0]));
        }
        ext.extend(tlv(0x04, n));
        tbs.extend(tlv(0xa2, &tlv(0x30, &tlv(0x30, &ext))));
    }
    (tlv(0x30, &tlv(0x30, &tbs)), serials)
}

fn check_accepted(req: &OcspRequest) {
    assert!((1..=32).contains(&req.ids.len()));
    assert!(req.nonce.as_ref().is_none_or(|n| n.len() <= 128));
    for id in &req.ids {
        let hex = id.serial.to_hex();
        assert_eq!(Serial::parse_hex(&hex).as_ref(), Ok(&id.serial), "{hex}");
    }
    let answers: Vec<_> = req
        .ids
        .iter()
        .map(|id| (id.clone(), OcspStatus::Unknown))
        .collect();
    let now = OffsetDateTime::now_utc();
    let resp = issuer()
        .sign_ocsp(
            &answers,
            req.nonce.as_deref(),
            now,
            now + time::Duration::hours(1),
        )
        .expect("the CA answers every request it accepted");
    assert_eq!(resp[0], 0x30);
    if let Some(n) = &req.nonce {
        let echoed = tlv(0x04, n);
        assert!(
            resp.windows(echoed.len()).any(|w| w == echoed),
            "nonce not echoed"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&0x30) {
        if let Ok(req) = parse_ocsp_request(data) {
            check_accepted(&req);
        }
        return;
    }
    let Ok(built) = Built::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let (der, serials) = encode(&built);
    let parsed = parse_ocsp_request(&der);
    let n = built.ids.len();
    let nonce_ok = built.nonce.as_ref().is_none_or(|v| v.len() <= 128);
    if (1..=32).contains(&n) && nonce_ok {
        let req = parsed.unwrap_or_else(|e| panic!("well-formed request refused: {e}"));
        assert_eq!(req.ids.len(), n);
        for (id, s) in req.ids.iter().zip(&serials) {
            assert_eq!(id.serial, Serial::from_be_bytes(s));
        }
        assert_eq!(req.nonce, built.nonce);
        check_accepted(&req);
    } else {
        assert!(
            parsed.is_err(),
            "accepted {n} CertIDs / nonce {:?}",
            built.nonce
        );
    }
});
