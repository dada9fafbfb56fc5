//! Rows to domain values, once for both backends.

use super::Row;
use crate::model::{ChannelType, Permission};
use crate::objects::schema::Schema;
use crate::objects::{Class, ClassPermission, DataObject, ObjectPermission};
use crate::store::{
    Account, ApiKey, Channel, Group, Instance, Message, StoreResult, User, action_name,
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
        profile: object_prefixed(row, "p_")?,
    })
}

/// The columns of an object (table alias `o`) joined with its channel (`ch`), each named with
/// `prefix`, as [`object_prefixed`] reads them.
pub(in crate::store) fn object_columns(o: &str, ch: &str, prefix: &str) -> String {
    format!(
        "{o}.id AS {prefix}id, {o}.class_id AS {prefix}class_id, \
         {o}.owner_id AS {prefix}owner_id, {o}.owner_permissions AS {prefix}owner_permissions, \
         {o}.group_id AS {prefix}group_id, {o}.group_permissions AS {prefix}group_permissions, \
         {o}.other_permissions AS {prefix}other_permissions, \
         {o}.channel_id AS {prefix}channel_id, {ch}.name AS {prefix}channel_name, \
         {o}.channel_room AS {prefix}channel_room, {o}.revision AS {prefix}revision, \
         CAST({o}.data AS TEXT) AS {prefix}data, {o}.created_at AS {prefix}created_at, \
         {o}.updated_at AS {prefix}updated_at"
    )
}

fn object_permission(row: &Row, column: &str) -> sqlx::Result<ObjectPermission> {
    ObjectPermission::from_code(row.int(column)?).ok_or_else(|| decode_error("permission"))
}

pub(in crate::store) fn object(row: &Row) -> sqlx::Result<DataObject> {
    object_prefixed(row, "")
}

pub(in crate::store) fn object_prefixed(row: &Row, prefix: &str) -> sqlx::Result<DataObject> {
    let column = |name: &str| format!("{prefix}{name}");
    let channel = row.opt_text(&column("channel_name"))?;
    Ok(DataObject {
        id: row.int(&column("id"))?,
        class_id: row.int(&column("class_id"))?,
        owner_id: row.opt_int(&column("owner_id"))?,
        owner_permissions: object_permission(row, &column("owner_permissions"))?,
        group_id: row.opt_int(&column("group_id"))?,
        group_permissions: object_permission(row, &column("group_permissions"))?,
        other_permissions: object_permission(row, &column("other_permissions"))?,
        channel_id: channel.as_ref().and(row.opt_int(&column("channel_id"))?),
        channel_room: channel.as_ref().and(row.opt_text(&column("channel_room"))?),
        channel,
        revision: row.int(&column("revision"))?,
        data: row.document(&column("data"))?,
        created_at: row.int(&column("created_at"))?,
        updated_at: row.int(&column("updated_at"))?,
    })
}

fn class_permission(row: &Row, column: &str) -> sqlx::Result<ClassPermission> {
    ClassPermission::from_code(row.int(column)?).ok_or_else(|| decode_error("permission"))
}

pub(in crate::store) fn class(row: &Row) -> sqlx::Result<Class> {
    Ok(Class {
        id: row.int("id")?,
        instance_id: row.int("instance_id")?,
        name: row.text("name")?,
        description: row.text("description")?,
        schema: Schema::from_stored(&row.raw("schema")?).map_err(|_| decode_error("schema"))?,
        revision: row.int("revision")?,
        group_id: row.opt_int("group_id")?,
        group_permissions: class_permission(row, "group_permissions")?,
        other_permissions: class_permission(row, "other_permissions")?,
        metadata: row.json("metadata")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
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
