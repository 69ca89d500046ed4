use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A name a certificate can be issued for or checked against.
///
/// Names are only ever taken from subjectAltName entries: the subject CN is
/// never treated as an identity (RFC 6125 deprecated that, and a CN can hold
/// anything).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Identity {
    Spiffe(SpiffeId),
    Dns(String),
    Ip(IpAddr),
    Uri(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("invalid SPIFFE ID {input:?}: {problem}")]
    Spiffe {
        input: String,
        problem: &'static str,
    },
    #[error("invalid DNS name {input:?}: {problem}")]
    Dns {
        input: String,
        problem: &'static str,
    },
    #[error("invalid IP address {input:?}")]
    Ip { input: String },
    #[error("invalid URI {input:?}: {problem}")]
    Uri {
        input: String,
        problem: &'static str,
    },
}

impl Identity {
    pub fn spiffe(s: &str) -> Result<Self, IdentityError> {
        SpiffeId::parse(s).map(Identity::Spiffe)
    }

    /// A DNS name, lower-cased; a `*.` wildcard is allowed as the leftmost label.
    pub fn dns(s: &str) -> Result<Self, IdentityError> {
        validate_dns(s, true).map(Identity::Dns)
    }

    pub fn ip(s: &str) -> Result<Self, IdentityError> {
        IpAddr::from_str(s.trim())
            .map(Identity::Ip)
            .map_err(|_| IdentityError::Ip {
                input: s.to_string(),
            })
    }

    /// A URI SAN; `spiffe://` URIs become SPIFFE IDs and follow their rules.
    pub fn uri(s: &str) -> Result<Self, IdentityError> {
        if s.to_ascii_lowercase().starts_with("spiffe://") {
            return Self::spiffe(s);
        }
        let err = |problem| IdentityError::Uri {
            input: s.to_string(),
            problem,
        };
        let Some((scheme, rest)) = s.split_once(':') else {
            return Err(err("it has no scheme (like https:)"));
        };
        let scheme_ok = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !scheme_ok {
            return Err(err("the scheme is not valid"));
        }
        if rest.is_empty() {
            return Err(err("nothing follows the scheme"));
        }
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(err("it contains spaces or control characters"));
        }
        Ok(Identity::Uri(s.to_string()))
    }

    /// The kind as written in config and output: `spiffe`, `dns`, `ip`, `uri`.
    pub fn kind(&self) -> &'static str {
        match self {
            Identity::Spiffe(_) => "spiffe",
            Identity::Dns(_) => "dns",
            Identity::Ip(_) => "ip",
            Identity::Uri(_) => "uri",
        }
    }
}

/// Parses the displayed form back: `spiffe://…`, `DNS:…`, `IP:…`, `URI:…`.
impl FromStr for Identity {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, IdentityError> {
        if let Some(d) = s.strip_prefix("DNS:") {
            Identity::dns(d)
        } else if let Some(ip) = s.strip_prefix("IP:") {
            Identity::ip(ip)
        } else if let Some(u) = s.strip_prefix("URI:") {
            Identity::uri(u)
        } else {
            Identity::spiffe(s)
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Spiffe(id) => write!(f, "{id}"),
            Identity::Dns(n) => write!(f, "DNS:{n}"),
            Identity::Ip(ip) => write!(f, "IP:{ip}"),
            Identity::Uri(u) => write!(f, "URI:{u}"),
        }
    }
}

/// A SPIFFE ID: `spiffe://trust-domain/path`, validated per the SPIFFE ID spec.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(into = "String")]
pub struct SpiffeId {
    trust_domain: String,
    path: String,
}

impl SpiffeId {
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let err = |problem| IdentityError::Spiffe {
            input: s.to_string(),
            problem,
        };
        if s.len() > 2048 {
            return Err(err("longer than 2048 bytes"));
        }
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| err("it must start with spiffe:// (lower case)"))?;
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if td.is_empty() {
            return Err(err("the trust domain is empty"));
        }
        if !td
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c))
        {
            return Err(err(
                "the trust domain may hold only a-z, 0-9, '.', '-' and '_' (no port, user or upper case)",
            ));
        }
        if !path.is_empty() {
            for seg in path[1..].split('/') {
                if seg.is_empty() {
                    return Err(err("the path has an empty segment or a trailing '/'"));
                }
                if seg == "." || seg == ".." {
                    return Err(err("the path has a '.' or '..' segment"));
                }
                if !seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
                {
                    return Err(err(
                        "path segments may hold only A-Z, a-z, 0-9, '.', '-' and '_' (no query or fragment)",
                    ));
                }
            }
        }
        Ok(SpiffeId {
            trust_domain: td.to_string(),
            path: path.to_string(),
        })
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}{}", self.trust_domain, self.path)
    }
}

