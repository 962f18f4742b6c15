//! Membership configuration: timing of heartbeats and failure detection, and every limit.

use std::net::SocketAddr;

use crate::auth::ClusterSecret;
use crate::membership::phi::PhiParams;
use crate::membership::wire::GOSSIP_ENTRIES_MAX;
use crate::node_id::is_valid_name;

/// Membership configuration. [`MembershipConfig::new`] gives the defaults; the fields are public so
/// the node's configuration can override each.
///
/// The defaults are chosen so that a node that stops is out of every view in under 1 s, and a node
/// whose heartbeats arrive up to ~150 ms late (both cores saturated) is never declared down: a
/// regular sender is declared down `heartbeat_interval_ms + acceptable_pause_ms +
/// y(phi_threshold) * min_std_deviation_ms` = 100 + 150 + 5.24 * 100 ≈ 775 ms after its last
/// heartbeat arrived, while 150 ms of jitter with four heartbeats in a row lost is a 650 ms gap.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// The cluster name; nodes of other clusters are rejected.
    pub cluster_name: String,
    /// The cluster secret; without one the keys come from the cluster name alone.
    pub secret_opt: Option<ClusterSecret>,
    /// The partition count, a power of two, the same on every node.
    pub partition_count: u32,
    /// Heartbeat addresses of the `--join` seeds: contacted until they answer, then probed at the
    /// slow rate whenever they are not in the view.
    pub seed_addresses: Vec<SocketAddr>,
    /// Time between two heartbeats to each member, in ms.
    pub heartbeat_interval_ms: u64,
    /// Phi at which a member is declared down.
    pub phi_threshold: f64,
    /// Number of inter-arrival times the detector keeps per member.
    pub phi_window_len: usize,
    /// Floor of the inter-arrival standard deviation, in ms.
    pub min_std_deviation_ms: u64,
    /// Pause the detector accepts on top of the mean inter-arrival time, in ms.
    pub acceptable_pause_ms: u64,
    /// After a member's peer link was reset, how long a heartbeat may take to clear it, in ms.
    pub peer_reset_grace_ms: u64,
    /// Time between two probes of a down member or of a seed not in the view, in ms.
    pub slow_probe_interval_ms: u64,
    /// Gossip entries per heartbeat, at most [`GOSSIP_ENTRIES_MAX`].
    pub gossip_entries_max: usize,
    /// A gossiped address not mentioned again for this long, and not answering, is forgotten, ms.
    pub contact_expiry_ms: u64,
    /// Most gossiped addresses kept at once.
    pub contacts_max: usize,
    /// Most entries in the list of members this node declared down.
    pub dead_list_len_max: usize,
    /// How long a declared-down member stays in that list (and in heartbeats), in ms.
    pub dead_retention_ms: u64,
    /// How long a down member is kept (and probed) before it is forgotten, in ms.
    pub down_member_retention_ms: u64,
    /// Most members kept, down ones included.
    pub members_max: usize,
    /// A gap between two inputs longer than this means this node itself was stalled, in ms;
    /// `None`: the failure-detection time ([`MembershipConfig::failure_detection_time_ms`]).
    pub self_stall_threshold_ms_opt: Option<u64>,
    /// Most datagrams waiting in [`crate::membership::Membership::poll_transmit`]; the oldest are
    /// dropped (a newer heartbeat supersedes them).
    pub transmit_queue_len_max: usize,
    /// Most events waiting in [`crate::membership::Membership::poll_event`]; the oldest are dropped
    /// and counted. Drain the events after every input and it never happens.
    pub event_queue_len_max: usize,
}

impl MembershipConfig {
    /// The defaults for cluster `cluster_name` with `partition_count` partitions, no secret and no
    /// seeds.
    pub fn new(cluster_name: impl Into<String>, partition_count: u32) -> MembershipConfig {
        MembershipConfig {
            cluster_name: cluster_name.into(),
            secret_opt: None,
            partition_count,
            seed_addresses: Vec::new(),
            heartbeat_interval_ms: 100,
            phi_threshold: 8.0,
            phi_window_len: 200,
            min_std_deviation_ms: 100,
            acceptable_pause_ms: 150,
            peer_reset_grace_ms: 200,
            slow_probe_interval_ms: 1_000,
            gossip_entries_max: GOSSIP_ENTRIES_MAX,
            contact_expiry_ms: 10_000,
            contacts_max: 1_024,
            dead_list_len_max: 64,
            dead_retention_ms: 60_000,
            down_member_retention_ms: 3_600_000,
            members_max: 1_024,
            self_stall_threshold_ms_opt: None,
            transmit_queue_len_max: 4_096,
            event_queue_len_max: 4_096,
        }
    }

    pub(crate) fn phi_params(&self) -> PhiParams {
        PhiParams::new(
            self.phi_threshold,
            self.phi_window_len,
            self.min_std_deviation_ms,
            self.acceptable_pause_ms,
            self.heartbeat_interval_ms,
        )
    }

    /// How long after its last heartbeat a regularly beating member that stops is declared down,
    /// in ms (about 775 with the defaults).
    pub fn failure_detection_time_ms(&self) -> u64 {
        self.phi_params().quiet_detection_time_ms()
    }

