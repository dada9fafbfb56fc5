//! The wire form of a message (docs/api.md §9.5), written straight from stored JSON text.
//!
//! Payload, author and metadata are stored as compact JSON, so rendering is concatenation: no
//! parse, no re-encode, one allocation sized up front. Field order follows the SPEC's example.

use crate::model::format_timestamp;
use crate::store::Message;

/// The message JSON; `self_link` adds `links.self` (publish responses and history), which poll,
/// WebSocket and SSE deliveries omit.
pub fn message_json(message: &Message, self_link: Option<&str>) -> Vec<u8> {
    let room = match &message.room {
        // Serialising a string cannot fail.
        Some(room) => serde_json::to_string(room).unwrap_or_else(|_| "null".into()),
        None => "null".into(),
    };
    let mut out = String::with_capacity(
        128 + message.payload.len() + message.author.len() + message.metadata.len() + room.len(),
    );
    out.push_str("{\"id\":");
    out.push_str(itoa::Buffer::new().format(message.id));
    out.push_str(",\"created_at\":\"");
    out.push_str(&format_timestamp(message.created_at));
    out.push_str("\",\"action\":\"");
    out.push_str(message.action);
    out.push_str("\",\"author\":");
    out.push_str(&message.author);
    out.push_str(",\"metadata\":");
    out.push_str(&message.metadata);
    out.push_str(",\"payload\":");
    out.push_str(&message.payload);
    out.push_str(",\"room\":");
    out.push_str(&room);
    if let Some(link) = self_link {
        out.push_str(",\"links\":{\"self\":");
        out.push_str(&serde_json::to_string(link).unwrap_or_else(|_| "null".into()));
        out.push('}');
    }
    out.push('}');
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn renders_the_spec_example() {
        let message = Message {
            id: 53,
            room: Some("secret-room".into()),
            action: "custom",
            author: "{\"api_key\":3}".into(),
            metadata: "{\"type\":\"message\"}".into(),
            payload: "{\"message\":\"Hello Witchers!\"}".into(),
            created_at: 1_458_245_626_695_378,
        };
        let link = "/v1.1/instances/rivia/channels/witchers/history/53/";
        let value: Value = serde_json::from_slice(&message_json(&message, Some(link))).unwrap();
        assert_eq!(
            value,
            json!({
                "id": 53, "created_at": "2016-03-17T20:13:46.695378Z", "action": "custom",
                "author": {"api_key": 3}, "metadata": {"type": "message"},
                "payload": {"message": "Hello Witchers!"}, "room": "secret-room",
                "links": {"self": link}
            })
        );
        let bare: Value = serde_json::from_slice(&message_json(&message, None)).unwrap();
        assert!(bare.get("links").is_none());
    }

    #[test]
    fn rooms_are_escaped_and_null_when_absent() {
        let mut message = Message {
            id: 1,
            room: Some("a\"b".into()),
            action: "custom",
            author: "{}".into(),
            metadata: "{}".into(),
            payload: "{}".into(),
            created_at: 0,
        };
        let value: Value = serde_json::from_slice(&message_json(&message, None)).unwrap();
        assert_eq!(value["room"], "a\"b");
        message.room = None;
        let value: Value = serde_json::from_slice(&message_json(&message, None)).unwrap();
        assert_eq!(value["room"], Value::Null);
    }
}
