//! Certificate path validation with explained failures.
//!
//! RFC 5280 path building and signature checks come from rustls-webpki, the
//! same code the TLS layer runs. Around it, this module enforces the rules a
//! private PKI should hold that the web PKI does not, and turns every failure
//! into one [`Reason`] code, a sentence naming the certificate, and a hint.
//!
//! Required steps, in order (a failure stops at the first):
//! 1. the leaf on its own: well-formed v3, no unknown critical extension, no
//!    SHA-1/MD5 signature, a strong key, inside its validity period, not a
//!    CA, no keyCertSign/cRLSign, an EKU that includes the purpose;
//! 2. the expected name, if one was given, among the leaf's SANs (never CN);
//! 3. a path to a trust anchor (signatures, basic constraints, path length,
//!    name constraints, EKU of issuers, validity of intermediates, CRLs);
//! 4. every issuer on the path, including the anchor: keyCertSign, strong
//!    key, strong signature, and validity at the verification time;
//! 5. every CRL given must belong to an issuer on the path.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use symbolon_core::{PeerCert, Reason, dns_name_matches, format_delta};
use time::OffsetDateTime;
use webpki::{
    ExtendedKeyUsageValidator, KeyPurposeIdIter, KeyUsage, OwnedCertRevocationList,
    RevocationCheckDepth, UnknownStatusPolicy,
};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::X509Certificate;

use crate::{rfc3339, sha256_hex};

/// What the leaf must be good for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Server,
    Client,
    /// Either TLS purpose (serverAuth or clientAuth).
    Any,
}

/// A name the leaf must carry in its subjectAltName.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectedName {
    Dns(String),
    Ip(IpAddr),
    Uri(String),
}

impl fmt::Display for ExpectedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedName::Dns(d) => write!(f, "DNS name {d}"),
            ExpectedName::Ip(ip) => write!(f, "IP address {ip}"),
            ExpectedName::Uri(u) => write!(f, "URI {u}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct VerifyOptions<'a> {
    pub trust: &'a [CertificateDer<'a>],
    pub intermediates: &'a [CertificateDer<'a>],
    pub crls: &'a [CertificateRevocationListDer<'a>],
    pub at: OffsetDateTime,
    pub purpose: Purpose,
    pub name: Option<ExpectedName>,
    /// Most intermediates allowed between leaf and anchor.
    pub max_intermediates: usize,
}

/// One certificate on a verified path, or the one a failure is about.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CertRef {
    /// `leaf`, `intermediate` or `trust anchor`.
    pub role: &'static str,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub sha256: String,
}

impl fmt::Display for CertRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (serial {})", self.role, self.subject, self.serial)
    }
}

/// A path that passed every check. Only [`verify`] can build one.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct VerifiedPath {
    /// Leaf first, trust anchor last.
    pub path: Vec<CertRef>,
    /// What the verified leaf says about its holder, for policy and XFCC.
    #[serde(skip)]
    pub peer: PeerCert,
}

/// Why a path was refused: a stable code, a sentence, and what to do.
#[derive(Clone, Debug, serde::Serialize, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct VerifyError {
    pub reason: Reason,
    pub message: String,
    pub hint: String,
    pub certificate: Option<Box<CertRef>>,
}

fn fail(reason: Reason, cert: Option<CertRef>, message: String, hint: &str) -> VerifyError {
    VerifyError {
        reason,
        message,
        hint: hint.to_string(),
        certificate: cert.map(Box::new),
    }
}

fn cert_ref(role: &'static str, x: &X509Certificate<'_>) -> CertRef {
    let mut subject = x.subject().to_string();
    if subject.is_empty() {
        subject = crate::inspect::san_strings(x)
            .first()
            .cloned()
            .unwrap_or_else(|| "(empty subject)".into());
    }
    CertRef {
        role,
        subject,
        issuer: x.issuer().to_string(),
        serial: crate::Serial::from_be_bytes(x.raw_serial()).to_hex(),
        not_before: rfc3339(x.validity().not_before.to_datetime()),
        not_after: rfc3339(x.validity().not_after.to_datetime()),
        sha256: sha256_hex(x.as_raw()),
    }
}

fn parse<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, VerifyError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], x)) => Ok(x),
        _ => Err(fail(
            Reason::Malformed,
            None,
            format!("{what} is not a valid DER X.509 certificate"),
            "check the file holds the certificate you meant",
        )),
    }
}

