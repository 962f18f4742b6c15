//! Client connection threads: each runs a single-threaded tokio runtime, and every client
//! connection lives its whole life on one of them (assigned in turn at accept).
//!
//! A multi-threaded work-stealing runtime moves a request/response connection between workers and
//! wakes idle workers to steal from busy ones; with many connections on two cores the wake-ups
//! (futex calls, context switches) cost more than the commands. A runtime per thread keeps a
//! connection, its buffers and its partition locks on one core and lets an idle thread sleep in
//! `epoll_wait` until its own sockets have something.
//!
//! The first client "thread" is the node's own runtime, the one that also runs the peer links, the
//! engine's timers and the admin API (`scd run` makes it a single-threaded runtime on the main
//! thread): a relay or a replicated write from a connection there goes from the connection to the
//! peer link's writer, and its answer back, without waking another thread. Connections on the
//! other client threads are woken across runtimes by the usual tokio primitives. How many client
//! threads: `config::default_client_threads`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The client threads of a node.
pub(crate) struct ClientShards {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stop: CancellationToken,
    threads: parking_lot::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl ClientShards {
    /// `count` client threads (at least one): the current runtime, and `count - 1` threads
    /// started here. Must be called inside a tokio runtime.
    pub(crate) fn start(count: usize) -> std::io::Result<Arc<ClientShards>> {
        let stop = CancellationToken::new();
        let mut handles = vec![Handle::current()];
        let mut threads = Vec::new();
        for index in 1..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let thread_stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("scd-client-{index}"))
                    .spawn(move || runtime.block_on(thread_stop.cancelled()))?,
            );
        }
        Ok(Arc::new(ClientShards {
            handles,
            next: AtomicUsize::new(0),
            stop,
            threads: parking_lot::Mutex::new(threads),
        }))
    }

    /// The runtime the next connection goes to, in turn.
    pub(crate) fn next(&self) -> &Handle {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[index]
    }

    /// Stops the threads once their connections have ended (the caller waited for them), and
    /// joins them.
    pub(crate) fn stop(&self) {
        self.stop.cancel();
        for thread in self.threads.lock().drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for ClientShards {
    /// A node dropped without an orderly stop (a crash in tests, a panic) still ends its client
    /// threads, and with them its connections. Not joined here: dropping may happen on one of them.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Called by a connection about to write the replies of the `num_requests` requests it just ran
/// (`output_bytes` of them known now). After a pipelined batch (more than one request) it lets
/// every other connection that is ready run first, so that the replies of a busy runtime leave in
/// one burst instead of one write between two reads.
///
/// A client that waits on several connections (a load generator, a worker pool behind one
/// event loop) is then woken once per burst, not once per reply: on two cores a cross-CPU
/// wake-up is an inter-processor interrupt, which cost about a fifth of the CPU of a pipelined
/// GET (`bench/throughput.sh`, README). A single request is answered at once: deferring it
/// would add a poll of the I/O driver to every round trip of an unpipelined client.
pub(crate) async fn before_pipelined_reply(num_requests: usize, output_bytes: usize) {
    if num_requests > 1 && output_bytes > 0 {
        tokio::task::yield_now().await;
    }
}
