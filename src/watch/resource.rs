//! What the engine watches and where it reads it: the [`Resource`] kinds (tasks and
//! runspaces), the [`Fetch`] of one upstream, and what a poller last [`Observed`].

use std::{sync::Arc, time::SystemTime};

use futures_util::future::BoxFuture;

use crate::{
    error::{GatewayError, Result},
    proto,
    trace::TraceContext,
    upstream::{Batch, RunspaceSource, TaskSource},
};

/// A watchable resource.
pub trait Resource: Clone + PartialEq + Send + Sync + 'static {
    /// What it is called in messages ("task").
    const KIND: &'static str;
    /// The upstream's id, as a batched answer carries it.
    fn id(&self) -> &str;
    /// A state after which nothing more happens: the watch ends with it.
    fn is_final(&self) -> bool;
}

impl Resource for proto::Task {
    const KIND: &'static str = "task";
    fn id(&self) -> &str {
        &self.id
    }
    fn is_final(&self) -> bool {
        self.done
    }
}

impl Resource for proto::Runspace {
    const KIND: &'static str = "runspace";
    fn id(&self) -> &str {
        &self.id
    }
    fn is_final(&self) -> bool {
        matches!(
            self.state(),
            proto::RunspaceState::Ready | proto::RunspaceState::Error
        )
    }
}

/// Where the engine reads a resource kind from one upstream.
pub trait Fetch<R: Send + 'static>: Send + Sync {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<R>>;
    /// Several at once; ids the upstream does not know are absent from the answer.
    fn get_many<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<Batch<R>>> {
        Box::pin(crate::upstream::get_each(ids, move |id| self.get(id)))
    }
    /// How many ids one `get_many` request carries (1 = no batching).
    fn batch_limit(&self) -> usize {
        1
    }
}

/// Tasks from a [`TaskSource`].
pub struct Tasks(pub Arc<dyn TaskSource>);

impl Fetch<proto::Task> for Tasks {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<proto::Task>> {
        self.0.get(id)
    }
    fn get_many<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<Batch<proto::Task>>> {
        self.0.get_many(ids)
    }
    fn batch_limit(&self) -> usize {
        self.0.batch_limit()
    }
}

/// Runspaces from a [`RunspaceSource`] (one request per runspace: SRS has no batch read).
pub struct Runspaces(pub Arc<dyn RunspaceSource>);

impl Fetch<proto::Runspace> for Runspaces {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<proto::Runspace>> {
        self.0.get(id)
    }
}

/// What a poller last learned.
#[derive(Clone)]
pub(crate) enum Observed<R> {
    /// Not read yet.
    Pending,
    /// The latest state, when the gateway read it (a read that found no change only moves
    /// `at`) and the trace of the read that found it (a poll's own, or a caller's GetTask).
    Seen {
        value: Arc<R>,
        at: SystemTime,
        trace: Option<TraceContext>,
    },
    /// The poller ended with this error (gone, budget spent, not retryable).
    Failed(GatewayError),
}
