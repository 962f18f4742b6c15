//! Per-command call, error and latency counters, cheap enough for every client command.
//!
//! The node gives each command it implements an index into a static name table once, at
//! start, and calls [`CommandStats::record`] after every command: a few relaxed atomic
//! additions into the calling thread's shard, no lock. `/metrics` and `/stats` read a
//! [`CommandStatsSnapshot`], summed over shards at scrape time.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::histogram::{HistogramSnapshot, ShardedSeries};

/// Calls, errors and a latency histogram (10 µs to 10 s) per command.
pub struct CommandStats {
    names: &'static [&'static str],
    series: ShardedSeries,
}

impl CommandStats {
    /// Counters for the commands in `names`; a command's index in `names` is the
    /// `command_index` given to [`CommandStats::record`]. Names are exported as the `command`
    /// label, so they should be lowercase command names (`get`, `set`, `evalsha`).
    pub fn new(names: &'static [&'static str]) -> CommandStats {
        CommandStats {
            names,
            series: ShardedSeries::new(names.len(), 1),
        }
    }

    /// Like [`CommandStats::new`] with at least `num_shards` shards (rounded up to a power of
    /// two, at most 64) instead of one per hardware thread.
    pub fn with_shards(names: &'static [&'static str], num_shards: usize) -> CommandStats {
        CommandStats {
            names,
            series: ShardedSeries::with_shards(names.len(), num_shards, 1),
        }
    }

    /// Records one executed command. Lock-free: relaxed atomic additions in the calling
    /// thread's shard. An index out of range is ignored (debug builds assert).
    #[inline]
    pub fn record(&self, command_index: usize, elapsed_ns: u64, is_error: bool) {
        self.series.record(command_index, elapsed_ns, is_error);
    }

    /// The command names, in index order.
    pub fn names(&self) -> &'static [&'static str] {
        self.names
    }

    /// The index of the command called `name`, for building the node's dispatch table.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|candidate| *candidate == name)
    }

    /// Number of shards the counters are spread over.
    pub fn num_shards(&self) -> usize {
        self.series.num_shards()
    }

    /// Every command's counters, summed over shards, in index order.
    pub fn snapshot(&self) -> CommandStatsSnapshot {
        let commands = self
            .names
            .iter()
            .enumerate()
            .map(|(index, name)| CommandSnapshot {
                name,
                histogram: self.series.snapshot(index),
            })
            .collect();
        CommandStatsSnapshot { commands }
    }
}

impl fmt::Debug for CommandStats {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("CommandStats")
            .field("num_commands", &self.names.len())
            .field("num_shards", &self.num_shards())
            .finish()
    }
}

/// The counters of all commands at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandStatsSnapshot {
    /// One entry per command, in index order, including commands never called.
    pub commands: Vec<CommandSnapshot>,
}

/// The counters of one command at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSnapshot {
    /// The command's name, as given to [`CommandStats::new`].
    pub name: &'static str,
    /// Latency histogram; its `errors` field counts the calls that failed.
    pub histogram: HistogramSnapshot,
}

impl CommandSnapshot {
    /// Number of calls.
    pub fn calls(&self) -> u64 {
        self.histogram.count()
    }

    /// Number of calls that ended in an error reply.
    pub fn errors(&self) -> u64 {
        self.histogram.errors
    }
}

impl CommandStatsSnapshot {
    /// Commands called at least once.
    pub fn called(&self) -> impl Iterator<Item = &CommandSnapshot> {
        self.commands.iter().filter(|command| command.calls() > 0)
    }

    /// All commands' histograms added together.
    pub fn total(&self) -> HistogramSnapshot {
        let mut total = HistogramSnapshot::empty(1);
        for command in &self.commands {
            total.merge(&command.histogram);
        }
        total
    }

    /// The `commands` object of `/stats`: totals, overall latency, and each called command.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let total = self.total();
        let by_command: serde_json::Map<String, serde_json::Value> = self
            .called()
            .map(|command| {
                let mut entry = command.histogram.summary_json();
                if let Some(object) = entry.as_object_mut() {
                    object.remove("count");
                    object.insert("calls".to_owned(), command.calls().into());
                    object.insert("errors".to_owned(), command.errors().into());
                }
                (command.name.to_owned(), entry)
            })
            .collect();
        let mut object = match total.summary_json() {
            serde_json::Value::Object(object) => object,
            _ => serde_json::Map::new(),
        };
        object.remove("count");
        object.insert("calls".to_owned(), total.count().into());
        object.insert("errors".to_owned(), total.errors.into());
        object.insert("by_command".to_owned(), by_command.into());
        object.into()
    }
}

/// Encodes a [`CommandStats`] into the registry's exposition at every scrape as
/// `scd_commands_total{command}`, `scd_command_errors_total{command}` and
/// `scd_command_duration_seconds{command}`, skipping commands never called.
#[derive(Debug)]
pub(crate) struct CommandStatsCollector {
    pub(crate) command_stats: std::sync::Arc<CommandStats>,
}

