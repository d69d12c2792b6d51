//! The Connection pane: the profile's form (address, identity, session, last will),
//! validated on save with a message at each wrong field.

use std::rc::Rc;

use yew::prelude::*;

use super::fields::{qos_choices, Check, Choice, Select, TextArea, TextField};
use super::profile::{random_client_id, Field, Profile, ProfileDraft, Protocol, V5_AVAILABLE};
use super::status::Status;
use crate::platform;

/// The form while it is edited.
#[derive(PartialEq)]
struct Draft(ProfileDraft);

/// One change to the form.
struct Edit(Box<dyn FnOnce(&mut ProfileDraft)>);

impl Reducible for Draft {
    type Action = Edit;

    fn reduce(self: Rc<Self>, action: Edit) -> Rc<Self> {
        let mut draft = self.0.clone();
        (action.0)(&mut draft);
        Rc::new(Draft(draft))
    }
}

/// A callback that sets one field of the draft.
fn setter<T: 'static>(
    dispatcher: &UseReducerDispatcher<Draft>,
    set: fn(&mut ProfileDraft, T),
) -> Callback<T> {
    let dispatcher = dispatcher.clone();
    Callback::from(move |value: T| dispatcher.dispatch(Edit(Box::new(move |d| set(d, value)))))
}

#[derive(Properties, PartialEq)]
pub struct ConnectionProps {
    pub profile: Profile,
    pub status: Status,
    pub onsave: Callback<Profile>,
    /// Save, then connect.
    pub onconnect: Callback<Profile>,
    pub ondelete: Callback<u32>,
}

