//! One authenticated TCP link to a peer: frames out through a queue drained by a writer task,
//! frames in through a reader task. Queueing never blocks (the engine queues frames while holding
//! a partition lock), so the queue is bounded in bytes and a peer that cannot keep up is
//! disconnected rather than allowed to grow it without limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use cluster::table::Member;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The largest frame either side may send (PROTOCOL.md §14).
pub(crate) const FRAME_BYTES_MAX: usize = cluster::wire::FRAME_LEN_MAX;
/// Bytes queued on a link beyond which the peer is considered unable to keep up and the link is
/// closed (it is reopened and the partitions it carried are resynchronised).
pub(crate) const QUEUED_BYTES_MAX: usize = 256 << 20;
/// Size of the frame length prefix (`cluster::wire::FRAME_HEADER_LEN`).
const LENGTH_PREFIX_BYTES: usize = cluster::wire::FRAME_HEADER_LEN;
/// Frames handled from one read before the batch is ended early (and the task yields, so the
/// acknowledgement leaves): a peer whose write-through writes wait for it should not wait
/// until a large read has been worked through.
const FRAMES_PER_BATCH_MAX: usize = 32;

/// At most one warning a second about oversized frames, whatever the link (a peer that keeps
/// reconnecting to send them cannot fill the log).
static OVERSIZED_FRAME_LOG: crate::log::RateLimited = crate::log::RateLimited::new();

/// What a link delivers to the node.
pub(crate) trait FrameHandler: Send + Sync + 'static {
    /// The link is authenticated and running.
    fn on_link_up(&self, link: &Arc<Link>);
    /// A frame arrived (its body, without the length prefix); frames arrive in the order the peer
    /// queued them. The handler calls `Link::count_numbered_frame` for every frame but
    /// acknowledgements (`Link::count_answered_frame` for relayed requests and their responses).
    fn on_frame(&self, link: &Arc<Link>, payload: Bytes);
    /// The frames of one read have been delivered, or `FRAMES_PER_BATCH_MAX` of them (the
    /// place to acknowledge them).
    fn on_batch_end(&self, link: &Arc<Link>);
    /// The link carries nothing more. Called once per link (through [`Link::report_down`]),
    /// and before the `on_link_up` of a link that replaces it: the node then hears of one link
    /// of a member at a time, in order.
    fn on_link_down(&self, link: &Arc<Link>);
    /// The link's tasks ended (after `on_link_down`).
    fn on_closed(&self, link: &Arc<Link>);
}

struct Outbound {
    buffer: BytesMut,
    frames_queued: u64,
}

/// A link to one incarnation of a peer.
pub(crate) struct Link {
    pub(crate) member: Member,
    /// Frame numbers toward a member continue across its links (the engine may still wait for
    /// an old number): this link's frame `n` is number `frame_base + n`, and the peer's
    /// acknowledgements, which count this link's frames, are shifted the same way.
    pub(crate) frame_base: u64,
    outbound: Mutex<Outbound>,
    outbound_ready: Notify,
    /// Bytes queued and not yet handed to the socket.
    backlog_bytes: AtomicUsize,
    /// Frames received and delivered so far (the peer's numbering of what it sent).
    frames_received: AtomicU64,
    /// Whether a frame that must be acknowledged arrived since the last acknowledgement.
    /// Acknowledgements are frames too but are never acknowledged, or two links would echo
    /// acknowledgements to each other forever. Relayed requests and responses are numbered but
    /// make no acknowledgement due: their answer is what their sender waits for, and an
    /// acknowledgement of each would double a relay's frames and system calls. The next
    /// acknowledgement covers them (acknowledgements count frames).
    acknowledgement_due: AtomicBool,
    /// Stops the link's tasks (they wait on it).
    closed: CancellationToken,
    /// Set before `closed` is cancelled, for the checks on every frame queued and every link
    /// looked up: `CancellationToken::is_cancelled` locks a mutex (1.2 % of a node's CPU
    /// under relayed SETs, by `perf`).
    is_closed: AtomicBool,
    /// Whether `on_link_down` ran; held while it runs, so whoever comes second waits for it.
    down_reported: Mutex<bool>,
}