/// Signature algorithms by OID: the SHA-2 family, RSA-PSS and Ed25519 pass;
/// SHA-1 and MD5 are refused as broken; anything else is refused as unknown.
pub fn check_signature_algorithm(oid: &str) -> Result<(), String> {
    match oid {
        "1.2.840.113549.1.1.11"
        | "1.2.840.113549.1.1.12"
        | "1.2.840.113549.1.1.13"
        | "1.2.840.113549.1.1.10"
        | "1.2.840.10045.4.3.2"
        | "1.2.840.10045.4.3.3"
        | "1.2.840.10045.4.3.4"
        | "1.3.101.112" => Ok(()),
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => Err("SHA-1 with RSA, which is broken".into()),
        "1.2.840.10045.4.1" => Err("ECDSA with SHA-1, which is broken".into()),
        "1.2.840.10040.4.3" | "2.16.840.1.101.3.4.3.2" => Err("DSA, which is not accepted".into()),
        "1.2.840.113549.1.1.4" | "1.2.840.113549.1.1.2" => Err("MD5/MD2, which is broken".into()),
        other => Err(format!(
            "signature algorithm {other}, which is not supported"
        )),
    }
}

/// Extensions this verifier (and webpki) understands; any other critical one
/// makes the certificate unusable (RFC 5280 §4.2).
const KNOWN_EXTENSIONS: &[&str] = &[
    "2.5.29.19",         // basicConstraints
    "2.5.29.15",         // keyUsage
    "2.5.29.37",         // extKeyUsage
    "2.5.29.17",         // subjectAltName
    "2.5.29.30",         // nameConstraints
    "2.5.29.31",         // cRLDistributionPoints
    "2.5.29.14",         // subjectKeyIdentifier
    "2.5.29.35",         // authorityKeyIdentifier
    "1.3.6.1.5.5.7.1.1", // authorityInfoAccess
];

/// Checks every certificate gets, whatever its place in the path.
fn check_common(
    x: &X509Certificate<'_>,
    who: &CertRef,
    at: OffsetDateTime,
) -> Result<(), VerifyError> {
    if x.version().0 != 2 {
        return Err(fail(
            Reason::Malformed,
            Some(who.clone()),
            format!("{who} is not an X.509 v3 certificate"),
            "re-issue it as v3",
        ));
    }
    for ext in x.extensions() {
        let oid = ext.oid.to_id_string();
        if ext.critical && !KNOWN_EXTENSIONS.contains(&oid.as_str()) {
            return Err(fail(
                Reason::UnknownCriticalExtension,
                Some(who.clone()),
                format!("{who} has critical extension {oid}, which is not understood"),
                "re-issue it without that extension, or mark it non-critical",
            ));
        }
        if matches!(ext.parsed_extension(), ParsedExtension::ParseError { .. }) {
            return Err(fail(
                Reason::Malformed,
                Some(who.clone()),
                format!("{who} has a malformed extension {oid}"),
                "re-issue it",
            ));
        }
    }
    if let Err(m) = check_signature_algorithm(&x.signature_algorithm.algorithm.to_id_string()) {
        return Err(fail(
            Reason::WeakSignature,
            Some(who.clone()),
            format!("{who} is signed with {m}"),
            "re-issue it with a SHA-256 (or stronger) signature",
        ));
    }
    let (key, verdict) = crate::keys::key_info(x.public_key());
    if let Err(m) = verdict {
        return Err(fail(
            Reason::WeakKey,
            Some(who.clone()),
            format!("{who} has a weak key ({key}): {m}"),
            "re-issue it with an ECDSA P-256 or RSA-2048+ key",
        ));
    }
    let nb = x.validity().not_before.to_datetime();
    let na = x.validity().not_after.to_datetime();
    if at > na {
        let hint = if who.role == "leaf" {
            "renew it"
        } else {
            "replace it with a current certificate and re-issue what it signed"
        };
        return Err(fail(
            Reason::Expired,
            Some(who.clone()),
            format!(
                "{who} expired {}, not after {}",
                format_delta(at, na),
                rfc3339(na)
            ),
            hint,
        ));
    }
    if at < nb {
        return Err(fail(
            Reason::NotYetValid,
            Some(who.clone()),
            format!(
                "{who} is not valid until {} ({})",
                rfc3339(nb),
                format_delta(at, nb)
            ),
            "check the clocks of this machine and of the CA",
        ));
    }
    Ok(())
}

