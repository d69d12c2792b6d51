//! The MQTT client page, in the style of MQTTX and MQTT.fx: connection profiles on the
//! left; for the chosen one a connection form, its subscriptions, the live message list
//! and a publish form.
//!
//! [`ClientPage`] owns the profiles (saved in localStorage) and one [`Session`] per
//! profile that has connected: several connections can be open at once. Each pane is its
//! own component in its own module and talks back through callbacks.
//!
//! Messages can arrive by the thousand per second. The client's event handler does not
//! go through Yew for them: it appends them to the session's inbox, and a 100 ms ticker
//! moves whatever has arrived into the (capped) history and re-renders once. When a
//! render takes long (a slow machine, a flood) the next one waits at least as long, so
//! the page never spends more than about half its time on the list.

mod conn;
mod connection;
mod fields;
pub mod history;
mod messages;
pub mod payload;
pub mod profile;
mod publish;
mod sidebar;
pub mod status;
pub mod store;
mod subscriptions;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use client_wasm::{ClientError, Event, Publish};
use gloo_timers::callback::Interval;
use yew::prelude::*;

use crate::platform;
use conn::Connection;
use connection::ConnectionPane;
use history::{color_for, Direction, Entry, History};
use messages::MessagesPane;
use payload::group_digits;
use profile::{upsert, Outgoing, Profile, PublishSettings, Subscription};
use publish::PublishPane;
use sidebar::{Sidebar, SidebarItem};
use status::Status;
use store::Stored;
use subscriptions::{SubState, SubscriptionsPane};

/// An `Rc` compared by identity: props holding one re-render only when it was replaced,
/// without comparing thousands of messages.
pub struct Shared<T>(pub Rc<T>);

impl<T> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

/// How often arrived messages are moved into the list (and the list re-rendered).
const FLUSH_MS: u32 = 100;

/// The panes of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Connection,
    Subscriptions,
    Messages,
    Publish,
}

impl Tab {
    const ALL: [Tab; 4] = [
        Tab::Connection,
        Tab::Subscriptions,
        Tab::Messages,
        Tab::Publish,
    ];

    fn label(self) -> &'static str {
        match self {
            Tab::Connection => "Connection",
            Tab::Subscriptions => "Subscriptions",
            Tab::Messages => "Messages",
            Tab::Publish => "Publish",
        }
    }

    /// The tab the arrow keys (and Home, End) lead to from this one, as the ARIA tabs
    /// pattern has it.
    fn step(self, key: &str) -> Option<Tab> {
        let i = Tab::ALL.iter().position(|t| *t == self)?;
        let n = Tab::ALL.len();
        let to = match key {
            "ArrowRight" => (i + 1) % n,
            "ArrowLeft" => (i + n - 1) % n,
            "Home" => 0,
            "End" => n - 1,
            _ => return None,
        };
        Some(Tab::ALL[to])
    }

    fn key(self) -> &'static str {
        match self {
            Tab::Connection => "connection",
            Tab::Subscriptions => "subscriptions",
            Tab::Messages => "messages",
            Tab::Publish => "publish",
        }
    }
}

/// A message as the client handed it over, waiting for the next flush.
struct Incoming {
    time_ms: f64,
    publish: Box<Publish>,
}

/// The live side of a profile: its connection and what it has seen.
#[derive(Default)]
struct Session {
    conn: Option<Connection>,
    /// Bumped for each connection, so late events of a replaced one are ignored.
    generation: u32,
    status: Status,
    /// What the broker said to each of the profile's subscriptions on this connection.
    subs: HashMap<String, SubState>,
    /// Filters removed while the connection was down: the client still knows them and
    /// would subscribe them again, so they are unsubscribed on the next CONNACK.
    stale: Vec<String>,
    history: Rc<History>,
    inbox: Rc<RefCell<Vec<Incoming>>>,
    /// The last publish: what happened to it.
    publish_result: Option<Result<String, String>>,
    last_pkid: Option<u16>,
}

