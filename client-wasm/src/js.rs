//! The JavaScript API, for `wasm-pack build --target web` users.
//!
//! ```js
//! import init, { MqttClient } from './pkg/client_wasm.js';
//! await init();
//! const client = new MqttClient('ws://127.0.0.1:8083/mqtt', { clientId: 'web-1', keepalive: 30 });
//! client.on('connect', () => client.subscribe('topic_1', 1));
//! client.on('message', (topic, payload, packet) => console.log(topic, new TextDecoder().decode(payload), packet.qos));
//! client.on('close', (reason) => console.log('closed:', reason));
//! client.connect();
//! client.publish('topic_1', 'hello from the browser', 0, false);
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use js_sys::{Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::browser::BrowserClient;
use crate::machine::{Event, State};
use crate::options::{LastWill, Options};
use protocol::{ProtocolVersion, QoS};

/// Event name → listeners.
type Listeners = Rc<RefCell<HashMap<String, Vec<Function>>>>;

/// An MQTT client over WebSocket. Events: `connect` (sessionPresent), `message` (topic,
/// payload: Uint8Array, {qos, retain, dup, userProperties}), `publish` (packetId, reason
/// code, when a QoS 1/2 publish is acknowledged), `subscribe` (packetId, [{filter, qos | null}]), `unsubscribe`
/// (packetId, [filter]), `reconnect` (reason, delayMs), `refused` (returnCode), `close`
/// (reason).
#[wasm_bindgen]
pub struct MqttClient {
    client: BrowserClient,
    listeners: Listeners,
}

#[wasm_bindgen]
impl MqttClient {
    /// `options`: `{ clientId, keepalive (s), clean (bool), username, password,
    /// protocolVersion (5 = 5.0, 4 = 3.1.1, 3 = 3.1), sessionExpiry (s, 5.0),
    /// reconnect (bool), reconnectPeriod (ms), will: { topic, payload, qos, retain } }`;
    /// all optional.
    #[wasm_bindgen(constructor)]
    pub fn new(url: &str, options: JsValue) -> Result<MqttClient, JsError> {
        let options = parse_options(&options)?;
        let listeners: Listeners = Rc::default();
        let emit_to = listeners.clone();
        let client = BrowserClient::new(url, options, move |event| emit(&emit_to, event));
        Ok(MqttClient { client, listeners })
    }

    /// Adds a listener for an event (see the type's documentation).
    pub fn on(&self, event: &str, callback: Function) {
        self.listeners
            .borrow_mut()
            .entry(event.to_owned())
            .or_default()
            .push(callback);
    }

    pub fn connect(&self) {
        self.client.connect();
    }

    pub fn disconnect(&self) {
        self.client.disconnect();
    }

    /// `connecting`, `connected`, `reconnecting`, `closed` or `idle`.
    pub fn state(&self) -> String {
        match self.client.state() {
            State::Idle => "idle",
            State::OpenRequested | State::Opening | State::Connecting => "connecting",
            State::Connected => "connected",
            State::WaitingToReconnect { .. } => "reconnecting",
            State::Closed => "closed",
        }
        .into()
    }

    /// Publishes a string or a Uint8Array. Returns the packet id for QoS 1/2.
    pub fn publish(
        &self,
        topic: &str,
        payload: JsValue,
        qos: u8,
        retain: bool,
    ) -> Result<Option<u16>, JsError> {
        let payload = if let Some(text) = payload.as_string() {
            Bytes::from(text.into_bytes())
        } else if let Some(bytes) = payload.dyn_ref::<Uint8Array>() {
            Bytes::from(bytes.to_vec())
        } else if payload.is_undefined() || payload.is_null() {
            Bytes::new()
        } else {
            return Err(JsError::new("payload must be a string or a Uint8Array"));
        };
        Ok(self
            .client
            .publish(topic, payload, qos_from(qos)?, retain)?)
    }

    pub fn subscribe(&self, filter: &str, qos: u8) -> Result<u16, JsError> {
        Ok(self.client.subscribe(&[(filter, qos_from(qos)?)])?)
    }

    pub fn unsubscribe(&self, filter: &str) -> Result<u16, JsError> {
        Ok(self.client.unsubscribe(&[filter])?)
    }
}

fn qos_from(value: u8) -> Result<QoS, JsError> {
    QoS::from_u8(value).ok_or_else(|| JsError::new("qos must be 0, 1 or 2"))
}

fn emit(listeners: &Listeners, event: Event) {
    let (name, args): (&str, Vec<JsValue>) = match event {
        Event::Connected { session_present } => ("connect", vec![session_present.into()]),
        Event::Refused { code } => (
            "refused",
            vec![code.into(), protocol::reason::describe(code).into()],
        ),
        Event::ConnectionLost {
            reason,
            reconnect_in: Some(delay),
        } => ("reconnect", vec![reason.into(), (delay as f64).into()]),
        Event::ConnectionLost {
            reason,
            reconnect_in: None,
        } => ("close", vec![reason.into()]),
        Event::Closed => ("close", vec!["disconnected".into()]),
        Event::Message(publish) => {
            let info = Object::new();
            let _ = Reflect::set(&info, &"qos".into(), &(publish.qos as u8).into());
            let _ = Reflect::set(&info, &"retain".into(), &publish.retain.into());
            let _ = Reflect::set(&info, &"dup".into(), &publish.dup.into());
            let users = Object::new();
            for (k, v) in &publish.properties.user_properties {
                let _ = Reflect::set(&users, &k.into(), &v.into());
            }
            let _ = Reflect::set(&info, &"userProperties".into(), &users.into());
            (
                "message",
                vec![
                    publish.topic.into(),
                    Uint8Array::from(&publish.payload[..]).into(),
                    info.into(),
                ],
            )
        }
        Event::PublishComplete { pkid, reason } => ("publish", vec![pkid.into(), reason.into()]),
        Event::PublishAbandoned { pkid } => ("abandoned", vec![pkid.into()]),
        Event::Subscribed { pkid, results } => {
            let list = js_sys::Array::new();
            for (filter, code) in results {
                let entry = Object::new();
                let _ = Reflect::set(&entry, &"filter".into(), &filter.into());
                let qos = if code < protocol::reason::UNSPECIFIED_ERROR {
                    JsValue::from(code)
                } else {
                    JsValue::NULL
                };
                let _ = Reflect::set(&entry, &"qos".into(), &qos);
                list.push(&entry);
            }
            ("subscribe", vec![pkid.into(), list.into()])
        }
        Event::Unsubscribed { pkid, filters } => {
            let list: js_sys::Array = filters.into_iter().map(JsValue::from).collect();
            ("unsubscribe", vec![pkid.into(), list.into()])
        }
    };
    // Cloned out so a listener may add listeners without a double borrow.
    let callbacks = listeners.borrow().get(name).cloned().unwrap_or_default();
    let args: js_sys::Array = args.into_iter().collect();
    for callback in callbacks {
        let _ = callback.apply(&JsValue::NULL, &args);
    }
}

fn parse_options(value: &JsValue) -> Result<Options, JsError> {
    let get = |key: &str| {
        Reflect::get(value, &key.into())
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
    };
    let mut options = Options::new(
        get("clientId")
            .and_then(|v| v.as_string())
            .unwrap_or_default(),
    );
    if value.is_undefined() || value.is_null() {
        return Ok(options);
    }
    if let Some(v) = get("keepalive").and_then(|v| v.as_f64()) {
        options.keep_alive =
            u16::try_from(v as i64).map_err(|_| JsError::new("keepalive must be 0..65535"))?;
    }
    if let Some(v) = get("clean").and_then(|v| v.as_bool()) {
        options.clean_session = v;
    }
    options.username = get("username").and_then(|v| v.as_string());
    options.password = get("password")
        .and_then(|v| v.as_string())
        .map(|p| Bytes::from(p.into_bytes()));
    if let Some(v) = get("protocolVersion").and_then(|v| v.as_f64()) {
        options.version = match v as u8 {
            3 => ProtocolVersion::V3_1,
            4 => ProtocolVersion::V3_1_1,
            5 => ProtocolVersion::V5,
            _ => {
                return Err(JsError::new(
                    "protocolVersion must be 3 (3.1), 4 (3.1.1) or 5 (5.0)",
                ))
            }
        };
    }
    if let Some(v) = get("sessionExpiry").and_then(|v| v.as_f64()) {
        options.session_expiry = v.clamp(0.0, f64::from(u32::MAX)) as u32;
    }
    if let Some(v) = get("reconnect").and_then(|v| v.as_bool()) {
        options.reconnect = v;
    }
    if let Some(v) = get("reconnectPeriod").and_then(|v| v.as_f64()) {
        options.reconnect_min_ms = v.max(0.0) as u64;
    }
    if let Some(will) = get("will") {
        let field = |key: &str| Reflect::get(&will, &key.into()).ok();
        let topic = field("topic")
            .and_then(|v| v.as_string())
            .ok_or_else(|| JsError::new("will.topic is required"))?;
        let payload = field("payload")
            .and_then(|v| v.as_string())
            .unwrap_or_default();
        let qos = qos_from(field("qos").and_then(|v| v.as_f64()).unwrap_or(0.0) as u8)?;
        let retain = field("retain").and_then(|v| v.as_bool()).unwrap_or(false);
        options.will = Some(LastWill::new(
            topic,
            Bytes::from(payload.into_bytes()),
            qos,
            retain,
        ));
    }
    Ok(options)
}
