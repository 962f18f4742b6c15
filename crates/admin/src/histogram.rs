//! Lock-free latency histograms with fixed buckets, and percentiles estimated from buckets.
//!
//! A hot path records into one of several cache-line-padded shards, chosen by a per-thread
//! index, with relaxed atomic additions only: no lock, no allocation, no shared cache line
//! between threads that use different shards. A scrape sums the shards. The same cells back
//! [`crate::CommandStats`] (one series per command) and [`LatencyHistogram`] (one series).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Upper bounds (inclusive, like Prometheus `le`) of the finite latency buckets, in nanoseconds:
/// 10 µs to 10 s in 1-2.5-5 steps (×2.5 then ×2), 19 buckets.
pub const LATENCY_BUCKET_BOUNDS_NS: [u64; 19] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Number of buckets of a histogram: the finite ones plus the overflow (`+Inf`) bucket.
pub const NUM_BUCKETS: usize = LATENCY_BUCKET_BOUNDS_NS.len() + 1;

/// Most shards a histogram set spreads its writers over; beyond this, threads share shards
/// (still exact, only more contended).
const NUM_SHARDS_MAX: usize = 64;

/// Largest bucket scale accepted: 10^6 turns the 10 s top bucket into about 4 months, which is
/// already more than any duration scd measures, and keeps `bound * scale` far from overflow.
const BUCKET_SCALE_MAX: u64 = 1_000_000;

/// Hands every thread a distinct number at its first record, so consecutive threads (tokio
/// workers are started together) land on different shards.
static NEXT_THREAD_SEED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_SEED: usize = NEXT_THREAD_SEED.fetch_add(1, Ordering::Relaxed);
}

/// The index of the bucket an observation of `elapsed_ns` falls in, for bounds scaled by
/// `bucket_scale`: the first bucket whose upper bound is at least the value, else the
/// overflow bucket.
pub fn bucket_index(elapsed_ns: u64, bucket_scale: u64) -> usize {
    debug_assert!(bucket_scale >= 1);
    // `value <= bound * scale` is `ceil(value / scale) <= bound` for integers, which avoids
    // multiplying on the hot path.
    let scaled_ns = elapsed_ns.div_ceil(bucket_scale.max(1));
    LATENCY_BUCKET_BOUNDS_NS.partition_point(|&bound_ns| bound_ns < scaled_ns)
}

/// Estimates the `quantile` (0.0 to 1.0) of the observations counted in `bucket_counts`, the
/// way Prometheus' `histogram_quantile` does: find the bucket holding the rank, then interpolate
/// linearly between its lower and upper bound. The first bucket starts at 0; a rank in the
/// overflow bucket (one more count than there are bounds) gives the largest finite bound.
///
/// Returns `None` when there is no observation, the quantile is outside 0..=1 or NaN, or
/// `bucket_counts` is not one longer than `bucket_upper_bounds`.
pub fn percentile_from_buckets(
    bucket_upper_bounds: &[f64],
    bucket_counts: &[u64],
    quantile: f64,
) -> Option<f64> {
    if bucket_counts.len() != bucket_upper_bounds.len() + 1 || !(0.0..=1.0).contains(&quantile) {
        return None;
    }
    let total: u64 = bucket_counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = quantile * total as f64;
    let mut cumulative: u64 = 0;
    for (index, &count) in bucket_counts.iter().enumerate() {
        let previous_cumulative = cumulative;
        cumulative += count;
        // Empty buckets never hold the rank, so quantile 0 lands at the start of the first
        // non-empty bucket instead of dividing by an empty one.
        if count == 0 || (cumulative as f64) < rank {
            continue;
        }
        let Some(&upper_bound) = bucket_upper_bounds.get(index) else {
            return bucket_upper_bounds.last().copied();
        };
        let lower_bound = if index == 0 {
            0.0
        } else {
            bucket_upper_bounds[index - 1]
        };
        let rank_in_bucket = rank - previous_cumulative as f64;
        return Some(lower_bound + (upper_bound - lower_bound) * (rank_in_bucket / count as f64));
    }
    // Only reached through floating-point rounding of `rank` just above `total`.
    bucket_upper_bounds.last().copied()
}

