//! The background pruner: enforces `history_max_messages`, `history_max_channel_messages` and
//! `history_max_age` (docs/api.md §9.11).
//!
//! Pruning only deletes message rows; id allocation lives in `channel_sequences` and is never
//! touched, so ids keep increasing however much history is removed.

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;
use tokio_util::sync::CancellationToken;

use crate::model::now_micros;
use crate::store::{Pruned, RetentionLimits, Store, StoreResult};

#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Messages kept per channel room; 0 = unlimited.
    pub max_messages: u64,
    /// Messages kept per channel, all rooms together; 0 = unlimited.
    pub max_channel_messages: u64,
    /// Oldest message age kept; `None` = unlimited.
    pub max_age: Option<Duration>,
}

impl Retention {
    pub fn is_unlimited(&self) -> bool {
        self.max_messages == 0 && self.max_channel_messages == 0 && self.max_age.is_none()
    }

    /// One pruning pass.
    pub async fn prune(&self, store: &dyn Store) -> StoreResult<Pruned> {
        let cutoff = self.max_age.map(|age| {
            let age = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
            now_micros().saturating_sub(age)
        });
        store
            .prune(RetentionLimits {
                max_per_room: self.max_messages,
                max_per_channel: self.max_channel_messages,
                created_before: cutoff,
            })
            .await
    }
}

/// Runs a pass every `interval` until `shutdown` fires; `pruned_total` counts the messages removed.
pub async fn run_pruner(
    store: Arc<dyn Store>,
    retention: Retention,
    interval: Duration,
    pruned_total: IntCounter,
    shutdown: CancellationToken,
) {
    if retention.is_unlimited() {
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match retention.prune(store.as_ref()).await {
            Ok(pruned) if pruned != Pruned::default() => {
                pruned_total.inc_by(pruned.by_count + pruned.by_age + pruned.by_channel);
                tracing::debug!(
                    by_count = pruned.by_count,
                    by_age = pruned.by_age,
                    by_channel = pruned.by_channel,
                    "pruned history"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "history pruning failed; will retry"),
        }
    }
}
