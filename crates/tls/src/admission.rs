//! Connection admission for TLS servers (the gateway and `ca serve`): at
//! most `max_connections` at once, and a flood of connections that never
//! finish their handshake, or finish it and then send no request, cannot
//! lock real clients out.
//!
//! A plain cap plus timeouts is what HAProxy offers: once the cap is
//! reached by connections that send nothing, every new client is refused
//! until a timeout frees a slot, and an attacker who keeps opening
//! connections keeps the server shut for as long as they like. Here, when
//! every slot is taken, the newcomer takes the slot of
//! 1. the oldest connection still in its handshake, or else
//! 2. the connection that has been idle longest (established, with no
//!    request in flight: nginx, too, reuses idle keep-alive connections
//!    when it runs out),
//!
//! which is closed. Connections with a request in flight are never
//! evicted; only when every slot holds one is the newcomer refused. To
//! evict a real client during its handshake, an attacker must open
//! `max_connections` new connections while it is under way (one or two
//! round trips: milliseconds nearby, a few hundred over the internet), so
//! the margin grows with `max_connections`; size it for the handshake rate
//! an attacker could reach within one round trip.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};

/// The slots of one listener.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    evictable: Mutex<Evictable>,
    next_id: AtomicU64,
}

/// The connections whose slots a newcomer may take, each holding its slot
/// and the means to stop it; oldest first in each map (ids increase).
#[derive(Debug, Default)]
struct Evictable {
    handshaking: BTreeMap<u64, Pending>,
    /// Keyed by when they became idle.
    idle: BTreeMap<u64, IdleSlot>,
}

#[derive(Debug)]
struct Pending {
    slot: OwnedSemaphorePermit,
    evict: oneshot::Sender<()>,
}

#[derive(Debug)]
struct IdleSlot {
    slot: OwnedSemaphorePermit,
    evict: Arc<Notify>,
}

/// How a new connection was let in.
#[derive(Debug)]
pub enum Admit {
    /// A free slot.
    Free(Handshaking),
    /// The slot of the oldest connection still in its handshake, or of the
    /// one idle longest, which is being closed.
    Evicted(Handshaking),
    /// Every slot holds a connection with a request in flight: close the
    /// newcomer.
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

/// The slot of an established connection, until it is dropped. While the
/// connection is [`Slot::idle`] a newcomer may take it; [`Slot::evicted`]
/// then resolves and the connection must close.
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    state: Mutex<SlotState>,
    evicted: Arc<Notify>,
}

#[derive(Debug)]
enum SlotState {
    Busy(OwnedSemaphorePermit),
    /// Its permit is in `Evictable::idle` under this key.
    Idle(u64),
    /// Taken by a newcomer.
    Gone,
}

impl Admission {
    pub fn new(max_connections: usize) -> Arc<Admission> {
        Arc::new(Admission {
            slots: Arc::new(Semaphore::new(max_connections)),
            evictable: Mutex::new(Evictable::default()),
            next_id: AtomicU64::new(0),
        })
    }

    /// Lets a new connection in, evicting the oldest pending handshake,
    /// or else the connection idle longest, when there is no free slot.
    pub fn admit(self: &Arc<Admission>) -> Admit {
        let mut ev = self.lock();
        let (slot, evicted) = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => (slot, false),
            Err(_) => {
                // Its task sees this at its next poll and ends; the slot
                // is already ours.
                if let Some((_, oldest)) = ev.handshaking.pop_first() {
                    let _ = oldest.evict.send(());
                    (oldest.slot, true)
                } else if let Some((_, idlest)) = ev.idle.pop_first() {
                    idlest.evict.notify_one();
                    (idlest.slot, true)
                } else {
                    return Admit::Full;
                }
            }
        };
        let id = self.next_id();
        let (evict, rx) = oneshot::channel();
        ev.handshaking.insert(id, Pending { slot, evict });
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
    #[cfg(test)]
    pub(crate) fn handshaking(&self) -> usize {
        self.lock().handshaking.len()
    }

