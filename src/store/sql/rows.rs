//! Rows to domain values, once for both backends.

use super::Row;
use crate::model::{ChannelType, Permission};
use crate::store::{
    Account, ApiKey, Channel, Group, Instance, Message, Profile, StoreResult, User, action_name,
    decode_error,
};

pub(in crate::store) fn all<T>(
    rows: Vec<Row>,
    convert: fn(&Row) -> sqlx::Result<T>,
) -> StoreResult<Vec<T>> {
    Ok(rows.iter().map(convert).collect::<Result<_, _>>()?)
}

pub(in crate::store) fn account(row: &Row) -> sqlx::Result<Account> {
    Ok(Account {
        id: row.int("id")?,
        email: row.text("email")?,
        first_name: row.text("first_name")?,
        last_name: row.text("last_name")?,
        metadata: row.json("metadata")?,
        password_hash: row.opt_raw("password_hash")?,
        account_key: row.raw("account_key")?,
        is_superuser: row.boolean("is_superuser")?,
    })
}

pub(in crate::store) fn instance(row: &Row) -> sqlx::Result<Instance> {
    Ok(Instance {
        id: row.int("id")?,
        name: row.text("name")?,
        owner_id: row.int("owner_id")?,
        description: row.text("description")?,
        metadata: row.json("metadata")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub(in crate::store) fn api_key(row: &Row) -> sqlx::Result<ApiKey> {
    Ok(ApiKey {
        id: row.int("id")?,
        instance_id: row.int("instance_id")?,
        api_key: row.raw("api_key")?,
        description: row.text("description")?,
        ignore_acl: row.boolean("ignore_acl")?,
        allow_user_create: row.boolean("allow_user_create")?,
        allow_group_create: row.boolean("allow_group_create")?,
        allow_anonymous_read: row.boolean("allow_anonymous_read")?,
        created_at: row.int("created_at")?,
    })
}

fn permission(row: &Row, column: &str) -> sqlx::Result<Permission> {
    Permission::parse(&row.raw(column)?).ok_or_else(|| decode_error("permission"))
}

pub(in crate::store) fn channel(row: &Row) -> sqlx::Result<Channel> {
    Ok(Channel {
        id: row.int("id")?,
        instance_id: row.int("instance_id")?,
        name: row.text("name")?,
        kind: ChannelType::parse(&row.raw("type")?).ok_or_else(|| decode_error("channel type"))?,
        description: row.text("description")?,
        group_id: row.opt_int("group_id")?,
        group_permissions: permission(row, "group_permissions")?,
        other_permissions: permission(row, "other_permissions")?,
        custom_publish: row.boolean("custom_publish")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub(in crate::store) fn message(row: &Row) -> sqlx::Result<Message> {
    let room = row.text("room")?;
    Ok(Message {
        id: row.int("id")?,
        room: (!room.is_empty()).then_some(room),
        action: action_name(&row.raw("action")?)?,
        author: row.raw("author")?,
        metadata: row.raw("metadata")?,
        payload: row.raw("payload")?,
        created_at: row.int("created_at")?,
    })
}

pub(in crate::store) fn user(row: &Row) -> sqlx::Result<User> {
    Ok(User {
        id: row.int("id")?,
        instance_id: row.int("instance_id")?,
        username: row.text("username")?,
        password_hash: row.raw("password_hash")?,
        user_key: row.raw("user_key")?,
        profile: Profile {
            id: row.int("profile_id")?,
            owner_permissions: row.raw("owner_permissions")?,
            group_id: row.opt_int("group_id")?,
            group_permissions: row.raw("group_permissions")?,
            other_permissions: row.raw("other_permissions")?,
            revision: row.int("revision")?,
            created_at: row.int("created_at")?,
            updated_at: row.int("updated_at")?,
        },
    })
}

pub(in crate::store) fn group(row: &Row) -> sqlx::Result<Group> {
    Ok(Group {
        id: row.int("id")?,
        instance_id: row.int("instance_id")?,
        name: row.opt_text("name")?,
        label: row.text("label")?,
        description: row.text("description")?,
    })
}
