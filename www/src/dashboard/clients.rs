//! The clients page: every session (connected or not) in a live, searchable, paged
//! table; per row, kick the client or end its session (each asks first); a client's
//! panel shows its details and subscriptions, and subscribes or unsubscribes it on its
//! behalf.

use std::rc::Rc;

use serde::Serialize;
use web_sys::{HtmlElement, HtmlSelectElement};
use yew::prelude::*;

use super::api::{path, Api, Client, Paged, Subscription};
use super::format::{group, query};
use super::live::use_get;
use super::pager::{listing_rows, pager_for, refilter, use_fit_page, DEFAULT_LIMIT};
use super::ui::{
    empty_row, flash_line, local_time, refresh_error, table_time, ConfirmButton, Flash, Input,
    QosSelect,
};
use super::{param, View};

/// What a row or the panel can do to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Kick,
    EndSession,
}

impl Action {
    fn request(self, clientid: &str) -> (&'static str, String) {
        match self {
            Action::Kick => ("DELETE", path("/clients", clientid, "")),
            Action::EndSession => ("DELETE", path("/sessions", clientid, "")),
        }
    }

    fn done(self, clientid: &str) -> String {
        match self {
            Action::Kick => format!("Kicked {clientid}."),
            Action::EndSession => format!("Ended the session of {clientid}."),
        }
    }
}

/// Runs `action` on `clientid`, then reports to `flash` and calls `after`.
fn perform(
    api: &Api,
    action: Action,
    clientid: String,
    flash: UseStateHandle<Flash>,
    after: Callback<()>,
) {
    let api = api.clone();
    yew::platform::spawn_local(async move {
        let (method, url) = action.request(&clientid);
        let result = api.send::<()>(method, &url, None).await;
        flash.set(Some(match result {
            Ok(()) => Ok(action.done(&clientid)),
            Err(f) => Err(format!("{clientid}: {f}")),
        }));
        after.emit(());
    });
}

#[derive(Properties, PartialEq)]
pub struct ClientsProps {
    /// `clientid` opens that client's panel.
    pub params: Rc<Vec<(String, String)>>,
}

#[function_component(ClientsPage)]
pub fn clients_page(props: &ClientsProps) -> Html {
    let api = use_context::<Api>().expect("API");
    let search = use_state(String::new);
    let conn_state = use_state(String::new);
    let page = use_state(|| 1usize);
    let limit = use_state(|| DEFAULT_LIMIT);
    let selected = {
        let initial = param(&props.params, "clientid").to_owned();
        use_state(move || (!initial.is_empty()).then_some(initial))
    };
    let flash = use_state(|| Flash::None);

    let url = format!(
        "/clients{}",
        query(&[
            ("page", &page.to_string()),
            ("limit", &limit.to_string()),
            ("like_clientid", search.trim()),
            ("conn_state", &conn_state),
        ])
    );
    let (list, reload) = use_get::<Paged<Client>>(Some(url), true);

    use_fit_page(&page, list.data.as_ref().map(|d| d.meta));

    let on_search = refilter(&search, &page);
    let on_state = refilter(&conn_state, &page)
        .reform(|e: Event| e.target_unchecked_into::<HtmlSelectElement>().value());
    let act = {
        let (api, flash, reload) = (api.clone(), flash.clone(), reload.clone());
        Callback::from(move |(action, clientid): (Action, String)| {
            perform(&api, action, clientid, flash.clone(), reload.clone())
        })
    };
    let open = {
        let selected = selected.clone();
        Callback::from(move |clientid: String| selected.set(Some(clientid)))
    };
    let close = {
        let selected = selected.clone();
        Callback::from(move |()| selected.set(None))
    };

    let empty = if search.trim().is_empty() && conn_state.is_empty() {
        "No clients yet: connect one to the broker's MQTT port."
    } else {
        "No client matches."
    };
    let rows = listing_rows(&list, 10, empty, |c| {
        let is_selected = selected.as_deref() == Some(c.clientid.as_str());
        client_row(c, is_selected, &open, &act)
    });

    html! {
        <div class="dash-page clients">
            <div class="filters">
                <Input id="clients-search" label="Client ID contains" value={(*search).clone()}
                    oninput={on_search} mono=true placeholder="search…" class="grow" />
                <div class="field">
                    <label for="clients-state">{ "Status" }</label>
                    <select id="clients-state" onchange={on_state}>
                        <option value="" selected={conn_state.is_empty()}>{ "All" }</option>
                        <option value="connected" selected={*conn_state == "connected"}>{ "Connected" }</option>
                        <option value="disconnected" selected={*conn_state == "disconnected"}>{ "Disconnected" }</option>
                    </select>
                </div>
                <button class="refresh" onclick={reload.reform(|_: MouseEvent| ())}>{ "Refresh" }</button>
            </div>
            { flash_line(&flash) }
            { refresh_error(&list.error) }
            <div class="table-wrap">
                <table class="table clients-table">
                    <thead>
                        <tr>
                            <th scope="col">{ "Client ID" }</th>
                            <th scope="col">{ "Username" }</th>
                            <th scope="col">{ "IP address" }</th>
                            <th scope="col">{ "Protocol" }</th>
                            <th scope="col">{ "Status" }</th>
                            <th scope="col">{ "Connected at" }</th>
                            <th scope="col" class="num">{ "Keepalive" }</th>
                            <th scope="col" class="num">{ "Subs" }</th>
                            <th scope="col" class="num wrap">{ "Inflight / queued" }</th>
                            <th scope="col">{ "Actions" }</th>
                        </tr>
                    </thead>
                    <tbody>{ rows }</tbody>
                </table>
            </div>
            { pager_for(list.data.as_ref().map(|d| d.meta), &page, &limit, "clients") }
            if let Some(clientid) = (*selected).clone() {
                <ClientPanel key={clientid.clone()} clientid={clientid.clone()} onclose={close}
                    onchanged={reload.clone()} flash={flash.clone()} />
            }
        </div>
    }
}

