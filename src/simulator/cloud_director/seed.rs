//! The seeded Cloud Director task mix of org `acme` (plus two `globex` tasks): the rows of
//! `seed.toml` (every VCD status, nested subtasks, `vcTaskList` entries, an RDE behavior run;
//! fixed ids so docs and the demo can name them), loaded by [`crate::simulator::seed`].

use crate::simulator::seed;
use crate::simulator::tasks::TaskStore;

/// The seed table; see [`crate::simulator::seed`] for its row format.
const SEED_TABLE: &str = include_str!("seed.toml");

/// Seeds the demo mix for org `acme` (plus two `globex` tasks); ids are fixed so docs and the
/// demo can name them.
pub(super) fn seed_demo_tasks(store: &TaskStore) {
    seed::add_all(store, "Cloud Director", SEED_TABLE);
}
