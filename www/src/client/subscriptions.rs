//! The Subscriptions pane: add a topic filter (validated as you type), the list with each
//! subscription's colour and the broker's answer, unsubscribe.

use std::collections::HashMap;
use std::rc::Rc;

use yew::prelude::*;

use super::fields::{qos_choices, Check, Choice, Select, TextField};
use super::profile::{Subscription, SubscriptionDraft};
use super::status::suback_text;

/// What became of a subscription on the current connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubState {
    /// SUBSCRIBE sent, no SUBACK yet.
    Pending,
    /// The SUBACK code: granted QoS, or a failure (0x80 and up).
    Acked(u8),
    /// The client refused to send it.
    Error(String),
}

impl SubState {
    /// Sent and not refused: the client keeps it across reconnects.
    pub fn is_live(&self) -> bool {
        match self {
            SubState::Pending => true,
            SubState::Acked(code) => *code <= 2,
            SubState::Error(_) => false,
        }
    }
}

#[derive(Properties, PartialEq)]
pub struct SubscriptionsProps {
    pub subscriptions: Vec<Subscription>,
    pub states: Rc<HashMap<String, SubState>>,
    pub connected: bool,
    /// The profile speaks MQTT 5.0: show the subscription options.
    pub v5: bool,
    /// The tab chosen (on a phone only the chosen pane shows).
    pub current: bool,
    pub onsubscribe: Callback<Subscription>,
    pub onunsubscribe: Callback<String>,
}

#[function_component(SubscriptionsPane)]
pub fn subscriptions_pane(props: &SubscriptionsProps) -> Html {
    let draft = use_state(SubscriptionDraft::default);
    let tried = use_state(|| false);

    let update = |f: fn(&mut SubscriptionDraft, String)| {
        let draft = draft.clone();
        Callback::from(move |v: String| {
            let mut d = (*draft).clone();
            f(&mut d, v);
            draft.set(d);
        })
    };
    let update_bool = |f: fn(&mut SubscriptionDraft, bool)| {
        let draft = draft.clone();
        Callback::from(move |v: bool| {
            let mut d = (*draft).clone();
            f(&mut d, v);
            draft.set(d);
        })
    };
    let error = (*tried || !draft.filter.is_empty())
        .then(|| draft.filter_error())
        .flatten()
        .map(AttrValue::from);

    let onsubmit = {
        let draft = draft.clone();
        let tried = tried.clone();
        let existing = props.subscriptions.clone();
        let onsubscribe = props.onsubscribe.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            match draft.build(&existing) {
                Ok(sub) => {
                    onsubscribe.emit(sub);
                    draft.set(SubscriptionDraft {
                        filter: String::new(),
                        ..(*draft).clone()
                    });
                    tried.set(false);
                }
                Err(_) => tried.set(true),
            }
        })
    };

    let retain_handling = vec![
        Choice::new("0", "0 · send retained"),
        Choice::new("1", "1 · only if new"),
        Choice::new("2", "2 · never"),
    ];

    html! {
        <section id="pane-subscriptions" role="tabpanel" aria-labelledby="tab-subscriptions"
            class={classes!("pane", "pane-subscriptions", props.current.then_some("current"))}>
            <h2 class="pane-title">{ "Subscriptions" }</h2>
            <form class="form compact" {onsubmit} novalidate=true>
                <div class="grid sub-grid">
                    <TextField id="sub-filter" label="Topic filter" class="wide" mono=true
                        value={draft.filter.clone()} placeholder="sensors/+/temp"
                        oninput={update(|d, v| d.filter = v)} {error}
                        hint="+ matches one level, # every level below." />
                    <Select id="sub-qos" label="QoS" value={draft.qos.to_string()} choices={qos_choices()}
                        onchange={update(|d, v| d.qos = v.parse().unwrap_or(0))} />
                    if props.v5 {
                        <Check id="sub-no-local" label="No local" checked={draft.no_local}
                            onchange={update_bool(|d, v| d.no_local = v)}
                            hint="Don't receive my own publishes." />
                        <Check id="sub-rap" label="Retain as published"
                            checked={draft.retain_as_published}
                            onchange={update_bool(|d, v| d.retain_as_published = v)} />
                        <Select id="sub-rh" label="Retain handling"
                            value={draft.retain_handling.to_string()} choices={retain_handling}
                            onchange={update(|d, v| d.retain_handling = v.parse().unwrap_or(0))} />
                    }
                </div>
                <div class="actions">
                    <button type="submit" class="primary">{ "Subscribe" }</button>
                    if !props.connected {
                        <span class="muted">{ "Saved now, subscribed on connect." }</span>
                    }
                </div>
            </form>
            if props.subscriptions.is_empty() {
                <p class="empty-note">
                    { "No subscriptions yet. Each one is saved with the profile and made again on every connect." }
                </p>
            } else {
                <ul class="subs" aria-label="Subscriptions">
                    { for props.subscriptions.iter().map(|s| {
                        let state = props.states.get(&s.filter);
                        let (text, class) = describe(state, s.qos, props.connected);
                        let filter = s.filter.clone();
                        let onclick = props.onunsubscribe.reform(move |_: MouseEvent| filter.clone());
                        html! {
                            <li key={s.filter.clone()} class={format!("c{}", s.color)}>
                                <span class="sub-main">
                                    <code class="topic">{ &s.filter }</code>
                                    <span class="sub-meta">
                                        <span class="tag">{ format!("QoS {}", s.qos) }</span>
                                        if props.v5 && s.no_local { <span class="tag">{ "no local" }</span> }
                                        if props.v5 && s.retain_as_published { <span class="tag">{ "retain as published" }</span> }
                                        if props.v5 && s.retain_handling > 0 {
                                            <span class="tag">{ format!("retain handling {}", s.retain_handling) }</span>
                                        }
                                        <span class={classes!("sub-state", class)}>{ text }</span>
                                    </span>
                                </span>
                                <button class="icon" {onclick} title="Unsubscribe"
                                    aria-label={format!("Unsubscribe {}", s.filter)}>{ "×" }</button>
                            </li>
                        }
                    }) }
                </ul>
            }
        </section>
    }
}