fn has_eku(x: &X509Certificate<'_>, purpose: Purpose) -> Result<bool, ()> {
    match x.extended_key_usage() {
        Ok(Some(eku)) => {
            let e = eku.value;
            Ok(match purpose {
                Purpose::Server => e.server_auth,
                Purpose::Client => e.client_auth,
                Purpose::Any => e.server_auth || e.client_auth,
            })
        }
        Ok(None) => Err(()),
        Err(_) => Ok(false),
    }
}

fn check_leaf(
    x: &X509Certificate<'_>,
    who: &CertRef,
    opts: &VerifyOptions<'_>,
) -> Result<(), VerifyError> {
    check_common(x, who, opts.at)?;
    if x.is_ca() {
        return Err(fail(
            Reason::CaUsedAsLeaf,
            Some(who.clone()),
            format!("{who} is a CA certificate (basicConstraints cA=true) presented as a leaf"),
            "present the workload's own certificate, not its CA",
        ));
    }
    if crate::authority::has_key_usage(x, |ku| ku.key_cert_sign() || ku.crl_sign()) {
        return Err(fail(
            Reason::BadKeyUsage,
            Some(who.clone()),
            format!("{who} is a leaf with keyCertSign or cRLSign key usage"),
            "re-issue it with digitalSignature only",
        ));
    }
    let wanted = match opts.purpose {
        Purpose::Server => "serverAuth",
        Purpose::Client => "clientAuth",
        Purpose::Any => "serverAuth or clientAuth",
    };
    match has_eku(x, opts.purpose) {
        Ok(true) => {}
        Ok(false) => {
            return Err(fail(
                Reason::BadEku,
                Some(who.clone()),
                format!("{who} has no {wanted} extended key usage"),
                "re-issue it with the right profile (server, client or peer)",
            ));
        }
        Err(()) => {
            return Err(fail(
                Reason::BadEku,
                Some(who.clone()),
                format!("{who} has no extended key usage extension; {wanted} is required"),
                "re-issue it with the right profile (server, client or peer)",
            ));
        }
    }
    check_san_strings(x, who)?;
    if let Some(name) = &opts.name {
        check_name(x, who, name)?;
    }
    Ok(())
}

/// SAN names are IA5 (ASCII) strings, but the parser accepts any UTF-8 and
/// keeps what it cannot decode as `Invalid`. A NUL or other control
/// character is how `api.example.org\0.evil.test` reads as `api.example.org`
/// to whatever stops at the NUL; non-ASCII makes look-alikes. Such a
/// certificate is malformed, whatever else it names: refusing only the one
/// name would let the rest of it through.
fn check_san_strings(x: &X509Certificate<'_>, who: &CertRef) -> Result<(), VerifyError> {
    let Ok(Some(san)) = x.subject_alternative_name() else {
        return Ok(());
    };
    for g in &san.value.general_names {
        let bad = match g {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                s.bytes().any(|b| !(0x20..0x7f).contains(&b))
            }
            GeneralName::Invalid(..) => true,
            _ => false,
        };
        if bad {
            return Err(fail(
                Reason::Malformed,
                Some(who.clone()),
                format!(
                    "{who} has a subjectAltName entry with a NUL, control or non-ASCII character: {:?}",
                    format!("{g:?}")
                ),
                "re-issue it with plain ASCII names",
            ));
        }
    }
    Ok(())
}