#[function_component(ConnectionPane)]
pub fn connection_pane(props: &ConnectionProps) -> Html {
    let draft = use_reducer(|| Draft(ProfileDraft::from(&props.profile)));
    // Errors show once a save was tried, then follow every change.
    let tried = use_state(|| false);
    let notice = use_state(|| None::<&'static str>);
    let confirm_delete = use_state(|| false);

    let d = &draft.0;
    let errors = if *tried {
        d.apply(&props.profile).err().unwrap_or_default()
    } else {
        Default::default()
    };
    let err = |field: Field| errors.get(field).map(|e| AttrValue::from(e.to_owned()));
    let dirty = ProfileDraft::from(&props.profile) != *d;
    let set = draft.dispatcher();

    // Save (and maybe connect) when the form is valid; otherwise show why not.
    let submit = |then: Callback<Profile>, note: &'static str| {
        let draft = draft.clone();
        let profile = props.profile.clone();
        let tried = tried.clone();
        let notice = notice.clone();
        move || match draft.0.apply(&profile) {
            Ok(p) => {
                tried.set(false);
                notice.set(Some(note));
                then.emit(p);
            }
            Err(_) => {
                tried.set(true);
                notice.set(None);
            }
        }
    };
    let onsubmit = {
        let note = if props.status.is_active() {
            "Saved. Changes apply on the next connect."
        } else {
            "Saved."
        };
        let save = submit(props.onsave.clone(), note);
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            save();
        })
    };
    let onconnect = {
        let save = submit(props.onconnect.clone(), "Saved.");
        Callback::from(move |_: MouseEvent| save())
    };
    let onrevert = {
        let set = set.clone();
        let profile = props.profile.clone();
        let tried = tried.clone();
        Callback::from(move |_: MouseEvent| {
            let fresh = ProfileDraft::from(&profile);
            set.dispatch(Edit(Box::new(move |d| *d = fresh)));
            tried.set(false);
        })
    };
    let onrandom = {
        let set = set.clone();
        Callback::from(move |_: MouseEvent| {
            let id = random_client_id(platform::random_u32());
            set.dispatch(Edit(Box::new(move |d| d.client_id = id)));
        })
    };
    let ask_delete = {
        let confirm = confirm_delete.clone();
        Callback::from(move |_: MouseEvent| confirm.set(true))
    };
    let keep = {
        let confirm = confirm_delete.clone();
        Callback::from(move |_: MouseEvent| confirm.set(false))
    };
    let delete = {
        let id = props.profile.id;
        props.ondelete.reform(move |_: MouseEvent| id)
    };

    let protocols: Vec<Choice> = Protocol::ALL
        .iter()
        .map(|p| Choice {
            value: p.key().into(),
            label: p.label().into(),
            disabled: !p.available(),
        })
        .collect();
    let protocol_hint = (!V5_AVAILABLE).then_some(AttrValue::Static(
        "MQTT 5.0 coming: the browser client speaks 3.1.1 and 3.1 for now. \
         5.0 settings are kept in the profile.",
    ));
    let invalid = !errors.is_empty();

    html! {
        <section id="pane-connection" class="pane pane-connection" role="tabpanel"
            aria-labelledby="tab-connection">
            <form class="form" {onsubmit} novalidate=true>
                <fieldset>
                    <legend>{ "Broker" }</legend>
                    <div class="grid">
                        <TextField id="conn-name" label="Name" value={d.name.clone()}
                            oninput={setter(&set, |d, v| d.name = v)} error={err(Field::Name)} />
                        <Select id="conn-protocol" label="Protocol" value={d.protocol.key()}
                            choices={protocols}
                            onchange={setter(&set, |d, v: String| d.protocol = Protocol::from_key(&v))}
                            error={err(Field::Protocol)} hint={protocol_hint} />
                        <TextField id="conn-url" label="URL" class="wide" value={d.url.clone()} mono=true
                            placeholder="ws://host:8083/mqtt" kind="url"
                            oninput={setter(&set, |d, v| d.url = v)} error={err(Field::Url)}
                            hint="MQTT over WebSocket: ws:// or wss://, host, port and path." />
                    </div>
                </fieldset>
                <fieldset>
                    <legend>{ "Identity" }</legend>
                    <div class="grid">
                        <TextField id="conn-client-id" label="Client ID" class="wide" value={d.client_id.clone()}
                            mono=true oninput={setter(&set, |d, v| d.client_id = v)}
                            error={err(Field::ClientId)}
                            hint="Empty lets the broker choose one (with clean start).">
                            <button type="button" class="ghost" onclick={onrandom}
                                title="Generate a random client ID">{ "Random" }</button>
                        </TextField>
                        <TextField id="conn-username" label="Username" value={d.username.clone()}
                            autocomplete="username" oninput={setter(&set, |d, v| d.username = v)} />
                        <TextField id="conn-password" label="Password" kind="password"
                            value={d.password.clone()} autocomplete="current-password"
                            oninput={setter(&set, |d, v| d.password = v)} />
                    </div>
                </fieldset>
                <fieldset>
                    <legend>{ "Session" }</legend>
                    <div class="grid">
                        <TextField id="conn-keepalive" label="Keep-alive (seconds)" kind="number"
                            value={d.keep_alive.clone()} oninput={setter(&set, |d, v| d.keep_alive = v)}
                            error={err(Field::KeepAlive)} hint="0 to 65535; 0 turns it off." />
                        if d.protocol.is_v5() {
                            <TextField id="conn-session-expiry" label="Session expiry (seconds)"
                                kind="number" value={d.session_expiry.clone()}
                                oninput={setter(&set, |d, v| d.session_expiry = v)}
                                error={err(Field::SessionExpiry)}
                                hint="MQTT 5.0: how long the broker keeps the session after a disconnect." />
                        }
                        <Check id="conn-clean" label={if d.protocol.is_v5() { "Clean start" } else { "Clean session" }}
                            checked={d.clean_start} onchange={setter(&set, |d, v| d.clean_start = v)}
                            hint="Start without the subscriptions and queued messages of an earlier session." />
                        <Check id="conn-reconnect" label="Reconnect automatically" checked={d.reconnect}
                            onchange={setter(&set, |d, v| d.reconnect = v)}
                            hint="After an unexpected loss, retry after 1 s, 2 s, 4 s … up to 30 s." />
                    </div>
                </fieldset>
                <fieldset>
                    <legend>{ "Last will" }</legend>
                    <Check id="conn-will" label="Send a last will" checked={d.will.enabled}
                        onchange={setter(&set, |d, v| d.will.enabled = v)}
                        hint="The broker publishes it if this connection ends without a DISCONNECT." />
                    if d.will.enabled {
                        <div class="grid">
                            <TextField id="conn-will-topic" label="Will topic" class="wide" mono=true
                                value={d.will.topic.clone()} oninput={setter(&set, |d, v| d.will.topic = v)}
                                error={err(Field::WillTopic)} placeholder="clients/me/status" />
                            <Select id="conn-will-qos" label="Will QoS" value={d.will.qos.to_string()}
                                choices={qos_choices()}
                                onchange={setter(&set, |d, v: String| d.will.qos = v.parse().unwrap_or(0))} />
                            <Check id="conn-will-retain" label="Retain the will" checked={d.will.retain}
                                onchange={setter(&set, |d, v| d.will.retain = v)} />
                            <TextArea id="conn-will-payload" label="Will payload (text)" rows={2}
                                value={d.will.payload.clone()}
                                oninput={setter(&set, |d, v| d.will.payload = v)} />
                        </div>
                    }
                </fieldset>
                <div class="actions">
                    <button type="submit" class="primary">{ "Save" }</button>
                    <button type="button" onclick={onconnect}>
                        { if props.status.is_active() { "Save & reconnect" } else { "Save & connect" } }
                    </button>
                    if dirty {
                        <button type="button" class="ghost" onclick={onrevert}>{ "Revert" }</button>
                    }
                    <span class="spacer"></span>
                    if *confirm_delete {
                        <span class="confirm" role="group" aria-label="Confirm delete">
                            { "Delete this connection?" }
                            <button type="button" class="danger" onclick={delete}>{ "Delete" }</button>
                            <button type="button" class="ghost" onclick={keep}>{ "Keep" }</button>
                        </span>
                    } else {
                        <button type="button" class="ghost danger-text" onclick={ask_delete}>{ "Delete…" }</button>
                    }
                </div>
                <p class="form-status" role="status">
                    if invalid {
                        <span class="error">{ format!("Fix the {} marked field{} to save.", errors.len(), if errors.len() == 1 { "" } else { "s" }) }</span>
                    } else if dirty {
                        { "Unsaved changes." }
                    } else if let Some(n) = *notice {
                        { n }
                    }
                </p>
            </form>
        </section>
    }
}
