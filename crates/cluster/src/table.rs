//! The partition table: ownership [`Record`]s with their merge rule and digest, and the rendezvous
//! [`Placement`] that says where ownership should go (PROTOCOL.md §4).
//!
//! Records say where ownership *is*; the placement says where it *should be*. A node keeps the
//! highest record it has seen for each partition. Records are totally ordered (epoch first, then
//! the remaining fields as a tie-break), so "keep the higher record" is commutative, associative
//! and idempotent, and every node that has seen the same records holds the same table whatever
//! the order they arrived in.

use std::fmt;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{Xxh3, xxh3_64_with_seed};

use crate::node_id::{Incarnation, NodeId};

/// One run of one node: what ownership records name, so that a record naming a previous
/// incarnation of a restarted node is never mistaken for the new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    /// The node's id.
    pub id: NodeId,
    /// The run.
    pub incarnation: Incarnation,
}

impl fmt::Display for Member {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.id, self.incarnation)
    }
}

/// A partition's ownership version: ordered by `term`, then by the authoring `node`, so two
/// nodes that change ownership independently (on the two sides of a split) produce different,
/// comparable epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Epoch {
    /// Raised by every ownership change.
    pub term: u64,
    /// The node that authored the record.
    pub node: NodeId,
}

impl fmt::Display for Epoch {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}@{}", self.term, self.node)
    }
}

/// Who owns a partition, as of `epoch`.
///
/// The derived order compares `epoch` first; the other fields only break ties between records of
/// one epoch, which only a restarted node that forgot its previous records can author. That
/// keeps the merge a total order (a lattice), whatever happens.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Record {
    /// The ownership version.
    pub epoch: Epoch,
    /// The member that executes the partition's operations.
    pub primary: Member,
    /// The members that hold the partition and follow the primary's stream ("synced"), in
    /// promotion order.
    pub backups: Vec<Member>,
    /// Keys whose version's `hlc` is below this may lack writes lost in a delayed-write
    /// failover (PROTOCOL.md §9.2); 0 when no such failover happened.
    pub suspect_before_hlc: u64,
}

impl Record {
    /// The primary, then the backups.
    pub fn owners(&self) -> impl Iterator<Item = Member> + '_ {
        std::iter::once(self.primary).chain(self.backups.iter().copied())
    }

    /// Whether `member` is the primary or a backup.
    pub fn is_owner(&self, member: Member) -> bool {
        self.primary == member || self.backups.contains(&member)
    }

    /// Whether `member` is a backup.
    pub fn is_backup(&self, member: Member) -> bool {
        self.backups.contains(&member)
    }

    /// Whether the owners are `targets`: its first as the primary, the others as the backups
    /// in any order.
    pub fn has_owners(&self, targets: &[Member]) -> bool {
        let Some((&primary, backups)) = targets.split_first() else {
            return false;
        };
        self.primary == primary
            && self.backups.len() == backups.len()
            && backups.iter().all(|backup| self.backups.contains(backup))
    }
}

/// The digest contribution of partition `partition` holding `record_opt`: the table digest is
/// the wrapping sum of these, so it can be kept up to date one partition at a time.
pub fn record_digest(partition: u32, record_opt: Option<&Record>) -> u64 {
    let Some(record) = record_opt else {
        return 0;
    };
    let mut hasher = Xxh3::with_seed(u64::from(partition));
    hasher.update(&record.epoch.term.to_le_bytes());
    hasher.update(&record.epoch.node.0.to_le_bytes());
    for member in record.owners() {
        hasher.update(&member.id.0.to_le_bytes());
        hasher.update(&member.incarnation.0.to_le_bytes());
    }
    hasher.update(&(record.backups.len() as u64).to_le_bytes());
    hasher.update(&record.suspect_before_hlc.to_le_bytes());
    // Never 0 for a present record, so "no record" and "a record" always differ.
    hasher.digest() | 1
}

/// A full partition table: the highest record seen per partition, and its digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    records: Vec<Option<Record>>,
    digest: u64,
}

impl Table {
    /// A table of `num_partitions` partitions without records.
    pub fn new(num_partitions: u32) -> Table {
        Table {
            records: vec![None; num_partitions as usize],
            digest: 0,
        }
    }

    /// Number of partitions.
    pub fn num_partitions(&self) -> u32 {
        self.records.len() as u32
    }

    /// The record of `partition`, if any (none for a partition out of range).
    pub fn get(&self, partition: u32) -> Option<&Record> {
        self.records.get(partition as usize)?.as_ref()
    }

