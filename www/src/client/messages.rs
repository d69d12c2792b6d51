//! The Messages pane: received and sent messages, newest first, with a topic filter, a
//! direction filter, the payload shown as text, pretty JSON, hex or base64, and a count.
//!
//! Only the newest [`SHOWN`] matching messages are rendered, and each row is its own
//! component whose formatted payload is computed once: the list stays quick while
//! thousands of messages a second arrive.

use std::rc::Rc;

use yew::prelude::*;

use super::fields::{Choice, Select, TextField};
use super::history::{Direction, Entry, History, TopicQuery};
use super::payload::{display, group_digits, Format};
use super::Shared;
use crate::platform;

/// Rows rendered at most.
pub const SHOWN: usize = 300;
/// Payload bytes rendered per row at most.
const PREVIEW_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    All,
    Received,
    Sent,
}

impl Which {
    fn from_key(key: &str) -> Which {
        match key {
            "in" => Which::Received,
            "out" => Which::Sent,
            _ => Which::All,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Which::All => "all",
            Which::Received => "in",
            Which::Sent => "out",
        }
    }

    fn keeps(self, dir: Direction) -> bool {
        match self {
            Which::All => true,
            Which::Received => dir == Direction::In,
            Which::Sent => dir == Direction::Out,
        }
    }
}

#[derive(Properties, PartialEq)]
pub struct MessagesProps {
    pub history: Shared<History>,
    pub current: bool,
    pub onclear: Callback<()>,
}

#[function_component(MessagesPane)]
pub fn messages_pane(props: &MessagesProps) -> Html {
    let query_text = use_state(String::new);
    let which = use_state(|| Which::All);
    let format = use_state(|| Format::Text);

    let query = TopicQuery::parse(&query_text);
    let history = &props.history.0;
    let (rows, matching) = history.newest(SHOWN, |e| which.keeps(e.dir) && query.matches(&e.topic));

    let on_query = {
        let q = query_text.clone();
        Callback::from(move |v: String| q.set(v))
    };
    let on_which = {
        let w = which.clone();
        Callback::from(move |v: String| w.set(Which::from_key(&v)))
    };
    let on_format = {
        let f = format.clone();
        Callback::from(move |v: String| f.set(Format::from_key(&v)))
    };
    let onclear = props.onclear.reform(|_: MouseEvent| ());

    let mut count = count_text(rows.len(), matching, history);
    if query != TopicQuery::All {
        count.push_str(&format!(" · {}", query.describe()));
    }
    let filtered = query != TopicQuery::All || *which != Which::All;
    let format_choices: Vec<Choice> = Format::ALL
        .iter()
        .map(|f| Choice::new(f.key(), f.label()))
        .collect();
    let which_choices = vec![
        Choice::new("all", "All"),
        Choice::new("in", "Received"),
        Choice::new("out", "Sent"),
    ];

    html! {
        <section id="pane-messages" role="tabpanel" aria-labelledby="tab-messages"
            class={classes!("pane", "pane-messages", props.current.then_some("current"))}>
            <div class="pane-head">
                <h2 class="pane-title">{ "Messages" }</h2>
                <span class="count" data-count={history.len().to_string()}>{ count }</span>
            </div>
            <div class="toolbar">
                <TextField id="msg-filter" label="Filter by topic" class="grow" mono=true
                    value={(*query_text).clone()} oninput={on_query}
                    placeholder="text, or an MQTT filter like sensors/#" />
                <Select id="msg-which" label="Direction" value={which.key()}
                    choices={which_choices} onchange={on_which} />
                <Select id="msg-format" label="Payload as" value={format.key()}
                    choices={format_choices} onchange={on_format} />
                <button type="button" class="ghost clear" onclick={onclear}
                    disabled={history.is_empty()}>{ "Clear" }</button>
            </div>
            if rows.is_empty() {
                <p class="empty-note">
                    { if filtered && !history.is_empty() {
                        "No message matches the filter."
                    } else {
                        "No messages yet. Subscribe to a topic, or publish one."
                    } }
                </p>
            } else {
                <ol class="messages" aria-label="Messages, newest first">
                    { for rows.into_iter().map(|e| {
                        let key = e.id;
                        html! { <MessageRow {key} entry={Shared(e)} format={*format} /> }
                    }) }
                </ol>
            }
        </section>
    }
}

