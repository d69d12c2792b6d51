//! The broker's dashboard, in the style of the EMQX console: a login page, then a menu of
//! pages on the admin API (`/api/v1`): Overview (live counters and a chart of messages
//! per second), Clients, Subscriptions, Topics, Retained and Publish.
//!
//! The token from login is kept in sessionStorage (it lasts as long as the tab); any 401
//! sends the user back to the login page. The pages are addressed by the URL's fragment
//! (`/dashboard#clients`, `/dashboard#subscriptions?topic=a%2Fb`), so a reload or a link
//! lands on the same page; each page lives only while it is shown, and its polling with
//! it.

mod account;
pub mod api;
pub mod chart;
mod clients;
pub mod format;
mod live;
mod login;
mod overview;
pub mod pager;
mod publish;
mod retained;
mod subscriptions;
mod topics;
mod ui;

use std::rc::Rc;

use gloo_events::EventListener;
use yew::prelude::*;

use account::ChangePassword;
use api::{store_login, stored_login, Api, Login};
use clients::ClientsPage;
use login::LoginPage;
use overview::Overview;
use publish::PublishPage;
use retained::RetainedPage;
use subscriptions::SubscriptionsPage;
use topics::TopicsPage;

/// The dashboard's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Overview,
    Clients,
    Subscriptions,
    Topics,
    Retained,
    Publish,
}

impl View {
    pub const ALL: [View; 6] = [
        View::Overview,
        View::Clients,
        View::Subscriptions,
        View::Topics,
        View::Retained,
        View::Publish,
    ];

    pub fn key(self) -> &'static str {
        match self {
            View::Overview => "overview",
            View::Clients => "clients",
            View::Subscriptions => "subscriptions",
            View::Topics => "topics",
            View::Retained => "retained",
            View::Publish => "publish",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Clients => "Clients",
            View::Subscriptions => "Subscriptions",
            View::Topics => "Topics",
            View::Retained => "Retained",
            View::Publish => "Publish",
        }
    }

    /// A one-line description under the page title.
    fn blurb(self) -> &'static str {
        match self {
            View::Overview => "Live figures of the broker, refreshed every 2 seconds.",
            View::Clients => "Sessions, connected or not: kick a client, end a session, see and change its subscriptions.",
            View::Subscriptions => "Every subscription of every session.",
            View::Topics => "The distinct topic filters clients are subscribed to.",
            View::Retained => "Messages the broker keeps for future subscribers.",
            View::Publish => "Send a message through the broker, as a client would.",
        }
    }

    /// A fragment link to the page, with parameters: `#subscriptions?topic=a%2Fb`.
    pub fn href(self, params: &[(&str, &str)]) -> String {
        format!("#{}{}", self.key(), format::query(params))
    }

    /// The page and parameters of a URL fragment (`#clients?clientid=x`); the overview
    /// for anything else.
    pub fn parse(fragment: &str) -> (View, Vec<(String, String)>) {
        let fragment = fragment.trim_start_matches('#');
        let (key, query) = fragment.split_once('?').unwrap_or((fragment, ""));
        let view = View::ALL
            .into_iter()
            .find(|v| v.key() == key)
            .unwrap_or(View::Overview);
        (view, format::parse_query(query))
    }
}

/// A parameter of the fragment, or "".
pub fn param<'a>(params: &'a [(String, String)], key: &str) -> &'a str {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

fn current_fragment() -> String {
    if !cfg!(target_arch = "wasm32") {
        return String::new();
    }
    web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .unwrap_or_default()
}

