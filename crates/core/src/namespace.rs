use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::Identity;

/// The names a CA may certify: its SPIFFE trust domain, DNS suffixes, IP
/// ranges and URI prefixes. Anything else is refused (fail closed).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    /// SPIFFE IDs are permitted when their trust domain is this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
    /// `example.org` permits that exact name; `.example.org` permits every
    /// name below it (and wildcards below it), but not `example.org` itself.
    #[serde(default)]
    pub dns: Vec<String>,
    /// CIDR ranges such as `127.0.0.0/8` or `::1/128`.
    #[serde(default)]
    pub ip: Vec<IpNet>,
    /// Prefixes for non-SPIFFE URI SANs, such as `urn:example:device:`.
    #[serde(default)]
    pub uri: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{identity} is outside the CA's namespace: {why}")]
pub struct NamespaceError {
    pub identity: String,
    pub why: String,
}

impl Namespace {
    pub fn check(&self, id: &Identity) -> Result<(), NamespaceError> {
        let refuse = |why: String| NamespaceError {
            identity: id.to_string(),
            why,
        };
        match id {
            Identity::Spiffe(s) => match &self.trust_domain {
                Some(td) if td == s.trust_domain() => Ok(()),
                Some(td) => Err(refuse(format!(
                    "the CA's trust domain (names.trust_domain in ca.toml) is {td:?}, not {:?}",
                    s.trust_domain()
                ))),
                None => Err(refuse(
                    "the CA has no trust_domain; set [names] trust_domain in ca.toml".into(),
                )),
            },
            Identity::Dns(name) => {
                let (wildcard, base) = match name.strip_prefix("*.") {
                    Some(base) => (true, base),
                    None => (false, name.as_str()),
                };
                let permitted = self.dns.iter().any(|rule| {
                    let rule = rule.to_ascii_lowercase();
                    match rule.strip_prefix('.') {
                        Some(suffix) => {
                            (wildcard && base == suffix) || base.ends_with(&format!(".{suffix}"))
                        }
                        None => !wildcard && base == rule,
                    }
                });
                if permitted {
                    Ok(())
                } else {
                    Err(refuse(format!(
                        "no [names] dns rule in ca.toml permits it (rules: {:?})",
                        self.dns
                    )))
                }
            }
            Identity::Ip(ip) => {
                if self.ip.iter().any(|net| net.contains(*ip)) {
                    Ok(())
                } else {
                    let rules: Vec<String> = self.ip.iter().map(|n| n.to_string()).collect();
                    Err(refuse(format!(
                        "no [names] ip range in ca.toml contains it (ranges: {rules:?})"
                    )))
                }
            }
            Identity::Uri(uri) => {
                if self
                    .uri
                    .iter()
                    .any(|p| !p.is_empty() && uri.starts_with(p.as_str()))
                {
                    Ok(())
                } else {
                    Err(refuse(format!(
                        "no [names] uri prefix in ca.toml matches it (prefixes: {:?})",
                        self.uri
                    )))
                }
            }
        }
    }
}

/// An IP network in CIDR notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bytes: &[u8], prefix: u8) -> Vec<u8> {
            bytes
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let bits = (prefix as usize).saturating_sub(i * 8).min(8);
                    if bits == 0 {
                        0
                    } else {
                        b & (0xffu8 << (8 - bits))
                    }
                })
                .collect()
        }
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(&n.octets(), self.prefix) == masked(&a.octets(), self.prefix)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                masked(&n.octets(), self.prefix) == masked(&a.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid IP range {s:?}; write it like 10.0.0.0/8 or fd00::/8");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = IpAddr::from_str(addr.trim()).map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(IpNet { addr, prefix })
    }
}

impl TryFrom<String> for IpNet {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<IpNet> for String {
    fn from(n: IpNet) -> String {
        n.to_string()
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> Namespace {
        Namespace {
            trust_domain: Some("example.org".into()),
            dns: vec!["example.org".into(), ".svc.example.org".into()],
            ip: vec!["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
            uri: vec!["urn:example:".into()],
        }
    }

    #[test]
    fn permits_only_what_the_rules_name() {
        let ns = ns();
        for ok in [
            Identity::spiffe("spiffe://example.org/api").unwrap(),
            Identity::dns("example.org").unwrap(),
            Identity::dns("a.svc.example.org").unwrap(),
            Identity::dns("*.svc.example.org").unwrap(),
            Identity::dns("*.a.svc.example.org").unwrap(),
            Identity::ip("127.9.9.9").unwrap(),
            Identity::ip("fd12::1").unwrap(),
            Identity::uri("urn:example:dev1").unwrap(),
        ] {
            assert!(ns.check(&ok).is_ok(), "{ok} refused");
        }
        for bad in [
            Identity::spiffe("spiffe://evil.org/api").unwrap(),
            Identity::dns("evil.org").unwrap(),
            Identity::dns("svc.example.org").unwrap(),
            Identity::dns("a.example.org").unwrap(),
            Identity::dns("*.example.org").unwrap(),
            Identity::dns("xsvc.example.org").unwrap(),
            Identity::ip("128.0.0.1").unwrap(),
            Identity::ip("::1").unwrap(),
            Identity::uri("urn:examplex").unwrap(),
        ] {
            let e = ns.check(&bad).unwrap_err();
            assert!(e.to_string().contains("outside"), "{e}");
        }
    }

    #[test]
    fn cidr_parsing_and_matching() {
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nope/8".parse::<IpNet>().is_err());
        let n: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        let one: IpNet = "::1".parse().unwrap();
        assert_eq!(one.to_string(), "::1/128");
        let any: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("8.8.8.8".parse().unwrap()));
    }
}
