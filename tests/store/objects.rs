//! Classes and data objects: the class lifecycle with its indexes, and object writes that store
//! a data change and its change message in one transaction (docs/api.md §10.1–§10.4).

use std::sync::Arc;

use herald::objects::query::{
    Builtin, Comparison, Condition, Field, Lookup, Order, Scalar, parse_order_by, parse_queries,
};
use herald::objects::schema::Schema;
use herald::objects::values::{FieldChange, Step};
use herald::objects::{Access, Class, ClassPermission, DataObject, ObjectPermission};
use serde_json::{Map, Value, json};

use crate::*;

mod run {
    crate::store_tests!(
        classes_round_trip_with_their_schema,
        class_limits_and_names,
        schema_changes_discard_values_and_bump_the_revision,
        writes_store_the_change_and_its_message_together,
        a_refused_write_changes_nothing_and_publishes_nothing,
        concurrent_increments_lose_nothing,
        lists_filter_order_and_page,
        lists_show_only_what_the_caller_may_read,
        filtered_lists_use_the_class_indexes,
        deleting_a_channel_or_class_leaves_no_dangling_objects,
    );
}

fn schema(value: Value) -> Schema {
    Schema::parse(&value, &|_| true).expect("valid schema")
}

fn new_class(name: &str, fields: Value) -> NewClass {
    NewClass {
        name: name.to_owned(),
        description: String::new(),
        schema: schema(fields),
        group_id: None,
        group_permissions: ClassPermission::CreateObjects,
        other_permissions: ClassPermission::CreateObjects,
        metadata: json!({}),
    }
}

/// `contracts`: an indexed string, an indexed and ordered integer, a text.
async fn contracts(store: &dyn Store, instance: &Instance) -> Class {
    store
        .create_class(
            instance.id,
            new_class(
                "contracts",
                json!([
                    {"name": "title", "type": "string", "filter_index": true},
                    {"name": "reward", "type": "integer", "filter_index": true,
                     "order_index": true},
                    {"name": "notes", "type": "text"}
                ]),
            ),
            0,
        )
        .await
        .expect("create class")
}

fn data(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("tests pass objects"),
    }
}

fn new_object(fields: Value, channel: Option<&Channel>, room: Option<&str>) -> NewObject {
    NewObject {
        owner_id: None,
        owner_permissions: ObjectPermission::Full,
        group_id: None,
        group_permissions: ObjectPermission::None,
        other_permissions: ObjectPermission::None,
        channel: channel.map(|c| ObjectChannel {
            id: c.id,
            name: c.name.clone(),
            room: room.map(str::to_owned),
        }),
        data: data(fields),
    }
}

async fn create(store: &dyn Store, class: &Class, new: NewObject) -> DataObject {
    let write = Write::CreateObject {
        class: class.clone(),
        new,
        author: r#"{"admin":1}"#.into(),
    };
    match store.write(write).await.expect("create object") {
        Written::Object(object) => object,
        other => panic!("not an object: {other:?}"),
    }
}

fn set(class: &Class, fields: Value) -> ObjectChanges {
    ObjectChanges {
        fields: data(fields)
            .into_iter()
            .map(|(name, value)| {
                let def = class.schema.field(&name).expect("field").clone();
                (def, FieldChange::Set(Some(value)))
            })
            .collect(),
        ..ObjectChanges::default()
    }
}

fn update(class: &Class, object: &DataObject, changes: ObjectChanges, access: Access) -> Write {
    Write::UpdateObject {
        class: class.clone(),
        id: object.id,
        channel_id: object.channel_id,
        changes,
        access,
        author: r#"{"admin":1}"#.into(),
    }
}

fn written(result: StoreResult<Written>) -> DataObject {
    match result.expect("write") {
        Written::Object(object) => object,
        other => panic!("not an object: {other:?}"),
    }
}

fn by_id(descending: bool) -> Order {
    Order {
        field: Field::Builtin(Builtin::Id),
        descending,
    }
}

fn query(conditions: Vec<Condition>, order: Order, limit: i64) -> ObjectQuery {
    ObjectQuery {
        conditions,
        access: Access::Full,
        order,
        after: None,
        limit,
    }
}

