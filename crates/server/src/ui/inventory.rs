//! `/ui/certificates`: the inventory (search, filter, sort, pages) and one
//! certificate's page (chain, names, fingerprints, status, audit trail).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use symbolon_pki::{CertSummary, Serial};
use symbolon_store::{CertificateRecord, PageQuery, SortKey};
use time::OffsetDateTime;

use super::audit::{Entry, entries_table};
use super::html::{self, Nav, Page, esc, escape, link, status_badge};
use super::{Admitted, AppState, Paging, Params, Screen, UiError, one_of};

const SORTS: &[&str] = &["not_after", "issued_at", "serial", "profile", "identity"];
const STATUSES: &[&str] = &["", "valid", "expired", "revoked"];

fn sort_key(s: &str) -> SortKey {
    match s {
        "issued_at" => SortKey::IssuedAt,
        "serial" => SortKey::Serial,
        "profile" => SortKey::Profile,
        "identity" => SortKey::Identity,
        _ => SortKey::NotAfter,
    }
}

/// A certificate as listed.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    pub serial: String,
    pub identities: Vec<String>,
    pub subject: String,
    pub profile: String,
    /// `valid`, `expired` or `revoked`.
    pub status: &'static str,
    pub not_before: String,
    pub not_after: String,
    pub issued_at: String,
    pub revoked_at: Option<String>,
    pub revocation_reason: Option<String>,
    pub sha256_fingerprint: String,
}

impl Row {
    fn new(r: &CertificateRecord, now: OffsetDateTime) -> Row {
        Row {
            serial: r.serial.clone(),
            identities: r.identities.clone(),
            subject: r.subject.clone(),
            profile: r.profile.clone(),
            status: r.status(now).as_str(),
            not_before: html::time(r.not_before),
            not_after: html::time(r.not_after),
            issued_at: html::time(r.issued_at),
            revoked_at: r.revoked_at.map(html::time),
            revocation_reason: r.revocation_reason.clone(),
            sha256_fingerprint: r.fingerprint.clone(),
        }
    }

