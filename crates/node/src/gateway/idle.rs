//! How long an HTTP connection has had no request in flight, so that one
//! with none for `header_timeout` is closed.
//!
//! hyper closes an idle HTTP/1 connection itself (its header timeout runs
//! between requests), but its HTTP/2 server has no idle timeout: a client
//! that sends the preface and then nothing, or only pings, would keep its
//! slot for as long as it likes. A request is in flight from the moment
//! the service gets it until its response body has been sent in full, so
//! a long upload, a slow upstream or a long download is never cut short.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, SizeHint};

#[derive(Debug)]
struct State {
    in_flight: usize,
    idle_since: Instant,
}

/// One connection's requests in flight.
#[derive(Clone, Debug)]
pub struct Activity(Arc<Mutex<State>>);

/// A request in flight; dropped when its response body is done.
#[derive(Debug)]
pub struct Busy(Activity);

impl Activity {
    pub fn new() -> Activity {
        Activity(Arc::new(Mutex::new(State {
            in_flight: 0,
            idle_since: Instant::now(),
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A poisoned lock still holds consistent numbers: each update is
        // a single assignment.
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    pub fn busy(&self) -> Busy {
        self.with(|s| s.in_flight += 1);
        Busy(self.clone())
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
            }
        });
    }
}

/// A response body that keeps its request in flight until it is done.
pub struct Tracked<B> {
    inner: B,
    _busy: Busy,
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

    #[tokio::test]
    async fn a_connection_without_requests_is_idle_after_the_limit() {
        let a = Activity::new();
        let started = Instant::now();
        a.idle_for(Duration::from_millis(100)).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_request_in_flight_is_never_idle_and_the_clock_restarts_after_it() {
        let a = Activity::new();
        let busy = a.busy();
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
        let a = Activity::new();
        let body = Tracked::new(Full::new(bytes::Bytes::from_static(b"x")), a.busy());
        assert_eq!(a.with(|s| s.in_flight), 1);
        drop(body);
        assert_eq!(a.with(|s| s.in_flight), 0);
    }
}