fn ids(objects: &[DataObject]) -> Vec<i64> {
    objects.iter().map(|o| o.id).collect()
}

pub async fn classes_round_trip_with_their_schema(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let (_, other) = {
        let owner = account(store, "other@example.com").await;
        let other = instance(store, &owner, "other").await;
        (owner, other)
    };
    // Every instance starts with user_profile.
    let profile = store.class(inst.id, "user_profile").await.unwrap();
    assert_eq!(profile.other_permissions, ClassPermission::Read);
    assert_eq!(profile.schema, Schema::default());

    let class = contracts(store, &inst).await;
    assert_eq!((class.name.as_str(), class.revision), ("contracts", 1));
    assert_eq!(class.schema.0.len(), 3);
    assert_eq!(
        store.class(inst.id, "contracts").await.unwrap().schema,
        class.schema
    );
    assert_err(store.class(other.id, "contracts").await, "NotFound");

    let all = store
        .list_classes(inst.id, None, &Access::Full, ALL)
        .await
        .unwrap();
    let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["user_profile", "contracts"]);
    let prefixed = store
        .list_classes(inst.id, Some("con"), &Access::Full, ALL)
        .await
        .unwrap();
    assert_eq!(prefixed.len(), 1);
    // Anonymous readers see classes others may read.
    let visible = store
        .list_classes(inst.id, None, &Access::Anonymous, ALL)
        .await
        .unwrap();
    assert_eq!(visible.len(), 2);
    let hidden = store
        .update_class(
            inst.id,
            "contracts",
            ClassChanges {
                other_permissions: Some(ClassPermission::None),
                ..ClassChanges::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(hidden.revision, 1, "permissions are not a schema change");
    let visible = store
        .list_classes(inst.id, None, &Access::Anonymous, ALL)
        .await
        .unwrap();
    assert_eq!(visible.len(), 1);

    let a = create(store, &class, new_object(json!({"title": "x"}), None, None)).await;
    create(store, &class, new_object(json!({}), None, None)).await;
    let counts = store
        .count_objects(&[class.id, profile.id, 999_999])
        .await
        .unwrap();
    assert_eq!(counts, [(class.id, 2), (profile.id, 0), (999_999, 0)]);
    assert_eq!(store.object(&class, a.id).await.unwrap(), a);
    assert_err(store.object(&profile, a.id).await, "NotFound");
}

pub async fn class_limits_and_names(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    store
        .create_class(inst.id, new_class("a", json!([])), 2)
        .await
        .unwrap();
    store
        .create_class(inst.id, new_class("b", json!([])), 2)
        .await
        .unwrap();
    // user_profile does not count toward the limit.
    assert_err(
        store
            .create_class(inst.id, new_class("c", json!([])), 2)
            .await,
        "LimitExceeded",
    );
    assert_err(
        store
            .create_class(inst.id, new_class("a", json!([])), 0)
            .await,
        "Conflict(name)",
    );
    store.delete_class(inst.id, "a").await.unwrap();
    assert_err(store.delete_class(inst.id, "a").await, "NotFound");
    store
        .create_class(inst.id, new_class("c", json!([])), 2)
        .await
        .unwrap();
}

pub async fn schema_changes_discard_values_and_bump_the_revision(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let class = contracts(store, &inst).await;
    let object = create(
        store,
        &class,
        new_object(
            json!({"title": "Griffin", "reward": 5, "notes": "n"}),
            None,
            None,
        ),
    )
    .await;
    // reward becomes a string, notes goes: both lose their values; title keeps its own.
    let changed = store
        .update_class(
            inst.id,
            "contracts",
            ClassChanges {
                schema: Some(schema(json!([
                    {"name": "title", "type": "string", "filter_index": true},
                    {"name": "reward", "type": "string", "order_index": true}
                ]))),
                expected_revision: Some(1),
                ..ClassChanges::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.revision, 2);
    let after = store.object(&changed, object.id).await.unwrap();
    assert_eq!(Value::Object(after.data), json!({"title": "Griffin"}));
    // The same schema again is no change.
    let same = store
        .update_class(
            inst.id,
            "contracts",
            ClassChanges {
                schema: Some(changed.schema.clone()),
                ..ClassChanges::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(same.revision, 2);
    match store
        .update_class(
            inst.id,
            "contracts",
            ClassChanges {
                description: Some("late".into()),
                expected_revision: Some(1),
                ..ClassChanges::default()
            },
        )
        .await
    {
        Err(StoreError::Refused(Refusal::RevisionMismatch {
            expected: 1,
            actual: 2,
        })) => {}
        other => panic!("expected a revision mismatch, got {other:?}"),
    }
    // The new order index serves an order on the new type.
    let order = parse_order_by(Some("reward"), &same.schema)
        .unwrap()
        .unwrap();
    store
        .list_objects(&same, &query(vec![], order, 10))
        .await
        .unwrap();
}

pub async fn writes_store_the_change_and_its_message_together(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let class = contracts(store, &inst).await;
    let board = channel(store, &inst, "board").await;
    publish(store, &board, Some("novigrad")).await;

    let object = create(
        store,
        &class,
        new_object(
            json!({"title": "Griffin", "reward": 300}),
            Some(&board),
            Some("novigrad"),
        ),
    )
    .await;
    assert_eq!(object.channel.as_deref(), Some("board"));
    assert_eq!(object.revision, 1);
    let changed = written(
        store
            .write(update(
                &class,
                &object,
                ObjectChanges {
                    fields: vec![(
                        class.schema.field("reward").unwrap().clone(),
                        FieldChange::Increment(Step::Int(50)),
                    )],
                    ..ObjectChanges::default()
                },
                Access::Full,
            ))
            .await,
    );
    assert_eq!(changed.revision, 2);
    assert_eq!(changed.data.get("reward"), Some(&json!(350)));
    // Nothing to change: same revision, no message.
    let unchanged = written(
        store
            .write(update(
                &class,
                &changed,
                set(&class, json!({"reward": 350})),
                Access::Full,
            ))
            .await,
    );
    assert_eq!(unchanged.revision, 2);
    let delete = Write::DeleteObject {
        class: class.clone(),
        id: object.id,
        channel_id: object.channel_id,
        access: Access::Full,
        author: r#"{"admin":1}"#.into(),
    };
    assert!(matches!(
        store.write(delete).await.unwrap(),
        Written::Deleted
    ));
    assert_err(store.object(&class, object.id).await, "NotFound");

    // The channel's ids continue from the publish, the listener heard each after its commit,
    // and history tells the object's story.
    assert_eq!(ctx.heard.ids(board.id), [1, 2, 3, 4]);
    let history = store
        .history(board.id, Some("novigrad"), ALL)
        .await
        .unwrap();
    let story: Vec<(&str, Value)> = history
        .iter()
        .map(|m| (m.action, serde_json::from_str(&m.payload).unwrap()))
        .collect();
    assert_eq!(story[0].0, "custom");
    assert_eq!(story[1].0, "create");
    assert_eq!(story[1].1["title"], "Griffin");
    assert_eq!(story[1].1["reward"], 300);
    assert!(story[1].1.get("channel").is_none());
    assert_eq!(story[2].0, "update");
    let mut update_payload = story[2].1.clone();
    assert!(update_payload["updated_at"].is_string());
    update_payload.as_object_mut().unwrap().remove("updated_at");
    assert_eq!(
        update_payload,
        json!({"id": object.id, "revision": 2, "reward": 350})
    );
    assert_eq!(story[3], ("delete", json!({"id": object.id})));
    assert!(
        history
            .iter()
            .skip(1)
            .all(|m| m.metadata == r#"{"type":"object","class":"contracts"}"#
                && m.room.as_deref() == Some("novigrad"))
    );
}

pub async fn a_refused_write_changes_nothing_and_publishes_nothing(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let class = contracts(store, &inst).await;
    let board = channel(store, &inst, "board").await;
    let object = create(
        store,
        &class,
        new_object(json!({"reward": 2_147_483_647}), Some(&board), Some("r")),
    )
    .await;
    let overflow = ObjectChanges {
        fields: vec![(
            class.schema.field("reward").unwrap().clone(),
            FieldChange::Increment(Step::Int(1)),
        )],
        ..ObjectChanges::default()
    };
    let stale = ObjectChanges {
        expected_revision: Some(7),
        ..set(&class, json!({"title": "late"}))
    };
    let reader = Access::User {
        id: 42,
        groups: vec![],
    };
    // Writes racing each other in one batch: the refused ones roll back alone.
    let (a, b, c, d) = tokio::join!(
        store.write(update(&class, &object, overflow, Access::Full)),
        store.write(update(&class, &object, stale, Access::Full)),
        store.write(update(
            &class,
            &object,
            set(&class, json!({"title": "x"})),
            reader
        )),
        store.write(update(
            &class,
            &object,
            set(&class, json!({"notes": "kept"})),
            Access::Full
        )),
    );
    match a {
        Err(StoreError::Refused(Refusal::Field(field, message))) => {
            assert_eq!(field, "reward");
            assert_eq!(
                message,
                "Ensure this value is less than or equal to 2147483647."
            );
        }
        other => panic!("expected the overflow to be refused, got {other:?}"),
    }
    assert!(matches!(
        b,
        Err(StoreError::Refused(Refusal::RevisionMismatch {
            expected: 7,
            ..
        }))
    ));
    // other_permissions none: a stranger cannot even see it.
    assert_err(c, "NotFound");
    let kept = written(d);
    assert_eq!(kept.revision, 2);
    let stored = store.object(&class, object.id).await.unwrap();
    assert_eq!(stored, kept);
    // Two messages: the create and the one accepted update.
    let history = store.history(board.id, Some("r"), ALL).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(ctx.heard.ids(board.id), [1, 2]);

    // A missing reference is refused, and nothing is created.
    let linked = store
        .create_class(
            inst.id,
            new_class(
                "linked",
                json!([{"name": "to", "type": "reference", "target": "contracts"}]),
            ),
            0,
        )
        .await
        .unwrap();
    let write = Write::CreateObject {
        class: linked.clone(),
        new: new_object(json!({"to": 999_999}), Some(&board), Some("r")),
        author: "{}".into(),
    };
    match store.write(write).await {
        Err(StoreError::Refused(Refusal::Field(field, message))) => {
            assert_eq!(
                (field.as_str(), message.as_str()),
                ("to", "Target with specified id does not exist.")
            );
        }
        other => panic!("expected a refused reference, got {other:?}"),
    }
    assert_eq!(
        store.count_objects(&[linked.id]).await.unwrap(),
        [(linked.id, 0)]
    );
    assert_eq!(
        store.history(board.id, Some("r"), ALL).await.unwrap().len(),
        2
    );
    let good = create(
        store,
        &linked,
        new_object(json!({"to": object.id}), None, None),
    )
    .await;
    assert_eq!(good.data.get("to"), Some(&json!(object.id)));
}

pub async fn concurrent_increments_lose_nothing(ctx: Ctx) {
    let store = ctx.store.clone();
    let (_, inst) = fixture(store.as_ref()).await;
    let class = contracts(store.as_ref(), &inst).await;
    let board = channel(store.as_ref(), &inst, "board").await;
    let object = create(
        store.as_ref(),
        &class,
        new_object(json!({"reward": 0}), Some(&board), Some("r")),
    )
    .await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store: Arc<dyn Store> = store.clone();
            let (class, object) = (class.clone(), object.clone());
            tokio::spawn(async move {
                for _ in 0..25 {
                    let changes = ObjectChanges {
                        fields: vec![(
                            class.schema.field("reward").unwrap().clone(),
                            FieldChange::Increment(Step::Int(1)),
                        )],
                        ..ObjectChanges::default()
                    };
                    written(
                        store
                            .write(update(&class, &object, changes, Access::Full))
                            .await,
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stored = store.object(&class, object.id).await.unwrap();
    assert_eq!(stored.data.get("reward"), Some(&json!(200)));
    assert_eq!(stored.revision, 201);
    // The messages tell the same story, in id order.
    let history = store.history(board.id, Some("r"), ALL).await.unwrap();
    let rewards: Vec<i64> = history
        .iter()
        .skip(1)
        .map(|m| {
            serde_json::from_str::<Value>(&m.payload).unwrap()["reward"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(rewards, (1..=200).collect::<Vec<_>>());
    assert_eq!(ctx.heard.ids(board.id), (1..=201).collect::<Vec<_>>());
}

pub async fn lists_filter_order_and_page(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let class = contracts(store, &inst).await;
    let mut made = Vec::new();
    for (title, reward) in [
        ("a", json!(30)),
        ("b", Value::Null),
        ("c", json!(10)),
        ("d", json!(30)),
        ("e", json!(20)),
        ("ż", Value::Null),
    ] {
        let mut fields = json!({"title": title});
        if !reward.is_null() {
            fields["reward"] = reward;
        }
        made.push(
            create(store, &class, new_object(fields, None, None))
                .await
                .id,
        );
    }
    let all = store
        .list_objects(&class, &query(vec![], by_id(false), 100))
        .await
        .unwrap();
    assert_eq!(ids(&all), made);

    // Filters, ANDed.
    let q = |text: &str| parse_queries([text], &class.schema).unwrap();
    let found = |conditions: Vec<Condition>| async {
        ids(&store
            .list_objects(&class, &query(conditions, by_id(false), 100))
            .await
            .unwrap())
    };
    assert_eq!(
        found(q(r#"{"reward": {"_gte": 20}}"#)).await,
        [made[0], made[3], made[4]]
    );
    assert_eq!(
        found(q(
            r#"{"reward": {"_gte": 20}, "title": {"_in": ["a", "e"]}}"#
        ))
        .await,
        [made[0], made[4]]
    );
    assert_eq!(
        found(q(r#"{"reward": {"_exists": false}}"#)).await,
        [made[1], made[5]]
    );
    // Null is not equal to 30.
    assert_eq!(
        found(q(r#"{"reward": {"_neq": 30}}"#)).await,
        [made[1], made[2], made[4], made[5]]
    );
    assert_eq!(
        found(q(r#"{"title": {"_gt": "d"}}"#)).await,
        [made[4], made[5]]
    );
    assert_eq!(
        found(vec![Condition {
            field: Field::Builtin(Builtin::Id),
            lookup: Lookup::Compare(Comparison::Lte, Scalar::Int(made[1])),
        }])
        .await,
        [made[0], made[1]]
    );
    let count = store
        .count_matching(
            &class,
            &query(q(r#"{"reward": {"_gte": 20}}"#), by_id(false), 1),
        )
        .await
        .unwrap();
    assert_eq!(count, 3);

    // Order by reward ascending: values, ties by id, then nulls; descending: the exact reverse.
    let ascending = parse_order_by(Some("reward"), &class.schema)
        .unwrap()
        .unwrap();
    let expected = [made[2], made[4], made[0], made[3], made[1], made[5]];
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_objects(
                &class,
                &ObjectQuery {
                    after: after.clone(),
                    ..query(vec![], ascending.clone(), 2)
                },
            )
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(Cursor {
            value: last
                .data
                .get("reward")
                .and_then(|v| Scalar::from_stored(ascending.field.kind(), v)),
            id: last.id,
        });
        pages.extend(ids(&page));
    }
    assert_eq!(pages, expected);
    let descending = Order {
        descending: true,
        ..ascending.clone()
    };
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_objects(
                &class,
                &ObjectQuery {
                    after: after.clone(),
                    ..query(vec![], descending.clone(), 4)
                },
            )
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(Cursor {
            value: last
                .data
                .get("reward")
                .and_then(|v| Scalar::from_stored(descending.field.kind(), v)),
            id: last.id,
        });
        pages.extend(ids(&page));
    }
    let mut reversed = expected.to_vec();
    reversed.reverse();
    assert_eq!(pages, reversed);
    // Titles order by code point.
    let by_title = Order {
        field: Field::Custom(class.schema.field("title").unwrap().clone()),
        descending: true,
    };
    let first = store
        .list_objects(&class, &query(vec![], by_title, 1))
        .await
        .unwrap();
    assert_eq!(ids(&first), [made[5]]);
}

pub async fn lists_show_only_what_the_caller_may_read(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let class = contracts(store, &inst).await;
    let staff = store
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
    let object = |owner, group, owner_p, group_p, other_p| NewObject {
        owner_id: owner,
        group_id: group,
        owner_permissions: owner_p,
        group_permissions: group_p,
        other_permissions: other_p,
        ..new_object(json!({}), None, None)
    };
    use ObjectPermission::{Full, None as No, Read};
    let public = create(store, &class, object(None, None, Full, No, Read)).await;
    let mine = create(store, &class, object(Some(user.id), None, Read, No, No)).await;
    let mine_hidden = create(store, &class, object(Some(user.id), None, No, No, No)).await;
    let staffs = create(store, &class, object(None, Some(staff.id), Full, Read, No)).await;
    let secret = create(store, &class, object(None, None, Full, No, No)).await;
    let class = &class;
    let visible = |access: Access| async move {
        ids(&store
            .list_objects(
                class,
                &ObjectQuery {
                    access,
                    ..query(vec![], by_id(false), 100)
                },
            )
            .await
            .unwrap())
    };
    assert_eq!(
        visible(Access::Full).await,
        [public.id, mine.id, mine_hidden.id, staffs.id, secret.id]
    );
    assert_eq!(visible(Access::Anonymous).await, [public.id]);
    assert_eq!(
        visible(Access::User {
            id: user.id,
            groups: vec![]
        })
        .await,
        [public.id, mine.id]
    );
    assert_eq!(
        visible(Access::User {
            id: user.id,
            groups: vec![staff.id]
        })
        .await,
        [public.id, mine.id, staffs.id]
    );
}

pub async fn filtered_lists_use_the_class_indexes(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let class = contracts(store, &inst).await;
    let sql = &ctx.sql;
    for i in 0..50 {
        let title = format!("t{}", i % 5);
        create(
            store,
            &class,
            new_object(json!({"title": title, "reward": i}), None, None),
        )
        .await;
    }
    let filter = parse_queries([r#"{"title": {"_eq": "t1"}}"#], &class.schema).unwrap();
    let plan = sql
        .explain_object_list(&class, &query(filter, by_id(false), 100))
        .await
        .unwrap()
        .join("\n");
    let index_prefix = format!("obj_{}_", class.id);
    assert!(
        plan.contains(&index_prefix),
        "filter plan does not use the class's index:\n{plan}"
    );
    let order = parse_order_by(Some("-reward"), &class.schema)
        .unwrap()
        .unwrap();
    let plan = sql
        .explain_object_list(&class, &query(vec![], order, 10))
        .await
        .unwrap()
        .join("\n");
    assert!(
        plan.contains(&index_prefix),
        "order plan does not use the class's index:\n{plan}"
    );
}

pub async fn deleting_a_channel_or_class_leaves_no_dangling_objects(ctx: Ctx) {
    let store = ctx.store.as_ref();
    let (_, inst) = fixture(store).await;
    let class = contracts(store, &inst).await;
    let board = channel(store, &inst, "board").await;
    let object = create(
        store,
        &class,
        new_object(json!({"title": "t"}), Some(&board), Some("r")),
    )
    .await;
    store.delete_channel(inst.id, "board").await.unwrap();
    let detached = store.object(&class, object.id).await.unwrap();
    assert_eq!(
        (detached.channel_id, detached.channel.as_deref()),
        (None, None)
    );
    // It publishes nothing more.
    let changed = written(
        store
            .write(update(
                &class,
                &detached,
                set(&class, json!({"title": "u"})),
                Access::Full,
            ))
            .await,
    );
    assert_eq!(changed.revision, 2);
    store.delete_class(inst.id, "contracts").await.unwrap();
    assert_err(store.object(&class, object.id).await, "NotFound");
    assert_eq!(
        store.count_objects(&[class.id]).await.unwrap(),
        [(class.id, 0)]
    );
    // A class of the same name starts afresh, with its own indexes.
    let again = contracts(store, &inst).await;
    assert_ne!(again.id, class.id);
    store.delete_instance(inst.id).await.unwrap();
}
