//! The phi-accrual failure detector (Hayashibara et al., 2004) with Akka's formulas.
//!
//! Per member it keeps a window of heartbeat inter-arrival times. Given the time since the last
//! arrival `t`, the suspicion level is `phi = -log10(P(an arrival comes later than t))` under a
//! normal distribution with the window's mean plus an acceptable pause, and the window's standard
//! deviation raised to a floor. `P` uses Akka's logistic approximation of the normal CDF:
//!
//! ```text
//! y   = (t - (mean + acceptable_pause)) / max(std_deviation, min_std_deviation)
//! e   = exp(-y * (1.5976 + 0.070566 * y^2))
//! phi = -log10(e / (1 + e))        when t > mean + acceptable_pause
//!     = -log10(1 - 1 / (1 + e))    otherwise
//! ```
//!
//! Since `phi` grows with `t`, the threshold is turned once into a `y` and every member gets an
//! exact deadline, `last_arrival + mean + acceptable_pause + y_threshold * std_deviation`. The
//! state machine declares a member down at that deadline and sleeps until the earliest one, instead
//! of polling `phi`; `phi` itself is only computed for status pages.

use std::collections::VecDeque;

/// Longest inter-arrival time recorded, in milliseconds. A longer gap is an outage, not rhythm,
/// and would only blow up the deviation (and the sums are kept exact in a u64).
const INTERVAL_MS_MAX: u64 = 60_000;

/// The parameters shared by every member's detector.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PhiParams {
    /// Phi at which a member is declared down.
    pub(crate) threshold: f64,
    /// Number of inter-arrival times kept.
    pub(crate) window_len: usize,
    /// Floor of the standard deviation, in milliseconds: a perfectly regular sender must not make
    /// the detector so sharp that the first late heartbeat is a death.
    pub(crate) min_std_deviation_ms: u64,
    /// Added to the mean, in milliseconds: a pause the detector accepts before phi rises.
    pub(crate) acceptable_pause_ms: u64,
    /// Expected inter-arrival time before any was measured (the heartbeat interval).
    pub(crate) first_estimate_ms: u64,
    /// `y` at which phi reaches `threshold`.
    y_threshold: f64,
}

impl PhiParams {
    pub(crate) fn new(
        threshold: f64,
        window_len: usize,
        min_std_deviation_ms: u64,
        acceptable_pause_ms: u64,
        first_estimate_ms: u64,
    ) -> PhiParams {
        PhiParams {
            threshold,
            window_len,
            min_std_deviation_ms,
            acceptable_pause_ms,
            first_estimate_ms,
            y_threshold: y_for_phi(threshold),
        }
    }

    /// How long after the last heartbeat a perfectly regular sender is declared down, in ms: the
    /// failure-detection time of a quiet network.
    pub(crate) fn quiet_detection_time_ms(&self) -> u64 {
        let y_ms = self.y_threshold * self.min_std_deviation_ms as f64;
        self.first_estimate_ms + self.acceptable_pause_ms + y_ms.ceil() as u64
    }
}

/// Phi of a standard-normal deviation `y` by Akka's logistic approximation.
pub(crate) fn phi_of_y(y: f64) -> f64 {
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    if y > 0.0 {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    }
}

/// The `y` at which [`phi_of_y`] reaches `phi` (bisection; phi is increasing in y).
fn y_for_phi(phi: f64) -> f64 {
    let (mut low, mut high) = (-10.0f64, 40.0f64);
    for _ in 0..200 {
        let middle = (low + high) / 2.0;
        if phi_of_y(middle) < phi {
            low = middle;
        } else {
            high = middle;
        }
    }
    high
}

/// One member's heartbeat history.
#[derive(Clone, Debug)]
pub(crate) struct PhiDetector {
    /// Inter-arrival times in ms, oldest first, at most `PhiParams::window_len`.
    intervals_ms: VecDeque<u64>,
    /// Exact sums of the window, so mean and deviation need no pass over it.
    sum_ms: u64,
    sum_squares_ms: u64,
    last_arrival_ms: u64,
}

impl PhiDetector {
    /// A detector whose first heartbeat arrived at `now_ms`. Like Akka, the history starts with two
    /// samples around the first estimate (mean `first`, deviation `first / 4`).
    pub(crate) fn new(params: &PhiParams, now_ms: u64) -> PhiDetector {
        let first = params.first_estimate_ms.min(INTERVAL_MS_MAX);
        let mut detector = PhiDetector {
            intervals_ms: VecDeque::with_capacity(params.window_len.min(1024)),
            sum_ms: 0,
            sum_squares_ms: 0,
            last_arrival_ms: now_ms,
        };
        detector.push(params, first - first / 4);
        detector.push(params, first + first / 4);
        detector
    }

    pub(crate) fn last_arrival_ms(&self) -> u64 {
        self.last_arrival_ms
    }

