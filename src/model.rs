//! Domain vocabulary: validated names, rooms, channel types and permission levels.
//!
//! Every name that reaches storage went through one of the `parse` functions here, so the store
//! can assume lower-case, trimmed, well-formed values (docs/api.md §2.6, §9.5).

use std::fmt;

/// Instance names nobody may take (docs/api.md §2.6 footnote 1).
const RESERVED_INSTANCE_NAMES: &[&str] = &[
    "devcenter",
    "support",
    "sentry",
    "admin",
    "platform",
    "redirect",
    "media",
    "signup",
    "login",
    "instance_subdomain",
    "my_instance",
    "myinstance",
    "panel",
    "account",
    "noinstance",
    "public",
    "template1",
    "status",
];

/// Class names nobody may take (docs/api.md §2.6).
const RESERVED_CLASS_NAMES: &[&str] = &["self", "user", "users", "acl"];

/// Which characters a name kind allows besides lower-case letters and digits.
#[derive(Clone, Copy)]
enum NameKind {
    Instance,
    Channel,
    Class,
}

impl NameKind {
    fn allows(self, c: char) -> bool {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || (c == '-' && !matches!(self, NameKind::Class))
            || (c == '_' && !matches!(self, NameKind::Instance))
    }

    fn charset_message(self) -> &'static str {
        match self {
            NameKind::Instance => "Enter a valid value consisting of letters, numbers, hyphens.",
            NameKind::Channel => {
                "Enter a valid value consisting of letters, numbers, underscores, hyphens."
            }
            NameKind::Class => "Enter a valid value consisting of letters, numbers, underscores.",
        }
    }
}

/// Normalises a name as the SPEC requires before validation: trimmed and lower-cased.
pub fn normalize(raw: &str) -> String {
    raw.trim().to_lowercase()
}

fn validate_name(name: &str, kind: NameKind, min: usize, max: usize) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 {
        return Err("This field may not be blank.".into());
    }
    if len > max {
        return Err(format!(
            "Ensure this field has no more than {max} characters."
        ));
    }
    if len < min {
        return Err(format!("Ensure this field has at least {min} characters."));
    }
    if !name.chars().all(|c| kind.allows(c)) {
        return Err(kind.charset_message().into());
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("Value has to start with a letter.".into());
    }
    if !name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err("Value has to end with a letter or a number.".into());
    }
    Ok(())
}

/// A validated instance name (5–64 chars, `a-z 0-9 -`, not reserved).
pub fn parse_instance_name(raw: &str) -> Result<String, String> {
    let name = normalize(raw);
    validate_name(&name, NameKind::Instance, 5, 64)?;
    if name.contains("--") {
        return Err("Double hyphens are reserved.".into());
    }
    if RESERVED_INSTANCE_NAMES.contains(&name.as_str()) {
        return Err("Unable to use that value. Please choose a different one.".into());
    }
    Ok(name)
}

/// A validated channel name (1–64 chars, `a-z 0-9 _ -`).
pub fn parse_channel_name(raw: &str) -> Result<String, String> {
    let name = normalize(raw);
    validate_name(&name, NameKind::Channel, 1, 64)?;
    Ok(name)
}

/// A validated class name (1–64 chars, `a-z 0-9 _`, not reserved).
pub fn parse_class_name(raw: &str) -> Result<String, String> {
    let name = normalize(raw);
    validate_name(&name, NameKind::Class, 1, 64)?;
    if RESERVED_CLASS_NAMES.contains(&name.as_str()) {
        return Err("Unable to use that value. Please choose a different one.".into());
    }
    Ok(name)
}

/// The longest room name, in characters (docs/api.md §2.7).
pub const MAX_ROOM_CHARS: usize = 128;

/// A room after normalisation: `None` means "no room" (absent, empty or whitespace-only).
/// Over-long rooms are an error naming the limit.
pub fn parse_room(raw: Option<&str>) -> Result<Option<String>, String> {
    parse_room_within(raw, MAX_ROOM_CHARS)
}

/// The longest `channel_room` of a data object, in characters (docs/api.md §2.6).
pub const MAX_CHANNEL_ROOM_CHARS: usize = 64;

/// A room normalised like [`parse_room`], at most `max` characters long.
pub fn parse_room_within(raw: Option<&str>, max: usize) -> Result<Option<String>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let room = normalize(raw);
    if room.is_empty() {
        return Ok(None);
    }
    if room.chars().count() > max {
        return Err(format!(
            "Ensure this field has no more than {max} characters."
        ));
    }
    Ok(Some(room))
}

