//! `SessionLocks`: the `SESSION` locks a client connection holds, released as soon as the
//! connection closes (a crashed web worker frees its lock at once instead of at the end of its
//! lease).
//!
//! The set is shared by the connection and by the tasks of its pending acquisitions, which add
//! their grant before answering; when the last of them lets go (the connection closed and no
//! acquisition is pending) its drop releases every lock still listed, through the lock manager
//! and the relay, with the token.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;

use super::LockManager;

/// Most `SESSION` locks one connection holds at once: a session handler holds one or two.
pub(crate) const SESSION_LOCKS_PER_CONNECTION_MAX: usize = 1024;

/// One lock a connection holds.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HeldLock {
    key: Bytes,
    token: u64,
    /// The lease deadline the grant or the last renewal reported, wall-clock ms.
    deadline_ms: u64,
}

/// The `SESSION` locks of one connection; cheap to clone (a shared set).
#[derive(Clone)]
pub(crate) struct SessionLocks(Arc<SessionLockSet>);

/// A reference to a connection's `SessionLocks` that does not keep them: a pending operation's
/// task holds one, so the set is dropped (and its locks released) when the connection closes.
pub(crate) struct WeakSessionLocks(Weak<SessionLockSet>);

impl WeakSessionLocks {
    /// The set, while its connection is open.
    pub(crate) fn upgrade(&self) -> Option<SessionLocks> {
        self.0.upgrade().map(SessionLocks)
    }
}

struct SessionLockSet {
    manager: Arc<LockManager>,
    /// A `parking_lot` mutex: held for a push or a scan of at most
    /// `SESSION_LOCKS_PER_CONNECTION_MAX` entries, never across an await.
    held: Mutex<Vec<HeldLock>>,
}

impl SessionLocks {
    pub(crate) fn new(manager: Arc<LockManager>) -> SessionLocks {
        SessionLocks(Arc::new(SessionLockSet {
            manager,
            held: Mutex::new(Vec::new()),
        }))
    }

    /// Whether the connection may take another `SESSION` lock; makes room by forgetting locks
    /// whose lease has run out (the store freed them already).
    pub(crate) fn has_room(&self, now_ms: u64) -> bool {
        let mut held = self.0.held.lock();
        if held.len() < SESSION_LOCKS_PER_CONNECTION_MAX {
            return true;
        }
        held.retain(|lock| lock.deadline_ms >= now_ms);
        held.len() < SESSION_LOCKS_PER_CONNECTION_MAX
    }

    pub(crate) fn downgrade(&self) -> WeakSessionLocks {
        WeakSessionLocks(Arc::downgrade(&self.0))
    }

    /// Records what `op` of this connection came to: a grant ties the lock to the connection,
    /// a release that ran (released, or not held with that token) unties it. A release that
    /// failed (`TRYAGAIN`, `UNCONFIRMED`) leaves the lock tied, so that the connection's close
    /// still releases it.
    pub(crate) fn settle(&self, key: &Bytes, op: &store::Op, reply: &store::Reply) {
        match (op, reply) {
            (_, store::Reply::LockGranted { token, deadline_ms }) => {
                self.remember(key, *token, *deadline_ms);
            }
            (store::Op::LockRelease { token, .. }, store::Reply::Integer(_)) => {
                self.forget(key, *token);
            }
            _ => {}
        }
    }

    /// A `SESSION` lock was granted to this connection.
    pub(crate) fn remember(&self, key: &Bytes, token: u64, deadline_ms: u64) {
        let mut held = self.0.held.lock();
        match held
            .iter_mut()
            .find(|lock| lock.key == *key && lock.token == token)
        {
            // The holder re-acquired: same token, new deadline.
            Some(lock) => lock.deadline_ms = deadline_ms,
            None => held.push(HeldLock {
                key: key.clone(),
                token,
                deadline_ms,
            }),
        }
    }

    /// The connection renewed a lock: its deadline moved.
    pub(crate) fn renewed(&self, key: &Bytes, token: u64, deadline_ms: u64) {
        if let Some(lock) = self
            .0
            .held
            .lock()
            .iter_mut()
            .find(|lock| lock.key == *key && lock.token == token)
        {
            lock.deadline_ms = deadline_ms;
        }
    }

    /// The connection released a lock (or tried to: with this token it no longer holds it
    /// either way).
    pub(crate) fn forget(&self, key: &Bytes, token: u64) {
        self.0
            .held
            .lock()
            .retain(|lock| !(lock.key == *key && lock.token == token));
    }
}

impl Drop for SessionLockSet {
    fn drop(&mut self) {
        for lock in std::mem::take(self.held.get_mut()) {
            self.manager.release_detached(lock.key, lock.token);
        }
    }
}
