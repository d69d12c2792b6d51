//! Labelled form controls shared by the panes: each has a visible label tied to the
//! control, an optional hint, and an error message the control points at
//! (`aria-describedby`), so forms read well with a keyboard and a screen reader.

use web_sys::{HtmlInputElement, HtmlSelectElement, HtmlTextAreaElement};
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct TextProps {
    pub id: AttrValue,
    pub label: AttrValue,
    pub value: AttrValue,
    pub oninput: Callback<String>,
    #[prop_or_default]
    pub error: Option<AttrValue>,
    #[prop_or_default]
    pub hint: Option<AttrValue>,
    #[prop_or_default]
    pub placeholder: Option<AttrValue>,
    /// `text`, `password`, `number`, `url`.
    #[prop_or(AttrValue::Static("text"))]
    pub kind: AttrValue,
    /// Monospace, for topics, URLs and ids.
    #[prop_or_default]
    pub mono: bool,
    #[prop_or_default]
    pub autocomplete: Option<AttrValue>,
    #[prop_or_default]
    pub class: Classes,
    /// Shown after the input, on the same line (a "Random" button, say).
    #[prop_or_default]
    pub children: Html,
}

/// A labelled `<input>`.
#[function_component(TextField)]
pub fn text_field(props: &TextProps) -> Html {
    let oninput = {
        let cb = props.oninput.clone();
        Callback::from(move |e: InputEvent| {
            cb.emit(e.target_unchecked_into::<HtmlInputElement>().value())
        })
    };
    let described = described_by(&props.id, props.hint.is_some(), props.error.is_some());
    html! {
        <div class={classes!("field", props.class.clone(), props.error.is_some().then_some("invalid"))}>
            <label for={props.id.clone()}>{ &props.label }</label>
            <div class="control">
                <input id={props.id.clone()} type={props.kind.clone()} value={props.value.clone()}
                    class={classes!(props.mono.then_some("mono"))}
                    placeholder={props.placeholder.clone()} {oninput} spellcheck="false"
                    autocomplete={props.autocomplete.clone().unwrap_or(AttrValue::Static("off"))}
                    aria-invalid={props.error.is_some().then_some("true")}
                    aria-describedby={described} />
                { props.children.clone() }
            </div>
            { messages(&props.id, &props.hint, &props.error) }
        </div>
    }
}

#[derive(Properties, PartialEq)]
pub struct AreaProps {
    pub id: AttrValue,
    pub label: AttrValue,
    pub value: AttrValue,
    pub oninput: Callback<String>,
    #[prop_or_default]
    pub error: Option<AttrValue>,
    #[prop_or_default]
    pub hint: Option<AttrValue>,
    #[prop_or(4)]
    pub rows: u32,
    #[prop_or_default]
    pub onkeydown: Option<Callback<KeyboardEvent>>,
}

/// A labelled `<textarea>` (monospace: payloads).
#[function_component(TextArea)]
pub fn text_area(props: &AreaProps) -> Html {
    let oninput = {
        let cb = props.oninput.clone();
        Callback::from(move |e: InputEvent| {
            cb.emit(e.target_unchecked_into::<HtmlTextAreaElement>().value())
        })
    };
    let described = described_by(&props.id, props.hint.is_some(), props.error.is_some());
    html! {
        <div class={classes!("field", "wide", props.error.is_some().then_some("invalid"))}>
            <label for={props.id.clone()}>{ &props.label }</label>
            <textarea id={props.id.clone()} class="mono" rows={props.rows.to_string()}
                value={props.value.clone()} {oninput} spellcheck="false"
                onkeydown={props.onkeydown.clone()}
                aria-invalid={props.error.is_some().then_some("true")}
                aria-describedby={described} />
            { messages(&props.id, &props.hint, &props.error) }
        </div>
    }
}

#[derive(Properties, PartialEq)]
pub struct CheckProps {
    pub id: AttrValue,
    pub label: AttrValue,
    pub checked: bool,
    pub onchange: Callback<bool>,
    #[prop_or_default]
    pub hint: Option<AttrValue>,
}

/// A checkbox with its label on the right.
#[function_component(Check)]
pub fn check(props: &CheckProps) -> Html {
    let onchange = {
        let cb = props.onchange.clone();
        Callback::from(move |e: Event| {
            cb.emit(e.target_unchecked_into::<HtmlInputElement>().checked())
        })
    };
    let described = described_by(&props.id, props.hint.is_some(), false);
    html! {
        <div class="field check">
            <label>
                <input id={props.id.clone()} type="checkbox" checked={props.checked} {onchange}
                    aria-describedby={described} />
                <span>{ &props.label }</span>
            </label>
            { messages(&props.id, &props.hint, &None) }
        </div>
    }
}

/// One `<option>`: value, text, and whether it can be chosen.
#[derive(Clone, PartialEq)]
pub struct Choice {
    pub value: AttrValue,
    pub label: AttrValue,
    pub disabled: bool,
}

impl Choice {
    pub fn new(value: impl Into<AttrValue>, label: impl Into<AttrValue>) -> Choice {
        Choice {
            value: value.into(),
            label: label.into(),
            disabled: false,
        }
    }
}

#[derive(Properties, PartialEq)]
pub struct SelectProps {
    pub id: AttrValue,
    pub label: AttrValue,
    pub value: AttrValue,
    pub choices: Vec<Choice>,
    pub onchange: Callback<String>,
    #[prop_or_default]
    pub error: Option<AttrValue>,
    #[prop_or_default]
    pub hint: Option<AttrValue>,
    #[prop_or_default]
    pub class: Classes,
}

/// A labelled `<select>`.
#[function_component(Select)]
pub fn select(props: &SelectProps) -> Html {
    let onchange = {
        let cb = props.onchange.clone();
        Callback::from(move |e: Event| {
            cb.emit(e.target_unchecked_into::<HtmlSelectElement>().value())
        })
    };
    let described = described_by(&props.id, props.hint.is_some(), props.error.is_some());
    html! {
        <div class={classes!("field", props.class.clone(), props.error.is_some().then_some("invalid"))}>
            <label for={props.id.clone()}>{ &props.label }</label>
            <select id={props.id.clone()} {onchange} aria-describedby={described}
                aria-invalid={props.error.is_some().then_some("true")}>
                { for props.choices.iter().map(|c| html! {
                    <option value={c.value.clone()} selected={c.value == props.value}
                        disabled={c.disabled}>{ &c.label }</option>
                }) }
            </select>
            { messages(&props.id, &props.hint, &props.error) }
        </div>
    }
}

/// QoS 0, 1, 2.
pub fn qos_choices() -> Vec<Choice> {
    vec![
        Choice::new("0", "0 · at most once"),
        Choice::new("1", "1 · at least once"),
        Choice::new("2", "2 · exactly once"),
    ]
}

fn described_by(id: &AttrValue, hint: bool, error: bool) -> Option<AttrValue> {
    let hint = hint && !error;
    let ids: Vec<String> = [(hint, "hint"), (error, "error")]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, what)| format!("{id}-{what}"))
        .collect();
    (!ids.is_empty()).then(|| ids.join(" ").into())
}

/// The hint, or the error instead of it (they say much the same thing).
fn messages(id: &AttrValue, hint: &Option<AttrValue>, error: &Option<AttrValue>) -> Html {
    let hint = if error.is_some() { &None } else { hint };
    html! {
        <>
            if let Some(hint) = hint {
                <p class="hint" id={format!("{id}-hint")}>{ hint }</p>
            }
            if let Some(error) = error {
                <p class="error" id={format!("{id}-error")} role="alert">{ error }</p>
            }
        </>
    }
}