    /// Keeps `record` if it is higher than the one held for `partition`; returns whether it
    /// was adopted. A partition out of range adopts nothing.
    pub fn merge(&mut self, partition: u32, record: Record) -> bool {
        let Some(slot) = self.records.get_mut(partition as usize) else {
            return false;
        };
        if slot.as_ref().is_some_and(|held| *held >= record) {
            return false;
        }
        let old_digest = record_digest(partition, slot.as_ref());
        let new_digest = record_digest(partition, Some(&record));
        self.digest = self
            .digest
            .wrapping_sub(old_digest)
            .wrapping_add(new_digest);
        *slot = Some(record);
        true
    }

    /// The digest of the whole table: equal tables have equal digests.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Every partition that has a record, in partition order.
    pub fn records(&self) -> impl Iterator<Item = (u32, &Record)> {
        self.records
            .iter()
            .enumerate()
            .filter_map(|(partition, record)| Some((partition as u32, record.as_ref()?)))
    }
}

/// A member of a view, as placement needs it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewMember {
    /// The member.
    pub member: Member,
    /// Its configured name: the rendezvous score is computed over it, so placement does not
    /// change when a node restarts.
    pub name: String,
    /// It is leaving (planned): it is no target anywhere.
    pub leaving: bool,
}

/// The rendezvous (highest random weight) score of node `name` for `partition`.
pub fn rendezvous_score(name: &str, partition: u32) -> u64 {
    xxh3_64_with_seed(name.as_bytes(), u64::from(partition))
}

/// The members placement ranks: those not leaving, or, when every member is leaving, all of
/// them (a cluster whose nodes all leave still serves until they are gone).
fn eligible(view: &[ViewMember]) -> impl Iterator<Item = &ViewMember> {
    let all_leaving = view.iter().all(|member| member.leaving);
    view.iter()
        .filter(move |member| all_leaving || !member.leaving)
}

