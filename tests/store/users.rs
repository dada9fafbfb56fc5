//! Users with their profiles, groups and memberships.

use herald::keys::{Key, KeyKind};
use herald::objects::ObjectPermission;
use herald::store::*;

use crate::*;

mod run {
    crate::store_tests!(
        users_round_trip,
        usernames_are_unique_per_instance,
        groups_round_trip,
        memberships_are_unique_and_limited,
    );
}

pub fn new_user(username: &str) -> NewUser {
    let key = Key::generate(KeyKind::Account);
    NewUser {
        username: username.to_owned(),
        password_hash: "hash".into(),
        user_key: key.as_str().to_owned(),
        key_digest: key.digest(),
    }
}

/// A profile with default permissions and no channel.
fn profile() -> NewObject {
    NewObject {
        owner_id: None,
        owner_permissions: ObjectPermission::Full,
        group_id: None,
        group_permissions: ObjectPermission::None,
        other_permissions: ObjectPermission::None,
        channel: None,
        data: Default::default(),
    }
}

async fn user_with_profile(
    store: &dyn Store,
    instance: &Instance,
    new: NewUser,
    profile: NewObject,
) -> User {
    let write = Write::CreateUser {
        instance_id: instance.id,
        profile_class: store.class(instance.id, "user_profile").await.unwrap(),
        new,
        profile,
        author: "{}".into(),
    };
    match store.write(write).await.expect("create user") {
        Written::User(user) => user,
        other => panic!("not a user: {other:?}"),
    }
}

pub async fn user(store: &dyn Store, instance: &Instance, username: &str) -> User {
    store
        .create_user(instance.id, new_user(username))
        .await
        .expect("create user")
}

pub async fn group(store: &dyn Store, instance: &Instance, label: &str) -> Group {
    store
        .create_group(
            instance.id,
            GroupChanges {
                label: Some(label.to_owned()),
                ..GroupChanges::default()
            },
        )
        .await
        .expect("create group")
}