/// "Showing 300 newest of 4,812 · 1,234 older dropped".
fn count_text(shown: usize, matching: usize, history: &History) -> String {
    let total = history.len();
    let mut text = if matching == total {
        format!(
            "{} message{}",
            group_digits(total as u64),
            if total == 1 { "" } else { "s" }
        )
    } else {
        format!(
            "{} of {} messages match",
            group_digits(matching as u64),
            group_digits(total as u64)
        )
    };
    if shown < matching {
        text.push_str(&format!(" · newest {shown} shown"));
    }
    if history.dropped > 0 {
        text.push_str(&format!(
            " · {} older dropped (keeps {})",
            group_digits(history.dropped),
            group_digits(history.cap() as u64)
        ));
    }
    text
}

#[derive(Properties, PartialEq)]
struct RowProps {
    entry: Shared<Entry>,
    format: Format,
}

#[function_component(MessageRow)]
fn message_row(props: &RowProps) -> Html {
    let e: &Rc<Entry> = &props.entry.0;
    let shown = use_memo((props.format, e.id), {
        let e = e.clone();
        move |(format, _)| display(&e.payload, *format, PREVIEW_BYTES)
    });
    let time = use_memo(e.id, {
        let t = e.time_ms;
        move |_| platform::time_of_day(t)
    });
    let (dir_class, arrow, dir_text) = match e.dir {
        Direction::In => ("in", "↓", "received"),
        Direction::Out => ("out", "↑", "sent"),
    };
    let color = e.color.map(|c| format!("c{c}"));
    html! {
        <li class={classes!("msg", dir_class, color)}>
            <div class="msg-head">
                <span class="dir" title={dir_text}>
                    <span aria-hidden="true">{ arrow }</span>
                    <span class="sr">{ dir_text }</span>
                </span>
                <code class="topic">{ &e.topic }</code>
                <span class="tag">{ format!("QoS {}", e.qos) }</span>
                if e.retain { <span class="tag retain">{ "retained" }</span> }
                if e.dup { <span class="tag">{ "dup" }</span> }
                <span class="size">{ format!("{} B", group_digits(e.payload.len() as u64)) }</span>
                <time>{ (*time).clone() }</time>
            </div>
            if e.payload.is_empty() {
                <p class="payload empty">{ "(empty payload)" }</p>
            } else {
                <pre class="payload">{ &shown.text }</pre>
            }
            if let Some(note) = &shown.note {
                <p class="payload-note">{ note }</p>
            }
            if !e.meta.is_empty() {
                <p class="msg-meta">
                    { for e.meta.iter().map(|m| html! { <span class="tag">{ m }</span> }) }
                </p>
            }
        </li>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(id: u64) -> Entry {
        Entry {
            id,
            dir: Direction::In,
            time_ms: 0.0,
            topic: "t".into(),
            qos: 0,
            retain: false,
            dup: false,
            payload: Bytes::new(),
            color: None,
            meta: Vec::new(),
        }
    }

    #[test]
    fn counts() {
        let mut h = History::with_cap(400);
        h.extend((0..500).map(entry));
        assert_eq!(
            count_text(300, 400, &h),
            "400 messages · newest 300 shown · 100 older dropped (keeps 400)"
        );
        let mut h = History::default();
        h.push(entry(1));
        assert_eq!(count_text(1, 1, &h), "1 message");
        h.push(entry(2));
        assert_eq!(count_text(0, 0, &h), "0 of 2 messages match");
    }

    #[test]
    fn direction_filter() {
        assert!(Which::from_key("in").keeps(Direction::In));
        assert!(!Which::from_key("in").keeps(Direction::Out));
        assert!(Which::from_key("out").keeps(Direction::Out));
        assert!(Which::from_key("all").keeps(Direction::Out));
        for w in [Which::All, Which::Received, Which::Sent] {
            assert_eq!(Which::from_key(w.key()), w);
        }
    }
}