    /// Records a heartbeat arrival at `now_ms`.
    pub(crate) fn record_arrival(&mut self, params: &PhiParams, now_ms: u64) {
        let interval_ms = now_ms.saturating_sub(self.last_arrival_ms);
        // As in Akka, an arrival after the deadline does not enter the history (it was an outage,
        // not the sender's rhythm). A zero interval is a burst the receiver read late (a queue
        // drained after a pause) and says nothing about the sender either.
        if interval_ms > 0 && now_ms < self.down_deadline_ms(params) {
            self.push(params, interval_ms.min(INTERVAL_MS_MAX));
        }
        self.last_arrival_ms = self.last_arrival_ms.max(now_ms);
    }

    /// Restarts the clock without recording an interval: after this node itself was stalled it
    /// cannot tell how late the others really were.
    pub(crate) fn restart_clock(&mut self, now_ms: u64) {
        self.last_arrival_ms = self.last_arrival_ms.max(now_ms);
    }

    fn push(&mut self, params: &PhiParams, interval_ms: u64) {
        if self.intervals_ms.len() >= params.window_len.max(2)
            && let Some(oldest) = self.intervals_ms.pop_front()
        {
            self.sum_ms -= oldest;
            self.sum_squares_ms -= oldest * oldest;
        }
        self.intervals_ms.push_back(interval_ms);
        self.sum_ms += interval_ms;
        self.sum_squares_ms += interval_ms * interval_ms;
    }

    fn mean_ms(&self) -> f64 {
        self.sum_ms as f64 / self.intervals_ms.len().max(1) as f64
    }

    fn std_deviation_ms(&self, params: &PhiParams) -> f64 {
        let count = self.intervals_ms.len().max(1) as f64;
        let mean = self.sum_ms as f64 / count;
        let variance = (self.sum_squares_ms as f64 / count - mean * mean).max(0.0);
        variance.sqrt().max(params.min_std_deviation_ms as f64)
    }

    /// The time at which phi reaches the threshold if no heartbeat arrives before.
    pub(crate) fn down_deadline_ms(&self, params: &PhiParams) -> u64 {
        let allowance_ms = self.mean_ms()
            + params.acceptable_pause_ms as f64
            + params.y_threshold * self.std_deviation_ms(params);
        self.last_arrival_ms
            .saturating_add(allowance_ms.ceil().max(1.0) as u64)
    }

    /// The suspicion level at `now_ms`.
    pub(crate) fn phi(&self, params: &PhiParams, now_ms: u64) -> f64 {
        let elapsed_ms = now_ms.saturating_sub(self.last_arrival_ms) as f64;
        let mean = self.mean_ms() + params.acceptable_pause_ms as f64;
        phi_of_y((elapsed_ms - mean) / self.std_deviation_ms(params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> PhiParams {
        PhiParams::new(8.0, 100, 100, 150, 100)
    }

    #[test]
    fn phi_matches_akka_values() {
        // Values of Akka's formula, computed independently: at the mean phi is log10(2).
        fn check(y: f64, expect: f64) {
            let actual = phi_of_y(y);
            assert!(
                (actual - expect).abs() < 1e-3,
                "phi({y}) = {actual}, expected {expect}"
            );
        }
        check(0.0, 2f64.log10());
        check(1.0, 0.7995);
        check(3.0, 2.9095);
        check(5.0, 7.2999);
    }

    #[test]
    fn threshold_is_reached_exactly_at_the_deadline() {
        let params = params();
        let mut detector = PhiDetector::new(&params, 0);
        for now_ms in (100..=3000).step_by(100) {
            detector.record_arrival(&params, now_ms);
        }
        let deadline_ms = detector.down_deadline_ms(&params);
        assert!(detector.phi(&params, deadline_ms) >= params.threshold - 1e-6);
        assert!(detector.phi(&params, deadline_ms - 2) < params.threshold);
    }

    #[test]
    fn a_regular_sender_is_declared_down_within_the_quiet_detection_time() {
        let params = params();
        let mut detector = PhiDetector::new(&params, 0);
        for now_ms in (100..=10_000).step_by(100) {
            detector.record_arrival(&params, now_ms);
        }
        let allowance_ms = detector.down_deadline_ms(&params) - 10_000;
        assert!(allowance_ms <= params.quiet_detection_time_ms());
        assert!(allowance_ms > 500, "{allowance_ms}");
    }

    #[test]
    fn late_arrivals_after_the_deadline_do_not_enter_the_history() {
        let params = params();
        let mut detector = PhiDetector::new(&params, 0);
        detector.record_arrival(&params, 100);
        let before = detector.intervals_ms.len();
        detector.record_arrival(&params, 100 + 5_000);
        assert_eq!(detector.intervals_ms.len(), before);
        assert_eq!(detector.last_arrival_ms(), 5_100);
    }

    #[test]
    fn the_window_is_bounded_and_its_sums_stay_exact() {
        let params = PhiParams::new(8.0, 10, 1, 0, 100);
        let mut detector = PhiDetector::new(&params, 0);
        let mut now_ms = 0;
        for step in 0..1000u64 {
            now_ms += 90 + step % 20;
            detector.record_arrival(&params, now_ms);
        }
        assert_eq!(detector.intervals_ms.len(), 10);
        assert_eq!(detector.sum_ms, detector.intervals_ms.iter().sum::<u64>());
        assert_eq!(
            detector.sum_squares_ms,
            detector.intervals_ms.iter().map(|x| x * x).sum::<u64>()
        );
    }
}
