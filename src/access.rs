//! Changes to credentials and permissions: what they make stale, which streams they may end,
//! and the backstop that makes every node hear of them (docs/api.md §11.5).
//!
//! A change is applied where it is made (cached rows forgotten, the streams it may end
//! re-checked), announced to the other nodes over Redis, and written to the database's access
//! log in the same transaction that makes it (`access_version` counts the log). The log is the
//! backstop: every node reads it every `access_check_interval` and applies what it finds, so a
//! change made by `herald account` beside a running server, or one whose announcement Redis lost,
//! still takes effect. Applying a change twice costs little: its re-checks are scoped to the
//! streams it may concern and each stream re-checks at most once a second.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::http::AppState;

/// Something that makes cached rows or open streams stale on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// An account's key was reset.
    Account { id: i64 },
    /// An API key was reset, changed or deleted.
    ApiKey { instance_id: i64, id: i64 },
    /// A user's key was reset or the user was deleted.
    User { instance_id: i64, id: i64 },
    /// A user joined or left a group.
    Membership { instance_id: i64, user_id: i64 },
    /// A channel's settings changed.
    Channel { instance_id: i64, name: String },
    /// A channel was deleted: its streams end.
    ChannelDeleted {
        instance_id: i64,
        name: String,
        channel_id: i64,
    },
    /// Every channel and class of an instance may be stale (a group they named was deleted).
    Channels { instance_id: i64 },
    /// A class was changed or deleted.
    Class { instance_id: i64, name: String },
    /// An instance changed or was renamed.
    Instance { id: i64 },
    /// An instance was deleted: its keys and streams end.
    InstanceDeleted { id: i64 },
    /// Anything may be stale (this node missed changes).
    Everything,
}

/// Which open streams a change may end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// None: the change concerns no stream's right to exist.
    Nobody,
    /// Streams opened with this account's key.
    AccountKey(i64),
    /// Streams of one instance; of those, only the ones `target` names when it is known.
    Instance {
        instance_id: i64,
        target: Option<Target>,
    },
    Everyone,
}

/// The part of a stream a change names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    ApiKey(i64),
    User(i64),
    Channel(String),
}

impl Change {
    pub fn reach(&self) -> Reach {
        let within = |instance_id: i64, target: Option<Target>| Reach::Instance {
            instance_id,
            target,
        };
        match self {
            Change::Account { id } => Reach::AccountKey(*id),
            Change::ApiKey { instance_id, id } => within(*instance_id, Some(Target::ApiKey(*id))),
            Change::User { instance_id, id } => within(*instance_id, Some(Target::User(*id))),
            Change::Membership {
                instance_id,
                user_id,
            } => within(*instance_id, Some(Target::User(*user_id))),
            Change::Channel { instance_id, name } => {
                within(*instance_id, Some(Target::Channel(name.clone())))
            }
            // The hub ends the deleted channel's and instance's streams itself.
            Change::ChannelDeleted { .. } | Change::InstanceDeleted { .. } => Reach::Nobody,
            // Class permissions govern objects, not channel streams.
            Change::Class { .. } => Reach::Nobody,
            Change::Channels { instance_id } => within(*instance_id, None),
            Change::Instance { id } => within(*id, None),
            Change::Everything => Reach::Everyone,
        }
    }
}

/// What a stream hears of a change: whom it may concern, numbered so a stream that missed one
/// (a watch keeps only the latest) knows it must assume the worst.
#[derive(Clone, Debug, Default)]
struct Notice {
    seq: u64,
    reach: Option<Reach>,
}

/// Tells open streams about changes that may end them: changes within one instance wake only
/// that instance's streams, so a change in a loop cannot make every stream on the node re-check.
#[derive(Default)]
pub struct Notices {
    /// Account key changes and "everything": every stream hears them.
    all: watch::Sender<Notice>,
    by_instance: Mutex<InstanceNotices>,
}

#[derive(Default)]
struct InstanceNotices {
    senders: HashMap<i64, watch::Sender<Notice>>,
    /// Instances without streams are swept when the map outgrows this.
    sweep_at: usize,
}

impl Notices {
    pub fn notify(&self, reach: Reach) {
        let announce = |sender: &watch::Sender<Notice>| {
            sender.send_modify(|notice| {
                notice.seq += 1;
                notice.reach = Some(reach.clone());
            });
        };
        match &reach {
            Reach::Nobody => {}
            Reach::AccountKey(_) | Reach::Everyone => announce(&self.all),
            Reach::Instance { instance_id, .. } => {
                let notices = self.by_instance.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(sender) = notices.senders.get(instance_id) {
                    announce(sender);
                }
            }
        }
    }

