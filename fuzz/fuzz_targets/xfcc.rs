//! The identity the gateway forwards upstream.
//!
//! XFCC: a `PeerCert` with arbitrary strings is rendered with
//! `identity::xfcc`, then parsed back with an independent parser of Envoy's
//! grammar (elements split by `,`, pairs by `;`, key and value by `=`;
//! values holding any of those are double-quoted, `\` escapes inside
//! quotes). The header must be exactly one element whose keys are exactly
//! By?, Hash, Subject, URI?, DNS* in that order with the original values:
//! no SAN can add an element or a key.
//!
//! PROXY v2: the header must decode back (signature, family, addresses,
//! ports, declared length == actual length, every TLV within its parent)
//! and its TLVs must carry exactly the TLS version, the client CN and the
//! identity string given — except that a CN or identity too long for the
//! 16-bit header length is left out (never truncated), and only then.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use symbolon_core::PeerCert;
use symbolon_node::gateway::identity::{PP2_TYPE_SYMBOLON_IDENTITY, proxy_v2, xfcc};
use time::OffsetDateTime;

#[derive(Debug, Arbitrary)]
struct Input {
    by: Option<String>,
    /// The certificate digest: our own hex of 32 bytes, as `peer_cert` makes it.
    hash: [u8; 32],
    subject: String,
    spiffe_path: Option<String>,
    uris: Vec<String>,
    dns: Vec<String>,
    cn: Vec<String>,
    src: Addr,
    dst: Addr,
    tls_version: String,
    with_peer: bool,
    /// Makes identities longer than max_len allows: a client certificate
    /// may carry many SANs.
    repeat: u8,
}

#[derive(Debug, Arbitrary)]
enum Addr {
    V4([u8; 4], u16),
    V6([u8; 16], u16),
}

impl Addr {
    fn get(&self) -> SocketAddr {
        match *self {
            Addr::V4(ip, port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port),
            Addr::V6(ip, port) => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Envoy's XFCC grammar, written independently of the renderer.
/// Returns elements, each a list of (key, value) with quotes removed.
fn parse_xfcc(h: &str) -> Result<Vec<Vec<(String, String)>>, String> {
    let mut elements = Vec::new();
    let mut pairs = Vec::new();
    let mut key = String::new();
    let mut value = String::new();
    let mut in_value = false;
    let mut quoted = false; // inside "…"
    let mut was_quoted = false; // this value was quoted (no more raw chars)
    let mut chars = h.chars();
    let finish_pair = |key: &mut String,
                       value: &mut String,
                       in_value: &mut bool,
                       was_quoted: &mut bool,
                       pairs: &mut Vec<(String, String)>|
     -> Result<(), String> {
        if !*in_value {
            return Err(format!("pair without '=': {key:?}"));
        }
        pairs.push((std::mem::take(key), std::mem::take(value)));
        *in_value = false;
        *was_quoted = false;
        Ok(())
    };
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '\\' => value.push(chars.next().ok_or("dangling backslash")?),
                '"' => {
                    quoted = false;
                    was_quoted = true;
                }
                c => value.push(c),
            }
            continue;
        }
        match c {
            ',' => {
                finish_pair(
                    &mut key,
                    &mut value,
                    &mut in_value,
                    &mut was_quoted,
                    &mut pairs,
                )?;
                elements.push(std::mem::take(&mut pairs));
            }
            ';' => finish_pair(
                &mut key,
                &mut value,
                &mut in_value,
                &mut was_quoted,
                &mut pairs,
            )?,
            '=' if !in_value => in_value = true,
            '=' => return Err("unquoted '=' in a value".into()),
            '"' if in_value && value.is_empty() && !was_quoted => quoted = true,
            '"' => return Err("stray quote".into()),
            '\\' => return Err("unquoted backslash".into()),
            c if was_quoted => return Err(format!("{c:?} after a closing quote")),
            c if in_value => value.push(c),
            c => key.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    finish_pair(
        &mut key,
        &mut value,
        &mut in_value,
        &mut was_quoted,
        &mut pairs,
    )?;
    elements.push(pairs);
    Ok(elements)
}

fn check_xfcc(input: &Input, peer: &PeerCert) {
    let header = xfcc(input.by.as_deref(), peer);
    let elements = parse_xfcc(&header).unwrap_or_else(|e| panic!("{e}: {header:?}"));
    assert_eq!(elements.len(), 1, "forged element: {header:?}");
    let mut want = Vec::new();
    if let Some(by) = &input.by {
        want.push(("By".to_string(), by.clone()));
    }
    want.push(("Hash".into(), peer.sha256.clone()));
    want.push(("Subject".into(), peer.subject.clone()));
    if let Some(uri) = peer.spiffe_id.as_ref().or(peer.uris.first()) {
        want.push(("URI".into(), uri.clone()));
    }
    for d in &peer.dns {
        want.push(("DNS".into(), d.clone()));
    }
    assert_eq!(elements[0], want, "XFCC does not round-trip: {header:?}");
}

struct Tlv<'a> {
    kind: u8,
    value: &'a [u8],
}

fn tlvs(mut b: &[u8]) -> Vec<Tlv<'_>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 3, "truncated TLV header");
        let len = u16::from_be_bytes([b[1], b[2]]) as usize;
        assert!(b.len() >= 3 + len, "TLV longer than the header");
        out.push(Tlv {
            kind: b[0],
            value: &b[3..3 + len],
        });
        b = &b[3 + len..];
    }
    out
}

