//! The topics page: the distinct topic filters clients subscribe to, with how many
//! sessions use each, live and paged; a filter leads to its subscribers.

use yew::prelude::*;

use super::api::{Paged, Topic};
use super::format::{group, query};
use super::live::use_get;
use super::pager::{listing_rows, pager_for, refilter, use_fit_page, DEFAULT_LIMIT};
use super::ui::{refresh_error, Input};
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
    let on_match = refilter(&matching, &page);

    let empty = if matching.is_empty() {
        "No topics: nobody is subscribed yet."
    } else {
        "No subscribed filter matches this topic."
    };
    let rows = listing_rows(&list, 3, empty, |t| {
        html! {
                    <tr>
                        <td data-label="Topic filter" class="mono topic-cell">{ &t.topic }</td>
                        <td data-label="Subscribers" class="num">{ group(t.subscribers) }</td>
                        <td data-label="Actions" class="row-actions">
                            <a href={View::Subscriptions.href(&[("topic", &t.topic)])}
                                aria-label={format!("Subscribers of {}", t.topic)}>{ "Subscribers ›" }</a>
                        </td>
                    </tr>
        }
    });

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
            { pager_for(list.data.as_ref().map(|d| d.meta), &page, &limit, "topics") }
        </div>
    }
}
