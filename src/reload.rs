//! Files the gateway reads again while it runs (the tokens file of `[auth]`, the certificate
//! and key of `[server.tls]`): one loop for all of them. Each owner knows how to look at its
//! own files and what a change means; this module only decides when to look, keeps the
//! reading off the runtime's workers, and stops.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use tokio::task::JoinHandle;

/// A running look-again loop; it stops when dropped, or by itself once its target is gone.
#[must_use = "the loop stops when this is dropped"]
pub struct Watch(JoinHandle<()>);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Calls `look` on `target` every `interval`, the first time one `interval` from now (the
/// owner has just read its files). `look` reads files, so it runs on tokio's blocking pool. The
/// loop holds `target` only while `look` runs: it ends once every other owner has dropped it.
pub fn every<T, F>(target: &Arc<T>, interval: Duration, look: F) -> Watch
where
    T: Send + Sync + 'static,
    F: Fn(&T) + Clone + Send + 'static,
{
    let weak: Weak<T> = Arc::downgrade(target);
    Watch(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        // A look that took long delays the next; missed ticks are not made up in a burst.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is now
        loop {
            tick.tick().await;
            let Some(target) = weak.upgrade() else { return };
            let look = look.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || look(&target)).await {
                tracing::warn!(error = %e, "reading a watched file failed");
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const EVERY: Duration = Duration::from_secs(5);

    /// Lets the loop run what is due at the current (paused) time.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// A watch whose target counts its looks.
    fn counted() -> (Arc<AtomicUsize>, Watch) {
        let looks = Arc::new(AtomicUsize::new(0));
        let watch = every(&looks, EVERY, |n: &AtomicUsize| {
            n.fetch_add(1, Ordering::SeqCst);
        });
        (looks, watch)
    }

    #[tokio::test(start_paused = true)]
    async fn looks_once_per_interval_and_not_at_once() {
        let (looks, _watch) = counted();
        settle().await;
        assert_eq!(
            looks.load(Ordering::SeqCst),
            0,
            "the owner has just read its files"
        );
        tokio::time::sleep(EVERY).await;
        settle().await;
        assert_eq!(looks.load(Ordering::SeqCst), 1);
        tokio::time::sleep(EVERY * 2).await;
        settle().await;
        assert_eq!(looks.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_when_dropped() {
        let (looks, watch) = counted();
        tokio::time::sleep(EVERY).await;
        settle().await;
        assert_eq!(looks.load(Ordering::SeqCst), 1);
        drop(watch);
        tokio::time::sleep(EVERY * 3).await;
        settle().await;
        assert_eq!(looks.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn ends_by_itself_once_its_target_is_gone() {
        let looks = Arc::new(AtomicUsize::new(0));
        let target = Arc::new(());
        let counter = looks.clone();
        let watch = every(&target, EVERY, move |_: &()| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        drop(target);
        tokio::time::sleep(EVERY * 2).await;
        settle().await;
        assert_eq!(looks.load(Ordering::SeqCst), 0);
        assert!(watch.0.is_finished(), "the loop returned");
    }
}
