//! Peer links: one authenticated TCP connection per pair of members (PROTOCOL.md §3), opened by the
//! member with the lower node id, kept while the other member is in the view, reopened when it
//! breaks.

mod handshake;
pub(crate) mod link;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cluster::auth::{ClusterKeys, LocalPeer};
use cluster::node_id::NodeId;
use cluster::table::Member;
use ipnet::IpNet;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use link::{FrameHandler, Link};

/// Pause before dialling a member again after a failed attempt, doubling up to the maximum.
const REDIAL_DELAY_MIN: Duration = Duration::from_millis(50);
const REDIAL_DELAY_MAX: Duration = Duration::from_secs(1);

/// The links of this node.
pub(crate) struct Peers {
    me: Member,
    keys: ClusterKeys,
    local: LocalPeer,
    allow: Vec<IpNet>,
    /// The current link to each member, by node id.
    links: Mutex<HashMap<NodeId, Arc<Link>>>,
    /// Members in the view, with their peer addresses: the links this node should have.
    wanted: Mutex<HashMap<NodeId, (Member, SocketAddr)>>,
    handler: OnceLock<Arc<dyn FrameHandler>>,
    /// The last frame number given toward each node, kept across its links and incarnations,
    /// so numbers toward a node only grow: a member declared dead that comes back with the same
    /// incarnation (a paused process) must not find its new link numbering from 0 while a
    /// write still waits for a number of the old one (one entry per node name ever linked).
    last_frame_numbers: Mutex<HashMap<NodeId, u64>>,
    /// Held for the whole of `install`: two links to one node installed at once (a dial and an
    /// accept, or two dials) would otherwise interleave their downs and ups.
    installing: Mutex<()>,
    runtime: tokio::runtime::Handle,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    not_allowed_log: crate::log::RateLimited,
    handshake_log: crate::log::RateLimited,
}

