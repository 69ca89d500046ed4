//! Who may see the dashboard: the holder of an admin client certificate of
//! this CA (verified by TLS, not revoked in the store), or, with no
//! certificate at all, a client on this machine (loopback).
//!
//! Loopback access is what lets an operator open the dashboard in a browser
//! on the CA host without importing a client certificate first. Its price:
//! anything that relays connections from loopback (a reverse proxy or SSH
//! tunnel on the CA host) grants the same view, which is why the page is
//! read-only. The listener's own address is not known to handlers, so the
//! client's address decides; a non-loopback listener reached from loopback
//! is still a local caller.
//!
//! A caller that presents a certificate is judged by it alone: a non-admin
//! or revoked certificate is refused even from loopback, so an identity
//! never gains by being local and a revocation takes effect everywhere.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use symbolon_core::PeerCert;

use super::UiError;
use crate::api::{AppState, Peer, Remote};

/// Proof that the request may see the dashboard. Only this module builds
/// one, and every page's loader takes it, so no page data is read for a
/// caller who was not admitted.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// Who is looking, for the page header.
    pub who: String,
    _proof: (),
}

impl FromRequestParts<Arc<AppState>> for Admitted {
    type Rejection = UiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Admitted, UiError> {
        let peer = parts.extensions.get::<Peer>().and_then(|p| p.0.as_ref());
        let remote = parts.extensions.get::<Remote>().map(|r| r.0);
        admit(state, peer, remote).await
    }
}

fn identity(p: &PeerCert) -> String {
    p.spiffe_id
        .clone()
        .or_else(|| p.dns.first().cloned())
        .unwrap_or_else(|| p.subject.clone())
}

/// The loopback test, also for IPv4 clients on an IPv6 socket
/// (`::ffff:127.0.0.1`). No address (a request that did not come through
/// `ca serve`'s listener) is not local.
pub fn is_local(remote: Option<SocketAddr>) -> bool {
    remote.is_some_and(|r| r.ip().to_canonical().is_loopback())
}

async fn admit(
    state: &AppState,
    peer: Option<&PeerCert>,
    remote: Option<SocketAddr>,
) -> Result<Admitted, UiError> {
    let Some(p) = peer else {
        if is_local(remote) {
            return Ok(Admitted {
                who: "local access (loopback, no client certificate)".into(),
                _proof: (),
            });
        }
        return Err(UiError::new(
            StatusCode::FORBIDDEN,
            "admin_required",
            "the dashboard needs an admin client certificate of this CA \
             (or a connection from the CA's own machine)",
        ));
    };
    // The chain was verified during the handshake; revocation lives in the
    // store, as for the admin API.
    let record = state.auth.store.get(&p.serial).await?;
    match record {
        None => Err(UiError::new(
            StatusCode::FORBIDDEN,
            "unknown_certificate",
            format!("client certificate {} was not issued by this CA", p.serial),
        )),
        Some(r) if r.revoked_at.is_some() => Err(UiError::new(
            StatusCode::FORBIDDEN,
            "revoked",
            format!("client certificate {} is revoked", p.serial),
        )),
        Some(_) if !state.auth.is_admin(p) => Err(UiError::new(
            StatusCode::FORBIDDEN,
            "not_admin",
            format!("{} is not an admin of this CA", identity(p)),
        )),
        Some(_) => Ok(Admitted {
            who: format!("{} (admin certificate {})", identity(p), p.serial),
            _proof: (),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_local() {
        let local = |s: &str| is_local(Some(s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))));
        assert!(local("127.0.0.1:5000"));
        assert!(local("127.3.2.1:5000"));
        assert!(local("[::1]:5000"));
        assert!(local("[::ffff:127.0.0.1]:5000"));
        assert!(!local("10.0.0.1:5000"));
        assert!(!local("[::ffff:10.0.0.1]:5000"));
        assert!(!local("0.0.0.0:5000"));
        assert!(!is_local(None));
    }
}
