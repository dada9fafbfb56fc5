//! The channel permission matrix (docs/api.md §2.4, §3.4, §6, §7, §8, §9.3, §9.4, §9.6–§9.10).
//!
//! One server, one instance with a group, a member and a non-member, and one channel per
//! (`other_permissions`, `group_permissions`, `custom_publish`) combination. Every caller class is
//! run against every channel and every channel action; the expected answer of each cell comes from
//! [`expected`], which transcribes the SPEC and never looks at the server. All wrong cells are
//! reported together in one failure message.
//!
//! The smaller tests below cover what the matrix cannot: instance isolation of users, groups and
//! user keys, message authors, and membership or group changes taking effect at once.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

use crate::helpers::{Resp, TestApp};

const GENERIC_403: &str = "You do not have permission to perform this action.";
const CUSTOM_PUBLISH_403: &str = "Custom publish not allowed on this channel.";
const NO_API_KEY: &str = "No such API Key.";
const NO_USER_KEY: &str = "No such User Key.";

/// The instance of the matrix, and the one whose keys are "foreign" to it.
const A: &str = "alpha";
const B: &str = "bravo";
/// Every channel is `separate_rooms`; all traffic goes to this room.
const ROOM: &str = "r";
/// Bound for one cell: an allowed poll answers at once (a message is waiting), a refused one too.
const CELL_TIMEOUT: Duration = Duration::from_secs(10);
/// Cells in flight at once.
const CONCURRENCY: usize = 8;

// ---------------------------------------------------------------------------------------------
// The dimensions of the matrix.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    None,
    Subscribe,
    Publish,
}

impl Level {
    const ALL: [Level; 3] = [Level::None, Level::Subscribe, Level::Publish];

    fn name(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Subscribe => "subscribe",
            Level::Publish => "publish",
        }
    }

    fn code(self) -> u8 {
        self as u8
    }
}

/// The callers of §3.4, plus two combinations the table implies: a trusted key keeps its rights
/// with a user key, and an `allow_anonymous_read` key with a user key is an ordinary User.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallerClass {
    /// Account key of the instance owner.
    Owner,
    /// API key with `ignore_acl`, no user key.
    Trusted,
    /// API key with `ignore_acl` plus the non-member's user key (still a trusted key, §3.4).
    TrustedWithUser,
    /// API key without flags plus the user key of a member of the channels' group.
    Member,
    /// API key without flags plus the user key of a user outside the group.
    NonMember,
    /// API key with `allow_anonymous_read`, no user key.
    AnonReader,
    /// API key with `allow_anonymous_read` plus the non-member's user key: a User (§3.4).
    AnonKeyWithUser,
    /// API key without flags, no user key.
    Bare,
    /// An API key (even a trusted one) of instance B, used on instance A.
    Foreign,
}

impl CallerClass {
    const ALL: [CallerClass; 9] = [
        CallerClass::Owner,
        CallerClass::Trusted,
        CallerClass::TrustedWithUser,
        CallerClass::Member,
        CallerClass::NonMember,
        CallerClass::AnonReader,
        CallerClass::AnonKeyWithUser,
        CallerClass::Bare,
        CallerClass::Foreign,
    ];

    fn slug(self) -> &'static str {
        match self {
            CallerClass::Owner => "owner",
            CallerClass::Trusted => "trusted",
            CallerClass::TrustedWithUser => "trusted+user",
            CallerClass::Member => "member",
            CallerClass::NonMember => "non-member",
            CallerClass::AnonReader => "anon-reader",
            CallerClass::AnonKeyWithUser => "anon-key+user",
            CallerClass::Bare => "bare",
            CallerClass::Foreign => "foreign-key",
        }
    }

    /// A channel-name-safe tag (letters and digits only).
    fn tag(self) -> String {
        self.slug()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    List,
    Detail,
    HistoryList,
    HistoryDetail,
    Poll,
    WebSocket,
    /// `transport=sse` (§9.10): an allowed stream answers 200 `text/event-stream`.
    Sse,
    /// Publish on the channel with `custom_publish: true`.
    PublishCustom,
    /// Publish on the channel with `custom_publish: false`.
    PublishNoCustom,
    Update,
    Delete,
}

impl Action {
    const ALL: [Action; 11] = [
        Action::List,
        Action::Detail,
        Action::HistoryList,
        Action::HistoryDetail,
        Action::Poll,
        Action::WebSocket,
        Action::Sse,
        Action::PublishCustom,
        Action::PublishNoCustom,
        Action::Update,
        Action::Delete,
    ];

    fn name(self) -> &'static str {
        match self {
            Action::List => "list",
            Action::Detail => "detail",
            Action::HistoryList => "history-list",
            Action::HistoryDetail => "history-detail",
            Action::Poll => "poll",
            Action::WebSocket => "websocket",
            Action::Sse => "sse",
            Action::PublishCustom => "publish(cp=true)",
            Action::PublishNoCustom => "publish(cp=false)",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }

    /// The status of an allowed request.
    fn success(self) -> u16 {
        match self {
            Action::List
            | Action::Detail
            | Action::HistoryList
            | Action::HistoryDetail
            | Action::Poll
            | Action::Sse
            | Action::Update => 200,
            Action::WebSocket => 101,
            Action::PublishCustom | Action::PublishNoCustom => 201,
            Action::Delete => 204,
        }
    }
}