/// One row of the clients table.
fn client_row(
    c: &Client,
    selected: bool,
    open: &Callback<String>,
    act: &Callback<(Action, String)>,
) -> Html {
    let id = c.clientid.clone();
    let show = {
        let (open, id) = (open.clone(), id.clone());
        Callback::from(move |_: MouseEvent| open.emit(id.clone()))
    };
    let on = |action: Action| {
        let (act, id) = (act.clone(), id.clone());
        Callback::from(move |()| act.emit((action, id.clone())))
    };
    let dash = || html! { <span class="muted">{ "–" }</span> };
    html! {
        <tr class={classes!(selected.then_some("selected"), (!c.connected).then_some("offline"))}
            data-clientid={id.clone()}>
            <td data-label="Client ID">
                <button class="linkish mono" onclick={show.clone()}
                    aria-label={format!("{id}: details and subscriptions")}>{ &id }</button>
            </td>
            <td data-label="Username">{ c.username.clone().map_or_else(dash, Html::from) }</td>
            <td data-label="IP address" class="mono">{ c.peer().map_or_else(dash, Html::from) }</td>
            <td data-label="Protocol" class="nowrap">
                <span>
                    { c.protocol.clone().map_or_else(dash, Html::from) }
                    if let Some(t) = &c.transport {
                        { " " }<span class="tag" title="transport">{ t }</span>
                    }
                </span>
            </td>
            <td data-label="Status">{ status_pill(c.connected) }</td>
            <td data-label="Connected at" class="nowrap">{ c.connected_at.as_deref().map_or_else(dash, |t| html! {
                <span title={local_time(t)}>{ table_time(t) }</span>
            }) }</td>
            <td data-label="Keepalive" class="num">{ c.keepalive.map_or_else(dash, |k| html! { { format!("{k} s") } }) }</td>
            <td data-label="Subscriptions" class="num">
                <button class="linkish" onclick={show} aria-label={format!("{id}: {} subscriptions", c.subscriptions)}>
                    { group(c.subscriptions) }
                </button>
            </td>
            <td data-label="Inflight / queued" class="num">{ format!("{} / {}", group(c.inflight), group(c.queued)) }</td>
            // One action per row, as in the EMQX console: kick a connected client, end the
            // session of a disconnected one (the panel has both).
            <td data-label="Actions" class="row-actions">
                if c.connected {
                    <ConfirmButton label="Kick" class="danger-text"
                        aria_label={format!("Kick {id}")}
                        question={format!("Disconnect {id}?")} confirm="Kick" onconfirm={on(Action::Kick)} />
                } else {
                    <ConfirmButton label="End session" class="danger-text"
                        aria_label={format!("End the session of {id}")}
                        question={format!("End {id}'s session?")} confirm="End session"
                        onconfirm={on(Action::EndSession)} />
                }
            </td>
        </tr>
    }
}

