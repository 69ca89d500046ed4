//! HTML building blocks: escaping, URL encoding, the shared layout and the
//! pieces several pages use (pager, status badges).
//!
//! Pages are plain strings. Every value that did not come from this file
//! goes through [`esc`] (text and attribute values alike, since every
//! attribute is double-quoted), so a certificate named `<script>` is text.

use std::fmt::{self, Write as _};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

/// HTML-escapes `s` for text and for double- or single-quoted attributes.
pub fn escape(s: &str) -> String {
    esc(s).to_string()
}

/// [`escape`] without allocating: `write!(out, "<td>{}</td>", esc(v))`.
pub fn esc(s: &str) -> Esc<'_> {
    Esc(s)
}

#[derive(Clone, Copy, Debug)]
pub struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a
/// value is safe in a query string or a path segment.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `path?k=v&…` with the empty values left out. The result is a URL, not
/// HTML: escape it when it goes into an attribute.
pub fn link(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = path.to_string();
    let mut sep = '?';
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        let _ = write!(out, "{sep}{}={}", url_encode(k), url_encode(v));
        sep = '&';
    }
    out
}

/// Times are shown as the API and CLI print them (RFC 3339, UTC).
pub fn time(t: OffsetDateTime) -> String {
    symbolon_pki::rfc3339(t)
}

/// A coloured word for a certificate status (valid, expired, revoked).
pub fn status_badge(status: &str) -> String {
    let class = match status {
        "valid" => "ok",
        "expired" => "warn",
        _ => "bad",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(status))
}

/// "← previous · page 2 of 3 (120 in all) · next →", keeping the other
/// query parameters of the page.
pub fn pager(path: &str, keep: &[(&str, &str)], page: i64, pages: i64, total: i64) -> String {
    let at = |p: i64| {
        let p = p.to_string();
        let mut pairs = keep.to_vec();
        pairs.push(("page", &p));
        escape(&link(path, &pairs))
    };
    let mut out = String::from("<p class=\"pager\">");
    if page > 1 {
        let _ = write!(
            out,
            "<a rel=\"prev\" href=\"{}\">← previous</a> · ",
            at(page - 1)
        );
    }
    let _ = write!(out, "page {page} of {} ({total} in all)", pages.max(1));
    if page < pages {
        let _ = write!(
            out,
            " · <a rel=\"next\" href=\"{}\">next →</a>",
            at(page + 1)
        );
    }
    out.push_str("</p>");
    out
}

/// Which nav entry is highlighted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Certificates,
    Expiry,
    Trust,
    Matrix,
    Audit,
    None,
}

const NAV: &[(Nav, &str, &str)] = &[
    (Nav::Overview, "/ui/", "Overview"),
    (Nav::Certificates, "/ui/certificates", "Certificates"),
    (Nav::Expiry, "/ui/expiry", "Expiry"),
    (Nav::Trust, "/ui/trust", "Trust"),
    (Nav::Matrix, "/ui/matrix", "Connections"),
    (Nav::Audit, "/ui/audit", "Audit log"),
];

/// One rendered page, before the layout goes around it.
#[derive(Debug)]
pub struct Page {
    pub title: String,
    pub nav: Nav,
    /// The JSON twin of this page (a URL), linked in the footer.
    pub json: Option<String>,
    /// HTML, already escaped.
    pub body: String,
}

