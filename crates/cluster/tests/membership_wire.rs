//! Heartbeat datagrams as a receiving node sees them: every malformed or foreign form is rejected
//! with the right reason and counted, and no input makes it panic.

use std::net::SocketAddr;

use bytes::Bytes;
use cluster::auth::{ClusterKeys, ClusterSecret};
use cluster::membership::wire::{DATAGRAM_LEN_MAX, HEADER_LEN, MAC_LEN, decode_datagram};
use cluster::membership::{
    Membership, MembershipConfig, MembershipEvent, NodeAddresses, RejectReason, SelfIdentity,
};
use cluster::node_id::Incarnation;
use proptest::prelude::*;

const NOW_MS: u64 = 1_000;

fn address(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn node(name: &str, port: u16, secret: &[u8], incarnation: u64) -> Membership {
    let mut config = MembershipConfig::new("prod", 1024);
    config.secret_opt = Some(ClusterSecret(secret.to_vec()));
    // Port 9 stands for another address of node a (say, its name in DNS).
    config.seed_addresses = vec![address(1), address(9)];
    let identity = SelfIdentity {
        name: name.to_owned(),
        incarnation: Incarnation(incarnation),
        addresses: NodeAddresses {
            peer: address(port),
            heartbeat: address(port),
            client: address(6379),
            memcached_opt: None,
            admin: address(34580),
        },
    };
    Membership::new(config, identity, NOW_MS).unwrap_or_else(|error| panic!("{error}"))
}

/// The first heartbeat `sender` sends (to its seed).
fn first_heartbeat(sender: &mut Membership) -> Bytes {
    sender.handle_tick(NOW_MS);
    sender
        .poll_transmit()
        .map(|transmit| transmit.bytes)
        .unwrap_or_default()
}

fn receiver() -> Membership {
    node("a", 1, b"s3cret", 1)
}

/// Delivers `bytes` from b's address to a fresh receiver and checks the outcome and the counter.
fn check(bytes: &[u8], expect: Option<RejectReason>) {
    let mut receiver = receiver();
    let result = receiver.handle_datagram(address(2), bytes, NOW_MS);
    assert_eq!(
        result.as_ref().err().map(|reject| reject.reason()),
        expect,
        "{result:?}"
    );
    let stats = receiver.stats();
    match expect {
        Some(reason) => {
            assert_eq!(stats.rejected.get(reason), 1);
            assert_eq!(stats.rejected.total(), 1);
            assert_eq!(
                receiver.view().len(),
                1,
                "a rejected datagram changed the view"
            );
            assert_eq!(
                receiver.poll_event(),
                None,
                "a rejected datagram produced an event"
            );
        }
        None => {
            assert_eq!(stats.rejected.total(), 0);
            assert!(matches!(
                receiver.poll_event(),
                Some(MembershipEvent::NodeUp(_))
            ));
        }
    }
}

#[test]
fn every_malformed_or_foreign_datagram_is_rejected_with_its_reason() {
    let good = first_heartbeat(&mut node("b", 2, b"s3cret", 1)).to_vec();
    check(&good, None);
    check(&[], Some(RejectReason::Malformed));
    check(&good[..HEADER_LEN], Some(RejectReason::Malformed));
    check(
        &good[..good.len() - MAC_LEN / 2],
        Some(RejectReason::Malformed),
    );
    check(
        &[good.as_slice(), &[0]].concat(),
        Some(RejectReason::Malformed),
    );
    check(
        &vec![0; DATAGRAM_LEN_MAX + 1],
        Some(RejectReason::Malformed),
    );
    let mut bad_mac = good.clone();
    let last = bad_mac.len() - 1;
    bad_mac[last] ^= 0x80;
    check(&bad_mac, Some(RejectReason::BadMac));
    let mut other_version = good.clone();
    other_version[4..8].copy_from_slice(&7u32.to_be_bytes());
    check(&other_version, Some(RejectReason::ProtocolMismatch));
    check(
        &first_heartbeat(&mut node("b", 2, b"other secret", 1)),
        Some(RejectReason::BadMac),
    );
    let mut staging = node("b", 2, b"s3cret", 1);
    let mut staging_config = staging.config().clone();
    staging_config.cluster_name = "staging".to_owned();
    staging = Membership::new(staging_config, staging.identity().clone(), NOW_MS)
        .unwrap_or_else(|error| panic!("{error}"));
    check(
        &first_heartbeat(&mut staging),
        Some(RejectReason::OtherCluster),
    );
    // A node with the receiver's own name but another incarnation.
    check(
        &first_heartbeat(&mut node("a", 2, b"s3cret", 2)),
        Some(RejectReason::NameClash),
    );
}

#[test]
fn a_duplicated_heartbeat_is_rejected_as_replayed_and_an_older_incarnation_as_stale() {
    let mut receiver = receiver();
    let mut old = node("b", 2, b"s3cret", 1);
    let mut new = node("b", 2, b"s3cret", 2);
    let old_heartbeat = first_heartbeat(&mut old);
    assert_eq!(
        receiver.handle_datagram(address(2), &old_heartbeat, NOW_MS),
        Ok(())
    );
    let replayed = receiver.handle_datagram(address(2), &old_heartbeat, NOW_MS);
    assert_eq!(
        replayed.map_err(|reject| reject.reason()),
        Err(RejectReason::Replayed)
    );
    assert_eq!(
        receiver.handle_datagram(address(2), &first_heartbeat(&mut new), NOW_MS),
        Ok(())
    );
    let stale = receiver.handle_datagram(address(2), &old_heartbeat, NOW_MS);
    assert_eq!(
        stale.map_err(|reject| reject.reason()),
        Err(RejectReason::StaleIncarnation)
    );
}

#[test]
fn the_receivers_own_heartbeat_coming_back_is_ignored() {
    let mut receiver = receiver();
    let own = first_heartbeat(&mut receiver);
    assert!(!own.is_empty());
    assert_eq!(receiver.handle_datagram(address(9), &own, NOW_MS), Ok(()));
    assert_eq!(receiver.view(), vec![receiver.id()]);
    assert_eq!(receiver.stats().own_heartbeats_received, 1);
    // The seed turned out to be this node: it is not probed again.
    while receiver.poll_transmit().is_some() {}
    receiver.handle_tick(NOW_MS + 100);
    assert_eq!(receiver.poll_transmit(), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic_and_are_never_believed(bytes in proptest::collection::vec(any::<u8>(), 0..DATAGRAM_LEN_MAX + 64)) {
        let mut receiver = receiver();
        prop_assert!(receiver.handle_datagram(address(2), &bytes, NOW_MS).is_err());
        prop_assert_eq!(receiver.view().len(), 1);
        let keys = ClusterKeys::derive(None, "prod");
        prop_assert!(decode_datagram(&bytes, &keys, "prod").is_err());
    }

    #[test]
    fn mutated_heartbeats_never_panic_and_are_believed_only_unchanged(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let good = first_heartbeat(&mut node("b", 2, b"s3cret", 1)).to_vec();
        let mut bytes = good.clone();
        for (index, value) in &edits {
            let position = index.index(bytes.len());
            bytes[position] = *value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let mut receiver = receiver();
        let result = receiver.handle_datagram(address(2), &bytes, NOW_MS);
        prop_assert_eq!(result.is_ok(), bytes == good, "{:?}", result);
    }
}

/// Wraps `payload` in a header and a valid MAC, as a node holding the secret would.
fn authenticated(header_from: &[u8], payload: &[u8]) -> Vec<u8> {
    let keys = ClusterKeys::derive(Some(&ClusterSecret(b"s3cret".to_vec())), "prod");
    let mut bytes = header_from[..HEADER_LEN].to_vec();
    bytes[20..24].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(payload);
    let tag = ring::hmac::sign(keys.heartbeat_key(), &bytes);
    bytes.extend_from_slice(tag.as_ref());
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// With a valid MAC the payload decoder itself faces the bytes: it must bound and reject them.
    #[test]
    fn authenticated_garbage_payloads_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        random_payload in proptest::collection::vec(any::<u8>(), 0..600),
        use_random in any::<bool>(),
    ) {
        let good = first_heartbeat(&mut node("b", 2, b"s3cret", 1)).to_vec();
        let good_payload = &good[HEADER_LEN..good.len() - MAC_LEN];
        let payload = if use_random {
            random_payload
        } else {
            let mut payload = good_payload.to_vec();
            for (index, value) in &edits {
                let position = index.index(payload.len());
                payload[position] = *value;
            }
            payload
        };
        let mut receiver = receiver();
        let result = receiver.handle_datagram(address(2), &authenticated(&good, &payload), NOW_MS);
        if payload != good_payload && result.is_ok() {
            // An edit that still decodes to a consistent payload (a changed load, say) is fine;
            // the receiver then holds exactly one new member.
            prop_assert_eq!(receiver.view().len(), 2);
        }
    }
}
