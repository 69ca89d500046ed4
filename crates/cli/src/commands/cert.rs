//! `symbolon cert …`: inspect and verify.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use symbolon_pki::input::{self, ObjectKind};
use symbolon_pki::{CertSummary, CrlSummary, CsrSummary, ExpectedName, Purpose, VerifyOptions};
use time::OffsetDateTime;

use crate::{CmdResult, Failure, output};

// === cert inspect ===

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Certificate, chain, CSR or CRL (PEM or DER).
    file: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Described {
    Certificate(Box<CertSummary>),
    Csr(CsrSummary),
    Crl(CrlSummary),
}

pub fn inspect(args: InspectArgs) -> CmdResult {
    let bytes = input::read_file(&args.file)?;
    let objects = input::parse_objects(&args.file, &bytes)?;
    let now = OffsetDateTime::now_utc();
    let f = args.file.display();
    let mut described = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        let n = i + 1;
        let d = match obj.kind {
            ObjectKind::Certificate => Described::Certificate(Box::new(
                symbolon_pki::describe_certificate(&obj.der, now)
                    .ok_or_else(|| anyhow!("{f}: certificate #{n} is not valid DER X.509"))?,
            )),
            ObjectKind::Csr => Described::Csr(
                symbolon_pki::describe_csr(&obj.der)
                    .ok_or_else(|| anyhow!("{f}: CSR #{n} is not a valid PKCS#10 request"))?,
            ),
            ObjectKind::Crl => Described::Crl(
                symbolon_pki::describe_crl(&obj.der, now)
                    .ok_or_else(|| anyhow!("{f}: CRL #{n} is not valid DER"))?,
            ),
            ObjectKind::PrivateKey | ObjectKind::EncryptedPrivateKey => {
                return Err(anyhow!("{f}: holds {}; `cert inspect` shows certificates, CSRs and CRLs (keys are never printed)", obj.kind.describe()).into());
            }
        };
        described.push(d);
    }
    if args.json {
        output::json(&described)?;
        return Ok(());
    }
    let total = described.len();
    for (i, d) in described.iter().enumerate() {
        if total > 1 {
            println!("#{} of {total}", i + 1);
        }
        match d {
            Described::Certificate(c) => print_cert(c),
            Described::Csr(c) => print_csr(c),
            Described::Crl(c) => print_crl(c),
        }
        if i + 1 < total {
            println!();
        }
    }
    Ok(())
}

fn row(label: &str, value: impl AsRef<str>) {
    println!("  {label:<22}{}", value.as_ref());
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

fn print_cert(c: &CertSummary) {
    let kind = if c.is_ca {
        if c.self_signed {
            "Root CA certificate"
        } else {
            "CA certificate"
        }
    } else {
        "Certificate"
    };
    println!("{kind}");
    row(
        "subject",
        if c.subject.is_empty() {
            "(empty: the identity is in the SANs)"
        } else {
            &c.subject
        },
    );
    row("issuer", &c.issuer);
    row("serial", &c.serial);
    row("not before", &c.not_before);
    row("not after", format!("{} ({})", c.not_after, c.validity));
    row("subject alt names", list(&c.subject_alt_names));
    row("key", c.key.to_string());
    row("signature", &c.signature_algorithm);
    let bc = match (c.is_ca, c.path_len) {
        (true, Some(n)) => format!("CA, path length {n}"),
        (true, None) => "CA, no path length limit".into(),
        (false, _) => "not a CA".into(),
    };
    row("basic constraints", bc);
    row("key usage", list(&c.key_usage));
    row("extended key usage", list(&c.extended_key_usage));
    if let Some(nc) = &c.name_constraints {
        row("permitted names", list(&nc.permitted));
        row("excluded names", list(&nc.excluded));
    }
    if !c.ocsp_urls.is_empty() {
        row("OCSP", list(&c.ocsp_urls));
    }
    if !c.ca_issuer_urls.is_empty() {
        row("CA issuers", list(&c.ca_issuer_urls));
    }
    if !c.crl_distribution_points.is_empty() {
        row("CRL distribution", list(&c.crl_distribution_points));
    }
    row("SHA-256 fingerprint", &c.sha256_fingerprint);
    row("SPKI SHA-256 pin", format!("sha256//{}", c.spki_sha256));
}

fn print_csr(c: &CsrSummary) {
    println!("Certificate signing request");
    row("subject", &c.subject);
    row("subject alt names", list(&c.subject_alt_names));
    row("key", c.key.to_string());
    row(
        "signature",
        format!(
            "{} ({})",
            c.signature_algorithm,
            if c.signature_valid {
                "valid"
            } else {
                "INVALID"
            }
        ),
    );
    if c.requests_ca {
        row("requests", "a CA certificate (basicConstraints cA=true)");
    }
}

fn print_crl(c: &CrlSummary) {
    println!("Certificate revocation list");
    row("issuer", &c.issuer);
    row(
        "CRL number",
        c.crl_number.clone().unwrap_or_else(|| "(none)".into()),
    );
    row("this update", &c.this_update);
    row(
        "next update",
        format!(
            "{} ({})",
            c.next_update.clone().unwrap_or_else(|| "(none)".into()),
            c.validity
        ),
    );
    row("signature", &c.signature_algorithm);
    row("revoked", format!("{} certificate(s)", c.entries.len()));
    for e in &c.entries {
        println!("    {}  revoked {}  {}", e.serial, e.revoked_at, e.reason);
    }
}

// === cert verify ===

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PurposeArg {
    Server,
    Client,
    Any,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("name").args(["dns", "ip", "uri"])))]
