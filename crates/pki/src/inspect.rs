//! Plain descriptions of certificates, CSRs and CRLs for `cert inspect`
//! (and anything else that shows one to a person or emits JSON).

use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{KeyInfo, Serial, rfc3339, sha256_hex};

#[derive(Clone, Debug, serde::Serialize)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    /// "expires in 23h 4m", "expired 3h 12m ago" or "not valid until …".
    pub validity: String,
    pub subject_alt_names: Vec<String>,
    pub key: KeyInfo,
    pub signature_algorithm: String,
    pub is_ca: bool,
    pub path_len: Option<u32>,
    pub key_usage: Vec<String>,
    pub extended_key_usage: Vec<String>,
    pub name_constraints: Option<NameConstraintsSummary>,
    pub ocsp_urls: Vec<String>,
    pub ca_issuer_urls: Vec<String>,
    pub crl_distribution_points: Vec<String>,
    pub self_signed: bool,
    pub sha256_fingerprint: String,
    /// base64(SHA-256(SubjectPublicKeyInfo)), the form curl's
    /// `--pinnedpubkey sha256//…` and HPKP use.
    pub spki_sha256: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct NameConstraintsSummary {
    pub permitted: Vec<String>,
    pub excluded: Vec<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct CsrSummary {
    pub subject: String,
    pub subject_alt_names: Vec<String>,
    pub key: KeyInfo,
    pub signature_algorithm: String,
    pub signature_valid: bool,
    pub requests_ca: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct CrlSummary {
    pub issuer: String,
    pub crl_number: Option<String>,
    pub this_update: String,
    pub next_update: Option<String>,
    pub validity: String,
    pub signature_algorithm: String,
    pub entries: Vec<CrlEntrySummary>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct CrlEntrySummary {
    pub serial: String,
    pub revoked_at: String,
    pub reason: String,
}

pub(crate) fn general_name(g: &GeneralName<'_>) -> String {
    match g {
        GeneralName::DNSName(d) => format!("DNS:{d}"),
        GeneralName::URI(u) => format!("URI:{u}"),
        GeneralName::RFC822Name(e) => format!("email:{e}"),
        GeneralName::IPAddress(b) => match b.len() {
            4 => format!(
                "IP:{}",
                IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())
            ),
            16 => format!(
                "IP:{}",
                IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())
            ),
            // Name constraints carry address and mask together.
            8 => format!(
                "IP:{}/{}",
                IpAddr::from(<[u8; 4]>::try_from(&b[..4]).unwrap_or_default()),
                mask_bits(&b[4..])
            ),
            32 => format!(
                "IP:{}/{}",
                IpAddr::from(<[u8; 16]>::try_from(&b[..16]).unwrap_or_default()),
                mask_bits(&b[16..])
            ),
            _ => format!("IP:(invalid, {} bytes)", b.len()),
        },
        GeneralName::DirectoryName(n) => format!("dirName:{n}"),
        other => format!("{other:?}"),
    }
}

fn mask_bits(mask: &[u8]) -> u32 {
    mask.iter().map(|b| b.count_ones()).sum()
}

pub(crate) fn san_strings(x: &X509Certificate<'_>) -> Vec<String> {
    match x.subject_alternative_name() {
        Ok(Some(san)) => san.value.general_names.iter().map(general_name).collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn reason_name(code: u8) -> &'static str {
    match code {
        1 => "keyCompromise",
        2 => "caCompromise",
        3 => "affiliationChanged",
        4 => "superseded",
        5 => "cessationOfOperation",
        6 => "certificateHold",
        8 => "removeFromCRL",
        9 => "privilegeWithdrawn",
        10 => "aACompromise",
        _ => "unspecified",
    }
}

fn sig_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.3.101.112" => "Ed25519",
        other => return other.to_string(),
    }
    .to_string()
}

fn validity_phrase(now: OffsetDateTime, nb: OffsetDateTime, na: OffsetDateTime) -> String {
    use symbolon_core::format_delta;
    if now < nb {
        format!(
            "not valid until {} ({})",
            rfc3339(nb),
            format_delta(now, nb)
        )
    } else if now > na {
        format!("expired {}", format_delta(now, na))
    } else {
        format!("expires {}", format_delta(now, na))
    }
}

pub fn spki_pin(spki_der: &[u8]) -> String {
    use base64_lite::encode;
    encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der).as_ref())
}

