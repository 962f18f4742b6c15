//! What the engine knows about each peer link: acknowledged frames, the replication lag, and
//! whether the table exchange of this link is done.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

/// Most send-time samples kept per link. One sample covers every frame sent in the same
/// millisecond; when full, the newest sample absorbs later frames, which only makes the measured
/// lag larger (never smaller) than the truth.
const LAG_SAMPLES_MAX: usize = 4096;

/// One link to one peer member, for as long as the link lives. A new link gets a new
/// `PeerLink`, so nothing of a previous link leaks into it.
#[derive(Debug)]
pub(crate) struct PeerLink {
    /// Highest frame number the peer acknowledged.
    acked_frames: AtomicU64,
    /// The peer's table arrived on this link (the exchange of PROTOCOL.md §10 is done).
    exchanged: AtomicBool,
    /// The link is gone or the member left the view: waits on it are released.
    released: AtomicBool,
    /// (last frame sent in that millisecond, that millisecond), oldest first, unacknowledged only.
    /// A `parking_lot` mutex held for a few instructions; nothing blocks while holding it.
    lag_samples: Mutex<VecDeque<(u64, u64)>>,
}

impl PeerLink {
    pub(crate) fn new() -> PeerLink {
        PeerLink {
            acked_frames: AtomicU64::new(0),
            exchanged: AtomicBool::new(false),
            released: AtomicBool::new(false),
            lag_samples: Mutex::new(VecDeque::new()),
        }
    }

    /// Records that frame `frame` was queued at `now_ms`.
    pub(crate) fn note_sent(&self, frame: u64, now_ms: u64) {
        let mut samples = self.lag_samples.lock();
        let full = samples.len() >= LAG_SAMPLES_MAX;
        match samples.back_mut() {
            Some((last_frame, sent_ms)) if *sent_ms >= now_ms || full => {
                *last_frame = (*last_frame).max(frame);
            }
            _ => samples.push_back((frame, now_ms)),
        }
    }

    /// The peer acknowledged every frame up to `frames`.
    pub(crate) fn note_acked(&self, frames: u64) {
        self.acked_frames.fetch_max(frames, Ordering::AcqRel);
        let mut samples = self.lag_samples.lock();
        while samples.front().is_some_and(|&(frame, _)| frame <= frames) {
            samples.pop_front();
        }
    }

    pub(crate) fn acked_frames(&self) -> u64 {
        self.acked_frames.load(Ordering::Acquire)
    }

    /// Whether a wait for `frame` is over: acknowledged, or the link released.
    pub(crate) fn is_satisfied(&self, frame: u64) -> bool {
        self.released.load(Ordering::Acquire) || self.acked_frames() >= frame
    }

    pub(crate) fn release(&self) {
        self.released.store(true, Ordering::Release);
    }

    pub(crate) fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    pub(crate) fn set_exchanged(&self, exchanged: bool) {
        self.exchanged.store(exchanged, Ordering::Release);
    }

    pub(crate) fn is_exchanged(&self) -> bool {
        self.exchanged.load(Ordering::Acquire)
    }

    /// The oldest unacknowledged sample: (a frame to wait for, when it was queued).
    pub(crate) fn oldest_unacked(&self) -> Option<(u64, u64)> {
        self.lag_samples.lock().front().copied()
    }

    /// The newest unacknowledged frame queued before `cutoff_ms`: a writer that waits for it
    /// leaves no frame older than the cutoff unacknowledged behind it.
    pub(crate) fn newest_unacked_before(&self, cutoff_ms: u64) -> Option<u64> {
        self.lag_samples
            .lock()
            .iter()
            .take_while(|&&(_, sent_ms)| sent_ms < cutoff_ms)
            .last()
            .map(|&(frame, _)| frame)
    }

    /// Age of the oldest unacknowledged frame, in ms (0 when everything is acknowledged).
    pub(crate) fn lag_ms(&self, now_ms: u64) -> u64 {
        self.oldest_unacked()
            .map_or(0, |(_, sent_ms)| now_ms.saturating_sub(sent_ms))
    }
}

/// What the engine keeps per peer member, linked or not.
#[derive(Debug, Default)]
pub(crate) struct PeerState {
    /// The current link, if any.
    pub(crate) link: Option<std::sync::Arc<PeerLink>>,
    /// A table from this member arrived since it last entered this node's view (or since this
    /// node fenced itself). Until then the member may know records this node does not.
    pub(crate) exchanged_since_admission: bool,
    /// Consecutive digest comparisons that found the peer's table different.
    pub(crate) digest_mismatches: u32,
    /// The member must confirm that it knows it was removed as a backup (PROTOCOL.md §6).
    pub(crate) confirmation: Option<Confirmation>,
    /// When a `Merge` frame of this member was last applied here: a claim waiting for its
    /// merges gives up only after `confirm_timeout_ms` without one (it merges every partition
    /// it kept at once, one after another).
    pub(crate) merge_progress_ms: u64,
}