pub enum Msg {
    Select(u32),
    New,
    Save(Profile),
    SaveAndConnect(Profile),
    Delete(u32),
    Connect(u32),
    Disconnect(u32),
    Tab(Tab),
    /// An event of profile `.0`'s connection number `.1`.
    Event(u32, u32, Event),
    Flush,
    Subscribe(u32, Subscription),
    Unsubscribe(u32, String),
    Publish(u32, PublishSettings, Outgoing),
    Clear(u32),
}

pub struct ClientPage {
    stored: Stored,
    default_url: String,
    sessions: HashMap<u32, Session>,
    tab: Tab,
    /// Set by the event handler when an inbox got a message.
    dirty: Rc<Cell<bool>>,
    /// No flush before this time (ms since the epoch): see the module documentation.
    next_flush_at: Rc<Cell<f64>>,
    /// When the flush being rendered started.
    flush_started: Option<f64>,
    next_entry: u64,
    /// Whether localStorage took the last save.
    saved: bool,
    _ticker: Interval,
}

impl Component for ClientPage {
    type Message = Msg;
    type Properties = ();

    fn create(ctx: &Context<Self>) -> Self {
        let default_url = platform::endpoints().ws;
        let saved = platform::load(store::KEY);
        let mut stored = Stored::parse(saved.as_deref(), &default_url, platform::random_u32());
        if stored.selected.and_then(|id| stored.get(id)).is_none() {
            stored.selected = stored.profiles.first().map(|p| p.id);
        }
        let dirty = Rc::new(Cell::new(false));
        let next_flush_at = Rc::new(Cell::new(0.0));
        let ticker = {
            let dirty = dirty.clone();
            let next_flush_at = next_flush_at.clone();
            let link = ctx.link().clone();
            Interval::new(FLUSH_MS, move || {
                if dirty.get() && platform::now_ms() >= next_flush_at.get() {
                    dirty.set(false);
                    link.send_message(Msg::Flush);
                }
            })
        };
        let mut page = ClientPage {
            stored,
            default_url,
            sessions: HashMap::new(),
            tab: Tab::Connection,
            dirty,
            next_flush_at,
            flush_started: None,
            next_entry: 0,
            saved: true,
            _ticker: ticker,
        };
        if saved.is_none() {
            page.persist();
        }
        page
    }

    fn update(&mut self, ctx: &Context<Self>, msg: Msg) -> bool {
        match msg {
            Msg::Select(id) => {
                self.stored.selected = Some(id);
                self.persist();
            }
            Msg::New => {
                let id = self.stored.next_id();
                let name = self.stored.next_name();
                let client_id = profile::random_client_id(platform::random_u32());
                let profile = Profile::new(id, &name, &self.default_url, client_id);
                self.stored.profiles.push(profile);
                self.stored.selected = Some(id);
                self.tab = Tab::Connection;
                self.persist();
            }
            Msg::Save(profile) => self.save(profile),
            Msg::SaveAndConnect(profile) => {
                let id = profile.id;
                self.save(profile);
                self.connect(ctx, id);
            }
            Msg::Delete(id) => {
                if let Some(session) = self.sessions.remove(&id) {
                    if let Some(conn) = &session.conn {
                        conn.disconnect();
                    }
                }
                self.stored.profiles.retain(|p| p.id != id);
                if self.stored.selected == Some(id) {
                    self.stored.selected = self.stored.profiles.first().map(|p| p.id);
                }
                self.persist();
            }
            Msg::Connect(id) => self.connect(ctx, id),
            Msg::Disconnect(id) => {
                if let Some(session) = self.sessions.get_mut(&id) {
                    match &session.conn {
                        Some(conn) => conn.disconnect(),
                        None => session.status = Status::Disconnected,
                    }
                }
            }
            Msg::Tab(tab) => self.tab = tab,
            Msg::Event(id, generation, event) => return self.on_event(id, generation, event),
            Msg::Flush => {
                let any = self.flush();
                if any {
                    self.flush_started = Some(platform::now_ms());
                }
                return any;
            }
            Msg::Subscribe(id, sub) => self.subscribe(id, sub),
            Msg::Unsubscribe(id, filter) => self.unsubscribe(id, filter),
            Msg::Publish(id, settings, outgoing) => self.publish(id, settings, outgoing),
            Msg::Clear(id) => {
                if let Some(session) = self.sessions.get_mut(&id) {
                    Rc::make_mut(&mut session.history).clear();
                    session.inbox.borrow_mut().clear();
                }
            }
        }
        true
    }

