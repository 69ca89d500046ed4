//! Leaf issuance: profiles, the SPIFFE X.509-SVID rules, and the signed result.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rcgen::{
    CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;
use symbolon_core::Identity;
use time::OffsetDateTime;

use crate::authority::{BACKDATE, to_time};
use crate::{Issuer, PkiError, Serial, der};

/// What a leaf may be used for, as its extended key usage says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// TLS server (serverAuth).
    Server,
    /// TLS client (clientAuth).
    Client,
    /// Both: a workload that accepts and makes mTLS connections.
    Peer,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Server => "server",
            Profile::Client => "client",
            Profile::Peer => "peer",
        }
    }

    /// `peer` for SPIFFE workloads (they both serve and call), else `server`.
    pub fn default_for(identities: &[Identity]) -> Profile {
        if identities.iter().any(|i| matches!(i, Identity::Spiffe(_))) {
            Profile::Peer
        } else {
            Profile::Server
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "server" => Ok(Profile::Server),
            "client" => Ok(Profile::Client),
            "peer" => Ok(Profile::Peer),
            _ => Err(format!("unknown profile {s:?}; use server, client or peer")),
        }
    }
}

/// What to put in a leaf certificate. The public key comes separately.
#[derive(Clone, Debug)]
pub struct LeafSpec {
    pub identities: Vec<Identity>,
    pub common_name: Option<String>,
    pub profile: Profile,
    pub lifetime: Duration,
}

impl LeafSpec {
    /// Checks the request on its own: at least one identity, a sane CN, and
    /// the SPIFFE X.509-SVID rule of exactly one URI SAN when a SPIFFE ID is
    /// present.
    pub fn validate(&self) -> Result<(), PkiError> {
        let refuse = |m: String| Err(PkiError::Refused(m));
        if self.identities.is_empty() {
            return refuse(
                "no identity given; name at least one (--spiffe-id, --dns, --ip or --uri)".into(),
            );
        }
        let spiffe = self
            .identities
            .iter()
            .filter(|i| matches!(i, Identity::Spiffe(_)))
            .count();
        let uris = self
            .identities
            .iter()
            .filter(|i| matches!(i, Identity::Uri(_)))
            .count();
        if spiffe > 1 {
            return refuse(
                "a SPIFFE X.509-SVID carries exactly one SPIFFE ID; issue one certificate per ID"
                    .into(),
            );
        }
        if spiffe == 1 && uris > 0 {
            return refuse(
                "a SPIFFE X.509-SVID carries exactly one URI SAN; drop the other URIs".into(),
            );
        }
        if let Some(cn) = &self.common_name
            && (cn.is_empty() || cn.len() > 64 || cn.chars().any(|c| c.is_control()))
        {
            return refuse("the common name must be 1 to 64 printable characters".into());
        }
        if self.lifetime < Duration::from_secs(10) {
            return refuse("the lifetime must be at least 10s (short lifetimes are for tests and demos; renewal needs time)".into());
        }
        Ok(())
    }
}

/// A signed leaf, not yet handed to anyone: record it, then give it out.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    pub serial: Serial,
    pub der: CertificateDer<'static>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub identities: Vec<Identity>,
    pub profile: Profile,
    pub subject: String,
    /// Leaf first, then the issuing intermediate.
    pub chain: Vec<CertificateDer<'static>>,
}

impl IssuedCert {
    pub fn chain_pem(&self) -> String {
        self.chain
            .iter()
            .map(|c| crate::to_pem("CERTIFICATE", c))
            .collect()
    }

    pub fn fingerprint(&self) -> String {
        crate::sha256_hex(&self.der)
    }
}

impl Issuer {
    /// Signs a leaf for `spki_der` (a DER SubjectPublicKeyInfo). Refuses weak
    /// keys and lifetimes that would outlive this issuer.
    pub fn issue(
        &self,
        spki_der: &[u8],
        spec: &LeafSpec,
        now: OffsetDateTime,
    ) -> Result<IssuedCert, PkiError> {
        spec.validate()?;
        crate::keys::check_spki_der(spki_der).map_err(PkiError::Refused)?;
        let not_after = now + to_time(spec.lifetime)?;
        if not_after > self.not_after() {
            return Err(PkiError::Refused(format!(
                "the certificate would outlive its issuer, which expires {}; shorten the lifetime or rotate the intermediate",
                crate::rfc3339(self.not_after())
            )));
        }
        let serial = Serial::random();

        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let cn = spec.common_name.clone().or_else(|| {
            spec.identities.iter().find_map(|i| match i {
                Identity::Dns(d) if d.len() <= 64 => Some(d.clone()),
                _ => None,
            })
        });
        if let Some(cn) = &cn {
            dn.push(DnType::CommonName, cn.as_str());
        }
        p.distinguished_name = dn;
        p.serial_number = Some(serial.to_rcgen());
        p.not_before = now - BACKDATE;
        p.not_after = not_after;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = match spec.profile {
            Profile::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Profile::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Profile::Peer => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        p.use_authority_key_identifier_extension = true;
        p.key_identifier_method = KeyIdMethod::PreSpecified(crate::keys::key_identifier(spki_der)?);
        p.subject_alt_names = spec
            .identities
            .iter()
            .map(|id| {
                Ok(match id {
                    Identity::Spiffe(s) => SanType::URI(s.to_string().try_into()?),
                    Identity::Uri(u) => SanType::URI(u.as_str().try_into()?),
                    Identity::Dns(d) => SanType::DnsName(d.as_str().try_into()?),
                    Identity::Ip(ip) => SanType::IpAddress(*ip),
                })
            })
            .collect::<Result<_, rcgen::Error>>()?;
        if let Some(base) = self.public_url() {
            p.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![format!("{base}/v1/crl")],
            }];
            p.custom_extensions = vec![ocsp_aia(&format!("{base}/v1/ocsp"))];
        }

        let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| PkiError::Refused(format!("unusable public key: {e}")))?;
        let cert = p.signed_by(&public_key, &self.rcgen_issuer()?)?;
        let der = cert.der().clone();
        Ok(IssuedCert {
            serial,
            chain: vec![der.clone(), self.certificate().clone()],
            der,
            not_before: p.not_before,
            not_after,
            identities: spec.identities.clone(),
            profile: spec.profile,
            subject: cn.map(|c| format!("CN={c}")).unwrap_or_default(),
        })
    }
}

/// authorityInfoAccess with one OCSP responder URL (RFC 5280 §4.2.2.1).
fn ocsp_aia(url: &str) -> CustomExtension {
    const ID_AD_OCSP: &str = "1.3.6.1.5.5.7.48.1";
    let access = der::seq(&[&der::oid(ID_AD_OCSP), &der::tlv(0x86, url.as_bytes())]);
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], der::seq(&[&access]))
}
