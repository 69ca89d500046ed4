//! `/ui/trust`: the CA's chain (root → intermediate → issued leaves) and
//! which CA bundles each reporting gateway trusts for its clients.

use std::fmt::Write as _;

use time::OffsetDateTime;

use super::html::{self, Nav, Page, esc};
use super::overview::Counts;
use super::{Admitted, AppState, Screen, UiError};

#[derive(Debug, serde::Serialize)]
pub struct Node {
    pub subject: String,
    pub sha256_fingerprint: String,
    pub not_after: String,
}

#[derive(Debug, serde::Serialize)]
pub struct Bundle {
    pub sha256_fingerprint: String,
    pub subject: String,
    /// `root` or `intermediate` when it is this CA's; None for another CA.
    pub matches: Option<&'static str>,
}

#[derive(Debug, serde::Serialize)]
pub struct Gateway {
    pub gateway: String,
    pub service: String,
    pub last_seen: String,
    /// Whether any bundle it trusts is this CA's: a gateway that does not
    /// cannot accept this CA's clients.
    pub trusts_this_ca: bool,
    pub trust: Vec<Bundle>,
}

#[derive(Debug, serde::Serialize)]
pub struct Trust {
    pub root: Node,
    pub intermediate: Node,
    /// Leaves issued by this CA, by status.
    pub leaves: Counts,
    pub gateways: Vec<Gateway>,
}

fn node(der: &[u8], now: OffsetDateTime) -> Node {
    let d = symbolon_pki::describe_certificate(der, now);
    Node {
        subject: d.as_ref().map(|d| d.subject.clone()).unwrap_or_default(),
        sha256_fingerprint: symbolon_pki::sha256_hex(der),
        not_after: d.map(|d| d.not_after).unwrap_or_default(),
    }
}

/// A gateway's trust line, `sha256 subject`, matched against this CA.
/// Fingerprints are compared as hex digits only, so `AB:CD…` matches.
fn bundle(line: &str, root: &Node, intermediate: &Node) -> Bundle {
    let (fp, subject) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
    let norm: String = fp
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let matches = if norm == root.sha256_fingerprint {
        Some("root")
    } else if norm == intermediate.sha256_fingerprint {
        Some("intermediate")
    } else {
        None
    };
    Bundle {
        sha256_fingerprint: fp.to_string(),
        subject: subject.trim().to_string(),
        matches,
    }
}

impl Screen for Trust {
    type Params = ();

    async fn load(state: &AppState, _: &Admitted, (): ()) -> Result<Trust, UiError> {
        let now = OffsetDateTime::now_utc();
        let root = node(&state.auth.root, now);
        let intermediate = node(state.auth.issuer.certificate(), now);
        let leaves = state.auth.store.status_counts(now).await?.into();
        let gateways = state
            .auth
            .store
            .gateways()
            .await?
            .into_iter()
            .map(|g| {
                let trust: Vec<Bundle> = g
                    .trust
                    .iter()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| bundle(l, &root, &intermediate))
                    .collect();
                Gateway {
                    gateway: g.gateway,
                    service: g.service,
                    last_seen: html::time(g.last_seen),
                    trusts_this_ca: trust.iter().any(|b| b.matches.is_some()),
                    trust,
                }
            })
            .collect();
        Ok(Trust {
            root,
            intermediate,
            leaves,
            gateways,
        })
    }

    fn render(&self) -> Page {
        let mut body = graph(self);
        let _ = write!(
            body,
            "<h2>This CA</h2><table id=\"ca\"><tr><th></th><th>subject</th><th>SHA-256</th>\
             <th>not after</th></tr><tr><th>root</th><td>{}</td><td class=\"mono\">{}</td><td>{}</td></tr>\
             <tr><th>intermediate</th><td>{}</td><td class=\"mono\">{}</td><td>{}</td></tr></table>",
            esc(&self.root.subject),
            esc(&self.root.sha256_fingerprint),
            esc(&self.root.not_after),
            esc(&self.intermediate.subject),
            esc(&self.intermediate.sha256_fingerprint),
            esc(&self.intermediate.not_after),
        );
        body.push_str("<h2>Gateways</h2>");
        if self.gateways.is_empty() {
            body.push_str(
                "<p>No gateway has reported yet. Gateways report what they trust with \
                 their telemetry.</p>",
            );
        } else {
            body.push_str(
                "<table id=\"gateways\"><tr><th>gateway</th><th>service</th><th>last seen</th>\
                 <th>trusts (client CAs)</th></tr>",
            );
            for g in &self.gateways {
                let _ = write!(
                    body,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><ul>",
                    esc(&g.gateway),
                    esc(&g.service),
                    esc(&g.last_seen)
                );
                for b in &g.trust {
                    let badge = match b.matches {
                        Some(which) => format!("<span class=\"badge ok\">this CA's {which}</span>"),
                        None => "<span class=\"badge warn\">another CA</span>".into(),
                    };
                    let _ = write!(
                        body,
                        "<li>{badge} {} <span class=\"mono\">{}</span></li>",
                        esc(&b.subject),
                        esc(&b.sha256_fingerprint)
                    );
                }
                if g.trust.is_empty() {
                    body.push_str("<li>(nothing reported)</li>");
                }
                if !g.trusts_this_ca {
                    body.push_str(
                        "<li><span class=\"badge bad\">trusts neither this CA's root nor its \
                         intermediate: its clients cannot use this CA's certificates</span></li>",
                    );
                }
                body.push_str("</ul></td></tr>");
            }
            body.push_str("</table>");
        }
        Page {
            title: "Trust".into(),
            nav: Nav::Trust,
            json: Some("/ui/api/trust".into()),
            body,
        }
    }
}

