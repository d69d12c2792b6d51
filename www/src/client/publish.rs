//! The Publish pane: topic (validated), QoS, retain, the payload typed as text, JSON,
//! hex or base64, and the MQTT 5.0 properties. Enter in a field or Ctrl+Enter anywhere
//! in the form publishes.

use std::rc::Rc;

use yew::prelude::*;

use super::fields::{qos_choices, Check, Choice, Select, TextArea, TextField};
use super::payload::Format;
use super::profile::{Outgoing, PublishSettings, UserProperty};

#[derive(Properties, PartialEq)]
pub struct PublishProps {
    /// The profile's saved publish form.
    pub settings: PublishSettings,
    pub connected: bool,
    pub v5: bool,
    pub current: bool,
    /// What happened to the last publish.
    pub result: Option<Result<String, String>>,
    pub onpublish: Callback<(PublishSettings, Outgoing)>,
}

#[function_component(PublishPane)]
pub fn publish_pane(props: &PublishProps) -> Html {
    let draft = use_state(|| props.settings.clone());
    let tried = use_state(|| false);

    let errors = if *tried {
        draft.build(props.v5).err().unwrap_or_default()
    } else {
        Default::default()
    };
    let update = |f: fn(&mut PublishSettings, String)| {
        let draft = draft.clone();
        Callback::from(move |v: String| {
            let mut d = (*draft).clone();
            f(&mut d, v);
            draft.set(d);
        })
    };
    let set_retain = {
        let draft = draft.clone();
        Callback::from(move |v: bool| {
            draft.set(PublishSettings {
                retain: v,
                ..(*draft).clone()
            })
        })
    };

    let publish: Rc<dyn Fn()> = {
        let draft = draft.clone();
        let tried = tried.clone();
        let v5 = props.v5;
        let onpublish = props.onpublish.clone();
        Rc::new(move || match draft.build(v5) {
            Ok(out) => {
                tried.set(false);
                onpublish.emit(((*draft).clone(), out));
            }
            Err(_) => tried.set(true),
        })
    };
    let onsubmit = {
        let publish = publish.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            publish();
        })
    };
    let onkeydown = {
        let publish = publish.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Enter" && (e.ctrl_key() || e.meta_key()) {
                e.prevent_default();
                publish();
            }
        })
    };

    let format_choices: Vec<Choice> = Format::ALL
        .iter()
        .map(|f| Choice::new(f.key(), f.label()))
        .collect();
    let payload_hint = match draft.format {
        Format::Text => None,
        Format::Json => Some("Checked to be JSON, sent as typed."),
        Format::Hex => Some("Bytes as hex digits: 48 65 6c 6c 6f."),
        Format::Base64 => Some("Bytes as base64: SGVsbG8=."),
    }
    .map(AttrValue::Static);
    let attr = |e: &Option<String>| e.clone().map(AttrValue::from);

    html! {
        <section id="pane-publish" role="tabpanel" aria-labelledby="tab-publish"
            class={classes!("pane", "pane-publish", props.current.then_some("current"))}>
            <h2 class="pane-title">{ "Publish" }</h2>
            <form class="form compact" {onsubmit} {onkeydown} novalidate=true>
                <div class="grid pub-grid">
                    <TextField id="pub-topic" label="Topic" class="wide" mono=true
                        value={draft.topic.clone()} oninput={update(|d, v| d.topic = v)}
                        error={attr(&errors.topic)} placeholder="sensors/1/temp" />
                    <Select id="pub-qos" label="QoS" value={draft.qos.to_string()} choices={qos_choices()}
                        onchange={update(|d, v| d.qos = v.parse().unwrap_or(0))} />
                    <Select id="pub-format" label="Payload format" value={draft.format.key()}
                        choices={format_choices} onchange={update(|d, v| d.format = Format::from_key(&v))} />
                    <Check id="pub-retain" label="Retain" checked={draft.retain} onchange={set_retain} />
                </div>
                <TextArea id="pub-payload" label="Payload" rows={3} value={draft.payload.clone()}
                    oninput={update(|d, v| d.payload = v)} error={attr(&errors.payload)}
                    hint={payload_hint} />
                if props.v5 {
                    <details class="v5">
                        <summary>{ v5_summary(&draft) }</summary>
                        <div class="grid">
                            <TextField id="pub-content-type" label="Content type" mono=true
                                value={draft.content_type.clone()} placeholder="application/json"
                                oninput={update(|d, v| d.content_type = v)} />
                            <TextField id="pub-expiry" label="Message expiry (seconds)" kind="number"
                                value={draft.message_expiry.clone()}
                                oninput={update(|d, v| d.message_expiry = v)}
                                error={attr(&errors.message_expiry)} hint="Empty: never expires." />
                            <TextField id="pub-response-topic" label="Response topic" mono=true
                                value={draft.response_topic.clone()}
                                oninput={update(|d, v| d.response_topic = v)}
                                error={attr(&errors.response_topic)} />
                        </div>
                        <UserProperties list={draft.user_properties.clone()}
                            error={attr(&errors.user_properties)}
                            onchange={{
                                let draft = draft.clone();
                                Callback::from(move |list: Vec<UserProperty>| draft.set(PublishSettings {
                                    user_properties: list,
                                    ..(*draft).clone()
                                }))
                            }} />
                    </details>
                }
                <div class="actions">
                    <button type="submit" class="primary" disabled={!props.connected}
                        title={(!props.connected).then_some("Connect first")}>{ "Publish" }</button>
                    <kbd class="shortcut" title="Publishes from anywhere in the form">{ "Ctrl+Enter" }</kbd>
                    <span class="form-status" role="status">
                        { match &props.result {
                            _ if !props.connected => html! { <span class="muted">{ "Connect to publish." }</span> },
                            Some(Ok(text)) => html! { <span class="ok">{ text }</span> },
                            Some(Err(text)) => html! { <span class="error">{ text }</span> },
                            None => html! {},
                        } }
                    </span>
                </div>
            </form>
        </section>
    }
}

