//! The retained page: the messages the broker keeps, live and paged, searchable by topic;
//! one message's payload as text or hex; deleting one (after asking).

use std::rc::Rc;

use yew::prelude::*;

use super::api::{path, Api, Paged, Retained};
use super::format::{bytes, hex, preview, query};
use super::live::use_get;
use super::pager::{listing_rows, pager_for, refilter, use_fit_page, DEFAULT_LIMIT};
use super::param;
use super::ui::{flash_line, refresh_error, ConfirmButton, Flash, Input};

/// Characters of a payload shown in the table.
const PREVIEW: usize = 60;

/// How the viewer shows a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    Text,
    Hex,
}

/// A payload as text: UTF-8 as is; anything else with replacement characters and a note.
pub fn as_text(payload: &[u8]) -> (String, bool) {
    match std::str::from_utf8(payload) {
        Ok(text) => (text.to_owned(), true),
        Err(_) => (String::from_utf8_lossy(payload).into_owned(), false),
    }
}

/// The table's short view of a listed message.
fn cell_preview(m: &Retained) -> Html {
    match (&m.payload, m.encoding.as_str()) {
        (None, _) => html! { <span class="muted">{ "(large: open it to see)" }</span> },
        (Some(p), _) if p.is_empty() => html! { <span class="muted">{ "(empty)" }</span> },
        (Some(_), "base64") => {
            let bytes = m.bytes().unwrap_or_default();
            html! { <span class="mono muted">{ format!("binary · {}", preview(&hex(&bytes), PREVIEW)) }</span> }
        }
        (Some(p), _) => html! { <span class="mono">{ preview(p, PREVIEW) }</span> },
    }
}

#[derive(Properties, PartialEq)]
pub struct RetainedProps {
    /// `topic` opens that message.
    pub params: Rc<Vec<(String, String)>>,
}

