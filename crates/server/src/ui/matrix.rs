//! `/ui/matrix`: which clients reached which services, from the gateways'
//! telemetry, and a drill-down per cell into the reasons.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use time::OffsetDateTime;

use super::html::{Nav, Page, esc, escape, link};
use super::{Admitted, AppState, Params, Screen, UiError, one_of};

/// The windows offered (the first is the default) and their lengths.
const WINDOWS: &[&str] = &["24h", "1h", "7d"];

fn window(since: &str) -> time::Duration {
    match since {
        "1h" => time::Duration::HOUR,
        "7d" => time::Duration::days(7),
        _ => time::Duration::DAY,
    }
}

/// A (kind, reason) count: why connections were denied or failed.
#[derive(Debug, serde::Serialize)]
pub struct Reason {
    /// `allowed`, `denied` or `failed`.
    pub kind: String,
    /// The policy rule (denied) or reason code (failed); empty for allowed.
    pub reason: String,
    pub count: i64,
}

#[derive(Debug, serde::Serialize)]
pub struct Cell {
    pub client: String,
    pub service: String,
    pub allowed: i64,
    pub denied: i64,
    pub failed: i64,
}

#[derive(Debug, serde::Serialize)]
pub struct Matrix {
    pub since: &'static str,
    /// Row and column labels, sorted.
    pub clients: Vec<String>,
    pub services: Vec<String>,
    /// Only the pairs that were seen.
    pub cells: Vec<Cell>,
}

#[derive(Debug, serde::Deserialize)]
pub struct MatrixQuery {
    since: Option<String>,
}

fn since_links(path: &str, current: &str, keep: &[(&str, &str)]) -> String {
    let mut out = String::from("<p>Window: ");
    for w in ["1h", "24h", "7d"] {
        if w == current {
            let _ = write!(out, "<strong>{w}</strong> ");
        } else {
            let mut pairs = keep.to_vec();
            pairs.push(("since", w));
            let _ = write!(out, "<a href=\"{}\">{w}</a> ", escape(&link(path, &pairs)));
        }
    }
    out.push_str("</p>");
    out
}

/// A cell's background shows its mix of outcomes: green, amber and red
/// bands as wide as the shares of allowed, denied and failed.
fn mix(allowed: i64, denied: i64, failed: i64) -> String {
    let total = (allowed + denied + failed).max(1) as f64;
    let a = allowed as f64 * 100.0 / total;
    let d = a + denied as f64 * 100.0 / total;
    format!(
        "background:linear-gradient(to right,#d6f0dc 0 {a:.1}%,#fde7b0 {a:.1}% {d:.1}%,#f9d0d0 {d:.1}% 100%)"
    )
}

impl Screen for Matrix {
    type Params = Params<MatrixQuery>;

    async fn load(
        state: &AppState,
        _: &Admitted,
        Params(q): Params<MatrixQuery>,
    ) -> Result<Matrix, UiError> {
        let since = one_of("since", q.since.as_deref(), WINDOWS)?;
        let cells = state
            .auth
            .store
            .connection_matrix(OffsetDateTime::now_utc() - window(since))
            .await?;
        let clients: BTreeSet<String> = cells.iter().map(|c| c.client.clone()).collect();
        let services: BTreeSet<String> = cells.iter().map(|c| c.service.clone()).collect();
        Ok(Matrix {
            since,
            clients: clients.into_iter().collect(),
            services: services.into_iter().collect(),
            cells: cells
                .into_iter()
                .map(|c| Cell {
                    client: c.client,
                    service: c.service,
                    allowed: c.allowed,
                    denied: c.denied,
                    failed: c.failed,
                })
                .collect(),
        })
    }

    fn render(&self) -> Page {
        let mut body = since_links("/ui/matrix", self.since, &[]);
        if self.cells.is_empty() {
            body.push_str("<p>No gateway has reported connections in this window.</p>");
        } else {
            body.push_str(
                "<p>Each cell: allowed / denied by policy / failed handshakes. \
                 Follow a cell for the reasons.</p><table id=\"matrix\"><tr><th>client \\ service</th>",
            );
            for s in &self.services {
                let _ = write!(body, "<th>{}</th>", esc(s));
            }
            body.push_str("</tr>");
            for client in &self.clients {
                let _ = write!(body, "<tr><th><code>{}</code></th>", esc(client));
                for service in &self.services {
                    let cell = self
                        .cells
                        .iter()
                        .find(|c| &c.client == client && &c.service == service);
                    let Some(c) = cell else {
                        body.push_str("<td class=\"cell\">—</td>");
                        continue;
                    };
                    let href = link(
                        "/ui/matrix/cell",
                        &[
                            ("client", client),
                            ("service", service),
                            ("since", self.since),
                        ],
                    );
                    let _ = write!(
                        body,
                        "<td class=\"cell\" style=\"{}\"><a href=\"{}\" title=\"allowed {} · denied {} · failed {}\">\
                         <span class=\"allowed\">{}</span> / <span class=\"denied\">{}</span> / \
                         <span class=\"failed\">{}</span></a></td>",
                        mix(c.allowed, c.denied, c.failed),
                        escape(&href),
                        c.allowed,
                        c.denied,
                        c.failed,
                        c.allowed,
                        c.denied,
                        c.failed
                    );
                }
                body.push_str("</tr>");
            }
            body.push_str(
                "</table><p><span class=\"badge ok\">allowed</span> \
                 <span class=\"badge warn\">denied</span> <span class=\"badge bad\">failed</span>: \
                 the colour bands in a cell are as wide as each share.</p>",
            );
        }
        Page {
            title: "Connections".into(),
            nav: Nav::Matrix,
            json: Some(link("/ui/api/matrix", &[("since", self.since)])),
            body,
        }
    }
}