fn check_name(
    x: &X509Certificate<'_>,
    who: &CertRef,
    name: &ExpectedName,
) -> Result<(), VerifyError> {
    let sans: Vec<GeneralName<'_>> = match x.subject_alternative_name() {
        Ok(Some(san)) => san.value.general_names.clone(),
        _ => Vec::new(),
    };
    let found = sans.iter().any(|g| match (g, name) {
        (GeneralName::DNSName(p), ExpectedName::Dns(r)) => dns_name_matches(p, r),
        (GeneralName::IPAddress(b), ExpectedName::Ip(ip)) => match ip {
            IpAddr::V4(v4) => *b == v4.octets().as_slice(),
            IpAddr::V6(v6) => *b == v6.octets().as_slice(),
        },
        (GeneralName::URI(u), ExpectedName::Uri(r)) => u == r,
        _ => false,
    });
    if found {
        return Ok(());
    }
    let in_cn = x
        .subject()
        .iter_common_name()
        .any(|cn| match (cn.as_str(), name) {
            (Ok(cn), ExpectedName::Dns(r)) => dns_name_matches(cn, r),
            (Ok(cn), ExpectedName::Ip(ip)) => cn.parse::<IpAddr>().is_ok_and(|c| c == *ip),
            (Ok(cn), ExpectedName::Uri(u)) => cn == u,
            _ => false,
        });
    let message = if in_cn {
        format!(
            "{who} does not name {name} in its subjectAltName; it appears only in the subject CN, which is never used for name checks"
        )
    } else {
        let names = crate::inspect::san_strings(x);
        format!(
            "{who} does not name {name}; its names are [{}]",
            names.join(", ")
        )
    };
    Err(fail(
        Reason::NameMismatch,
        Some(who.clone()),
        message,
        "re-issue it with the name as a subjectAltName, or check the name you expected",
    ))
}

/// The EKU rule webpki applies to issuers on the path: an issuer that lists
/// EKUs must include the purpose. The leaf was already checked strictly.
struct PurposeEku(Purpose);

impl ExtendedKeyUsageValidator for PurposeEku {
    // The context-carrying variant cannot be built outside webpki.
    #[allow(deprecated)]
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        match self.0 {
            Purpose::Server => KeyUsage::server_auth().validate(iter),
            Purpose::Client => KeyUsage::client_auth().validate(iter),
            Purpose::Any => {
                let ids: Vec<_> = iter.collect::<Result<_, _>>()?;
                let server = KeyUsage::server_auth();
                let client = KeyUsage::client_auth();
                let ok = ids.is_empty()
                    || ids.iter().any(|id| {
                        let oid = id.to_decoded_oid();
                        server.oid_values().eq(oid.iter().copied())
                            || client.oid_values().eq(oid.iter().copied())
                    });
                if ok {
                    Ok(())
                } else {
                    Err(webpki::Error::RequiredEkuNotFound)
                }
            }
        }
    }
}

fn unix_time(t: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(t.unix_timestamp().max(0) as u64))
}

