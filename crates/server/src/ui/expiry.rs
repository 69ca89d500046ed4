//! `/ui/expiry`: how many unrevoked certificates expire on each coming day,
//! as an inline SVG bar chart (a table below it has the same numbers).

use std::fmt::Write as _;

use time::OffsetDateTime;

use super::html::{Nav, Page};
use super::{Admitted, AppState, Params, Screen, UiError, parse_opt};

const DEFAULT_DAYS: i64 = 30;
const MAX_DAYS: i64 = 366;

#[derive(Debug, serde::Serialize)]
pub struct Expiry {
    pub days: i64,
    /// Certificates expiring in the whole window.
    pub total: i64,
    /// One entry per UTC day from today, zeros included.
    pub per_day: Vec<Day>,
}

#[derive(Debug, serde::Serialize)]
pub struct Day {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    pub count: i64,
}

#[derive(Debug, serde::Deserialize)]
pub struct ExpiryQuery {
    days: Option<String>,
}

fn date(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_default()
}

// Chart geometry (SVG user units).
const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 28.0;

/// The bar chart. Every bar carries a `<title>`, which browsers show on
/// hover without any script.
pub fn chart(days: &[Day]) -> String {
    let max = days.iter().map(|d| d.count).max().unwrap_or(0).max(1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / days.len().max(1) as f64;
    let bar = (slot * 0.8).max(1.0);
    let mut svg = format!(
        "<svg id=\"expiry-chart\" role=\"img\" aria-label=\"certificates expiring per day\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\">"
    );
    // Axis: 0 and the maximum, with a light grid line at the maximum.
    let base = TOP + plot_h;
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#888\"/>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{}\" y2=\"{TOP}\" stroke=\"#e3e3e3\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max}</text>\
         <text x=\"{}\" y=\"{base}\" text-anchor=\"end\">0</text>",
        WIDTH - RIGHT,
        WIDTH - RIGHT,
        LEFT - 6.0,
        TOP + 4.0,
        LEFT - 6.0,
    );
    // About ten date labels, whatever the window.
    let every = days.len().div_ceil(10).max(1);
    for (i, d) in days.iter().enumerate() {
        let x = LEFT + i as f64 * slot + (slot - bar) / 2.0;
        if d.count > 0 {
            let h = d.count as f64 / max as f64 * plot_h;
            let _ = write!(
                svg,
                "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\">\
                 <title>{}: {} expiring</title></rect>",
                base - h,
                d.date,
                d.count
            );
        }
        if i % every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                HEIGHT - 10.0,
                d.date.get(5..).unwrap_or_default()
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

impl Screen for Expiry {
    type Params = Params<ExpiryQuery>;

    async fn load(
        state: &AppState,
        _: &Admitted,
        Params(q): Params<ExpiryQuery>,
    ) -> Result<Expiry, UiError> {
        let days = parse_opt::<i64>("days", q.days.as_deref(), "a number of days, e.g. 30 or 90")?
            .unwrap_or(DEFAULT_DAYS);
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(UiError::malformed(format!(
                "days={days}: use 1 to {MAX_DAYS}"
            )));
        }
        let per_day = state
            .auth
            .store
            .expiry_per_day(OffsetDateTime::now_utc(), days)
            .await?;
        let per_day: Vec<Day> = per_day
            .into_iter()
            .map(|(start, count)| Day {
                date: date(start),
                count,
            })
            .collect();
        Ok(Expiry {
            days,
            total: per_day.iter().map(|d| d.count).sum(),
            per_day,
        })
    }

    fn render(&self) -> Page {
        let mut body = String::from("<p>Window: ");
        for d in [7, 30, 90] {
            if d == self.days {
                let _ = write!(body, "<strong>{d} days</strong> ");
            } else {
                let _ = write!(body, "<a href=\"/ui/expiry?days={d}\">{d} days</a> ");
            }
        }
        let _ = write!(
            body,
            "</p><p id=\"total\">{} unrevoked certificates expire in the next {} days (UTC days; \
             revoked and already expired ones are not shown).</p>",
            self.total, self.days
        );
        body.push_str(&chart(&self.per_day));
        if self.total > 0 {
            body.push_str(
                "<h2>Days with expiries</h2><table id=\"days\"><tr><th>date</th>\
                 <th class=\"num\">expiring</th></tr>",
            );
            for d in self.per_day.iter().filter(|d| d.count > 0) {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
                    d.date, d.count
                );
            }
            body.push_str("</table>");
        }
        Page {
            title: "Expiry timeline".into(),
            nav: Nav::Expiry,
            json: Some(format!("/ui/api/expiry?days={}", self.days)),
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(86_400 * 365), "1971-01-01");
    }

    #[test]
    fn the_chart_has_a_titled_bar_per_busy_day() {
        let days: Vec<Day> = (0..30)
            .map(|i| Day {
                date: date(i * 86_400),
                count: if i == 3 {
                    4
                } else if i == 10 {
                    2
                } else {
                    0
                },
            })
            .collect();
        let svg = chart(&days);
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        assert!(
            svg.contains("<title>1970-01-04: 4 expiring</title>"),
            "{svg}"
        );
        assert!(
            svg.contains("<title>1970-01-11: 2 expiring</title>"),
            "{svg}"
        );
        // The tallest bar fills the plot; the other is half as tall.
        assert!(svg.contains("height=\"218.0\""), "{svg}");
        assert!(svg.contains("height=\"109.0\""), "{svg}");
        // An empty window still draws axes and no bars.
        let empty = chart(&[]);
        assert!(
            empty.starts_with("<svg") && !empty.contains("<rect"),
            "{empty}"
        );
    }
}
