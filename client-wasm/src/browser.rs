//! Drives the state machine in a browser: a `web-sys` WebSocket (subprotocol `mqtt`,
//! binary frames) and `setTimeout` for keep-alive and reconnects.
//!
//! Everything runs on the browser's one thread, so the shared state is an
//! `Rc<RefCell<…>>`. Callbacks into the application run only after the borrow is
//! released, so an application may call back into the client from them.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use bytes::Bytes;
use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::machine::{Client, ClientError, Event, Millis, State};
use crate::options::Options;
use protocol::{Properties, QoS, SubscribeFilter};

/// The MQTT-over-WebSocket subprotocol (MQTT 3.1.1 §6, MQTT 5.0 §6).
const SUBPROTOCOL: &str = "mqtt";

type EventHandler = Rc<dyn Fn(Event)>;

/// An MQTT client connected through the browser's WebSocket. Cheap to clone.
#[derive(Clone)]
pub struct BrowserClient {
    inner: Rc<RefCell<Inner>>,
}

struct Inner {
    machine: Client,
    url: String,
    socket: Option<Socket>,
    /// Bumped for every socket, so events of an old one are ignored.
    generation: u32,
    timer: Timer,
    on_event: EventHandler,
}

/// The client's one timer. The callback is made once and lives as long as the client, so
/// re-arming never creates (or frees, possibly mid-call) a JavaScript closure.
struct Timer {
    callback: Closure<dyn FnMut()>,
    handle: Option<i32>,
    armed_for: Option<Millis>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A pending timer would call a freed closure.
        if let (Some(handle), Some(window)) = (self.timer.handle.take(), web_sys::window()) {
            window.clear_timeout_with_handle(handle);
        }
        retire(self.socket.take());
    }
}

/// A WebSocket with the closures that must live as long as it does.
struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Normally already closed by `retire`; closing twice is harmless.
        let _ = self.ws.close();
    }
}

fn now() -> Millis {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now() as Millis)
        .unwrap_or_else(|| js_sys::Date::now() as Millis)
}

impl BrowserClient {
    /// A client for the broker at `url` (e.g. `ws://127.0.0.1:8083/mqtt`) that reports
    /// every [`Event`] to `on_event`. Nothing happens until [`BrowserClient::connect`].
    pub fn new(url: &str, options: Options, on_event: impl Fn(Event) + 'static) -> BrowserClient {
        let inner = Rc::new_cyclic(|weak: &Weak<RefCell<Inner>>| {
            let weak = weak.clone();
            let callback = Closure::<dyn FnMut()>::new(move || {
                if let Some(inner) = weak.upgrade() {
                    BrowserClient { inner }.on_timer();
                }
            });
            RefCell::new(Inner {
                machine: Client::new(options),
                url: url.to_owned(),
                socket: None,
                generation: 0,
                timer: Timer {
                    callback,
                    handle: None,
                    armed_for: None,
                },
                on_event: Rc::new(on_event),
            })
        });
        BrowserClient { inner }
    }

    pub fn state(&self) -> State {
        self.inner.borrow().machine.state()
    }

    pub fn options(&self) -> Options {
        self.inner.borrow().machine.options().clone()
    }

    pub fn connect(&self) {
        self.inner.borrow_mut().machine.connect();
        self.pump();
    }

    pub fn disconnect(&self) {
        self.inner.borrow_mut().machine.disconnect();
        self.pump();
    }

