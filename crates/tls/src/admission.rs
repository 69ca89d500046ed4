//! Connection admission for TLS servers (the gateway and `ca serve`): at
//! most `max_connections` at once, and a flood of connections that never
//! finish their handshake cannot lock real clients out.
//!
//! A plain cap plus a handshake timeout is what nginx and HAProxy offer:
//! once the cap is reached by connections that send nothing, every new
//! client is refused until the timeout frees a slot, and an attacker who
//! keeps opening connections keeps the server shut for as long as they
//! like. Here, when every slot is taken, the newcomer takes the slot of the
//! *oldest connection still in its handshake*, which is closed. Connections
//! that finished their handshake are never evicted; only when every slot
//! holds one is the newcomer refused. To evict a real client, an attacker
//! must open `max_connections` new connections while that client's
//! handshake is under way (one or two round trips: milliseconds nearby,
//! a few hundred over the internet), so the margin grows with
//! `max_connections`; size it for the handshake rate an attacker could
//! reach within one round trip.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// The slots of one listener.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    /// Connections still in their handshake, oldest first (ids increase),
    /// each holding its slot and the means to stop it.
    handshaking: Mutex<BTreeMap<u64, Pending>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Pending {
    slot: OwnedSemaphorePermit,
    evict: oneshot::Sender<()>,
}

/// How a new connection was let in.
#[derive(Debug)]
pub enum Admit {
    /// A free slot.
    Free(Handshaking),
    /// The slot of the oldest connection still in its handshake, which is
    /// being closed.
    Evicted(Handshaking),
    /// Every slot holds an established connection: close the newcomer.
    Full,
}

/// A connection doing its handshake; it holds a slot that a newcomer may
/// take from it until [`Handshaking::established`].
#[derive(Debug)]
pub struct Handshaking {
    admission: Arc<Admission>,
    id: u64,
    evicted: oneshot::Receiver<()>,
}

/// The handshake did not finish: a newer connection took the slot.
#[derive(Debug, PartialEq, Eq)]
pub struct Evicted;

/// A slot held by an established connection until it is dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Admission {
    pub fn new(max_connections: usize) -> Arc<Admission> {
        Arc::new(Admission {
            slots: Arc::new(Semaphore::new(max_connections)),
            handshaking: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// Lets a new connection in, evicting the oldest pending handshake
    /// when there is no free slot.
    pub fn admit(self: &Arc<Admission>) -> Admit {
        let mut pending = self.lock();
        let (slot, evicted) = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => (slot, false),
            Err(_) => match pending.pop_first() {
                Some((_, oldest)) => {
                    // Its task sees this at its next poll and ends; the
                    // slot is already ours.
                    let _ = oldest.evict.send(());
                    (oldest.slot, true)
                }
                None => return Admit::Full,
            },
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (evict, rx) = oneshot::channel();
        pending.insert(id, Pending { slot, evict });
        let h = Handshaking {
            admission: self.clone(),
            id,
            evicted: rx,
        };
        if evicted {
            Admit::Evicted(h)
        } else {
            Admit::Free(h)
        }
    }

    /// Connections still in their handshake.
    pub fn handshaking(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Pending>> {
        // The map stays consistent even if a holder panicked: every
        // operation on it is a single insert or remove.
        self.handshaking
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Handshaking {
    /// Runs `handshake` unless a newcomer takes this slot first.
    pub async fn run<F: Future>(&mut self, handshake: F) -> Result<F::Output, Evicted> {
        tokio::select! {
            biased;
            // The sender is dropped only when the entry leaves the map,
            // which during `run` means eviction.
            _ = &mut self.evicted => Err(Evicted),
            out = handshake => Ok(out),
        }
    }

    /// The handshake finished: the slot is kept for the connection's
    /// life and can no longer be taken. `Err` if it was taken meanwhile.
    pub fn established(self) -> Result<Slot, Evicted> {
        let entry = self.admission.lock().remove(&self.id);
        entry.map(|p| Slot { _permit: p.slot }).ok_or(Evicted)
    }
}

impl Drop for Handshaking {
    /// A handshake that failed or timed out gives its slot back.
    fn drop(&mut self) {
        self.admission.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshaking(a: Admit) -> Handshaking {
        match a {
            Admit::Free(h) | Admit::Evicted(h) => h,
            Admit::Full => panic!("refused"),
        }
    }

    #[tokio::test]
    async fn a_newcomer_evicts_the_oldest_pending_handshake_when_full() {
        let a = Admission::new(2);
        let mut first = handshaking(a.admit());
        let _second = handshaking(a.admit());
        let third = a.admit();
        assert!(matches!(third, Admit::Evicted(_)), "{third:?}");
        // The first one's handshake is stopped however long it would run.
        let r = first.run(std::future::pending::<()>()).await;
        assert_eq!(r, Err(Evicted));
        assert_eq!(first.established().err(), Some(Evicted));
        assert_eq!(a.handshaking(), 2);
        assert_eq!(a.slots.available_permits(), 0);
    }

    #[tokio::test]
    async fn established_connections_are_never_evicted() {
        let a = Admission::new(2);
        let mut one = handshaking(a.admit());
        assert_eq!(one.run(async { 7 }).await, Ok(7));
        let _one = one.established().unwrap();
        let _two = handshaking(a.admit()).established().unwrap();
        assert!(matches!(a.admit(), Admit::Full));
        assert!(matches!(a.admit(), Admit::Full));
        assert_eq!(a.handshaking(), 0);
    }

    #[tokio::test]
    async fn eviction_takes_only_pending_handshakes_oldest_first() {
        let a = Admission::new(3);
        let _est = handshaking(a.admit()).established().unwrap();
        let mut old = handshaking(a.admit());
        let mut young = handshaking(a.admit());
        let _new = handshaking(a.admit());
        assert_eq!(old.run(std::future::pending::<()>()).await, Err(Evicted));
        // The younger one is still running and can finish.
        assert_eq!(young.run(async { 1 }).await, Ok(1));
        assert!(young.established().is_ok());
    }

    #[tokio::test]
    async fn slots_come_back_when_handshakes_fail_and_connections_close() {
        let a = Admission::new(1);
        let failed = handshaking(a.admit());
        drop(failed);
        assert_eq!(a.slots.available_permits(), 1);
        let conn = handshaking(a.admit()).established().unwrap();
        assert!(matches!(a.admit(), Admit::Full));
        drop(conn);
        assert!(matches!(a.admit(), Admit::Free(_)));
    }

    #[tokio::test]
    async fn zero_slots_refuse_everyone() {
        let a = Admission::new(0);
        assert!(matches!(a.admit(), Admit::Full));
    }
}