pub async fn users_round_trip(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (owner, inst) = fixture(store).await;
    let other = instance(store, &owner, "other").await;
    let staff = group(store, &inst, "staff").await;
    let new = new_user("geralt");
    let digest = new.key_digest;
    let geralt_profile = NewObject {
        owner_permissions: ObjectPermission::Write,
        group_id: Some(staff.id),
        group_permissions: ObjectPermission::Read,
        ..profile()
    };
    let geralt = user_with_profile(store, &inst, new, geralt_profile).await;
    assert_eq!(geralt.instance_id, inst.id);
    assert_eq!(geralt.username, "geralt");
    assert_eq!(geralt.password_hash, "hash");
    assert_eq!(geralt.profile.owner_id, Some(geralt.id));
    assert_eq!(geralt.profile.owner_permissions, ObjectPermission::Write);
    assert_eq!(geralt.profile.group_id, Some(staff.id));
    assert_eq!(geralt.profile.group_permissions, ObjectPermission::Read);
    assert_eq!(geralt.profile.other_permissions, ObjectPermission::None);
    assert_eq!(geralt.profile.revision, 1);
    assert_eq!(
        store.user(inst.id, geralt.id).await.unwrap().profile,
        geralt.profile
    );
    let plain = user(store, &inst, "yennefer").await;
    assert_eq!(plain.profile.owner_permissions, ObjectPermission::Full);
    assert_eq!(plain.profile.group_id, None);
    assert_eq!(store.count_users(inst.id).await.unwrap(), 2);
    assert_eq!(store.count_users(other.id).await.unwrap(), 0);

    assert_eq!(
        store.user(inst.id, geralt.id).await.unwrap().username,
        "geralt"
    );
    assert_err(store.user(other.id, geralt.id).await, "NotFound");
    assert_eq!(
        store.user_by_username(inst.id, "geralt").await.unwrap().id,
        geralt.id
    );
    assert_err(store.user_by_username(inst.id, "Geralt").await, "NotFound");
    assert_err(store.user_by_username(other.id, "geralt").await, "NotFound");
    assert_eq!(store.user_by_key(&digest).await.unwrap().id, geralt.id);

    // Account fields alone leave the profile's revision alone.
    let renamed = store
        .update_user(
            inst.id,
            geralt.id,
            UserChanges {
                username: Some("gwynbleidd".into()),
                password_hash: Some("new-hash".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.username, "gwynbleidd");
    assert_eq!(renamed.password_hash, "new-hash");
    assert_eq!(renamed.profile.revision, 1);
    let write = Write::UpdateUser {
        instance_id: inst.id,
        id: geralt.id,
        profile_class: store.class(inst.id, "user_profile").await.unwrap(),
        changes: UserChanges::default(),
        profile_channel_id: None,
        profile: ObjectChanges {
            group_id: Some(None),
            other_permissions: Some(ObjectPermission::Read),
            ..ObjectChanges::default()
        },
        author: "{}".into(),
    };
    let Written::User(changed) = store.write(write).await.unwrap() else {
        panic!("not a user");
    };
    assert_eq!(changed.username, "gwynbleidd");
    assert_eq!(changed.profile.group_id, None);
    assert_eq!(changed.profile.other_permissions, ObjectPermission::Read);
    assert_eq!(changed.profile.owner_permissions, ObjectPermission::Write);
    assert_eq!(changed.profile.revision, 2);
    assert!(changed.profile.updated_at >= geralt.profile.updated_at);
    assert_err(
        store
            .update_user(other.id, geralt.id, UserChanges::default())
            .await,
        "NotFound",
    );

    let fresh = Key::generate(KeyKind::Account);
    let rekeyed = store
        .set_user_key(inst.id, geralt.id, fresh.as_str(), &fresh.digest())
        .await
        .unwrap();
    assert_eq!(rekeyed.user_key, fresh.as_str());
    assert_err(store.user_by_key(&digest).await, "NotFound");
    assert_err(
        store
            .set_user_key(other.id, geralt.id, fresh.as_str(), &fresh.digest())
            .await,
        "NotFound",
    );

    // Lists: by id, with a case-sensitive username prefix, in pages.
    let ciri = user(store, &inst, "ciri").await;
    let gwen = user(store, &inst, "gweneth").await;
    let names = |list: Vec<User>| list.into_iter().map(|u| u.username).collect::<Vec<_>>();
    assert_eq!(
        names(store.list_users(inst.id, None, ALL).await.unwrap()),
        ["gwynbleidd", "yennefer", "ciri", "gweneth"]
    );
    assert_eq!(
        names(store.list_users(inst.id, Some("gw"), ALL).await.unwrap()),
        ["gwynbleidd", "gweneth"]
    );
    assert_eq!(
        names(store.list_users(inst.id, Some("GW"), ALL).await.unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        names(
            store
                .list_users(
                    inst.id,
                    None,
                    page(Some(geralt.id), Some(gwen.id), true, 10)
                )
                .await
                .unwrap()
        ),
        ["ciri", "yennefer"]
    );
    assert!(
        store
            .list_users(other.id, None, ALL)
            .await
            .unwrap()
            .is_empty()
    );

    assert_err(store.delete_user(other.id, ciri.id).await, "NotFound");
    store.delete_user(inst.id, ciri.id).await.unwrap();
    assert_err(store.user(inst.id, ciri.id).await, "NotFound");
    assert_err(store.delete_user(inst.id, ciri.id).await, "NotFound");
    assert_eq!(store.count_users(inst.id).await.unwrap(), 3);

    // A user of an instance that is gone is not found.
    store.delete_instance(other.id).await.unwrap();
    assert_err(
        store.create_user(other.id, new_user("late")).await,
        "NotFound",
    );
}

pub async fn usernames_are_unique_per_instance(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (owner, inst) = fixture(store).await;
    let other = instance(store, &owner, "other").await;
    let geralt = user(store, &inst, "geralt").await;
    user(store, &inst, "ciri").await;
    assert_err(
        store.create_user(inst.id, new_user("geralt")).await,
        "Conflict(username)",
    );
    assert_err(
        store
            .update_user(
                inst.id,
                geralt.id,
                UserChanges {
                    username: Some("ciri".into()),
                    ..UserChanges::default()
                },
            )
            .await,
        "Conflict(username)",
    );
    assert_eq!(
        store.user(inst.id, geralt.id).await.unwrap().username,
        "geralt"
    );
    user(store, &other, "geralt").await;
    assert_eq!(store.count_users(inst.id).await.unwrap(), 2);
}

pub async fn groups_round_trip(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (owner, inst) = fixture(store).await;
    let other = instance(store, &owner, "other").await;
    let named = store
        .create_group(
            inst.id,
            GroupChanges {
                name: Some(Some("wolves".into())),
                label: Some("Wolf School".into()),
                description: Some("Kaer Morhen".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(named.instance_id, inst.id);
    assert_eq!(named.name.as_deref(), Some("wolves"));
    assert_eq!(named.label, "Wolf School");
    assert_eq!(named.description, "Kaer Morhen");
    // Names are optional, and unique only when given.
    let a = group(store, &inst, "Wolf pack").await;
    let b = group(store, &inst, "cats").await;
    assert_eq!((a.name.clone(), b.name.clone()), (None, None));
    assert_err(
        store
            .create_group(
                inst.id,
                GroupChanges {
                    name: Some(Some("wolves".into())),
                    ..GroupChanges::default()
                },
            )
            .await,
        "Conflict(name)",
    );
    store
        .create_group(
            other.id,
            GroupChanges {
                name: Some(Some("wolves".into())),
                ..GroupChanges::default()
            },
        )
        .await
        .unwrap();

    assert_eq!(store.group(inst.id, a.id).await.unwrap().label, "Wolf pack");
    assert_err(store.group(other.id, a.id).await, "NotFound");
    let labels = |list: Vec<Group>| list.into_iter().map(|g| g.label).collect::<Vec<_>>();
    assert_eq!(
        labels(store.list_groups(inst.id, None, ALL).await.unwrap()),
        ["Wolf School", "Wolf pack", "cats"]
    );
    assert_eq!(
        labels(store.list_groups(inst.id, Some("Wolf"), ALL).await.unwrap()),
        ["Wolf School", "Wolf pack"]
    );
    assert_eq!(
        labels(
            store
                .list_groups(inst.id, None, page(Some(named.id), None, false, 1))
                .await
                .unwrap()
        ),
        ["Wolf pack"]
    );

    let updated = store
        .update_group(
            inst.id,
            named.id,
            GroupChanges {
                name: Some(None),
                description: Some(String::new()),
                ..GroupChanges::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, None);
    assert_eq!(updated.label, "Wolf School");
    assert_eq!(updated.description, "");
    store
        .update_group(
            inst.id,
            a.id,
            GroupChanges {
                name: Some(Some("pack".into())),
                ..GroupChanges::default()
            },
        )
        .await
        .unwrap();
    assert_err(
        store
            .update_group(
                inst.id,
                b.id,
                GroupChanges {
                    name: Some(Some("pack".into())),
                    ..GroupChanges::default()
                },
            )
            .await,
        "Conflict(name)",
    );
    assert_err(
        store
            .update_group(other.id, a.id, GroupChanges::default())
            .await,
        "NotFound",
    );

    // Deleting a group clears it from profiles.
    let in_a = NewObject {
        group_id: Some(a.id),
        ..profile()
    };
    let lambert = user_with_profile(store, &inst, new_user("lambert"), in_a).await;
    assert_err(store.delete_group(other.id, a.id).await, "NotFound");
    store.delete_group(inst.id, a.id).await.unwrap();
    assert_err(store.group(inst.id, a.id).await, "NotFound");
    assert_err(store.delete_group(inst.id, a.id).await, "NotFound");
    assert_eq!(
        store
            .user(inst.id, lambert.id)
            .await
            .unwrap()
            .profile
            .group_id,
        None
    );

    store.delete_instance(other.id).await.unwrap();
    assert_err(
        store.create_group(other.id, GroupChanges::default()).await,
        "NotFound",
    );
}

pub async fn memberships_are_unique_and_limited(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let geralt = user(store, &inst, "geralt").await;
    let ciri = user(store, &inst, "ciri").await;
    let groups = [
        group(store, &inst, "g0").await,
        group(store, &inst, "g1").await,
        group(store, &inst, "g2").await,
    ];

    store
        .add_membership(geralt.id, groups[0].id, 2)
        .await
        .unwrap();
    assert!(store.is_member(geralt.id, groups[0].id).await.unwrap());
    assert!(!store.is_member(ciri.id, groups[0].id).await.unwrap());
    assert_err(
        store.add_membership(geralt.id, groups[0].id, 2).await,
        "Conflict(membership)",
    );
    store
        .add_membership(geralt.id, groups[1].id, 2)
        .await
        .unwrap();
    assert_err(
        store.add_membership(geralt.id, groups[2].id, 2).await,
        "LimitExceeded",
    );
    // An existing membership is a conflict even at the limit.
    assert_err(
        store.add_membership(geralt.id, groups[1].id, 2).await,
        "Conflict(membership)",
    );
    assert_err(
        store.add_membership(ciri.id, groups[0].id, 0).await,
        "LimitExceeded",
    );
    store
        .add_membership(ciri.id, groups[0].id, 5)
        .await
        .unwrap();
    store
        .add_membership(ciri.id, groups[2].id, 5)
        .await
        .unwrap();

    let group_ids = |list: Vec<Group>| list.into_iter().map(|g| g.id).collect::<Vec<_>>();
    let user_ids = |list: Vec<User>| list.into_iter().map(|u| u.id).collect::<Vec<_>>();
    assert_eq!(
        group_ids(store.groups_of_user(geralt.id, ALL).await.unwrap()),
        [groups[0].id, groups[1].id]
    );
    assert_eq!(
        group_ids(
            store
                .groups_of_user(ciri.id, page(None, None, true, 1))
                .await
                .unwrap()
        ),
        [groups[2].id]
    );
    assert_eq!(
        user_ids(store.users_of_group(groups[0].id, ALL).await.unwrap()),
        [geralt.id, ciri.id]
    );
    assert_eq!(
        user_ids(
            store
                .users_of_group(groups[0].id, page(Some(geralt.id), None, false, 10))
                .await
                .unwrap()
        ),
        [ciri.id]
    );
    assert_eq!(
        store.users_of_group(groups[0].id, ALL).await.unwrap()[0].username,
        "geralt"
    );

    store
        .remove_membership(geralt.id, groups[1].id)
        .await
        .unwrap();
    assert!(!store.is_member(geralt.id, groups[1].id).await.unwrap());
    assert_err(
        store.remove_membership(geralt.id, groups[1].id).await,
        "NotFound",
    );
    store
        .add_membership(geralt.id, groups[2].id, 2)
        .await
        .unwrap();

    // Deleting a user or a group ends its memberships.
    store.delete_user(inst.id, ciri.id).await.unwrap();
    assert_eq!(
        user_ids(store.users_of_group(groups[0].id, ALL).await.unwrap()),
        [geralt.id]
    );
    store.delete_group(inst.id, groups[0].id).await.unwrap();
    assert_eq!(
        group_ids(store.groups_of_user(geralt.id, ALL).await.unwrap()),
        [groups[2].id]
    );

    // Concurrent adds for one user respect the limit together.
    let racer = user(store, &inst, "racer").await.id;
    let mut targets = Vec::new();
    for i in 0..6 {
        targets.push(group(store, &inst, &format!("t{i}")).await.id);
    }
    let attempts: Vec<_> = targets
        .into_iter()
        .map(|group_id| {
            let store = ctx.store.clone();
            tokio::spawn(async move { store.add_membership(racer, group_id, 3).await })
        })
        .collect();
    let mut added = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(()) => added += 1,
            Err(StoreError::LimitExceeded) => {}
            Err(err) => panic!("unexpected error: {err}"),
        }
    }
    assert_eq!(added, 3);
}
