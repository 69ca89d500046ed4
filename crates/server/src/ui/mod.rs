//! The dashboard at `/ui/`: read-only, server-rendered HTML with inline SVG
//! charts and no JavaScript, so there is no build step and nothing is loaded
//! from any other host. Every page has a JSON twin under `/ui/api/` built
//! from the same data, for scripts and for tests.
//!
//! Sorting, filtering and paging are plain links and GET forms. Access is
//! decided in [`access`]; the security headers and the rendering of every
//! refusal (HTML or JSON, by path) happen in one place, [`present`].

mod access;
mod audit;
mod expiry;
mod html;
mod inventory;
mod matrix;
mod overview;
mod trust;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use symbolon_store::StoreError;

use crate::api::AppState;
use access::Admitted;
use html::{Nav, Page};

/// Inventory and audit pages show this many rows unless `per_page` says.
pub const PER_PAGE: i64 = 50;
/// The store returns at most this many rows at once.
const MAX_PER_PAGE: i64 = 500;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(as_html::<overview::Overview>))
        .route("/ui/api/overview", get(as_json::<overview::Overview>))
        .route("/ui/certificates", get(as_html::<inventory::Inventory>))
        .route("/ui/api/certificates", get(as_json::<inventory::Inventory>))
        .route(
            "/ui/certificates/{serial}",
            get(as_html::<inventory::Certificate>),
        )
        .route(
            "/ui/api/certificates/{serial}",
            get(as_json::<inventory::Certificate>),
        )
        .route("/ui/expiry", get(as_html::<expiry::Expiry>))
        .route("/ui/api/expiry", get(as_json::<expiry::Expiry>))
        .route("/ui/trust", get(as_html::<trust::Trust>))
        .route("/ui/api/trust", get(as_json::<trust::Trust>))
        .route("/ui/matrix", get(as_html::<matrix::Matrix>))
        .route("/ui/api/matrix", get(as_json::<matrix::Matrix>))
        .route("/ui/matrix/cell", get(as_html::<matrix::CellDetail>))
        .route("/ui/api/matrix/cell", get(as_json::<matrix::CellDetail>))
        .route("/ui/audit", get(as_html::<audit::AuditLog>))
        .route("/ui/api/audit", get(as_json::<audit::AuditLog>))
        // Without this, unknown dashboard paths would get the API's JSON
        // 404 and none of the headers below.
        .route("/ui/{*rest}", any(not_found))
        .layer(middleware::from_fn(present))
}

/// One dashboard page: its data (also its JSON), how the data is loaded,
/// and how it is shown.
trait Screen: serde::Serialize + Sized + Send + 'static {
    /// What the page reads from the request (query, path).
    type Params: FromRequestParts<Arc<AppState>> + Send;

    fn load(
        state: &AppState,
        who: &Admitted,
        params: Self::Params,
    ) -> impl Future<Output = Result<Self, UiError>> + Send;

    fn render(&self) -> Page;
}

// `Admitted` comes first so that a caller who may not look learns nothing,
// not even that a query parameter is malformed.
async fn as_html<S: Screen>(
    who: Admitted,
    State(state): State<Arc<AppState>>,
    params: S::Params,
) -> Result<Response, UiError> {
    let data = S::load(&state, &who, params).await?;
    Ok(html::respond(
        StatusCode::OK,
        &data.render(),
        Some(&who.who),
    ))
}

async fn as_json<S: Screen>(
    who: Admitted,
    State(state): State<Arc<AppState>>,
    params: S::Params,
) -> Result<Json<S>, UiError> {
    Ok(Json(S::load(&state, &who, params).await?))
}

async fn not_found(_: Admitted, uri: axum::http::Uri) -> UiError {
    UiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no dashboard page at {}", uri.path()),
    )
}

// === errors ===

/// A refusal or failure. It travels as a response extension and is
/// rendered by [`present`], which knows whether the caller asked for a page
/// or for JSON.
#[derive(Clone, Debug)]
pub struct UiError {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

impl UiError {
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> UiError {
        UiError {
            status,
            reason,
            message: message.into(),
        }
    }

    pub fn malformed(message: impl Into<String>) -> UiError {
        UiError::new(StatusCode::BAD_REQUEST, "malformed", message)
    }
}

impl From<StoreError> for UiError {
    fn from(e: StoreError) -> UiError {
        tracing::error!("dashboard: store failure: {e}");
        UiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the CA's store cannot be read right now; try again shortly",
        )
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let mut r = self.status.into_response();
        r.extensions_mut().insert(self);
        r
    }
}