    pub fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        retain: bool,
    ) -> Result<Option<u16>, ClientError> {
        let result = self
            .inner
            .borrow_mut()
            .machine
            .publish(topic, payload, qos, retain);
        self.pump();
        result
    }

    /// Publishes with 5.0 properties (ignored for 3.1.1).
    pub fn publish_with(
        &self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        properties: Properties,
    ) -> Result<Option<u16>, ClientError> {
        let result = self
            .inner
            .borrow_mut()
            .machine
            .publish_with(topic, payload, qos, retain, properties);
        self.pump();
        result
    }

    /// Subscribes with 5.0 options and an optional subscription identifier.
    pub fn subscribe_with(
        &self,
        filters: Vec<SubscribeFilter>,
        subscription_id: Option<u32>,
    ) -> Result<u16, ClientError> {
        let result = self
            .inner
            .borrow_mut()
            .machine
            .subscribe_with(filters, subscription_id);
        self.pump();
        result
    }

    /// The client identifier in use (the broker may have assigned it).
    pub fn client_id(&self) -> String {
        self.inner.borrow().machine.client_id().to_owned()
    }

    pub fn subscribe(&self, filters: &[(&str, QoS)]) -> Result<u16, ClientError> {
        let result = self.inner.borrow_mut().machine.subscribe(filters);
        self.pump();
        result
    }

    pub fn unsubscribe(&self, filters: &[&str]) -> Result<u16, ClientError> {
        let result = self.inner.borrow_mut().machine.unsubscribe(filters);
        self.pump();
        result
    }

    /// Does whatever the state machine asks for, then tells the application what happened.
    fn pump(&self) {
        let events = {
            let mut inner = self.inner.borrow_mut();
            let now = now();
            if inner.machine.poll_open(now) {
                if let Err(reason) = self.open_socket(&mut inner) {
                    inner.machine.handle_transport_closed(now, &reason);
                }
            }
            if let Some(socket) = &inner.socket {
                if socket.ws.ready_state() == WebSocket::OPEN {
                    let ws = socket.ws.clone();
                    while let Some(bytes) = inner.machine.poll_transmit(now) {
                        if let Err(e) = ws.send_with_u8_array(&bytes) {
                            inner.machine.handle_transport_closed(now, &js_error(&e));
                            retire(inner.socket.take());
                            break;
                        }
                    }
                }
            }
            if inner.machine.poll_close() {
                // Retiring the socket closes it; its close event will not reach us, so the
                // machine is told here.
                retire(inner.socket.take());
                inner
                    .machine
                    .handle_transport_closed(now, "closed by the client");
            }
            self.schedule_timer(&mut inner, now);
            let mut events = Vec::new();
            while let Some(event) = inner.machine.poll_event() {
                events.push(event);
            }
            (events, inner.on_event.clone())
        };
        let (events, on_event) = events;
        for event in events {
            on_event(event);
        }
        // A reconnect due now (or state changed by a callback) needs another turn.
        let due = {
            let inner = self.inner.borrow();
            matches!(inner.machine.state(), State::OpenRequested)
        };
        if due {
            self.pump();
        }
    }

    fn open_socket(&self, inner: &mut Inner) -> Result<(), String> {
        inner.generation = inner.generation.wrapping_add(1);
        let generation = inner.generation;
        let ws = WebSocket::new_with_str(&inner.url, SUBPROTOCOL).map_err(|e| js_error(&e))?;
        ws.set_binary_type(BinaryType::Arraybuffer);

        let weak = Rc::downgrade(&self.inner);
        let on_open = Closure::<dyn FnMut()>::new({
            let weak = weak.clone();
            move || {
                with_current(&weak, generation, |client| {
                    client
                        .inner
                        .borrow_mut()
                        .machine
                        .handle_transport_open(now());
                })
            }
        });
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
            let weak = weak.clone();
            move |event: MessageEvent| {
                let Ok(buffer) = event.data().dyn_into::<ArrayBuffer>() else {
                    // MQTT-6.0.0-1: text frames are not MQTT; drop the connection.
                    with_current(&weak, generation, |client| {
                        let mut inner = client.inner.borrow_mut();
                        retire(inner.socket.take());
                        inner
                            .machine
                            .handle_transport_closed(now(), "the broker sent a non-binary frame");
                    });
                    return;
                };
                let bytes = Uint8Array::new(&buffer).to_vec();
                with_current(&weak, generation, |client| {
                    client
                        .inner
                        .borrow_mut()
                        .machine
                        .handle_input(now(), &bytes);
                });
            }
        });
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new({
            let weak = weak.clone();
            move |event: CloseEvent| {
                let reason = if event.reason().is_empty() {
                    format!("connection closed (code {})", event.code())
                } else {
                    format!(
                        "connection closed: {} (code {})",
                        event.reason(),
                        event.code()
                    )
                };
                with_current(&weak, generation, |client| {
                    let mut inner = client.inner.borrow_mut();
                    retire(inner.socket.take());
                    inner.machine.handle_transport_closed(now(), &reason);
                });
            }
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        retire(inner.socket.take());
        inner.socket = Some(Socket {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        });
        Ok(())
    }

    /// Arms the one `setTimeout` for the machine's next deadline, if it changed.
    fn schedule_timer(&self, inner: &mut Inner, now: Millis) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let next = inner.machine.next_timeout();
        if next == inner.timer.armed_for {
            return;
        }
        if let Some(handle) = inner.timer.handle.take() {
            window.clear_timeout_with_handle(handle);
        }
        inner.timer.armed_for = next;
        let Some(at) = next else {
            return;
        };
        let delay = at.saturating_sub(now).min(i32::MAX as u64) as i32;
        inner.timer.handle = window
            .set_timeout_with_callback_and_timeout_and_arguments_0(
                inner.timer.callback.as_ref().unchecked_ref(),
                delay,
            )
            .ok();
    }

    /// The timer fired.
    fn on_timer(&self) {
        {
            let mut inner = self.inner.borrow_mut();
            inner.timer.handle = None;
            inner.timer.armed_for = None;
            // Timers may fire a little early by the performance clock: never report a time
            // before the deadline they were armed for.
            let now = now() + 1;
            inner.machine.handle_timeout(now);
        }
        self.pump();
    }
}

/// Closes a socket and frees its closures on a later turn of the event loop: it may be
/// one of its own handlers that is running now, and a closure must not be freed while it runs.
fn retire(socket: Option<Socket>) {
    let Some(socket) = socket else {
        return;
    };
    socket.ws.set_onopen(None);
    socket.ws.set_onmessage(None);
    socket.ws.set_onclose(None);
    let _ = socket.ws.close();
    let free = Closure::once_into_js(move || drop(socket));
    if let Some(window) = web_sys::window() {
        let _ =
            window.set_timeout_with_callback_and_timeout_and_arguments_0(free.unchecked_ref(), 0);
    }
}

/// Runs `f` for the client if it still exists and `generation` is its current socket,
/// then pumps it.
fn with_current(weak: &Weak<RefCell<Inner>>, generation: u32, f: impl FnOnce(&BrowserClient)) {
    let Some(inner) = weak.upgrade() else {
        return;
    };
    if inner.borrow().generation != generation {
        return;
    }
    let client = BrowserClient { inner };
    f(&client);
    client.pump();
}

fn js_error(value: &JsValue) -> String {
    value
        .as_string()
        .or_else(|| {
            value
                .dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{value:?}"))
}