pub fn describe_certificate(der: &[u8], now: OffsetDateTime) -> Option<CertSummary> {
    let (_, x) = x509_parser::parse_x509_certificate(der).ok()?;
    let nb = x.validity().not_before.to_datetime();
    let na = x.validity().not_after.to_datetime();
    let mut s = CertSummary {
        subject: x.subject().to_string(),
        issuer: x.issuer().to_string(),
        serial: Serial::from_be_bytes(x.raw_serial()).to_hex(),
        not_before: rfc3339(nb),
        not_after: rfc3339(na),
        validity: validity_phrase(now, nb, na),
        subject_alt_names: san_strings(&x),
        key: crate::keys::key_info(x.public_key()).0,
        signature_algorithm: sig_name(&x.signature_algorithm.algorithm.to_id_string()),
        is_ca: x.is_ca(),
        path_len: None,
        key_usage: Vec::new(),
        extended_key_usage: Vec::new(),
        name_constraints: None,
        ocsp_urls: Vec::new(),
        ca_issuer_urls: Vec::new(),
        crl_distribution_points: Vec::new(),
        self_signed: x.subject().as_raw() == x.issuer().as_raw(),
        sha256_fingerprint: sha256_hex(der),
        spki_sha256: spki_pin(x.public_key().raw),
    };
    for ext in x.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => s.path_len = bc.path_len_constraint,
            ParsedExtension::KeyUsage(ku) => {
                let names = [
                    (ku.digital_signature(), "digitalSignature"),
                    (ku.non_repudiation(), "nonRepudiation"),
                    (ku.key_encipherment(), "keyEncipherment"),
                    (ku.data_encipherment(), "dataEncipherment"),
                    (ku.key_agreement(), "keyAgreement"),
                    (ku.key_cert_sign(), "keyCertSign"),
                    (ku.crl_sign(), "cRLSign"),
                    (ku.encipher_only(), "encipherOnly"),
                    (ku.decipher_only(), "decipherOnly"),
                ];
                s.key_usage = names
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, n)| n.to_string())
                    .collect();
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                let names = [
                    (eku.any, "anyExtendedKeyUsage"),
                    (eku.server_auth, "serverAuth"),
                    (eku.client_auth, "clientAuth"),
                    (eku.code_signing, "codeSigning"),
                    (eku.email_protection, "emailProtection"),
                    (eku.time_stamping, "timeStamping"),
                    (eku.ocsp_signing, "OCSPSigning"),
                ];
                s.extended_key_usage = names
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, n)| n.to_string())
                    .collect();
                s.extended_key_usage
                    .extend(eku.other.iter().map(|o| o.to_id_string()));
            }
            ParsedExtension::NameConstraints(nc) => {
                let list = |t: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| {
                    t.as_ref()
                        .map(|v| v.iter().map(|st| general_name(&st.base)).collect())
                        .unwrap_or_default()
                };
                s.name_constraints = Some(NameConstraintsSummary {
                    permitted: list(&nc.permitted_subtrees),
                    excluded: list(&nc.excluded_subtrees),
                });
            }
            ParsedExtension::AuthorityInfoAccess(aia) => {
                for ad in &aia.accessdescs {
                    let url = match &ad.access_location {
                        GeneralName::URI(u) => u.to_string(),
                        other => general_name(other),
                    };
                    match ad.access_method.to_id_string().as_str() {
                        "1.3.6.1.5.5.7.48.1" => s.ocsp_urls.push(url),
                        "1.3.6.1.5.5.7.48.2" => s.ca_issuer_urls.push(url),
                        _ => {}
                    }
                }
            }
            ParsedExtension::CRLDistributionPoints(dps) => {
                for dp in dps.iter() {
                    if let Some(DistributionPointName::FullName(names)) = &dp.distribution_point {
                        for n in names {
                            s.crl_distribution_points.push(match n {
                                GeneralName::URI(u) => u.to_string(),
                                other => general_name(other),
                            });
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Some(s)
}

pub fn describe_csr(der: &[u8]) -> Option<CsrSummary> {
    let (_, csr) = X509CertificationRequest::from_der(der).ok()?;
    let info = &csr.certification_request_info;
    let mut sans = Vec::new();
    let mut requests_ca = false;
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            match ext {
                ParsedExtension::SubjectAlternativeName(san) => {
                    sans.extend(san.general_names.iter().map(general_name))
                }
                ParsedExtension::BasicConstraints(bc) => requests_ca |= bc.ca,
                _ => {}
            }
        }
    }
    Some(CsrSummary {
        subject: info.subject.to_string(),
        subject_alt_names: sans,
        key: crate::keys::key_info(&info.subject_pki).0,
        signature_algorithm: sig_name(&csr.signature_algorithm.algorithm.to_id_string()),
        signature_valid: csr.verify_signature().is_ok(),
        requests_ca,
    })
}

pub fn describe_crl(der: &[u8], now: OffsetDateTime) -> Option<CrlSummary> {
    let (_, crl) = x509_parser::parse_x509_crl(der).ok()?;
    let this_update = crl.last_update().to_datetime();
    let next_update = crl.next_update().map(|t| t.to_datetime());
    let validity = match next_update {
        Some(nu) if now > nu => format!(
            "stale: nextUpdate passed {}",
            symbolon_core::format_delta(now, nu)
        ),
        Some(nu) => format!("next update {}", symbolon_core::format_delta(now, nu)),
        None => "no nextUpdate".to_string(),
    };
    Some(CrlSummary {
        issuer: crl.issuer().to_string(),
        crl_number: crl.crl_number().map(|n| n.to_string()),
        this_update: rfc3339(this_update),
        next_update: next_update.map(rfc3339),
        validity,
        signature_algorithm: sig_name(&crl.signature_algorithm.algorithm.to_id_string()),
        entries: crl
            .iter_revoked_certificates()
            .map(|r| CrlEntrySummary {
                serial: Serial::from_be_bytes(r.raw_serial()).to_hex(),
                revoked_at: rfc3339(r.revocation_date.to_datetime()),
                reason: r
                    .reason_code()
                    .map(|(_, c)| reason_name(c.0))
                    .unwrap_or("unspecified")
                    .to_string(),
            })
            .collect(),
    })
}

/// Minimal standard base64 (with padding), to avoid a dependency for one line.
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    #[test]
    fn rfc4648_vectors() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
    }
}