    /// Established connections with no request in flight.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.lock().idle.len()
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Evictable> {
        // The maps stay consistent even if a holder panicked: every
        // operation on them is a single insert or remove.
        self.evictable
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

    /// The handshake finished: the slot is the connection's, busy (not
    /// to be taken) until [`Slot::idle`]. `Err` if it was taken meanwhile.
    pub fn established(self) -> Result<Slot, Evicted> {
        let entry = self.admission.lock().handshaking.remove(&self.id);
        entry
            .map(|p| Slot {
                admission: self.admission.clone(),
                state: Mutex::new(SlotState::Busy(p.slot)),
                evicted: Arc::new(Notify::new()),
            })
            .ok_or(Evicted)
    }
}

impl Drop for Handshaking {
    /// A handshake that failed or timed out gives its slot back.
    fn drop(&mut self) {
        self.admission.lock().handshaking.remove(&self.id);
    }
}

impl Slot {
    fn state(&self) -> std::sync::MutexGuard<'_, SlotState> {
        // One assignment per update: consistent even after a panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// No request in flight: a newcomer may take this slot.
    pub fn idle(&self) {
        let mut state = self.state();
        if matches!(*state, SlotState::Busy(_)) {
            let id = self.admission.next_id();
            let SlotState::Busy(slot) = std::mem::replace(&mut *state, SlotState::Idle(id)) else {
                unreachable!("checked just above");
            };
            self.admission.lock().idle.insert(
                id,
                IdleSlot {
                    slot,
                    evict: self.evicted.clone(),
                },
            );
        }
    }

    /// A request arrived: the slot may no longer be taken. `Err` if it
    /// already was; the connection must then close without serving it.
    pub fn busy(&self) -> Result<(), Evicted> {
        let mut state = self.state();
        match *state {
            SlotState::Busy(_) => Ok(()),
            SlotState::Gone => Err(Evicted),
            SlotState::Idle(id) => match self.admission.lock().idle.remove(&id) {
                Some(i) => {
                    *state = SlotState::Busy(i.slot);
                    Ok(())
                }
                None => {
                    *state = SlotState::Gone;
                    Err(Evicted)
                }
            },
        }
    }

    /// Resolves once a newcomer has taken this slot while it was idle.
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

impl Drop for Slot {
    /// An idle connection that closes takes its slot out of the idle list.
    fn drop(&mut self) {
        if let SlotState::Idle(id) = *self.state() {
            self.admission.lock().idle.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
    async fn when_no_handshake_is_pending_the_connection_idle_longest_makes_room() {
        let a = Admission::new(3);
        let first = handshaking(a.admit()).established().unwrap();
        let second = handshaking(a.admit()).established().unwrap();
        let busy = handshaking(a.admit()).established().unwrap();
        first.idle();
        second.idle();
        assert_eq!(a.idle(), 2);
        let newcomer = a.admit();
        assert!(matches!(newcomer, Admit::Evicted(_)), "{newcomer:?}");
        // The first one to go idle went first; it learns so and cannot
        // take a request any more.
        tokio::time::timeout(Duration::from_secs(1), first.evicted())
            .await
            .expect("the idle connection was not told");
        assert_eq!(first.busy(), Err(Evicted));
        // The second one is still there and can take a request.
        assert_eq!(second.busy(), Ok(()));
        // Three connections with requests in flight: nothing to take.
        let _newcomer = handshaking(newcomer).established().unwrap();
        let _ = &busy;
        assert!(matches!(a.admit(), Admit::Full));
    }

    #[tokio::test]
    async fn a_connection_busy_again_is_not_evicted_and_idle_again_is_last_in_line() {
        let a = Admission::new(2);
        let x = handshaking(a.admit()).established().unwrap();
        let y = handshaking(a.admit()).established().unwrap();
        x.idle();
        y.idle();
        x.busy().unwrap();
        x.idle();
        // y went idle before x's second idle: y goes first.
        assert!(matches!(a.admit(), Admit::Evicted(_)));
        assert_eq!(y.busy(), Err(Evicted));
        assert_eq!(x.busy(), Ok(()));
    }

    #[tokio::test]
    async fn a_pending_handshake_goes_before_an_idle_connection() {
        let a = Admission::new(2);
        let idle = handshaking(a.admit()).established().unwrap();
        idle.idle();
        let mut pending = handshaking(a.admit());
        assert!(matches!(a.admit(), Admit::Evicted(_)));
        assert_eq!(
            pending.run(std::future::pending::<()>()).await,
            Err(Evicted)
        );
        assert_eq!(idle.busy(), Ok(()));
    }

    #[tokio::test]
    async fn an_idle_connection_that_closes_frees_its_slot() {
        let a = Admission::new(1);
        let s = handshaking(a.admit()).established().unwrap();
        s.idle();
        drop(s);
        assert_eq!(a.idle(), 0);
        assert!(matches!(a.admit(), Admit::Free(_)));
    }

    #[tokio::test]
    async fn zero_slots_refuse_everyone() {
        let a = Admission::new(0);
        assert!(matches!(a.admit(), Admit::Full));
    }
}