/// Verifies `leaf` against `opts`. See the module documentation for the steps.
pub fn verify(
    leaf: &CertificateDer<'_>,
    opts: &VerifyOptions<'_>,
) -> Result<VerifiedPath, VerifyError> {
    let leaf_x = parse(leaf, "the leaf")?;
    let leaf_ref = cert_ref("leaf", &leaf_x);
    check_leaf(&leaf_x, &leaf_ref, opts)?;

    let mut inters = Vec::with_capacity(opts.intermediates.len());
    for (i, der) in opts.intermediates.iter().enumerate() {
        inters.push(parse(der, &format!("intermediate #{}", i + 1))?);
    }
    let mut anchor_x = Vec::with_capacity(opts.trust.len());
    let mut anchors = Vec::with_capacity(opts.trust.len());
    for (i, der) in opts.trust.iter().enumerate() {
        anchor_x.push(parse(der, &format!("trust anchor #{}", i + 1))?);
        anchors.push(webpki::anchor_from_trusted_cert(der).map_err(|e| {
            fail(
                Reason::Malformed,
                None,
                format!("trust anchor #{} cannot be used: {e}", i + 1),
                "give CA certificates with --trust",
            )
        })?);
    }
    if anchors.is_empty() {
        return Err(fail(
            Reason::UnknownCa,
            Some(leaf_ref),
            "no trust anchor was given".into(),
            "pass the root CA certificate with --trust",
        ));
    }
    let mut crls = Vec::with_capacity(opts.crls.len());
    for (i, der) in opts.crls.iter().enumerate() {
        crls.push(OwnedCertRevocationList::from_der(der).map_err(|e| {
            fail(
                Reason::Malformed,
                None,
                format!("CRL #{} cannot be used: {e}", i + 1),
                "fetch a fresh CRL from the CA",
            )
        })?);
    }
    let crl_refs: Vec<webpki::CertRevocationList<'_>> =
        crls.iter().cloned().map(Into::into).collect();
    let crl_refs2: Vec<&webpki::CertRevocationList<'_>> = crl_refs.iter().collect();
    let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs2)
        .ok()
        .map(|b| {
            b.with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Allow)
                .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                .build()
        });

    let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| {
        fail(
            Reason::Malformed,
            Some(leaf_ref.clone()),
            format!("{leaf_ref} cannot be parsed for path building: {e}"),
            "re-issue it",
        )
    })?;
    let max = opts.max_intermediates;
    let depth_check = move |p: &webpki::VerifiedPath<'_>| {
        if p.intermediate_certificates().count() > max {
            Err(webpki::Error::MaximumPathDepthExceeded)
        } else {
            Ok(())
        }
    };
    let path = ee
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            opts.intermediates,
            unix_time(opts.at),
            PurposeEku(opts.purpose),
            revocation,
            Some(&depth_check),
        )
        .map_err(|e| explain(e, &leaf_x, &leaf_ref, &inters, &anchor_x, opts))?;

    let mut out = vec![leaf_ref];
    let mut issuers: Vec<(&X509Certificate<'_>, &'static str)> = Vec::new();
    for cert in path.intermediate_certificates() {
        let der = cert.der();
        if let Some(x) = inters.iter().find(|x| x.as_raw() == der.as_ref()) {
            issuers.push((x, "intermediate"));
        }
    }
    let anchor_index = anchors
        .iter()
        .position(|a| std::ptr::eq(a, path.anchor()))
        .unwrap_or(0);
    issuers.push((&anchor_x[anchor_index], "trust anchor"));
    for (x, role) in issuers {
        let who = cert_ref(role, x);
        check_common(x, &who, opts.at)?;
        if !crate::authority::has_key_usage(x, |ku| ku.key_cert_sign()) {
            return Err(fail(
                Reason::BadKeyUsage,
                Some(who.clone()),
                format!("{who} issues certificates but lacks the keyCertSign key usage"),
                "re-issue the CA certificate with keyCertSign",
            ));
        }
        out.push(who);
    }

    // A CRL that belongs to no issuer on the path checked nothing: saying
    // "valid" would let a wrong --crl pass silently.
    let path_issuers: Vec<&[u8]> = std::iter::once(leaf_x.issuer().as_raw())
        .chain(
            inters
                .iter()
                .filter(|x| out.iter().any(|r| r.sha256 == sha256_hex(x.as_raw())))
                .map(|x| x.issuer().as_raw()),
        )
        .collect();
    for (i, der) in opts.crls.iter().enumerate() {
        if let Ok((_, crl)) = x509_parser::parse_x509_crl(der)
            && !path_issuers.contains(&crl.issuer().as_raw())
        {
            return Err(fail(
                Reason::CrlWrongIssuer,
                None,
                format!(
                    "CRL #{} was issued by {}, which issued no certificate on this path",
                    i + 1,
                    crl.issuer()
                ),
                "pass the CRL of the CA that issued the certificate",
            ));
        }
    }
    let issuer_sha256 = out.get(1).map(|c| c.sha256.clone()).unwrap_or_default();
    let peer = peer_cert(&leaf_x, issuer_sha256);
    Ok(VerifiedPath { path: out, peer })
}