    /// What a stream of `instance_id` must hear.
    pub fn watch(&self, instance_id: i64) -> AccessWatch {
        let mut notices = self.by_instance.lock().unwrap_or_else(|e| e.into_inner());
        if notices.senders.len() >= notices.sweep_at {
            notices
                .senders
                .retain(|_, sender| sender.receiver_count() > 0);
            notices.sweep_at = (notices.senders.len() * 2).max(64);
        }
        let instance = notices
            .senders
            .entry(instance_id)
            .or_insert_with(|| watch::channel(Notice::default()).0)
            .subscribe();
        let all = self.all.subscribe();
        let (seen_all, seen_instance) = (all.borrow().seq, instance.borrow().seq);
        AccessWatch {
            all,
            instance,
            seen_all,
            seen_instance,
        }
    }
}

/// One stream's ear for changes.
pub struct AccessWatch {
    all: watch::Receiver<Notice>,
    instance: watch::Receiver<Notice>,
    seen_all: u64,
    seen_instance: u64,
}

impl AccessWatch {
    /// The next change that may concern the stream: its reach, or `Everyone` when notices were
    /// missed. `Err` when the node is going away.
    pub async fn changed(&mut self) -> Result<Reach, watch::error::RecvError> {
        let (notice, seen) = tokio::select! {
            changed = self.all.changed() => {
                changed?;
                (self.all.borrow_and_update().clone(), &mut self.seen_all)
            }
            changed = self.instance.changed() => {
                changed?;
                (self.instance.borrow_and_update().clone(), &mut self.seen_instance)
            }
        };
        let missed = notice.seq != *seen + 1;
        *seen = notice.seq;
        Ok(match notice.reach {
            Some(reach) if !missed => reach,
            _ => Reach::Everyone,
        })
    }
}

/// Changes read from the log in one go; a node further behind than this catches up over
/// several checks.
const LOG_PAGE: i64 = 1000;

/// Reads the access log every `interval` and applies what other processes wrote to it.
pub async fn follow_log(app: AppState, interval: Duration, shutdown: CancellationToken) {
    // Caches start empty, so what happened before this start concerns nothing here.
    let mut seen = loop {
        match app.store.access_version().await {
            Ok(version) => break version,
            Err(err) => {
                tracing::warn!("reading access_version failed: {err}; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        }
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match app.store.access_log_after(seen, LOG_PAGE).await {
            Ok(log) => seen = catch_up(&app, seen, log),
            Err(err) => tracing::warn!("reading the access log failed: {err}"),
        }
    }
}

/// Applies log entries after `seen`; returns the new position. Entries the log no longer holds
/// (or cannot be read) make this node forget everything.
fn catch_up(app: &AppState, seen: i64, log: Vec<(i64, Option<Change>)>) -> i64 {
    let Some(&(first, _)) = log.first() else {
        return seen;
    };
    let mut complete = first == seen + 1;
    let mut position = seen;
    for (version, change) in log {
        complete &= version == position + 1;
        position = version;
        match change {
            Some(change) if complete => app.apply(&change),
            _ => complete = false,
        }
    }
    if !complete {
        tracing::info!("the access log moved past what this node can replay; forgetting caches");
        app.apply(&Change::Everything);
    }
    position
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_key_reset_reaches_only_that_users_streams_in_its_instance() {
        let change = Change::User {
            instance_id: 3,
            id: 9,
        };
        assert_eq!(
            change.reach(),
            Reach::Instance {
                instance_id: 3,
                target: Some(Target::User(9))
            }
        );
        assert_eq!(Change::Everything.reach(), Reach::Everyone);
    }

    #[tokio::test]
    async fn notices_wake_only_the_streams_of_the_instance_they_name() {
        let notices = Notices::default();
        let mut first = notices.watch(1);
        let mut second = notices.watch(2);
        let reach = Change::User {
            instance_id: 1,
            id: 9,
        }
        .reach();
        notices.notify(reach.clone());
        assert_eq!(first.changed().await.unwrap(), reach);
        let quiet = tokio::time::timeout(Duration::from_millis(50), second.changed()).await;
        assert!(
            quiet.is_err(),
            "instance 2's stream heard instance 1's change"
        );
        // Account changes and "everything" reach every stream.
        notices.notify(Reach::AccountKey(4));
        assert_eq!(second.changed().await.unwrap(), Reach::AccountKey(4));
    }

    #[tokio::test]
    async fn a_stream_that_missed_notices_assumes_the_worst() {
        let notices = Notices::default();
        let mut watch = notices.watch(1);
        for id in 0..3 {
            notices.notify(Change::User { instance_id: 1, id }.reach());
        }
        assert_eq!(watch.changed().await.unwrap(), Reach::Everyone);
    }

    #[test]
    fn changes_survive_the_log_as_json() {
        let change = Change::ChannelDeleted {
            instance_id: 1,
            name: "lobby".into(),
            channel_id: 4,
        };
        let text = serde_json::to_string(&change).unwrap();
        assert_eq!(serde_json::from_str::<Change>(&text).unwrap(), change);
    }
}
