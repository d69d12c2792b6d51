//! Connection profiles: what the user saves (serde, kept in localStorage), the editable
//! form state, its validation with messages, and the client options a profile becomes.
//! Pure logic, tested natively.

use bytes::Bytes;
use client_wasm::{LastWill, Options, Properties, ProtocolVersion, QoS, SubscribeFilter};
use protocol::topic::{parse_shared, validate_topic_filter, validate_topic_name};
use serde::{Deserialize, Serialize};

use super::payload::{self, Format};

/// Whether client-wasm speaks MQTT 5.0. Were it switched off, the profile would keep its
/// 5.0 settings but offer 5.0 disabled, marked "MQTT 5.0 coming".
pub const V5_AVAILABLE: bool = true;

/// Longest profile name.
const MAX_NAME: usize = 64;

/// The MQTT version a profile speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    #[serde(rename = "3.1")]
    V31,
    #[serde(rename = "5.0")]
    V5,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::V311, Protocol::V5, Protocol::V31];

    pub fn key(self) -> &'static str {
        match self {
            Protocol::V311 => "3.1.1",
            Protocol::V31 => "3.1",
            Protocol::V5 => "5.0",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Protocol::V311 => "MQTT 3.1.1",
            Protocol::V31 => "MQTT 3.1 (legacy)",
            Protocol::V5 if V5_AVAILABLE => "MQTT 5.0",
            Protocol::V5 => "MQTT 5.0 (coming)",
        }
    }

    pub fn from_key(key: &str) -> Protocol {
        Protocol::ALL
            .into_iter()
            .find(|p| p.key() == key)
            .unwrap_or_default()
    }

    pub fn available(self) -> bool {
        self != Protocol::V5 || V5_AVAILABLE
    }

    pub fn is_v5(self) -> bool {
        self == Protocol::V5
    }

    pub fn version(self) -> ProtocolVersion {
        match self {
            Protocol::V311 => ProtocolVersion::V3_1_1,
            Protocol::V31 => ProtocolVersion::V3_1,
            Protocol::V5 => ProtocolVersion::V5,
        }
    }
}

/// The Last Will, as a profile stores it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Will {
    pub enabled: bool,
    pub topic: String,
    pub payload: String,
    pub qos: u8,
    pub retain: bool,
}

/// A subscription the profile makes on every connect. `color` indexes the palette.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Subscription {
    pub filter: String,
    pub qos: u8,
    pub color: u8,
    /// 5.0 subscription options.
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0 send retained messages, 1 only for a new subscription, 2 never.
    pub retain_handling: u8,
}

/// A 5.0 user property (name, value).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UserProperty {
    pub key: String,
    pub value: String,
}

/// The publish form, remembered per profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishSettings {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub format: Format,
    pub payload: String,
    /// 5.0 properties; empty means absent.
    pub content_type: String,
    pub message_expiry: String,
    pub response_topic: String,
    pub user_properties: Vec<UserProperty>,
}

impl Default for PublishSettings {
    fn default() -> Self {
        PublishSettings {
            topic: "topic_1".to_owned(),
            qos: 0,
            retain: false,
            format: Format::Text,
            payload: "hello".to_owned(),
            content_type: String::new(),
            message_expiry: String::new(),
            response_topic: String::new(),
            user_properties: Vec::new(),
        }
    }
}

/// A saved connection profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Profile {
    pub id: u32,
    pub name: String,
    pub url: String,
    pub client_id: String,
    pub username: String,
    pub password: String,
    /// Seconds; 0 turns keep-alive off.
    pub keep_alive: u16,
    /// "Clean session" in 3.1.1.
    pub clean_start: bool,
    pub protocol: Protocol,
    /// 5.0: seconds the broker keeps the session after a disconnect.
    pub session_expiry: u32,
    /// Reconnect after an unexpected loss of the connection.
    pub reconnect: bool,
    pub will: Will,
    pub subscriptions: Vec<Subscription>,
    pub publish: PublishSettings,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            id: 0,
            name: String::new(),
            url: String::new(),
            client_id: String::new(),
            username: String::new(),
            password: String::new(),
            keep_alive: 60,
            clean_start: true,
            protocol: Protocol::V311,
            session_expiry: 0,
            reconnect: true,
            will: Will::default(),
            subscriptions: Vec::new(),
            publish: PublishSettings::default(),
        }
    }
}

