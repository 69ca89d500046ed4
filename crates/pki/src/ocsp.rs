//! OCSP (RFC 6960): parsing requests and signing basic responses with the
//! issuing CA's own key. The DER is small and written by hand, with the
//! same bounds-checked reader as encrypted PKCS#8.

use rcgen::SigningKey;
use time::OffsetDateTime;

use crate::der::{self, Reader};
use crate::{Issuer, PkiError, RevocationReason, Serial};

const OID_SHA1: &str = "1.3.14.3.2.26";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_NONCE: &str = "1.3.6.1.5.5.7.48.1.2";
const OID_BASIC: &str = "1.3.6.1.5.5.7.48.1.1";

const ENUMERATED: u8 = 0x0a;
const GENERALIZED_TIME: u8 = 0x18;
const BIT_STRING: u8 = 0x03;

/// Which certificate a request asks about (RFC 6960 §4.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertId {
    sha256: bool,
    name_hash: Vec<u8>,
    key_hash: Vec<u8>,
    pub serial: Serial,
    /// The CertID exactly as requested, echoed in the response.
    raw: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OcspRequest {
    pub ids: Vec<CertId>,
    /// The nonce extension's value, echoed when present (RFC 8954).
    pub nonce: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OcspStatus {
    Good,
    Revoked {
        at: OffsetDateTime,
        reason: RevocationReason,
    },
    Unknown,
}

/// responseStatus values for answers that carry no response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OcspFailure {
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
    Unauthorized = 6,
}

/// Parses a DER OCSPRequest. Signed requests are accepted; their signature
/// is not needed (responses are public) and is ignored.
pub fn parse_ocsp_request(der_bytes: &[u8]) -> Result<OcspRequest, String> {
    let bad = |what: &str| format!("malformed OCSP request: {what}");
    let mut outer = Reader::new(der_bytes);
    let mut req = Reader::new(
        outer
            .expect(der::SEQUENCE)
            .ok_or_else(|| bad("not a SEQUENCE"))?,
    );
    let mut tbs = Reader::new(
        req.expect(der::SEQUENCE)
            .ok_or_else(|| bad("no tbsRequest"))?,
    );
    if tbs.peek_tag() == Some(0xa0) {
        tbs.any(); // version, v1
    }
    if tbs.peek_tag() == Some(0xa1) {
        tbs.any(); // requestorName
    }
    let mut list = Reader::new(
        tbs.expect(der::SEQUENCE)
            .ok_or_else(|| bad("no requestList"))?,
    );
    let mut ids = Vec::new();
    while let Some((tag, body)) = list.any() {
        if tag != der::SEQUENCE {
            return Err(bad("a request is not a SEQUENCE"));
        }
        let mut one = Reader::new(body);
        let cert_id = one.expect(der::SEQUENCE).ok_or_else(|| bad("no CertID"))?;
        let raw = der::tlv(der::SEQUENCE, cert_id);
        let mut cid = Reader::new(cert_id);
        let mut alg = Reader::new(
            cid.expect(der::SEQUENCE)
                .ok_or_else(|| bad("no hashAlgorithm"))?,
        );
        let oid = alg.expect(der::OID).ok_or_else(|| bad("no hash OID"))?;
        let sha256 = if oid == &der::oid(OID_SHA1)[2..] {
            false
        } else if oid == &der::oid(OID_SHA256)[2..] {
            true
        } else {
            return Err(bad("unsupported CertID hash (use SHA-1 or SHA-256)"));
        };
        let name_hash = cid
            .expect(der::OCTET_STRING)
            .ok_or_else(|| bad("no issuerNameHash"))?
            .to_vec();
        let key_hash = cid
            .expect(der::OCTET_STRING)
            .ok_or_else(|| bad("no issuerKeyHash"))?
            .to_vec();
        let serial = cid
            .expect(der::INTEGER)
            .ok_or_else(|| bad("no serialNumber"))?;
        if serial.is_empty() || serial.len() > 21 || serial[0] & 0x80 != 0 {
            return Err(bad("serialNumber out of range"));
        }
        ids.push(CertId {
            sha256,
            name_hash,
            key_hash,
            serial: Serial::from_be_bytes(serial),
            raw,
        });
        if ids.len() > 32 {
            return Err(bad("more than 32 certificates in one request"));
        }
    }
    if ids.is_empty() {
        return Err(bad("empty requestList"));
    }
    let mut nonce = None;
    if tbs.peek_tag() == Some(0xa2) {
        let (_, exts) = tbs.any().ok_or_else(|| bad("requestExtensions"))?;
        let mut exts = Reader::new(
            Reader::new(exts)
                .expect(der::SEQUENCE)
                .ok_or_else(|| bad("requestExtensions"))?,
        );
        while let Some((_, ext)) = exts.any() {
            let mut e = Reader::new(ext);
            let oid = e.expect(der::OID).ok_or_else(|| bad("extension OID"))?;
            if e.peek_tag() == Some(0x01) {
                e.any(); // critical
            }
            let value = e
                .expect(der::OCTET_STRING)
                .ok_or_else(|| bad("extension value"))?;
            if oid == &der::oid(OID_NONCE)[2..] {
                if value.len() > 128 {
                    return Err(bad("nonce longer than 128 bytes"));
                }
                nonce = Some(value.to_vec());
            }
        }
    }
    Ok(OcspRequest { ids, nonce })
}