/// Maps a webpki failure to a reason, naming the certificate where we can.
// webpki still returns some of its deprecated unit variants; match them all.
#[allow(deprecated)]
fn explain(
    e: webpki::Error,
    leaf: &X509Certificate<'_>,
    leaf_ref: &CertRef,
    inters: &[X509Certificate<'_>],
    anchors: &[X509Certificate<'_>],
    opts: &VerifyOptions<'_>,
) -> VerifyError {
    use webpki::Error as E;
    // Issuers that could be on the path; their own faults explain the
    // signature and algorithm errors webpki reports without naming anyone.
    // Only certificates that could be on a path from this leaf (reachable
    // by issuer/subject names) may be blamed: an unrelated expired root in
    // a rotation bundle must not be named for a forged leaf.
    let mut names: Vec<&[u8]> = vec![leaf.issuer().as_raw()];
    let all: Vec<(&X509Certificate<'_>, &'static str)> = inters
        .iter()
        .map(|x| (x, "intermediate"))
        .chain(anchors.iter().map(|x| (x, "trust anchor")))
        .collect();
    loop {
        let before = names.len();
        for (x, _) in &all {
            if names.contains(&x.subject().as_raw()) && !names.contains(&x.issuer().as_raw()) {
                names.push(x.issuer().as_raw());
            }
        }
        if names.len() == before {
            break;
        }
    }
    let candidates = || {
        all.iter()
            .copied()
            .filter(|(x, _)| names.contains(&x.subject().as_raw()))
    };
    let any_issuer_fault = || {
        candidates().find_map(|(x, role)| {
            let who = cert_ref(role, x);
            check_common(x, &who, opts.at).err()
        })
    };
    let leaf_issuer = leaf.issuer().to_string();
    match e {
        E::UnknownIssuer => fail(
            Reason::UnknownCa,
            Some(leaf_ref.clone()),
            format!("no trusted CA issued {leaf_ref} (its issuer is {leaf_issuer})"),
            "pass the issuing root with --trust and any intermediates with --intermediates",
        ),
        E::CertExpired { .. } | E::CertNotValidYet { .. } | E::UnsupportedSignatureAlgorithm
        | E::UnsupportedSignatureAlgorithmContext(_) | E::UnsupportedSignatureAlgorithmForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) | E::UnsupportedCriticalExtension => {
            any_issuer_fault().unwrap_or_else(|| fail(Reason::Malformed, Some(leaf_ref.clone()), format!("path building failed: {e}"), "check the chain"))
        }
        E::InvalidSignatureForPublicKey => any_issuer_fault().unwrap_or_else(|| {
            // If a CA by the leaf's issuer name really signed the leaf, the
            // break is further up: that CA is not the trusted one (another
            // CA with the same names, e.g. a staging CA). Only when no such
            // CA's key verifies the leaf was the leaf itself altered.
            let genuine = candidates().find(|(x, _)| {
                x.subject().as_raw() == leaf.issuer().as_raw()
                    && leaf.verify_signature(Some(x.public_key())).is_ok()
            });
            match genuine {
                Some((x, role)) => {
                    let who = cert_ref(role, x);
                    fail(
                        Reason::UnknownCa,
                        Some(leaf_ref.clone()),
                        format!("{leaf_ref} was issued by {who}, which does not chain to a trusted root (it bears a trusted CA's name but not its key)"),
                        "the certificate comes from another CA with the same names; pass that CA's root with --trust if it should be trusted",
                    )
                }
                None => fail(
                    Reason::BadSignature,
                    Some(leaf_ref.clone()),
                    format!("the signature on {leaf_ref} does not verify with the key of its issuer {leaf_issuer}"),
                    "the certificate was altered or signed by an impostor key; re-issue it",
                ),
            }
        }),
        E::CaUsedAsEndEntity => fail(Reason::CaUsedAsLeaf, Some(leaf_ref.clone()), format!("{leaf_ref} is a CA certificate presented as a leaf"), "present the workload's own certificate"),
        E::EndEntityUsedAsCa => fail(Reason::UnknownCa, Some(leaf_ref.clone()), format!("{leaf_ref} was issued by {leaf_issuer}, which is not a CA"), "issue leaves from a CA certificate"),
        E::PathLenConstraintViolated => fail(Reason::PathLenExceeded, Some(leaf_ref.clone()), format!("the path to {leaf_ref} has more CAs than a pathLenConstraint on it allows"), "issue from a CA whose path length allows it"),
        E::NameConstraintViolation => fail(Reason::NameConstraintViolation, Some(leaf_ref.clone()), format!("{leaf_ref} carries a name outside the name constraints of a CA on its path"), "issue it only for names the CA is permitted"),
        E::MaximumPathDepthExceeded => fail(Reason::PathTooLong, Some(leaf_ref.clone()), format!("every path to {leaf_ref} has more than {} intermediates", opts.max_intermediates), "raise --max-depth if this is expected"),
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => fail(Reason::BadEku, Some(leaf_ref.clone()), "a CA on the path restricts extended key usage and excludes this purpose".into(), "issue from a CA allowed for this purpose"),
        E::CertRevoked => revoked(leaf, leaf_ref, inters, opts),
        E::CrlExpired { next_update, .. } => {
            let nu = OffsetDateTime::from_unix_timestamp(next_update.as_secs() as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH);
            fail(Reason::CrlExpired, None, format!("the CRL for {leaf_issuer} expired: its nextUpdate was {}", rfc3339(nu)), "fetch a fresh CRL from the CA")
        }
        E::IssuerNotCrlSigner => fail(Reason::CrlNotSigner, None, "a CRL was signed by a CA certificate without the cRLSign key usage".into(), "use the CRL published by the CA, or re-issue the CA with cRLSign"),
        E::InvalidCrlSignatureForPublicKey | E::UnsupportedCrlSignatureAlgorithm | E::UnsupportedCrlSignatureAlgorithmContext(_)
        | E::UnsupportedCrlSignatureAlgorithmForPublicKey | E::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_) => fail(
            Reason::CrlBadSignature,
            None,
            format!("a CRL naming {leaf_issuer} as issuer is not signed by that CA's key"),
            "the CRL was forged or comes from another CA with the same name; fetch it from the CA",
        ),
        other => fail(Reason::Malformed, Some(leaf_ref.clone()), format!("path validation failed: {other}"), "check the certificates and CRLs given"),
    }
}