    /// What the table shows as the certificate's name.
    fn label(&self) -> String {
        if self.identities.is_empty() {
            self.subject.clone()
        } else {
            self.identities.join(", ")
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Inventory {
    pub q: String,
    /// Empty: every status.
    pub status: &'static str,
    pub sort: &'static str,
    pub dir: &'static str,
    pub page: i64,
    pub per_page: i64,
    pub pages: i64,
    /// Certificates matching the search and status, on all pages.
    pub total: i64,
    pub items: Vec<Row>,
}

#[derive(Debug, serde::Deserialize)]
pub struct InventoryQuery {
    q: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    page: Option<String>,
    per_page: Option<String>,
}

impl Inventory {
    /// The query parameters that pick this list (not the page), for links.
    fn keep(&self, per_page: &str) -> Vec<(&'static str, String)> {
        vec![
            ("q", self.q.clone()),
            ("status", self.status.to_string()),
            ("sort", self.sort.to_string()),
            ("dir", self.dir.to_string()),
            ("per_page", per_page.to_string()),
        ]
    }
}

impl Screen for Inventory {
    type Params = Params<InventoryQuery>;

    async fn load(
        state: &AppState,
        _: &Admitted,
        Params(q): Params<InventoryQuery>,
    ) -> Result<Inventory, UiError> {
        let status = one_of("status", q.status.as_deref(), STATUSES)?;
        let sort = one_of("sort", q.sort.as_deref(), SORTS)?;
        let dir = one_of("dir", q.dir.as_deref(), &["asc", "desc"])?;
        let paging = Paging::parse(q.page.as_deref(), q.per_page.as_deref())?;
        let search = q.q.unwrap_or_default().trim().to_string();
        if search.len() > 256 {
            return Err(UiError::malformed("q: search for at most 256 characters"));
        }
        let now = OffsetDateTime::now_utc();
        let (records, total) = state
            .auth
            .store
            .certificate_page(
                &PageQuery {
                    search: Some(search.as_str()).filter(|s| !s.is_empty()),
                    status: Some(status).filter(|s| !s.is_empty()),
                    sort: sort_key(sort),
                    descending: dir == "desc",
                    offset: paging.offset(),
                    limit: paging.per_page,
                },
                now,
            )
            .await?;
        Ok(Inventory {
            q: search,
            status,
            sort,
            dir,
            page: paging.page,
            per_page: paging.per_page,
            pages: paging.pages(total),
            total,
            items: records.iter().map(|r| Row::new(r, now)).collect(),
        })
    }

    fn render(&self) -> Page {
        let paging = Paging {
            page: self.page,
            per_page: self.per_page,
        };
        let per_page = paging.per_page_param();
        let mut body = format!(
            "<form class=\"inline\" method=\"get\" action=\"/ui/certificates\">\
             <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"serial, identity or subject\" size=\"40\">\
             <select name=\"status\">",
            esc(&self.q)
        );
        for s in STATUSES {
            let label = if s.is_empty() { "any status" } else { s };
            let sel = if *s == self.status { " selected" } else { "" };
            let _ = write!(body, "<option value=\"{s}\"{sel}>{label}</option>");
        }
        let _ = write!(
            body,
            "</select><input type=\"hidden\" name=\"sort\" value=\"{}\">\
             <input type=\"hidden\" name=\"dir\" value=\"{}\">",
            self.sort, self.dir
        );
        if !per_page.is_empty() {
            let _ = write!(
                body,
                "<input type=\"hidden\" name=\"per_page\" value=\"{per_page}\">"
            );
        }
        body.push_str("<button type=\"submit\">Search</button></form>");
        let _ = match self.total {
            1 => write!(body, "<p id=\"total\">1 certificate matches.</p>"),
            n => write!(body, "<p id=\"total\">{n} certificates match.</p>"),
        };

        // Column headers sort; the current column's link flips the order.
        body.push_str("<table id=\"certificates\"><tr>");
        for (key, label) in [
            ("identity", "identity"),
            ("serial", "serial"),
            ("profile", "profile"),
            ("not_after", "not after"),
        ] {
            let (dir, mark) = match (key == self.sort, self.dir) {
                (true, "asc") => ("desc", " ▲"),
                (true, _) => ("asc", " ▼"),
                (false, _) => ("asc", ""),
            };
            let mut pairs = self.keep(&per_page);
            for p in &mut pairs {
                match p.0 {
                    "sort" => p.1 = key.to_string(),
                    "dir" => p.1 = dir.to_string(),
                    _ => {}
                }
            }
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let _ = write!(
                body,
                "<th><a href=\"{}\">{label}</a>{mark}</th>",
                escape(&link("/ui/certificates", &pairs))
            );
        }
        body.push_str("<th>status</th></tr>");
        for r in &self.items {
            let href = format!("/ui/certificates/{}", html::url_encode(&r.serial));
            // The subject is shown under the names when it says more
            // (a CN), since search matches it too.
            let subject = if r.subject.is_empty() || r.identities.is_empty() {
                String::new()
            } else {
                format!("<br><small>{}</small>", esc(&r.subject))
            };
            let _ = write!(
                body,
                "<tr><td><a href=\"{href}\">{}</a>{subject}</td><td><a class=\"mono\" href=\"{href}\">{}</a></td>\
                 <td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.label()),
                esc(&r.serial),
                esc(&r.profile),
                esc(&r.not_after),
                status_badge(r.status)
            );
        }
        body.push_str("</table>");
        let keep = self.keep(&per_page);
        let keep: Vec<(&str, &str)> = keep.iter().map(|(k, v)| (*k, v.as_str())).collect();
        body.push_str(&html::pager(
            "/ui/certificates",
            &keep,
            self.page,
            self.pages,
            self.total,
        ));
        let page = self.page.to_string();
        let mut json = keep.clone();
        json.push(("page", &page));
        Page {
            title: "Certificates".into(),
            nav: Nav::Certificates,
            json: Some(link("/ui/api/certificates", &json)),
            body,
        }
    }
}

// === one certificate ===

/// A serial from the path, in the store's form (lower-case hex without
/// leading zeros), so `3F:A1` and `3fa1` find the same certificate.
#[derive(Debug)]
pub struct SerialPath(String);

impl FromRequestParts<Arc<AppState>> for SerialPath {
    type Rejection = UiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<SerialPath, UiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| UiError::malformed(e.body_text()))?;
        Serial::parse_hex(&raw)
            .map(|s| SerialPath(s.to_hex()))
            .map_err(UiError::malformed)
    }
}

/// One link of the chain, leaf first.
#[derive(Debug, serde::Serialize)]
pub struct ChainLink {
    /// `leaf`, `intermediate`, `root`, or `issuer` (an issuer that is not
    /// this CA's current intermediate).
    pub role: &'static str,
    pub subject: String,
    /// None when the certificate is not at hand.
    pub sha256_fingerprint: Option<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct Certificate {
    #[serde(flatten)]
    pub record: Row,
    pub chain: Vec<ChainLink>,
    /// What the certificate itself says (names, key, extensions). None if
    /// the stored DER does not parse.
    pub details: Option<CertSummary>,
    pub pem: String,
    /// Oldest first.
    pub audit: Vec<Entry>,
}

impl Screen for Certificate {
    type Params = SerialPath;