impl Profile {
    pub fn new(id: u32, name: &str, url: &str, client_id: String) -> Profile {
        Profile {
            id,
            name: name.to_owned(),
            url: url.to_owned(),
            client_id,
            ..Profile::default()
        }
    }

    /// What the MQTT client is given to connect.
    pub fn options(&self) -> Options {
        let mut o = Options::new(self.client_id.clone());
        o.version = self.protocol.version();
        o.keep_alive = self.keep_alive;
        o.clean_session = self.clean_start;
        o.username = non_empty(&self.username);
        o.password = non_empty(&self.password).map(Bytes::from);
        o.reconnect = self.reconnect;
        if self.protocol.is_v5() {
            o.session_expiry = self.session_expiry;
        }
        o.will = self.will.enabled.then(|| {
            LastWill::new(
                self.will.topic.clone(),
                Bytes::from(self.will.payload.clone()),
                qos(self.will.qos),
                self.will.retain,
            )
        });
        o
    }
}

impl Subscription {
    /// The SUBSCRIBE entry (the 5.0 options are ignored by a 3.1.1 connection). Only the
    /// browser build subscribes.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub fn to_filter(&self) -> SubscribeFilter {
        SubscribeFilter {
            no_local: self.no_local,
            retain_as_published: self.retain_as_published,
            retain_handling: self.retain_handling.min(2),
            ..SubscribeFilter::new(self.filter.clone(), qos(self.qos))
        }
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// A QoS from its number (anything above 2 is taken as 2).
pub fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// `bridge-web-` and eight random hex digits (from the caller's random number).
pub fn random_client_id(random: u32) -> String {
    format!("bridge-web-{random:08x}")
}

/// The form fields that can carry an error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Url,
    ClientId,
    KeepAlive,
    Protocol,
    SessionExpiry,
    WillTopic,
}

/// Error messages by field, in form order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Errors(Vec<(Field, String)>);

impl Errors {
    pub fn get(&self, field: Field) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn add(&mut self, field: Field, message: impl Into<String>) {
        self.0.push((field, message.into()));
    }
}

/// The connection form while it is edited: numbers stay text until validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileDraft {
    pub name: String,
    pub url: String,
    pub client_id: String,
    pub username: String,
    pub password: String,
    pub keep_alive: String,
    pub clean_start: bool,
    pub protocol: Protocol,
    pub session_expiry: String,
    pub reconnect: bool,
    pub will: Will,
}

impl From<&Profile> for ProfileDraft {
    fn from(p: &Profile) -> Self {
        ProfileDraft {
            name: p.name.clone(),
            url: p.url.clone(),
            client_id: p.client_id.clone(),
            username: p.username.clone(),
            password: p.password.clone(),
            keep_alive: p.keep_alive.to_string(),
            clean_start: p.clean_start,
            protocol: p.protocol,
            session_expiry: p.session_expiry.to_string(),
            reconnect: p.reconnect,
            will: p.will.clone(),
        }
    }
}

