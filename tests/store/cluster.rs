//! Several processes ("nodes") on one PostgreSQL database: what cluster mode relies on.

use std::sync::Arc;

use herald::config::AdminBootstrap;
use herald::store::*;
use sqlx::{Connection, PgConnection};

use crate::*;

async fn node(url: &str) -> (SqlStore, Arc<Recorder>) {
    let heard = Arc::new(Recorder::default());
    let store = SqlStore::open_postgres(url, 4, heard.clone())
        .await
        .expect("open PostgreSQL store");
    (store, heard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_and_bootstrap_once() {
    on_postgres(
        "nodes_starting_together_migrate_and_bootstrap_once",
        |url| async move {
            // Three nodes open an empty schema at once: every one migrates (or finds it migrated).
            let opened = futures_util::future::join_all((0..3).map(|_| node(&url))).await;
            let stores: Vec<Arc<dyn Store>> = opened
                .into_iter()
                .map(|(store, _)| Arc::new(store) as Arc<dyn Store>)
                .collect();
            // ... and bootstraps: exactly one superuser results.
            let created = futures_util::future::join_all(stores.iter().map(|store| {
                let store = store.clone();
                async move {
                    herald::bootstrap::ensure_first_account(
                        store.as_ref(),
                        &AdminBootstrap::default(),
                    )
                    .await
                    .expect("bootstrap")
                    .is_some()
                }
            }))
            .await;
            assert_eq!(created.iter().filter(|c| **c).count(), 1, "{created:?}");
            for store in &stores {
                let accounts = store.list_accounts().await.unwrap();
                assert_eq!(accounts.len(), 1);
                assert!(accounts[0].is_superuser);
            }
        },
    )
    .await;
}

mod run {
    crate::store_tests!(the_cluster_identity_is_made_once);
}

/// Both schemas have the identity table; a second read returns the pair the first one made.
pub async fn the_cluster_identity_is_made_once(ctx: Ctx) {
    let first = ctx.store.cluster_identity().await.unwrap();
    let again = ctx.store.cluster_identity().await.unwrap();
    assert_eq!((&again.id, again.secret), (&first.id, first.secret));
    assert_ne!(first.secret, [0; 32]);
}

/// docs/api.md §11.5: the nodes of one database share one cluster id and secret, however they race to
/// create it; another database has another pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_agree_on_one_cluster_identity() {
    on_postgres(
        "nodes_starting_together_agree_on_one_cluster_identity",
        |url| async move {
            let opened = futures_util::future::join_all((0..3).map(|_| node(&url))).await;
            let identities = futures_util::future::join_all(
                opened.iter().map(|(store, _)| store.cluster_identity()),
            )
            .await;
            let first = identities[0].as_ref().expect("cluster identity").clone();
            for identity in &identities {
                let identity = identity.as_ref().expect("cluster identity");
                assert_eq!((&identity.id, identity.secret), (&first.id, first.secret));
            }
            assert_eq!(first.id.len(), 32, "{}", first.id);
            assert!(
                first.id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{}",
                first.id
            );
            // Read again later, it is still the same.
            let again = opened[2].0.cluster_identity().await.unwrap();
            assert_eq!((again.id, again.secret), (first.id.clone(), first.secret));

            on_postgres("a second cluster", |other| async move {
                let (store, _) = node(&other).await;
                let theirs = store.cluster_identity().await.unwrap();
                assert_ne!(theirs.id, first.id);
                assert_ne!(theirs.secret, first.secret);
            })
            .await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_prunes_at_a_time() {
    on_postgres("one_node_prunes_at_a_time", |url| async move {
        let (store, _) = node(&url).await;
        let (_, inst) = fixture(&store).await;
        let chat = channel(&store, &inst, "chat").await;
        for _ in 0..5 {
            publish(&store, &chat, Some("a")).await;
        }
        // Another node is pruning: it holds the prune lock for its transaction.
        let mut other = PgConnection::connect(&url).await.unwrap();
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&mut other)
            .await
            .unwrap();
        let mut tx = other.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(advisory_lock_key(LockPurpose::Prune, &schema))
            .execute(&mut *tx)
            .await
            .unwrap();
        assert_eq!(
            store.prune(limits(1, None)).await.unwrap(),
            Pruned::default()
        );
        assert_eq!(
            store.history(chat.id, Some("a"), ALL).await.unwrap().len(),
            5
        );
        tx.rollback().await.unwrap();
        assert_eq!(store.prune(limits(1, None)).await.unwrap().by_count, 4);
        // A deployment in another schema has its own lock: it is not held up by this one.
        assert_ne!(
            advisory_lock_key(LockPurpose::Prune, &schema),
            advisory_lock_key(LockPurpose::Prune, "public")
        );
        assert_ne!(
            advisory_lock_key(LockPurpose::Prune, &schema),
            advisory_lock_key(LockPurpose::Bootstrap, &schema)
        );
        let _ = other.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_publishing_into_one_channel_share_its_sequence() {
    on_postgres(
        "nodes_publishing_into_one_channel_share_its_sequence",
        |url| async move {
            const EACH: i64 = 100;
            let (a, heard_a) = node(&url).await;
            let (b, heard_b) = node(&url).await;
            let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (Arc::new(a), Arc::new(b));
            let (_, inst) = fixture(a.as_ref()).await;
            let chat = channel(a.as_ref(), &inst, "chat").await;
            let tasks: Vec<_> = [&a, &a, &b, &b, &a, &b]
                .into_iter()
                .map(|store| {
                    let store = store.clone();
                    let chat = chat.clone();
                    tokio::spawn(async move {
                        for _ in 0..EACH {
                            store
                                .publish(&chat, message(Some("r"), "{}"))
                                .await
                                .expect("publish");
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            let mut all = heard_a.ids(chat.id);
            let mut from_b = heard_b.ids(chat.id);
            // Each node told its listener its own messages in increasing id order.
            assert!(all.windows(2).all(|w| w[0] < w[1]));
            assert!(from_b.windows(2).all(|w| w[0] < w[1]));
            all.append(&mut from_b);
            all.sort_unstable();
            assert_eq!(all, (1..=6 * EACH).collect::<Vec<_>>());
            let stored = a
                .history(chat.id, Some("r"), page(None, None, false, 10_000))
                .await
                .unwrap();
            assert_eq!(stored.len() as i64, 6 * EACH);
        },
    )
    .await;
}
