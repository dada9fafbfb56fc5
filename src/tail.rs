//! `herald tail`: a subscriber on the command line. Prints each message of a channel (room) as
//! one JSON line on stdout and, whenever the connection drops, reconnects with the last id it
//! printed, so no message is lost or printed twice.

use std::time::Duration;

use anyhow::bail;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::{self, Message};

/// What to follow, and where.
pub struct TailArgs {
    pub url: String,
    pub api_key: String,
    pub instance: String,
    pub channel: String,
    pub room: Option<String>,
    pub last_id: Option<i64>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl TailArgs {
    fn stream_url(&self, last_id: Option<i64>) -> anyhow::Result<String> {
        let base = self.url.trim_end_matches('/');
        let base = if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if base.starts_with("ws://") || base.starts_with("wss://") {
            base.to_owned()
        } else {
            bail!("--url must start with http:// or ws://, got `{}`", self.url);
        };
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("transport", "websocket");
        query.append_pair("api_key", &self.api_key);
        if let Some(room) = &self.room {
            query.append_pair("room", room);
        }
        if let Some(id) = last_id {
            query.append_pair("last_id", &id.to_string());
        }
        // Told before the replay when retention removed messages after last_id (docs/api.md §9.12).
        query.append_pair("gaps", "true");
        Ok(format!(
            "{base}/v1.1/instances/{}/channels/{}/poll/?{}",
            self.instance,
            self.channel,
            query.finish()
        ))
    }
}

/// Why one connection ended.
enum Ended {
    /// Worth reconnecting (network trouble, overflow, restart).
    Retry(String),
    /// The server said no for good (permission, missing channel): stop.
    Fatal(String),
}

/// Follows the channel until a fatal error; never returns `Ok` on its own.
pub async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let mut last_id = args.last_id;
    let mut backoff = Duration::from_millis(200);
    loop {
        let url = args.stream_url(last_id)?;
        eprintln!(
            "tail: connecting to {}/{}{} from {}",
            args.instance,
            args.channel,
            args.room
                .as_deref()
                .map(|r| format!(" room {r}"))
                .unwrap_or_default(),
            last_id.map_or_else(|| "now".to_owned(), |id| format!("id {id}"))
        );
        let before = last_id;
        let ended = follow(&url, &mut last_id).await;
        if last_id != before {
            // The connection delivered messages: it was healthy, so start backing off afresh.
            backoff = Duration::from_millis(200);
        }
        match ended {
            Ended::Fatal(reason) => bail!("{reason}"),
            Ended::Retry(reason) => {
                eprintln!("tail: {reason}; reconnecting in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn follow(url: &str, last_id: &mut Option<i64>) -> Ended {
    let (mut socket, _) = match tokio_tungstenite::connect_async(url).await {
        Ok(connected) => connected,
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status();
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            let reason = format!("server answered {status}: {body}");
            return if status.as_u16() == 429 || status.is_server_error() {
                Ended::Retry(reason)
            } else {
                Ended::Fatal(reason)
            };
        }
        Err(err) => return Ended::Retry(format!("cannot connect: {err}")),
    };
    while let Some(frame) = socket.next().await {
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(frame)) => {
                let code = frame.as_ref().map(|f| u16::from(f.code)).unwrap_or(1005);
                return match code {
                    1008 => Ended::Fatal(format!("server closed the stream ({code})")),
                    _ => Ended::Retry(format!("server closed the stream ({code})")),
                };
            }
            Ok(_) => continue,
            Err(err) => return Ended::Retry(format!("connection lost: {err}")),
        };
        let value: serde_json::Value = match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(_) => continue,
        };
        if let Some(gap) = value.get("gap") {
            let bound = |key: &str| gap.get(key).and_then(serde_json::Value::as_i64);
            if let (Some(from), Some(to)) = (bound("from"), bound("to")) {
                eprintln!(
                    "gap: messages {from}-{to} were removed by retention before they were read"
                );
            }
            continue;
        }
        match value.get("id").and_then(serde_json::Value::as_i64) {
            Some(id) => {
                println!("{text}");
                *last_id = Some(id);
            }
            // An error frame: the close frame that follows decides what to do.
            None => eprintln!("tail: server error: {text}"),
        }
    }
    Ended::Retry("connection closed".into())
}
