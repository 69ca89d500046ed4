//! Whether an established HTTP connection has a request in flight: it
//! decides when the connection's slot may be taken by a newcomer (see
//! [`crate::Admission`]) and when a connection with none for
//! `header_timeout` is closed.
//!
//! hyper closes an idle HTTP/1 connection itself (its header timeout runs
//! between requests), but its HTTP/2 server has no idle timeout: a client
//! that sends the preface and then nothing, or only pings, would keep its
//! slot for as long as it likes. A request is in flight from the moment
//! the service gets it until its response body has been sent in full, so
//! a long upload, a slow upstream or a long download is never cut short,
//! and never evicted.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, SizeHint};

use crate::admission::{Evicted, Slot};

#[derive(Debug)]
struct State {
    in_flight: usize,
    idle_since: Instant,
}

/// One connection's requests in flight, and its slot.
#[derive(Clone, Debug)]
pub struct Activity(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    slot: Slot,
}

/// A request in flight; dropped when its response body is done.
#[derive(Debug)]
pub struct Busy(Activity);

impl Activity {
    /// A connection that has just finished its handshake: no request yet,
    /// so its slot may be taken.
    pub fn new(slot: Slot) -> Activity {
        slot.idle();
        Activity(Arc::new(Inner {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: Instant::now(),
            }),
            slot,
        }))
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A poisoned lock still holds consistent numbers: each update is
        // a single assignment.
        let mut s = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    /// A request arrived. `Err` if the slot was taken while the connection
    /// was idle: the request must not be served, the connection closes.
    pub fn busy(&self) -> Result<Busy, Evicted> {
        self.with(|s| {
            if s.in_flight == 0 {
                self.0.slot.busy()?;
            }
            s.in_flight += 1;
            Ok(Busy(self.clone()))
        })
    }

    /// Resolves once a newcomer has taken this connection's slot.
    pub async fn evicted(&self) {
        self.0.slot.evicted().await;
    }

    /// Resolves once no request has been in flight for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let wait = self.with(|s| {
                if s.in_flight > 0 {
                    Some(limit)
                } else {
                    limit.checked_sub(s.idle_since.elapsed())
                }
            });
            match wait {
                Some(w) if !w.is_zero() => tokio::time::sleep(w).await,
                _ => return,
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.with(|s| {
            s.in_flight -= 1;
            if s.in_flight == 0 {
                s.idle_since = Instant::now();
                self.0.0.slot.idle();
            }
        });
    }
}

/// A response body that keeps its request in flight until it is done.
pub struct Tracked<B> {
    inner: B,
    _busy: Busy,
}

impl<B> std::fmt::Debug for Tracked<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked").finish_non_exhaustive()
    }
}

impl<B> Tracked<B> {
    pub fn new(inner: B, busy: Busy) -> Tracked<B> {
        Tracked { inner, _busy: busy }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Admission, Admit};

    fn activity(a: &Arc<Admission>) -> Activity {
        match a.admit() {
            Admit::Free(h) => Activity::new(h.established().unwrap()),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_connection_without_requests_is_idle_after_the_limit() {
        let a = activity(&Admission::new(1));
        let started = Instant::now();
        a.idle_for(Duration::from_millis(100)).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_request_in_flight_is_never_idle_and_the_clock_restarts_after_it() {
        let a = activity(&Admission::new(1));
        let busy = a.busy().unwrap();
        let limit = Duration::from_millis(100);
        let idle = tokio::time::timeout(Duration::from_millis(300), a.idle_for(limit)).await;
        assert!(idle.is_err(), "idle while a request was in flight");
        drop(busy);
        let done = Instant::now();
        a.idle_for(limit).await;
        assert!(done.elapsed() >= limit);
    }

    #[tokio::test]
    async fn the_request_stays_in_flight_until_its_body_is_dropped() {
        use http_body_util::Full;
        let admission = Admission::new(1);
        let a = activity(&admission);
        assert_eq!(admission.idle(), 1, "no request yet: idle");
        let body = Tracked::new(
            Full::new(bytes::Bytes::from_static(b"x")),
            a.busy().unwrap(),
        );
        assert_eq!(a.with(|s| s.in_flight), 1);
        assert_eq!(admission.idle(), 0);
        assert!(
            matches!(admission.admit(), Admit::Full),
            "a busy slot was taken"
        );
        drop(body);
        assert_eq!(a.with(|s| s.in_flight), 0);
        assert_eq!(admission.idle(), 1);
    }

    #[tokio::test]
    async fn an_idle_connection_whose_slot_is_taken_serves_no_more_requests() {
        let admission = Admission::new(1);
        let a = activity(&admission);
        let _newcomer = admission.admit();
        tokio::time::timeout(Duration::from_secs(1), a.evicted())
            .await
            .expect("not told of the eviction");
        assert!(a.busy().is_err());
    }
}
