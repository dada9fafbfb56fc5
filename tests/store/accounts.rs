//! Accounts, instances and API keys.

use herald::keys::{Key, KeyKind};
use herald::model;
use herald::store::*;
use serde_json::json;

use crate::*;

mod run {
    crate::store_tests!(
        accounts_round_trip,
        account_emails_are_unique,
        first_account_is_created_once,
        instances_round_trip,
        instance_names_are_unique,
        instances_per_owner_are_limited,
        instances_list_by_owner_prefix_and_page,
        api_keys_round_trip,
    );
}

pub async fn accounts_round_trip(ctx: Ctx) {
    let store = ctx.store.as_ref();
    assert_eq!(store.count_accounts().await.unwrap(), 0);
    let new = new_account("a@example.com");
    let digest = new.key_digest;
    let key = new.account_key.clone();
    let a = store.create_account(new).await.unwrap();
    assert_eq!(a.email, "a@example.com");
    assert_eq!(a.account_key, key);
    assert_eq!(a.metadata, json!({}));
    assert_eq!(a.password_hash.as_deref(), Some("hash"));
    assert!(!a.is_superuser);
    let mut admin = new_account("root@example.com");
    admin.is_superuser = true;
    admin.password_hash = None;
    let b = store.create_account(admin).await.unwrap();
    assert!(b.is_superuser);
    assert_eq!(b.password_hash, None);
    assert!(b.id > a.id);
    assert_eq!(store.count_accounts().await.unwrap(), 2);

    assert_eq!(store.account(a.id).await.unwrap().email, "a@example.com");
    assert_eq!(
        store.account_by_email("a@example.com").await.unwrap().id,
        a.id
    );
    assert_eq!(store.account_by_key(&digest).await.unwrap().id, a.id);
    let listed: Vec<i64> = store
        .list_accounts()
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(listed, vec![a.id, b.id]);

    let changed = store
        .update_account(
            a.id,
            AccountChanges {
                first_name: Some("Ada".into()),
                metadata: Some(json!({"z": [1, 2.5, "ż"], "a": null})),
                ..AccountChanges::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.first_name, "Ada");
    assert_eq!(changed.last_name, "");
    assert_eq!(changed.email, "a@example.com");
    assert_eq!(
        store.account(a.id).await.unwrap().metadata.to_string(),
        r#"{"z":[1,2.5,"ż"],"a":null}"#
    );

    let fresh = Key::generate(KeyKind::Account);
    let rekeyed = store
        .set_account_key(a.id, fresh.as_str(), &fresh.digest())
        .await
        .unwrap();
    assert_eq!(rekeyed.account_key, fresh.as_str());
    assert_err(store.account_by_key(&digest).await, "NotFound");
    assert_eq!(
        store.account_by_key(&fresh.digest()).await.unwrap().id,
        a.id
    );
    store.set_account_password(a.id, "other").await.unwrap();
    assert_eq!(
        store.account(a.id).await.unwrap().password_hash.as_deref(),
        Some("other")
    );

    let missing = b.id + 100;
    assert_err(store.account(missing).await, "NotFound");
    assert_err(
        store.account_by_email("nobody@example.com").await,
        "NotFound",
    );
    assert_err(
        store
            .update_account(missing, AccountChanges::default())
            .await,
        "NotFound",
    );
    assert_err(
        store
            .set_account_key(missing, fresh.as_str(), &fresh.digest())
            .await,
        "NotFound",
    );
    assert_err(store.set_account_password(missing, "x").await, "NotFound");
}

pub async fn account_emails_are_unique(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let a = account(store, "a@example.com").await;
    account(store, "b@example.com").await;
    assert_err(
        store.create_account(new_account("a@example.com")).await,
        "Conflict(email)",
    );
    assert_err(
        store
            .update_account(
                a.id,
                AccountChanges {
                    email: Some("b@example.com".into()),
                    ..AccountChanges::default()
                },
            )
            .await,
        "Conflict(email)",
    );
    assert_eq!(store.account(a.id).await.unwrap().email, "a@example.com");
    assert_eq!(store.count_accounts().await.unwrap(), 2);
}

pub async fn first_account_is_created_once(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let first = store
        .create_first_account(new_account("admin@localhost"))
        .await
        .unwrap();
    assert!(first.is_some());
    let again = store
        .create_first_account(new_account("admin@localhost"))
        .await
        .unwrap();
    assert!(again.is_none());
    // Only the backend that serves several processes checks for an existing account; either
    // way no second account with the first's e-mail appears.
    assert_eq!(store.count_accounts().await.unwrap(), 1);
}

pub async fn instances_round_trip(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let owner = account(store, "owner@example.com").await;
    let before = model::now_micros();
    let inst = store
        .create_instance(
            owner.id,
            "rivia",
            InstanceChanges {
                description: Some("Witchers".into()),
                metadata: Some(json!({"color": "red", "n": 1})),
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(inst.name, "rivia");
    assert_eq!(inst.owner_id, owner.id);
    assert_eq!(inst.description, "Witchers");
    assert_eq!(inst.metadata, json!({"color": "red", "n": 1}));
    assert!(inst.created_at >= before && inst.updated_at == inst.created_at);

    // Built-in channels come with the instance.
    let default = store
        .channel(inst.id, model::DEFAULT_CHANNEL)
        .await
        .unwrap();
    assert_eq!(default.kind, ChannelType::SeparateRooms);
    assert!(default.custom_publish);
    let eventlog = store
        .channel(inst.id, model::EVENTLOG_CHANNEL)
        .await
        .unwrap();
    assert!(!eventlog.custom_publish);
    assert_eq!(store.last_message_id(&default).await.unwrap(), 0);

    assert_eq!(store.instance(inst.id).await.unwrap().name, "rivia");
    assert_eq!(store.instance_by_name("rivia").await.unwrap().id, inst.id);
    assert_err(store.instance_by_name("Rivia").await, "NotFound");

    let updated = store
        .update_instance(
            inst.id,
            InstanceChanges {
                description: None,
                metadata: Some(json!({})),
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.description, "Witchers");
    assert_eq!(updated.metadata, json!({}));
    assert!(updated.updated_at >= inst.updated_at);

    let renamed = store.rename_instance(inst.id, "kaer-morhen").await.unwrap();
    assert_eq!(renamed.name, "kaer-morhen");
    assert_err(store.instance_by_name("rivia").await, "NotFound");

    store.delete_instance(inst.id).await.unwrap();
    assert_err(store.instance(inst.id).await, "NotFound");
    assert_err(
        store.channel(inst.id, model::DEFAULT_CHANNEL).await,
        "NotFound",
    );
    assert_err(store.delete_instance(inst.id).await, "NotFound");
    assert_err(
        store
            .update_instance(inst.id, InstanceChanges::default())
            .await,
        "NotFound",
    );
    assert_err(store.rename_instance(inst.id, "x").await, "NotFound");
}

pub async fn instance_names_are_unique(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let owner = account(store, "owner@example.com").await;
    let other = account(store, "other@example.com").await;
    let a = instance(store, &owner, "one").await;
    instance(store, &owner, "two").await;
    assert_err(
        store
            .create_instance(other.id, "one", InstanceChanges::default(), 0)
            .await,
        "Conflict(name)",
    );
    assert_err(
        store.rename_instance(a.id, "two").await,
        "Conflict(new_name)",
    );
    assert_eq!(store.instance(a.id).await.unwrap().name, "one");
}

pub async fn instances_per_owner_are_limited(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let owner = account(store, "owner@example.com").await;
    let other = account(store, "other@example.com").await;
    for name in ["a1", "a2"] {
        store
            .create_instance(owner.id, name, InstanceChanges::default(), 2)
            .await
            .unwrap();
    }
    assert_err(
        store
            .create_instance(owner.id, "a3", InstanceChanges::default(), 2)
            .await,
        "LimitExceeded",
    );
    assert_err(store.instance_by_name("a3").await, "NotFound");
    // Per owner, and 0 means unlimited.
    store
        .create_instance(other.id, "b1", InstanceChanges::default(), 2)
        .await
        .unwrap();
    store
        .create_instance(owner.id, "a3", InstanceChanges::default(), 0)
        .await
        .unwrap();

    // Concurrent creates cannot pass the limit together.
    let racer = account(store, "racer@example.com").await.id;
    let attempts = (0..8).map(|i| {
        let store = ctx.store.clone();
        tokio::spawn(async move {
            store
                .create_instance(racer, &format!("r{i}"), InstanceChanges::default(), 3)
                .await
        })
    });
    let mut created = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        match attempt.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::LimitExceeded) => {}
            Err(err) => panic!("unexpected error: {err}"),
        }
    }
    assert_eq!(created, 3);
}

pub async fn instances_list_by_owner_prefix_and_page(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let owner = account(store, "owner@example.com").await;
    let other = account(store, "other@example.com").await;
    let mut ids = Vec::new();
    for name in ["app-1", "app-2", "web-1", "app-3", "App-4"] {
        ids.push(instance(store, &owner, name).await.id);
    }
    instance(store, &other, "app-other").await;
    let names = |list: Vec<Instance>| list.into_iter().map(|i| i.name).collect::<Vec<_>>();

    assert_eq!(
        names(store.list_instances(owner.id, None, ALL).await.unwrap()),
        ["app-1", "app-2", "web-1", "app-3", "App-4"]
    );
    // Prefixes are case-sensitive.
    assert_eq!(
        names(
            store
                .list_instances(owner.id, Some("app"), ALL)
                .await
                .unwrap()
        ),
        ["app-1", "app-2", "app-3"]
    );
    assert_eq!(
        names(
            store
                .list_instances(owner.id, None, page(Some(ids[0]), None, false, 2))
                .await
                .unwrap()
        ),
        ["app-2", "web-1"]
    );
    assert_eq!(
        names(
            store
                .list_instances(owner.id, None, page(None, Some(ids[4]), true, 2))
                .await
                .unwrap()
        ),
        ["app-3", "web-1"]
    );
    assert_eq!(
        names(
            store
                .list_instances(owner.id, Some("app"), page(None, None, true, 10))
                .await
                .unwrap()
        ),
        ["app-3", "app-2", "app-1"]
    );
    assert!(
        store
            .list_instances(owner.id + other.id + 100, None, ALL)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn api_keys_round_trip(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (owner, inst) = fixture(store).await;
    let other = instance(store, &owner, "other").await;
    let key = Key::generate(KeyKind::ApiKey);
    let created = store
        .create_api_key(
            inst.id,
            key.as_str(),
            &key.digest(),
            ApiKeyChanges {
                description: Some("front end".into()),
                allow_anonymous_read: Some(true),
                ..ApiKeyChanges::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(created.instance_id, inst.id);
    assert_eq!(created.api_key, key.as_str());
    assert_eq!(created.description, "front end");
    assert!(created.allow_anonymous_read && !created.ignore_acl);
    assert!(!created.allow_user_create && !created.allow_group_create);

    assert_eq!(
        store.api_key(inst.id, created.id).await.unwrap().api_key,
        key.as_str()
    );
    assert_err(store.api_key(other.id, created.id).await, "NotFound");
    assert_eq!(
        store.api_key_by_key(&key.digest()).await.unwrap().id,
        created.id
    );

    let mut ids = vec![created.id];
    for _ in 0..3 {
        let key = Key::generate(KeyKind::ApiKey);
        let made = store
            .create_api_key(
                inst.id,
                key.as_str(),
                &key.digest(),
                ApiKeyChanges::default(),
            )
            .await
            .unwrap();
        ids.push(made.id);
    }
    let listed = |list: Vec<ApiKey>| list.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(
        listed(store.list_api_keys(inst.id, ALL).await.unwrap()),
        ids
    );
    assert_eq!(
        listed(
            store
                .list_api_keys(inst.id, page(Some(ids[0]), Some(ids[3]), true, 10))
                .await
                .unwrap()
        ),
        [ids[2], ids[1]]
    );
    assert!(store.list_api_keys(other.id, ALL).await.unwrap().is_empty());

    let updated = store
        .update_api_key(
            inst.id,
            created.id,
            ApiKeyChanges {
                ignore_acl: Some(true),
                allow_anonymous_read: Some(false),
                ..ApiKeyChanges::default()
            },
        )
        .await
        .unwrap();
    assert!(updated.ignore_acl && !updated.allow_anonymous_read);
    assert_eq!(updated.description, "front end");
    assert_err(
        store
            .update_api_key(other.id, created.id, ApiKeyChanges::default())
            .await,
        "NotFound",
    );

    let fresh = Key::generate(KeyKind::ApiKey);
    let rekeyed = store
        .set_api_key_key(inst.id, created.id, fresh.as_str(), &fresh.digest())
        .await
        .unwrap();
    assert_eq!(rekeyed.api_key, fresh.as_str());
    assert_err(store.api_key_by_key(&key.digest()).await, "NotFound");
    assert_err(
        store
            .set_api_key_key(other.id, created.id, fresh.as_str(), &fresh.digest())
            .await,
        "NotFound",
    );

    assert_err(store.delete_api_key(other.id, created.id).await, "NotFound");
    store.delete_api_key(inst.id, created.id).await.unwrap();
    assert_err(store.delete_api_key(inst.id, created.id).await, "NotFound");
    assert_err(store.api_key(inst.id, created.id).await, "NotFound");

    // An instance deleted meanwhile: its keys go with it, and a new one is not found.
    store.delete_instance(other.id).await.unwrap();
    let late = Key::generate(KeyKind::ApiKey);
    assert_err(
        store
            .create_api_key(
                other.id,
                late.as_str(),
                &late.digest(),
                ApiKeyChanges::default(),
            )
            .await,
        "NotFound",
    );
}