/// The state line of one subscription (asked for QoS `asked`) and its CSS class.
fn describe(state: Option<&SubState>, asked: u8, connected: bool) -> (String, &'static str) {
    match state {
        _ if !connected => ("subscribes on connect".into(), "muted"),
        None => ("not subscribed".into(), "muted"),
        Some(SubState::Pending) => ("subscribing…".into(), "muted"),
        Some(SubState::Acked(code)) if *code == asked => ("subscribed".into(), "ok"),
        Some(SubState::Acked(code)) if *code <= 2 => (suback_text(*code), "ok"),
        Some(SubState::Acked(code)) => (suback_text(*code), "error"),
        Some(SubState::Error(e)) => (e.clone(), "error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        let acked = |code| describe(Some(&SubState::Acked(code)), 1, true);
        assert_eq!(acked(1), ("subscribed".into(), "ok"));
        assert_eq!(acked(0), ("granted QoS 0".into(), "ok"));
        assert_eq!(
            acked(0x87),
            (
                "refused by the broker: not authorized (0x87)".into(),
                "error"
            )
        );
        assert_eq!(describe(None, 0, false).0, "subscribes on connect");
        assert_eq!(
            describe(Some(&SubState::Pending), 0, true).0,
            "subscribing…"
        );
    }

    #[test]
    fn live_subscriptions() {
        assert!(SubState::Pending.is_live());
        assert!(SubState::Acked(2).is_live());
        assert!(!SubState::Acked(0x80).is_live());
        assert!(!SubState::Error("x".into()).is_live());
    }
}