/// What a cell must answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// The action's success status (with a plausible body).
    Allowed(u16),
    /// `GET /channels/` answers 200; whether the cell's channel is in the list.
    Listed(bool),
    /// 403 with exactly `{"detail": <message>}`.
    Denied(&'static str),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Allowed(status) => write!(f, "{status}"),
            Expect::Listed(true) => write!(f, "200, listed"),
            Expect::Listed(false) => write!(f, "200, not listed"),
            Expect::Denied(detail) => write!(f, "403 {detail:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The expectations, from the SPEC alone.

/// The expected answer of one cell, transcribed from the SPEC:
///
/// - §2.4 step 5 / §3.3: an API key of another instance is an unknown key → `No such API Key.`,
///   before anything else is looked at.
/// - §3.4 / §9.3 (step 6, caller class): a bare key may use no channel endpoint; an anonymous
///   reader reads only; users never update or delete channels — all with the generic 403.
/// - §9.3 (step 8, the channel): a user's level is max(`other_permissions`, `group_permissions` if a
///   member); subscribe actions need ≥ subscribe; an anonymous reader needs `other` ≥ subscribe;
///   owners and trusted keys read everything.
/// - §9.6: publish checks the caller's permission first (generic 403), then `custom_publish`
///   (`Custom publish not allowed on this channel.`); owners and trusted keys pass the first.
/// - §9.4: list answers 200 to every caller allowed to read channels, filtered by the same rule.
fn expected(caller: CallerClass, other: Level, group: Level, action: Action) -> Expect {
    use CallerClass as C;
    if caller == C::Foreign {
        return Expect::Denied(NO_API_KEY);
    }
    let manager = matches!(caller, C::Owner | C::Trusted | C::TrustedWithUser);
    let user_level = match caller {
        C::Member => Some(other.max(group)),
        C::NonMember | C::AnonKeyWithUser => Some(other),
        _ => None,
    };
    let may_subscribe = manager
        || match caller {
            C::AnonReader => other >= Level::Subscribe,
            _ => user_level.is_some_and(|level| level >= Level::Subscribe),
        };
    match action {
        Action::List => match caller {
            C::Bare => Expect::Denied(GENERIC_403),
            _ => Expect::Listed(may_subscribe),
        },
        Action::Detail
        | Action::HistoryList
        | Action::HistoryDetail
        | Action::Poll
        | Action::WebSocket
        | Action::Sse => {
            if may_subscribe {
                Expect::Allowed(action.success())
            } else {
                Expect::Denied(GENERIC_403)
            }
        }
        Action::PublishCustom | Action::PublishNoCustom => {
            let may_publish = manager || user_level == Some(Level::Publish);
            if !may_publish {
                Expect::Denied(GENERIC_403)
            } else if action == Action::PublishNoCustom {
                Expect::Denied(CUSTOM_PUBLISH_403)
            } else {
                Expect::Allowed(201)
            }
        }
        Action::Update | Action::Delete => {
            if manager {
                Expect::Allowed(action.success())
            } else {
                Expect::Denied(GENERIC_403)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small fixtures of this file.

fn channel_name(other: Level, group: Level, custom_publish: bool) -> String {
    let cp = if custom_publish { "on" } else { "off" };
    format!("m-o{}-g{}-{cp}", other.code(), group.code())
}

/// The dedicated copy a caller tries to delete, so deletions disturb no other cell.
fn delete_copy_name(caller: CallerClass, other: Level, group: Level) -> String {
    format!("d-{}-o{}-g{}", caller.tag(), other.code(), group.code())
}

fn denied(detail: &str) -> Value {
    json!({ "detail": detail })
}

/// Creates an API key with `flags` as the owner; returns (id, key).
async fn api_key(app: &TestApp, instance: &str, flags: Value) -> (i64, String) {
    let resp = app
        .post(
            &format!("/v1.1/instances/{instance}/api_keys/"),
            Some(&app.admin_key),
            flags,
        )
        .await;
    let body = resp.assert_status(201);
    (
        body["id"].as_i64().expect("api key id"),
        body["api_key"].as_str().expect("api_key").to_owned(),
    )
}

#[derive(Clone, Debug)]
struct User {
    id: i64,
    key: String,
}

/// Creates a user as the owner (§7.1).
async fn create_user(app: &TestApp, instance: &str, username: &str) -> User {
    let resp = app
        .post(
            &format!("/v1.1/instances/{instance}/users/"),
            Some(&app.admin_key),
            json!({"username": username, "password": "user-password"}),
        )
        .await;
    let body = resp.assert_status(201);
    User {
        id: body["id"].as_i64().expect("user id"),
        key: body["user_key"].as_str().expect("user_key").to_owned(),
    }
}

/// Creates a group as the owner (§8.1); returns its id.
async fn create_group(app: &TestApp, instance: &str, name: &str) -> i64 {
    app.post(
        &format!("/v1.1/instances/{instance}/groups/"),
        Some(&app.admin_key),
        json!({"name": name, "label": name}),
    )
    .await
    .assert_status(201)["id"]
        .as_i64()
        .expect("group id")
}

/// Adds a user to a group as the owner (§8.2).
async fn add_member(app: &TestApp, instance: &str, group: i64, user: i64) {
    app.post(
        &format!("/v1.1/instances/{instance}/groups/{group}/users/"),
        Some(&app.admin_key),
        json!({ "user": user }),
    )
    .await
    .assert_status(201);
}

/// Who is calling: the key for the API-key slot and, optionally, a user key.
#[derive(Clone, Debug)]
struct Creds {
    api_key: String,
    user_key: Option<String>,
}

impl Creds {
    fn key(api_key: &str) -> Creds {
        Creds {
            api_key: api_key.to_owned(),
            user_key: None,
        }
    }

    fn with_user(api_key: &str, user: &User) -> Creds {
        Creds {
            api_key: api_key.to_owned(),
            user_key: Some(user.key.clone()),
        }
    }
}

/// Sends a request with `X-API-KEY` and, when given, `X-USER-KEY`.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    creds: &Creds,
    body: Option<Value>,
) -> Resp {
    let mut builder = app.request(method, path, Some(&creds.api_key));
    if let Some(user_key) = &creds.user_key {
        builder = builder.header("X-USER-KEY", user_key);
    }
    if let Some(body) = body {
        builder = builder.json(&body);
    }
    app.send(builder).await
}

/// The answer of a cell, reduced to what is compared.
#[derive(Debug)]
struct Got {
    status: u16,
    json: Value,
    text: String,
}

impl Got {
    fn from_resp(resp: Resp) -> Got {
        Got {
            status: resp.status,
            json: resp.json,
            text: resp.text,
        }
    }

    fn failure(text: impl Into<String>) -> Got {
        Got {
            status: 0,
            json: Value::Null,
            text: text.into(),
        }
    }

    fn short(&self) -> String {
        let mut text: String = self.text.chars().take(120).collect();
        if self.text.chars().count() > 120 {
            text.push('…');
        }
        format!("{} {text}", self.status)
    }
}

/// Opens an SSE stream. An accepted stream reports its status with the media type as text (the
/// body never ends, so it is not read); a refusal its status and body.
async fn sse_open(app: &TestApp, path: &str, creds: &Creds) -> Got {
    let mut builder = app.request(Method::GET, path, Some(&creds.api_key));
    if let Some(user_key) = &creds.user_key {
        builder = builder.header("X-USER-KEY", user_key);
    }
    let resp = match builder.send().await {
        Ok(resp) => resp,
        Err(err) => return Got::failure(format!("SSE request failed: {err}")),
    };
    let status = resp.status().as_u16();
    if status == 200 {
        let media_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let media_type = media_type.split(';').next().unwrap_or_default().trim();
        return Got {
            status,
            json: Value::Null,
            text: media_type.to_owned(),
        };
    }
    let text = resp.text().await.unwrap_or_default();
    Got {
        status,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

/// Opens a WebSocket; an accepted upgrade reports 101 (and is closed at once), a refusal its HTTP
/// status and body.
async fn ws_open(url: &str) -> Got {
    match tokio_tungstenite::connect_async(url).await {
        Ok((mut ws, response)) => {
            let _ = ws.close(None).await;
            Got {
                status: response.status().as_u16(),
                json: Value::Null,
                text: String::new(),
            }
        }
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let text = String::from_utf8_lossy(&body).into_owned();
            Got {
                status: response.status().as_u16(),
                json: serde_json::from_str(&text).unwrap_or(Value::Null),
                text,
            }
        }
        Err(err) => Got::failure(format!("WebSocket error: {err}")),
    }
}

fn ws_url(app: &TestApp, instance: &str, channel: &str, creds: &Creds) -> String {
    let mut url = format!(
        "ws://{}/v1.1/instances/{instance}/channels/{channel}/poll/?transport=websocket&room={ROOM}&api_key={}",
        app.addr, creds.api_key
    );
    if let Some(user_key) = &creds.user_key {
        url.push_str(&format!("&user_key={user_key}"));
    }
    url
}

/// Every channel name `creds` sees in `GET /channels/` (all pages), or the refusal.
async fn list_names(app: &TestApp, creds: &Creds, query: &str) -> Result<BTreeSet<String>, Got> {
    let mut names = BTreeSet::new();
    let mut path = format!("/v1.1/instances/{A}/channels/?{query}");
    loop {
        let resp = call(app, Method::GET, &path, creds, None).await;
        if resp.status != 200 {
            return Err(Got::from_resp(resp));
        }
        let objects = resp.json["objects"].as_array().cloned().unwrap_or_default();
        for object in &objects {
            names.insert(object["name"].as_str().unwrap_or_default().to_owned());
        }
        match resp.json["next"].as_str() {
            Some(next) if !objects.is_empty() => path = next.to_owned(),
            _ => return Ok(names),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The matrix fixture.

struct Matrix {
    app: TestApp,
    /// (class, credentials) for every caller class.
    callers: Vec<(CallerClass, Creds)>,
    /// The message published into room `r` of each matrix channel before the run.
    messages: Vec<(String, i64)>,
    /// The `author` of a message each caller publishes (§9.5).
    authors: Vec<(CallerClass, Value)>,
}

impl Matrix {
    fn creds(&self, class: CallerClass) -> &Creds {
        &self
            .callers
            .iter()
            .find(|(c, _)| *c == class)
            .expect("caller class")
            .1
    }

    fn author(&self, class: CallerClass) -> Value {
        self.authors
            .iter()
            .find(|(c, _)| *c == class)
            .map(|(_, author)| author.clone())
            .unwrap_or(Value::Null)
    }

    fn message(&self, channel: &str) -> i64 {
        self.messages
            .iter()
            .find(|(name, _)| name == channel)
            .map(|(_, id)| *id)
            .expect("setup message")
    }
}

async fn matrix() -> Matrix {
    let app = TestApp::spawn().await;
    app.create_instance(A).await;
    app.create_instance(B).await;

    let (plain_id, plain) = api_key(&app, A, json!({"description": "no flags"})).await;
    let (trusted_id, trusted) = api_key(&app, A, json!({"ignore_acl": true})).await;
    let (anon_id, anon) = api_key(&app, A, json!({"allow_anonymous_read": true})).await;
    let account_id = app
        .get("/v1.1/account/", Some(&app.admin_key))
        .await
        .assert_status(200)["id"]
        .as_i64()
        .expect("account id");
    let (_, foreign) = api_key(&app, B, json!({"ignore_acl": true})).await;

    let group = create_group(&app, A, "witchers").await;
    let member = create_user(&app, A, "geralt").await;
    let outsider = create_user(&app, A, "dandelion").await;
    add_member(&app, A, group, member.id).await;

    // One channel per (other, group, custom_publish), each with a message in room `r`. The
    // custom_publish=false ones are created open, published to, then closed (§9.6 refuses the
    // owner too).
    let mut combos = Vec::new();
    for other in Level::ALL {
        for group_level in Level::ALL {
            for cp in [true, false] {
                combos.push((other, group_level, cp));
            }
        }
    }
    let app_ref = &app;
    let messages: Vec<(String, i64)> = stream::iter(combos)
        .map(|(other, group_level, cp)| async move {
            let name = channel_name(other, group_level, cp);
            app_ref
                .create_channel(
                    A,
                    json!({
                        "name": name, "type": "separate_rooms", "group": group,
                        "other_permissions": other.name(),
                        "group_permissions": group_level.name(),
                        "custom_publish": true,
                    }),
                )
                .await;
            let message = app_ref
                .publish(A, &name, json!({"room": ROOM, "payload": {"setup": name}}))
                .await;
            if !cp {
                app_ref
                    .patch(
                        &format!("/v1.1/instances/{A}/channels/{name}/"),
                        Some(&app_ref.admin_key),
                        json!({"custom_publish": false}),
                    )
                    .await
                    .assert_status(200);
            }
            (name, message["id"].as_i64().expect("message id"))
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;

    // The dedicated copies for the delete action.
    let mut copies = Vec::new();
    for caller in CallerClass::ALL {
        for other in Level::ALL {
            for group_level in Level::ALL {
                copies.push((caller, other, group_level));
            }
        }
    }
    stream::iter(copies)
        .map(|(caller, other, group_level)| async move {
            app_ref
                .create_channel(
                    A,
                    json!({
                        "name": delete_copy_name(caller, other, group_level),
                        "type": "separate_rooms", "group": group,
                        "other_permissions": other.name(),
                        "group_permissions": group_level.name(),
                        "custom_publish": true,
                    }),
                )
                .await;
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;

    let callers = vec![
        (CallerClass::Owner, Creds::key(&app.admin_key)),
        (CallerClass::Trusted, Creds::key(&trusted)),
        (
            CallerClass::TrustedWithUser,
            Creds::with_user(&trusted, &outsider),
        ),
        (CallerClass::Member, Creds::with_user(&plain, &member)),
        (CallerClass::NonMember, Creds::with_user(&plain, &outsider)),
        (CallerClass::AnonReader, Creds::key(&anon)),
        (
            CallerClass::AnonKeyWithUser,
            Creds::with_user(&anon, &outsider),
        ),
        (CallerClass::Bare, Creds::key(&plain)),
        (CallerClass::Foreign, Creds::key(&foreign)),
    ];
    let authors = vec![
        (CallerClass::Owner, json!({"admin": account_id})),
        (CallerClass::Trusted, json!({"api_key": trusted_id})),
        (
            CallerClass::TrustedWithUser,
            json!({"api_key": trusted_id, "user": outsider.id}),
        ),
        (
            CallerClass::Member,
            json!({"api_key": plain_id, "user": member.id}),
        ),
        (
            CallerClass::NonMember,
            json!({"api_key": plain_id, "user": outsider.id}),
        ),
        (
            CallerClass::AnonKeyWithUser,
            json!({"api_key": anon_id, "user": outsider.id}),
        ),
    ];
    Matrix {
        app,
        callers,
        messages,
        authors,
    }
}

/// Runs one non-list cell and returns the answer.
async fn perform(
    m: &Matrix,
    caller: CallerClass,
    other: Level,
    group: Level,
    action: Action,
) -> Got {
    let app = &m.app;
    let creds = m.creds(caller);
    let channel = channel_name(other, group, true);
    let base = format!("/v1.1/instances/{A}/channels/{channel}");
    let message = m.message(&channel);
    let publish_body = json!({"room": ROOM, "payload": {"by": caller.slug()}});
    let resp = match action {
        Action::List => unreachable!("lists are fetched once per caller"),
        Action::Detail => call(app, Method::GET, &format!("{base}/"), creds, None).await,
        Action::HistoryList => {
            let path = format!("{base}/history/?room={ROOM}");
            call(app, Method::GET, &path, creds, None).await
        }
        Action::HistoryDetail => {
            let path = format!("{base}/history/{message}/");
            call(app, Method::GET, &path, creds, None).await
        }
        Action::Poll => {
            let path = format!("{base}/poll/?room={ROOM}&last_id=0");
            call(app, Method::GET, &path, creds, None).await
        }
        Action::WebSocket => return ws_open(&ws_url(app, A, &channel, creds)).await,
        Action::Sse => {
            let path = format!("{base}/poll/?transport=sse&room={ROOM}&last_id=0");
            return sse_open(app, &path, creds).await;
        }
        Action::PublishCustom => {
            let path = format!("{base}/publish/");
            call(app, Method::POST, &path, creds, Some(publish_body)).await
        }
        Action::PublishNoCustom => {
            let path = format!(
                "/v1.1/instances/{A}/channels/{}/publish/",
                channel_name(other, group, false)
            );
            call(app, Method::POST, &path, creds, Some(publish_body)).await
        }
        Action::Update => {
            let body = json!({"description": format!("patched by {}", caller.slug())});
            call(app, Method::PATCH, &format!("{base}/"), creds, Some(body)).await
        }
        Action::Delete => {
            let path = format!(
                "/v1.1/instances/{A}/channels/{}/",
                delete_copy_name(caller, other, group)
            );
            call(app, Method::DELETE, &path, creds, None).await
        }
    };
    Got::from_resp(resp)
}

/// Whether an allowed answer has the body the action promises; `Err` describes what is wrong.
fn check_success(
    m: &Matrix,
    caller: CallerClass,
    other: Level,
    group: Level,
    action: Action,
    got: &Got,
) -> Result<(), String> {
    let channel = channel_name(other, group, true);
    let message = m.message(&channel);
    let ok = match action {
        Action::List => true,
        Action::Detail => got.json["name"] == json!(channel),
        Action::HistoryList => got.json["objects"]
            .as_array()
            .is_some_and(|objects| objects.iter().any(|o| o["id"] == json!(message))),
        Action::HistoryDetail | Action::Poll => got.json["id"] == json!(message),
        Action::WebSocket => true,
        Action::Sse => got.text == "text/event-stream",
        Action::PublishCustom => {
            got.json["id"].is_i64()
                && got.json["room"] == json!(ROOM)
                && got.json["action"] == "custom"
                && got.json["author"] == m.author(caller)
        }
        Action::PublishNoCustom => true,
        Action::Update => got.json["description"] == json!(format!("patched by {}", caller.slug())),
        Action::Delete => got.text.is_empty(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{} (unexpected body)", got.short()))
    }
}

fn judge(
    m: &Matrix,
    cell: (CallerClass, Level, Level, Action),
    expect: Expect,
    got: &Got,
) -> Result<(), String> {
    let (caller, other, group, action) = cell;
    match expect {
        Expect::Denied(detail) => {
            if got.status == 403 && got.json == denied(detail) {
                Ok(())
            } else {
                Err(got.short())
            }
        }
        Expect::Allowed(status) => {
            if got.status == status {
                check_success(m, caller, other, group, action, got)
            } else {
                Err(got.short())
            }
        }
        Expect::Listed(_) => unreachable!("list cells are judged by the caller"),
    }
}

#[tokio::test]
async fn the_channel_permission_matrix_matches_the_spec() {
    let m = matrix().await;

    let mut cells = Vec::new();
    for caller in CallerClass::ALL {
        for other in Level::ALL {
            for group in Level::ALL {
                for action in Action::ALL {
                    cells.push((caller, other, group, action));
                }
            }
        }
    }
    let total = cells.len();
    let mut mismatches: Vec<String> = Vec::new();
    let mut record = |cell: (CallerClass, Level, Level, Action), expect: Expect, got: String| {
        let (caller, other, group, action) = cell;
        mismatches.push(format!(
            "  {:<14} other={:<9} group={:<9} {:<17} expected {expect}; got {got}",
            caller.slug(),
            other.name(),
            group.name(),
            action.name(),
        ));
    };

    // List cells: one listing per caller, looked up for every (other, group). The channel must
    // be listed or hidden together with its custom_publish=false twin.
    for caller in CallerClass::ALL {
        let listing = list_names(&m.app, m.creds(caller), "name__startswith=m-").await;
        for other in Level::ALL {
            for group in Level::ALL {
                let cell = (caller, other, group, Action::List);
                let expect = expected(caller, other, group, Action::List);
                let outcome = match (&listing, expect) {
                    (Ok(names), Expect::Listed(listed)) => {
                        let on = names.contains(&channel_name(other, group, true));
                        let off = names.contains(&channel_name(other, group, false));
                        if on != off {
                            Err(format!("200, listed cp=true {on}, cp=false {off}"))
                        } else if on != listed {
                            Err(format!("200, {}", if on { "listed" } else { "not listed" }))
                        } else {
                            Ok(())
                        }
                    }
                    (Ok(_), _) => Err("200 (a list)".to_owned()),
                    (Err(got), Expect::Denied(detail))
                        if got.status == 403 && got.json == denied(detail) =>
                    {
                        Ok(())
                    }
                    (Err(got), _) => Err(got.short()),
                };
                if let Err(got) = outcome {
                    record(cell, expect, got);
                }
            }
        }
    }

    // Every other cell, a few at a time. Deletions hit dedicated copies, publishes only add
    // messages after the setup one and updates only touch the description, so no cell disturbs
    // another and the order does not matter.
    let m_ref = &m;
    let results: Vec<_> = stream::iter(cells.into_iter().filter(|c| c.3 != Action::List))
        .map(|cell| async move {
            let (caller, other, group, action) = cell;
            let got = match tokio::time::timeout(
                CELL_TIMEOUT,
                perform(m_ref, caller, other, group, action),
            )
            .await
            {
                Ok(got) => got,
                Err(_) => Got::failure(format!("no answer within {CELL_TIMEOUT:?}")),
            };
            (cell, got)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (cell, got) in results {
        let (caller, other, group, action) = cell;
        let expect = expected(caller, other, group, action);
        if let Err(got) = judge(&m, cell, expect, &got) {
            record(cell, expect, got);
        }
    }

    mismatches.sort();
    assert!(
        mismatches.is_empty(),
        "{} of {total} permission cells differ from the SPEC \
         ({} callers x 3 other x 3 group x {} actions):\n{}",
        mismatches.len(),
        CallerClass::ALL.len(),
        Action::ALL.len(),
        mismatches.join("\n")
    );
}

/// The expectation table itself, spot-checked against sentences of the SPEC, so that a slip in
/// [`expected`] cannot silently make the matrix agree with a wrong server.
#[test]
fn the_expectation_table_follows_the_spec_sentences() {
    use Action as Ac;
    use CallerClass as C;
    use Level as L;
    // §9.3: "publish implies subscribe"; a member's level is the higher of the two.
    assert_eq!(
        expected(C::Member, L::None, L::Subscribe, Ac::Poll),
        Expect::Allowed(200)
    );
    assert_eq!(
        expected(C::NonMember, L::None, L::Publish, Ac::Detail),
        Expect::Denied(GENERIC_403)
    );
    assert_eq!(
        expected(C::NonMember, L::Publish, L::None, Ac::PublishCustom),
        Expect::Allowed(201)
    );
    // §9.6: permission first, then custom_publish.
    assert_eq!(
        expected(C::Member, L::Subscribe, L::Subscribe, Ac::PublishNoCustom),
        Expect::Denied(GENERIC_403)
    );
    assert_eq!(
        expected(C::Member, L::None, L::Publish, Ac::PublishNoCustom),
        Expect::Denied(CUSTOM_PUBLISH_403)
    );
    assert_eq!(
        expected(C::Owner, L::None, L::None, Ac::PublishNoCustom),
        Expect::Denied(CUSTOM_PUBLISH_403)
    );
    // §9.3: anonymous readers never publish, bare keys never read, users never manage.
    assert_eq!(
        expected(C::AnonReader, L::Publish, L::Publish, Ac::PublishCustom),
        Expect::Denied(GENERIC_403)
    );
    assert_eq!(
        expected(C::AnonReader, L::Subscribe, L::None, Ac::WebSocket),
        Expect::Allowed(101)
    );
    assert_eq!(
        expected(C::AnonReader, L::None, L::Publish, Ac::List),
        Expect::Listed(false)
    );
    assert_eq!(
        expected(C::Bare, L::Publish, L::Publish, Ac::List),
        Expect::Denied(GENERIC_403)
    );
    assert_eq!(
        expected(C::Member, L::Publish, L::Publish, Ac::Delete),
        Expect::Denied(GENERIC_403)
    );
    assert_eq!(
        expected(C::TrustedWithUser, L::None, L::None, Ac::Update),
        Expect::Allowed(200)
    );
    // §3.3: an API key of another instance.
    assert_eq!(
        expected(C::Foreign, L::Publish, L::Publish, Ac::List),
        Expect::Denied(NO_API_KEY)
    );
}

// ---------------------------------------------------------------------------------------------
// Beyond the matrix.

/// Records a difference between `resp` and the expected status (and body, when given).
fn expect(problems: &mut Vec<String>, what: &str, resp: Resp, status: u16, body: Option<Value>) {
    let body_ok = body.as_ref().is_none_or(|b| &resp.json == b);
    if resp.status != status || !body_ok {
        problems.push(format!(
            "  {what}: expected {status} {}; got {} {}",
            body.map(|b| b.to_string()).unwrap_or_default(),
            resp.status,
            resp.text
        ));
    }
}

/// §5 (intro), §3.3, §7, §8: users, groups, memberships and user keys of one instance do not exist
/// in another.
#[tokio::test]
async fn users_groups_and_user_keys_are_isolated_between_instances() {
    let app = TestApp::spawn().await;
    app.create_instance(A).await;
    app.create_instance(B).await;
    let (_, key_a) = api_key(&app, A, json!({})).await;
    let (_, key_b) = api_key(&app, B, json!({})).await;
    let (_, trusted_b) = api_key(&app, B, json!({"ignore_acl": true})).await;
    app.patch(
        &format!("/v1.1/instances/{B}/channels/default/"),
        Some(&app.admin_key),
        json!({"other_permissions": "publish"}),
    )
    .await
    .assert_status(200);

    let group_a = create_group(&app, A, "witchers").await;
    let user_a = create_user(&app, A, "geralt").await;
    add_member(&app, A, group_a, user_a.id).await;
    let user_b = create_user(&app, B, "roche").await;

    let mut problems: Vec<String> = Vec::new();

    // A user key of A with an API key of B is unknown in B (§3.3), on every kind of endpoint.
    let a_user_on_b = Creds::with_user(&key_b, &user_a);
    for path in [
        format!("/v1.1/instances/{B}/channels/"),
        format!("/v1.1/instances/{B}/channels/default/"),
        format!("/v1.1/instances/{B}/channels/default/history/?room={ROOM}"),
        format!("/v1.1/instances/{B}/user/"),
        format!("/v1.1/instances/{B}/users/"),
        format!("/v1.1/instances/{B}/groups/"),
    ] {
        let resp = call(&app, Method::GET, &path, &a_user_on_b, None).await;
        expect(
            &mut problems,
            &format!("GET {path} with B's key + A's user key"),
            resp,
            403,
            Some(denied(NO_USER_KEY)),
        );
    }
    let path = format!("/v1.1/instances/{B}/channels/default/publish/");
    let resp = call(
        &app,
        Method::POST,
        &path,
        &a_user_on_b,
        Some(json!({"room": ROOM})),
    )
    .await;
    expect(
        &mut problems,
        "publish on B with B's key + A's user key",
        resp,
        403,
        Some(denied(NO_USER_KEY)),
    );
    let url = ws_url(&app, B, "default", &a_user_on_b);
    let got = ws_open(&url).await;
    if got.status != 403 || got.json != denied(NO_USER_KEY) {
        problems.push(format!(
            "  WebSocket on B with B's key + A's user key: expected 403 No such User Key.; got {}",
            got.short()
        ));
    }
    // ... while the same user key works with A's key (the fixture is sound).
    let resp = call(
        &app,
        Method::GET,
        &format!("/v1.1/instances/{A}/user/"),
        &Creds::with_user(&key_a, &user_a),
        None,
    )
    .await;
    if resp.status != 200 || resp.json["id"] != json!(user_a.id) {
        problems.push(format!(
            "  GET /instances/A/user/ with A's key + A's user key: expected 200 for user {}; got {} {}",
            user_a.id, resp.status, resp.text
        ));
    }
    // A key of B cannot reach A's users or groups at all (§3.3).
    for path in [
        format!("/v1.1/instances/{A}/users/"),
        format!("/v1.1/instances/{A}/users/{}/", user_a.id),
        format!("/v1.1/instances/{A}/groups/"),
        format!("/v1.1/instances/{A}/groups/{group_a}/"),
        format!("/v1.1/instances/{A}/groups/{group_a}/users/"),
    ] {
        let resp = app.get(&path, Some(&trusted_b)).await;
        expect(
            &mut problems,
            &format!("GET {path} with B's trusted key"),
            resp,
            403,
            Some(denied(NO_API_KEY)),
        );
    }

    // A's user and group do not exist under B, for B's owner and B's trusted key alike. Ids are
    // unique per instance only (§2.6), so a check is skipped where B happens to have the same id.
    let not_found = || Some(denied("Not found."));
    for (who, key) in [("owner", app.admin_key.as_str()), ("B trusted", &trusted_b)] {
        if user_a.id != user_b.id {
            let user_path = format!("/v1.1/instances/{B}/users/{}/", user_a.id);
            expect(
                &mut problems,
                &format!("GET {user_path} ({who})"),
                app.get(&user_path, Some(key)).await,
                404,
                not_found(),
            );
            expect(
                &mut problems,
                &format!("PATCH {user_path} ({who})"),
                app.patch(&user_path, Some(key), json!({"username": "stolen"}))
                    .await,
                404,
                not_found(),
            );
            expect(
                &mut problems,
                &format!("DELETE {user_path} ({who})"),
                app.delete(&user_path, Some(key)).await,
                404,
                not_found(),
            );
            let path = format!("/v1.1/instances/{B}/users/{}/groups/", user_a.id);
            expect(
                &mut problems,
                &format!("GET {path} ({who})"),
                app.get(&path, Some(key)).await,
                404,
                Some(denied("User was not found.")),
            );
        }
        let group_path = format!("/v1.1/instances/{B}/groups/{group_a}/");
        expect(
            &mut problems,
            &format!("GET {group_path} ({who})"),
            app.get(&group_path, Some(key)).await,
            404,
            not_found(),
        );
        expect(
            &mut problems,
            &format!("PATCH {group_path} ({who})"),
            app.patch(&group_path, Some(key), json!({"label": "stolen"}))
                .await,
            404,
            not_found(),
        );
        expect(
            &mut problems,
            &format!("DELETE {group_path} ({who})"),
            app.delete(&group_path, Some(key)).await,
            404,
            not_found(),
        );
        let path = format!("/v1.1/instances/{B}/groups/{group_a}/users/");
        expect(
            &mut problems,
            &format!("GET {path} ({who})"),
            app.get(&path, Some(key)).await,
            404,
            Some(denied("Group was not found.")),
        );
        expect(
            &mut problems,
            &format!("POST {path} ({who})"),
            app.post(&path, Some(key), json!({"user": user_b.id})).await,
            404,
            Some(denied("Group was not found.")),
        );
    }
    // B's lists show only B's things.
    let users_b = app
        .get(&format!("/v1.1/instances/{B}/users/"), Some(&app.admin_key))
        .await;
    let ids: Vec<Value> = users_b.json["objects"]
        .as_array()
        .map(|objects| objects.iter().map(|o| o["id"].clone()).collect())
        .unwrap_or_default();
    if users_b.status != 200 || ids != vec![json!(user_b.id)] {
        problems.push(format!(
            "  GET /instances/B/users/: expected only user {}; got {} {}",
            user_b.id, users_b.status, users_b.text
        ));
    }
    let groups_b = app
        .get(
            &format!("/v1.1/instances/{B}/groups/"),
            Some(&app.admin_key),
        )
        .await;
    if groups_b.status != 200 || groups_b.json["objects"] != json!([]) {
        problems.push(format!(
            "  GET /instances/B/groups/: expected no groups; got {} {}",
            groups_b.status, groups_b.text
        ));
    }
    // A user of B cannot join a group of A (unless A happens to have a user with that id).
    if user_b.id != user_a.id {
        let path = format!("/v1.1/instances/{A}/groups/{group_a}/users/");
        expect(
            &mut problems,
            &format!("POST {path} with B's user id"),
            app.post(&path, Some(&app.admin_key), json!({"user": user_b.id}))
                .await,
            400,
            Some(
                json!({"user": [format!("Invalid pk \"{}\" - object does not exist.", user_b.id)]}),
            ),
        );
    }
    // Nothing of A was changed by any of the above.
    let resp = app
        .get(
            &format!("/v1.1/instances/{A}/users/{}/", user_a.id),
            Some(&app.admin_key),
        )
        .await;
    let groups: Vec<Value> = resp.json["groups"]
        .as_array()
        .map(|g| g.iter().map(|g| g["id"].clone()).collect())
        .unwrap_or_default();
    if resp.status != 200 || resp.json["username"] != "geralt" || groups != vec![json!(group_a)] {
        problems.push(format!(
            "  A's user after the attempts: expected geralt in group {group_a}; got {} {}",
            resp.status, resp.text
        ));
    }
    let resp = app
        .get(
            &format!("/v1.1/instances/{A}/groups/{group_a}/"),
            Some(&app.admin_key),
        )
        .await;
    if resp.status != 200 || resp.json["label"] != "witchers" {
        problems.push(format!(
            "  A's group after the attempts: expected label witchers; got {} {}",
            resp.status, resp.text
        ));
    }

    assert!(
        problems.is_empty(),
        "instance isolation differs from the SPEC:\n{}",
        problems.join("\n")
    );
}

/// §9.5: the author of a published message names the API key and, with a user key, the user;
/// an account key is named as `admin`.
#[tokio::test]
async fn published_messages_name_their_author() {
    let app = TestApp::spawn().await;
    app.create_instance(A).await;
    let (plain_id, plain) = api_key(&app, A, json!({})).await;
    let (trusted_id, trusted) = api_key(&app, A, json!({"ignore_acl": true})).await;
    let group = create_group(&app, A, "witchers").await;
    let user = create_user(&app, A, "geralt").await;
    add_member(&app, A, group, user.id).await;
    app.create_channel(
        A,
        json!({"name": "board", "type": "separate_rooms", "group": group,
               "group_permissions": "publish", "custom_publish": true}),
    )
    .await;
    let account_id = app
        .get("/v1.1/account/", Some(&app.admin_key))
        .await
        .assert_status(200)["id"]
        .as_i64()
        .expect("account id");

    let path = format!("/v1.1/instances/{A}/channels/board/publish/");
    let body = json!({"room": ROOM, "payload": {"hello": "world"}});
    for (who, creds, author) in [
        (
            "user",
            Creds::with_user(&plain, &user),
            json!({"api_key": plain_id, "user": user.id}),
        ),
        (
            "owner",
            Creds::key(&app.admin_key),
            json!({"admin": account_id}),
        ),
        (
            "trusted key",
            Creds::key(&trusted),
            json!({"api_key": trusted_id}),
        ),
        (
            "trusted key + user key",
            Creds::with_user(&trusted, &user),
            json!({"api_key": trusted_id, "user": user.id}),
        ),
    ] {
        let resp = call(&app, Method::POST, &path, &creds, Some(body.clone())).await;
        assert_eq!(
            (resp.status, &resp.json["author"]),
            (201, &author),
            "publish by the {who}: {}",
            resp.text
        );
        // History shows the same author.
        let id = resp.json["id"].as_i64().expect("message id");
        let stored = app
            .get(
                &format!("/v1.1/instances/{A}/channels/board/history/{id}/"),
                Some(&app.admin_key),
            )
            .await;
        assert_eq!(
            (stored.status, &stored.json["author"]),
            (200, &author),
            "history of the {who}'s message: {}",
            stored.text
        );
    }
}

/// §8.2, §9.3, §9.4: a member's access follows the membership on the very next request; user
/// channel lists are filtered; §8.1, §12: deleting a group unsets `group` on its channels.
#[tokio::test]
async fn membership_and_group_changes_take_effect_at_once() {
    let app = TestApp::spawn().await;
    app.create_instance(A).await;
    let (_, plain) = api_key(&app, A, json!({})).await;
    let group = create_group(&app, A, "witchers").await;
    let other_group = create_group(&app, A, "mages").await;
    let user = create_user(&app, A, "geralt").await;
    add_member(&app, A, group, user.id).await;
    let me = Creds::with_user(&plain, &user);
    let channel = |name: &str, group: i64, group_permissions: &str, other: &str| {
        json!({"name": name, "type": "separate_rooms", "group": group,
               "group_permissions": group_permissions, "other_permissions": other,
               "custom_publish": true})
    };
    app.create_channel(A, channel("sub", group, "subscribe", "none"))
        .await;
    app.create_channel(A, channel("pub", group, "publish", "none"))
        .await;
    app.create_channel(A, channel("closed", group, "none", "none"))
        .await;
    app.create_channel(A, channel("foreign", other_group, "publish", "none"))
        .await;
    app.create_channel(A, channel("open", other_group, "none", "subscribe"))
        .await;
    for name in ["sub", "pub"] {
        app.publish(A, name, json!({"room": ROOM})).await;
    }
    let detail = |name: &str| format!("/v1.1/instances/{A}/channels/{name}/");
    let publish = format!("/v1.1/instances/{A}/channels/pub/publish/");
    let membership = format!("/v1.1/instances/{A}/groups/{group}/users/{}/", user.id);
    let names = |set: &[&str]| set.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();

    // As a member: the group's channels plus the open one, and nothing else (§9.4); built-ins
    // have `none` everywhere (§9.2).
    let listed = list_names(&app, &me, "").await.expect("list as a member");
    assert_eq!(
        listed,
        names(&["sub", "pub", "open"]),
        "member's channel list"
    );
    call(&app, Method::GET, &detail("sub"), &me, None)
        .await
        .assert_status(200);
    call(
        &app,
        Method::POST,
        &publish,
        &me,
        Some(json!({"room": ROOM})),
    )
    .await
    .assert_status(201);

    // Leaving the group lowers the level on the next request.
    app.delete(&membership, Some(&app.admin_key))
        .await
        .assert(204, Value::Null);
    call(&app, Method::GET, &detail("sub"), &me, None)
        .await
        .assert(403, denied(GENERIC_403));
    call(
        &app,
        Method::POST,
        &publish,
        &me,
        Some(json!({"room": ROOM})),
    )
    .await
    .assert(403, denied(GENERIC_403));
    let poll = format!("/v1.1/instances/{A}/channels/pub/poll/?room={ROOM}&last_id=0");
    call(&app, Method::GET, &poll, &me, None)
        .await
        .assert(403, denied(GENERIC_403));
    let got = ws_open(&ws_url(&app, A, "sub", &me)).await;
    assert_eq!(
        (got.status, &got.json),
        (403, &denied(GENERIC_403)),
        "WebSocket after leaving the group: {}",
        got.text
    );
    let listed = list_names(&app, &me, "")
        .await
        .expect("list as an outsider");
    assert_eq!(listed, names(&["open"]), "outsider's channel list");

    // Joining again restores it, just as promptly.
    add_member(&app, A, group, user.id).await;
    call(&app, Method::GET, &detail("sub"), &me, None)
        .await
        .assert_status(200);

    // Deleting the group unsets `group` on its channels (the channels survive) and with it the
    // members' group access.
    app.delete(
        &format!("/v1.1/instances/{A}/groups/{group}/"),
        Some(&app.admin_key),
    )
    .await
    .assert(204, Value::Null);
    for name in ["sub", "pub", "closed"] {
        let resp = app.get(&detail(name), Some(&app.admin_key)).await;
        let body = resp.assert_status(200);
        assert_eq!(body["group"], Value::Null, "{name} after group deletion");
        assert!(
            body["links"].get("group").is_none(),
            "{name}: links.group must be omitted without a group: {body}"
        );
    }
    let resp = app.get(&detail("foreign"), Some(&app.admin_key)).await;
    assert_eq!(
        resp.assert_status(200)["group"],
        json!(other_group),
        "another group's channel keeps its group"
    );
    call(&app, Method::GET, &detail("sub"), &me, None)
        .await
        .assert(403, denied(GENERIC_403));
    let resp = app
        .get(
            &format!("/v1.1/instances/{A}/users/{}/", user.id),
            Some(&app.admin_key),
        )
        .await;
    assert_eq!(
        resp.assert_status(200)["groups"],
        json!([]),
        "the membership goes with the group"
    );
    let listed = list_names(&app, &me, "")
        .await
        .expect("list after deletion");
    assert_eq!(
        listed,
        names(&["open"]),
        "channel list after group deletion"
    );
}
