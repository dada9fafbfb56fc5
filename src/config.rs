//! Settings: defaults < `HERALD_*` environment < command-line flags (docs/api.md §11.3).
//!
//! Every setting is parsed and validated once, at start-up, into a typed value; a bad value stops
//! the process with a message naming the flag. The doc comment of each field is its `--help` text
//! and matches the README table.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::keys::{Key, KeyKind};

/// Database settings, shared by `serve`, `migrate` and the `account` commands.
#[derive(Args, Clone, Debug)]
pub struct DatabaseArgs {
    /// Database URL: sqlite://<path> (embedded mode) or postgres://<user>@<host>:<port>/<db>
    /// (cluster mode).
    #[arg(long, env = "HERALD_DATABASE_URL", hide_env_values = true, default_value = "sqlite://herald.db", value_parser = DatabaseUrlParser)]
    pub database_url: DatabaseUrl,

    /// Maximum database connections.
    #[arg(long, env = "HERALD_DB_POOL", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub db_pool: u32,

    /// SQLite durability: `full` (fsync every commit) or `normal`. Ignored with PostgreSQL.
    #[arg(long, env = "HERALD_SQLITE_SYNCHRONOUS", value_enum, default_value_t = SqliteSynchronous::Full)]
    pub sqlite_synchronous: SqliteSynchronous,
}

#[derive(Clone)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL, as given.
    Postgres(String),
}

/// Shown in logs and messages: a PostgreSQL password never is.
impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => f.write_str(&mask_password(url)),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// A Redis URL as given; shown with its password masked.
#[derive(Clone)]
pub struct RedisUrl(pub String);

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&mask_password(&self.0))
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// The bearer token `/metrics` asks for; never shown.
#[derive(Clone)]
pub struct MetricsToken(pub String);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(***)")
    }
}

fn parse_metrics_token(raw: &str) -> Result<MetricsToken, String> {
    if raw.trim().is_empty() {
        return Err("the metrics token must not be empty (leave it unset for none)".into());
    }
    Ok(MetricsToken(raw.to_owned()))
}

/// Replaces the password of a URL's user info and any `password=` (PostgreSQL) or `pass=`
/// (Redis over a Unix socket) query parameter with `***`.
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _))
                        if key.eq_ignore_ascii_case("password")
                            || key.eq_ignore_ascii_case("pass") =>
                    {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// `parse_database_url` for clap, whose own message would repeat the value, password and all.
#[derive(Clone, Copy)]
struct DatabaseUrlParser;

impl clap::builder::TypedValueParser for DatabaseUrlParser {
    type Value = DatabaseUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<DatabaseUrl, clap::Error> {
        let raw = value
            .to_str()
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidUtf8).with_cmd(cmd))?;
        parse_database_url(raw).map_err(|reason| {
            let arg = arg.map_or_else(|| "--database-url".to_owned(), ToString::to_string);
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!(
                    "invalid value '{}' for '{arg}': {reason}\n",
                    mask_password(raw)
                ),
            )
            .with_cmd(cmd)
        })
    }
}

fn parse_database_url(raw: &str) -> Result<DatabaseUrl, String> {
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        use std::str::FromStr;
        return match sqlx::postgres::PgConnectOptions::from_str(raw) {
            Ok(_) => Ok(DatabaseUrl::Postgres(raw.to_owned())),
            Err(err) => Err(format!(
                "not a valid PostgreSQL URL ({err}); expected postgres://<user>@<host>:<port>/<db>"
            )),
        };
    }
    crate::store::sqlite_path(raw)
        .map(DatabaseUrl::Sqlite)
        .ok_or_else(|| {
            "expected sqlite://<path> (e.g. sqlite://herald.db) or \
             postgres://<user>@<host>:<port>/<db>"
                .into()
        })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SqliteSynchronous {
    Full,
    Normal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Which browser origins may call the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<String>),
}