fn hash(sha256: bool, data: &[u8]) -> Vec<u8> {
    let alg = if sha256 {
        &aws_lc_rs::digest::SHA256
    } else {
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY
    };
    aws_lc_rs::digest::digest(alg, data).as_ref().to_vec()
}

fn generalized(t: OffsetDateTime) -> Vec<u8> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let s = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    der::tlv(GENERALIZED_TIME, s.as_bytes())
}

/// An OCSPResponse with only a failure status.
pub fn ocsp_failure(status: OcspFailure) -> Vec<u8> {
    der::seq(&[&der::tlv(ENUMERATED, &[status as u8])])
}

impl Issuer {
    /// Whether a CertID names this issuer (name and key hashes).
    pub fn issued(&self, id: &CertId) -> bool {
        let Ok((_, x)) = x509_parser::parse_x509_certificate(self.certificate()) else {
            return false;
        };
        id.name_hash == hash(id.sha256, x.subject().as_raw())
            && id.key_hash == hash(id.sha256, &x.public_key().subject_public_key.data)
    }

    /// Signs a successful basic OCSP response for `answers`, echoing `nonce`.
    pub fn sign_ocsp(
        &self,
        answers: &[(CertId, OcspStatus)],
        nonce: Option<&[u8]>,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>, PkiError> {
        let (_, x) = x509_parser::parse_x509_certificate(self.certificate())
            .map_err(|_| PkiError::Crypto("the issuer certificate does not parse".into()))?;
        // ResponderID byKey: SHA-1 of the responder's subjectPublicKey.
        let key_hash = hash(false, &x.public_key().subject_public_key.data);
        let responder = der::tlv(0xa2, &der::tlv(der::OCTET_STRING, &key_hash));
        let mut singles = Vec::new();
        for (id, status) in answers {
            let status = match status {
                OcspStatus::Good => der::tlv(0x80, &[]),
                OcspStatus::Unknown => der::tlv(0x82, &[]),
                OcspStatus::Revoked { at, reason } => {
                    let mut info = generalized(*at);
                    if *reason != RevocationReason::Unspecified {
                        info.extend(der::tlv(0xa0, &der::tlv(ENUMERATED, &[reason.code()])));
                    }
                    der::tlv(0xa1, &info)
                }
            };
            singles.extend(der::seq(&[
                &id.raw,
                &status,
                &generalized(this_update),
                &der::tlv(0xa0, &generalized(next_update)),
            ]));
        }
        let mut data_parts: Vec<Vec<u8>> = vec![
            responder,
            generalized(this_update),
            der::tlv(der::SEQUENCE, &singles),
        ];
        if let Some(n) = nonce {
            let ext = der::seq(&[&der::oid(OID_NONCE), &der::tlv(der::OCTET_STRING, n)]);
            data_parts.push(der::tlv(0xa1, &der::seq(&[&ext])));
        }
        let refs: Vec<&[u8]> = data_parts.iter().map(Vec::as_slice).collect();
        let tbs = der::seq(&refs);
        let key = self.signing_key();
        let signature = key
            .sign(&tbs)
            .map_err(|e| PkiError::Crypto(format!("signing the OCSP response: {e}")))?;
        let mut bits = vec![0u8];
        bits.extend(signature);
        let basic = der::seq(&[
            &tbs,
            &signature_algorithm(key)?,
            &der::tlv(BIT_STRING, &bits),
        ]);
        let bytes = der::seq(&[&der::oid(OID_BASIC), &der::tlv(der::OCTET_STRING, &basic)]);
        Ok(der::seq(&[
            &der::tlv(ENUMERATED, &[0]),
            &der::tlv(0xa0, &bytes),
        ]))
    }
}

/// AlgorithmIdentifier for the signature the issuer key makes.
fn signature_algorithm(key: &rcgen::KeyPair) -> Result<Vec<u8>, PkiError> {
    let alg = key.algorithm();
    let (oid, null) = if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        ("1.2.840.10045.4.3.2", false)
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        ("1.2.840.10045.4.3.3", false)
    } else if alg == &rcgen::PKCS_ED25519 {
        ("1.3.101.112", false)
    } else if alg == &rcgen::PKCS_RSA_SHA256 {
        ("1.2.840.113549.1.1.11", true)
    } else {
        return Err(PkiError::Crypto(
            "unsupported issuer key for OCSP signing".into(),
        ));
    };
    Ok(if null {
        der::seq(&[&der::oid(oid), &der::tlv(der::NULL, &[])])
    } else {
        der::seq(&[&der::oid(oid)])
    })
}

