//! Small pieces the dashboard's pages share: labelled inputs, a button that asks before
//! it acts, the status line after an action, the note when a refresh failed, and local
//! time.

use web_sys::{HtmlElement, HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use super::api::Failure;
use super::format::{date_time, parse_rfc3339, short_time};

/// Minutes to add to UTC for local time at `ms` since the epoch.
pub fn offset_minutes(_ms: f64) -> i64 {
    #[cfg(target_arch = "wasm32")]
    {
        // getTimezoneOffset is UTC minus local.
        -(js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(_ms)).get_timezone_offset() as i64)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

/// An RFC 3339 time from the API in local time: `2026-11-25 10:44:07`.
pub fn local_time(rfc3339: &str) -> String {
    match parse_rfc3339(rfc3339) {
        Some(ms) => date_time(ms, offset_minutes(ms as f64)),
        None => rfc3339.to_owned(),
    }
}

/// An RFC 3339 time from the API for a table cell: the time of day when it is today,
/// else the date and minute.
pub fn table_time(rfc3339: &str) -> String {
    match parse_rfc3339(rfc3339) {
        Some(ms) => {
            let now = crate::platform::now_ms();
            short_time(ms, now as i64, offset_minutes(now))
        }
        None => rfc3339.to_owned(),
    }
}

/// The result of the last action on a page: shown in a status line.
pub type Flash = Option<Result<String, String>>;

/// The status line after an action (`role="status"`, so screen readers hear it).
pub fn flash_line(flash: &Flash) -> Html {
    match flash {
        None => html! { <p class="flash" role="status" /> },
        Some(Ok(text)) => html! { <p class="flash ok" role="status">{ text }</p> },
        Some(Err(text)) => html! { <p class="flash error" role="status">{ text }</p> },
    }
}

/// The note when the latest refresh of a live listing failed (the table keeps the last
/// good answer).
pub fn refresh_error(error: &Option<Failure>) -> Html {
    match error {
        Some(e) => html! {
            <p class="flash error" role="alert">{ format!("Could not refresh: {e}") }</p>
        },
        None => html! {},
    }
}

#[derive(Properties, PartialEq)]
pub struct InputProps {
    pub id: AttrValue,
    pub label: AttrValue,
    pub value: AttrValue,
    pub oninput: Callback<String>,
    #[prop_or(AttrValue::Static("text"))]
    pub kind: AttrValue,
    #[prop_or_default]
    pub placeholder: Option<AttrValue>,
    #[prop_or_default]
    pub autocomplete: Option<AttrValue>,
    #[prop_or_default]
    pub mono: bool,
    #[prop_or_default]
    pub error: Option<AttrValue>,
    #[prop_or_default]
    pub class: Classes,
}

/// A labelled `<input>`, its error under it (and tied to it for screen readers).
#[function_component(Input)]
pub fn input(props: &InputProps) -> Html {
    let oninput = {
        let cb = props.oninput.clone();
        Callback::from(move |e: InputEvent| {
            cb.emit(e.target_unchecked_into::<HtmlInputElement>().value())
        })
    };
    let error_id = format!("{}-error", props.id);
    html! {
        <div class={classes!("field", props.class.clone(), props.error.is_some().then_some("invalid"))}>
            <label for={props.id.clone()}>{ &props.label }</label>
            <input id={props.id.clone()} type={props.kind.clone()} value={props.value.clone()}
                class={classes!(props.mono.then_some("mono"))} {oninput} spellcheck="false"
                placeholder={props.placeholder.clone()}
                autocomplete={props.autocomplete.clone().unwrap_or(AttrValue::Static("off"))}
                aria-invalid={props.error.is_some().then_some("true")}
                aria-describedby={props.error.is_some().then(|| error_id.clone())} />
            if let Some(error) = &props.error {
                <p class="error" id={error_id}>{ error }</p>
            }
        </div>
    }
}

#[derive(Properties, PartialEq)]
pub struct QosProps {
    pub id: AttrValue,
    pub value: u8,
    pub onchange: Callback<u8>,
    #[prop_or(AttrValue::Static("QoS"))]
    pub label: AttrValue,
    /// Offer "any" (for filters): 255 stands for it.
    #[prop_or_default]
    pub any: bool,
}

/// Any QoS: the value [`QosSelect`] gives for "any".
pub const ANY_QOS: u8 = 255;

/// A labelled QoS `<select>`.
#[function_component(QosSelect)]
pub fn qos_select(props: &QosProps) -> Html {
    let onchange = {
        let cb = props.onchange.clone();
        Callback::from(move |e: Event| {
            let value = e.target_unchecked_into::<HtmlSelectElement>().value();
            cb.emit(value.parse().unwrap_or(ANY_QOS));
        })
    };
    let options: &[(u8, &str)] = &[
        (0, "0 · at most once"),
        (1, "1 · at least once"),
        (2, "2 · exactly once"),
    ];
    html! {
        <div class="field qos">
            <label for={props.id.clone()}>{ &props.label }</label>
            <select id={props.id.clone()} {onchange}>
                if props.any {
                    <option value="any" selected={props.value == ANY_QOS}>{ "Any" }</option>
                }
                { for options.iter().map(|&(q, text)| html! {
                    <option value={q.to_string()} selected={props.value == q}>{ text }</option>
                }) }
            </select>
        </div>
    }
}

#[derive(Properties, PartialEq)]
pub struct ConfirmProps {
    /// The button: `Kick`.
    pub label: AttrValue,
    /// The question once it was pressed: `Kick sensor-1?`.
    pub question: AttrValue,
    /// The button that acts: `Yes, kick`.
    pub confirm: AttrValue,
    pub onconfirm: Callback<()>,
    #[prop_or_default]
    pub disabled: bool,
    /// An accessible name for the first button when its label is short (`Kick sensor-1`).
    #[prop_or_default]
    pub aria_label: Option<AttrValue>,
    #[prop_or_default]
    pub class: Classes,
}

/// A button that asks before it acts: pressed, it turns into the question with the
/// acting button (focused) and Cancel; Escape cancels.
#[function_component(ConfirmButton)]
pub fn confirm_button(props: &ConfirmProps) -> Html {
    let open = use_state(|| false);
    let yes = use_node_ref();
    let first = use_node_ref();
    let was_open = use_mut_ref(|| false);
    {
        let yes = yes.clone();
        let first = first.clone();
        use_effect_with(*open, move |&open| {
            let target = if open {
                Some(&yes)
            } else if *was_open.borrow() {
                Some(&first)
            } else {
                None
            };
            if let Some(element) = target.and_then(|r| r.cast::<HtmlElement>()) {
                let _ = element.focus();
            }
            *was_open.borrow_mut() = open;
        });
    }
    let show = {
        let open = open.clone();
        Callback::from(move |_: MouseEvent| open.set(true))
    };
    let cancel = {
        let open = open.clone();
        Callback::from(move |_: MouseEvent| open.set(false))
    };
    let onkeydown = {
        let open = open.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Escape" {
                e.prevent_default();
                open.set(false);
            }
        })
    };
    let act = {
        let open = open.clone();
        let cb = props.onconfirm.clone();
        Callback::from(move |_: MouseEvent| {
            open.set(false);
            cb.emit(());
        })
    };
    if *open {
        html! {
            <span class="confirm-box" role="group" aria-label={props.question.clone()} {onkeydown}>
                <span class="confirm-question">{ &props.question }</span>
                <button class="small danger" ref={yes} onclick={act}>{ &props.confirm }</button>
                <button class="small" onclick={cancel}>{ "Cancel" }</button>
            </span>
        }
    } else {
        html! {
            <button class={classes!("small", props.class.clone())} ref={first} onclick={show}
                disabled={props.disabled} aria-label={props.aria_label.clone()}>
                { &props.label }
            </button>
        }
    }
}

/// A table row saying there is nothing to show (or that it is loading).
pub fn empty_row(columns: usize, text: &str) -> Html {
    html! {
        <tr class="empty-row"><td colspan={columns.to_string()}>{ text }</td></tr>
    }
}
