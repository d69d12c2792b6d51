//! The subscriptions page: every subscription with its 5.0 options, paged and live,
//! filtered by client id, topic filter (exact or contains), the filters that match a
//! topic name, and QoS; each can be removed (an unsubscribe on the client's behalf).

use std::rc::Rc;

use serde::Serialize;
use yew::prelude::*;

use super::api::{path, Api, Paged, Subscription};
use super::format::query;
use super::live::use_get;
use super::pager::{listing_rows, pager_for, refilter, use_fit_page, DEFAULT_LIMIT};
use super::ui::{flash_line, refresh_error, Flash, Input, QosSelect, ANY_QOS};
use super::{param, View};

#[derive(Properties, PartialEq)]
pub struct SubscriptionsProps {
    /// `clientid` and `topic` preset the filters.
    pub params: Rc<Vec<(String, String)>>,
}

#[derive(Serialize)]
struct UnsubscribeBody<'a> {
    topic: &'a str,
}

#[function_component(SubscriptionsPage)]
pub fn subscriptions_page(props: &SubscriptionsProps) -> Html {
    let api = use_context::<Api>().expect("API");
    let clientid = use_state(|| param(&props.params, "clientid").to_owned());
    let topic = use_state(|| param(&props.params, "topic").to_owned());
    let like = use_state(|| param(&props.params, "like_topic").to_owned());
    let matching = use_state(|| param(&props.params, "match_topic").to_owned());
    let qos = use_state(|| ANY_QOS);
    let page = use_state(|| 1usize);
    let limit = use_state(|| DEFAULT_LIMIT);
    let flash = use_state(|| Flash::None);

    let qos_text = if *qos == ANY_QOS {
        String::new()
    } else {
        qos.to_string()
    };
    let url = format!(
        "/subscriptions{}",
        query(&[
            ("page", &page.to_string()),
            ("limit", &limit.to_string()),
            ("clientid", clientid.trim()),
            ("topic", topic.trim()),
            ("like_topic", like.trim()),
            ("match_topic", matching.trim()),
            ("qos", &qos_text),
        ])
    );
    let (list, reload) = use_get::<Paged<Subscription>>(Some(url), true);
    use_fit_page(&page, list.data.as_ref().map(|d| d.meta));

    let filter = |state: &UseStateHandle<String>| refilter(state, &page);
    let unsubscribe = |s: &Subscription| {
        let (api, flash, reload) = (api.clone(), flash.clone(), reload.clone());
        let (id, filter) = (s.clientid.clone(), s.topic.clone());
        Callback::from(move |_: MouseEvent| {
            let (api, flash, reload, id, filter) = (
                api.clone(),
                flash.clone(),
                reload.clone(),
                id.clone(),
                filter.clone(),
            );
            yew::platform::spawn_local(async move {
                let body = UnsubscribeBody { topic: &filter };
                let result = api
                    .send("POST", &path("/clients", &id, "/unsubscribe"), Some(&body))
                    .await;
                flash.set(Some(match result {
                    Ok(()) => Ok(format!("Unsubscribed {id} from {filter}.")),
                    Err(f) => Err(f.message),
                }));
                reload.emit(());
            });
        })
    };
    let filtered = !(clientid.is_empty()
        && topic.is_empty()
        && like.is_empty()
        && matching.is_empty()
        && *qos == ANY_QOS);
    let clear = {
        let (clientid, topic, like, matching, qos, page) = (
            clientid.clone(),
            topic.clone(),
            like.clone(),
            matching.clone(),
            qos.clone(),
            page.clone(),
        );
        Callback::from(move |_: MouseEvent| {
            clientid.set(String::new());
            topic.set(String::new());
            like.set(String::new());
            matching.set(String::new());
            qos.set(ANY_QOS);
            page.set(1);
        })
    };

    let empty = if filtered {
        "No subscription matches."
    } else {
        "No subscriptions yet."
    };
    let rows = listing_rows(&list, 5, empty, |s| {
        html! {
                    <tr>
                        <td data-label="Client ID">
                            <a class="mono" href={View::Clients.href(&[("clientid", &s.clientid)])}>{ &s.clientid }</a>
                        </td>
                        <td data-label="Topic filter" class="mono topic-cell">{ &s.topic }</td>
                        <td data-label="QoS" class="num">{ s.qos }</td>
                        <td data-label="Options" class="sub-options">{ s.options_text() }</td>
                        <td data-label="Actions" class="row-actions">
                            <button class="small danger-text" onclick={unsubscribe(s)}
                                aria-label={format!("Unsubscribe {} from {}", s.clientid, s.topic)}>
                                { "Unsubscribe" }
                            </button>
                        </td>
                    </tr>
        }
    });

    html! {
        <div class="dash-page subscriptions">
            <div class="filters">
                <Input id="subs-clientid" label="Client ID" value={(*clientid).clone()}
                    oninput={filter(&clientid)} mono=true placeholder="exact id" />
                <Input id="subs-topic" label="Topic filter" value={(*topic).clone()}
                    oninput={filter(&topic)} mono=true placeholder="exact filter, e.g. a/+/c" />
                <Input id="subs-like" label="Filter contains" value={(*like).clone()}
                    oninput={filter(&like)} mono=true placeholder="part of a filter, e.g. sensor" />
                <Input id="subs-match" label="Matches topic" value={(*matching).clone()}
                    oninput={filter(&matching)} mono=true placeholder="a topic name, e.g. a/b/c" />
                <QosSelect id="subs-qos" value={*qos} any=true
                    onchange={refilter(&qos, &page)} />
                <button class="refresh" onclick={clear} disabled={!filtered}>{ "Clear filters" }</button>
            </div>
            { flash_line(&flash) }
            { refresh_error(&list.error) }
            <div class="table-wrap">
                <table class="table">
                    <thead>
                        <tr>
                            <th scope="col">{ "Client ID" }</th>
                            <th scope="col">{ "Topic filter" }</th>
                            <th scope="col" class="num">{ "QoS" }</th>
                            <th scope="col">{ "Options" }</th>
                            <th scope="col"><span class="sr">{ "Actions" }</span></th>
                        </tr>
                    </thead>
                    <tbody>{ rows }</tbody>
                </table>
            </div>
            { pager_for(list.data.as_ref().map(|d| d.meta), &page, &limit, "subscriptions") }
        </div>
    }
}