fn check_proxy_v2(input: &Input, peer: &PeerCert, identity: Option<&str>) {
    let (src, dst) = (input.src.get(), input.dst.get());
    let peer = input.with_peer.then_some(peer);
    let h = proxy_v2(src, dst, &input.tls_version, peer, identity);
    assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(h[12], 0x21);
    let len = u16::from_be_bytes([h[14], h[15]]) as usize;
    assert_eq!(h.len(), 16 + len, "declared length != actual length");
    let body = &h[16..];
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let rest = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            assert_eq!(h[13], 0x11);
            assert_eq!(&body[0..4], &s.ip().octets());
            assert_eq!(&body[4..8], &d.ip().octets());
            &body[8..]
        }
        _ => {
            assert_eq!(h[13], 0x21);
            assert_eq!(&body[0..16], &v6(src));
            assert_eq!(&body[16..32], &v6(dst));
            &body[32..]
        }
    };
    assert_eq!(u16::from_be_bytes([rest[0], rest[1]]), src.port());
    assert_eq!(u16::from_be_bytes([rest[2], rest[3]]), dst.port());
    let top = tlvs(&rest[4..]);
    assert_eq!(top[0].kind, 0x20, "first TLV is PP2_TYPE_SSL");
    let ssl = top[0].value;
    let client = ssl[0];
    assert_eq!(client & 0x01, 0x01);
    assert_eq!(client & 0x06 != 0, peer.is_some());
    assert_eq!(&ssl[1..5], &[0, 0, 0, 0]);
    let sub = tlvs(&ssl[5..]);
    assert_eq!(sub[0].kind, 0x21);
    assert_eq!(sub[0].value, input.tls_version.as_bytes());
    // A CN or identity is left out only when it cannot fit the header.
    let cn = peer.and_then(|p| p.cn.first());
    let fixed = body.len() - rest.len() + 4 + 3 + 5 + 3 + input.tls_version.len();
    match cn {
        Some(cn) if sub.len() == 2 => {
            assert_eq!(sub[1].kind, 0x22);
            assert_eq!(sub[1].value, cn.as_bytes());
        }
        Some(cn) => {
            assert_eq!(sub.len(), 1);
            assert!(fixed + 3 + cn.len() > 65535, "CN left out though it fits");
        }
        None => assert_eq!(sub.len(), 1),
    }
    match identity {
        Some(id) if top.len() == 2 => {
            assert_eq!(top[1].kind, PP2_TYPE_SYMBOLON_IDENTITY);
            assert_eq!(top[1].value, id.as_bytes());
        }
        Some(id) => {
            assert_eq!(top.len(), 1);
            assert!(
                len + 3 + id.len() > 65535,
                "identity left out though it fits"
            );
        }
        None => assert_eq!(top.len(), 1),
    }
}

fuzz_target!(|input: Input| {
    let peer = PeerCert {
        // As `peer_cert` builds it: only a `spiffe://` URI SAN is a SPIFFE ID.
        spiffe_id: input.spiffe_path.as_ref().map(|p| format!("spiffe://{p}")),
        dns: input.dns.clone(),
        uris: input.uris.clone(),
        ips: Vec::new(),
        cn: input.cn.clone(),
        o: Vec::new(),
        ou: Vec::new(),
        subject: input.subject.clone(),
        issuer: String::new(),
        serial: String::new(),
        sha256: hex(&input.hash),
        issuer_sha256: String::new(),
        spki_sha256: String::new(),
        not_before: OffsetDateTime::UNIX_EPOCH,
        not_after: OffsetDateTime::UNIX_EPOCH,
    };
    check_xfcc(&input, &peer);

    // As tcp.rs does: the identity TLV carries the XFCC string.
    let mut long = peer.clone();
    let n = usize::from(input.repeat);
    if n > 1 {
        long.dns = (0..n).flat_map(|_| long.dns.iter().cloned()).collect();
        long.cn = long.cn.iter().map(|c| c.repeat(n)).collect();
    }
    let identity = input.with_peer.then(|| xfcc(input.by.as_deref(), &long));
    check_proxy_v2(&input, &long, identity.as_deref());
});
