//! Live data: a hook that GETs an API path, and while the component lives re-fetches it
//! every [`POLL_MS`] — but only while the page is visible (a hidden tab makes no
//! requests; coming back fetches at once). Leaving the dashboard unmounts its pages,
//! which stops their polling.
//!
//! Answers that arrive out of order are ignored: each fetch has a number, and only the
//! newest one's answer is kept. A poll is skipped while the previous one is still out,
//! so a slow broker is never asked twice at once.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use gloo_events::EventListener;
use gloo_timers::callback::Interval;
use serde::de::DeserializeOwned;
use yew::prelude::*;

use super::api::{Api, Failure};

/// How often live pages refresh: the broker samples its rates every 2 s too.
pub const POLL_MS: u32 = 2000;

/// What a fetched path holds: the last good answer (kept while a newer one loads or after
/// a failed refresh, so tables do not flicker) and the last failure, if newer.
pub struct Fetched<T> {
    pub data: Option<Rc<T>>,
    pub error: Option<Failure>,
}

impl<T> Fetched<T> {
    /// True until the first answer (or failure) for the current path.
    pub fn loading(&self) -> bool {
        self.data.is_none() && self.error.is_none()
    }
}

/// The untyped state behind [`use_get`]: the body text of the last good answer. Keeping the
/// fetching and polling free of the answer's type means one copy of it in the wasm, not one
/// per type; only the JSON decoding is per type.
#[derive(Default)]
pub struct Raw {
    text: Option<Rc<str>>,
    error: Option<Failure>,
    /// Bumped on every change, so the typed view is decoded once per answer.
    version: u64,
}

impl Reducible for Raw {
    type Action = Result<String, Failure>;

    fn reduce(self: Rc<Self>, answer: Self::Action) -> Rc<Self> {
        let version = self.version + 1;
        Rc::new(match answer {
            Ok(text) => Raw {
                text: Some(text.into()),
                error: None,
                version,
            },
            Err(error) => Raw {
                text: self.text.clone(),
                error: Some(error),
                version,
            },
        })
    }
}

/// Whether the page is hidden (another tab, a minimised window).
pub fn page_hidden() -> bool {
    cfg!(target_arch = "wasm32")
        && web_sys::window()
            .and_then(|w| w.document())
            .is_some_and(|d| d.hidden())
}

type Trigger = Rc<dyn Fn(bool)>;

/// GETs `path` (nothing while it is `None`) and, with `poll`, keeps it fresh. Returns the
/// answer decoded as `T`, and a callback that fetches again now (after a change the user
/// made).
#[hook]
pub fn use_get<T>(path: Option<String>, poll: bool) -> (Rc<Fetched<T>>, Callback<()>)
where
    T: DeserializeOwned + 'static,
{
    let (raw, reload) = use_get_text(path, poll);
    let fetched = {
        let raw = raw.clone();
        use_memo(raw.version, move |_| {
            let decoded = raw.text.as_deref().map(serde_json::from_str::<T>);
            match decoded {
                Some(Err(e)) => Fetched {
                    data: None,
                    error: Some(Failure::network(format!("bad answer: {e}"))),
                },
                Some(Ok(data)) => Fetched {
                    data: Some(Rc::new(data)),
                    error: raw.error.clone(),
                },
                None => Fetched {
                    data: None,
                    error: raw.error.clone(),
                },
            }
        })
    };
    (fetched, reload)
}

/// [`use_get`] without the decoding.
#[hook]
fn use_get_text(path: Option<String>, poll: bool) -> (UseReducerHandle<Raw>, Callback<()>) {
    let api = use_context::<Api>().expect("the dashboard provides the API client");
    let state = use_reducer(Raw::default);
    let trigger: Rc<RefCell<Option<Trigger>>> = use_mut_ref(|| None);
    {
        let dispatcher = state.dispatcher();
        let trigger = trigger.clone();
        use_effect_with((path, poll, api), move |(path, poll, api)| {
            // Fetch numbers, shared by the fetches of this effect only: after a change of
            // path the old effect's answers can never land.
            let latest = Rc::new(Cell::new(0u64));
            let busy = Rc::new(Cell::new(false));
            let alive = Rc::new(Cell::new(true));
            let fetch: Option<Trigger> = path.clone().map(|path| {
                let api = api.clone();
                let latest = latest.clone();
                let busy = busy.clone();
                let alive = alive.clone();
                Rc::new(move |force: bool| {
                    if busy.get() && !force {
                        return;
                    }
                    let n = latest.get() + 1;
                    latest.set(n);
                    busy.set(true);
                    let (api, path, dispatcher) = (api.clone(), path.clone(), dispatcher.clone());
                    let (latest, busy, alive) = (latest.clone(), busy.clone(), alive.clone());
                    yew::platform::spawn_local(async move {
                        let result = api.get_text(&path).await;
                        if latest.get() == n {
                            busy.set(false);
                            if alive.get() {
                                dispatcher.dispatch(result);
                            }
                        }
                    });
                }) as Trigger
            });
            *trigger.borrow_mut() = fetch.clone();
            let mut interval = None;
            let mut listener = None;
            if let Some(fetch) = fetch {
                fetch(true);
                if *poll {
                    let tick = fetch.clone();
                    interval = Some(Interval::new(POLL_MS, move || {
                        if !page_hidden() {
                            tick(false);
                        }
                    }));
                    listener = web_sys::window().and_then(|w| w.document()).map(|doc| {
                        EventListener::new(&doc, "visibilitychange", move |_| {
                            if !page_hidden() {
                                fetch(false);
                            }
                        })
                    });
                }
            }
            move || {
                alive.set(false);
                drop(interval);
                drop(listener);
            }
        });
    }
    let reload = Callback::from(move |()| {
        if let Some(fetch) = trigger.borrow().as_ref() {
            fetch(true);
        }
    });
    (state, reload)
}
