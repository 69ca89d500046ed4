//! Policy rules: `PolicyConfig` (TOML text, or rules built field by field
//! from a small vocabulary so that rules and facts meet) → `Policy::compile`
//! → `evaluate` with facts from the input.
//!
//! Properties (all follow from the documented precedence in policy.rs):
//! - evaluation is deterministic;
//! - an empty policy never allows;
//! - a request with no certificate is only allowed when some rule says
//!   `unauthenticated = true`;
//! - the decision is self-consistent: allowed ⇒ a rule is named; an audit
//!   "would deny" ⇒ allowed and that rule decided; denied by a rule ⇒ that
//!   rule is an enforced deny rule; allowed by a rule with no would-deny ⇒
//!   an allow rule;
//! - whether a request is allowed does not depend on rule order;
//! - keeping only the enforced deny rules never allows anything;
//! - adding enforced deny-everything rules denies everything.
#![no_main]

use std::sync::Arc;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use symbolon_core::policy::{
    Effect, Mode, PolicyConfig, RuleConfig, WindowConfig, ZoneLookup, ZoneResolver,
};
use symbolon_core::{PeerCert, Policy, RequestFacts};
use time::{OffsetDateTime, UtcOffset};

/// A pure stand-in for the gateway's zoneinfo lookup: one named zone.
#[derive(Debug)]
struct Plus90;

impl ZoneResolver for Plus90 {
    fn offset_at(&self, _: OffsetDateTime) -> UtcOffset {
        UtcOffset::from_hms(1, 30, 0).unwrap_or(UtcOffset::UTC)
    }
}

fn zones(name: &str) -> Result<Arc<dyn ZoneResolver>, String> {
    if name == "Fuzz/Plus90" {
        Ok(Arc::new(Plus90))
    } else {
        Err(format!("unknown zone {name:?}"))
    }
}

const ZONES: &ZoneLookup = &zones;

const WORDS: &[&str] = &[
    "spiffe://example.org/ns/prod/sa/web",
    "spiffe://example.org/ns/*/sa/web",
    "spiffe://example.org/**",
    "spiffe://example.org/ns/prod/**",
    "spiffe://evil.org/ns/prod/sa/web",
    "web.example.org",
    "*.example.org",
    "*.svc.example.org",
    "api.svc.example.org",
    "api",
    "Acme",
    "payments",
    "aabbcc",
    "AA:BB:CC",
    "sha256//cGlu",
    "cGlu",
    "/",
    "/admin/**",
    "/admin/*",
    "/healthz",
    "/a/",
    "/a/./b/../c",
    "/%2e%2e/admin",
    "GET",
    "post",
    "DELETE",
    "mon",
    "Saturday",
    "09:00-17:00",
    "22:00-06:00",
    "00:00-24:00",
    "UTC",
    "+02:00",
    "-05:30",
    "Z",
    "Fuzz/Plus90",
    "Europe/Nowhere",
];

fn word(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    if u.ratio(3, 4)? {
        Ok((*u.choose(WORDS)?).to_string())
    } else {
        u.arbitrary()
    }
}