/// "MQTT 5.0 properties", and how many are set (the section starts folded).
fn v5_summary(d: &PublishSettings) -> String {
    let set = [&d.content_type, &d.message_expiry, &d.response_topic]
        .iter()
        .filter(|s| !s.trim().is_empty())
        .count()
        + d.user_properties
            .iter()
            .filter(|p| !p.key.is_empty())
            .count();
    match set {
        0 => "MQTT 5.0 properties".to_owned(),
        n => format!("MQTT 5.0 properties ({n} set)"),
    }
}

#[derive(Properties, PartialEq)]
struct UserPropertiesProps {
    list: Vec<UserProperty>,
    error: Option<AttrValue>,
    onchange: Callback<Vec<UserProperty>>,
}

/// MQTT 5.0 user properties: name/value rows, added and removed.
#[function_component(UserProperties)]
fn user_properties(props: &UserPropertiesProps) -> Html {
    let add = {
        let list = props.list.clone();
        let onchange = props.onchange.clone();
        Callback::from(move |_: MouseEvent| {
            let mut l = list.clone();
            l.push(UserProperty::default());
            onchange.emit(l);
        })
    };
    html! {
        <div class="user-props">
            <span class="label">{ "User properties" }</span>
            { for props.list.iter().enumerate().map(|(i, p)| {
                let edit = |is_key: bool| {
                    let list = props.list.clone();
                    let onchange = props.onchange.clone();
                    Callback::from(move |v: String| {
                        let mut l = list.clone();
                        if is_key { l[i].key = v } else { l[i].value = v }
                        onchange.emit(l);
                    })
                };
                let remove = {
                    let list = props.list.clone();
                    let onchange = props.onchange.clone();
                    Callback::from(move |_: MouseEvent| {
                        let mut l = list.clone();
                        l.remove(i);
                        onchange.emit(l);
                    })
                };
                html! {
                    <div class="user-prop" key={i}>
                        <TextField id={format!("pub-up-key-{i}")} label="Name" mono=true
                            value={p.key.clone()} oninput={edit(true)} />
                        <TextField id={format!("pub-up-value-{i}")} label="Value" mono=true
                            value={p.value.clone()} oninput={edit(false)} />
                        <button type="button" class="icon" onclick={remove}
                            aria-label={format!("Remove user property {}", i + 1)}>{ "×" }</button>
                    </div>
                }
            }) }
            if let Some(e) = &props.error {
                <p class="error" role="alert">{ e }</p>
            }
            <button type="button" class="ghost small" onclick={add}>{ "+ Add user property" }</button>
        </div>
    }
}
