//! What the gateway asks of an upstream kind: the [`TaskSource`] and [`RunspaceSource`]
//! traits every adapter implements, and [`get_each`] for kinds without a batch read.

use futures_util::future::BoxFuture;

use crate::{
    error::{GatewayError, Result},
    proto,
};

/// What one batched read learned: what it found, and the ids whose own entry was bad (one
/// garbled item never fails the others). Ids in neither were absent from the answer.
#[derive(Debug)]
pub struct Batch<T> {
    pub found: Vec<T>,
    pub failed: Vec<(String, GatewayError)>,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Batch {
            found: Vec::new(),
            failed: Vec::new(),
        }
    }
}

/// A source of tasks: vCenter, the snapshot service or Cloud Director.
pub trait TaskSource: Send + Sync {
    /// One task by the upstream's id.
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<proto::Task>>;
    /// One task, with its `upstream_payload` only if `payload()`, asked once the upstream has
    /// answered, says so: a kind may then skip building it.
    fn get_payload_if<'a>(
        &'a self,
        id: &'a str,
        payload: &'a (dyn Fn() -> bool + Send + Sync),
    ) -> BoxFuture<'a, Result<proto::Task>> {
        Box::pin(async move {
            let mut task = self.get(id).await?;
            if !payload() {
                task.upstream_payload = None;
            }
            Ok(task)
        })
    }
    /// Every task matching the filter (the gateway pages and orders them).
    fn list<'a>(&'a self, filter: &'a proto::TaskFilter)
    -> BoxFuture<'a, Result<Vec<proto::Task>>>;
    /// Asks the upstream to cancel the task.
    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// False where the upstream API has no cancel at all.
    fn supports_cancel(&self) -> bool {
        true
    }
    /// Several tasks in as few upstream requests as the API allows (the watch engine's batched
    /// poll). Ids the upstream does not know are absent from the answer, not an error; an
    /// entry that cannot be read fails only its own id.
    fn get_many<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<Batch<proto::Task>>> {
        Box::pin(get_each(ids, move |id| self.get(id)))
    }
    /// How many ids one `get_many` request can carry (1 = no batching upstream).
    fn batch_limit(&self) -> usize {
        1
    }
    /// The one spelling of a task id this upstream's answers use (Cloud Director accepts
    /// `urn:vcloud:task:{uuid}` on input but names tasks by the bare uuid).
    fn canonical_id(&self, id: &str) -> String {
        id.to_string()
    }
}

/// `get_many` without a batch API: one `get` per id, in turn, each failing on its own.
pub async fn get_each<'a, T, F>(ids: &'a [String], get: impl Fn(&'a str) -> F) -> Result<Batch<T>>
where
    F: std::future::Future<Output = Result<T>>,
{
    let mut batch = Batch::default();
    for id in ids {
        match get(id).await {
            Ok(t) => batch.found.push(t),
            Err(e) => batch.failed.push((id.clone(), e)),
        }
    }
    Ok(batch)
}

/// A source of runspaces: the Script Runtime Service.
pub trait RunspaceSource: Send + Sync {
    /// Creates a runspace (it starts CREATING).
    fn create<'a>(
        &'a self,
        display_name: &'a str,
        run_vc_connection_script: bool,
    ) -> BoxFuture<'a, Result<proto::Runspace>>;
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<proto::Runspace>>;
    /// Every runspace of the service account (the gateway pages and orders them).
    fn list(&self) -> BoxFuture<'_, Result<Vec<proto::Runspace>>>;
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
}