// === client side: asking about one certificate (stapling) ===

/// An OCSPRequest (SHA-1 CertID, as every responder supports) for `leaf`
/// issued by `issuer`, without nonce: a stapled response is shared by all
/// clients, so it cannot echo one.
pub fn ocsp_request(leaf: &[u8], issuer: &[u8]) -> Result<Vec<u8>, PkiError> {
    let bad = |w: &str| PkiError::Refused(format!("cannot build an OCSP request: {w}"));
    let (_, l) =
        x509_parser::parse_x509_certificate(leaf).map_err(|_| bad("leaf does not parse"))?;
    let (_, i) =
        x509_parser::parse_x509_certificate(issuer).map_err(|_| bad("issuer does not parse"))?;
    let serial = l.raw_serial();
    let mut int = serial.to_vec();
    if int.first().is_some_and(|b| b & 0x80 != 0) {
        int.insert(0, 0);
    }
    let cid = der::seq(&[
        &der::seq(&[&der::oid(OID_SHA1), &der::tlv(der::NULL, &[])]),
        &der::tlv(der::OCTET_STRING, &hash(false, i.subject().as_raw())),
        &der::tlv(
            der::OCTET_STRING,
            &hash(false, &i.public_key().subject_public_key.data),
        ),
        &der::tlv(der::INTEGER, &int),
    ]);
    Ok(der::seq(&[&der::seq(&[&der::seq(&[&der::seq(&[&cid])])])]))
}

