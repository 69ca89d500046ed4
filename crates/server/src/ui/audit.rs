//! `/ui/audit`: the hash-chained audit trail, newest first, with the
//! result of verifying the whole chain on every view.

use std::fmt::Write as _;

use symbolon_store::AuditRecord;

use super::html::{self, Nav, Page, esc, link};
use super::{Admitted, AppState, Paging, Params, Screen, UiError};

/// One audit record as shown.
#[derive(Debug, serde::Serialize)]
pub struct Entry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    /// A certificate serial, or a token id for `token_*` actions.
    pub subject: String,
    /// JSON written by the store.
    pub detail: String,
    pub hash: String,
}

impl Entry {
    pub fn new(r: &AuditRecord) -> Entry {
        Entry {
            seq: r.seq,
            at: html::time(r.at),
            actor: r.actor.clone(),
            action: r.action.clone(),
            subject: r.subject.clone(),
            detail: r.detail.clone(),
            hash: r.hash.clone(),
        }
    }
}

/// The records as a table; `link_subjects` links certificate serials to
/// their pages (pointless on a certificate's own page).
pub fn entries_table(entries: &[Entry], link_subjects: bool) -> String {
    if entries.is_empty() {
        return "<p>No audit records.</p>".into();
    }
    let mut out = String::from(
        "<table class=\"audit\"><tr><th class=\"num\">#</th><th>at</th><th>action</th>\
         <th>actor</th><th>subject</th><th>detail</th></tr>",
    );
    for e in entries {
        let subject = if link_subjects && !e.action.starts_with("token") {
            format!(
                "<a class=\"mono\" href=\"/ui/certificates/{}\">{}</a>",
                html::url_encode(&e.subject),
                esc(&e.subject)
            )
        } else {
            format!("<span class=\"mono\">{}</span>", esc(&e.subject))
        };
        let _ = write!(
            out,
            "<tr><td class=\"num\">{}</td><td>{}</td><td><strong>{}</strong></td><td>{}</td>\
             <td>{subject}</td><td><code>{}</code></td></tr>",
            e.seq,
            esc(&e.at),
            esc(&e.action),
            esc(&e.actor),
            esc(&e.detail)
        );
    }
    out.push_str("</table>");
    out
}

/// The outcome of walking the chain.
#[derive(Debug, serde::Serialize)]
pub struct ChainStatus {
    pub intact: bool,
    /// Records in the store.
    pub records: usize,
    /// The first record that fails, when broken.
    pub broken_at: Option<i64>,
    pub problem: Option<String>,
    /// "intact, N records" or "BROKEN at record #k: …".
    pub summary: String,
}

#[derive(Debug, serde::Serialize)]
pub struct AuditLog {
    pub chain: ChainStatus,
    pub page: i64,
    pub per_page: i64,
    pub pages: i64,
    pub total: i64,
    /// Newest first.
    pub records: Vec<Entry>,
}

#[derive(Debug, serde::Deserialize)]
pub struct AuditQuery {
    page: Option<String>,
    per_page: Option<String>,
}

impl Screen for AuditLog {
    type Params = Params<AuditQuery>;

    async fn load(
        state: &AppState,
        _: &Admitted,
        Params(q): Params<AuditQuery>,
    ) -> Result<AuditLog, UiError> {
        let paging = Paging::parse(q.page.as_deref(), q.per_page.as_deref())?;
        // Verifying reads the whole chain, and the store has no paged audit
        // query yet, so the page is cut from a full read too: linear in the
        // log's length, twice. Fine for thousands of records; a paged query
        // in the store is the fix when logs grow.
        let all = state.auth.store.audit_records(None).await?;
        let chain = match state.auth.store.verify_audit().await? {
            Ok((n, _head)) => ChainStatus {
                intact: true,
                records: n,
                broken_at: None,
                problem: None,
                summary: format!("intact, {n} records"),
            },
            Err(b) => ChainStatus {
                intact: false,
                records: all.len(),
                broken_at: Some(b.seq),
                summary: format!("BROKEN at record #{}: {}", b.seq, b.problem),
                problem: Some(b.problem),
            },
        };
        let total = all.len() as i64;
        let records = all
            .iter()
            .rev()
            .skip(usize::try_from(paging.offset()).unwrap_or(usize::MAX))
            .take(usize::try_from(paging.per_page).unwrap_or(0))
            .map(Entry::new)
            .collect();
        Ok(AuditLog {
            chain,
            page: paging.page,
            per_page: paging.per_page,
            pages: paging.pages(total),
            total,
            records,
        })
    }

    fn render(&self) -> Page {
        let (class, advice) = if self.chain.intact {
            ("ok", "")
        } else {
            (
                "bad",
                "<p>Records were edited, inserted or deleted outside Symbolon. Compare with a \
                 backup or replica; <code>symbolon ca audit verify</code> reports the same.</p>",
            )
        };
        let mut body = format!(
            "<p id=\"chain\" class=\"banner {class}\">Audit chain {}</p>{advice}",
            esc(&self.chain.summary)
        );
        body.push_str(&entries_table(&self.records, true));
        let paging = Paging {
            page: self.page,
            per_page: self.per_page,
        };
        let per_page = paging.per_page_param();
        body.push_str(&html::pager(
            "/ui/audit",
            &[("per_page", &per_page)],
            self.page,
            self.pages,
            self.total,
        ));
        let page = self.page.to_string();
        Page {
            title: "Audit log".into(),
            nav: Nav::Audit,
            json: Some(link(
                "/ui/api/audit",
                &[("page", &page), ("per_page", &per_page)],
            )),
            body,
        }
    }
}