/// The counters of one series in one shard, alone on its cache lines.
///
/// Aligned to 128 bytes, not 64: adjacent-line prefetchers pull cache lines in pairs, so two
/// threads writing neighbouring 64-byte lines would still contend.
#[repr(align(128))]
#[derive(Default)]
struct SeriesCells {
    bucket_counts: [AtomicU64; NUM_BUCKETS],
    duration_sum_ns: AtomicU64,
    errors: AtomicU64,
}

/// One or more histogram series, each split over shards that writers pick by thread.
pub(crate) struct ShardedSeries {
    /// Shard-major: the cells of series `s` in shard `h` are at `h * num_series + s`, so one
    /// thread's writes to different series stay within its own shard.
    cells: Box<[SeriesCells]>,
    num_series: usize,
    /// `num_shards - 1`; the number of shards is a power of two.
    shard_mask: usize,
    /// Bucket `i` holds observations up to `LATENCY_BUCKET_BOUNDS_NS[i] * bucket_scale`.
    bucket_scale: u64,
}

impl ShardedSeries {
    /// Series for `num_series` keys, with as many shards as the machine runs threads in
    /// parallel (rounded up to a power of two, at most 64).
    pub(crate) fn new(num_series: usize, bucket_scale: u64) -> ShardedSeries {
        let num_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        ShardedSeries::with_shards(num_series, num_threads, bucket_scale)
    }

    /// Series with at least `num_shards` shards (rounded up to a power of two, at most 64).
    pub(crate) fn with_shards(
        num_series: usize,
        num_shards: usize,
        bucket_scale: u64,
    ) -> ShardedSeries {
        assert!(
            (1..=BUCKET_SCALE_MAX).contains(&bucket_scale),
            "bucket scale {bucket_scale} is outside 1..={BUCKET_SCALE_MAX}"
        );
        let num_shards = num_shards.clamp(1, NUM_SHARDS_MAX).next_power_of_two();
        let cells = (0..num_shards * num_series)
            .map(|_| SeriesCells::default())
            .collect();
        ShardedSeries {
            cells,
            num_series,
            shard_mask: num_shards - 1,
            bucket_scale,
        }
    }

    pub(crate) fn num_shards(&self) -> usize {
        self.shard_mask + 1
    }