/// A CIDR (`10.0.0.0/8`) or a single address (`192.168.1.7`, meaning /32 or /128).
fn parse_cidr(raw: &str) -> Result<ipnet::IpNet, String> {
    let raw = raw.trim();
    raw.parse::<ipnet::IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{raw}` is not an address or a CIDR such as 10.0.0.0/8"))
}

fn parse_cors_origins(raw: &str) -> Result<CorsOrigins, String> {
    let raw = raw.trim();
    if raw == "*" {
        return Ok(CorsOrigins::Any);
    }
    let origins: Vec<String> = raw
        .split(',')
        .map(|o| o.trim().trim_end_matches('/').to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return Err("expected `*` or a comma-separated list of origins".into());
    }
    Ok(CorsOrigins::List(origins))
}

/// Parses `300`, `500ms`, `30s`, `5m`, `24h`, `7d`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let value: u64 = number.parse().map_err(|_| {
        format!("`{raw}` is not a duration (use e.g. 300, 500ms, 30s, 5m, 24h, 7d)")
    })?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{raw}` (use ms, s, m, h or d)"
            ));
        }
    };
    value
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{raw}` is too long"))
}

fn parse_bytes_limit(raw: &str) -> Result<usize, String> {
    let value: usize = raw
        .trim()
        .parse()
        .map_err(|_| format!("`{raw}` is not a byte count"))?;
    if !(1024..=64 * 1024 * 1024).contains(&value) {
        return Err("must be between 1024 and 67108864 bytes".into());
    }
    Ok(value)
}

fn parse_poll_timeout(raw: &str) -> Result<Duration, String> {
    let value = parse_duration(raw)?;
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&value) {
        return Err("must be between 1s and 3600s".into());
    }
    Ok(value)
}

fn parse_interval(raw: &str) -> Result<Duration, String> {
    let value = parse_duration(raw)?;
    if value < Duration::from_millis(10) {
        return Err("must be at least 10ms".into());
    }
    Ok(value)
}

/// Settings of `herald serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// HTTP listen address.
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Serve `/metrics` on this address instead of the main listener (which then answers 404
    /// there), e.g. `127.0.0.1:9090` to keep metrics off the public port.
    #[arg(long, env = "HERALD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Require `Authorization: Bearer <token>` on `/metrics` (401 without it).
    #[arg(long, env = "HERALD_METRICS_TOKEN", hide_env_values = true, value_parser = parse_metrics_token)]
    pub metrics_token: Option<MetricsToken>,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Cluster mode: Redis that nodes announce messages and changes on (redis://host:port).
    /// Needs PostgreSQL storage.
    #[arg(long, env = "HERALD_REDIS_URL", hide_env_values = true, value_parser = |raw: &str| Ok::<_, String>(RedisUrl(raw.to_owned())))]
    pub redis_url: Option<RedisUrl>,

    /// Cluster mode: prefix of the Redis pub/sub channels (default `herald:<cluster id>`, the
    /// id stored in the database). Every node of a cluster must use the same prefix.
    #[arg(long, env = "HERALD_REDIS_PREFIX", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub redis_prefix: Option<String>,

    /// Cluster mode: announcements waiting to be published on Redis; beyond this the oldest
    /// are dropped (other nodes then read them from the database).
    #[arg(long, env = "HERALD_REDIS_QUEUE", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub redis_queue: u32,

    /// How often each node reads the access log, so that changes to credentials and
    /// permissions made elsewhere (the CLI, a node whose Redis message was lost) take effect.
    #[arg(long, env = "HERALD_ACCESS_CHECK_INTERVAL", default_value = "5s", value_parser = parse_interval)]
    pub access_check_interval: Duration,

    /// Messages kept per channel room; 0 = unlimited.
    #[arg(long, env = "HERALD_HISTORY_MAX_MESSAGES", default_value_t = 10_000)]
    pub history_max_messages: u64,

    /// Messages kept per channel over all its rooms, so that one publisher cannot fill the disk
    /// through ever new rooms; 0 = unlimited.
    #[arg(
        long,
        env = "HERALD_HISTORY_MAX_CHANNEL_MESSAGES",
        default_value_t = 1_000_000
    )]
    pub history_max_channel_messages: u64,

    /// Age after which messages are removed (e.g. 7d); 0 = unlimited.
    #[arg(long, env = "HERALD_HISTORY_MAX_AGE", default_value = "7d", value_parser = parse_duration)]
    pub history_max_age: Duration,

    /// How often the retention pruner runs.
    #[arg(long, env = "HERALD_PRUNE_INTERVAL", default_value = "30s", value_parser = parse_interval)]
    pub prune_interval: Duration,

    /// How long a long-poll waits for a message before answering 204 (1s–3600s).
    #[arg(long, env = "HERALD_POLL_TIMEOUT", default_value = "300s", value_parser = parse_poll_timeout)]
    pub poll_timeout: Duration,

    /// Messages queued per WebSocket/SSE subscriber before it is disconnected as too slow.
    #[arg(long, env = "HERALD_STREAM_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub stream_queue: u32,

    /// WebSocket ping period; a connection silent for two periods is closed.
    #[arg(long, env = "HERALD_WS_PING_INTERVAL", default_value = "30s", value_parser = parse_interval)]
    pub ws_ping_interval: Duration,

    /// SSE keepalive comment period.
    #[arg(long, env = "HERALD_SSE_KEEPALIVE", default_value = "15s", value_parser = parse_interval)]
    pub sse_keepalive: Duration,

    /// SSE `retry:` value sent to browsers.
    #[arg(long, env = "HERALD_SSE_RETRY", default_value = "2000ms", value_parser = parse_duration)]
    pub sse_retry: Duration,

    /// Largest publish request body, in bytes.
    #[arg(long, env = "HERALD_PUBLISH_MAX_BYTES", default_value = "65536", value_parser = parse_bytes_limit)]
    pub publish_max_bytes: usize,

    /// Largest body of any other request, in bytes.
    #[arg(long, env = "HERALD_MAX_BODY_BYTES", default_value = "1048576", value_parser = parse_bytes_limit)]
    pub max_body_bytes: usize,

    /// Keyless (or bad-key) requests per second per client IP; 0 = off.
    #[arg(long, env = "HERALD_RATE_ANON", default_value_t = 10)]
    pub rate_anon: u32,

    /// Requests per second per instance; 0 = off.
    #[arg(long, env = "HERALD_RATE_INSTANCE", default_value_t = 0)]
    pub rate_instance: u32,

    /// Poll and stream opens per second per instance; 0 = off.
    #[arg(long, env = "HERALD_RATE_POLL", default_value_t = 0)]
    pub rate_poll: u32,

    /// Failed password checks of one identity (account e-mail, or instance and username) that
    /// lock it for `login_window`; 0 = off.
    #[arg(long, env = "HERALD_LOGIN_MAX_FAILURES", default_value_t = 10)]
    pub login_max_failures: u32,

    /// The window failed password checks are counted in, and how long a lock-out lasts.
    #[arg(long, env = "HERALD_LOGIN_WINDOW", default_value = "15m", value_parser = parse_interval)]
    pub login_window: Duration,

    /// Password checks per minute per client IP, across identities; 0 = off.
    #[arg(long, env = "HERALD_RATE_LOGIN", default_value_t = 30)]
    pub rate_login: u32,

    /// Argon2 computations at once (default: the number of CPUs).
    #[arg(long, env = "HERALD_HASH_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub hash_concurrency: Option<u32>,

    /// The socket peer is a trusted proxy: the client IP is read from X-Forwarded-For (the
    /// rightmost hop that is not a trusted proxy, docs/api.md §2.8).
    #[arg(long, env = "HERALD_TRUST_PROXY", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub trust_proxy: bool,

    /// Comma-separated CIDRs of trusted proxies (e.g. `10.0.0.0/8,192.168.1.7/32`): a peer in
    /// them is trusted, and X-Forwarded-For hops in them are skipped.
    #[arg(long, env = "HERALD_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Time for a request line and headers to arrive, from the connection's accept or the first
    /// byte of a later request (docs/api.md §2.10).
    #[arg(long, env = "HERALD_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_interval)]
    pub header_read_timeout: Duration,

    /// Time for a request body to arrive once its headers have.
    #[arg(long, env = "HERALD_BODY_READ_TIMEOUT", default_value = "30s", value_parser = parse_interval)]
    pub body_read_timeout: Duration,

    /// An idle keep-alive connection is closed after this long.
    #[arg(long, env = "HERALD_IDLE_TIMEOUT", default_value = "75s", value_parser = parse_interval)]
    pub idle_timeout: Duration,

    /// Open client connections of all kinds; over it new ones are answered 503.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Open connections (and, behind a proxy, requests in flight) per client IP; 0 = off.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: u32,

    /// A WebSocket or SSE write (or any response write) that cannot complete in this time
    /// closes the connection.
    #[arg(long, env = "HERALD_WS_SEND_TIMEOUT", default_value = "30s", value_parser = parse_interval)]
    pub ws_send_timeout: Duration,

    /// Allowed browser origins: `*` or a comma-separated list.
    #[arg(long, env = "HERALD_CORS_ORIGINS", default_value = "*", value_parser = parse_cors_origins)]
    pub cors_origins: CorsOrigins,

    /// Let anyone register an account through the API.
    #[arg(long, env = "HERALD_ALLOW_REGISTRATION", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_registration: bool,

    /// Serve the web console at `/console/` (`false`: 404 there).
    #[arg(long, env = "HERALD_CONSOLE", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub console: bool,

    /// Instances one account may own; 0 = unlimited.
    #[arg(long, env = "HERALD_MAX_INSTANCES_PER_ACCOUNT", default_value_t = 0)]
    pub max_instances_per_account: u32,

    /// Classes one instance may have besides the built-in `user_profile`; 0 = unlimited.
    #[arg(long, env = "HERALD_MAX_CLASSES_PER_INSTANCE", default_value_t = 100)]
    pub max_classes_per_instance: u32,

    /// Drain time on SIGTERM/SIGINT.
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `herald=debug`).
    #[arg(long, env = "HERALD_LOG", default_value = "info")]
    pub log: String,

    /// Log output: `text` or `json`.
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub admin: AdminBootstrap,
}