impl ProfileDraft {
    /// The profile `base` with this form's settings, or what is wrong with them.
    pub fn apply(&self, base: &Profile) -> Result<Profile, Errors> {
        let mut errors = Errors::default();
        let name = self.name.trim();
        if name.is_empty() {
            errors.add(Field::Name, "Give the connection a name.");
        } else if name.chars().count() > MAX_NAME {
            errors.add(Field::Name, format!("At most {MAX_NAME} characters."));
        }
        let url = self.url.trim();
        if let Err(e) = validate_url(url) {
            errors.add(Field::Url, e);
        }
        if self.client_id.is_empty() && !self.clean_start {
            errors.add(
                Field::ClientId,
                "An empty client ID needs clean start: the broker then assigns one.",
            );
        } else if self.protocol == Protocol::V31 && !(1..=23).contains(&self.client_id.len()) {
            errors.add(
                Field::ClientId,
                "MQTT 3.1 needs a client ID of 1 to 23 bytes.",
            );
        } else if self.client_id.len() > 65_535 {
            errors.add(Field::ClientId, "At most 65535 bytes.");
        }
        let keep_alive = match self.keep_alive.trim().parse::<u32>() {
            Ok(n) if n <= u32::from(u16::MAX) => n as u16,
            _ => {
                errors.add(
                    Field::KeepAlive,
                    "Keep-alive is 0 to 65535 seconds (0 turns it off).",
                );
                0
            }
        };
        if !self.protocol.available() {
            errors.add(
                Field::Protocol,
                "MQTT 5.0 coming: the browser client speaks 3.1.1 and 3.1 for now.",
            );
        }
        let session_expiry = if self.protocol.is_v5() {
            match self.session_expiry.trim().parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    errors.add(
                        Field::SessionExpiry,
                        "Session expiry is 0 to 4294967295 seconds.",
                    );
                    0
                }
            }
        } else {
            // Hidden for 3.1.x: keep what was stored.
            self.session_expiry
                .trim()
                .parse()
                .unwrap_or(base.session_expiry)
        };
        if self.will.enabled {
            if let Err(e) = validate_topic_name(&self.will.topic) {
                errors.add(Field::WillTopic, format!("Will topic: {e}."));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Profile {
            name: name.to_owned(),
            url: url.to_owned(),
            client_id: self.client_id.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            keep_alive,
            clean_start: self.clean_start,
            protocol: self.protocol,
            session_expiry,
            reconnect: self.reconnect,
            will: Will {
                qos: self.will.qos.min(2),
                ..self.will.clone()
            },
            ..base.clone()
        })
    }
}

/// Checks a broker address for the browser: `ws://` or `wss://`, a host, an optional port
/// in 1–65535, an optional path; no fragment and no spaces (the WebSocket constructor
/// rejects both).
pub fn validate_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("Enter the broker's WebSocket URL, like ws://host:8083/mqtt.".into());
    }
    let lower = url.to_ascii_lowercase();
    let rest = if let Some(rest) = lower.strip_prefix("ws://") {
        rest
    } else if let Some(rest) = lower.strip_prefix("wss://") {
        rest
    } else if ["mqtt://", "mqtts://", "tcp://", "ssl://"]
        .iter()
        .any(|s| lower.starts_with(s))
    {
        return Err(
            "Browsers cannot open MQTT over TCP: use the WebSocket URL, like ws://host:8083/mqtt."
                .into(),
        );
    } else if lower.starts_with("http://") || lower.starts_with("https://") {
        return Err("Use ws:// (or wss://) instead of http(s)://.".into());
    } else {
        return Err("The URL must start with ws:// or wss://.".into());
    };
    if url.chars().any(char::is_whitespace) {
        return Err("The URL must not contain spaces.".into());
    }
    if url.contains('#') {
        return Err("A WebSocket URL cannot have a #fragment.".into());
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, after)) => match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err("Unexpected text after the IPv6 address.".into()),
                },
            },
            None => return Err("An IPv6 address needs a closing ].".into()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("The URL has no host.".into());
    }
    if let Some(port) = port {
        match port.parse::<u32>() {
            Ok(1..=65535) => {}
            _ => {
                return Err(format!(
                    "Port must be a number from 1 to 65535, not '{port}'."
                ))
            }
        }
    }
    Ok(())
}

/// The subscription form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscriptionDraft {
    pub filter: String,
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
}

