//! `/ui/`: certificate counts by status and the last day's handshakes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use symbolon_store::{MatrixCell, StatusCounts};
use time::OffsetDateTime;

use super::html::{Nav, Page, esc};
use super::matrix::Reason;
use super::{Admitted, AppState, Screen, UiError};

/// How far back the overview's handshake numbers reach.
const WINDOW: time::Duration = time::Duration::DAY;
/// Failure reasons listed on the overview.
const TOP: usize = 10;

#[derive(Debug, serde::Serialize)]
pub struct Overview {
    pub certificates: Counts,
    pub handshakes: Handshakes,
    /// Most frequent failures and denials in the window, largest first.
    pub top_reasons: Vec<Reason>,
}

/// Certificates by status. `active` includes `expiring_7d`.
#[derive(Debug, serde::Serialize)]
pub struct Counts {
    pub active: i64,
    pub expiring_7d: i64,
    pub expired: i64,
    pub revoked: i64,
}

impl From<StatusCounts> for Counts {
    fn from(c: StatusCounts) -> Counts {
        Counts {
            active: c.active,
            expiring_7d: c.expiring_7d,
            expired: c.expired,
            revoked: c.revoked,
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Handshakes {
    pub window: &'static str,
    pub allowed: i64,
    pub denied: i64,
    pub failed: i64,
    /// allowed / (allowed + failed): how often a client that tried got a
    /// working mTLS session. Policy denials are not handshake failures (the
    /// handshake worked; the rules said no), so they are counted apart.
    /// None when nothing was reported.
    pub success_rate: Option<f64>,
}

/// Sums the matrix into handshake totals and reasons (largest first).
pub fn summarise(cells: &[MatrixCell], window: &'static str) -> (Handshakes, Vec<Reason>) {
    let mut h = Handshakes {
        window,
        allowed: 0,
        denied: 0,
        failed: 0,
        success_rate: None,
    };
    let mut reasons: BTreeMap<(String, String), i64> = BTreeMap::new();
    for c in cells {
        h.allowed += c.allowed;
        h.denied += c.denied;
        h.failed += c.failed;
        for ((kind, reason), n) in &c.reasons {
            if kind != "allowed" {
                *reasons.entry((kind.clone(), reason.clone())).or_insert(0) += n;
            }
        }
    }
    let tried = h.allowed + h.failed;
    if tried > 0 {
        h.success_rate = Some(h.allowed as f64 / tried as f64);
    }
    let mut reasons: Vec<Reason> = reasons
        .into_iter()
        .map(|((kind, reason), count)| Reason {
            kind,
            reason,
            count,
        })
        .collect();
    // Stable order for equal counts, so the page does not reshuffle.
    reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    (h, reasons)
}

pub fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

impl Screen for Overview {
    type Params = ();

    async fn load(state: &AppState, _: &Admitted, (): ()) -> Result<Overview, UiError> {
        let now = OffsetDateTime::now_utc();
        let counts = state.auth.store.status_counts(now).await?;
        let cells = state.auth.store.connection_matrix(now - WINDOW).await?;
        let (handshakes, mut top_reasons) = summarise(&cells, "24h");
        top_reasons.truncate(TOP);
        Ok(Overview {
            certificates: counts.into(),
            handshakes,
            top_reasons,
        })
    }

    fn render(&self) -> Page {
        let c = &self.certificates;
        let mut body = String::from("<h2>Certificates</h2><div class=\"cards\">");
        for (n, label, class, href) in [
            (c.active, "active", "ok", "/ui/certificates?status=valid"),
            (
                c.expiring_7d,
                "expiring within 7 days",
                "warn",
                "/ui/expiry?days=7",
            ),
            (
                c.expired,
                "expired",
                "warn",
                "/ui/certificates?status=expired",
            ),
            (
                c.revoked,
                "revoked",
                "bad",
                "/ui/certificates?status=revoked",
            ),
        ] {
            let _ = write!(
                body,
                "<div class=\"card\" id=\"{}\"><a href=\"{href}\"><div class=\"n\">{n}</div>\
                 <span class=\"badge {class}\">{label}</span></a></div>",
                label.replace(' ', "-")
            );
        }
        body.push_str("</div>");

        let h = &self.handshakes;
        let _ = write!(body, "<h2>Handshakes, last {}</h2>", h.window);
        match h.success_rate {
            None => body.push_str(
                "<p>No gateway has reported handshakes in this window. Gateways in \
                 server mode report here when their configuration has a \
                 <code>[telemetry]</code> section.</p>",
            ),
            Some(rate) => {
                let class = if rate >= 0.99 {
                    "ok"
                } else if rate >= 0.9 {
                    "warn"
                } else {
                    "bad"
                };
                let _ = write!(
                    body,
                    "<div class=\"cards\"><div class=\"card\" id=\"success-rate\">\
                     <div class=\"n\">{}</div><span class=\"badge {class}\">handshake success</span>\
                     </div><div class=\"card\"><div class=\"n\">{}</div>allowed</div>\
                     <div class=\"card\"><div class=\"n\">{}</div>failed</div>\
                     <div class=\"card\"><div class=\"n\">{}</div>denied by policy</div></div>\
                     <p>Success is allowed ÷ (allowed + failed); a policy denial follows a \
                     working handshake and is counted apart. <a href=\"/ui/matrix?since=24h\">\
                     Connections by client and service</a>.</p>",
                    percent(rate),
                    h.allowed,
                    h.failed,
                    h.denied
                );
            }
        }
        if !self.top_reasons.is_empty() {
            body.push_str(
                "<h2>Top failure reasons</h2><table id=\"reasons\"><tr><th>kind</th>\
                 <th>reason</th><th class=\"num\">count</th></tr>",
            );
            for r in &self.top_reasons {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td></tr>",
                    esc(&r.kind),
                    esc(&r.reason),
                    r.count
                );
            }
            body.push_str("</table>");
        }
        Page {
            title: "Overview".into(),
            nav: Nav::Overview,
            json: Some("/ui/api/overview".into()),
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(client: &str, reasons: &[(&str, &str, i64)]) -> MatrixCell {
        let mut c = MatrixCell {
            client: client.into(),
            service: "api".into(),
            ..Default::default()
        };
        for (kind, reason, n) in reasons {
            match *kind {
                "allowed" => c.allowed += n,
                "denied" => c.denied += n,
                _ => c.failed += n,
            }
            c.reasons.insert((kind.to_string(), reason.to_string()), *n);
        }
        c
    }

    #[test]
    fn success_rate_leaves_denials_out() {
        let cells = [
            cell("web", &[("allowed", "", 5)]),
            cell("evil", &[("denied", "no matching rule", 2)]),
            cell(
                "unauthenticated",
                &[("failed", "no_client_cert", 1), ("failed", "expired", 3)],
            ),
        ];
        let (h, reasons) = summarise(&cells, "24h");
        assert_eq!((h.allowed, h.denied, h.failed), (5, 2, 4));
        assert_eq!(h.success_rate, Some(5.0 / 9.0));
        let got: Vec<_> = reasons
            .iter()
            .map(|r| (r.reason.as_str(), r.count))
            .collect();
        assert_eq!(
            got,
            [
                ("expired", 3),
                ("no matching rule", 2),
                ("no_client_cert", 1)
            ]
        );
        assert_eq!(percent(5.0 / 6.0), "83.3%");
    }

    #[test]
    fn nothing_reported_has_no_rate() {
        let (h, reasons) = summarise(&[], "24h");
        assert_eq!(h.success_rate, None);
        assert!(reasons.is_empty());
        // Only denials: allowed + failed is zero, so there is no rate to show.
        let (h, _) = summarise(&[cell("x", &[("denied", "r", 4)])], "24h");
        assert_eq!(h.success_rate, None);
    }
}
