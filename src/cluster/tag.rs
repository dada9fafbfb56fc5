//! Tags that prove a Redis message came from a node of this cluster (docs/api.md §11.5).
//!
//! Wire format of every payload on `<prefix>:messages` and `<prefix>:control`:
//!
//! ```text
//! tag (32 bytes, raw) | body
//! tag = HMAC-SHA256(cluster secret, topic byte | body)
//! ```
//!
//! The topic byte (`m` for messages, `c` for control) keeps a body tagged for one channel from
//! being replayed on the other. The secret is the cluster's, stored in its database, so a
//! publisher that does not share the database cannot make a valid tag. Verification runs in
//! constant time.

use hmac::{Hmac, Mac};
use redis::{RedisWrite, ToRedisArgs, ToSingleRedisArg};
use sha2::Sha256;

/// Bytes of a tag.
pub const TAG_LEN: usize = 32;

/// Which of the cluster's two Redis channels a payload travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    /// Announcements of committed messages.
    Messages,
    /// Changes that make caches or streams stale.
    Control,
}

impl Topic {
    fn byte(self) -> u8 {
        match self {
            Topic::Messages => b'm',
            Topic::Control => b'c',
        }
    }
}

/// Makes and checks tags with the cluster secret. Keyed once; each tag starts from a copy.
#[derive(Clone)]
pub struct Signer {
    keyed: Hmac<Sha256>,
}

impl Signer {
    pub fn new(secret: &[u8; 32]) -> Signer {
        Signer {
            keyed: Hmac::new_from_slice(secret).expect("HMAC takes keys of any length"),
        }
    }

    fn mac(&self, topic: Topic, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(&[topic.byte()]);
        mac.update(body);
        mac
    }

    /// `body` with its tag, ready to publish on `topic`.
    pub fn tag<'a>(&self, topic: Topic, body: &'a [u8]) -> Tagged<'a> {
        Tagged {
            tag: self.mac(topic, body).finalize().into_bytes().into(),
            body,
        }
    }

    /// The body of a payload received on `topic`, if its tag is valid.
    pub fn open<'a>(&self, topic: Topic, payload: &'a [u8]) -> Option<&'a [u8]> {
        let (tag, body) = payload.split_at_checked(TAG_LEN)?;
        self.mac(topic, body).verify_slice(tag).ok()?;
        Some(body)
    }
}

/// A tag and its body, written to Redis as one argument without joining them first.
pub struct Tagged<'a> {
    tag: [u8; TAG_LEN],
    body: &'a [u8],
}

impl ToRedisArgs for Tagged<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut arg = out.writer_for_next_arg();
        // Writes into the command's own buffer: they cannot fail.
        let _ = arg.write_all(&self.tag);
        let _ = arg.write_all(self.body);
    }
}

impl ToSingleRedisArg for Tagged<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(tagged: &Tagged<'_>) -> Vec<u8> {
        let mut args = tagged.to_redis_args();
        assert_eq!(args.len(), 1, "one Redis argument");
        args.remove(0)
    }

    #[test]
    fn a_good_tag_opens_and_anything_else_does_not() {
        let signer = Signer::new(&[7; 32]);
        let body = b"{\"node\":1}\n{\"id\":5}";
        let sent = payload(&signer.tag(Topic::Messages, body));
        assert_eq!(sent.len(), TAG_LEN + body.len());
        assert_eq!(&sent[TAG_LEN..], body);
        assert_eq!(signer.open(Topic::Messages, &sent), Some(&body[..]));

        // Every flipped bit, in the tag or the body, is caught.
        for bit in 0..sent.len() * 8 {
            let mut flipped = sent.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(signer.open(Topic::Messages, &flipped), None, "bit {bit}");
        }
        // The body alone (no tag), a short tag, nothing at all.
        assert_eq!(signer.open(Topic::Messages, body), None);
        assert_eq!(signer.open(Topic::Messages, &sent[1..]), None);
        assert_eq!(signer.open(Topic::Messages, &sent[..TAG_LEN - 1]), None);
        assert_eq!(signer.open(Topic::Messages, b""), None);
        // The other channel, another cluster's secret.
        assert_eq!(signer.open(Topic::Control, &sent), None);
        assert_eq!(Signer::new(&[8; 32]).open(Topic::Messages, &sent), None);
    }

    #[test]
    fn an_empty_body_has_a_tag_too() {
        let signer = Signer::new(&[1; 32]);
        let sent = payload(&signer.tag(Topic::Control, b""));
        assert_eq!(sent.len(), TAG_LEN);
        assert_eq!(signer.open(Topic::Control, &sent), Some(&b""[..]));
    }
}
