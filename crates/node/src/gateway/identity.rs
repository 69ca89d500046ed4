//! How the verified identity travels upstream: Envoy's
//! `x-forwarded-client-cert` header (HTTP) and a PROXY protocol v2 header
//! with TLVs (TCP).

use std::net::SocketAddr;

use symbolon_core::PeerCert;

/// The XFCC element for one client certificate, in Envoy's format:
/// `By=<gateway URI>;Hash=<sha256 hex>;Subject="<subject>";URI=<uri>;DNS=<dns>…`.
pub fn xfcc(by: Option<&str>, peer: &PeerCert) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    // Values with XFCC's separators are quoted, so a SAN from some other CA
    // in the bundle cannot add elements or keys to the header. The same
    // holds for our own URI (`By`): a URI may well contain `=` or `;`.
    let value = |v: &str| {
        if v.contains([';', ',', '=', '"', '\\']) {
            quote(v)
        } else {
            v.to_string()
        }
    };
    let mut parts = Vec::new();
    if let Some(by) = by {
        parts.push(format!("By={}", value(by)));
    }
    parts.push(format!("Hash={}", peer.sha256));
    parts.push(format!("Subject={}", quote(&peer.subject)));
    if let Some(id) = &peer.spiffe_id {
        parts.push(format!("URI={}", value(id)));
    } else if let Some(uri) = peer.uris.first() {
        parts.push(format!("URI={}", value(uri)));
    }
    for d in &peer.dns {
        parts.push(format!("DNS={}", value(d)));
    }
    parts.join(";")
}

const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
const PP2_CLIENT_SSL: u8 = 0x01;
const PP2_CLIENT_CERT_CONN: u8 = 0x02;
const PP2_CLIENT_CERT_SESS: u8 = 0x04;
/// First custom TLV type (0xE0–0xEF are for applications): we carry the
/// same identity string as the XFCC header.
pub const PP2_TYPE_SYMBOLON_IDENTITY: u8 = 0xE0;

/// A TLV, or `None` when the value is longer than its 16-bit length field
/// can say: a truncated length would let the value's tail be read as the
/// start of the proxied stream.
fn tlv(t: u8, value: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(value.len()).ok()?;
    let mut v = vec![t];
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(value);
    Some(v)
}