    /// Adds one observation to `series`. Ignores (and debug-asserts on) a series out of range:
    /// the index comes from the node's own command table, and a metric must never take down
    /// the command it measures.
    #[inline]
    pub(crate) fn record(&self, series: usize, elapsed_ns: u64, is_error: bool) {
        debug_assert!(series < self.num_series, "series {series} out of range");
        if series >= self.num_series {
            return;
        }
        let shard = THREAD_SEED.with(|seed| *seed) & self.shard_mask;
        let Some(cells) = self.cells.get(shard * self.num_series + series) else {
            return;
        };
        let bucket = bucket_index(elapsed_ns, self.bucket_scale);
        // Relaxed: each counter is independent and only summed at scrape time; a scrape that
        // races a record may see it in one counter and not yet in another, which is fine.
        cells.bucket_counts[bucket].fetch_add(1, Ordering::Relaxed);
        cells
            .duration_sum_ns
            .fetch_add(elapsed_ns, Ordering::Relaxed);
        if is_error {
            cells.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The sums over all shards of `series`, or an empty snapshot for a series out of range.
    pub(crate) fn snapshot(&self, series: usize) -> HistogramSnapshot {
        let mut snapshot = HistogramSnapshot::empty(self.bucket_scale);
        if series >= self.num_series {
            return snapshot;
        }
        for shard in 0..self.num_shards() {
            let cells = &self.cells[shard * self.num_series + series];
            for (sum, count) in snapshot
                .bucket_counts
                .iter_mut()
                .zip(cells.bucket_counts.iter())
            {
                *sum = sum.wrapping_add(count.load(Ordering::Relaxed));
            }
            snapshot.duration_sum_ns = snapshot
                .duration_sum_ns
                .wrapping_add(cells.duration_sum_ns.load(Ordering::Relaxed));
            snapshot.errors = snapshot
                .errors
                .wrapping_add(cells.errors.load(Ordering::Relaxed));
        }
        snapshot
    }
}

/// The state of one histogram series at one moment, summed over its shards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations per bucket (not cumulative); the last is the overflow bucket.
    pub bucket_counts: [u64; NUM_BUCKETS],
    /// Sum of all observed durations, in nanoseconds.
    pub duration_sum_ns: u64,
    /// Observations recorded as errors (always 0 for a plain [`LatencyHistogram`]).
    pub errors: u64,
    /// Bucket `i` holds observations up to `LATENCY_BUCKET_BOUNDS_NS[i] * bucket_scale` ns.
    pub bucket_scale: u64,
}

impl HistogramSnapshot {
    /// A snapshot with no observation.
    pub fn empty(bucket_scale: u64) -> HistogramSnapshot {
        HistogramSnapshot {
            bucket_counts: [0; NUM_BUCKETS],
            duration_sum_ns: 0,
            errors: 0,
            bucket_scale,
        }
    }

    /// Number of observations; derived from the buckets so that it always equals the
    /// overflow bucket's cumulative count, as Prometheus requires.
    pub fn count(&self) -> u64 {
        self.bucket_counts
            .iter()
            .fold(0u64, |sum, &count| sum.wrapping_add(count))
    }

    /// Adds `other`'s observations to these. Both must use the same bucket scale.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        debug_assert_eq!(self.bucket_scale, other.bucket_scale);
        for (sum, count) in self.bucket_counts.iter_mut().zip(other.bucket_counts) {
            *sum = sum.wrapping_add(count);
        }
        self.duration_sum_ns = self.duration_sum_ns.wrapping_add(other.duration_sum_ns);
        self.errors = self.errors.wrapping_add(other.errors);
    }

    /// Upper bounds of the finite buckets, in seconds.
    pub fn bucket_upper_bounds_seconds(&self) -> [f64; NUM_BUCKETS - 1] {
        LATENCY_BUCKET_BOUNDS_NS
            .map(|bound_ns| bound_ns.saturating_mul(self.bucket_scale) as f64 / 1e9)
    }

    /// The estimated `quantile` (0.0 to 1.0) of the observed durations, in nanoseconds, or
    /// `None` without observations. See [`percentile_from_buckets`].
    pub fn percentile_ns(&self, quantile: f64) -> Option<f64> {
        let bounds_ns = LATENCY_BUCKET_BOUNDS_NS
            .map(|bound_ns| bound_ns.saturating_mul(self.bucket_scale) as f64);
        percentile_from_buckets(&bounds_ns, &self.bucket_counts, quantile)
    }

    /// Mean observed duration in nanoseconds, or `None` without observations.
    pub fn mean_ns(&self) -> Option<f64> {
        let count = self.count();
        (count > 0).then(|| self.duration_sum_ns as f64 / count as f64)
    }