    fn rendered(&mut self, _ctx: &Context<Self>, _first_render: bool) {
        if let Some(started) = self.flush_started.take() {
            let now = platform::now_ms();
            self.next_flush_at.set(now + (now - started));
        }
    }

    fn view(&self, ctx: &Context<Self>) -> Html {
        let link = ctx.link();
        let items: Vec<SidebarItem> = self
            .stored
            .profiles
            .iter()
            .map(|p| {
                let status = self.status(p.id);
                SidebarItem {
                    id: p.id,
                    name: p.name.clone().into(),
                    url: p.url.clone().into(),
                    status_class: status.class(),
                    status_label: status.label(),
                }
            })
            .collect();
        let sidebar = html! {
            <Sidebar items={items} selected={self.stored.selected}
                onselect={link.callback(Msg::Select)} onnew={link.callback(|_| Msg::New)} />
        };
        let Some(profile) = self.stored.selected.and_then(|id| self.stored.get(id)) else {
            return html! {
                <div class="client">
                    { sidebar }
                    <section class="main empty">
                        <h2>{ "No connections" }</h2>
                        <p>{ "A connection profile holds a broker's address and how to log in." }</p>
                        <button class="primary" onclick={link.callback(|_| Msg::New)}>
                            { "New connection" }
                        </button>
                    </section>
                </div>
            };
        };
        let id = profile.id;
        let session = self.sessions.get(&id);
        let status = self.status(id);
        let empty_history = Rc::new(History::default());
        let history = session.map_or(empty_history, |s| s.history.clone());
        let sub_states: Rc<HashMap<String, SubState>> =
            Rc::new(session.map(|s| s.subs.clone()).unwrap_or_default());
        let connected = status.is_connected();
        let v5 = profile.protocol.is_v5();

        let toggle = if status.is_active() {
            html! {
                <button class="danger" onclick={link.callback(move |_| Msg::Disconnect(id))}>
                    { "Disconnect" }
                </button>
            }
        } else {
            html! {
                <button class="primary" onclick={link.callback(move |_| Msg::Connect(id))}>
                    { "Connect" }
                </button>
            }
        };
        let count = history.len();
        let tab_badge = |tab: Tab| match tab {
            Tab::Subscriptions if !profile.subscriptions.is_empty() => {
                Some(profile.subscriptions.len().to_string())
            }
            Tab::Messages if count > 0 => Some(group_digits(count as u64)),
            _ => None,
        };

        html! {
            <div class="client">
                { sidebar }
                <section class={classes!("main", format!("tab-{}", self.tab.key()))}
                    aria-label={format!("Connection {}", profile.name)}>
                    <div class="bar">
                        <div class="bar-title">
                            <h1>{ &profile.name }</h1>
                            <code class="url">{ &profile.url }</code>
                        </div>
                        <span class={classes!("pill", status.class())} role="status"
                            aria-live="polite" data-status={status.class()}>
                            <span class="dot" aria-hidden="true"></span>
                            { status.label() }
                        </span>
                        { toggle }
                    </div>
                    if let Some(detail) = status.detail() {
                        <p class={classes!("status-detail", status.class())} role="alert">{ detail }</p>
                    }
                    if !self.saved {
                        <p class="status-detail error">
                            { "This browser refused to save the profiles (localStorage): \
                               they last only as long as this tab." }
                        </p>
                    }
                    <div class="tabs" role="tablist" aria-label="Panes"
                        onkeydown={link.batch_callback({
                            let current = self.tab;
                            move |e: KeyboardEvent| {
                                let next = current.step(&e.key())?;
                                e.prevent_default();
                                platform::focus(&format!("tab-{}", next.key()));
                                Some(Msg::Tab(next))
                            }
                        })}>
                        { for Tab::ALL.iter().map(|&tab| {
                            let selected = tab == self.tab;
                            html! {
                                <button role="tab" id={format!("tab-{}", tab.key())}
                                    tabindex={if selected { "0" } else { "-1" }}
                                    class={classes!("tab", selected.then_some("active"))}
                                    aria-selected={selected.to_string()}
                                    aria-controls={format!("pane-{}", tab.key())}
                                    onclick={link.callback(move |_| Msg::Tab(tab))}>
                                    { tab.label() }
                                    if let Some(badge) = tab_badge(tab) {
                                        <span class="badge">{ badge }</span>
                                    }
                                </button>
                            }
                        }) }
                    </div>
                    <ConnectionPane key={format!("connection-{id}")} profile={profile.clone()}
                        status={status.clone()}
                        onsave={link.callback(Msg::Save)}
                        onconnect={link.callback(Msg::SaveAndConnect)}
                        ondelete={link.callback(Msg::Delete)} />
                    <div class="workspace">
                        <SubscriptionsPane key={format!("subs-{id}")}
                            subscriptions={profile.subscriptions.clone()}
                            states={sub_states} {connected} {v5}
                            current={self.tab == Tab::Subscriptions}
                            onsubscribe={link.callback(move |s| Msg::Subscribe(id, s))}
                            onunsubscribe={link.callback(move |f| Msg::Unsubscribe(id, f))} />
                        <MessagesPane key={format!("messages-{id}")} history={Shared(history)}
                            current={self.tab == Tab::Messages}
                            onclear={link.callback(move |_| Msg::Clear(id))} />
                        <PublishPane key={format!("publish-{id}")}
                            settings={profile.publish.clone()} {connected} {v5}
                            current={self.tab == Tab::Publish}
                            result={session.and_then(|s| s.publish_result.clone())}
                            onpublish={link.callback(move |(s, o)| Msg::Publish(id, s, o))} />
                    </div>
                </section>
            </div>
        }
    }
}