impl Link {
    pub(crate) fn new(member: Member, frame_base: u64) -> Link {
        Link {
            member,
            frame_base,
            outbound: Mutex::new(Outbound {
                buffer: BytesMut::with_capacity(64 << 10),
                frames_queued: 0,
            }),
            outbound_ready: Notify::new(),
            backlog_bytes: AtomicUsize::new(0),
            frames_received: AtomicU64::new(0),
            acknowledgement_due: AtomicBool::new(false),
            closed: CancellationToken::new(),
            is_closed: AtomicBool::new(false),
            down_reported: Mutex::new(false),
        }
    }

    /// Queues one frame that `encode` appends whole (length prefix included, as
    /// `cluster::wire::encode_frame` writes it). A `numbered` frame gets the next number toward
    /// this member (`frame_base` + 1, 2, 3… in queue order), which the peer's acknowledgements
    /// count; acknowledgements themselves are not numbered. Returns the number (0 for an
    /// unnumbered frame), or `None` when the link is closed or `encode` failed (the frame is then
    /// not queued).
    pub(crate) fn queue<E: std::fmt::Display>(
        &self,
        numbered: bool,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Option<u64> {
        let mut outbound = self.outbound.lock();
        // Checked under the lock: once `close` returned, `last_frame_number` is final (a new
        // link to the member starts its numbers after it).
        if self.is_closed() {
            return None;
        }
        let start = outbound.buffer.len();
        if let Err(error) = encode(&mut outbound.buffer) {
            outbound.buffer.truncate(start);
            tracing::error!(peer = ?self.member, %error, "could not encode a peer frame; dropped it");
            return None;
        }
        let frame_bytes = outbound.buffer.len() - start;
        let number = if numbered {
            outbound.frames_queued += 1;
            self.frame_base + outbound.frames_queued
        } else {
            0
        };
        let backlog = self.backlog_bytes.fetch_add(frame_bytes, Ordering::Relaxed) + frame_bytes;
        drop(outbound);
        if backlog > QUEUED_BYTES_MAX {
            tracing::warn!(peer = ?self.member, backlog, "peer is not keeping up with its link; closing it");
            self.close();
            return None;
        }
        self.outbound_ready.notify_one();
        Some(number)
    }

    /// The number of the last numbered frame queued on this link (`frame_base` if none); final
    /// once the link is closed.
    pub(crate) fn last_frame_number(&self) -> u64 {
        self.frame_base + self.outbound.lock().frames_queued
    }

    /// Bytes queued and not yet written.
    pub(crate) fn backlog_bytes(&self) -> usize {
        self.backlog_bytes.load(Ordering::Relaxed)
    }

    /// Counts a numbered frame just delivered (every frame but acknowledgements); an
    /// acknowledgement is then due.
    pub(crate) fn count_numbered_frame(&self) {
        self.frames_received.fetch_add(1, Ordering::AcqRel);
        self.acknowledgement_due.store(true, Ordering::Release);
    }

    /// Counts a relayed request or response just delivered: numbered, but nobody waits for its
    /// acknowledgement (see `acknowledgement_due`).
    pub(crate) fn count_answered_frame(&self) {
        self.frames_received.fetch_add(1, Ordering::AcqRel);
    }

    /// The number of numbered frames received so far, when an acknowledgement is due (it is then
    /// considered sent).
    pub(crate) fn take_acknowledgement(&self) -> Option<u64> {
        self.acknowledgement_due
            .swap(false, Ordering::AcqRel)
            .then(|| self.frames_received.load(Ordering::Acquire))
    }

    /// Closes the link: both tasks stop, the handler's `on_closed` runs once.
    pub(crate) fn close(&self) {
        self.is_closed.store(true, Ordering::Release);
        self.closed.cancel();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.is_closed.load(Ordering::Acquire)
    }

    /// Runs `handler.on_link_down` for this closed link unless it already ran; a second caller
    /// returns only once the first one's call is over.
    pub(crate) fn report_down(self: &Arc<Self>, handler: &dyn FrameHandler) {
        debug_assert!(self.is_closed());
        let mut reported = self.down_reported.lock();
        if !*reported {
            *reported = true;
            handler.on_link_down(self);
        }
    }
}

/// Starts the writer and reader tasks of `link` over its authenticated connection. Frames queued
/// before are written first. When either task ends (error, end of stream, or `close`) the link
/// is reported down, if nothing did so before, and `on_closed` runs once the reader is done.
pub(crate) fn run(
    link: &Arc<Link>,
    stream: tokio::net::TcpStream,
    handler: Arc<dyn FrameHandler>,
    tasks: &tokio_util::task::TaskTracker,
) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let writer_link = Arc::clone(link);
    tasks.spawn(async move {
        if let Err(error) = write_loop(&writer_link, writer).await {
            tracing::debug!(peer = ?writer_link.member, %error, "peer link write failed");
        }
        writer_link.close();
    });
    let reader_link = Arc::clone(link);
    tasks.spawn(async move {
        if let Err(error) = read_loop(&reader_link, reader, handler.as_ref()).await {
            tracing::debug!(peer = ?reader_link.member, %error, "peer link read ended");
        }
        reader_link.close();
        reader_link.report_down(handler.as_ref());
        handler.on_closed(&reader_link);
    });
}