fn words(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<String>> {
    let n = if u.ratio(1, 2)? {
        0
    } else {
        u.int_in_range(1..=3)?
    };
    (0..n).map(|_| word(u)).collect()
}

fn rule(u: &mut Unstructured<'_>, i: usize) -> arbitrary::Result<RuleConfig> {
    Ok(RuleConfig {
        name: if u.ratio(7, 8)? {
            format!("r{i}")
        } else {
            word(u)?
        },
        effect: if u.arbitrary()? {
            Effect::Allow
        } else {
            Effect::Deny
        },
        mode: if u.ratio(1, 4)? {
            Mode::Audit
        } else {
            Mode::Enforce
        },
        spiffe_id: words(u)?,
        dns: words(u)?,
        uri: words(u)?,
        cn: words(u)?,
        o: words(u)?,
        ou: words(u)?,
        issuer_sha256: words(u)?,
        spki_sha256: words(u)?,
        unauthenticated: u.ratio(1, 4)?,
        paths: words(u)?,
        methods: words(u)?,
        window: if u.ratio(1, 4)? {
            Some(WindowConfig {
                days: words(u)?,
                hours: u.arbitrary::<bool>()?.then(|| word(u)).transpose()?,
                time_zone: u.arbitrary::<bool>()?.then(|| word(u)).transpose()?,
            })
        } else {
            None
        },
    })
}

fn structured(u: &mut Unstructured<'_>) -> arbitrary::Result<PolicyConfig> {
    let n = u.int_in_range(0..=6)?;
    Ok(PolicyConfig {
        rule: (0..n).map(|i| rule(u, i)).collect::<Result<_, _>>()?,
    })
}

/// Facts as the gateway builds them: a SPIFFE ID only from a `spiffe://`
/// URI SAN, DNS SANs lower-cased, hex fingerprints.
fn peer(u: &mut Unstructured<'_>) -> arbitrary::Result<PeerCert> {
    let mut uris = words(u)?;
    let spiffe_id = if u.ratio(3, 4)? {
        let w = word(u)?;
        let id = if w.starts_with("spiffe://") {
            w
        } else {
            format!("spiffe://{w}")
        };
        uris.insert(0, id.clone());
        Some(id)
    } else {
        None
    };
    Ok(PeerCert {
        spiffe_id,
        dns: words(u)?.iter().map(|d| d.to_ascii_lowercase()).collect(),
        uris,
        ips: Vec::new(),
        cn: words(u)?,
        o: words(u)?,
        ou: words(u)?,
        subject: word(u)?,
        issuer: word(u)?,
        serial: "01".into(),
        sha256: "00".into(),
        issuer_sha256: word(u)?.replace(':', "").to_ascii_lowercase(),
        spki_sha256: word(u)?,
        not_before: OffsetDateTime::UNIX_EPOCH,
        not_after: OffsetDateTime::UNIX_EPOCH,
    })
}

struct Facts {
    peer: Option<PeerCert>,
    path: Option<String>,
    method: Option<String>,
    now: OffsetDateTime,
}

fn facts(u: &mut Unstructured<'_>) -> arbitrary::Result<Facts> {
    let peer = if u.ratio(3, 4)? { Some(peer(u)?) } else { None };
    let path = if u.ratio(3, 4)? {
        let p = word(u)?;
        // The gateway hands policy the normalised path.
        Some(symbolon_core::normalize_path(&p).unwrap_or(p))
    } else {
        None
    };
    let method = u.arbitrary::<bool>()?.then(|| word(u)).transpose()?;
    // 1970 … 2100, to the second.
    let secs = u.int_in_range(0..=4_102_444_800i64)?;
    let now = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Ok(Facts {
        peer,
        path,
        method,
        now,
    })
}

fn check(cfg: &PolicyConfig, f: &Facts) {
    let Ok(policy) = Policy::compile(cfg, ZONES) else {
        return;
    };
    let req = RequestFacts {
        peer: f.peer.as_ref(),
        path: f.path.as_deref(),
        method: f.method.as_deref(),
        now: f.now,
    };
    let d = policy.evaluate(&req);
    assert_eq!(d, policy.evaluate(&req), "evaluate is not deterministic");

    let by_name = |n: &str| cfg.rule.iter().find(|r| r.name == n);
    if cfg.rule.is_empty() {
        assert!(!d.is_allowed() && d.rule().is_none());
    }
    if f.peer.is_none() && !cfg.rule.iter().any(|r| r.unauthenticated) {
        assert!(
            !d.is_allowed(),
            "no certificate, no unauthenticated rule: {d:?}"
        );
    }
    if d.is_allowed() {
        let r = by_name(d.rule().expect("allowed without a rule")).expect("unknown rule");
        match d.would_deny() {
            Some(w) => {
                assert_eq!(Some(w), d.rule());
                assert_eq!((r.effect, r.mode), (Effect::Deny, Mode::Audit));
            }
            None => assert_eq!(r.effect, Effect::Allow),
        }
    } else {
        assert!(d.would_deny().is_none());
        if let Some(n) = d.rule() {
            let r = by_name(n).expect("unknown rule");
            assert_eq!((r.effect, r.mode), (Effect::Deny, Mode::Enforce));
        }
    }

    // Order does not change the outcome (only which rule is named).
    let mut reversed = cfg.clone();
    reversed.rule.reverse();
    let p = Policy::compile(&reversed, ZONES).expect("reordered rules compile");
    let r = p.evaluate(&req);
    assert_eq!(r.is_allowed(), d.is_allowed(), "rule order matters");
    assert_eq!(r.would_deny().is_some(), d.would_deny().is_some());

    // Enforced deny rules alone never allow.
    let mut denies = cfg.clone();
    denies
        .rule
        .retain(|r| r.effect == Effect::Deny && r.mode == Mode::Enforce);
    let p = Policy::compile(&denies, ZONES).expect("a subset of rules compiles");
    assert!(!p.evaluate(&req).is_allowed(), "deny-only policy allowed");

    // Deny-everything rules win over anything.
    let mut locked = cfg.clone();
    for (name, unauthenticated) in [("\0deny-certs", false), ("\0deny-anonymous", true)] {
        let r = RuleConfig {
            name: name.into(),
            effect: Effect::Deny,
            mode: Mode::Enforce,
            spiffe_id: vec![],
            dns: vec![],
            uri: vec![],
            cn: vec![],
            o: vec![],
            ou: vec![],
            issuer_sha256: vec![],
            spki_sha256: vec![],
            unauthenticated,
            paths: vec![],
            methods: vec![],
            window: None,
        };
        locked.rule.push(r);
    }
    if let Ok(p) = Policy::compile(&locked, ZONES) {
        let l = p.evaluate(&req);
        assert!(!l.is_allowed(), "deny-everything policy allowed: {l:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    // TOML text (the checked-in seeds), facts after a NUL; or, when the
    // bytes are not a policy in TOML, rules built from the bytes.
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (text, rest) = data.split_at(split);
    let from_toml = std::str::from_utf8(text)
        .ok()
        .and_then(|t| toml::from_str::<PolicyConfig>(t).ok());
    let (cfg, mut u) = match from_toml {
        Some(cfg) => (cfg, Unstructured::new(rest)),
        None => {
            let mut u = Unstructured::new(data);
            let Ok(cfg) = structured(&mut u) else {
                return;
            };
            (cfg, u)
        }
    };
    // Up to four requests against the same policy.
    for _ in 0..4 {
        let Ok(f) = facts(&mut u) else {
            return;
        };
        check(&cfg, &f);
        if u.is_empty() {
            break;
        }
    }
});
