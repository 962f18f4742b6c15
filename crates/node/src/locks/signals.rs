//! `LockSignals`: how the engine's host tells the lock manager that partitions changed, without
//! taking any lock. The engine may call its host while holding a partition lock, and the lock
//! manager takes partition locks while holding its own, so the host only sets a flag and wakes
//! the manager's task, which does the work later.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// One flag per partition and a wake-up for the lock manager's task.
pub(crate) struct LockSignals {
    changed: Box<[AtomicBool]>,
    notify: Notify,
}

impl LockSignals {
    pub(crate) fn new(num_partitions: u32) -> LockSignals {
        LockSignals {
            changed: (0..num_partitions)
                .map(|_| AtomicBool::new(false))
                .collect(),
            notify: Notify::new(),
        }
    }

    /// `partition` changed (ownership, fence, handoff end): the manager re-tries its waiters.
    pub(crate) fn mark(&self, partition: u32) {
        if let Some(flag) = self.changed.get(partition as usize) {
            flag.store(true, Ordering::Release);
            // A stored permit: a mark made while the task is busy is seen on its next wait.
            self.notify.notify_one();
        }
    }

    /// Resolves once some partition was marked since the last `take_changed`.
    pub(crate) async fn changed(&self) {
        self.notify.notified().await;
    }

    /// The partitions marked since the last call, clearing their flags.
    pub(crate) fn take_changed(&self) -> Vec<u32> {
        self.changed
            .iter()
            .enumerate()
            .filter(|(_, flag)| flag.swap(false, Ordering::AcqRel))
            .map(|(partition, _)| partition as u32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn marked_partitions_are_taken_once_and_wake_the_waiter() {
        let signals = LockSignals::new(8);
        signals.mark(5);
        signals.mark(2);
        signals.mark(5);
        signals.mark(99);
        // The permit stored by the marks resolves at once.
        signals.changed().await;
        assert_eq!(signals.take_changed(), vec![2, 5]);
        assert!(signals.take_changed().is_empty());
    }
}