fn revoked(
    leaf: &X509Certificate<'_>,
    leaf_ref: &CertRef,
    inters: &[X509Certificate<'_>],
    opts: &VerifyOptions<'_>,
) -> VerifyError {
    let certs = std::iter::once((leaf, leaf_ref.clone()))
        .chain(inters.iter().map(|x| (x, cert_ref("intermediate", x))));
    for (x, who) in certs {
        for der in opts.crls {
            let Ok((_, crl)) = x509_parser::parse_x509_crl(der) else {
                continue;
            };
            if crl.issuer().as_raw() != x.issuer().as_raw() {
                continue;
            }
            let serial = crate::Serial::from_be_bytes(x.raw_serial());
            if let Some(entry) = crl
                .iter_revoked_certificates()
                .find(|r| crate::Serial::from_be_bytes(r.raw_serial()) == serial)
            {
                let reason = entry
                    .reason_code()
                    .map(|(_, r)| crate::inspect::reason_name(r.0))
                    .unwrap_or("unspecified");
                let when = entry.revocation_date.to_datetime();
                return fail(
                    Reason::Revoked,
                    Some(who.clone()),
                    format!(
                        "{who} was revoked {} ({}), reason {reason}",
                        rfc3339(when),
                        format_delta(opts.at, when)
                    ),
                    "issue a new certificate; a revoked one cannot be restored",
                );
            }
        }
    }
    fail(
        Reason::Revoked,
        Some(leaf_ref.clone()),
        "a certificate on the path is revoked".into(),
        "issue a new certificate",
    )
}

/// The facts policy matches on, read from a leaf's SANs and subject.
fn peer_cert(x: &X509Certificate<'_>, issuer_sha256: String) -> PeerCert {
    let mut p = PeerCert {
        spiffe_id: None,
        dns: Vec::new(),
        uris: Vec::new(),
        ips: Vec::new(),
        cn: Vec::new(),
        o: Vec::new(),
        ou: Vec::new(),
        subject: x.subject().to_string(),
        issuer: x.issuer().to_string(),
        serial: crate::Serial::from_be_bytes(x.raw_serial()).to_hex(),
        sha256: sha256_hex(x.as_raw()),
        issuer_sha256,
        spki_sha256: crate::spki_pin(x.public_key().raw),
        not_before: x.validity().not_before.to_datetime(),
        not_after: x.validity().not_after.to_datetime(),
    };
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for g in &san.value.general_names {
            match g {
                GeneralName::DNSName(d) => p.dns.push(d.to_ascii_lowercase()),
                GeneralName::URI(u) => {
                    if u.starts_with("spiffe://") && p.spiffe_id.is_none() {
                        p.spiffe_id = Some(u.to_string());
                    }
                    p.uris.push(u.to_string());
                }
                GeneralName::IPAddress(_) => p.ips.push(
                    crate::inspect::general_name(g)
                        .trim_start_matches("IP:")
                        .to_string(),
                ),
                _ => {}
            }
        }
    }
    let attrs = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect::<Vec<_>>()
    };
    p.cn = attrs(&mut x.subject().iter_common_name());
    p.o = attrs(&mut x.subject().iter_organization());
    p.ou = attrs(&mut x.subject().iter_organizational_unit());
    p
}