impl Peers {
    pub(crate) fn new(
        me: Member,
        keys: ClusterKeys,
        local: LocalPeer,
        allow: Vec<IpNet>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Peers> {
        let peers = Arc::new(Peers {
            me,
            keys,
            local,
            allow,
            links: Mutex::new(HashMap::new()),
            wanted: Mutex::new(HashMap::new()),
            handler: OnceLock::new(),
            last_frame_numbers: Mutex::new(HashMap::new()),
            installing: Mutex::new(()),
            runtime: tokio::runtime::Handle::current(),
            tasks,
            shutdown,
            not_allowed_log: crate::log::RateLimited::new(),
            handshake_log: crate::log::RateLimited::new(),
        });
        // The node waits for every task before it exits, and a link's tasks end only when the
        // link closes: at shutdown every link is closed here, and `install` closes one made later.
        let closer = Arc::clone(&peers);
        peers.tasks.spawn(async move {
            closer.shutdown.cancelled().await;
            let links: Vec<Arc<Link>> = closer.links.lock().values().cloned().collect();
            for link in links {
                link.close();
            }
        });
        peers
    }

    /// Sets what receives the frames of every link; set once, before any link is made.
    pub(crate) fn set_handler(&self, handler: Arc<dyn FrameHandler>) {
        let _ = self.handler.set(handler);
    }

    /// The open link to `member` (that incarnation), if there is one.
    pub(crate) fn link_to(&self, member: Member) -> Option<Arc<Link>> {
        self.links
            .lock()
            .get(&member.id)
            .filter(|link| link.member == member && !link.is_closed())
            .cloned()
    }

    /// `member` entered the view at `peer_address`: link to it (this side dials when its id is
    /// the lower one; otherwise the other side will).
    pub(crate) fn member_up(self: &Arc<Peers>, member: Member, peer_address: SocketAddr) {
        if member.id == self.me.id {
            return;
        }
        let previous = self.wanted.lock().insert(member.id, (member, peer_address));
        // A new incarnation replaces the link to the old one.
        if let Some((old, _)) = previous
            && old != member
            && let Some(link) = self.links.lock().get(&member.id).cloned()
            && link.member != member
        {
            link.close();
        }
        if self.me.id < member.id {
            // Called from the membership thread too, hence the explicit runtime.
            self.tasks.spawn_on(
                Arc::clone(self).dial_until_linked(member, peer_address),
                &self.runtime,
            );
        }
    }

    /// `member` left the view: close its link and stop dialling it.
    pub(crate) fn member_down(&self, member: Member) {
        {
            let mut wanted = self.wanted.lock();
            if wanted
                .get(&member.id)
                .is_some_and(|(wanted_member, _)| *wanted_member == member)
            {
                wanted.remove(&member.id);
            }
        }
        if let Some(link) = self
            .links
            .lock()
            .get(&member.id)
            .filter(|link| link.member == member)
            .cloned()
        {
            link.close();
        }
    }

    fn is_wanted(&self, member: Member) -> bool {
        self.wanted
            .lock()
            .get(&member.id)
            .is_some_and(|(wanted, _)| *wanted == member)
    }

    /// A link closed: forget it, and dial again if the member is still wanted and this side dials.
    pub(crate) fn link_closed(self: &Arc<Peers>, link: &Arc<Link>) {
        self.note_last_frame_number(link);
        {
            let mut links = self.links.lock();
            if links
                .get(&link.member.id)
                .is_some_and(|current| Arc::ptr_eq(current, link))
            {
                links.remove(&link.member.id);
            }
        }
        if self.shutdown.is_cancelled() || self.me.id > link.member.id {
            return;
        }
        let address_opt = self
            .wanted
            .lock()
            .get(&link.member.id)
            .filter(|(member, _)| *member == link.member)
            .map(|(_, address)| *address);
        if let Some(address) = address_opt {
            self.tasks.spawn_on(
                Arc::clone(self).dial_until_linked(link.member, address),
                &self.runtime,
            );
        }
    }

    async fn dial_until_linked(self: Arc<Peers>, member: Member, address: SocketAddr) {
        let mut delay = REDIAL_DELAY_MIN;
        while self.is_wanted(member)
            && !self.shutdown.is_cancelled()
            && self.link_to(member).is_none()
        {
            match self.dial(member, address).await {
                Ok(()) => return,
                Err(error) => {
                    if self.handshake_log.allow() {
                        tracing::warn!(peer = ?member, %address, %error, "cannot link to peer; retrying");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shutdown.cancelled() => return,
            }
            delay = (delay * 2).min(REDIAL_DELAY_MAX);
        }
    }

    async fn dial(self: &Arc<Peers>, member: Member, address: SocketAddr) -> Result<(), String> {
        let mut stream = tokio::time::timeout(
            handshake::HANDSHAKE_TIMEOUT,
            tokio::net::TcpStream::connect(address),
        )
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|error| error.to_string())?;
        let identity = handshake::initiate(
            &mut stream,
            &self.keys,
            self.local.clone(),
            self.me.incarnation,
            member.id,
        )
        .await
        .map_err(|error| error.to_string())?;
        if identity.incarnation != member.incarnation {
            return Err(format!(
                "reached incarnation {} of the peer, expected {}",
                identity.incarnation.0, member.incarnation.0
            ));
        }
        self.install(member, stream);
        Ok(())
    }

    /// Accepts peer connections until shutdown.
    pub(crate) async fn accept_forever(self: Arc<Peers>, listener: tokio::net::TcpListener) {
        loop {
            let (stream, address) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accepting a peer connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = self.shutdown.cancelled() => return,
            };
            if !crate::config::is_allowed(&self.allow, address.ip()) {
                if self.not_allowed_log.allow() {
                    tracing::warn!(%address, "refused a peer connection from a host outside --allow");
                }
                continue;
            }
            let peers = Arc::clone(&self);
            self.tasks.spawn_on(
                async move { peers.accept_one(stream, address).await },
                &self.runtime,
            );
        }
    }

    async fn accept_one(self: Arc<Peers>, mut stream: tokio::net::TcpStream, address: SocketAddr) {
        let identity = match handshake::respond(
            &mut stream,
            &self.keys,
            self.local.clone(),
            self.me.incarnation,
        )
        .await
        {
            Ok(identity) => identity,
            Err(error) => {
                if self.handshake_log.allow() {
                    tracing::warn!(%address, %error, "refused a peer link");
                }
                return;
            }
        };
        if identity.node_id > self.me.id {
            // The lower id dials; a higher one dialling is out of step (it will learn).
            tracing::debug!(%address, "refused a link dialled by a higher node id");
            return;
        }
        let member = Member {
            id: identity.node_id,
            incarnation: identity.incarnation,
        };
        self.install(member, stream);
    }

    /// The links of `me` in a cluster named `test` of 8 partitions, with no secret, for unit
    /// tests (in a tokio runtime).
    #[cfg(test)]
    pub(crate) fn for_tests(me: Member) -> Arc<Peers> {
        Peers::new(
            me,
            ClusterKeys::derive(None, "test"),
            LocalPeer {
                cluster_name: "test".to_string(),
                node_id: me.id,
                protocol_version: cluster::membership::wire::PROTOCOL_VERSION,
                partition_count: 8,
                channel_binding: Vec::new(),
            },
            Vec::new(),
            TaskTracker::new(),
            CancellationToken::new(),
        )
    }

    /// The highest frame number used toward `member`'s node so far, on any link.
    pub(crate) fn frames_sent(&self, member: Member) -> u64 {
        let current = self
            .links
            .lock()
            .get(&member.id)
            .map_or(0, |link| link.last_frame_number());
        current.max(self.ended_frame_number(member.id))
    }

    /// The last frame number of the closed links to `id`'s node: where its next link starts.
    fn ended_frame_number(&self, id: NodeId) -> u64 {
        self.last_frame_numbers
            .lock()
            .get(&id)
            .copied()
            .unwrap_or(0)
    }

    /// Records the last frame number of a closed link, where the next link to its node starts.
    fn note_last_frame_number(&self, link: &Link) {
        let mut last_frame_numbers = self.last_frame_numbers.lock();
        let last = last_frame_numbers.entry(link.member.id).or_insert(0);
        *last = (*last).max(link.last_frame_number());
    }

    /// Makes `stream` the link to `member`, closing any older link to that node.
    fn install(self: &Arc<Peers>, member: Member, stream: tokio::net::TcpStream) {
        let Some(handler) = self.handler.get().cloned() else {
            return;
        };
        let _installing = self.installing.lock();
        // The link is registered and announced before its reader starts, so whatever the handler
        // sends on link-up (a table request) is queued first and every frame it receives finds
        // the link known.
        let replaced = self.links.lock().remove(&member.id);
        if let Some(old) = replaced {
            // The node hears of the old link's end before it hears of the new one: its tasks
            // would report it later, and the engine would take that for the new link's end
            // (keeping no state for a link that is up, and so never counting its
            // acknowledgements).
            old.close();
            // Noted first: the engine asks for it when it hears of the end (`frames_sent`).
            self.note_last_frame_number(&old);
            old.report_down(handler.as_ref());
        }
        let frame_base = self.ended_frame_number(member.id);
        let link = Arc::new(Link::new(member, frame_base));
        self.links.lock().insert(member.id, Arc::clone(&link));
        handler.on_link_up(&link);
        link::run(&link, stream, handler, &self.tasks);
        // A dial or accept that completes during shutdown (a leaving node redials the peers
        // that dropped it after its leave datagrams) must not keep the node from exiting. The
        // check follows the insertion, so either this or the shutdown task sees the link.
        if self.shutdown.is_cancelled() {
            link.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use cluster::node_id::Incarnation;
    use tokio::sync::Notify;

    enum Event {
        Up(Arc<Link>),
        Down(Arc<Link>),
    }

    /// Records the links' ups and downs in the order the node hears of them, and tells the
    /// links of a closed one as the node's handler does.
    #[derive(Default)]
    struct Recorder {
        events: Mutex<Vec<Event>>,
        closed: Notify,
        peers: OnceLock<std::sync::Weak<Peers>>,
    }

    impl FrameHandler for Recorder {
        fn on_link_up(&self, link: &Arc<Link>) {
            self.events.lock().push(Event::Up(Arc::clone(link)));
        }
        fn on_frame(&self, _link: &Arc<Link>, _payload: Bytes) {}
        fn on_batch_end(&self, _link: &Arc<Link>) {}
        fn on_link_down(&self, link: &Arc<Link>) {
            self.events.lock().push(Event::Down(Arc::clone(link)));
        }
        fn on_closed(&self, link: &Arc<Link>) {
            if let Some(peers) = self.peers.get().and_then(std::sync::Weak::upgrade) {
                peers.link_closed(link);
            }
            self.closed.notify_one();
        }
    }

    /// One end of a loopback connection, and the other end to keep it open.
    async fn connection() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let far = tokio::net::TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (near, _) = listener.accept().await.expect("accept");
        (near, far)
    }

    fn member_of(id: u32) -> Member {
        Member {
            id: NodeId(id),
            incarnation: Incarnation(1),
        }
    }

    /// Node 1's links, reporting to a new recorder.
    fn peers_of_node_1() -> (Arc<Peers>, Arc<Recorder>) {
        let peers = Peers::for_tests(member_of(1));
        let recorder = Arc::new(Recorder::default());
        peers.set_handler(Arc::clone(&recorder) as Arc<dyn FrameHandler>);
        let _ = recorder.peers.set(Arc::downgrade(&peers));
        (peers, recorder)
    }

    /// Queues `count` numbered (empty) frames on `link`.
    /// Installs a new link to `peer` over a loopback connection and queues `frames` numbered
    /// (empty) frames on it; returns the link and the connection's far end, which keeps it open.
    async fn link_with_frames(
        peers: &Arc<Peers>,
        peer: Member,
        frames: usize,
    ) -> (Arc<Link>, tokio::net::TcpStream) {
        let (stream, far) = connection().await;
        peers.install(peer, stream);
        let link = peers.link_to(peer).expect("the new link");
        for _ in 0..frames {
            link.queue(true, |out| {
                out.extend_from_slice(&[0, 0, 0, 0]);
                Ok::<(), String>(())
            })
            .expect("queued");
        }
        (link, far)
    }

    async fn wait_for_closed(recorder: &Recorder) {
        tokio::time::timeout(Duration::from_secs(10), recorder.closed.notified())
            .await
            .expect("the first link's tasks end");
    }

    #[tokio::test]
    async fn a_replaced_link_is_reported_down_before_its_successor_is_up() {
        let (peers, recorder) = peers_of_node_1();
        let peer = member_of(2);
        let (first, _first_far) = link_with_frames(&peers, peer, 3).await;
        // The same member links again (its process was paused and its peers dialled it anew)
        // while the first link's tasks still run.
        let (second, _second_far) = link_with_frames(&peers, peer, 0).await;
        wait_for_closed(&recorder).await;

        let events = recorder.events.lock();
        let order: Vec<String> = events
            .iter()
            .map(|event| match event {
                Event::Up(link) if Arc::ptr_eq(link, &first) => "first up",
                Event::Down(link) if Arc::ptr_eq(link, &first) => "first down",
                Event::Up(link) if Arc::ptr_eq(link, &second) => "second up",
                Event::Down(link) if Arc::ptr_eq(link, &second) => "second down",
                _ => panic!("an event of a link the test did not make"),
            })
            .map(str::to_string)
            .collect();
        assert_eq!(order, ["first up", "first down", "second up"]);
        // Frame numbers toward the member go on from the first link's.
        assert_eq!(second.frame_base, 3);
    }

    #[tokio::test]
    async fn frame_numbers_toward_a_member_that_left_and_came_back_go_on() {
        let (peers, recorder) = peers_of_node_1();
        let peer = member_of(2);
        let (first, _first_far) = link_with_frames(&peers, peer, 3).await;
        // The link breaks, then membership declares the member dead; the same incarnation comes
        // back (a paused process), and a write may still wait for frame 3 of the first link.
        first.close();
        wait_for_closed(&recorder).await;
        peers.member_down(peer);
        let (second, _second_far) = link_with_frames(&peers, peer, 0).await;
        assert_eq!(second.frame_base, 3);
    }
}