/// Renders refusals and adds the security headers to every dashboard
/// response: no scripts, frames, referrers or caching (pages show
/// certificate inventories and audit records).
async fn present(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/ui/api/");
    let mut resp = next.run(req).await;
    if let Some(e) = resp.extensions_mut().remove::<UiError>() {
        resp = if api {
            (
                e.status,
                Json(serde_json::json!({"reason": e.reason, "message": e.message})),
            )
                .into_response()
        } else {
            html::respond(e.status, &error_page(&e), None)
        };
    }
    let h = resp.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; script-src 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

fn error_page(e: &UiError) -> Page {
    use std::fmt::Write as _;
    let title = match e.status {
        StatusCode::FORBIDDEN => "Access denied",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "Bad request",
        _ => "Unavailable",
    };
    let mut body = format!(
        "<p class=\"banner bad\">{} <code>{}</code></p>",
        html::esc(&e.message),
        html::esc(e.reason)
    );
    if e.status == StatusCode::FORBIDDEN {
        let _ = write!(
            body,
            "<h2>How to get access</h2><ol>\
             <li>On the CA host, issue a client certificate for an admin identity: \
             <code>symbolon ca issue --dir CA_DIR --spiffe-id spiffe://TRUST_DOMAIN/admin \
             --profile client --out admin</code></li>\
             <li>Make sure that identity is listed in <code>admins</code> in the CA's \
             <code>ca.toml</code> (then restart <code>symbolon ca serve</code>).</li>\
             <li>Present it: <code>curl --cacert root.crt --cert admin.crt --key admin.key \
             https://…/ui/</code>, or import <code>admin.crt</code> and <code>admin.key</code> \
             into your browser (for example as PKCS#12: <code>openssl pkcs12 -export \
             -in admin.crt -inkey admin.key -out admin.p12</code>).</li></ol>\
             <p>Without a certificate the dashboard is open only to connections from the \
             CA's own machine (loopback), e.g. through <code>ssh -L 8443:localhost:8443 \
             ca-host</code>. A certificate that is not an admin's, or is revoked, is refused \
             from anywhere.</p>"
        );
    }
    Page {
        title: title.into(),
        nav: Nav::None,
        json: None,
        body,
    }
}

// === parameters ===

/// Query parameters, with a malformed query refused as `malformed`.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequestParts<Arc<AppState>> for Params<T> {
    type Rejection = UiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &Arc<AppState>,
    ) -> Result<Params<T>, UiError> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(t)| Params(t))
            .map_err(|e| UiError::malformed(e.body_text()))
    }
}

/// An optional parameter; empty counts as absent (forms send `q=`).
fn parse_opt<T: FromStr>(name: &str, v: Option<&str>, hint: &str) -> Result<Option<T>, UiError> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| UiError::malformed(format!("{name}={s:?}: {hint}"))),
    }
}

/// One of a fixed set of words (the first is the default).
fn one_of(name: &str, v: Option<&str>, allowed: &[&'static str]) -> Result<&'static str, UiError> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(allowed[0]),
        Some(s) => allowed.iter().copied().find(|a| *a == s).ok_or_else(|| {
            UiError::malformed(format!("{name}={s:?}: use one of {}", allowed.join(", ")))
        }),
    }
}

/// Which rows of a long list to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    /// 1-based.
    pub page: i64,
    pub per_page: i64,
}

impl Paging {
    fn parse(page: Option<&str>, per_page: Option<&str>) -> Result<Paging, UiError> {
        let page = parse_opt::<i64>("page", page, "a page number, 1 or more")?.unwrap_or(1);
        let per_page =
            parse_opt::<i64>("per_page", per_page, "a number from 1 to 500")?.unwrap_or(PER_PAGE);
        if page < 1 {
            return Err(UiError::malformed(format!(
                "page={page}: pages are numbered from 1"
            )));
        }
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(UiError::malformed(format!(
                "per_page={per_page}: use a number from 1 to {MAX_PER_PAGE}"
            )));
        }
        Ok(Paging { page, per_page })
    }

    fn offset(self) -> i64 {
        (self.page - 1).saturating_mul(self.per_page)
    }

    fn pages(self, total: i64) -> i64 {
        (total + self.per_page - 1) / self.per_page
    }

    /// `per_page` for links, empty (left out) when it is the default.
    fn per_page_param(self) -> String {
        if self.per_page == PER_PAGE {
            String::new()
        } else {
            self.per_page.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_defaults_and_refusals() {
        let p = Paging::parse(None, None).unwrap();
        assert_eq!((p.page, p.per_page, p.offset()), (1, 50, 0));
        assert_eq!(p.pages(0), 0);
        assert_eq!(p.pages(50), 1);
        assert_eq!(p.pages(51), 2);
        let p = Paging::parse(Some("3"), Some("7")).unwrap();
        assert_eq!((p.offset(), p.per_page_param()), (14, "7".to_string()));
        assert_eq!(Paging::parse(Some(""), Some(" ")).unwrap().page, 1);
        for (page, per) in [
            ("0", "5"),
            ("x", "5"),
            ("1", "0"),
            ("1", "501"),
            ("-2", "5"),
        ] {
            let e = Paging::parse(Some(page), Some(per)).unwrap_err();
            assert_eq!(e.reason, "malformed", "{page} {per}");
            assert!(e.message.contains('='), "{}", e.message);
        }
    }

    #[test]
    fn one_of_names_the_choices() {
        assert_eq!(one_of("dir", None, &["asc", "desc"]).unwrap(), "asc");
        assert_eq!(
            one_of("dir", Some("desc"), &["asc", "desc"]).unwrap(),
            "desc"
        );
        let e = one_of("dir", Some("up"), &["asc", "desc"]).unwrap_err();
        assert_eq!(e.message, "dir=\"up\": use one of asc, desc");
    }
}