impl Collector for CommandStatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snapshot = self.command_stats.snapshot();

        let mut calls_encoder = encoder.encode_descriptor(
            "commands",
            "Client commands executed, by command.",
            None,
            MetricType::Counter,
        )?;
        for command in snapshot.called() {
            calls_encoder
                .encode_family(&[("command", command.name)])?
                .encode_counter::<NoLabelSet, _, u64>(&command.calls(), None)?;
        }

        let mut errors_encoder = encoder.encode_descriptor(
            "command_errors",
            "Client commands that ended in an error reply, by command.",
            None,
            MetricType::Counter,
        )?;
        for command in snapshot.called() {
            errors_encoder
                .encode_family(&[("command", command.name)])?
                .encode_counter::<NoLabelSet, _, u64>(&command.errors(), None)?;
        }

        let mut duration_encoder = encoder.encode_descriptor(
            "command_duration",
            "Time to execute a client command, from parsed request to reply, by command.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for command in snapshot.called() {
            command
                .histogram
                .encode(duration_encoder.encode_family(&[("command", command.name)])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static NAMES: &[&str] = &["get", "set", "del"];

    #[test]
    fn concurrent_records_from_many_threads_sum_exactly() {
        let command_stats = CommandStats::with_shards(NAMES, 4);
        let num_threads = 8u64;
        let records_per_thread = 20_000u64;
        std::thread::scope(|scope| {
            for thread in 0..num_threads {
                let command_stats = &command_stats;
                scope.spawn(move || {
                    for i in 0..records_per_thread {
                        let command_index = ((thread + i) % 3) as usize;
                        command_stats.record(command_index, 20_000, i % 10 == 0);
                    }
                });
            }
        });
        let snapshot = command_stats.snapshot();
        let total = snapshot.total();
        assert_eq!(total.count(), num_threads * records_per_thread);
        assert_eq!(total.errors, num_threads * records_per_thread / 10);
        assert_eq!(
            total.duration_sum_ns,
            num_threads * records_per_thread * 20_000
        );
        assert_eq!(total.bucket_counts[1], num_threads * records_per_thread);
        let calls: Vec<u64> = snapshot.commands.iter().map(|c| c.calls()).collect();
        // Each thread spreads its records round-robin, starting at a different command.
        let mut expect = [0u64; 3];
        for thread in 0..num_threads {
            for i in 0..records_per_thread {
                expect[((thread + i) % 3) as usize] += 1;
            }
        }
        assert_eq!(calls, expect);
    }

    #[test]
    fn records_are_kept_per_command() {
        let command_stats = CommandStats::with_shards(NAMES, 1);
        command_stats.record(0, 5_000, false);
        command_stats.record(0, 30_000, true);
        command_stats.record(2, 20_000_000_000, false);
        let snapshot = command_stats.snapshot();
        let get = &snapshot.commands[0];
        assert_eq!((get.name, get.calls(), get.errors()), ("get", 2, 1));
        assert_eq!(get.histogram.bucket_counts[0], 1);
        assert_eq!(get.histogram.bucket_counts[2], 1);
        assert_eq!(get.histogram.duration_sum_ns, 35_000);
        assert_eq!(snapshot.commands[1].calls(), 0);
        assert_eq!(snapshot.commands[2].histogram.bucket_counts[19], 1);
        let called: Vec<&str> = snapshot.called().map(|c| c.name).collect();
        assert_eq!(called, ["get", "del"]);
    }

    #[test]
    fn an_index_out_of_range_changes_nothing_in_release_builds() {
        if cfg!(debug_assertions) {
            // The debug assertion is the behaviour under test there.
            let result = std::panic::catch_unwind(|| {
                CommandStats::with_shards(NAMES, 1).record(3, 1, false);
            });
            assert!(result.is_err());
        } else {
            let command_stats = CommandStats::with_shards(NAMES, 1);
            command_stats.record(3, 1, false);
            assert_eq!(command_stats.snapshot().total().count(), 0);
        }
    }

    #[test]
    fn command_percentiles_come_from_the_histogram() {
        let command_stats = CommandStats::with_shards(NAMES, 2);
        for _ in 0..90 {
            command_stats.record(1, 8_000, false);
        }
        for _ in 0..10 {
            command_stats.record(1, 2_000_000, false);
        }
        let set = &command_stats.snapshot().commands[1];
        // 90 in (0, 10 µs], 10 in (1 ms, 2.5 ms].
        let check = |quantile: f64, expect_ns: f64| {
            let got_ns = set.histogram.percentile_ns(quantile);
            assert!(
                got_ns.is_some_and(|got_ns| (got_ns - expect_ns).abs() < 1e-6),
                "q={quantile}: got {got_ns:?}, expected {expect_ns}"
            );
        };
        check(0.5, 10_000.0 * 50.0 / 90.0);
        check(0.9, 10_000.0);
        check(0.99, 2_350_000.0);
    }

    #[test]
    fn index_of_finds_commands_by_name() {
        let command_stats = CommandStats::new(NAMES);
        assert_eq!(command_stats.index_of("set"), Some(1));
        assert_eq!(command_stats.index_of("hget"), None);
        assert_eq!(command_stats.names(), NAMES);
    }
}
