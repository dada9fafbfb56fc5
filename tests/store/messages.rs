//! Messages: id allocation, the commit listener, history paging, lookups and retention.

use herald::model::ChannelType;
use herald::store::*;

use crate::*;

mod run {
    crate::store_tests!(
        publish_allocates_consecutive_ids_across_rooms,
        message_text_is_stored_byte_for_byte,
        free_text_keeps_every_character,
        ids_continue_when_a_channel_is_recreated,
        history_pages_in_both_directions,
        message_lookup_honours_channel_and_room,
        prune_keeps_the_newest_per_room,
        prune_removes_old_messages,
        prune_caps_each_channel_over_all_its_rooms,
        concurrent_publishes_get_consecutive_ids_in_order,
        publishes_racing_a_channel_deletion_fail_alone,
    );
}

pub async fn publish_allocates_consecutive_ids_across_rooms(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let chat = channel(store, &inst, "chat").await;
    let news = channel(store, &inst, "news").await;
    assert_eq!(store.last_message_id(&chat).await.unwrap(), 0);

    let mut ids = Vec::new();
    for room in ["a", "b", "a", "c"] {
        ids.push(publish(store, &chat, Some(room)).await.id);
    }
    assert_eq!(ids, [1, 2, 3, 4]);
    // Each channel has its own sequence.
    assert_eq!(publish(store, &news, Some("a")).await.id, 1);
    assert_eq!(store.last_message_id(&chat).await.unwrap(), 4);
    assert_eq!(store.last_message_id(&news).await.unwrap(), 1);

    // The listener heard every message, after its commit, in id order per channel.
    assert_eq!(ctx.heard.ids(chat.id), [1, 2, 3, 4]);
    assert_eq!(ctx.heard.ids(news.id), [1]);

    let before = herald::model::now_micros();
    let stored = store
        .publish(
            &chat,
            NewMessage {
                room: Some("lobby".into()),
                action: "update",
                author: r#"{"api_key":3,"user":7}"#.into(),
                metadata: r#"{"type":"object","class":"books"}"#.into(),
                payload: r#"{"title":"Blood of Elves"}"#.into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(stored.id, 5);
    assert_eq!(stored.room.as_deref(), Some("lobby"));
    assert_eq!(stored.action, "update");
    assert!(stored.created_at >= before);
    let read = store.message(chat.id, 5, None).await.unwrap();
    assert_eq!(read.room.as_deref(), Some("lobby"));
    assert_eq!(read.action, "update");
    assert_eq!(read.author, r#"{"api_key":3,"user":7}"#);
    assert_eq!(read.metadata, r#"{"type":"object","class":"books"}"#);
    assert_eq!(read.payload, r#"{"title":"Blood of Elves"}"#);
    assert_eq!(read.created_at, stored.created_at);

    // Default-type channels have no rooms.
    let plain = store
        .create_channel(inst.id, new_channel("plain", ChannelType::Default))
        .await
        .unwrap();
    let unroomed = publish(store, &plain, None).await;
    assert_eq!(unroomed.room, None);
    assert_eq!(store.message(plain.id, 1, None).await.unwrap().room, None);
    assert_eq!(store.history(plain.id, None, ALL).await.unwrap().len(), 1);
}

pub async fn message_text_is_stored_byte_for_byte(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let chat = channel(store, &inst, "chat").await;
    // Key order, number spelling, escapes and non-ASCII survive untouched (no JSON re-encoding).
    let payload = r#"{"z":1.50,"a":[true,null,1e3],"s":"ż\u00e9\"\n","big":12345678901234567890}"#;
    let author = r#"{"admin":42}"#;
    let metadata = r#"{"type":"message","x":"\u2028"}"#;
    let published = store
        .publish(
            &chat,
            NewMessage {
                room: Some("pokój".into()),
                action: "custom",
                author: author.into(),
                metadata: metadata.into(),
                payload: payload.into(),
            },
        )
        .await
        .unwrap();
    for read in [
        store
            .message(chat.id, published.id, Some("pokój"))
            .await
            .unwrap(),
        store
            .history(chat.id, Some("pokój"), ALL)
            .await
            .unwrap()
            .remove(0),
    ] {
        assert_eq!(read.payload, payload);
        assert_eq!(read.author, author);
        assert_eq!(read.metadata, metadata);
        assert_eq!(read.room.as_deref(), Some("pokój"));
    }
}

pub async fn ids_continue_when_a_channel_is_recreated(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (owner, inst) = fixture(store).await;
    let old = channel(store, &inst, "chat").await;
    for _ in 0..3 {
        publish(store, &old, Some("r")).await;
    }
    store.delete_channel(inst.id, "chat").await.unwrap();
    // Its messages went with it, and publishing to it finds nothing.
    assert!(
        store
            .history(old.id, Some("r"), ALL)
            .await
            .unwrap()
            .is_empty()
    );
    assert_err(
        store.publish(&old, message(Some("r"), "{}")).await,
        "NotFound",
    );
    assert_eq!(store.last_message_id(&old).await.unwrap(), 3);

    let new = channel(store, &inst, "chat").await;
    assert_ne!(new.id, old.id);
    assert_eq!(store.last_message_id(&new).await.unwrap(), 3);
    assert_eq!(publish(store, &new, Some("r")).await.id, 4);
    // A stale handle of the deleted channel still allocates nothing.
    assert_err(
        store.publish(&old, message(Some("r"), "{}")).await,
        "NotFound",
    );
    assert_eq!(publish(store, &new, Some("q")).await.id, 5);
    assert_eq!(ctx.heard.ids(old.id), [1, 2, 3]);
    assert_eq!(ctx.heard.ids(new.id), [4, 5]);

    // A new instance of the same channel name starts from 1: sequences are per instance.
    let other = instance(store, &owner, "other").await;
    let elsewhere = channel(store, &other, "chat").await;
    assert_eq!(publish(store, &elsewhere, Some("r")).await.id, 1);

    // Deleting the instance takes its sequences along: a re-created instance starts over.
    store.delete_instance(other.id).await.unwrap();
    let other = instance(store, &owner, "other").await;
    let again = channel(store, &other, "chat").await;
    assert_eq!(store.last_message_id(&again).await.unwrap(), 0);
}

pub async fn history_pages_in_both_directions(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let chat = channel(store, &inst, "chat").await;
    let mut in_a = Vec::new();
    let mut in_b = Vec::new();
    for i in 0..15 {
        let room = if i % 3 == 2 { "b" } else { "a" };
        let id = publish(store, &chat, Some(room)).await.id;
        if room == "a" { &mut in_a } else { &mut in_b }.push(id);
    }
    assert_eq!(in_a, [1, 2, 4, 5, 7, 8, 10, 11, 13, 14]);
    assert_eq!(in_b, [3, 6, 9, 12, 15]);
    let ids = |list: Vec<Message>| list.into_iter().map(|m| m.id).collect::<Vec<_>>();
    let chat_id = chat.id;
    let history = |room: Option<&'static str>, page: IdPage| {
        let store = ctx.store.clone();
        async move { ids(store.history(chat_id, room, page).await.unwrap()) }
    };

    assert_eq!(history(Some("a"), ALL).await, in_a);
    assert_eq!(history(Some("b"), ALL).await, in_b);
    assert_eq!(history(Some("c"), ALL).await, Vec::<i64>::new());
    assert_eq!(history(None, ALL).await, Vec::<i64>::new());
    // Ascending: the first `limit` after `after`.
    assert_eq!(
        history(Some("a"), page(Some(4), None, false, 3)).await,
        [5, 7, 8]
    );
    // Descending: the newest `limit`, newest first, below `before`.
    assert_eq!(
        history(Some("a"), page(None, None, true, 3)).await,
        [14, 13, 11]
    );
    assert_eq!(
        history(Some("a"), page(None, Some(11), true, 3)).await,
        [10, 8, 7]
    );
    // Both bounds are exclusive, in either direction.
    assert_eq!(
        history(Some("a"), page(Some(2), Some(10), false, 100)).await,
        [4, 5, 7, 8]
    );
    assert_eq!(
        history(Some("a"), page(Some(2), Some(10), true, 2)).await,
        [8, 7]
    );
    assert_eq!(
        history(Some("b"), page(Some(15), None, false, 10)).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        history(Some("b"), page(None, Some(3), true, 10)).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        history(Some("b"), page(None, None, false, 0)).await,
        Vec::<i64>::new()
    );
    // Another channel's messages never show.
    let other = channel(store, &inst, "other").await;
    publish(store, &other, Some("a")).await;
    assert_eq!(history(Some("a"), ALL).await, in_a);
}

pub async fn message_lookup_honours_channel_and_room(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let chat = channel(store, &inst, "chat").await;
    let other = channel(store, &inst, "other").await;
    let m = publish(store, &chat, Some("lobby")).await;
    publish(store, &other, Some("lobby")).await;

    assert_eq!(store.message(chat.id, m.id, None).await.unwrap().id, m.id);
    assert_eq!(
        store
            .message(chat.id, m.id, Some("lobby"))
            .await
            .unwrap()
            .room
            .as_deref(),
        Some("lobby")
    );
    assert_err(store.message(chat.id, m.id, Some("hall")).await, "NotFound");
    assert_err(store.message(chat.id, m.id + 1, None).await, "NotFound");
    // Ids are per channel: id 1 of another channel is another message.
    let theirs = store.message(other.id, m.id, None).await.unwrap();
    assert_eq!(theirs.id, m.id);
    assert_err(
        store.message(other.id, m.id, Some("hall")).await,
        "NotFound",
    );
    assert_err(store.message(other.id + 100, m.id, None).await, "NotFound");
}

pub async fn prune_keeps_the_newest_per_room(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let chat = channel(store, &inst, "chat").await;
    let plain = store
        .create_channel(inst.id, new_channel("plain", ChannelType::Default))
        .await
        .unwrap();
    for room in ["a", "a", "b", "a", "a", "b", "a"] {
        publish(store, &chat, Some(room)).await;
    }
    for _ in 0..4 {
        publish(store, &plain, None).await;
    }
    assert_eq!(
        store.prune(limits(0, None)).await.unwrap(),
        Pruned::default()
    );

    let pruned = store.prune(limits(3, None)).await.unwrap();
    assert_eq!(
        pruned,
        Pruned {
            by_count: 2 + 1,
            ..Pruned::default()
        }
    );
    let ids = |list: Vec<Message>| list.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.history(chat.id, Some("a"), ALL).await.unwrap()),
        [4, 5, 7]
    );
    assert_eq!(
        ids(store.history(chat.id, Some("b"), ALL).await.unwrap()),
        [3, 6]
    );
    assert_eq!(
        ids(store.history(plain.id, None, ALL).await.unwrap()),
        [2, 3, 4]
    );
    // Each room remembers the highest id retention removed from it (docs/api.md §9.12).
    assert_eq!(store.pruned_through(chat.id, Some("a")).await.unwrap(), 2);
    assert_eq!(store.pruned_through(chat.id, Some("b")).await.unwrap(), 0);
    assert_eq!(store.pruned_through(plain.id, None).await.unwrap(), 1);
    // Nothing more to do; pruning never touches id allocation.
    assert_eq!(
        store.prune(limits(3, None)).await.unwrap(),
        Pruned::default()
    );
    assert_eq!(publish(store, &chat, Some("a")).await.id, 8);
    assert_eq!(
        store.prune(limits(1, None)).await.unwrap().by_count,
        3 + 1 + 2
    );
    assert_eq!(
        ids(store.history(chat.id, Some("a"), ALL).await.unwrap()),
        [8]
    );
    assert_eq!(store.pruned_through(chat.id, Some("a")).await.unwrap(), 7);
    assert_eq!(store.pruned_through(chat.id, Some("b")).await.unwrap(), 3);
    // Deleting the channel forgets it.
    store.delete_channel(inst.id, "chat").await.unwrap();
    let chat = channel(store, &inst, "chat").await;
    assert_eq!(store.pruned_through(chat.id, Some("a")).await.unwrap(), 0);
}

pub async fn prune_caps_each_channel_over_all_its_rooms(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let chat = channel(store, &inst, "chat").await;
    let other = channel(store, &inst, "other").await;
    // A publisher spreading messages over ever new rooms.
    for n in 0..10 {
        publish(store, &chat, Some(&format!("r{n}"))).await;
    }
    publish(store, &other, Some("r0")).await;
    let pruned = store
        .prune(RetentionLimits {
            max_per_room: 100,
            max_per_channel: 4,
            created_before: None,
        })
        .await
        .unwrap();
    assert_eq!(pruned.by_channel, 6);
    let mut left = Vec::new();
    for n in 0..10 {
        let room = format!("r{n}");
        let messages = store.history(chat.id, Some(&room), ALL).await.unwrap();
        left.extend(messages.into_iter().map(|m| m.id));
    }
    assert_eq!(left, [7, 8, 9, 10]);
    for n in 0..6 {
        let room = format!("r{n}");
        assert_eq!(
            store.pruned_through(chat.id, Some(&room)).await.unwrap(),
            n + 1,
            "{room}"
        );
    }
    assert_eq!(store.pruned_through(chat.id, Some("r6")).await.unwrap(), 0);
    assert_eq!(
        store
            .history(other.id, Some("r0"), ALL)
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn prune_removes_old_messages(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let chat = channel(store, &inst, "chat").await;
    let mut published = Vec::new();
    for i in 0..6 {
        published.push(publish(store, &chat, Some("a")).await);
        if i == 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    let cutoff = published[3].created_at;
    let older = published.iter().filter(|m| m.created_at < cutoff).count() as u64;
    assert_eq!(older, 3);

    // A cutoff before everything removes nothing.
    assert_eq!(
        store
            .prune(limits(0, Some(published[0].created_at)))
            .await
            .unwrap(),
        Pruned::default()
    );
    assert_eq!(
        store.prune(limits(0, Some(cutoff))).await.unwrap(),
        Pruned {
            by_age: older,
            ..Pruned::default()
        }
    );
    let left: Vec<i64> = store
        .history(chat.id, Some("a"), ALL)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(left, [4, 5, 6]);

    // Both limits in one pass: age first, then count.
    let pruned = store
        .prune(limits(1, Some(published[4].created_at)))
        .await
        .unwrap();
    assert_eq!(
        pruned,
        Pruned {
            by_count: 1,
            by_age: 1,
            ..Pruned::default()
        }
    );
    assert_eq!(
        store.history(chat.id, Some("a"), ALL).await.unwrap()[0].id,
        6
    );
    assert_eq!(store.last_message_id(&chat).await.unwrap(), 6);
    assert_eq!(store.pruned_through(chat.id, Some("a")).await.unwrap(), 5);
}

pub async fn concurrent_publishes_get_consecutive_ids_in_order(ctx: Ctx) {
    const TASKS: i64 = 8;
    const EACH: i64 = 200;
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let chat = channel(store, &inst, "chat").await;
    let side = channel(store, &inst, "side").await;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = ctx.store.clone();
            let (chat, side) = (chat.clone(), side.clone());
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(EACH as usize);
                for i in 0..EACH {
                    let room = format!("r{}", (task + i) % 3);
                    let m = store
                        .publish(&chat, message(Some(&room), "{}"))
                        .await
                        .expect("publish");
                    ids.push(m.id);
                    if i % 20 == 0 {
                        store
                            .publish(&side, message(Some("x"), "{}"))
                            .await
                            .expect("publish");
                    }
                }
                ids
            })
        })
        .collect();
    let mut all_ids = Vec::new();
    for task in tasks {
        let ids = task.await.unwrap();
        // One publisher's ids increase.
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        all_ids.extend(ids);
    }
    all_ids.sort_unstable();
    assert_eq!(all_ids, (1..=TASKS * EACH).collect::<Vec<_>>());
    assert_eq!(store.last_message_id(&chat).await.unwrap(), TASKS * EACH);

    // The listener heard each channel's ids strictly increasing, every one once.
    let heard = ctx.heard.ids(chat.id);
    assert_eq!(heard, (1..=TASKS * EACH).collect::<Vec<_>>());
    let heard_side = ctx.heard.ids(side.id);
    assert_eq!(heard_side, (1..=TASKS * (EACH / 20)).collect::<Vec<_>>());

    let stored: Vec<i64> = store
        .history(chat.id, Some("r0"), page(None, None, false, 10_000))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert!(stored.windows(2).all(|w| w[0] < w[1]));
    let mut total = 0;
    for room in ["r0", "r1", "r2"] {
        total += store
            .history(chat.id, Some(room), page(None, None, false, 10_000))
            .await
            .unwrap()
            .len();
    }
    assert_eq!(total as i64, TASKS * EACH);
}

/// NUL and other odd characters in free text (rooms, descriptions, names): PostgreSQL cannot
/// store U+0000 as text, SQLite can; both must answer alike.
pub async fn free_text_keeps_every_character(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (owner, inst) = fixture(store).await;
    let odd = "a\0b\u{10FFFF}0\u{10FFFF}\0";
    let chat = channel(store, &inst, "chat").await;
    for room in [odd, "a", "a\0", "\0"] {
        store
            .publish(&chat, message(Some(room), "{}"))
            .await
            .unwrap();
    }
    let in_room = |room: &'static str| {
        let store = ctx.store.clone();
        let chat_id = chat.id;
        async move {
            store
                .history(chat_id, Some(room), ALL)
                .await
                .unwrap()
                .into_iter()
                .map(|m| (m.id, m.room.unwrap()))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(in_room(odd).await, [(1, odd.to_owned())]);
    assert_eq!(in_room("a").await, [(2, "a".to_owned())]);
    assert_eq!(in_room("a\0").await, [(3, "a\0".to_owned())]);
    assert_eq!(in_room("\0").await, [(4, "\0".to_owned())]);
    assert_eq!(
        store
            .message(chat.id, 1, Some(odd))
            .await
            .unwrap()
            .room
            .as_deref(),
        Some(odd)
    );
    assert_err(store.message(chat.id, 1, Some("a")).await, "NotFound");
    assert_eq!(ctx.heard.ids(chat.id), [1, 2, 3, 4]);
    assert_eq!(
        store.prune(limits(1, None)).await.unwrap(),
        Pruned::default()
    );
    publish(store, &chat, Some("\0")).await;
    assert_eq!(store.prune(limits(1, None)).await.unwrap().by_count, 1);
    assert_eq!(store.pruned_through(chat.id, Some("\0")).await.unwrap(), 4);
    assert_eq!(store.pruned_through(chat.id, Some("a\0")).await.unwrap(), 0);

    // Lookups by a name no channel can have find nothing rather than fail.
    assert_err(store.channel(inst.id, "\0\0").await, "NotFound");
    assert_err(store.instance_by_name("x\0").await, "NotFound");
    assert_err(store.account_by_email("\0@example.com").await, "NotFound");

    let updated = store
        .update_channel(
            inst.id,
            "chat",
            ChannelChanges {
                description: Some(odd.to_owned()),
                ..ChannelChanges::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.description, odd);
    assert_eq!(
        store.channel(inst.id, "chat").await.unwrap().description,
        odd
    );
    let described = store
        .create_instance(
            owner.id,
            "described",
            InstanceChanges {
                description: Some(odd.to_owned()),
                metadata: None,
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(store.instance(described.id).await.unwrap().description, odd);
    let group = store
        .create_group(
            inst.id,
            GroupChanges {
                name: Some(Some(odd.to_owned())),
                label: Some("\0label".into()),
                description: Some("\0".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(group.name.as_deref(), Some(odd));
    assert_eq!(group.label, "\0label");
    // (Prefixes holding U+0000 are left out: SQLite's substr() stops at it.)
    assert!(
        store
            .list_groups(inst.id, Some("\u{10FFFF}"), ALL)
            .await
            .unwrap()
            .is_empty()
    );
    let mut first = crate::new_account("odd@example.com");
    first.first_name = odd.to_owned();
    let account = store.create_account(first).await.unwrap();
    assert_eq!(store.account(account.id).await.unwrap().first_name, odd);
}

pub async fn publishes_racing_a_channel_deletion_fail_alone(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let kept = channel(store, &inst, "kept").await;
    let doomed = channel(store, &inst, "doomed").await;
    let publishers: Vec<_> = [&kept, &doomed, &kept, &doomed]
        .into_iter()
        .map(|target| {
            let store = ctx.store.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for _ in 0..150 {
                    outcomes.push(store.publish(&target, message(Some("r"), "{}")).await);
                    tokio::task::yield_now().await;
                }
                outcomes
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    store.delete_channel(inst.id, "doomed").await.unwrap();

    let mut doomed_ids = Vec::new();
    for (n, publisher) in publishers.into_iter().enumerate() {
        for outcome in publisher.await.unwrap() {
            match (n % 2, outcome) {
                (0, outcome) => {
                    outcome.expect("publishing to a channel that stays never fails");
                }
                (_, Ok(m)) => doomed_ids.push(m.id),
                (_, Err(StoreError::NotFound)) => {}
                (_, Err(err)) => panic!("unexpected error: {err}"),
            }
        }
    }
    assert_eq!(ctx.heard.ids(kept.id), (1..=300).collect::<Vec<_>>());
    // What the deleted channel accepted before its deletion got consecutive ids, heard in order,
    // and the sequence continues from there.
    doomed_ids.sort_unstable();
    let accepted = doomed_ids.len() as i64;
    assert_eq!(doomed_ids, (1..=accepted).collect::<Vec<_>>());
    assert_eq!(ctx.heard.ids(doomed.id), doomed_ids);
    let again = channel(store, &inst, "doomed").await;
    assert_eq!(publish(store, &again, Some("r")).await.id, accepted + 1);
}
