//! The access log (docs/api.md §11.5): every change to credentials or permissions is written in the
//! transaction that makes it, with versions that become visible in order.

use std::sync::Arc;

use herald::access::Change;
use herald::keys::{Key, KeyKind};
use herald::store::*;

use crate::users::{group, user};
use crate::*;

mod run {
    crate::store_tests!(
        every_credential_change_is_logged_with_the_next_version,
        a_refused_change_leaves_the_log_alone,
        concurrent_changes_take_versions_in_order,
    );
}

/// Runs `change`, then checks it moved the version by one and logged `expected`.
async fn logs<T>(
    store: &dyn Store,
    change: impl Future<Output = StoreResult<T>>,
    expected: Change,
) {
    let before = store.access_version().await.unwrap();
    change.await.expect("the change");
    let after = store.access_version().await.unwrap();
    assert_eq!(
        after,
        before + 1,
        "{expected:?} moved the version by {}",
        after - before
    );
    let log = store.access_log_after(before, 10).await.unwrap();
    assert_eq!(log, vec![(after, Some(expected))]);
}

pub async fn every_credential_change_is_logged_with_the_next_version(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (owner, inst) = fixture(store).await;
    let lobby = channel(store, &inst, "lobby").await;
    let key = Key::generate(KeyKind::ApiKey);
    let api_key = store
        .create_api_key(
            inst.id,
            key.as_str(),
            &key.digest(),
            ApiKeyChanges::default(),
        )
        .await
        .unwrap();
    let geralt = user(store, &inst, "geralt").await;
    let witchers = group(store, &inst, "witchers").await;
    let (i, fresh) = (inst.id, Key::generate(KeyKind::Account));

    let account = Change::Account { id: owner.id };
    logs(
        store,
        store.set_account_key(owner.id, fresh.as_str(), &fresh.digest()),
        account,
    )
    .await;
    let changes = ApiKeyChanges {
        ignore_acl: Some(true),
        ..ApiKeyChanges::default()
    };
    let api = Change::ApiKey {
        instance_id: i,
        id: api_key.id,
    };
    logs(
        store,
        store.update_api_key(i, api_key.id, changes),
        api.clone(),
    )
    .await;
    let fresh_api = Key::generate(KeyKind::ApiKey);
    let digest = fresh_api.digest();
    let reset = store.set_api_key_key(i, api_key.id, fresh_api.as_str(), &digest);
    logs(store, reset, api.clone()).await;
    let user_change = Change::User {
        instance_id: i,
        id: geralt.id,
    };
    logs(
        store,
        store.set_user_key(i, geralt.id, fresh.as_str(), &fresh.digest()),
        user_change.clone(),
    )
    .await;
    let membership = Change::Membership {
        instance_id: i,
        user_id: geralt.id,
    };
    logs(
        store,
        store.add_membership(geralt.id, witchers.id, 100),
        membership.clone(),
    )
    .await;
    logs(
        store,
        store.remove_membership(geralt.id, witchers.id),
        membership,
    )
    .await;
    let lobby_change = Change::Channel {
        instance_id: i,
        name: lobby.name.clone(),
    };
    logs(
        store,
        store.update_channel(i, &lobby.name, ChannelChanges::default()),
        lobby_change,
    )
    .await;
    let deleted = Change::ChannelDeleted {
        instance_id: i,
        name: lobby.name.clone(),
        channel_id: lobby.id,
    };
    logs(store, store.delete_channel(i, &lobby.name), deleted).await;
    logs(
        store,
        store.delete_group(i, witchers.id),
        Change::Channels { instance_id: i },
    )
    .await;
    logs(store, store.delete_user(i, geralt.id), user_change).await;
    logs(store, store.delete_api_key(i, api_key.id), api).await;
    logs(
        store,
        store.update_instance(i, InstanceChanges::default()),
        Change::Instance { id: i },
    )
    .await;
    logs(
        store,
        store.rename_instance(i, "kaer-morhen"),
        Change::Instance { id: i },
    )
    .await;
    logs(
        store,
        store.delete_instance(i),
        Change::InstanceDeleted { id: i },
    )
    .await;
}

pub async fn a_refused_change_leaves_the_log_alone(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let before = store.access_version().await.unwrap();
    assert_err(store.delete_api_key(inst.id, 999).await, "NotFound");
    assert_err(store.delete_channel(inst.id, "nowhere").await, "NotFound");
    assert_err(store.remove_membership(999, 999).await, "NotFound");
    assert_eq!(store.access_version().await.unwrap(), before);
    assert!(store.access_log_after(before, 10).await.unwrap().is_empty());
}

/// Eight writers reset keys at once: the log holds versions 1..=N without a hole, each with
/// its change, so a reader that has seen version N has seen every change up to N.
pub async fn concurrent_changes_take_versions_in_order(ctx: Ctx) {
    let store = ctx.store.clone();
    let (owner, _) = fixture(store.as_ref()).await;
    let start = store.access_version().await.unwrap();
    let writers = (0..8).map(|_| {
        let store: Arc<dyn Store> = store.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                let key = Key::generate(KeyKind::Account);
                store
                    .set_account_key(owner.id, key.as_str(), &key.digest())
                    .await
                    .unwrap();
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    let log = store.access_log_after(start, 1000).await.unwrap();
    let versions: Vec<i64> = log.iter().map(|(version, _)| *version).collect();
    assert_eq!(versions, (start + 1..=start + 80).collect::<Vec<_>>());
    assert!(
        log.iter()
            .all(|(_, change)| *change == Some(Change::Account { id: owner.id }))
    );
    assert_eq!(store.access_version().await.unwrap(), start + 80);
}
