//! Channels: CRUD, unique names, groups and which channels a caller may list.

use herald::model::{ChannelType, Permission};
use herald::store::*;

use crate::*;

mod run {
    crate::store_tests!(
        channels_round_trip,
        channel_names_are_unique_per_instance,
        channel_groups_must_exist,
        channel_lists_filter_by_visibility_prefix_and_page,
    );
}

pub async fn channels_round_trip(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (owner, inst) = fixture(store).await;
    let group = store
        .create_group(inst.id, GroupChanges::default())
        .await
        .unwrap();
    let created = store
        .create_channel(
            inst.id,
            NewChannel {
                name: "news".into(),
                kind: ChannelType::Default,
                description: "All the news".into(),
                group_id: Some(group.id),
                group_permissions: Permission::Publish,
                other_permissions: Permission::Subscribe,
                custom_publish: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(created.instance_id, inst.id);
    assert_eq!(created.name, "news");
    assert_eq!(created.kind, ChannelType::Default);
    assert_eq!(created.description, "All the news");
    assert_eq!(created.group_id, Some(group.id));
    assert_eq!(created.group_permissions, Permission::Publish);
    assert_eq!(created.other_permissions, Permission::Subscribe);
    assert!(created.custom_publish);
    assert_eq!(created.created_at, created.updated_at);

    let found = store.channel(inst.id, "news").await.unwrap();
    assert_eq!(found.id, created.id);
    assert_err(store.channel(inst.id, "News").await, "NotFound");
    let other = instance(store, &owner, "other").await;
    assert_err(store.channel(other.id, "news").await, "NotFound");

    // Only what is given changes; the group can be cleared.
    let updated = store
        .update_channel(
            inst.id,
            "news",
            ChannelChanges {
                group_id: Some(None),
                other_permissions: Some(Permission::None),
                ..ChannelChanges::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.group_id, None);
    assert_eq!(updated.other_permissions, Permission::None);
    assert_eq!(updated.group_permissions, Permission::Publish);
    assert_eq!(updated.description, "All the news");
    assert!(updated.custom_publish);
    assert!(updated.updated_at >= created.updated_at);
    let updated = store
        .update_channel(
            inst.id,
            "news",
            ChannelChanges {
                description: Some(String::new()),
                group_id: Some(Some(group.id)),
                custom_publish: Some(false),
                ..ChannelChanges::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.group_id, Some(group.id));
    assert_eq!(updated.description, "");
    assert!(!updated.custom_publish);
    assert_err(
        store
            .update_channel(other.id, "news", ChannelChanges::default())
            .await,
        "NotFound",
    );

    assert_err(store.delete_channel(other.id, "news").await, "NotFound");
    store.delete_channel(inst.id, "news").await.unwrap();
    assert_err(store.channel(inst.id, "news").await, "NotFound");
    assert_err(store.delete_channel(inst.id, "news").await, "NotFound");

    // A channel of an instance that is gone is not found.
    store.delete_instance(other.id).await.unwrap();
    assert_err(
        store
            .create_channel(other.id, new_channel("late", ChannelType::Default))
            .await,
        "NotFound",
    );
}

pub async fn channel_names_are_unique_per_instance(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (owner, inst) = fixture(store).await;
    let other = instance(store, &owner, "other").await;
    channel(store, &inst, "chat").await;
    assert_err(
        store
            .create_channel(inst.id, new_channel("chat", ChannelType::Default))
            .await,
        "Conflict(name)",
    );
    assert_err(
        store
            .create_channel(inst.id, new_channel("default", ChannelType::Default))
            .await,
        "Conflict(name)",
    );
    // The same name in another instance is another channel.
    channel(store, &other, "chat").await;
}

pub async fn channel_groups_must_exist(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let group = store
        .create_group(inst.id, GroupChanges::default())
        .await
        .unwrap();
    assert!(store.group_exists(inst.id, group.id).await.unwrap());
    assert!(!store.group_exists(inst.id, group.id + 1).await.unwrap());
    assert!(!store.group_exists(inst.id + 1, group.id).await.unwrap());

    let mut new = new_channel("grouped", ChannelType::Default);
    new.group_id = Some(group.id + 1000);
    assert_err(store.create_channel(inst.id, new).await, "NotFound");
    assert_err(store.channel(inst.id, "grouped").await, "NotFound");

    // Deleting the group leaves its channels without one.
    let mut new = new_channel("grouped", ChannelType::Default);
    new.group_id = Some(group.id);
    store.create_channel(inst.id, new).await.unwrap();
    store.delete_group(inst.id, group.id).await.unwrap();
    assert_eq!(
        store.channel(inst.id, "grouped").await.unwrap().group_id,
        None
    );
}

pub async fn channel_lists_filter_by_visibility_prefix_and_page(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let member_of = store
        .create_group(inst.id, GroupChanges::default())
        .await
        .unwrap();
    let not_member_of = store
        .create_group(inst.id, GroupChanges::default())
        .await
        .unwrap();
    let user = store
        .create_user(
            inst.id,
            NewUser {
                username: "geralt".into(),
                password_hash: "h".into(),
                user_key: "k".into(),
                key_digest: herald::keys::Key::generate(herald::keys::KeyKind::Account).digest(),
            },
        )
        .await
        .unwrap();
    store
        .add_membership(user.id, member_of.id, 10)
        .await
        .unwrap();

    let make = |name: &str, group: Option<i64>, group_perm: Permission, other_perm: Permission| {
        let mut new = new_channel(name, ChannelType::SeparateRooms);
        new.group_id = group;
        new.group_permissions = group_perm;
        new.other_permissions = other_perm;
        new
    };
    for new in [
        make("open-sub", None, Permission::None, Permission::Subscribe),
        make("open-pub", None, Permission::None, Permission::Publish),
        make("closed", None, Permission::None, Permission::None),
        make(
            "group-sub",
            Some(member_of.id),
            Permission::Subscribe,
            Permission::None,
        ),
        make(
            "group-none",
            Some(member_of.id),
            Permission::None,
            Permission::None,
        ),
        make(
            "other-group",
            Some(not_member_of.id),
            Permission::Publish,
            Permission::None,
        ),
    ] {
        store.create_channel(inst.id, new).await.unwrap();
    }
    let list = |prefix, visibility, page| list_channels(store, inst.id, prefix, visibility, page);
    assert_eq!(
        list(None, ChannelVisibility::All, ALL).await,
        [
            "default",
            "eventlog",
            "open-sub",
            "open-pub",
            "closed",
            "group-sub",
            "group-none",
            "other-group"
        ]
    );
    assert_eq!(
        list(None, ChannelVisibility::Others, ALL).await,
        ["open-sub", "open-pub"]
    );
    assert_eq!(
        list(None, ChannelVisibility::User(user.id), ALL).await,
        ["open-sub", "open-pub", "group-sub"]
    );
    assert_eq!(
        list(None, ChannelVisibility::User(user.id + 1000), ALL).await,
        ["open-sub", "open-pub"]
    );
    assert_eq!(
        list(Some("group"), ChannelVisibility::All, ALL).await,
        ["group-sub", "group-none"]
    );
    assert_eq!(
        list(Some("Open"), ChannelVisibility::All, ALL).await,
        Vec::<String>::new()
    );
    let open_sub = store.channel(inst.id, "open-sub").await.unwrap();
    assert_eq!(
        list(
            None,
            ChannelVisibility::All,
            page(Some(open_sub.id), None, false, 2)
        )
        .await,
        ["open-pub", "closed"]
    );
    assert_eq!(
        list(
            None,
            ChannelVisibility::User(user.id),
            page(None, None, true, 2)
        )
        .await,
        ["group-sub", "open-pub"]
    );
}

async fn list_channels(
    store: &dyn Store,
    instance_id: i64,
    prefix: Option<&str>,
    visibility: ChannelVisibility,
    page: IdPage,
) -> Vec<String> {
    store
        .list_channels(instance_id, prefix, visibility, page)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect()
}