// === one cell ===

#[derive(Debug, serde::Serialize)]
pub struct CellDetail {
    pub client: String,
    pub service: String,
    pub since: &'static str,
    pub allowed: i64,
    pub denied: i64,
    pub failed: i64,
    /// Largest first.
    pub reasons: Vec<Reason>,
}

#[derive(Debug, serde::Deserialize)]
pub struct CellQuery {
    client: Option<String>,
    service: Option<String>,
    since: Option<String>,
}

impl Screen for CellDetail {
    type Params = Params<CellQuery>;

    async fn load(
        state: &AppState,
        _: &Admitted,
        Params(q): Params<CellQuery>,
    ) -> Result<CellDetail, UiError> {
        let since = one_of("since", q.since.as_deref(), WINDOWS)?;
        let (Some(client), Some(service)) = (q.client, q.service) else {
            return Err(UiError::malformed(
                "name the cell: /ui/matrix/cell?client=…&service=…",
            ));
        };
        let cells = state
            .auth
            .store
            .connection_matrix(OffsetDateTime::now_utc() - window(since))
            .await?;
        // A pair with no reports in the window is an empty cell, not an
        // error: it may simply have been quiet.
        let cell = cells
            .into_iter()
            .find(|c| c.client == client && c.service == service)
            .unwrap_or_default();
        let mut reasons: Vec<Reason> = cell
            .reasons
            .into_iter()
            .map(|((kind, reason), count)| Reason {
                kind,
                reason,
                count,
            })
            .collect();
        reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.kind.cmp(&b.kind)));
        Ok(CellDetail {
            client,
            service,
            since,
            allowed: cell.allowed,
            denied: cell.denied,
            failed: cell.failed,
            reasons,
        })
    }

    fn render(&self) -> Page {
        let keep = [
            ("client", self.client.as_str()),
            ("service", self.service.as_str()),
        ];
        let mut body = format!(
            "<p>Client <code>{}</code> → service <code>{}</code>. \
             <a href=\"{}\">Back to the matrix</a>.</p>",
            esc(&self.client),
            esc(&self.service),
            escape(&link("/ui/matrix", &[("since", self.since)]))
        );
        body.push_str(&since_links("/ui/matrix/cell", self.since, &keep));
        let _ = write!(
            body,
            "<div class=\"cards\"><div class=\"card\"><div class=\"n\">{}</div>\
             <span class=\"badge ok\">allowed</span></div><div class=\"card\"><div class=\"n\">{}</div>\
             <span class=\"badge warn\">denied</span></div><div class=\"card\"><div class=\"n\">{}</div>\
             <span class=\"badge bad\">failed</span></div></div>",
            self.allowed, self.denied, self.failed
        );
        if self.reasons.is_empty() {
            body.push_str("<p>No reports for this pair in the window.</p>");
        } else {
            body.push_str(
                "<table id=\"reasons\"><tr><th>kind</th><th>reason or rule</th>\
                 <th class=\"num\">count</th></tr>",
            );
            for r in &self.reasons {
                let reason = if r.reason.is_empty() {
                    "—"
                } else {
                    &r.reason
                };
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td></tr>",
                    esc(&r.kind),
                    esc(reason),
                    r.count
                );
            }
            body.push_str("</table>");
        }
        let mut json = keep.to_vec();
        json.push(("since", self.since));
        Page {
            title: "Connections: one client and service".into(),
            nav: Nav::Matrix,
            json: Some(link("/ui/api/matrix/cell", &json)),
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_colour_bands_follow_the_shares() {
        assert_eq!(
            mix(5, 2, 1),
            "background:linear-gradient(to right,#d6f0dc 0 62.5%,#fde7b0 62.5% 87.5%,#f9d0d0 87.5% 100%)"
        );
        // An all-zero cell does not divide by zero.
        assert!(mix(0, 0, 0).contains("0 0.0%"));
    }
}