impl ClientPage {
    fn status(&self, id: u32) -> Status {
        self.sessions
            .get(&id)
            .map(|s| s.status.clone())
            .unwrap_or_default()
    }

    fn persist(&mut self) {
        self.saved = platform::save(store::KEY, &self.stored.to_json());
    }

    fn save(&mut self, profile: Profile) {
        if let Some(slot) = self.stored.get_mut(profile.id) {
            *slot = profile;
            self.persist();
        }
    }

    fn connect(&mut self, ctx: &Context<Self>, id: u32) {
        let Some(profile) = self.stored.get(id) else {
            return;
        };
        let session = self.sessions.entry(id).or_default();
        if let Some(old) = session.conn.take() {
            old.disconnect();
        }
        session.generation = session.generation.wrapping_add(1);
        let generation = session.generation;
        let inbox = session.inbox.clone();
        let dirty = self.dirty.clone();
        let link = ctx.link().clone();
        let on_event = move |event: Event| match event {
            Event::Message(publish) => {
                inbox.borrow_mut().push(Incoming {
                    time_ms: platform::now_ms(),
                    publish,
                });
                dirty.set(true);
            }
            other => link.send_message(Msg::Event(id, generation, other)),
        };
        session.status = Status::Connecting;
        session.subs.clear();
        session.stale.clear();
        session.publish_result = None;
        session.conn = Some(Connection::open(&profile.url, profile.options(), on_event));
    }