/// First-account bootstrap (docs/api.md §4.6): read from the environment only, never from flags, so
/// secrets stay out of process listings.
#[derive(Args, Clone, Default)]
pub struct AdminBootstrap {
    #[arg(skip = std::env::var("HERALD_ADMIN_EMAIL").ok())]
    pub email: Option<String>,
    #[arg(skip = std::env::var("HERALD_ADMIN_PASSWORD").ok())]
    pub password: Option<String>,
    #[arg(skip = std::env::var("HERALD_ADMIN_KEY").ok())]
    pub key: Option<String>,
}

impl std::fmt::Debug for AdminBootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminBootstrap")
            .field("email", &self.email)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AdminBootstrap {
    /// The configured bootstrap key, checked for format and parity.
    pub fn parsed_key(&self) -> Result<Option<Key>, String> {
        let Some(raw) = self.key.as_deref().filter(|k| !k.trim().is_empty()) else {
            return Ok(None);
        };
        match Key::parse(raw.trim()) {
            Some(key) if key.kind() == KeyKind::Account => Ok(Some(key)),
            _ => Err(
                "HERALD_ADMIN_KEY must be 40 hex characters ending in an even digit \
                      (0, 2, 4, 6, 8, a, c or e)"
                    .into(),
            ),
        }
    }
}

