//! The topics page: the distinct topic filters clients subscribe to, with how many
//! sessions use each, live and paged; a filter leads to its subscribers.

use yew::prelude::*;

use super::api::{Paged, Topic};
use super::format::{group, query};
use super::live::use_get;
use super::pager::{use_fit_page, Pager, DEFAULT_LIMIT};
use super::ui::{empty_row, refresh_error, Input};
use super::View;

#[function_component(TopicsPage)]
pub fn topics_page() -> Html {
    let matching = use_state(String::new);
    let page = use_state(|| 1usize);
    let limit = use_state(|| DEFAULT_LIMIT);
    let url = format!(
        "/topics{}",
        query(&[
            ("page", &page.to_string()),
            ("limit", &limit.to_string()),
            ("match_topic", matching.trim()),
        ])
    );
    let (list, _) = use_get::<Paged<Topic>>(Some(url), true);
    use_fit_page(&page, list.data.as_ref().map(|d| d.meta));
    let on_match = {
        let (matching, page) = (matching.clone(), page.clone());
        Callback::from(move |v: String| {
            matching.set(v);
            page.set(1);
        })
    };

    let rows = match list.data.as_deref() {
        None if list.loading() => empty_row(3, "Loading…"),
        None => empty_row(3, "The list could not be loaded."),
        Some(p) if p.data.is_empty() => empty_row(
            3,
            if matching.is_empty() {
                "No topics: nobody is subscribed yet."
            } else {
                "No subscribed filter matches this topic."
            },
        ),
        Some(p) => p
            .data
            .iter()
            .map(|t| html! {
                <tr>
                    <td data-label="Topic filter" class="mono topic-cell">{ &t.topic }</td>
                    <td data-label="Subscribers" class="num">{ group(t.subscribers) }</td>
                    <td data-label="Actions" class="row-actions">
                        <a href={View::Subscriptions.href(&[("topic", &t.topic)])}
                            aria-label={format!("Subscribers of {}", t.topic)}>{ "Subscribers ›" }</a>
                    </td>
                </tr>
            })
            .collect(),
    };

    html! {
        <div class="dash-page topics">
            <div class="filters">
                <Input id="topics-match" label="Matches topic" value={(*matching).clone()}
                    oninput={on_match} mono=true placeholder="a topic name: which filters would get it?" class="grow" />
            </div>
            { refresh_error(&list.error) }
            <div class="table-wrap">
                <table class="table">
                    <thead>
                        <tr>
                            <th scope="col">{ "Topic filter" }</th>
                            <th scope="col" class="num">{ "Subscribers" }</th>
                            <th scope="col"><span class="sr">{ "Actions" }</span></th>
                        </tr>
                    </thead>
                    <tbody>{ rows }</tbody>
                </table>
            </div>
            <Pager meta={list.data.as_ref().map(|d| d.meta)} page={*page} limit={*limit} noun="topics"
                onpage={{ let page = page.clone(); Callback::from(move |p| page.set(p)) }}
                onlimit={{ let (limit, page) = (limit.clone(), page.clone());
                    Callback::from(move |l| { limit.set(l); page.set(1); }) }} />
        </div>
    }
}