fn status_pill(connected: bool) -> Html {
    if connected {
        html! { <span class="pill connected" data-status="connected"><span class="dot" />{ "Connected" }</span> }
    } else {
        html! { <span class="pill" data-status="disconnected"><span class="dot" />{ "Disconnected" }</span> }
    }
}

#[derive(Serialize)]
struct SubscribeBody<'a> {
    topic: &'a str,
    qos: u8,
}

#[derive(Serialize)]
struct UnsubscribeBody<'a> {
    topic: &'a str,
}

#[derive(Properties, PartialEq)]
pub struct PanelProps {
    pub clientid: String,
    pub onclose: Callback<()>,
    /// Something changed (the list should refresh).
    pub onchanged: Callback<()>,
    /// The page's status line.
    pub flash: UseStateHandle<Flash>,
}

/// One client: its details, its subscriptions (unsubscribe each), a form to subscribe it
/// to a filter on its behalf, and the kick and end-session buttons.
#[function_component(ClientPanel)]
pub fn client_panel(props: &PanelProps) -> Html {
    let api = use_context::<Api>().expect("API");
    let id = props.clientid.clone();
    let (client, reload_client) = use_get::<Client>(Some(path("/clients", &id, "")), true);
    let (subs, reload_subs) =
        use_get::<Vec<Subscription>>(Some(path("/clients", &id, "/subscriptions")), true);
    let topic = use_state(String::new);
    let qos = use_state(|| 0u8);
    let heading = use_node_ref();
    let local = use_state(|| Flash::None);

    // Focus the panel's heading when it opens, so the keyboard (and a screen reader)
    // lands in it.
    {
        let heading = heading.clone();
        use_effect_with(id.clone(), move |_| {
            if let Some(h) = heading.cast::<HtmlElement>() {
                let _ = h.focus();
            }
        });
    }

    let refresh_all = {
        let (a, b, c) = (
            reload_client.clone(),
            reload_subs.clone(),
            props.onchanged.clone(),
        );
        Callback::from(move |()| {
            a.emit(());
            b.emit(());
            c.emit(());
        })
    };
    let on_action = |action: Action| {
        let (api, id, flash, after) = (
            api.clone(),
            id.clone(),
            props.flash.clone(),
            refresh_all.clone(),
        );
        Callback::from(move |()| perform(&api, action, id.clone(), flash.clone(), after.clone()))
    };
    let onsubmit = {
        let (api, id, topic, qos, local, after) = (
            api.clone(),
            id.clone(),
            topic.clone(),
            qos.clone(),
            local.clone(),
            refresh_all.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let filter = topic.trim().to_owned();
            if filter.is_empty() {
                local.set(Some(Err("Enter a topic filter.".into())));
                return;
            }
            let (api, id, topic, local, after, q) = (
                api.clone(),
                id.clone(),
                topic.clone(),
                local.clone(),
                after.clone(),
                *qos,
            );
            yew::platform::spawn_local(async move {
                let body = SubscribeBody {
                    topic: &filter,
                    qos: q,
                };
                let result: Result<Subscription, _> =
                    api.post(&path("/clients", &id, "/subscribe"), &body).await;
                match result {
                    Ok(s) => {
                        local.set(Some(Ok(format!(
                            "Subscribed {} to {} (QoS {}).",
                            s.clientid, s.topic, s.qos
                        ))));
                        topic.set(String::new());
                    }
                    Err(f) => local.set(Some(Err(f.message))),
                }
                after.emit(());
            });
        })
    };
    let unsubscribe = |filter: String| {
        let (api, id, local, after) = (api.clone(), id.clone(), local.clone(), refresh_all.clone());
        Callback::from(move |_: MouseEvent| {
            let (api, id, local, after, filter) = (
                api.clone(),
                id.clone(),
                local.clone(),
                after.clone(),
                filter.clone(),
            );
            yew::platform::spawn_local(async move {
                let body = UnsubscribeBody { topic: &filter };
                let result = api
                    .send("POST", &path("/clients", &id, "/unsubscribe"), Some(&body))
                    .await;
                local.set(Some(match result {
                    Ok(()) => Ok(format!("Unsubscribed {id} from {filter}.")),
                    Err(f) => Err(f.message),
                }));
                after.emit(());
            });
        })
    };
    let close = props.onclose.reform(|_: MouseEvent| ());
    let onkeydown = {
        let close = props.onclose.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Escape" && !e.default_prevented() {
                close.emit(());
            }
        })
    };

    let gone = client.error.as_ref().is_some_and(|e| e.status == 404);
    let c = client.data.as_deref().filter(|_| !gone);
    let fact = |label: &str, value: Html| html! { <div><dt>{ label }</dt><dd>{ value }</dd></div> };
    let text = |v: Option<String>| {
        v.map_or_else(|| html! { <span class="muted">{ "–" }</span> }, Html::from)
    };

    html! {
        <aside class="panel" aria-labelledby="panel-title" {onkeydown}>
            <div class="panel-head">
                <h2 id="panel-title" tabindex="-1" ref={heading}>
                    <span class="muted">{ "Client " }</span><span class="mono">{ &id }</span>
                </h2>
                <button class="icon" onclick={close} aria-label="Close the client panel" title="Close (Esc)">{ "×" }</button>
            </div>
            if gone {
                <p class="notice">{ "This client has no session any more." }</p>
            } else if let Some(c) = c {
                <div class="panel-status">
                    { status_pill(c.connected) }
                    <span class="spacer" />
                    <ConfirmButton label="Kick" class="danger-text" disabled={!c.connected}
                        aria_label={format!("Kick {id}")}
                        question={format!("Disconnect {id}?")} confirm="Kick" onconfirm={on_action(Action::Kick)} />
                    <ConfirmButton label="End session" class="danger-text"
                        aria_label={format!("End the session of {id}")}
                        question={format!("End {id}'s session?")} confirm="End session"
                        onconfirm={on_action(Action::EndSession)} />
                </div>
                <dl class="facts">
                    { fact("Username", text(c.username.clone())) }
                    { fact("IP address", text(c.peer())) }
                    { fact("Protocol", text(c.protocol.clone())) }
                    { fact("Transport", text(c.transport.clone())) }
                    { fact("Connected at", text(c.connected_at.as_deref().map(local_time))) }
                    { fact("Keepalive", text(c.keepalive.map(|k| format!("{k} s")))) }
                    { fact("Clean start", html! { { if c.clean_start { "yes" } else { "no" } } }) }
                    { fact("Inflight", html! { { group(c.inflight) } }) }
                    { fact("Queued", html! { { group(c.queued) } }) }
                    { fact("Dropped", html! { { group(c.dropped) } }) }
                </dl>
            } else if client.loading() {
                <p class="muted">{ "Loading…" }</p>
            } else {
                { refresh_error(&client.error) }
            }
            if !gone {
                <h3>{ "Subscriptions" }</h3>
                { refresh_error(&subs.error.clone().filter(|_| client.error.is_none())) }
                <table class="table subs-table">
                    <thead><tr><th scope="col">{ "Topic filter" }</th><th scope="col" class="num">{ "QoS" }</th><th scope="col">{ "Options" }</th><th scope="col"><span class="sr">{ "Actions" }</span></th></tr></thead>
                    <tbody>
                        { match subs.data.as_deref() {
                            None => empty_row(4, if subs.loading() { "Loading…" } else { "–" }),
                            Some(list) if list.is_empty() => empty_row(4, "No subscriptions."),
                            Some(list) => list.iter().map(|s| html! {
                                <tr>
                                    <td class="mono topic-cell">{ &s.topic }</td>
                                    <td class="num">{ s.qos }</td>
                                    <td class="sub-options">{ s.options_text() }</td>
                                    <td class="row-actions">
                                        <button class="small danger-text" onclick={unsubscribe(s.topic.clone())}
                                            aria-label={format!("Unsubscribe {id} from {}", s.topic)}>
                                            { "Unsubscribe" }
                                        </button>
                                    </td>
                                </tr>
                            }).collect::<Html>(),
                        } }
                    </tbody>
                </table>
                <form class="form subscribe-form" {onsubmit}>
                    <h3>{ "Subscribe on its behalf" }</h3>
                    <div class="inline-fields">
                        <Input id="panel-sub-topic" label="Topic filter" value={(*topic).clone()}
                            oninput={{ let topic = topic.clone(); Callback::from(move |v| topic.set(v)) }}
                            mono=true placeholder="sensors/+/temperature" class="grow" />
                        <QosSelect id="panel-sub-qos" value={*qos}
                            onchange={{ let qos = qos.clone(); Callback::from(move |q| qos.set(q)) }} />
                        <button type="submit" class="primary">{ "Subscribe" }</button>
                    </div>
                    { flash_line(&local) }
                </form>
                <p class="hint">
                    <a href={View::Subscriptions.href(&[("clientid", &id)])}>{ "Its subscriptions on the Subscriptions page" }</a>
                </p>
            }
        </aside>
    }
}