    fn on_event(&mut self, id: u32, generation: u32, event: Event) -> bool {
        let Some(session) = self.sessions.get_mut(&id) else {
            return false;
        };
        if session.generation != generation {
            return false;
        }
        session.status = session.status.after(&event);
        match event {
            Event::Connected { .. } => {
                let Some(conn) = &session.conn else {
                    return true;
                };
                if !session.stale.is_empty() {
                    let stale = std::mem::take(&mut session.stale);
                    let filters: Vec<&str> = stale.iter().map(String::as_str).collect();
                    let _ = conn.unsubscribe(&filters);
                }
                // The client re-subscribes what it had itself; send the rest (all of them
                // on a first connect, those added while the connection was down later).
                let missing: Vec<Subscription> = self
                    .stored
                    .get(id)
                    .map(|p| p.subscriptions.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .filter(|s| !session.subs.get(&s.filter).is_some_and(SubState::is_live))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    let state = match conn.subscribe(&missing) {
                        Ok(_) => SubState::Pending,
                        Err(e) => SubState::Error(error_text(&e)),
                    };
                    for s in &missing {
                        session.subs.insert(s.filter.clone(), state.clone());
                    }
                }
            }
            Event::Subscribed { results, .. } => {
                for (filter, code) in results {
                    session.subs.insert(filter, SubState::Acked(code));
                }
            }
            Event::Unsubscribed { filters, .. } => {
                for filter in filters {
                    session.subs.remove(&filter);
                }
            }
            Event::PublishComplete { pkid, reason } if session.last_pkid == Some(pkid) => {
                session.publish_result = match session.publish_result.take() {
                    Some(Ok(text)) => Some(ack_text(text, reason)),
                    other => other,
                };
            }
            Event::PublishAbandoned { pkid } if session.last_pkid == Some(pkid) => {
                session.publish_result = Some(Err(
                    "The publish was dropped: the connection was lost before the broker \
                     acknowledged it."
                        .into(),
                ));
            }
            _ => {}
        }
        true
    }

    /// Moves arrived messages into the histories; true when there were any.
    fn flush(&mut self) -> bool {
        let mut any = false;
        for (id, session) in &mut self.sessions {
            let arrived: Vec<Incoming> = std::mem::take(&mut *session.inbox.borrow_mut());
            if arrived.is_empty() {
                continue;
            }
            any = true;
            let subs: &[Subscription] = self
                .stored
                .get(*id)
                .map(|p| p.subscriptions.as_slice())
                .unwrap_or_default();
            // Only the newest HISTORY_CAP can survive: skip converting the rest.
            let history = Rc::make_mut(&mut session.history);
            let skip = arrived.len().saturating_sub(history.cap());
            history.dropped += skip as u64;
            for Incoming { time_ms, publish } in arrived.into_iter().skip(skip) {
                self.next_entry += 1;
                let p = *publish;
                history.push(Entry {
                    id: self.next_entry,
                    dir: Direction::In,
                    time_ms,
                    color: color_for(subs, &p.topic),
                    meta: meta(&p),
                    topic: p.topic,
                    qos: p.qos as u8,
                    retain: p.retain,
                    dup: p.dup,
                    payload: p.payload,
                });
            }
        }
        any
    }

    fn subscribe(&mut self, id: u32, sub: Subscription) {
        let Some(profile) = self.stored.get_mut(id) else {
            return;
        };
        upsert(&mut profile.subscriptions, sub.clone());
        self.persist();
        if let Some(session) = self.sessions.get_mut(&id) {
            if let (Some(conn), true) = (&session.conn, session.status.is_connected()) {
                let state = match conn.subscribe(std::slice::from_ref(&sub)) {
                    Ok(_) => SubState::Pending,
                    Err(e) => SubState::Error(error_text(&e)),
                };
                session.subs.insert(sub.filter, state);
            }
        }
    }

    fn unsubscribe(&mut self, id: u32, filter: String) {
        let Some(profile) = self.stored.get_mut(id) else {
            return;
        };
        profile.subscriptions.retain(|s| s.filter != filter);
        self.persist();
        if let Some(session) = self.sessions.get_mut(&id) {
            let known = session.subs.remove(&filter).is_some_and(|s| s.is_live());
            match &session.conn {
                Some(conn) if session.status.is_connected() => {
                    let _ = conn.unsubscribe(&[filter.as_str()]);
                }
                Some(_) if known && session.status.is_active() => session.stale.push(filter),
                _ => {}
            }
        }
    }