async fn write_loop(link: &Link, mut writer: OwnedWriteHalf) -> std::io::Result<()> {
    // Two buffers swap roles: the engine queues into one while the other is being written.
    let mut writing = BytesMut::with_capacity(64 << 10);
    loop {
        tokio::select! {
            // Work first: when it is ready the token is not polled (a mutex per poll).
            biased;
            () = link.outbound_ready.notified() => {}
            () = link.closed.cancelled() => return Ok(()),
        }
        loop {
            {
                let mut outbound = link.outbound.lock();
                if outbound.buffer.is_empty() {
                    break;
                }
                std::mem::swap(&mut outbound.buffer, &mut writing);
            }
            let bytes = writing.len();
            writer.write_all(&writing).await?;
            link.backlog_bytes.fetch_sub(bytes, Ordering::Relaxed);
            writing.clear();
            if writing.capacity() > (4 << 20) {
                // A snapshot burst grew it; give the memory back.
                writing = BytesMut::with_capacity(64 << 10);
            }
        }
    }
}

async fn read_loop(
    link: &Arc<Link>,
    mut reader: OwnedReadHalf,
    handler: &dyn FrameHandler,
) -> std::io::Result<()> {
    let mut input = BytesMut::with_capacity(64 << 10);
    loop {
        let read = tokio::select! {
            // Input first, as in `write_loop`.
            biased;
            read = reader.read_buf(&mut input) => read?,
            () = link.closed.cancelled() => return Ok(()),
        };
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "peer closed the link",
            ));
        }
        let mut delivered = 0_usize;
        while input.len() >= LENGTH_PREFIX_BYTES {
            // A closed link delivers nothing more, even frames already read, and ends no batch
            // (whose acknowledgement would cover them): a frame handler closes it on a
            // malformed frame or a gap in the replication stream, and the frames up to and
            // behind that one must not be taken as if it had not been there.
            if link.is_closed() {
                return Ok(());
            }
            if delivered == FRAMES_PER_BATCH_MAX {
                handler.on_batch_end(link);
                tokio::task::yield_now().await;
                delivered = 0;
                if link.is_closed() {
                    return Ok(());
                }
            }
            let length = u32::from_be_bytes([input[0], input[1], input[2], input[3]]) as usize;
            if length > FRAME_BYTES_MAX {
                if OVERSIZED_FRAME_LOG.allow() {
                    tracing::warn!(
                        peer = ?link.member,
                        length,
                        limit = FRAME_BYTES_MAX,
                        "peer frame larger than the limit; closing the link"
                    );
                }
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "peer frame of {length} bytes exceeds the {FRAME_BYTES_MAX}-byte limit"
                    ),
                ));
            }
            if input.len() < LENGTH_PREFIX_BYTES + length {
                input.reserve(LENGTH_PREFIX_BYTES + length - input.len());
                break;
            }
            input.advance(LENGTH_PREFIX_BYTES);
            let payload = input.split_to(length).freeze();
            handler.on_frame(link, payload);
            delivered += 1;
        }
        if link.is_closed() {
            return Ok(());
        }
        if delivered > 0 {
            handler.on_batch_end(link);
        }
        if input.is_empty() && input.capacity() > (4 << 20) {
            input = BytesMut::with_capacity(64 << 10);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::node_id::{Incarnation, NodeId};

    /// Records what it is given, and closes the link on a frame `bad`, as the node's handler
    /// does on a malformed one.
    #[derive(Default)]
    struct Recorder {
        frames: Mutex<Vec<Bytes>>,
        /// The number of frames delivered at each batch end.
        batch_ends: Mutex<Vec<usize>>,
        closed: Notify,
    }

    impl FrameHandler for Recorder {
        fn on_link_up(&self, _link: &Arc<Link>) {}
        fn on_frame(&self, link: &Arc<Link>, payload: Bytes) {
            if payload.as_ref() == b"bad" {
                link.close();
            }
            self.frames.lock().push(payload);
        }
        fn on_batch_end(&self, _link: &Arc<Link>) {
            let delivered = self.frames.lock().len();
            self.batch_ends.lock().push(delivered);
        }
        fn on_link_down(&self, _link: &Arc<Link>) {}
        fn on_closed(&self, _link: &Arc<Link>) {
            self.closed.notify_one();
        }
    }

    /// A link over a loopback connection reporting to a new recorder, and the far end.
    async fn recorded_link() -> (Arc<Link>, Arc<Recorder>, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let far = tokio::net::TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (stream, _) = listener.accept().await.expect("accept");
        let member = Member {
            id: NodeId(2),
            incarnation: Incarnation(1),
        };
        let link = Arc::new(Link::new(member, 0));
        let recorder = Arc::new(Recorder::default());
        let tasks = tokio_util::task::TaskTracker::new();
        run(
            &link,
            stream,
            Arc::clone(&recorder) as Arc<dyn FrameHandler>,
            &tasks,
        );
        (link, recorder, far)
    }

    /// `bodies` framed, in one buffer.
    fn framed(bodies: &[&[u8]]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for body in bodies {
            bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
            bytes.extend_from_slice(body);
        }
        bytes
    }

    #[tokio::test]
    async fn a_large_read_is_acknowledged_every_few_frames_not_only_at_its_end() {
        let (link, recorder, mut peer) = recorded_link().await;
        let bodies: Vec<&[u8]> = vec![&b"f"[..]; FRAMES_PER_BATCH_MAX * 2 + 3];
        // One write, so one read takes them all (a few KiB).
        peer.write_all(&framed(&bodies)).await.expect("write");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while recorder.frames.lock().len() < bodies.len() {
            assert!(std::time::Instant::now() < deadline, "the frames arrive");
            tokio::task::yield_now().await;
        }
        let expected = [
            FRAMES_PER_BATCH_MAX,
            FRAMES_PER_BATCH_MAX * 2,
            FRAMES_PER_BATCH_MAX * 2 + 3,
        ];
        let batch_ends = recorder.batch_ends.lock().clone();
        assert_eq!(batch_ends, expected);
        link.close();
    }

    /// Writes `bodies` framed in one write (so one read takes them all), one of them "bad",
    /// and waits until the link closed.
    async fn closed_by_a_bad_frame(bodies: &[&[u8]]) -> (Arc<Link>, Arc<Recorder>) {
        let (link, recorder, mut peer) = recorded_link().await;
        peer.write_all(&framed(bodies)).await.expect("write");
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            recorder.closed.notified(),
        )
        .await
        .expect("the link closes");
        (link, recorder)
    }

    #[tokio::test]
    async fn a_link_closed_by_a_frame_delivers_none_of_the_frames_read_behind_it() {
        let (link, recorder) = closed_by_a_bad_frame(&[b"one", b"bad", b"two"]).await;
        let frames: Vec<Bytes> = recorder.frames.lock().clone();
        assert_eq!(frames, [&b"one"[..], b"bad"]);
        assert!(link.is_closed());
        assert_eq!(
            recorder.batch_ends.lock().clone(),
            Vec::<usize>::new(),
            "the batch that closed the link is not acknowledged"
        );
    }

    #[tokio::test]
    async fn a_link_closed_by_the_last_frame_of_a_read_acknowledges_nothing() {
        let (_link, recorder) = closed_by_a_bad_frame(&[b"one", b"bad"]).await;
        assert_eq!(recorder.frames.lock().len(), 2);
        assert_eq!(recorder.batch_ends.lock().clone(), Vec::<usize>::new());
    }
}