    /// Encodes this snapshot as one OpenMetrics histogram (in seconds).
    pub(crate) fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let bounds_seconds = self.bucket_upper_bounds_seconds();
        let buckets: Vec<(f64, u64)> = bounds_seconds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.bucket_counts)
            .collect();
        encoder.encode_histogram::<NoLabelSet>(
            self.duration_sum_ns as f64 / 1e9,
            self.count(),
            &buckets,
            None,
        )
    }

    /// Count, mean and p50/p90/p99 in microseconds, as shown by `/stats` and the dashboard.
    pub(crate) fn summary_json(&self) -> serde_json::Value {
        let to_us = |ns: Option<f64>| ns.map(|ns| (ns / 100.0).round() / 10.0);
        serde_json::json!({
            "count": self.count(),
            "mean_us": to_us(self.mean_ns()),
            "p50_us": to_us(self.percentile_ns(0.50)),
            "p90_us": to_us(self.percentile_ns(0.90)),
            "p99_us": to_us(self.percentile_ns(0.99)),
        })
    }
}

/// A lock-free duration histogram for a hot path (relay latency, lock waits), exported in
/// seconds. Cloning gives another handle on the same counters.
///
/// Unlike `prometheus_client`'s `Histogram`, which takes a mutex on every observation, this
/// one costs two relaxed atomic additions in a per-thread shard.
#[derive(Clone)]
pub struct LatencyHistogram {
    series: Arc<ShardedSeries>,
}

impl LatencyHistogram {
    /// A histogram with the standard buckets, 10 µs to 10 s.
    pub fn new() -> LatencyHistogram {
        LatencyHistogram::with_bucket_scale(1)
    }

    /// A histogram whose bucket bounds are the standard ones multiplied by `bucket_scale`
    /// (1 to 1 000 000): 100 gives 1 ms to 1000 s, for slow operations such as handoffs.
    ///
    /// # Panics
    ///
    /// If `bucket_scale` is 0 or above 1 000 000 (a programming error, not an input).
    pub fn with_bucket_scale(bucket_scale: u64) -> LatencyHistogram {
        LatencyHistogram {
            series: Arc::new(ShardedSeries::new(1, bucket_scale)),
        }
    }

    /// Records one observation of `elapsed_ns` nanoseconds.
    #[inline]
    pub fn observe_ns(&self, elapsed_ns: u64) {
        self.series.record(0, elapsed_ns, false);
    }