    /// The gap between inputs that makes this node report itself stalled, in ms.
    pub fn self_stall_threshold_ms(&self) -> u64 {
        self.self_stall_threshold_ms_opt
            .unwrap_or_else(|| self.failure_detection_time_ms())
    }

    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_valid_name(&self.cluster_name) {
            return Err(ConfigError::InvalidName {
                field: "cluster_name",
                name: self.cluster_name.clone(),
            });
        }
        let out_of_range = |field: &'static str, value: String, allowed: &'static str| {
            Err(ConfigError::OutOfRange {
                field,
                value,
                allowed,
            })
        };
        if !self.partition_count.is_power_of_two() {
            return out_of_range(
                "partition_count",
                self.partition_count.to_string(),
                "a power of two",
            );
        }
        if !(1..=60_000).contains(&self.heartbeat_interval_ms) {
            return out_of_range(
                "heartbeat_interval_ms",
                self.heartbeat_interval_ms.to_string(),
                "1 to 60000",
            );
        }
        if !(self.phi_threshold.is_finite() && (1.0..=30.0).contains(&self.phi_threshold)) {
            return out_of_range("phi_threshold", self.phi_threshold.to_string(), "1 to 30");
        }
        if !(2..=10_000).contains(&self.phi_window_len) {
            return out_of_range(
                "phi_window_len",
                self.phi_window_len.to_string(),
                "2 to 10000",
            );
        }
        if !(1..=60_000).contains(&self.min_std_deviation_ms) {
            return out_of_range(
                "min_std_deviation_ms",
                self.min_std_deviation_ms.to_string(),
                "1 to 60000",
            );
        }
        if self.acceptable_pause_ms > 600_000 {
            return out_of_range(
                "acceptable_pause_ms",
                self.acceptable_pause_ms.to_string(),
                "0 to 600000",
            );
        }
        if !(1..=600_000).contains(&self.slow_probe_interval_ms) {
            return out_of_range(
                "slow_probe_interval_ms",
                self.slow_probe_interval_ms.to_string(),
                "1 to 600000",
            );
        }
        if self.gossip_entries_max > GOSSIP_ENTRIES_MAX {
            return out_of_range(
                "gossip_entries_max",
                self.gossip_entries_max.to_string(),
                "0 to 8",
            );
        }
        if !(1..=65_536).contains(&self.members_max) {
            return out_of_range("members_max", self.members_max.to_string(), "1 to 65536");
        }
        if self.seed_addresses.len() > self.members_max {
            return out_of_range(
                "seed_addresses",
                self.seed_addresses.len().to_string(),
                "at most members_max",
            );
        }
        for (field, value) in [
            ("contacts_max", self.contacts_max),
            ("dead_list_len_max", self.dead_list_len_max),
            ("transmit_queue_len_max", self.transmit_queue_len_max),
            ("event_queue_len_max", self.event_queue_len_max),
        ] {
            if !(1..=1_000_000).contains(&value) {
                return out_of_range(field, value.to_string(), "1 to 1000000");
            }
        }
        Ok(())
    }
}

/// A configuration or identity that membership cannot run with. Nothing was created.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A name is empty, longer than 64 bytes or has control characters. Nothing was created.
    #[error("{field} {name:?} must be 1 to 64 bytes without control characters")]
    InvalidName {
        /// The configuration field.
        field: &'static str,
        /// The name given.
        name: String,
    },
    /// A numeric field is out of its range. Nothing was created.
    #[error("{field} is {value}, it must be {allowed}")]
    OutOfRange {
        /// The configuration field.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_detect_a_stopped_node_in_under_a_second() {
        let config = MembershipConfig::new("prod", 1024);
        assert_eq!(config.validate(), Ok(()));
        let detection_time_ms = config.failure_detection_time_ms();
        assert!(
            (700..900).contains(&detection_time_ms),
            "{detection_time_ms}"
        );
        // 150 ms of jitter on top of four lost heartbeats must stay below it.
        assert!(4 * config.heartbeat_interval_ms + 150 + 100 < detection_time_ms);
    }

    #[test]
    fn invalid_fields_are_named() {
        fn check(change: impl Fn(&mut MembershipConfig), field: &str) {
            let mut config = MembershipConfig::new("prod", 1024);
            change(&mut config);
            match config.validate() {
                Err(
                    ConfigError::InvalidName { field: actual, .. }
                    | ConfigError::OutOfRange { field: actual, .. },
                ) => {
                    assert_eq!(actual, field)
                }
                Ok(()) => panic!("{field} accepted"),
            }
        }
        check(|config| config.cluster_name = String::new(), "cluster_name");
        check(|config| config.partition_count = 1000, "partition_count");
        check(
            |config| config.heartbeat_interval_ms = 0,
            "heartbeat_interval_ms",
        );
        check(|config| config.phi_threshold = f64::NAN, "phi_threshold");
        check(|config| config.gossip_entries_max = 9, "gossip_entries_max");
        check(|config| config.members_max = 0, "members_max");
        check(
            |config| config.event_queue_len_max = 0,
            "event_queue_len_max",
        );
    }
}