impl ServeArgs {
    /// Defaults for a server on `listen` with its database at `path`: what tests and embedders
    /// start from before adjusting single settings.
    pub fn with_database(listen: SocketAddr, path: PathBuf) -> ServeArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: ServeArgs,
        }
        // Parsing an empty command line yields every default; it cannot fail.
        let mut args = Wrapper::try_parse_from(["herald"])
            .map(|w| w.args)
            .expect("defaults parse");
        args.listen = listen;
        args.database.database_url = DatabaseUrl::Sqlite(path);
        args.admin = AdminBootstrap::default();
        args
    }

    /// Argon2 computations at once: the setting, or the number of CPUs.
    pub fn hash_concurrency(&self) -> usize {
        self.hash_concurrency.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            |n| n as usize,
        )
    }

    /// Retention age as an option: `None` when disabled (0).
    pub fn history_max_age(&self) -> Option<Duration> {
        (!self.history_max_age.is_zero()).then_some(self.history_max_age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_bare_seconds_and_units() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("7w").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn database_urls_name_the_backend() {
        assert!(matches!(
            parse_database_url("sqlite://data/h.db"),
            Ok(DatabaseUrl::Sqlite(p)) if p == std::path::Path::new("data/h.db")
        ));
        assert!(matches!(
            parse_database_url("postgres://localhost/x"),
            Ok(DatabaseUrl::Postgres(u)) if u == "postgres://localhost/x"
        ));
        assert!(matches!(
            parse_database_url("postgresql://herald@db:5433/herald?sslmode=disable"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(parse_database_url("postgres://localhost:notaport/x").is_err());
        assert!(parse_database_url("mysql://x").is_err());
        assert!(parse_database_url("sqlite://").is_err());
    }

    #[test]
    fn postgres_urls_never_show_their_password() {
        let shown = |raw: &str| parse_database_url(raw).unwrap().to_string();
        assert_eq!(
            shown("postgres://herald:s3cret@db:5432/herald"),
            "postgres://herald:***@db:5432/herald"
        );
        assert_eq!(
            shown("postgresql://herald@db/herald?password=s3cret&sslmode=disable"),
            "postgresql://herald@db/herald?password=***&sslmode=disable"
        );
        assert_eq!(
            shown("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test"
        );
        let debug = format!(
            "{:?}",
            parse_database_url("postgres://u:p%40ss@h/d").unwrap()
        );
        assert!(!debug.contains("p%40ss"), "{debug}");
    }

    #[test]
    fn redis_urls_never_show_their_password() {
        let shown = |raw: &str| RedisUrl(raw.to_owned()).to_string();
        assert_eq!(
            shown("redis://:s3cret@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(
            shown("rediss://herald:s3cret@cache"),
            "rediss://herald:***@cache"
        );
        assert_eq!(
            shown("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(shown("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        let debug = format!("{:?}", RedisUrl("redis://:s3cret@cache".into()));
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn cors_origins_are_star_or_a_list() {
        assert_eq!(parse_cors_origins("*"), Ok(CorsOrigins::Any));
        assert_eq!(
            parse_cors_origins("https://a.io, https://b.io/"),
            Ok(CorsOrigins::List(vec![
                "https://a.io".into(),
                "https://b.io".into()
            ]))
        );
    }

    #[test]
    fn admin_key_must_be_an_even_account_key() {
        let mut admin = AdminBootstrap::default();
        assert_eq!(admin.parsed_key(), Ok(None));
        admin.key = Some("a".repeat(39) + "1");
        assert!(admin.parsed_key().is_err());
        admin.key = Some("a".repeat(40));
        assert!(admin.parsed_key().unwrap().is_some());
    }
}