#[function_component(Dashboard)]
pub fn dashboard() -> Html {
    let login = use_state(stored_login);
    // Why the login page is shown again, when it is.
    let ended = use_state(|| None::<AttrValue>);
    let fragment = use_state(current_fragment);
    let changing_password = use_state(|| false);
    // A word after the password changed, until the user moves on.
    let notice = use_state(|| None::<AttrValue>);

    {
        let fragment = fragment.clone();
        let notice = notice.clone();
        use_effect_with((), move |_| {
            let listener = web_sys::window().map(|window| {
                EventListener::new(&window, "hashchange", move |_| {
                    notice.set(None);
                    fragment.set(current_fragment())
                })
            });
            move || drop(listener)
        });
    }

    let on_login = {
        let login = login.clone();
        let ended = ended.clone();
        Callback::from(move |l: Login| {
            store_login(Some(&l));
            ended.set(None);
            login.set(Some(l));
        })
    };
    let token = login.as_ref().map(|l| l.token.clone());
    let api = {
        let login = login.clone();
        let ended = ended.clone();
        use_memo(token, move |token| {
            let on_unauthorized = Callback::from(move |()| {
                store_login(None);
                ended.set(Some(
                    "Your session has ended (expired, or the broker restarted): log in again."
                        .into(),
                ));
                login.set(None);
            });
            token.as_deref().map(|t| Api::new(t, on_unauthorized))
        })
    };

    let (Some(current), Some(api)) = ((*login).clone(), (*api).clone()) else {
        return html! { <LoginPage onlogin={on_login} notice={(*ended).clone()} /> };
    };

    let logout = {
        let api = api.clone();
        let login = login.clone();
        let ended = ended.clone();
        Callback::from(move |_: MouseEvent| {
            let api = api.clone();
            let login = login.clone();
            let ended = ended.clone();
            yew::platform::spawn_local(async move {
                // Forget the token whatever the broker says: the user asked to leave.
                let _ = api.send::<()>("POST", "/logout", None).await;
                store_login(None);
                ended.set(Some("You have logged out.".into()));
                login.set(None);
            });
        })
    };
    let toggle_password = {
        let changing = changing_password.clone();
        Callback::from(move |_: MouseEvent| changing.set(!*changing))
    };
    let password_done = {
        let changing = changing_password.clone();
        let login = login.clone();
        let notice = notice.clone();
        Callback::from(move |changed: bool| {
            changing.set(false);
            if changed {
                notice.set(Some(
                    "Password changed. Other sessions of this account were logged out.".into(),
                ));
                if let Some(l) = login.as_ref() {
                    let l = Login {
                        default_password: false,
                        ..l.clone()
                    };
                    store_login(Some(&l));
                    login.set(Some(l));
                }
            }
        })
    };

    let (view, params) = View::parse(&fragment);
    let params = Rc::new(params);
    let key = (*fragment).clone();
    let page = match view {
        View::Overview => html! { <Overview /> },
        View::Clients => html! { <ClientsPage {key} params={params.clone()} /> },
        View::Subscriptions => html! { <SubscriptionsPage {key} params={params.clone()} /> },
        View::Topics => html! { <TopicsPage /> },
        View::Retained => html! { <RetainedPage {key} params={params.clone()} /> },
        View::Publish => html! { <PublishPage /> },
    };

    html! {
        <ContextProvider<Api> context={api}>
            <div class="dash">
                <nav class="dash-nav" aria-label="Dashboard">
                    <p class="dash-nav-title">{ "Dashboard" }</p>
                    <ul>
                        { for View::ALL.iter().map(|&v| html! {
                            <li>
                                <a href={v.href(&[])}
                                    class={classes!("dash-link", (v == view).then_some("active"))}
                                    aria-current={(v == view).then_some("page")}>
                                    <span class={classes!("dash-icon", v.key())} aria-hidden="true" />
                                    { v.label() }
                                </a>
                            </li>
                        }) }
                    </ul>
                </nav>
                <div class="dash-main">
                    <header class="dash-head">
                        <div class="dash-title">
                            <h1>{ view.label() }</h1>
                            <p class="muted">{ view.blurb() }</p>
                        </div>
                        <div class="dash-user">
                            <span class="muted">{ "Signed in as " }<b>{ &current.username }</b></span>
                            <button class="small" onclick={toggle_password.clone()}
                                aria-expanded={(*changing_password).to_string()}>
                                { "Change password" }
                            </button>
                            <button class="small" onclick={logout}>{ "Log out" }</button>
                        </div>
                    </header>
                    if current.default_password && !*changing_password {
                        <div class="banner warn" role="note">
                            <span>
                                <b>{ "The default password is in use. " }</b>
                                { "Anyone who knows it can manage this broker: change it now." }
                            </span>
                            <button class="small primary" onclick={toggle_password}>{ "Change password" }</button>
                        </div>
                    }
                    if let Some(text) = &*notice {
                        <p class="flash ok" role="status">{ text }</p>
                    }
                    if *changing_password {
                        <ChangePassword username={current.username.clone()} ondone={password_done} />
                    }
                    { page }
                </div>
            </div>
        </ContextProvider<Api>>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_name_pages() {
        for v in View::ALL {
            assert_eq!(View::parse(&v.href(&[])).0, v);
        }
        assert_eq!(View::parse("").0, View::Overview);
        assert_eq!(View::parse("#nope").0, View::Overview);
        let (view, params) = View::parse(&View::Subscriptions.href(&[("topic", "a/b c")]));
        assert_eq!(view, View::Subscriptions);
        assert_eq!(param(&params, "topic"), "a/b c");
        assert_eq!(param(&params, "clientid"), "");
        assert_eq!(View::Clients.href(&[("clientid", "")]), "#clients");
    }
}