    fn publish(&mut self, id: u32, settings: PublishSettings, out: Outgoing) {
        let Some(profile) = self.stored.get_mut(id) else {
            return;
        };
        if profile.publish != settings {
            profile.publish = settings;
            self.persist();
        }
        let subs = self
            .stored
            .get(id)
            .map(|p| p.subscriptions.clone())
            .unwrap_or_default();
        let session = self.sessions.entry(id).or_default();
        let result = match &session.conn {
            Some(conn) if session.status.is_connected() => {
                conn.publish(&out).map_err(|e| error_text(&e))
            }
            _ => Err(error_text(&ClientError::NotConnected)),
        };
        session.publish_result = Some(match result {
            Ok(pkid) => {
                session.last_pkid = pkid;
                self.next_entry += 1;
                let size = out.payload.len();
                Rc::make_mut(&mut session.history).push(Entry {
                    id: self.next_entry,
                    dir: Direction::Out,
                    time_ms: platform::now_ms(),
                    color: color_for(&subs, &out.topic),
                    meta: Vec::new(),
                    topic: out.topic.clone(),
                    qos: out.qos,
                    retain: out.retain,
                    dup: false,
                    payload: out.payload,
                });
                Ok(format!(
                    "Published {} to {} (QoS {}{})",
                    plural(size, "byte"),
                    out.topic,
                    out.qos,
                    if out.retain { ", retained" } else { "" }
                ))
            }
            Err(e) => Err(e),
        });
    }
}

/// The publish result once the broker acknowledged it (5.0 brokers add a reason).
fn ack_text(text: String, reason: u8) -> Result<String, String> {
    match reason {
        0 => Ok(format!("{text} · acknowledged")),
        r if r < client_wasm::reason::UNSPECIFIED_ERROR => Ok(format!(
            "{text} · acknowledged: {}",
            client_wasm::reason::describe(r)
        )),
        r => Err(format!(
            "{text}, but the broker refused it: {} (0x{r:02X}).",
            client_wasm::reason::describe(r)
        )),
    }
}

/// The client's refusal as a sentence.
fn error_text(e: &ClientError) -> String {
    match e {
        ClientError::NotConnected => "Not connected: connect first.".into(),
        other => {
            let text = other.to_string();
            let mut chars = text.chars();
            match chars.next() {
                Some(c) => format!("{}{}.", c.to_uppercase(), chars.as_str()),
                None => text,
            }
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{} {word}s", group_digits(n as u64))
    }
}

/// The MQTT 5.0 properties of a received message that are worth a tag in the list.
fn meta(p: &Publish) -> Vec<String> {
    let props = &p.properties;
    let mut out = Vec::new();
    if let Some(ct) = &props.content_type {
        out.push(format!("content-type: {ct}"));
    }
    if let Some(rt) = &props.response_topic {
        out.push(format!("response-topic: {rt}"));
    }
    if let Some(e) = props.message_expiry_interval {
        out.push(format!("expiry: {e} s"));
    }
    for (k, v) in &props.user_properties {
        out.push(format!("{k}: {v}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_read_as_sentences() {
        assert_eq!(
            error_text(&ClientError::NotConnected),
            "Not connected: connect first."
        );
        assert_eq!(
            error_text(&ClientError::NoFilters),
            "No topic filters given."
        );
    }

    #[test]
    fn acknowledgements() {
        assert_eq!(
            ack_text("Published".into(), 0),
            Ok("Published · acknowledged".into())
        );
        assert_eq!(
            ack_text("Published".into(), 0x10),
            Ok("Published · acknowledged: no matching subscribers".into())
        );
        assert_eq!(
            ack_text("Published".into(), 0x87),
            Err("Published, but the broker refused it: not authorized (0x87).".into())
        );
    }

    #[test]
    fn arrow_keys_move_between_tabs() {
        assert_eq!(Tab::Connection.step("ArrowRight"), Some(Tab::Subscriptions));
        assert_eq!(Tab::Connection.step("ArrowLeft"), Some(Tab::Publish));
        assert_eq!(Tab::Publish.step("ArrowRight"), Some(Tab::Connection));
        assert_eq!(Tab::Messages.step("Home"), Some(Tab::Connection));
        assert_eq!(Tab::Messages.step("End"), Some(Tab::Publish));
        assert_eq!(Tab::Messages.step("a"), None);
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "byte"), "1 byte");
        assert_eq!(plural(1500, "byte"), "1,500 bytes");
    }
}
