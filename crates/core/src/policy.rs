//! Authorization as data: rules that match a verified peer (and, for HTTP,
//! a path and method) and allow or deny.
//!
//! Evaluation, in order of precedence:
//! 1. a matching `enforce` rule with `effect = "deny"` denies;
//! 2. else a matching `audit` deny rule lets the request through, and the
//!    decision carries it so the gateway logs and counts "would deny";
//! 3. else a matching allow rule (either mode) allows;
//! 4. else nothing matched: deny.
//!
//! Only [`Policy::evaluate`] builds a [`Decision`].

use std::sync::Arc;

use time::{OffsetDateTime, UtcOffset, Weekday};

use crate::path::SegmentGlob;
use crate::{PeerCert, dns_name_matches};

/// Resolves a time-zone name (`UTC`, `+02:00`, `Europe/Berlin`) to the UTC
/// offset in force at a given instant. Supplied by the loader, which may
/// read the system's zoneinfo: policy itself does no I/O.
pub trait ZoneResolver: Send + Sync + std::fmt::Debug {
    fn offset_at(&self, at: OffsetDateTime) -> UtcOffset;
}

#[derive(Debug)]
struct FixedZone(UtcOffset);

impl ZoneResolver for FixedZone {
    fn offset_at(&self, _: OffsetDateTime) -> UtcOffset {
        self.0
    }
}

/// Looks up a zone name that is not a fixed offset.
pub type ZoneLookup = dyn Fn(&str) -> Result<Arc<dyn ZoneResolver>, String>;

// === configuration (as written in TOML) ===

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    #[serde(default)]
    pub rule: Vec<RuleConfig>,
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    pub effect: Effect,
    #[serde(default)]
    pub mode: Mode,
    /// SPIFFE ID globs: `*` one path segment, `**` any number.
    #[serde(default)]
    pub spiffe_id: Vec<String>,
    /// DNS SANs; a `*.` pattern matches one label.
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub uri: Vec<String>,
    #[serde(default)]
    pub cn: Vec<String>,
    #[serde(default)]
    pub o: Vec<String>,
    #[serde(default)]
    pub ou: Vec<String>,
    /// SHA-256 fingerprints (hex) of the issuing CA certificate.
    #[serde(default)]
    pub issuer_sha256: Vec<String>,
    /// SPKI pins (`sha256//base64` or bare base64).
    #[serde(default)]
    pub spki_sha256: Vec<String>,
    /// Matches only requests that presented no certificate (permissive mode).
    #[serde(default)]
    pub unauthenticated: bool,
    /// HTTP only: path globs, matched against the normalised path.
    #[serde(default)]
    pub paths: Vec<String>,
    /// HTTP only: methods (upper case).
    #[serde(default)]
    pub methods: Vec<String>,
    pub window: Option<WindowConfig>,
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// `mon` … `sun`; empty means every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// `HH:MM-HH:MM`, end exclusive; may wrap past midnight (`22:00-06:00`).
    pub hours: Option<String>,
    /// `UTC` (default), a fixed offset like `+02:00`, or an IANA name.
    pub time_zone: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("policy.rule[{index}] ({name:?}): {key}: {problem}")]
pub struct PolicyError {
    pub index: usize,
    pub name: String,
    pub key: &'static str,
    pub problem: String,
}

// === compiled policy ===

#[derive(Clone, Debug)]
pub struct Policy {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    name: String,
    effect: Effect,
    mode: Mode,
    spiffe: Vec<SegmentGlob>,
    dns: Vec<String>,
    uri: Vec<String>,
    cn: Vec<String>,
    o: Vec<String>,
    ou: Vec<String>,
    issuer_sha256: Vec<String>,
    spki_sha256: Vec<String>,
    unauthenticated: bool,
    paths: Vec<SegmentGlob>,
    methods: Vec<String>,
    window: Option<Window>,
}

#[derive(Clone, Debug)]
struct Window {
    days: Vec<Weekday>,
    /// Minutes after midnight: [start, end).
    hours: Option<(u16, u16)>,
    zone: Arc<dyn ZoneResolver>,
}