/// A member this node removed from records as a backup while it was still in the view, with no
/// link to tell it (a link reset, a failed send, a promotion that left it behind), has not
/// learnt it yet: were this node to crash now, it would promote itself under the record that
/// still lists it, without the writes made since. Until it confirms (it acknowledges the table
/// sent first on its next link), or leaves the view, or `EngineConfig::confirm_timeout_ms`
/// passes from the first drop, the writes that waited for it stay unacknowledged and the
/// partitions it was removed from execute nothing (PROTOCOL.md §6).
#[derive(Debug)]
pub(crate) struct Confirmation {
    /// Since the drop that started this confirmation (a link that ends after the table was
    /// acknowledged starts a new one).
    pub(crate) since_ms: u64,
    /// Since the first drop: a link that keeps coming back and ending cannot hold its
    /// acknowledgements longer than `confirm_timeout_ms + snapshot_done_timeout_ms` from it.
    pub(crate) first_since_ms: u64,
    /// Its links that ended meanwhile: released (their waits end) when this is over.
    pub(crate) ended: Vec<std::sync::Arc<PeerLink>>,
    /// The frame of the table sent on its current link, once one is up.
    pub(crate) table_frame: Option<u64>,
    /// The partitions, primary here, that wait for it.
    pub(crate) partitions: Vec<u32>,
    /// The highest frame number toward it when its last link ended (the host's count): every
    /// wait on its ended links is for a frame up to this one.
    pub(crate) ended_last_frame: u64,
    /// When it acknowledged the table on its current link: the partitions serve again (with
    /// it brought up to date in place), but its acknowledgements stay held while `missed` is
    /// not empty, for at most `EngineConfig::snapshot_done_timeout_ms`.
    pub(crate) table_acked_ms: Option<u64>,
    /// Partitions, primary here, whose frames to it were lost with a link (or never sent) while
    /// writes waited for them: those writes are released only once it holds them, when the
    /// partition's in-place snapshot to it is done (or it is given up on).
    pub(crate) missed: Vec<u32>,
    /// Bumped by every change that may add to `missed` or `partitions` (a link ending, a drop,
    /// lost frames): tells a check of `missed` made without the lock whether it still holds.
    pub(crate) generation: u64,
}

impl Confirmation {
    pub(crate) fn new(since_ms: u64) -> Confirmation {
        Confirmation {
            since_ms,
            first_since_ms: since_ms,
            ended: Vec::new(),
            table_frame: None,
            partitions: Vec::new(),
            ended_last_frame: 0,
            table_acked_ms: None,
            missed: Vec::new(),
            generation: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> PeerLink {
        PeerLink::new()
    }

    #[test]
    fn a_lagging_writer_waits_for_every_frame_older_than_the_bound() {
        let link = link();
        assert_eq!(link.newest_unacked_before(100), None);
        link.note_sent(1, 10);
        link.note_sent(2, 20);
        link.note_sent(3, 30);
        link.note_sent(4, 50);
        assert_eq!(link.newest_unacked_before(10), None);
        assert_eq!(link.newest_unacked_before(31), Some(3));
        assert_eq!(link.newest_unacked_before(1_000), Some(4));
        link.note_acked(3);
        assert_eq!(link.newest_unacked_before(31), None);
        assert_eq!(link.newest_unacked_before(51), Some(4));
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_unacknowledged_frame() {
        let link = link();
        assert_eq!(link.lag_ms(100), 0);
        link.note_sent(1, 10);
        link.note_sent(2, 10);
        link.note_sent(3, 20);
        assert_eq!(link.lag_ms(100), 90);
        assert_eq!(link.oldest_unacked(), Some((2, 10)));
        link.note_acked(1);
        assert_eq!(
            link.lag_ms(100),
            90,
            "frame 2 of that millisecond is still out"
        );
        link.note_acked(2);
        assert_eq!(link.lag_ms(100), 80);
        link.note_acked(3);
        assert_eq!(link.lag_ms(100), 0);
        assert!(link.is_satisfied(3) && !link.is_satisfied(4));
        link.release();
        assert!(link.is_satisfied(u64::MAX));
    }

    #[test]
    fn lag_samples_stay_bounded_and_never_underestimate() {
        let link = link();
        for frame in 1..=(LAG_SAMPLES_MAX as u64 * 2) {
            link.note_sent(frame, frame);
        }
        assert_eq!(link.lag_samples.lock().len(), LAG_SAMPLES_MAX);
        link.note_acked(LAG_SAMPLES_MAX as u64 - 1);
        // The last sample absorbed every later frame and kept its earlier time.
        let (frame, sent_ms) = link.oldest_unacked().expect("unacked frames remain");
        assert_eq!(frame, LAG_SAMPLES_MAX as u64 * 2);
        assert!(sent_ms <= LAG_SAMPLES_MAX as u64);
    }
}