impl SubscriptionDraft {
    /// Why the filter cannot be subscribed to, as the user should read it.
    pub fn filter_error(&self) -> Option<String> {
        let filter = self.filter.as_str();
        if let Err(e) = validate_topic_filter(filter) {
            return Some(capitalise(&format!("{e}.")));
        }
        match parse_shared(filter) {
            Err(e) => Some(capitalise(&format!("{e}."))),
            Ok(_) => None,
        }
    }

    /// A subscription ready to save, with the next colour of the palette.
    pub fn build(&self, existing: &[Subscription]) -> Result<Subscription, String> {
        if let Some(e) = self.filter_error() {
            return Err(e);
        }
        let color = existing
            .iter()
            .find(|s| s.filter == self.filter)
            .map(|s| s.color)
            .unwrap_or_else(|| next_color(existing));
        Ok(Subscription {
            filter: self.filter.clone(),
            qos: self.qos.min(2),
            color,
            no_local: self.no_local,
            retain_as_published: self.retain_as_published,
            retain_handling: self.retain_handling.min(2),
        })
    }
}

/// The palette entry that the fewest subscriptions use (the first such, so colours are
/// handed out in order).
pub fn next_color(existing: &[Subscription]) -> u8 {
    let mut uses = [0usize; PALETTE_LEN];
    for s in existing {
        uses[usize::from(s.color) % PALETTE_LEN] += 1;
    }
    let min = uses.iter().copied().min().unwrap_or(0);
    uses.iter().position(|&n| n == min).unwrap_or(0) as u8
}

/// How many subscription colours there are (style.css defines `--c0` … `--c7`).
pub const PALETTE_LEN: usize = 8;

/// Adds (or replaces, for the same filter) a subscription, keeping the list's order.
pub fn upsert(list: &mut Vec<Subscription>, sub: Subscription) {
    match list.iter_mut().find(|s| s.filter == sub.filter) {
        Some(slot) => *slot = sub,
        None => list.push(sub),
    }
}

/// A validated publish: the bytes, flags and (5.0) properties to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub payload: Bytes,
    pub properties: Properties,
}

/// Where a publish form is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishErrors {
    pub topic: Option<String>,
    pub payload: Option<String>,
    pub message_expiry: Option<String>,
    pub response_topic: Option<String>,
    pub user_properties: Option<String>,
}

impl PublishErrors {
    pub fn is_empty(&self) -> bool {
        *self == PublishErrors::default()
    }
}