    async fn load(
        state: &AppState,
        _: &Admitted,
        SerialPath(serial): SerialPath,
    ) -> Result<Certificate, UiError> {
        let now = OffsetDateTime::now_utc();
        let Some(r) = state.auth.store.get(&serial).await? else {
            return Err(UiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("this CA has no certificate with serial {serial}"),
            ));
        };
        let audit = state.auth.store.audit_for(&serial).await?;
        let details = symbolon_pki::describe_certificate(&r.der, now);
        let intermediate = state.auth.issuer.certificate();
        let record = Row::new(&r, now);
        let mut chain = vec![ChainLink {
            role: "leaf",
            // SPIFFE certificates have an empty subject: name them by SAN.
            subject: if r.subject.is_empty() {
                record.label()
            } else {
                r.subject.clone()
            },
            sha256_fingerprint: Some(r.fingerprint.clone()),
        }];
        if r.issuer == state.auth.issuer.subject() {
            chain.push(ChainLink {
                role: "intermediate",
                subject: r.issuer.clone(),
                sha256_fingerprint: Some(symbolon_pki::sha256_hex(intermediate)),
            });
            chain.push(ChainLink {
                role: "root",
                subject: symbolon_pki::describe_certificate(&state.auth.root, now)
                    .map(|s| s.subject)
                    .unwrap_or_default(),
                sha256_fingerprint: Some(symbolon_pki::sha256_hex(&state.auth.root)),
            });
        } else {
            // Issued under an earlier intermediate: only its name is known.
            chain.push(ChainLink {
                role: "issuer",
                subject: r.issuer.clone(),
                sha256_fingerprint: None,
            });
        }
        Ok(Certificate {
            record,
            chain,
            details,
            pem: symbolon_pki::to_pem("CERTIFICATE", &r.der),
            audit: audit.iter().map(Entry::new).collect(),
        })
    }

    fn render(&self) -> Page {
        let r = &self.record;
        let mut body = format!(
            "<table id=\"summary\"><tr><th>status</th><td>{}",
            status_badge(r.status)
        );
        if let Some(at) = &r.revoked_at {
            let _ = write!(
                body,
                " at {} ({})",
                esc(at),
                esc(r.revocation_reason.as_deref().unwrap_or("unspecified"))
            );
        }
        let _ = write!(
            body,
            "</td></tr><tr><th>serial</th><td class=\"mono\">{}</td></tr>\
             <tr><th>subject</th><td>{}</td></tr><tr><th>profile</th><td>{}</td></tr>\
             <tr><th>not before</th><td>{}</td></tr><tr><th>not after</th><td>{}</td></tr>\
             <tr><th>issued at</th><td>{}</td></tr>",
            esc(&r.serial),
            esc(&r.subject),
            esc(&r.profile),
            esc(&r.not_before),
            esc(&r.not_after),
            esc(&r.issued_at)
        );
        if let Some(d) = &self.details {
            let _ = write!(
                body,
                "<tr><th>validity</th><td>{}</td></tr><tr><th>key</th><td>{}</td></tr>\
                 <tr><th>extended key usage</th><td>{}</td></tr>",
                esc(&d.validity),
                esc(&d.key.to_string()),
                esc(&d.extended_key_usage.join(", "))
            );
        }
        body.push_str("</table><h2>Subject alternative names</h2><ul id=\"sans\">");
        let sans = self
            .details
            .as_ref()
            .map(|d| d.subject_alt_names.clone())
            .unwrap_or_else(|| r.identities.clone());
        for san in &sans {
            let _ = write!(body, "<li><code>{}</code></li>", esc(san));
        }
        body.push_str("</ul><h2>Fingerprints</h2><table id=\"fingerprints\">");
        let _ = write!(
            body,
            "<tr><th>SHA-256 (certificate)</th><td class=\"mono\">{}</td></tr>",
            esc(&r.sha256_fingerprint)
        );
        if let Some(d) = &self.details {
            let _ = write!(
                body,
                "<tr><th>SHA-256 (public key, base64)</th><td class=\"mono\">{}</td></tr>",
                esc(&d.spki_sha256)
            );
        }
        body.push_str("</table><h2>Chain</h2><ol id=\"chain\">");
        for link in &self.chain {
            let _ = write!(
                body,
                "<li><strong>{}</strong> {}",
                link.role,
                esc(&link.subject)
            );
            if let Some(fp) = &link.sha256_fingerprint {
                let _ = write!(body, " <span class=\"mono\">sha256 {}</span>", esc(fp));
            }
            body.push_str("</li>");
        }
        body.push_str("</ol><h2>Audit trail</h2>");
        body.push_str(&entries_table(&self.audit, false));
        let _ = write!(
            body,
            "<h2>PEM</h2><pre>{}</pre><p><a href=\"/ui/certificates\">All certificates</a></p>",
            esc(&self.pem)
        );
        Page {
            title: format!("Certificate {}", r.label()),
            nav: Nav::Certificates,
            json: Some(format!(
                "/ui/api/certificates/{}",
                html::url_encode(&r.serial)
            )),
            body,
        }
    }
}