    /// Records one observation of `elapsed` (saturating at about 584 years).
    #[inline]
    pub fn observe(&self, elapsed: std::time::Duration) {
        self.observe_ns(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The observations so far, summed over shards.
    pub fn snapshot(&self) -> HistogramSnapshot {
        self.series.snapshot(0)
    }
}

impl Default for LatencyHistogram {
    fn default() -> LatencyHistogram {
        LatencyHistogram::new()
    }
}

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("LatencyHistogram")
            .field("count", &self.snapshot().count())
            .field("bucket_scale", &self.series.bucket_scale)
            .finish()
    }
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), fmt::Error> {
        self.snapshot().encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_bucket(elapsed_ns: u64, bucket_scale: u64, expect_bucket: usize) {
        assert_eq!(
            bucket_index(elapsed_ns, bucket_scale),
            expect_bucket,
            "elapsed_ns={elapsed_ns} bucket_scale={bucket_scale}"
        );
    }

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_is_at_least_the_value() {
        check_bucket(0, 1, 0);
        check_bucket(1, 1, 0);
        check_bucket(10_000, 1, 0);
        check_bucket(10_001, 1, 1);
        check_bucket(25_000, 1, 1);
        check_bucket(25_001, 1, 2);
        check_bucket(999_999, 1, 6);
        check_bucket(1_000_000, 1, 6);
        check_bucket(1_000_001, 1, 7);
        check_bucket(10_000_000_000, 1, 18);
        check_bucket(10_000_000_001, 1, 19);
        check_bucket(u64::MAX, 1, 19);
    }

    #[test]
    fn scaled_buckets_move_the_edges_by_the_scale() {
        check_bucket(1_000_000, 100, 0);
        check_bucket(1_000_001, 100, 1);
        check_bucket(1_000_000_000_000, 100, 18);
        check_bucket(1_000_000_000_001, 100, 19);
        check_bucket(u64::MAX, 1_000_000, 19);
    }

    #[test]
    fn bucket_bounds_increase_in_steps_of_two_to_two_and_a_half() {
        for pair in LATENCY_BUCKET_BOUNDS_NS.windows(2) {
            let ratio = pair[1] as f64 / pair[0] as f64;
            assert!((2.0..=2.5).contains(&ratio), "{pair:?}");
        }
        assert_eq!(LATENCY_BUCKET_BOUNDS_NS[0], 10_000);
        assert_eq!(LATENCY_BUCKET_BOUNDS_NS[18], 10_000_000_000);
    }

    fn check_percentile(counts: &[u64], quantile: f64, expect: Option<f64>) {
        let bounds = [1.0, 2.0, 4.0];
        let got = percentile_from_buckets(&bounds, counts, quantile);
        match (got, expect) {
            (Some(got), Some(expect)) => assert!(
                (got - expect).abs() < 1e-9,
                "counts={counts:?} q={quantile}: got {got}, expected {expect}"
            ),
            _ => assert_eq!(got, expect, "counts={counts:?} q={quantile}"),
        }
    }

    #[test]
    fn percentiles_interpolate_within_the_bucket_holding_the_rank() {
        // All in the first bucket, which starts at 0.
        check_percentile(&[10, 0, 0, 0], 0.5, Some(0.5));
        check_percentile(&[10, 0, 0, 0], 1.0, Some(1.0));
        // Rank 5 of 10 is the 5th of 10 observations in (1, 2].
        check_percentile(&[0, 10, 0, 0], 0.5, Some(1.5));
        // Ranks across buckets: 4 in (0,1], 4 in (1,2], 2 in (2,4].
        check_percentile(&[4, 4, 2, 0], 0.5, Some(1.25));
        check_percentile(&[4, 4, 2, 0], 0.9, Some(3.0));
        check_percentile(&[4, 4, 2, 0], 0.4, Some(1.0));
        // Quantile 0 is the start of the first non-empty bucket.
        check_percentile(&[0, 0, 3, 0], 0.0, Some(2.0));
        // A rank in the overflow bucket reports the largest finite bound.
        check_percentile(&[1, 0, 0, 9], 0.5, Some(4.0));
        check_percentile(&[0, 0, 0, 1], 0.99, Some(4.0));
    }

    #[test]
    fn percentiles_are_absent_without_observations_or_with_bad_arguments() {
        check_percentile(&[0, 0, 0, 0], 0.5, None);
        check_percentile(&[1, 0, 0, 0], 1.5, None);
        check_percentile(&[1, 0, 0, 0], -0.1, None);
        check_percentile(&[1, 0, 0, 0], f64::NAN, None);
        check_percentile(&[1, 0, 0], 0.5, None);
    }

    #[test]
    fn snapshot_percentiles_use_the_scaled_bounds() {
        let histogram = LatencyHistogram::with_bucket_scale(100);
        for _ in 0..10 {
            histogram.observe(std::time::Duration::from_millis(2));
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count(), 10);
        assert_eq!(snapshot.bucket_counts[1], 10, "(1 ms, 2.5 ms] is bucket 1");
        assert_eq!(snapshot.percentile_ns(1.0), Some(2_500_000.0));
        assert_eq!(snapshot.mean_ns(), Some(2_000_000.0));
    }

    #[test]
    fn shards_are_rounded_up_to_a_power_of_two_and_capped() {
        assert_eq!(ShardedSeries::with_shards(1, 0, 1).num_shards(), 1);
        assert_eq!(ShardedSeries::with_shards(1, 3, 1).num_shards(), 4);
        assert_eq!(ShardedSeries::with_shards(1, 1000, 1).num_shards(), 64);
    }

    #[test]
    fn series_cells_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<SeriesCells>(), 128);
        assert_eq!(std::mem::size_of::<SeriesCells>() % 128, 0);
    }
}