impl From<SpiffeId> for String {
    fn from(id: SpiffeId) -> String {
        id.to_string()
    }
}

/// Validates a DNS name (RFC 1123 labels) and returns it lower-cased.
fn validate_dns(s: &str, allow_wildcard: bool) -> Result<String, IdentityError> {
    let err = |problem| IdentityError::Dns {
        input: s.to_string(),
        problem,
    };
    let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    if name.is_empty() {
        return Err(err("it is empty"));
    }
    if name.len() > 253 {
        return Err(err("longer than 253 characters"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        if *label == "*" && i == 0 && allow_wildcard {
            if labels.len() < 3 {
                return Err(err(
                    "a wildcard needs at least two labels after it (*.example.org)",
                ));
            }
            continue;
        }
        if label.is_empty() {
            return Err(err("it has an empty label"));
        }
        if label.len() > 63 {
            return Err(err("a label is longer than 63 characters"));
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(
                "labels may hold only a-z, 0-9, '-' and '_' ('*' only as the whole first label)",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(err("a label starts or ends with '-'"));
        }
    }
    Ok(name)
}

/// Matches a presented DNS name from a certificate (which may be a `*.`
/// wildcard covering exactly one label) against a reference name.
pub fn dns_name_matches(presented: &str, reference: &str) -> bool {
    let presented = presented.strip_suffix('.').unwrap_or(presented);
    let reference = reference.strip_suffix('.').unwrap_or(reference);
    if let Some(suffix) = presented.strip_prefix("*.") {
        // The wildcard stands for one whole, non-empty label, never a dot.
        match reference.split_once('.') {
            Some((first, rest)) => !first.is_empty() && rest.eq_ignore_ascii_case(suffix),
            None => false,
        }
    } else {
        presented.eq_ignore_ascii_case(reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_follow_the_spec() {
        let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/api").unwrap();
        assert_eq!(id.trust_domain(), "example.org");
        assert_eq!(id.path(), "/ns/prod/sa/api");
        assert_eq!(id.to_string(), "spiffe://example.org/ns/prod/sa/api");
        for bad in [
            "https://example.org/x",
            "SPIFFE://example.org/x",
            "spiffe://",
            "spiffe://Example.org/x",
            "spiffe://example.org:443/x",
            "spiffe://user@example.org/x",
            "spiffe://example.org/a//b",
            "spiffe://example.org/a/",
            "spiffe://example.org/a/../b",
            "spiffe://example.org/a?x=1",
            "spiffe://example.org/a#f",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn dns_names_are_validated_and_lowercased() {
        assert_eq!(
            Identity::dns("API.Example.org.").unwrap(),
            Identity::Dns("api.example.org".into())
        );
        assert!(Identity::dns("*.example.org").is_ok());
        for bad in [
            "",
            "a..b",
            "-a.b",
            "a b.c",
            "*.org",
            "a.*.b.c",
            "x\0.example.org",
            &"a".repeat(64),
        ] {
            assert!(Identity::dns(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn uris_need_a_scheme_and_spiffe_uris_are_spiffe_ids() {
        assert!(matches!(
            Identity::uri("spiffe://td/x").unwrap(),
            Identity::Spiffe(_)
        ));
        assert!(matches!(
            Identity::uri("urn:uuid:1234").unwrap(),
            Identity::Uri(_)
        ));
        assert!(Identity::uri("no-scheme").is_err());
        assert!(Identity::uri("https://a b").is_err());
    }

    #[test]
    fn wildcards_cover_exactly_one_label() {
        assert!(dns_name_matches("*.example.org", "api.example.org"));
        assert!(dns_name_matches("API.example.org", "api.EXAMPLE.org"));
        assert!(!dns_name_matches("*.example.org", "example.org"));
        assert!(!dns_name_matches("*.example.org", "a.b.example.org"));
        assert!(!dns_name_matches("*.example.org", ".example.org"));
        assert!(!dns_name_matches("api.example.org", "*.example.org"));
    }
}
