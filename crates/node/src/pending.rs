//! A value that is either known now or will be known later — how the front ends stay fast when a
//! command runs on this node (no future, no allocation) and still work when it is relayed or has to
//! wait for backups.

use std::future::Future;
use std::pin::Pin;

/// A boxed future that may move between worker threads.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Known now, or later.
pub(crate) enum Pending<T> {
    /// Known now.
    Ready(T),
    /// Known when the future resolves.
    Later(BoxFuture<T>),
}

impl<T: Send + 'static> Pending<T> {
    /// Transforms the value when it is known.
    pub(crate) fn map<U: Send + 'static>(
        self,
        transform: impl FnOnce(T) -> U + Send + 'static,
    ) -> Pending<U> {
        match self {
            Pending::Ready(value) => Pending::Ready(transform(value)),
            Pending::Later(future) => {
                Pending::Later(Box::pin(async move { transform(future.await) }))
            }
        }
    }

    /// The value, waiting for it when needed.
    pub(crate) async fn resolve(self) -> T {
        match self {
            Pending::Ready(value) => value,
            Pending::Later(future) => future.await,
        }
    }

    /// All values in order: ready at once when every one is ready, else one future that awaits
    /// them in order. They make progress concurrently: an operation that runs on this node ran
    /// when its `Pending` was made, and a relayed one sent its request then.
    pub(crate) fn join_all(pendings: Vec<Pending<T>>) -> Pending<Vec<T>> {
        if pendings
            .iter()
            .all(|pending| matches!(pending, Pending::Ready(_)))
        {
            return Pending::Ready(
                pendings
                    .into_iter()
                    .map(|pending| match pending {
                        Pending::Ready(value) => value,
                        Pending::Later(_) => unreachable!("checked above: every value is ready"),
                    })
                    .collect(),
            );
        }
        Pending::Later(Box::pin(async move {
            let mut values = Vec::with_capacity(pendings.len());
            for pending in pendings {
                values.push(pending.resolve().await);
            }
            values
        }))
    }
}
