//! Changing the dashboard password: old, new and confirmation, checked here first (eight
//! characters or more, confirmed, not the old one) and then by the broker
//! (`PUT /api/v1/users/{name}/password`), whose message is shown when it refuses.

use serde::Serialize;
use yew::prelude::*;

use super::api::{path, Api};
use super::ui::Input;

/// The shortest password the broker takes.
pub const MIN_LEN: usize = 8;

/// What is wrong with the form, field by field: (old, new, confirm).
pub fn check(old: &str, new: &str, confirm: &str) -> [Option<&'static str>; 3] {
    let old_error = old.is_empty().then_some("Enter the current password.");
    let new_error = if new.chars().count() < MIN_LEN {
        Some("At least 8 characters.")
    } else if new == old {
        Some("The new password must differ from the current one.")
    } else {
        None
    };
    let confirm_error = (confirm != new).then_some("The two new passwords differ.");
    [old_error, new_error, confirm_error]
}

#[derive(Serialize)]
struct Body<'a> {
    old_password: &'a str,
    new_password: &'a str,
}

#[derive(Properties, PartialEq)]
pub struct ChangeProps {
    pub username: AttrValue,
    /// Called with `true` once changed, `false` when cancelled.
    pub ondone: Callback<bool>,
}

#[function_component(ChangePassword)]
pub fn change_password(props: &ChangeProps) -> Html {
    let api = use_context::<Api>().expect("API");
    let old = use_state(String::new);
    let new = use_state(String::new);
    let confirm = use_state(String::new);
    // Field errors show once the user tried to submit.
    let tried = use_state(|| false);
    let busy = use_state(|| false);
    let failure = use_state(|| None::<String>);

    let errors = check(&old, &new, &confirm);
    let shown = |i: usize| errors[i].filter(|_| *tried).map(AttrValue::from);

    let onsubmit = {
        let (old, new, tried, busy, failure) = (
            old.clone(),
            new.clone(),
            tried.clone(),
            busy.clone(),
            failure.clone(),
        );
        let ondone = props.ondone.clone();
        let username = props.username.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            tried.set(true);
            if errors.iter().any(Option::is_some) || *busy {
                return;
            }
            busy.set(true);
            failure.set(None);
            let (api, busy, failure, ondone) =
                (api.clone(), busy.clone(), failure.clone(), ondone.clone());
            let (old, new) = ((*old).clone(), (*new).clone());
            let url = path("/users", &username, "/password");
            yew::platform::spawn_local(async move {
                let body = Body {
                    old_password: &old,
                    new_password: &new,
                };
                let result = api.send("PUT", &url, Some(&body)).await;
                busy.set(false);
                match result {
                    Ok(()) => ondone.emit(true),
                    Err(f) => failure.set(Some(f.message)),
                }
            });
        })
    };
    let cancel = {
        let ondone = props.ondone.clone();
        Callback::from(move |_: MouseEvent| ondone.emit(false))
    };
    let set = |state: &UseStateHandle<String>| {
        let state = state.clone();
        Callback::from(move |v: String| state.set(v))
    };

    html! {
        <section class="card password-card" aria-labelledby="password-title">
            <h2 id="password-title">{ format!("Change the password of {}", props.username) }</h2>
            <form class="form" {onsubmit} novalidate=true>
                <div class="grid">
                    <Input id="pw-old" label="Current password" kind="password" value={(*old).clone()}
                        oninput={set(&old)} autocomplete="current-password" error={shown(0)} />
                    <Input id="pw-new" label="New password" kind="password" value={(*new).clone()}
                        oninput={set(&new)} autocomplete="new-password" error={shown(1)} />
                    <Input id="pw-confirm" label="New password again" kind="password" value={(*confirm).clone()}
                        oninput={set(&confirm)} autocomplete="new-password" error={shown(2)} />
                </div>
                <p class="hint">{ "8 characters or more. Other sessions of this account are logged out." }</p>
                <div class="actions">
                    <button type="submit" class="primary" disabled={*busy}>{ "Change password" }</button>
                    <button type="button" onclick={cancel}>{ "Cancel" }</button>
                    if let Some(message) = &*failure {
                        <p class="error" role="alert">{ message }</p>
                    }
                </div>
            </form>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_checked() {
        assert_eq!(
            check("public", "longenough", "longenough"),
            [None, None, None]
        );
        assert_eq!(
            check("", "longenough", "longenough")[0],
            Some("Enter the current password.")
        );
        assert_eq!(
            check("public", "short", "short")[1],
            Some("At least 8 characters.")
        );
        // Characters, not bytes.
        assert_eq!(
            check("public", "ééééééé", "ééééééé")[1],
            Some("At least 8 characters.")
        );
        assert_eq!(
            check("samesame1", "samesame1", "samesame1")[1],
            Some("The new password must differ from the current one.")
        );
        assert_eq!(
            check("public", "longenough", "longenougH")[2],
            Some("The two new passwords differ.")
        );
    }
}
