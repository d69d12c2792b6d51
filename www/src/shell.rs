//! The app shell: the header with the page navigation, and the pages.
//!
//! Routes are plain paths (`/`, `/dashboard`, `/about`); the broker answers every path
//! that is not a file with `index.html`, so a reload stays on its page. Links go through
//! the History API, so moving between pages keeps the client's connections open (the
//! client page stays mounted, just hidden).

use gloo_events::EventListener;
use yew::prelude::*;

use crate::about::About;
use crate::client::ClientPage;
use crate::dashboard::Dashboard;

/// The app's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The MQTT client: connection profiles, subscriptions, messages, publish.
    Client,
    /// The broker's dashboard (clients, subscriptions, metrics from the admin API); its
    /// own pages are in the URL's fragment (`/dashboard#clients`).
    Dashboard,
    /// Endpoints and how to connect a device or a browser.
    About,
}

impl Route {
    pub const NAV: [Route; 3] = [Route::Client, Route::Dashboard, Route::About];

    pub fn from_path(path: &str) -> Route {
        match path.trim_end_matches('/') {
            "/dashboard" => Route::Dashboard,
            "/about" => Route::About,
            _ => Route::Client,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Route::Client => "/",
            Route::Dashboard => "/dashboard",
            Route::About => "/about",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Route::Client => "Client",
            Route::Dashboard => "Dashboard",
            Route::About => "About",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Route::Client => "bridge · MQTT client",
            Route::Dashboard => "bridge · dashboard",
            Route::About => "bridge · about",
        }
    }
}

/// Moves to a page (given to every [`Link`] through a context).
#[derive(Clone, PartialEq)]
pub struct Navigator(Callback<Route>);

fn current_route() -> Route {
    web_sys::window()
        .and_then(|w| w.location().pathname().ok())
        .map(|p| Route::from_path(&p))
        .unwrap_or(Route::Client)
}

#[function_component(Shell)]
pub fn shell() -> Html {
    let route = use_state(current_route);

    // Back and forward buttons.
    {
        let route = route.clone();
        use_effect_with((), move |_| {
            let listener = web_sys::window().map(|window| {
                EventListener::new(&window, "popstate", move |_| route.set(current_route()))
            });
            move || drop(listener)
        });
    }
    {
        use_effect_with(*route, |route| {
            if let Some(doc) = web_sys::window().and_then(|w| w.document()) {
                doc.set_title(route.title());
            }
        });
    }

    let navigator = {
        let route = route.clone();
        Navigator(Callback::from(move |to: Route| {
            if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
                let _ =
                    history.push_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(to.path()));
            }
            route.set(to);
        }))
    };

    let page = match *route {
        Route::Client => html! {},
        Route::Dashboard => html! { <Dashboard /> },
        Route::About => html! { <About /> },
    };

    html! {
        <ContextProvider<Navigator> context={navigator}>
            <div class="app">
                <header class="top">
                    <Link to={Route::Client} class="brand">{ "bridge" }</Link>
                    <nav class="nav" aria-label="Pages">
                        { for Route::NAV.iter().map(|&r| html! {
                            <Link to={r} class={classes!("nav-link", (r == *route).then_some("active"))}
                                current={r == *route}>
                                { r.label() }
                            </Link>
                        }) }
                    </nav>
                </header>
                // The client stays mounted on every page, so its connections live on.
                <main class="client-host" hidden={*route != Route::Client}>
                    <ClientPage />
                </main>
                if *route != Route::Client {
                    <main class="page">{ page }</main>
                }
            </div>
        </ContextProvider<Navigator>>
    }
}

#[derive(Properties, PartialEq)]
pub struct LinkProps {
    pub to: Route,
    #[prop_or_default]
    pub class: Classes,
    /// Marks the link as the current page (`aria-current`).
    #[prop_or_default]
    pub current: bool,
    #[prop_or_default]
    pub children: Html,
}

/// An `<a>` to one of the app's pages that moves there without reloading (modified
/// clicks still open a new tab, as links do).
#[function_component(Link)]
pub fn link(props: &LinkProps) -> Html {
    let navigator = use_context::<Navigator>();
    let to = props.to;
    let onclick = Callback::from(move |e: MouseEvent| {
        if e.ctrl_key() || e.meta_key() || e.shift_key() || e.alt_key() || e.button() != 0 {
            return;
        }
        if let Some(Navigator(go)) = &navigator {
            e.prevent_default();
            go.emit(to);
        }
    });
    html! {
        <a href={to.path()} class={props.class.clone()} {onclick}
            aria-current={props.current.then_some("page")}>
            { props.children.clone() }
        </a>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        for r in Route::NAV {
            assert_eq!(Route::from_path(r.path()), r);
        }
        assert_eq!(Route::from_path("/about/"), Route::About);
        assert_eq!(Route::from_path("/index.html"), Route::Client);
        assert_eq!(Route::from_path(""), Route::Client);
    }
}
