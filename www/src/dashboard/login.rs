//! The login page: username and password to `POST /api/v1/login`. A wrong password shows
//! the API's message; after repeated failures the broker answers 429 with a delay, shown
//! as a countdown during which the form waits.

use gloo_timers::callback::Interval;
use yew::prelude::*;

use super::api::{Api, Login};
use super::ui::Input;
use crate::platform;

#[derive(Properties, PartialEq)]
pub struct LoginProps {
    pub onlogin: Callback<Login>,
    /// Why the user is here again (logged out, session ended).
    #[prop_or_default]
    pub notice: Option<AttrValue>,
}

/// Seconds left until `until_ms`, rounded up.
pub fn seconds_left(until_ms: f64, now_ms: f64) -> u64 {
    let left = until_ms - now_ms;
    if left <= 0.0 {
        0
    } else {
        (left / 1000.0).ceil() as u64
    }
}

#[function_component(LoginPage)]
pub fn login_page(props: &LoginProps) -> Html {
    let username = use_state(String::new);
    let password = use_state(String::new);
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);
    // Throttled until this time (ms since the epoch).
    let wait_until = use_state(|| 0.0f64);
    // Re-renders every second while throttled, for the countdown.
    let now = use_state(platform::now_ms);

    {
        let now = now.clone();
        let wait_until = *wait_until;
        use_effect_with(wait_until, move |_| {
            let ticker = (wait_until > platform::now_ms())
                .then(|| Interval::new(500, move || now.set(platform::now_ms())));
            move || drop(ticker)
        });
    }
    let left = seconds_left(*wait_until, *now);

    let onsubmit = {
        let (username, password, error, busy, wait_until, now) = (
            username.clone(),
            password.clone(),
            error.clone(),
            busy.clone(),
            wait_until.clone(),
            now.clone(),
        );
        let onlogin = props.onlogin.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if *busy || seconds_left(*wait_until, platform::now_ms()) > 0 {
                return;
            }
            if username.trim().is_empty() || password.is_empty() {
                error.set(Some("Enter the username and the password.".into()));
                return;
            }
            busy.set(true);
            error.set(None);
            let (user, pass) = (username.trim().to_owned(), (*password).clone());
            let (error, busy, wait_until, now, password, onlogin) = (
                error.clone(),
                busy.clone(),
                wait_until.clone(),
                now.clone(),
                password.clone(),
                onlogin.clone(),
            );
            yew::platform::spawn_local(async move {
                let result = Api::login(&user, &pass).await;
                busy.set(false);
                match result {
                    Ok(login) => onlogin.emit(login),
                    Err(failure) => {
                        password.set(String::new());
                        if failure.status == 429 {
                            let seconds = failure.retry_after.unwrap_or(5);
                            let t = platform::now_ms();
                            now.set(t);
                            wait_until.set(t + seconds as f64 * 1000.0);
                            error.set(Some("Too many failed logins.".into()));
                        } else {
                            error.set(Some(failure.message));
                        }
                    }
                }
            });
        })
    };

    let set = |state: &UseStateHandle<String>| {
        let state = state.clone();
        Callback::from(move |v: String| state.set(v))
    };

    html! {
        <div class="login-wrap">
            <form class="login card form" onsubmit={onsubmit} aria-labelledby="login-title" novalidate=true>
                <h1 id="login-title" class="login-title">
                    <span class="brand-mark" aria-hidden="true">{ "◆" }</span>
                    { "Dashboard login" }
                </h1>
                <p class="muted">{ "Manage this broker: clients, subscriptions, retained messages, metrics." }</p>
                if let Some(notice) = &props.notice {
                    <p class="notice" role="status">{ notice }</p>
                }
                <Input id="login-username" label="Username" value={(*username).clone()}
                    oninput={set(&username)} autocomplete="username" />
                <Input id="login-password" label="Password" kind="password" value={(*password).clone()}
                    oninput={set(&password)} autocomplete="current-password" />
                <div class="login-error" aria-live="assertive">
                    if let Some(message) = &*error {
                        <p class="error" role="alert">
                            { message }
                            if left > 0 {
                                { format!(" Try again in {left} s.") }
                            }
                        </p>
                    }
                </div>
                <button type="submit" class="primary login-submit" disabled={*busy || left > 0}>
                    { if *busy { "Logging in…".to_owned() } else if left > 0 { format!("Wait {left} s") } else { "Log in".to_owned() } }
                </button>
                <p class="hint">
                    { "The account is set in the broker's configuration ([dashboard]); \
                       a fresh broker has admin / public." }
                </p>
            </form>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdown_rounds_up() {
        assert_eq!(seconds_left(0.0, 1000.0), 0);
        assert_eq!(seconds_left(5000.0, 5000.0), 0);
        assert_eq!(seconds_left(5000.0, 4999.0), 1);
        assert_eq!(seconds_left(9000.0, 1000.0), 8);
        assert_eq!(seconds_left(9000.0, 1500.0), 8);
    }
}