/// A plausible e-mail address: something@something.tld, no spaces, ≤ 254 chars.
pub fn parse_email(raw: &str) -> Result<String, String> {
    let email = normalize(raw);
    if email.is_empty() {
        return Err("This field may not be blank.".into());
    }
    let valid = email.chars().count() <= 254
        && !email.chars().any(char::is_whitespace)
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && (domain.contains('.') || domain == "localhost")
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if valid {
        Ok(email)
    } else {
        Err("Enter a valid email address.".into())
    }
}

/// Channel type (docs/api.md §9.1). Numeric codes 0/1 are Syncano's wire values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelType {
    Default,
    SeparateRooms,
}

impl ChannelType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelType::Default => "default",
            ChannelType::SeparateRooms => "separate_rooms",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "default" | "0" => Some(ChannelType::Default),
            "separate_rooms" | "1" => Some(ChannelType::SeparateRooms),
            _ => None,
        }
    }
}

/// Channel permission level, ordered `none < subscribe < publish` (docs/api.md §9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    None,
    Subscribe,
    Publish,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::None => "none",
            Permission::Subscribe => "subscribe",
            Permission::Publish => "publish",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "none" | "0" => Some(Permission::None),
            "subscribe" | "1" => Some(Permission::Subscribe),
            "publish" | "2" => Some(Permission::Publish),
            _ => None,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names of the channels every instance is created with (docs/api.md §9.2).
pub const DEFAULT_CHANNEL: &str = "default";
pub const EVENTLOG_CHANNEL: &str = "eventlog";

pub fn is_builtin_channel(name: &str) -> bool {
    name == DEFAULT_CHANNEL || name == EVENTLOG_CHANNEL
}

/// Formats a timestamp (microseconds since the Unix epoch) as docs/api.md §2.3 requires:
/// UTC, six fractional digits, `Z` suffix.
pub fn format_timestamp(micros: i64) -> String {
    let nanos = i128::from(micros) * 1000;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// The current time in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn instance_names_follow_the_spec() {
        assert_eq!(parse_instance_name(" Rivia ").unwrap(), "rivia");
        assert_eq!(
            parse_instance_name("riv").unwrap_err(),
            "Ensure this field has at least 5 characters."
        );
        assert_eq!(
            parse_instance_name("1rivia").unwrap_err(),
            "Value has to start with a letter."
        );
        assert_eq!(
            parse_instance_name("rivia-").unwrap_err(),
            "Value has to end with a letter or a number."
        );
        assert_eq!(
            parse_instance_name("riv--ia").unwrap_err(),
            "Double hyphens are reserved."
        );
        assert_eq!(
            parse_instance_name("riv_ia").unwrap_err(),
            "Enter a valid value consisting of letters, numbers, hyphens."
        );
        assert_eq!(
            parse_instance_name("admin").unwrap_err(),
            "Unable to use that value. Please choose a different one."
        );
    }

    #[test]
    fn class_names_allow_underscores_but_not_hyphens() {
        assert_eq!(parse_class_name(" Contracts_2 ").unwrap(), "contracts_2");
        assert_eq!(
            parse_class_name("con-tracts").unwrap_err(),
            "Enter a valid value consisting of letters, numbers, underscores."
        );
        assert_eq!(
            parse_class_name("users").unwrap_err(),
            "Unable to use that value. Please choose a different one."
        );
        assert_eq!(
            parse_class_name("_x").unwrap_err(),
            "Value has to start with a letter."
        );
    }

    #[test]
    fn channel_names_allow_underscores() {
        assert_eq!(parse_channel_name("Witch_ers-2").unwrap(), "witch_ers-2");
        assert_eq!(parse_channel_name("a").unwrap(), "a");
        assert!(parse_channel_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn rooms_are_trimmed_lowercased_and_bounded() {
        assert_eq!(
            parse_room(Some(" Lobby ")).unwrap().as_deref(),
            Some("lobby")
        );
        assert_eq!(parse_room(Some("   ")).unwrap(), None);
        assert_eq!(parse_room(None).unwrap(), None);
        assert!(parse_room(Some(&"ä".repeat(128))).unwrap().is_some());
        assert!(parse_room(Some(&"ä".repeat(129))).is_err());
    }

    #[test]
    fn timestamps_have_microseconds_and_z() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_timestamp(1_458_245_626_695_378),
            "2016-03-17T20:13:46.695378Z"
        );
    }

    proptest! {
        #[test]
        fn valid_channel_names_are_stable_under_reparse(raw in "\\PC{0,80}") {
            if let Ok(name) = parse_channel_name(&raw) {
                prop_assert_eq!(parse_channel_name(&name).unwrap(), name.clone());
                prop_assert!(name.len() <= 64);
            }
        }
    }
}