#[function_component(RetainedPage)]
pub fn retained_page(props: &RetainedProps) -> Html {
    let api = use_context::<Api>().expect("API");
    let like = use_state(String::new);
    let page = use_state(|| 1usize);
    let limit = use_state(|| DEFAULT_LIMIT);
    let flash = use_state(|| Flash::None);
    let selected = {
        let initial = param(&props.params, "topic").to_owned();
        use_state(move || (!initial.is_empty()).then_some(initial))
    };
    let url = format!(
        "/retained{}",
        query(&[
            ("page", &page.to_string()),
            ("limit", &limit.to_string()),
            ("like_topic", like.trim()),
        ])
    );
    let (list, reload) = use_get::<Paged<Retained>>(Some(url), true);
    use_fit_page(&page, list.data.as_ref().map(|d| d.meta));

    let delete = {
        let (api, flash, reload, selected) =
            (api.clone(), flash.clone(), reload.clone(), selected.clone());
        Callback::from(move |topic: String| {
            let (api, flash, reload, selected) =
                (api.clone(), flash.clone(), reload.clone(), selected.clone());
            yew::platform::spawn_local(async move {
                let result = api
                    .send::<()>("DELETE", &path("/retained", &topic, ""), None)
                    .await;
                flash.set(Some(match result {
                    Ok(()) => Ok(format!("Deleted the retained message of {topic}.")),
                    Err(f) => Err(f.message),
                }));
                if selected.as_deref() == Some(topic.as_str()) {
                    selected.set(None);
                }
                reload.emit(());
            });
        })
    };
    let open = |topic: &str| {
        let (selected, topic) = (selected.clone(), topic.to_owned());
        Callback::from(move |_: MouseEvent| selected.set(Some(topic.clone())))
    };
    let on_like = refilter(&like, &page);

    let empty = if like.is_empty() {
        "No retained messages: publish one with the retain flag."
    } else {
        "No retained message on a matching topic."
    };
    let rows = listing_rows(&list, 5, empty, |m| {
        let topic = m.topic.clone();
        html! {
            <tr class={classes!((selected.as_deref() == Some(m.topic.as_str())).then_some("selected"))}>
                <td data-label="Topic" class="topic-cell">
                    <button class="linkish mono" onclick={open(&m.topic)}
                        aria-label={format!("View the message of {}", m.topic)}>{ &m.topic }</button>
                </td>
                <td data-label="QoS" class="num">{ m.qos }</td>
                <td data-label="Size" class="num nowrap">{ bytes(m.size) }</td>
                <td data-label="Payload" class="payload-cell">{ cell_preview(m) }</td>
                <td data-label="Actions" class="row-actions">
                    <button class="small" onclick={open(&m.topic)}
                        aria-label={format!("View {}", m.topic)}>{ "View" }</button>
                    <ConfirmButton label="Delete" class="danger-text"
                        aria_label={format!("Delete the retained message of {}", m.topic)}
                        question={format!("Delete {}?", m.topic)} confirm="Delete"
                        onconfirm={delete.reform(move |()| topic.clone())} />
                </td>
            </tr>
        }
    });

    html! {
        <div class="dash-page retained">
            <div class="filters">
                <Input id="retained-search" label="Topic contains" value={(*like).clone()}
                    oninput={on_like} mono=true placeholder="search…" class="grow" />
                <button class="refresh" onclick={reload.reform(|_: MouseEvent| ())}>{ "Refresh" }</button>
            </div>
            { flash_line(&flash) }
            { refresh_error(&list.error) }
            if let Some(topic) = (*selected).clone() {
                <Viewer key={topic.clone()} topic={topic.clone()}
                    onclose={{ let selected = selected.clone(); Callback::from(move |()| selected.set(None)) }}
                    ondelete={delete.clone()} />
            }
            <div class="table-wrap">
                <table class="table">
                    <thead>
                        <tr>
                            <th scope="col">{ "Topic" }</th>
                            <th scope="col" class="num">{ "QoS" }</th>
                            <th scope="col" class="num">{ "Size" }</th>
                            <th scope="col">{ "Payload" }</th>
                            <th scope="col"><span class="sr">{ "Actions" }</span></th>
                        </tr>
                    </thead>
                    <tbody>{ rows }</tbody>
                </table>
            </div>
            { pager_for(list.data.as_ref().map(|d| d.meta), &page, &limit, "messages") }
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct ViewerProps {
    topic: String,
    onclose: Callback<()>,
    ondelete: Callback<String>,
}

/// One retained message, fetched whole: its payload as text or hex.
#[function_component(Viewer)]
fn viewer(props: &ViewerProps) -> Html {
    let (message, _) = use_get::<Retained>(Some(path("/retained", &props.topic, "")), false);
    let shown = use_state(|| Shown::Text);
    let heading = use_node_ref();
    {
        let heading = heading.clone();
        use_effect_with(props.topic.clone(), move |_| {
            if let Some(h) = heading.cast::<web_sys::HtmlElement>() {
                let _ = h.focus();
            }
        });
    }
    let tab = |to: Shown, label: &str| {
        let shown_now = *shown == to;
        let shown = shown.clone();
        html! {
            <button class={classes!("small", shown_now.then_some("active"))} aria-pressed={shown_now.to_string()}
                onclick={Callback::from(move |_: MouseEvent| shown.set(to))}>{ label }</button>
        }
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
    let topic = props.topic.clone();
    let body = match (message.data.as_deref(), &message.error) {
        (_, Some(e)) => html! { <p class="flash error" role="alert">{ e.to_string() }</p> },
        (None, None) => html! { <p class="muted">{ "Loading…" }</p> },
        (Some(m), None) => {
            let payload = m.bytes().unwrap_or_default();
            let (text, utf8) = as_text(&payload);
            html! {
                <>
                    <div class="viewer-meta">
                        <span class="tag">{ format!("QoS {}", m.qos) }</span>
                        <span class="tag">{ bytes(m.size) }</span>
                        if !utf8 { <span class="tag retain">{ "not UTF-8" }</span> }
                        <span class="spacer" />
                        <span class="segmented" role="group" aria-label="Show the payload as">
                            { tab(Shown::Text, "Text") }
                            { tab(Shown::Hex, "Hex") }
                        </span>
                    </div>
                    if payload.is_empty() {
                        <p class="payload empty">{ "(empty payload)" }</p>
                    } else {
                        <pre class="payload viewer-payload">{
                            match *shown { Shown::Text => text, Shown::Hex => hex(&payload) }
                        }</pre>
                    }
                </>
            }
        }
    };
    html! {
        <section class="card viewer" aria-labelledby="viewer-title" {onkeydown}>
            <div class="panel-head">
                <h2 id="viewer-title" tabindex="-1" ref={heading}>
                    <span class="muted">{ "Retained on " }</span><span class="mono">{ &props.topic }</span>
                </h2>
                <ConfirmButton label="Delete" class="danger-text"
                    aria_label={format!("Delete the retained message of {}", props.topic)}
                    question={format!("Delete {}?", props.topic)} confirm="Delete"
                    onconfirm={props.ondelete.reform(move |()| topic.clone())} />
                <button class="icon" onclick={close} aria-label="Close the message" title="Close (Esc)">{ "×" }</button>
            </div>
            { body }
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_text() {
        assert_eq!(as_text(b"hello"), ("hello".to_owned(), true));
        let (text, utf8) = as_text(&[0x68, 0xff, 0x69]);
        assert!(!utf8);
        assert_eq!(text, "h\u{fffd}i");
    }
}