fn parse_generalized(v: &[u8]) -> Option<OffsetDateTime> {
    let s = std::str::from_utf8(v).ok()?;
    let f = time::macros::format_description!("[year][month][day][hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, &f)
        .ok()
        .map(|t| t.assume_utc())
}

/// Checks a response for stapling: successful, signed by `issuer`'s key,
/// status `good` for `leaf`; returns its nextUpdate.
pub fn check_ocsp_response(
    resp: &[u8],
    leaf: &[u8],
    issuer: &[u8],
) -> Result<OffsetDateTime, String> {
    match read_ocsp_response(resp, leaf, issuer)? {
        (OcspStatus::Good, next) => Ok(next),
        _ => Err("unusable OCSP response: the certificate's status is not good".into()),
    }
}

/// Reads a response about `leaf`: successful, signed by `issuer`'s key;
/// returns the status and nextUpdate.
pub fn read_ocsp_response(
    resp: &[u8],
    leaf: &[u8],
    issuer: &[u8],
) -> Result<(OcspStatus, OffsetDateTime), String> {
    let bad = |w: &str| format!("unusable OCSP response: {w}");
    let mut outer = Reader::new(resp);
    let mut r = Reader::new(
        outer
            .expect(der::SEQUENCE)
            .ok_or_else(|| bad("not a SEQUENCE"))?,
    );
    let status = r.expect(ENUMERATED).ok_or_else(|| bad("no status"))?;
    if status != [0] {
        return Err(bad(&format!("responder status {status:?}")));
    }
    let (tag, bytes) = r.any().ok_or_else(|| bad("no responseBytes"))?;
    if tag != 0xa0 {
        return Err(bad("no responseBytes"));
    }
    let mut rb = Reader::new(
        Reader::new(bytes)
            .expect(der::SEQUENCE)
            .ok_or_else(|| bad("responseBytes"))?,
    );
    if rb.expect(der::OID).ok_or_else(|| bad("responseType"))? != &der::oid(OID_BASIC)[2..] {
        return Err(bad("not a basic response"));
    }
    let basic = rb
        .expect(der::OCTET_STRING)
        .ok_or_else(|| bad("response"))?;
    let mut b = Reader::new(
        Reader::new(basic)
            .expect(der::SEQUENCE)
            .ok_or_else(|| bad("BasicOCSPResponse"))?,
    );
    let tbs_body = b
        .expect(der::SEQUENCE)
        .ok_or_else(|| bad("tbsResponseData"))?;
    let tbs_raw = der::tlv(der::SEQUENCE, tbs_body);
    let mut alg = Reader::new(
        b.expect(der::SEQUENCE)
            .ok_or_else(|| bad("signatureAlgorithm"))?,
    );
    let alg_oid = alg
        .expect(der::OID)
        .ok_or_else(|| bad("signatureAlgorithm"))?
        .to_vec();
    let sig = b.expect(BIT_STRING).ok_or_else(|| bad("signature"))?;
    let sig = sig.get(1..).ok_or_else(|| bad("signature"))?;
    let (_, i) =
        x509_parser::parse_x509_certificate(issuer).map_err(|_| bad("issuer does not parse"))?;
    use aws_lc_rs::signature as s;
    let scheme: &dyn s::VerificationAlgorithm = if alg_oid == der::oid("1.2.840.10045.4.3.2")[2..] {
        &s::ECDSA_P256_SHA256_ASN1
    } else if alg_oid == der::oid("1.2.840.10045.4.3.3")[2..] {
        &s::ECDSA_P384_SHA384_ASN1
    } else if alg_oid == der::oid("1.3.101.112")[2..] {
        &s::ED25519
    } else if alg_oid == der::oid("1.2.840.113549.1.1.11")[2..] {
        &s::RSA_PKCS1_2048_8192_SHA256
    } else {
        return Err(bad("unsupported signature algorithm"));
    };
    s::UnparsedPublicKey::new(scheme, &i.public_key().subject_public_key.data)
        .verify(&tbs_raw, sig)
        .map_err(|_| bad("the signature does not verify with the issuer's key"))?;

    let mut tbs = Reader::new(tbs_body);
    if tbs.peek_tag() == Some(0xa0) {
        tbs.any();
    }
    tbs.any().ok_or_else(|| bad("responderID"))?;
    tbs.expect(GENERALIZED_TIME)
        .ok_or_else(|| bad("producedAt"))?;
    let mut responses = Reader::new(tbs.expect(der::SEQUENCE).ok_or_else(|| bad("responses"))?);
    let (_, l) =
        x509_parser::parse_x509_certificate(leaf).map_err(|_| bad("leaf does not parse"))?;
    let want = Serial::from_be_bytes(l.raw_serial());
    while let Some((_, single)) = responses.any() {
        let mut one = Reader::new(single);
        let mut cid = Reader::new(one.expect(der::SEQUENCE).ok_or_else(|| bad("certID"))?);
        cid.any();
        cid.any();
        cid.any();
        let serial = Serial::from_be_bytes(cid.expect(der::INTEGER).ok_or_else(|| bad("serial"))?);
        let (status_tag, status_body) = one.any().ok_or_else(|| bad("certStatus"))?;
        let this_update = Some(
            one.expect(GENERALIZED_TIME)
                .and_then(parse_generalized)
                .ok_or_else(|| bad("thisUpdate"))?,
        );
        let next = match one.any() {
            Some((0xa0, v)) => Reader::new(v)
                .expect(GENERALIZED_TIME)
                .and_then(parse_generalized),
            _ => None,
        };
        if serial != want {
            continue;
        }
        let status = match status_tag {
            0x80 => OcspStatus::Good,
            0xa1 => {
                let mut info = Reader::new(status_body);
                let at = info
                    .expect(GENERALIZED_TIME)
                    .and_then(parse_generalized)
                    .ok_or_else(|| bad("revocationTime"))?;
                let reason = match info.any() {
                    Some((0xa0, v)) => Reader::new(v)
                        .expect(ENUMERATED)
                        .and_then(|c| c.first().copied())
                        .unwrap_or(0),
                    _ => 0,
                };
                let reason = RevocationReason::ALL
                    .iter()
                    .copied()
                    .find(|r| r.code() == reason)
                    .unwrap_or(RevocationReason::Unspecified);
                OcspStatus::Revoked { at, reason }
            }
            _ => OcspStatus::Unknown,
        };
        let next = next.ok_or_else(|| bad("no nextUpdate"))?;
        // A stale or future-dated answer says nothing about now.
        let now = OffsetDateTime::now_utc();
        if next <= now {
            return Err(bad("its nextUpdate has passed"));
        }
        if this_update.is_some_and(|t| t > now + time::Duration::minutes(5)) {
            return Err(bad("its thisUpdate is in the future"));
        }
        return Ok((status, next));
    }
    Err(bad("no answer for this certificate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_or_hostile_requests_are_refused_without_panicking() {
        // A minimal valid request: one CertID (SHA-1), serial 0x01.
        let cid = der::seq(&[
            &der::seq(&[&der::oid(OID_SHA1), &der::tlv(der::NULL, &[])]),
            &der::tlv(der::OCTET_STRING, &[1; 20]),
            &der::tlv(der::OCTET_STRING, &[2; 20]),
            &der::tlv(der::INTEGER, &[1]),
        ]);
        let req = der::seq(&[&der::seq(&[&der::seq(&[&der::seq(&[&cid])])])]);
        let parsed = parse_ocsp_request(&req).unwrap();
        assert_eq!(parsed.ids.len(), 1);
        assert_eq!(parsed.ids[0].serial.to_hex(), "01");
        for cut in 0..req.len() {
            assert!(parse_ocsp_request(&req[..cut]).is_err(), "cut {cut}");
        }
        assert!(parse_ocsp_request(b"\x30\x80").is_err());
        assert_eq!(
            ocsp_failure(OcspFailure::MalformedRequest),
            vec![0x30, 0x03, 0x0a, 0x01, 0x01]
        );
    }
}