impl PublishSettings {
    /// The message to publish, or what is wrong with the form. 5.0 fields are checked only
    /// when the profile speaks 5.0.
    pub fn build(&self, v5: bool) -> Result<Outgoing, PublishErrors> {
        let mut errors = PublishErrors::default();
        if let Err(e) = validate_topic_name(&self.topic) {
            errors.topic = Some(capitalise(&format!("{e}.")));
        }
        let mut properties = Properties::default();
        let payload = match payload::encode(&self.payload, self.format) {
            Ok(bytes) => bytes,
            Err(e) => {
                errors.payload = Some(capitalise(&format!("{e}.")));
                Vec::new()
            }
        };
        if v5 {
            let expiry = self.message_expiry.trim();
            if !expiry.is_empty() {
                match expiry.parse::<u32>() {
                    Ok(seconds) => properties.message_expiry_interval = Some(seconds),
                    Err(_) => {
                        errors.message_expiry =
                            Some("Message expiry is 0 to 4294967295 seconds, or empty.".into())
                    }
                }
            }
            if let Err(e) = validate_topic_name(&self.response_topic).or_else(|e| {
                // Empty means "no response topic".
                if self.response_topic.is_empty() {
                    Ok(())
                } else {
                    Err(e)
                }
            }) {
                errors.response_topic = Some(capitalise(&format!("{e}.")));
            }
            if self
                .user_properties
                .iter()
                .any(|p| p.key.is_empty() && !p.value.is_empty())
            {
                errors.user_properties = Some("Each user property needs a name.".into());
            }
            properties.content_type = non_empty(self.content_type.trim());
            properties.response_topic = non_empty(&self.response_topic);
            properties.user_properties = self
                .user_properties
                .iter()
                .filter(|p| !p.key.is_empty())
                .map(|p| (p.key.clone(), p.value.clone()))
                .collect();
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Outgoing {
            topic: self.topic.clone(),
            qos: self.qos.min(2),
            retain: self.retain,
            payload: Bytes::from(payload),
            properties,
        })
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Profile {
        Profile::new(
            1,
            "Local",
            "ws://127.0.0.1:8083/mqtt",
            "bridge-web-1".into(),
        )
    }

    fn draft() -> ProfileDraft {
        ProfileDraft::from(&base())
    }

    #[test]
    fn urls() {
        for ok in [
            "ws://127.0.0.1:8083/mqtt",
            "wss://broker.example.com/mqtt",
            "WS://HOST:1/",
            "ws://[::1]:8083/mqtt",
            "ws://[::1]",
            "ws://user:pw@host:8083/mqtt",
            "ws://host/mqtt?token=1",
        ] {
            assert_eq!(validate_url(ok), Ok(()), "{ok}");
        }
        let err = |u: &str| validate_url(u).unwrap_err();
        assert!(err("").contains("WebSocket URL"));
        assert!(err("mqtt://host:1883").contains("TCP"));
        assert!(err("http://host:8083").contains("ws://"));
        assert!(err("host:8083/mqtt").contains("must start with"));
        assert!(err("ws://:8083/mqtt").contains("no host"));
        assert!(err("ws:///mqtt").contains("no host"));
        assert!(err("ws://host:0/mqtt").contains("1 to 65535"));
        assert!(err("ws://host:99999/mqtt").contains("1 to 65535"));
        assert!(err("ws://host:80a/mqtt").contains("'80a'"));
        assert!(err("ws://host/mq tt").contains("spaces"));
        assert!(err("ws://host/mqtt#x").contains("fragment"));
        assert!(err("ws://[::1/mqtt").contains("closing ]"));
    }

    #[test]
    fn a_valid_draft_becomes_the_profile() {
        let mut d = draft();
        d.name = "  Lab broker ".into();
        d.keep_alive = "30".into();
        d.will = Will {
            enabled: true,
            topic: "lab/status".into(),
            payload: "offline".into(),
            qos: 1,
            retain: true,
        };
        let p = d.apply(&base()).unwrap();
        assert_eq!(p.name, "Lab broker");
        assert_eq!(p.keep_alive, 30);
        assert_eq!(p.id, 1);
        let o = p.options();
        assert_eq!(o.keep_alive, 30);
        assert_eq!(o.client_id, "bridge-web-1");
        assert_eq!(o.version, ProtocolVersion::V3_1_1);
        let will = o.will.unwrap();
        assert_eq!(will.topic, "lab/status");
        assert_eq!(&will.payload[..], b"offline");
        assert_eq!(will.qos, QoS::AtLeastOnce);
        assert!(will.retain);
        assert_eq!(o.username, None);
    }

    #[test]
    fn form_errors_name_their_field() {
        let mut d = draft();
        d.name = " ".into();
        d.url = "tcp://x".into();
        d.keep_alive = "70000".into();
        d.will.enabled = true;
        d.will.topic = "a/+".into();
        let e = d.apply(&base()).unwrap_err();
        assert_eq!(e.len(), 4);
        assert!(e.get(Field::Name).is_some());
        assert!(e.get(Field::Url).unwrap().contains("TCP"));
        assert!(e.get(Field::KeepAlive).unwrap().contains("65535"));
        assert!(e.get(Field::WillTopic).unwrap().contains("wildcards"));
        assert_eq!(e.get(Field::ClientId), None);

        let mut d = draft();
        d.keep_alive = "-1".into();
        assert!(d
            .apply(&base())
            .unwrap_err()
            .get(Field::KeepAlive)
            .is_some());
        d.keep_alive = "65535".into();
        assert!(d.apply(&base()).is_ok());
        d.keep_alive = "0".into();
        assert!(d.apply(&base()).is_ok());
    }

    #[test]
    fn a_disabled_will_is_not_checked() {
        let mut d = draft();
        d.will.topic = "#".into();
        assert!(d.apply(&base()).unwrap().options().will.is_none());
    }

    #[test]
    fn client_id_rules() {
        let mut d = draft();
        d.client_id.clear();
        assert!(d.apply(&base()).is_ok(), "empty id with clean start");
        d.clean_start = false;
        assert!(d.apply(&base()).unwrap_err().get(Field::ClientId).is_some());
        let mut d = draft();
        d.protocol = Protocol::V31;
        d.client_id = "x".repeat(24);
        assert!(d.apply(&base()).unwrap_err().get(Field::ClientId).is_some());
        d.client_id = "x".repeat(23);
        assert_eq!(
            d.apply(&base()).unwrap().options().version,
            ProtocolVersion::V3_1
        );
    }

    #[test]
    fn v5_settings_are_kept_and_checked_only_for_v5() {
        let mut d = draft();
        d.session_expiry = "3600".into();
        let p = d.apply(&base()).unwrap();
        assert_eq!(p.session_expiry, 3600, "kept while hidden");
        d.protocol = Protocol::V5;
        d.session_expiry = "soon".into();
        let result = d.apply(&base());
        if V5_AVAILABLE {
            assert!(result.unwrap_err().get(Field::SessionExpiry).is_some());
        } else {
            let e = result.unwrap_err();
            assert!(e.get(Field::Protocol).unwrap().contains("MQTT 5.0 coming"));
        }
    }

    #[test]
    fn profiles_survive_serde_and_fill_in_missing_fields() {
        let mut p = base();
        p.subscriptions.push(Subscription {
            filter: "a/#".into(),
            qos: 1,
            ..Subscription::default()
        });
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(r#""protocol":"3.1.1""#), "{json}");
        assert_eq!(serde_json::from_str::<Profile>(&json).unwrap(), p);
        let old: Profile = serde_json::from_str(r#"{"id":7,"name":"old"}"#).unwrap();
        assert_eq!(old.id, 7);
        assert_eq!(old.keep_alive, 60);
        assert_eq!(old.publish.topic, "topic_1");
    }

    #[test]
    fn subscription_form() {
        let mut d = SubscriptionDraft {
            filter: "sensors/+/temp".into(),
            qos: 1,
            ..Default::default()
        };
        assert_eq!(d.filter_error(), None);
        let s = d.build(&[]).unwrap();
        assert_eq!(
            (s.filter.as_str(), s.qos, s.color),
            ("sensors/+/temp", 1, 0)
        );
        d.filter = "a/#/b".into();
        assert_eq!(
            d.filter_error().unwrap(),
            "# must be the last level and stand alone."
        );
        d.filter = "".into();
        assert_eq!(d.filter_error().unwrap(), "Topic must not be empty.");
        d.filter = "$share//x".into();
        assert!(d.filter_error().unwrap().contains("share name"));
    }

    #[test]
    fn colours_go_round_the_palette() {
        let mut list = Vec::new();
        for i in 0..(PALETTE_LEN + 2) {
            let d = SubscriptionDraft {
                filter: format!("t/{i}"),
                ..Default::default()
            };
            let s = d.build(&list).unwrap();
            assert_eq!(usize::from(s.color), i % PALETTE_LEN);
            upsert(&mut list, s);
        }
        // The same filter again keeps its colour and its place.
        let again = SubscriptionDraft {
            filter: "t/3".into(),
            qos: 2,
            ..Default::default()
        }
        .build(&list)
        .unwrap();
        assert_eq!(again.color, 3);
        upsert(&mut list, again);
        assert_eq!(list.len(), PALETTE_LEN + 2);
        assert_eq!(list[3].qos, 2);
        // A freed colour is handed out next.
        list.remove(5);
        let fresh = SubscriptionDraft {
            filter: "new".into(),
            ..Default::default()
        };
        assert_eq!(fresh.build(&list).unwrap().color, 5);
    }

    #[test]
    fn publish_form() {
        let p = PublishSettings::default();
        let out = p.build(false).unwrap();
        assert_eq!(out.topic, "topic_1");
        assert_eq!(&out.payload[..], b"hello");

        let bad = PublishSettings {
            topic: "a/+".into(),
            format: Format::Json,
            payload: "{".into(),
            message_expiry: "x".into(),
            ..PublishSettings::default()
        };
        let e = bad.build(false).unwrap_err();
        assert!(e.topic.unwrap().starts_with("Wildcards"));
        assert!(e.payload.unwrap().starts_with("Not valid JSON"));
        assert_eq!(e.message_expiry, None, "5.0 field not checked for 3.1.1");
        assert!(bad.build(true).unwrap_err().message_expiry.is_some());

        let hex = PublishSettings {
            format: Format::Hex,
            payload: "01 02".into(),
            qos: 7,
            ..PublishSettings::default()
        };
        let out = hex.build(false).unwrap();
        assert_eq!(&out.payload[..], [1, 2]);
        assert_eq!(out.qos, 2);
    }

    #[test]
    fn v5_publish_properties() {
        let p = PublishSettings {
            content_type: " application/json ".into(),
            message_expiry: "60".into(),
            response_topic: "replies/me".into(),
            user_properties: vec![
                UserProperty {
                    key: "origin".into(),
                    value: "web".into(),
                },
                UserProperty::default(),
            ],
            ..PublishSettings::default()
        };
        let props = p.build(true).unwrap().properties;
        assert_eq!(props.content_type.as_deref(), Some("application/json"));
        assert_eq!(props.message_expiry_interval, Some(60));
        assert_eq!(props.response_topic.as_deref(), Some("replies/me"));
        assert_eq!(props.user_properties, [("origin".into(), "web".into())]);
        assert_eq!(
            p.build(false).unwrap().properties,
            Properties::default(),
            "3.1.1 sends no properties"
        );
        let bad = PublishSettings {
            response_topic: "replies/#".into(),
            user_properties: vec![UserProperty {
                key: String::new(),
                value: "v".into(),
            }],
            ..PublishSettings::default()
        };
        let e = bad.build(true).unwrap_err();
        assert!(e.response_topic.is_some());
        assert!(e.user_properties.is_some());
    }

    #[test]
    fn subscription_options_reach_the_filter() {
        let s = Subscription {
            filter: "a/#".into(),
            qos: 2,
            color: 0,
            no_local: true,
            retain_as_published: true,
            retain_handling: 9,
        };
        let f = s.to_filter();
        assert_eq!(f.filter, "a/#");
        assert_eq!(f.qos, QoS::ExactlyOnce);
        assert!(f.no_local && f.retain_as_published);
        assert_eq!(f.retain_handling, 2);
    }

    #[test]
    fn v5_profiles_send_session_expiry() {
        let mut d = draft();
        d.protocol = Protocol::V5;
        d.session_expiry = "3600".into();
        let o = d.apply(&base()).unwrap().options();
        assert_eq!(o.version, ProtocolVersion::V5);
        assert_eq!(o.session_expiry, 3600);
        d.protocol = Protocol::V311;
        assert_eq!(d.apply(&base()).unwrap().options().session_expiry, 0);
    }

    #[test]
    fn random_ids() {
        assert_eq!(random_client_id(0xabc), "bridge-web-00000abc");
        assert!(
            random_client_id(u32::MAX).len() <= 23,
            "fits MQTT 3.1's limit"
        );
    }
}