/// What a request looks like to policy.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    /// `None`: no client certificate was presented (permissive mode).
    pub peer: Option<&'a PeerCert>,
    /// The normalised path (HTTP) or `None` (TCP).
    pub path: Option<&'a str>,
    pub method: Option<&'a str>,
    pub now: OffsetDateTime,
}

/// The outcome of evaluating a request. Fields are private: only the policy
/// engine decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    rule: Option<String>,
    would_deny: Option<String>,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The rule that decided; `None` when nothing matched (default deny).
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// An audit-mode deny rule that matched and was not enforced.
    pub fn would_deny(&self) -> Option<&str> {
        self.would_deny.as_deref()
    }

    /// The rule name as reported in logs, metrics and 403 bodies.
    pub fn rule_label(&self) -> &str {
        self.rule.as_deref().unwrap_or("no matching rule")
    }
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    // `then`, not `then_some`: the sum must not be computed for a huge `h`.
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then(|| h * 60 + m)
}

fn parse_day(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return None,
    })
}

/// Parses `UTC`, `Z` or `±HH:MM` without any lookup.
pub fn fixed_offset(name: &str) -> Option<UtcOffset> {
    let n = name.trim();
    if n.eq_ignore_ascii_case("utc") || n == "Z" {
        return Some(UtcOffset::UTC);
    }
    let (sign, rest): (i8, &str) = match n.as_bytes().first()? {
        b'+' => (1, &n[1..]),
        b'-' => (-1, &n[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    // `h` and `m` may carry a sign of their own: "--128:00" must not overflow.
    UtcOffset::from_hms(sign.checked_mul(h)?, sign.checked_mul(m)?, 0).ok()
}

impl Policy {
    /// Validates and compiles rules. `zones` resolves time-zone names that
    /// are not fixed offsets (e.g. IANA names).
    pub fn compile(cfg: &PolicyConfig, zones: &ZoneLookup) -> Result<Policy, PolicyError> {
        let mut rules = Vec::with_capacity(cfg.rule.len());
        let mut names = std::collections::HashSet::new();
        for (index, r) in cfg.rule.iter().enumerate() {
            let err = |key, problem: String| PolicyError {
                index,
                name: r.name.clone(),
                key,
                problem,
            };
            if r.name.trim().is_empty() {
                return Err(err(
                    "name",
                    "every rule needs a name (it appears in logs, metrics and 403 bodies)".into(),
                ));
            }
            if !names.insert(r.name.clone()) {
                return Err(err("name", "another rule has the same name".into()));
            }
            let has_identity = !(r.spiffe_id.is_empty()
                && r.dns.is_empty()
                && r.uri.is_empty()
                && r.cn.is_empty()
                && r.o.is_empty()
                && r.ou.is_empty()
                && r.issuer_sha256.is_empty()
                && r.spki_sha256.is_empty());
            if r.unauthenticated && has_identity {
                return Err(err("unauthenticated", "a rule for requests without a certificate cannot also match certificate fields".into()));
            }
            let mut spiffe = Vec::new();
            for g in &r.spiffe_id {
                let rest = g
                    .strip_prefix("spiffe://")
                    .ok_or_else(|| err("spiffe_id", format!("{g:?} must start with spiffe://")))?;
                let (td, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                if td.is_empty() || td.contains('*') {
                    return Err(err(
                        "spiffe_id",
                        format!(
                            "{g:?}: the trust domain must be written out (globs apply to the path)"
                        ),
                    ));
                }
                spiffe.push(SegmentGlob::new(&format!("spiffe://{td}"), path));
            }
            let mut paths = Vec::new();
            for p in &r.paths {
                if !p.starts_with('/') {
                    return Err(err("paths", format!("{p:?} must start with '/'")));
                }
                let normal =
                    crate::normalize_path(&p.replace("**", "__glob2__").replace('*', "__glob1__"))
                        .map_err(|e| err("paths", format!("{p:?}: {e}")))?
                        .replace("__glob2__", "**")
                        .replace("__glob1__", "*");
                paths.push(SegmentGlob::new("", &normal));
            }
            let methods: Vec<String> = r
                .methods
                .iter()
                .map(|m| m.trim().to_ascii_uppercase())
                .collect();
            if let Some(m) = methods
                .iter()
                .find(|m| m.is_empty() || !m.chars().all(|c| c.is_ascii_uppercase()))
            {
                return Err(err("methods", format!("{m:?} is not an HTTP method")));
            }
            let window = match &r.window {
                None => None,
                Some(w) => {
                    let days = w
                        .days
                        .iter()
                        .map(|d| {
                            parse_day(d).ok_or_else(|| {
                                err("window.days", format!("{d:?} is not a day (mon … sun)"))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let hours = match &w.hours {
                        None => None,
                        Some(h) => {
                            let bad =
                                || err("window.hours", format!("{h:?}: write it as HH:MM-HH:MM"));
                            let (a, b) = h.split_once('-').ok_or_else(bad)?;
                            let (a, b) = (
                                parse_hhmm(a).ok_or_else(bad)?,
                                parse_hhmm(b).ok_or_else(bad)?,
                            );
                            if a == b {
                                return Err(err("window.hours", format!("{h:?} is empty")));
                            }
                            Some((a, b))
                        }
                    };
                    let name = w.time_zone.clone().unwrap_or_else(|| "UTC".into());
                    let zone: Arc<dyn ZoneResolver> = match fixed_offset(&name) {
                        Some(off) => Arc::new(FixedZone(off)),
                        None => zones(&name).map_err(|e| err("window.time_zone", e))?,
                    };
                    Some(Window { days, hours, zone })
                }
            };
            rules.push(Rule {
                name: r.name.clone(),
                effect: r.effect,
                mode: r.mode,
                spiffe,
                dns: r.dns.iter().map(|d| d.to_ascii_lowercase()).collect(),
                uri: r.uri.clone(),
                cn: r.cn.clone(),
                o: r.o.clone(),
                ou: r.ou.clone(),
                issuer_sha256: r
                    .issuer_sha256
                    .iter()
                    .map(|f| f.replace(':', "").to_ascii_lowercase())
                    .collect(),
                spki_sha256: r
                    .spki_sha256
                    .iter()
                    .map(|p| p.trim_start_matches("sha256//").to_string())
                    .collect(),
                unauthenticated: r.unauthenticated,
                paths,
                methods,
                window,
            });
        }
        Ok(Policy { rules })
    }

    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }

    pub fn evaluate(&self, req: &RequestFacts<'_>) -> Decision {
        let matching = || self.rules.iter().filter(|r| r.matches(req));
        let first = |effect, mode: Option<Mode>| {
            matching()
                .find(|r| r.effect == effect && mode.is_none_or(|m| r.mode == m))
                .map(|r| r.name.clone())
        };
        if let Some(rule) = first(Effect::Deny, Some(Mode::Enforce)) {
            return Decision {
                allowed: false,
                rule: Some(rule),
                would_deny: None,
            };
        }
        let would_deny = first(Effect::Deny, Some(Mode::Audit));
        if let Some(rule) = would_deny.clone() {
            return Decision {
                allowed: true,
                rule: Some(rule.clone()),
                would_deny: Some(rule),
            };
        }
        match first(Effect::Allow, None) {
            Some(rule) => Decision {
                allowed: true,
                rule: Some(rule),
                would_deny: None,
            },
            None => Decision {
                allowed: false,
                rule: None,
                would_deny: None,
            },
        }
    }
}

impl Rule {
    fn matches(&self, req: &RequestFacts<'_>) -> bool {
        match req.peer {
            None if !self.unauthenticated => return false,
            Some(_) if self.unauthenticated => return false,
            _ => {}
        }
        if let Some(peer) = req.peer {
            let any = |want: &[String], have: &[String]| {
                want.is_empty() || want.iter().any(|w| have.contains(w))
            };
            if !self.spiffe.is_empty() {
                let Some(id) = &peer.spiffe_id else {
                    return false;
                };
                let rest = &id["spiffe://".len().min(id.len())..];
                let (td, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let prefix = format!("spiffe://{td}");
                if !self.spiffe.iter().any(|g| g.matches(&prefix, path)) {
                    return false;
                }
            }
            if !self.dns.is_empty()
                && !self
                    .dns
                    .iter()
                    .any(|p| peer.dns.iter().any(|d| pattern_covers(p, d)))
            {
                return false;
            }
            if !(any(&self.uri, &peer.uris)
                && any(&self.cn, &peer.cn)
                && any(&self.o, &peer.o)
                && any(&self.ou, &peer.ou)
                && any(
                    &self.issuer_sha256,
                    std::slice::from_ref(&peer.issuer_sha256),
                )
                && any(&self.spki_sha256, std::slice::from_ref(&peer.spki_sha256)))
            {
                return false;
            }
        }
        if !self.paths.is_empty() {
            match req.path {
                Some(p) if self.paths.iter().any(|g| g.matches("", p)) => {}
                _ => return false,
            }
        }
        if !self.methods.is_empty() {
            match req.method {
                Some(m) if self.methods.iter().any(|x| x == m) => {}
                _ => return false,
            }
        }
        if let Some(w) = &self.window {
            let local = req.now.to_offset(w.zone.offset_at(req.now));
            if !w.days.is_empty() && !w.days.contains(&local.weekday()) {
                return false;
            }
            if let Some((a, b)) = w.hours {
                let m = local.hour() as u16 * 60 + local.minute() as u16;
                let inside = if a < b {
                    m >= a && m < b
                } else {
                    m >= a || m < b
                };
                if !inside {
                    return false;
                }
            }
        }
        true
    }
}

/// A rule's DNS pattern against a DNS SAN of the peer. A `*.x` rule covers
/// one label below x, and also a certificate wildcard `*.x` itself.
fn pattern_covers(pattern: &str, san: &str) -> bool {
    pattern.eq_ignore_ascii_case(san) || (!san.starts_with("*.") && dns_name_matches(pattern, san))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(spiffe: &str) -> PeerCert {
        PeerCert {
            spiffe_id: Some(spiffe.to_string()),
            dns: vec!["api.svc.example.org".into()],
            uris: vec![spiffe.to_string()],
            ips: vec![],
            cn: vec!["api".into()],
            o: vec!["Acme".into()],
            ou: vec!["payments".into()],
            subject: "CN=api".into(),
            issuer: "CN=Int".into(),
            serial: "01".into(),
            sha256: "aa".into(),
            issuer_sha256: "bb".into(),
            spki_sha256: "cGlu".into(),
            not_before: OffsetDateTime::UNIX_EPOCH,
            not_after: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn policy(toml_rules: &str) -> Policy {
        let cfg: PolicyConfig = toml::from_str(toml_rules).unwrap();
        Policy::compile(&cfg, &|n| Err(format!("unknown zone {n}"))).unwrap()
    }

    fn facts<'a>(
        p: Option<&'a PeerCert>,
        path: Option<&'a str>,
        method: Option<&'a str>,
    ) -> RequestFacts<'a> {
        RequestFacts {
            peer: p,
            path,
            method,
            now: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn deny_beats_allow_and_nothing_matching_denies() {
        let p = policy(
            r#"
            [[rule]]
            name = "web"
            effect = "allow"
            spiffe_id = ["spiffe://example.org/ns/*/sa/web"]
            [[rule]]
            name = "no-admin"
            effect = "deny"
            paths = ["/admin/**"]
            [[rule]]
            name = "all-prod"
            effect = "allow"
            spiffe_id = ["spiffe://example.org/ns/prod/**"]
            "#,
        );
        let web = peer("spiffe://example.org/ns/prod/sa/web");
        let d = p.evaluate(&facts(Some(&web), Some("/x"), Some("GET")));
        assert!(d.is_allowed());
        assert_eq!(d.rule(), Some("web"));
        let d = p.evaluate(&facts(Some(&web), Some("/admin/users"), Some("GET")));
        assert!(!d.is_allowed());
        assert_eq!(d.rule(), Some("no-admin"));
        let other = peer("spiffe://evil.org/ns/prod/sa/web");
        let d = p.evaluate(&facts(Some(&other), Some("/x"), None));
        assert!(!d.is_allowed());
        assert_eq!(d.rule(), None);
        assert_eq!(d.rule_label(), "no matching rule");
        // `*` is exactly one segment, `**` any number.
        let deep = peer("spiffe://example.org/ns/prod/team/sa/web");
        assert_eq!(
            p.evaluate(&facts(Some(&deep), None, None)).rule(),
            Some("all-prod")
        );
        let staging = peer("spiffe://example.org/ns/staging/team/sa/web");
        assert!(!p.evaluate(&facts(Some(&staging), None, None)).is_allowed());
    }

    #[test]
    fn unauthenticated_requests_match_only_rules_that_say_so() {
        let p = policy(
            r#"
            [[rule]]
            name = "any-cert"
            effect = "allow"
            [[rule]]
            name = "public-health"
            effect = "allow"
            unauthenticated = true
            paths = ["/healthz"]
            "#,
        );
        assert!(
            p.evaluate(&facts(None, Some("/healthz"), Some("GET")))
                .is_allowed()
        );
        assert!(
            !p.evaluate(&facts(None, Some("/data"), Some("GET")))
                .is_allowed()
        );
        let web = peer("spiffe://example.org/web");
        assert_eq!(
            p.evaluate(&facts(Some(&web), Some("/data"), None)).rule(),
            Some("any-cert")
        );
    }

    #[test]
    fn audit_deny_rules_count_without_denying() {
        let p = policy(
            r#"
            [[rule]]
            name = "allow-all"
            effect = "allow"
            [[rule]]
            name = "future-no-delete"
            effect = "deny"
            mode = "audit"
            methods = ["DELETE"]
            "#,
        );
        let web = peer("spiffe://example.org/web");
        let d = p.evaluate(&facts(Some(&web), Some("/x"), Some("DELETE")));
        assert!(d.is_allowed());
        assert_eq!(d.would_deny(), Some("future-no-delete"));
        let d = p.evaluate(&facts(Some(&web), Some("/x"), Some("GET")));
        assert!(d.is_allowed());
        assert_eq!(d.would_deny(), None);
    }

    #[test]
    fn every_certificate_field_can_be_matched() {
        let web = peer("spiffe://example.org/web");
        for (field, value, hit) in [
            ("dns", "*.svc.example.org", true),
            ("dns", "*.example.org", false),
            ("uri", "spiffe://example.org/web", true),
            ("cn", "api", true),
            ("cn", "API", false),
            ("o", "Acme", true),
            ("ou", "payments", true),
            ("ou", "other", false),
            ("issuer_sha256", "BB", true),
            ("spki_sha256", "sha256//cGlu", true),
            ("spki_sha256", "bm9wZQ==", false),
        ] {
            let p = policy(&format!(
                "[[rule]]\nname = \"r\"\neffect = \"allow\"\n{field} = [\"{value}\"]\n"
            ));
            assert_eq!(
                p.evaluate(&facts(Some(&web), None, None)).is_allowed(),
                hit,
                "{field} = {value}"
            );
        }
        // Path and method rules never match a TCP connection (no path).
        let p = policy("[[rule]]\nname = \"r\"\neffect = \"allow\"\npaths = [\"/**\"]\n");
        assert!(!p.evaluate(&facts(Some(&web), None, None)).is_allowed());
    }

    #[test]
    fn time_windows_use_the_zone() {
        let p = policy(
            r#"
            [[rule]]
            name = "office-hours"
            effect = "allow"
            window = { days = ["mon", "tue", "wed", "thu", "fri"], hours = "09:00-17:00", time_zone = "+02:00" }
            "#,
        );
        let web = peer("spiffe://example.org/web");
        let at = |s: &str| {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
        };
        let eval = |now| {
            p.evaluate(&RequestFacts {
                peer: Some(&web),
                path: None,
                method: None,
                now,
            })
            .is_allowed()
        };
        assert!(eval(at("2026-11-25T07:30:00Z"))); // Wed 09:30 at +02:00
        assert!(!eval(at("2026-11-25T06:30:00Z"))); // 08:30 local
        assert!(!eval(at("2026-11-25T15:00:00Z"))); // 17:00 local: end exclusive
        assert!(!eval(at("2026-11-28T10:00:00Z"))); // Saturday
    }

    #[test]
    fn window_hours_with_a_huge_hour_do_not_overflow() {
        // Found by fuzz/fuzz_targets/policy.rs: `then_some(h * 60 + m)`
        // computed 1709 * 60 in u16 before the range check could refuse it.
        let cfg: PolicyConfig = toml::from_str(
            "[[rule]]\nname=\"u\"\neffect=\"allow\"\nwindow={hours=\"0:0-1709:0\"}\n",
        )
        .unwrap();
        let e = Policy::compile(&cfg, &|n| Err(format!("unknown time zone {n:?}"))).unwrap_err();
        assert_eq!(e.key, "window.hours");
        assert_eq!(parse_hhmm("65535:59"), None);
        assert_eq!(parse_hhmm("24:00"), Some(24 * 60));
    }

    #[test]
    fn fixed_offset_with_a_doubled_sign_does_not_overflow() {
        // `-1 * -128` overflowed i8 (a panic in debug builds) for
        // `time_zone = "--128:00"`; now it is simply not a fixed offset.
        assert_eq!(fixed_offset("--128:00"), None);
        assert_eq!(fixed_offset("-02:-128"), None);
        assert_eq!(fixed_offset("-05:30"), UtcOffset::from_hms(-5, -30, 0).ok());
        let cfg: PolicyConfig = toml::from_str(
            "[[rule]]\nname = \"a\"\neffect = \"allow\"\nwindow = { time_zone = \"--128:00\" }\n",
        )
        .unwrap();
        let e = Policy::compile(&cfg, &|n| Err(format!("unknown time zone {n:?}"))).unwrap_err();
        assert_eq!(e.key, "window.time_zone");
    }

    #[test]
    fn bad_rules_name_the_rule_and_key() {
        for (rules, key) in [
            ("[[rule]]\nname = \"\"\neffect = \"allow\"\n", "name"),
            (
                "[[rule]]\nname = \"a\"\neffect = \"allow\"\n[[rule]]\nname = \"a\"\neffect = \"deny\"\n",
                "name",
            ),
            (
                "[[rule]]\nname = \"a\"\neffect = \"allow\"\nspiffe_id = [\"https://x\"]\n",
                "spiffe_id",
            ),
            (
                "[[rule]]\nname = \"a\"\neffect = \"allow\"\npaths = [\"admin\"]\n",
                "paths",
            ),
            (
                "[[rule]]\nname = \"a\"\neffect = \"allow\"\nmethods = [\"G T\"]\n",
                "methods",
            ),
            (
                "[[rule]]\nname = \"a\"\neffect = \"allow\"\nunauthenticated = true\ncn = [\"x\"]\n",
                "unauthenticated",
            ),
            (
                "[[rule]]\nname = \"a\"\neffect = \"allow\"\nwindow = { hours = \"9-5\" }\n",
                "window.hours",
            ),
            (
                "[[rule]]\nname = \"a\"\neffect = \"allow\"\nwindow = { days = [\"funday\"] }\n",
                "window.days",
            ),
            (
                "[[rule]]\nname = \"a\"\neffect = \"allow\"\nwindow = { time_zone = \"Mars/Olympus\" }\n",
                "window.time_zone",
            ),
        ] {
            let cfg: PolicyConfig = toml::from_str(rules).unwrap();
            let e =
                Policy::compile(&cfg, &|n| Err(format!("unknown time zone {n:?}"))).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.to_string().starts_with("policy.rule["), "{e}");
        }
    }
}