// System fonts only: the dashboard makes no request to any other host.
const CSS: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1d2b3a;color:#fff;padding:.5em 1.5em;display:flex;gap:1.5em;align-items:center;flex-wrap:wrap}
header a{color:#cfe0f2;text-decoration:none}header a.on{color:#fff;font-weight:600;border-bottom:2px solid #7fb3e6}
header .brand{font-weight:700;color:#fff}header .who{margin-left:auto;font-size:.85em;color:#9fb4c8}
main{padding:1em 1.5em;max-width:1200px}h1{font-size:1.4em;margin:.3em 0 .6em}h2{font-size:1.1em;margin:1.4em 0 .5em}
table{border-collapse:collapse;background:#fff;margin:.5em 0}th,td{border:1px solid #dde2e8;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eef1f5}th a{color:inherit}td.num,th.num{text-align:right}
code,.mono{font-family:ui-monospace,'SFMono-Regular',Menlo,Consolas,monospace;font-size:.9em;word-break:break-all}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:.8em 1.2em;min-width:9em}
.card .n{font-size:2em;font-weight:700}.card a{color:inherit;text-decoration:none}
.badge{border-radius:3px;padding:0 .4em;font-size:.9em}.ok{background:#d6f0dc;color:#14532d}.warn{background:#fde7b0;color:#6b4700}.bad{background:#f9d0d0;color:#7f1d1d}
.banner{padding:.6em 1em;border-radius:6px;font-weight:600;margin:.5em 0}
.pager{margin:.6em 0}form.inline{display:flex;gap:.5em;align-items:center;flex-wrap:wrap;margin:.5em 0}
td.cell a{color:inherit;text-decoration:none;display:block}
svg{background:#fff;border:1px solid #dde2e8}svg text{font:11px system-ui,sans-serif;fill:#44505c}
svg .bar{fill:#3f7cc0}svg .node{fill:#eef4fb;stroke:#3f7cc0}svg .gw{fill:#f4f4f4;stroke:#777}svg .edge{stroke:#777;fill:none}svg .arrow{fill:#777}
pre{background:#fff;border:1px solid #dde2e8;padding:.6em;overflow-x:auto}
footer{padding:1em 1.5em;color:#6b7785;font-size:.85em}";

/// The page inside the shared layout: nav, who is looking, the JSON link.
pub fn document(page: &Page, who: Option<&str>) -> String {
    let mut out = String::with_capacity(page.body.len() + 4096);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Symbolon</title><style>{CSS}</style></head><body><header>\
         <span class=\"brand\">Symbolon CA</span><nav>",
        esc(&page.title)
    );
    for (nav, href, label) in NAV {
        let on = if *nav == page.nav {
            " class=\"on\""
        } else {
            ""
        };
        let _ = write!(out, "<a{on} href=\"{href}\">{label}</a> ");
    }
    out.push_str("</nav>");
    if let Some(who) = who {
        let _ = write!(out, "<span class=\"who\">{}</span>", esc(who));
    }
    let _ = write!(
        out,
        "</header><main><h1>{}</h1>{}</main><footer>Read-only view.",
        esc(&page.title),
        page.body
    );
    if let Some(json) = &page.json {
        let _ = write!(out, " <a href=\"{}\">This page as JSON</a>.", esc(json));
    }
    out.push_str("</footer></body></html>\n");
    out
}

/// An HTML response (the security headers are added for every dashboard
/// response in one place, `super::present`).
pub fn respond(status: StatusCode, page: &Page, who: Option<&str>) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        document(page, who),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<script>alert("x" + 'y')</script> & co"#),
            "&lt;script&gt;alert(&quot;x&quot; + &#39;y&#39;)&lt;/script&gt; &amp; co"
        );
        assert_eq!(escape(""), "");
        assert_eq!(escape("plain text"), "plain text");
        // Already-escaped text is escaped again, not trusted.
        assert_eq!(escape("&lt;"), "&amp;lt;");
        // Multi-byte characters pass through unharmed.
        assert_eq!(escape("Zürich <é>"), "Zürich &lt;é&gt;");
    }

    #[test]
    fn url_encode_keeps_only_unreserved() {
        assert_eq!(url_encode("abc-._~XYZ09"), "abc-._~XYZ09");
        assert_eq!(
            url_encode("spiffe://example.org/a b&c=d?"),
            "spiffe%3A%2F%2Fexample.org%2Fa%20b%26c%3Dd%3F"
        );
        assert_eq!(url_encode("é"), "%C3%A9");
    }

    #[test]
    fn links_skip_empty_values_and_escape_in_attributes() {
        assert_eq!(link("/ui/x", &[]), "/ui/x");
        assert_eq!(
            link("/ui/x", &[("q", ""), ("a", "1"), ("b", "x&y")]),
            "/ui/x?a=1&b=x%26y"
        );
        let p = pager("/ui/x", &[("q", "<")], 2, 3, 120);
        assert!(p.contains("href=\"/ui/x?q=%3C&amp;page=1\""), "{p}");
        assert!(p.contains("href=\"/ui/x?q=%3C&amp;page=3\""), "{p}");
        assert!(p.contains("page 2 of 3 (120 in all)"), "{p}");
        let first = pager("/ui/x", &[], 1, 1, 0);
        assert!(!first.contains("href"), "{first}");
    }

    #[test]
    fn the_layout_escapes_the_title_and_the_viewer() {
        let page = Page {
            title: "<b>".into(),
            nav: Nav::Trust,
            json: Some("/ui/api/trust?a=1&b=2".into()),
            body: "<p>body</p>".into(),
        };
        let html = document(&page, Some("<who>"));
        assert!(
            html.contains("<title>&lt;b&gt; · Symbolon</title>"),
            "{html}"
        );
        assert!(html.contains("&lt;who&gt;"), "{html}");
        assert!(
            html.contains("<a class=\"on\" href=\"/ui/trust\">"),
            "{html}"
        );
        assert!(
            html.contains("href=\"/ui/api/trust?a=1&amp;b=2\""),
            "{html}"
        );
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{html}"
        );
    }
}