// Diagram geometry (SVG user units).
const BOX_W: f64 = 250.0;
const BOX_H: f64 = 58.0;
const COLS: [f64; 3] = [20.0, 330.0, 640.0];
const GW_TOP: f64 = 140.0;
const GW_ROW: f64 = 76.0;
/// Gateways drawn; the table below lists all of them.
const GW_DRAWN: usize = 12;

/// Text cut to fit a box (by characters, not bytes).
fn fit(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn boxed(out: &mut String, class: &str, x: f64, y: f64, lines: &[&str], full: &str) {
    let _ = write!(
        out,
        "<g><title>{}</title><rect class=\"{class}\" x=\"{x}\" y=\"{y}\" width=\"{BOX_W}\" \
         height=\"{BOX_H}\" rx=\"6\"/>",
        esc(full)
    );
    for (i, l) in lines.iter().enumerate() {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\">{}</text>",
            x + 10.0,
            y + 18.0 + 16.0 * i as f64,
            esc(&fit(l, 38))
        );
    }
    out.push_str("</g>");
}

/// Root → intermediate → leaves across the top; gateways below, with a
/// line to each of this CA's certificates they trust.
fn graph(t: &Trust) -> String {
    let drawn = t.gateways.len().min(GW_DRAWN);
    let rows = drawn.div_ceil(3);
    let height = GW_TOP + rows as f64 * GW_ROW + 10.0;
    let width = COLS[2] + BOX_W + 20.0;
    let mut svg = format!(
        "<svg id=\"trust-graph\" role=\"img\" aria-label=\"trust graph\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\">"
    );
    let mid = 20.0 + BOX_H / 2.0;
    for x in [COLS[0] + BOX_W, COLS[1] + BOX_W] {
        let _ = write!(
            svg,
            "<path class=\"edge\" d=\"M{x} {mid} H{}\"/>\
             <path class=\"arrow\" d=\"M{} {} l-8 -5 v10 z\"/>",
            x + 60.0,
            x + 60.0,
            mid
        );
    }
    let leaves = format!(
        "{} active, {} expiring ≤7d",
        t.leaves.active, t.leaves.expiring_7d
    );
    let gone = format!("{} expired, {} revoked", t.leaves.expired, t.leaves.revoked);
    boxed(
        &mut svg,
        "node",
        COLS[0],
        20.0,
        &["root", &t.root.subject],
        &t.root.sha256_fingerprint,
    );
    boxed(
        &mut svg,
        "node",
        COLS[1],
        20.0,
        &["intermediate", &t.intermediate.subject],
        &t.intermediate.sha256_fingerprint,
    );
    boxed(
        &mut svg,
        "node",
        COLS[2],
        20.0,
        &["issued leaves", &leaves, &gone],
        &format!("{leaves}; {gone}"),
    );
    for (i, g) in t.gateways.iter().take(drawn).enumerate() {
        let x = COLS[i % 3];
        let y = GW_TOP + (i / 3) as f64 * GW_ROW;
        for b in &g.trust {
            let target = match b.matches {
                Some("root") => COLS[0],
                Some(_) => COLS[1],
                None => continue,
            };
            let _ = write!(
                svg,
                "<path class=\"edge\" d=\"M{} {y} L{} {}\" stroke-dasharray=\"4 3\"/>",
                x + BOX_W / 2.0,
                target + BOX_W / 2.0,
                20.0 + BOX_H
            );
        }
        let status = if g.trusts_this_ca {
            "trusts this CA"
        } else {
            "does not trust this CA"
        };
        boxed(
            &mut svg,
            "gw",
            x,
            y,
            &[&g.gateway, &format!("service {}", g.service), status],
            &g.gateway,
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(fp: &str) -> Node {
        Node {
            subject: String::new(),
            sha256_fingerprint: fp.into(),
            not_after: String::new(),
        }
    }

    #[test]
    fn trust_lines_match_by_fingerprint() {
        let (root, inter) = (n("aabb"), n("ccdd"));
        let b = bundle("aabb CN=Test Root", &root, &inter);
        assert_eq!(
            (b.matches, b.subject.as_str()),
            (Some("root"), "CN=Test Root")
        );
        assert_eq!(
            bundle("CC:DD CN=x", &root, &inter).matches,
            Some("intermediate")
        );
        let other = bundle("eeff CN=Other, O=Elsewhere", &root, &inter);
        assert_eq!(other.matches, None);
        assert_eq!(other.subject, "CN=Other, O=Elsewhere");
        assert_eq!(bundle("aabb", &root, &inter).subject, "");
    }

    #[test]
    fn long_names_are_cut_by_characters() {
        assert_eq!(fit("short", 38), "short");
        assert_eq!(fit("ééééé", 3), "éé…");
    }
}
