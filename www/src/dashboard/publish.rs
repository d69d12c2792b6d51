//! The publish page: topic, payload, QoS and retain to `POST /api/v1/publish`; the answer
//! says how many subscriptions got it. Ctrl+Enter in the payload publishes.

use web_sys::HtmlTextAreaElement;
use yew::prelude::*;

use super::api::{Api, PublishRequest, Published};
use super::format::plural;
use super::ui::{flash_line, Flash, Input, QosSelect};
use super::View;

/// What is wrong with a topic name before the broker is asked, if anything obvious.
pub fn topic_problem(topic: &str) -> Option<&'static str> {
    if topic.is_empty() {
        Some("Enter a topic.")
    } else if topic.contains(['+', '#']) {
        Some("A topic name has no wildcards (+ or #).")
    } else {
        None
    }
}

#[function_component(PublishPage)]
pub fn publish_page() -> Html {
    let api = use_context::<Api>().expect("API");
    let topic = use_state(|| "topic_1".to_owned());
    let payload = use_state(|| "hello".to_owned());
    let qos = use_state(|| 0u8);
    let retain = use_state(|| false);
    let base64 = use_state(|| false);
    let busy = use_state(|| false);
    let flash = use_state(|| Flash::None);
    let tried = use_state(|| false);
    let problem = topic_problem(&topic).filter(|_| *tried);

    let submit = {
        let (api, topic, payload, qos, retain, base64, busy, flash, tried) = (
            api.clone(),
            topic.clone(),
            payload.clone(),
            qos.clone(),
            retain.clone(),
            base64.clone(),
            busy.clone(),
            flash.clone(),
            tried.clone(),
        );
        Callback::from(move |()| {
            tried.set(true);
            if *busy || topic_problem(&topic).is_some() {
                return;
            }
            busy.set(true);
            let request = PublishRequest {
                topic: (*topic).clone(),
                payload: (*payload).clone(),
                qos: *qos,
                retain: *retain,
                encoding: if *base64 { "base64" } else { "plain" },
            };
            let (api, busy, flash) = (api.clone(), busy.clone(), flash.clone());
            yew::platform::spawn_local(async move {
                let result: Result<Published, _> = api.post("/publish", &request).await;
                busy.set(false);
                flash.set(Some(match result {
                    Ok(p) => Ok(format!(
                        "Published to {}{}: delivered to {}.",
                        request.topic,
                        if request.retain { " (retained)" } else { "" },
                        plural(p.delivered_to, "subscription", "subscriptions")
                    )),
                    Err(f) => Err(f.message),
                }));
            });
        })
    };
    let onsubmit = submit.reform(|e: SubmitEvent| e.prevent_default());
    let onkeydown = {
        let submit = submit.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Enter" && (e.ctrl_key() || e.meta_key()) {
                e.prevent_default();
                submit.emit(());
            }
        })
    };
    let on_payload = {
        let payload = payload.clone();
        Callback::from(move |e: InputEvent| {
            payload.set(e.target_unchecked_into::<HtmlTextAreaElement>().value())
        })
    };
    let check = |state: &UseStateHandle<bool>| {
        let state = state.clone();
        Callback::from(move |e: Event| {
            state.set(
                e.target_unchecked_into::<web_sys::HtmlInputElement>()
                    .checked(),
            )
        })
    };

    html! {
        <div class="dash-page publish">
            <section class="card">
                <form class="form" {onsubmit} novalidate=true>
                    <div class="publish-grid">
                        <Input id="dash-pub-topic" label="Topic" value={(*topic).clone()} mono=true
                            oninput={{ let topic = topic.clone(); Callback::from(move |v| topic.set(v)) }}
                            error={problem.map(AttrValue::from)} class="grow" />
                        <QosSelect id="dash-pub-qos" value={*qos}
                            onchange={{ let qos = qos.clone(); Callback::from(move |q| qos.set(q)) }} />
                    </div>
                    <div class="field wide">
                        <label for="dash-pub-payload">{ "Payload" }</label>
                        <textarea id="dash-pub-payload" class="mono" rows="6" value={(*payload).clone()}
                            oninput={on_payload} {onkeydown} spellcheck="false"
                            aria-describedby="dash-pub-payload-hint" />
                        <p class="hint" id="dash-pub-payload-hint">
                            { "Sent as is (UTF-8), or decoded first when it is base64. Ctrl+Enter publishes." }
                        </p>
                    </div>
                    <div class="checks">
                        <label class="check-label">
                            <input id="dash-pub-retain" type="checkbox" checked={*retain} onchange={check(&retain)} />
                            { "Retain" }
                        </label>
                        <label class="check-label">
                            <input id="dash-pub-base64" type="checkbox" checked={*base64} onchange={check(&base64)} />
                            { "Payload is base64" }
                        </label>
                    </div>
                    <div class="actions">
                        <button type="submit" class="primary" disabled={*busy}>{ "Publish" }</button>
                        { flash_line(&flash) }
                    </div>
                </form>
            </section>
            <p class="hint">
                { "Retained messages are listed on the " }
                <a href={View::Retained.href(&[])}>{ "Retained" }</a>
                { " page; an empty retained message clears its topic." }
            </p>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_checked() {
        assert_eq!(topic_problem(""), Some("Enter a topic."));
        assert!(topic_problem("a/+/b").is_some());
        assert!(topic_problem("a/#").is_some());
        assert_eq!(topic_problem("topic_1"), None);
    }
}