/// A PROXY protocol v2 header (PROXY command, TCP) for `src` → `dst`, with
/// the SSL TLV (version, client CN, verified) and the identity TLV.
/// The whole header must fit a 16-bit length: a client CN or identity too
/// long for it (a certificate with thousands of SANs) is left out, never
/// truncated.
pub fn proxy_v2(
    src: SocketAddr,
    dst: SocketAddr,
    tls_version: &str,
    peer: Option<&PeerCert>,
    identity: Option<&str>,
) -> Vec<u8> {
    let (fam, mut addrs) = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            let mut a = Vec::with_capacity(12);
            a.extend_from_slice(&s.ip().octets());
            a.extend_from_slice(&d.ip().octets());
            (0x11u8, a)
        }
        _ => {
            let v6 = |a: SocketAddr| match a {
                SocketAddr::V4(v4) => v4.ip().to_ipv6_mapped().octets(),
                SocketAddr::V6(v6) => v6.ip().octets(),
            };
            let mut a = Vec::with_capacity(36);
            a.extend_from_slice(&v6(src));
            a.extend_from_slice(&v6(dst));
            (0x21u8, a)
        }
    };
    addrs.extend_from_slice(&src.port().to_be_bytes());
    addrs.extend_from_slice(&dst.port().to_be_bytes());

    let mut ssl = Vec::new();
    let client = match peer {
        Some(_) => PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS,
        None => PP2_CLIENT_SSL,
    };
    ssl.push(client);
    ssl.extend_from_slice(&0u32.to_be_bytes()); // verify: 0 = verified
    // What a sub-TLV may take once the addresses, the SSL TLV's header and
    // `used` bytes of its value are counted.
    let room = |used: usize| usize::from(u16::MAX).saturating_sub(addrs.len() + 3 + used);
    ssl.extend(tlv(PP2_SUBTYPE_SSL_VERSION, tls_version.as_bytes()).unwrap_or_default());
    if let Some(cn) = peer.and_then(|p| p.cn.first())
        && let Some(t) =
            tlv(PP2_SUBTYPE_SSL_CN, cn.as_bytes()).filter(|t| t.len() <= room(ssl.len()))
    {
        ssl.extend(t);
    }
    let mut tlvs = tlv(PP2_TYPE_SSL, &ssl).unwrap_or_default();
    if let Some(id) = identity {
        match tlv(PP2_TYPE_SYMBOLON_IDENTITY, id.as_bytes())
            .filter(|t| addrs.len() + tlvs.len() + t.len() <= usize::from(u16::MAX))
        {
            Some(t) => tlvs.extend(t),
            None => tracing::warn!(
                reason = "malformed",
                "identity ({} bytes) too long for a PROXY v2 header; sent without it",
                id.len()
            ),
        }
    }

    let mut out = SIGNATURE.to_vec();
    out.push(0x21); // version 2, PROXY
    out.push(fam);
    // The checks above keep it within 16 bits.
    let len = u16::try_from(addrs.len() + tlvs.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend(addrs);
    out.extend(tlvs);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn peer() -> PeerCert {
        PeerCert {
            spiffe_id: Some("spiffe://example.org/web".into()),
            dns: vec!["web.example.org".into()],
            uris: vec!["spiffe://example.org/web".into()],
            ips: vec![],
            cn: vec!["web".into()],
            o: vec![],
            ou: vec![],
            subject: "CN=web, O=Acme \"Inc\"".into(),
            issuer: "CN=Int".into(),
            serial: "01".into(),
            sha256: "ab".repeat(32),
            issuer_sha256: String::new(),
            spki_sha256: String::new(),
            not_before: OffsetDateTime::UNIX_EPOCH,
            not_after: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn xfcc_follows_envoys_format() {
        let x = xfcc(Some("spiffe://example.org/gw"), &peer());
        assert_eq!(
            x,
            format!(
                "By=spiffe://example.org/gw;Hash={};Subject=\"CN=web, O=Acme \\\"Inc\\\"\";URI=spiffe://example.org/web;DNS=web.example.org",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn xfcc_quotes_values_that_could_forge_elements() {
        let mut odd = peer();
        odd.spiffe_id = Some("spiffe://example.org/a;DNS=admin,By=x".into());
        odd.dns = vec!["ok.example.org".into()];
        let x = xfcc(None, &odd);
        assert!(
            x.contains("URI=\"spiffe://example.org/a;DNS=admin,By=x\""),
            "{x}"
        );
        assert!(x.ends_with(";DNS=ok.example.org"), "{x}");
    }

    #[test]
    fn xfcc_quotes_a_by_uri_with_separators() {
        // Found by fuzz/fuzz_targets/xfcc.rs: `By` was written raw, so a
        // gateway URI SAN holding `,`, `;` or `=` broke the header apart.
        let x = xfcc(Some("https://gw.example.org/id?a=b;c,d"), &peer());
        assert!(
            x.starts_with("By=\"https://gw.example.org/id?a=b;c,d\";Hash="),
            "{x}"
        );
        assert_eq!(x.matches(',').count(), 2, "{x}"); // both inside quotes
    }

    #[test]
    fn proxy_v2_header_layout() {
        let h = proxy_v2(
            "127.0.0.1:5000".parse().unwrap(),
            "127.0.0.2:443".parse().unwrap(),
            "TLSv1.3",
            Some(&peer()),
            Some("URI=x"),
        );
        assert_eq!(&h[..12], SIGNATURE);
        assert_eq!(h[12], 0x21);
        assert_eq!(h[13], 0x11);
        let len = u16::from_be_bytes([h[14], h[15]]) as usize;
        assert_eq!(h.len(), 16 + len);
        assert_eq!(&h[16..20], &[127, 0, 0, 1]);
        assert_eq!(&h[20..24], &[127, 0, 0, 2]);
        assert_eq!(u16::from_be_bytes([h[24], h[25]]), 5000);
        assert_eq!(u16::from_be_bytes([h[26], h[27]]), 443);
        assert_eq!(h[28], PP2_TYPE_SSL);
        assert!(h.windows(5).any(|w| w == b"URI=x"));
        assert!(h.windows(7).any(|w| w == b"TLSv1.3"));
    }

    #[test]
    fn proxy_v2_leaves_out_an_identity_too_long_for_the_header() {
        // Found by fuzz/fuzz_targets/xfcc.rs: lengths were cast to u16, so
        // an identity over 64 KiB (a certificate with thousands of SANs)
        // wrapped the length fields and its tail was read upstream as the
        // start of the proxied stream.
        let id = format!("URI=x;{}", "DNS=a.example.org;".repeat(4000));
        let h = proxy_v2(
            "127.0.0.1:5000".parse().unwrap(),
            "127.0.0.2:443".parse().unwrap(),
            "TLSv1.3",
            Some(&peer()),
            Some(&id),
        );
        let len = u16::from_be_bytes([h[14], h[15]]) as usize;
        assert_eq!(h.len(), 16 + len);
        assert_eq!(h[28], PP2_TYPE_SSL);
        let ssl_len = u16::from_be_bytes([h[29], h[30]]) as usize;
        assert_eq!(h.len(), 31 + ssl_len, "only the SSL TLV follows");
        assert!(h.windows(7).any(|w| w == b"TLSv1.3"));
    }
}