pub struct VerifyArgs {
    /// The certificate to verify; further certificates in the file are used as intermediates.
    leaf: PathBuf,
    /// Trusted root(s); repeat or give a bundle.
    #[arg(long, value_name = "FILE")]
    trust: Vec<PathBuf>,
    /// Untrusted intermediate certificates.
    #[arg(long, value_name = "FILE")]
    intermediates: Vec<PathBuf>,
    /// CRLs to check every certificate on the path against.
    #[arg(long, value_name = "FILE")]
    crl: Vec<PathBuf>,
    /// Verify as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    #[arg(long, value_enum, default_value = "any")]
    purpose: PurposeArg,
    /// The DNS name the certificate must carry (wildcards in the certificate apply).
    #[arg(long, value_name = "NAME")]
    dns: Option<String>,
    #[arg(long, value_name = "ADDR")]
    ip: Option<IpAddr>,
    /// The URI (e.g. SPIFFE ID) the certificate must carry.
    #[arg(long, value_name = "URI")]
    uri: Option<String>,
    /// Most intermediate CAs allowed between the leaf and the trust anchor.
    #[arg(long, default_value_t = 4, value_name = "N")]
    max_depth: usize,
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct VerifyJson<'a> {
    valid: bool,
    at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a [symbolon_pki::CertRef]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<&'a symbolon_pki::CertRef>,
}

pub fn verify(args: VerifyArgs) -> CmdResult {
    if args.trust.is_empty() {
        return Err(
            anyhow!("no trust anchor: give the root CA certificate with --trust FILE").into(),
        );
    }
    let mut leaf_chain = input::load_certificates(&args.leaf)?;
    let leaf = leaf_chain.remove(0);
    let mut intermediates = leaf_chain;
    for p in &args.intermediates {
        intermediates.extend(input::load_certificates(p)?);
    }
    let mut trust = Vec::new();
    for p in &args.trust {
        trust.extend(input::load_certificates(p)?);
    }
    let mut crls = Vec::new();
    for p in &args.crl {
        crls.extend(input::load_crls(p)?);
    }
    let at = match &args.at {
        Some(s) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                anyhow!(
                    "--at {s:?}: not an RFC 3339 time ({e}); write it like 2026-11-25T03:00:00Z"
                )
            })?,
        None => OffsetDateTime::now_utc(),
    };
    let name = match (&args.dns, args.ip, &args.uri) {
        (Some(d), _, _) => Some(ExpectedName::Dns(
            d.trim_end_matches('.').to_ascii_lowercase(),
        )),
        (_, Some(ip), _) => Some(ExpectedName::Ip(ip)),
        (_, _, Some(u)) => Some(ExpectedName::Uri(u.clone())),
        _ => None,
    };
    let opts = VerifyOptions {
        trust: &trust,
        intermediates: &intermediates,
        crls: &crls,
        at,
        purpose: match args.purpose {
            PurposeArg::Server => Purpose::Server,
            PurposeArg::Client => Purpose::Client,
            PurposeArg::Any => Purpose::Any,
        },
        name,
        max_intermediates: args.max_depth,
    };
    let at_s = symbolon_pki::rfc3339(at);
    match symbolon_pki::verify(&leaf, &opts) {
        Ok(verified) => {
            if args.json {
                output::json(&VerifyJson {
                    valid: true,
                    at: at_s,
                    path: Some(&verified.path),
                    reason: None,
                    message: None,
                    hint: None,
                    certificate: None,
                })?;
            } else {
                println!("valid: verified at {at_s}");
                for c in &verified.path {
                    println!(
                        "  {:<13} {}  (serial {}, not after {})",
                        c.role, c.subject, c.serial, c.not_after
                    );
                }
            }
            Ok(())
        }
        Err(e) => {
            if args.json {
                output::json(&VerifyJson {
                    valid: false,
                    at: at_s,
                    path: None,
                    reason: Some(e.reason.as_str()),
                    message: Some(&e.message),
                    hint: Some(&e.hint),
                    certificate: e.certificate.as_deref(),
                })?;
            } else {
                println!("{}: {}; {}", e.reason, e.message, e.hint);
            }
            Err(Failure::Negative)
        }
    }
}