/// The target owners of `partition` in `view`: the members that are not leaving (all of them
/// when every one is leaving), ranked by [`rendezvous_score`] (highest first, equal scores by
/// ascending name), at most `1 + backups` of them. The first is the target primary.
///
/// Computes the ranking from scratch; the engine uses a [`Placement`] instead.
pub fn target_owners(partition: u32, view: &[ViewMember], backups: usize) -> Vec<Member> {
    let mut ranked: Vec<(u64, &str, Member)> = eligible(view)
        .map(|member| {
            (
                rendezvous_score(&member.name, partition),
                member.name.as_str(),
                member.member,
            )
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    ranked
        .into_iter()
        .take(backups.saturating_add(1))
        .map(|(_, _, member)| member)
        .collect()
}

/// The target owners of every partition for one view, computed once per view: 1024 partitions
/// on 64 nodes are 65 536 hashes, too many to repeat for every operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    owners_per_partition: usize,
    /// `owners_per_partition` slots per partition; the first `counts[p]` are used.
    owners: Vec<Member>,
    counts: Vec<u8>,
}

/// The most owners per partition a placement keeps (primary and backups).
pub const OWNERS_PER_PARTITION_MAX: usize = 8;

impl Placement {
    /// The targets of every partition of `num_partitions` in `view`, with `backups` backups
    /// each (at most [`OWNERS_PER_PARTITION_MAX`] owners in all).
    pub fn new(view: &[ViewMember], num_partitions: u32, backups: usize) -> Placement {
        let owners_per_partition = backups.saturating_add(1).min(OWNERS_PER_PARTITION_MAX);
        let mut eligible: Vec<&ViewMember> = eligible(view).collect();
        // Sorted by name, so that among equal scores the first seen wins: ascending name.
        eligible.sort_by(|a, b| a.name.cmp(&b.name));
        let filler = Member {
            id: NodeId(0),
            incarnation: Incarnation(0),
        };
        let mut owners = vec![filler; owners_per_partition * num_partitions as usize];
        let mut counts = vec![0u8; num_partitions as usize];
        let mut best: Vec<(u64, Member)> = Vec::with_capacity(owners_per_partition + 1);
        for partition in 0..num_partitions {
            best.clear();
            for member in &eligible {
                let score = rendezvous_score(&member.name, partition);
                // Insertion into a short sorted list: strictly higher scores go first, so an
                // equal score keeps the earlier (smaller) name ahead.
                let position = best
                    .iter()
                    .position(|(held, _)| score > *held)
                    .unwrap_or(best.len());
                if position < owners_per_partition {
                    best.insert(position, (score, member.member));
                    best.truncate(owners_per_partition);
                }
            }
            let start = partition as usize * owners_per_partition;
            for (slot, (_, member)) in owners[start..].iter_mut().zip(&best) {
                *slot = *member;
            }
            counts[partition as usize] = best.len() as u8;
        }
        Placement {
            owners_per_partition,
            owners,
            counts,
        }
    }

    /// Number of partitions.
    pub fn num_partitions(&self) -> u32 {
        self.counts.len() as u32
    }

    /// The target owners of `partition`, target primary first (empty out of range or when no
    /// member is eligible).
    pub fn targets(&self, partition: u32) -> &[Member] {
        let Some(&count) = self.counts.get(partition as usize) else {
            return &[];
        };
        let start = partition as usize * self.owners_per_partition;
        &self.owners[start..start + usize::from(count)]
    }

    /// The target primary of `partition`.
    pub fn target_primary(&self, partition: u32) -> Option<Member> {
        self.targets(partition).first().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u32, incarnation: u64) -> Member {
        Member {
            id: NodeId(id),
            incarnation: Incarnation(incarnation),
        }
    }

    fn record(term: u64, node: u32, primary: Member, backups: &[Member]) -> Record {
        Record {
            epoch: Epoch {
                term,
                node: NodeId(node),
            },
            primary,
            backups: backups.to_vec(),
            suspect_before_hlc: 0,
        }
    }

    fn view(names: &[&str]) -> Vec<ViewMember> {
        names
            .iter()
            .map(|name| ViewMember {
                member: member(NodeId::from_name(name).0, 1),
                name: (*name).to_string(),
                leaving: false,
            })
            .collect()
    }

    #[test]
    fn epochs_order_by_term_then_node() {
        let check = |a: (u64, u32), b: (u64, u32), expect: std::cmp::Ordering| {
            let a = Epoch {
                term: a.0,
                node: NodeId(a.1),
            };
            let b = Epoch {
                term: b.0,
                node: NodeId(b.1),
            };
            assert_eq!(a.cmp(&b), expect, "{a} vs {b}");
        };
        check((1, 9), (2, 1), std::cmp::Ordering::Less);
        check((2, 1), (2, 2), std::cmp::Ordering::Less);
        check((3, 3), (3, 3), std::cmp::Ordering::Equal);
    }

    #[test]
    fn a_record_has_its_targets_as_owners_whatever_the_order_of_its_backups() {
        let (a, b, c) = (member(1, 1), member(2, 1), member(3, 1));
        let held = record(1, 1, a, &[b, c]);
        assert!(held.has_owners(&[a, b, c]));
        assert!(held.has_owners(&[a, c, b]));
        assert!(!held.has_owners(&[b, a, c]), "another primary");
        assert!(!held.has_owners(&[a, b]), "a backup to shed");
        assert!(
            !record(1, 1, a, &[b]).has_owners(&[a, b, c]),
            "a backup to make"
        );
        assert!(!record(1, 1, a, &[b, b]).has_owners(&[a, b, c]));
        assert!(!held.has_owners(&[]), "no target");
    }

    #[test]
    fn merge_keeps_the_higher_record_and_reports_adoption() {
        let a = member(1, 1);
        let b = member(2, 1);
        let mut table = Table::new(4);
        assert!(table.merge(0, record(1, 1, a, &[])));
        assert!(!table.merge(0, record(1, 1, a, &[])), "idempotent");
        assert!(table.merge(0, record(2, 2, b, &[a])));
        assert!(!table.merge(0, record(1, 9, a, &[b])), "lower term");
        assert_eq!(table.get(0).map(|r| r.primary), Some(b));
        assert!(!table.merge(9, record(5, 1, a, &[])), "out of range");
        assert_eq!(table.get(9), None);
    }

    #[test]
    fn merge_is_order_independent_so_tables_converge() {
        let a = member(1, 1);
        let b = member(2, 1);
        let c = member(3, 7);
        let records = [
            (0, record(1, 1, a, &[])),
            (0, record(2, 2, b, &[a])),
            (1, record(4, 3, c, &[a, b])),
            (1, record(4, 3, c, &[b, a])),
            (2, record(1, 1, a, &[])),
            // Same epoch, different primary incarnation: the tie-break decides.
            (2, record(1, 1, member(1, 2), &[])),
        ];
        let mut forward = Table::new(4);
        let mut backward = Table::new(4);
        for (partition, record) in records.iter().cloned() {
            forward.merge(partition, record);
        }
        for (partition, record) in records.iter().rev().cloned() {
            backward.merge(partition, record);
        }
        assert_eq!(forward, backward);
        assert_eq!(forward.digest(), backward.digest());
        assert_eq!(forward.records().count(), 3);
    }

    #[test]
    fn the_digest_tells_tables_apart_and_is_the_sum_of_record_digests() {
        let a = member(1, 1);
        let b = member(2, 1);
        let mut one = Table::new(8);
        let mut two = Table::new(8);
        assert_eq!(one.digest(), two.digest());
        one.merge(3, record(1, 1, a, &[b]));
        assert_ne!(one.digest(), two.digest());
        two.merge(3, record(1, 1, a, &[]));
        assert_ne!(one.digest(), two.digest(), "backups count");
        two.merge(3, record(2, 1, a, &[b]));
        assert_ne!(one.digest(), two.digest(), "epoch counts");
        let sum = one.records().fold(0u64, |sum, (p, r)| {
            sum.wrapping_add(record_digest(p, Some(r)))
        });
        assert_eq!(sum, one.digest());
        // The same record in another partition contributes differently.
        assert_ne!(record_digest(1, one.get(3)), record_digest(3, one.get(3)));
        assert_eq!(record_digest(0, None), 0);
    }

    #[test]
    fn target_owners_rank_by_rendezvous_score_and_skip_leaving_members() {
        let names = ["web-1", "web-2", "web-3", "web-4"];
        let mut view = view(&names);
        for partition in 0..64 {
            let owners = target_owners(partition, &view, 2);
            assert_eq!(owners.len(), 3);
            let mut expected: Vec<(u64, &str)> = names
                .iter()
                .map(|name| (rendezvous_score(name, partition), *name))
                .collect();
            expected.sort_by(|a, b| b.cmp(a));
            let expected_ids: Vec<NodeId> = expected[..3]
                .iter()
                .map(|(_, name)| NodeId::from_name(name))
                .collect();
            let ids: Vec<NodeId> = owners.iter().map(|m| m.id).collect();
            assert_eq!(ids, expected_ids, "partition {partition}");
        }
        view[0].leaving = true;
        for partition in 0..64 {
            let owners = target_owners(partition, &view, 5);
            assert_eq!(
                owners.len(),
                3,
                "only non-leaving members, as many as exist"
            );
            assert!(!owners.contains(&view[0].member));
        }
        // When everyone leaves, everyone is ranked: the cluster serves until it is gone.
        for member in &mut view {
            member.leaving = true;
        }
        assert_eq!(target_owners(0, &view, 5).len(), 4);
        assert_eq!(Placement::new(&view, 1, 5).targets(0).len(), 4);
    }

    #[test]
    fn equal_scores_rank_by_ascending_name() {
        // Two members with the same name cannot exist, but the same score can; use one name
        // twice with different incarnations to force the tie and see the order is stable.
        let mut view = view(&["b", "a"]);
        view[0].name = "a".to_string();
        view[1].member = member(99, 1);
        let owners = target_owners(0, &view, 1);
        let placement = Placement::new(&view, 1, 1);
        assert_eq!(placement.targets(0), owners.as_slice());
    }

    #[test]
    fn the_cached_placement_equals_the_direct_ranking() {
        let names: Vec<String> = (0..13).map(|i| format!("node-{i}")).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut view = view(&name_refs);
        view[4].leaving = true;
        for backups in [0usize, 1, 2, 3] {
            let placement = Placement::new(&view, 256, backups);
            assert_eq!(placement.num_partitions(), 256);
            for partition in 0..256 {
                assert_eq!(
                    placement.targets(partition),
                    target_owners(partition, &view, backups).as_slice(),
                    "partition {partition} backups {backups}"
                );
            }
        }
        assert!(Placement::new(&view, 4, 1).targets(4).is_empty());
        assert_eq!(Placement::new(&[], 4, 1).target_primary(0), None);
    }

    #[test]
    fn placement_moves_few_partitions_when_a_node_joins() {
        let names: Vec<String> = (0..8).map(|i| format!("node-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let before = Placement::new(&view(&refs[..7]), 1024, 1);
        let after = Placement::new(&view(&refs), 1024, 1);
        let moved = (0..1024)
            .filter(|&p| before.target_primary(p) != after.target_primary(p))
            .count();
        // Rendezvous hashing moves about 1/8 of the primaries to the new node, and only those.
        assert!((64..=200).contains(&moved), "{moved}");
        let newcomer = view(&refs)[7].member;
        for p in 0..1024 {
            if before.target_primary(p) != after.target_primary(p) {
                assert_eq!(after.target_primary(p), Some(newcomer));
            }
        }
    }

    #[test]
    fn record_helpers_name_owners() {
        let (a, b, c) = (member(1, 1), member(2, 1), member(3, 1));
        let record = record(1, 1, a, &[b]);
        assert!(record.is_owner(a) && record.is_owner(b) && !record.is_owner(c));
        assert!(record.is_backup(b) && !record.is_backup(a));
        assert_eq!(record.owners().collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(member(0xab, 3).to_string(), "000000ab/3");
    }
}
