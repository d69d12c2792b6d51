//! The first screen: where the broker is and how to talk to it.
//! The MQTT client UI (on the client-wasm crate) comes next.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::endpoints::{Endpoints, DEFAULT_HTTP_PORT, DEFAULT_TCP_PORT, DEFAULT_WS_PORT, WS_PATH};

/// The page's address, read once: it doesn't change while the app runs.
fn endpoints_of_this_page() -> Endpoints {
    let location = web_sys::window().map(|w| w.location());
    let read = |f: fn(&web_sys::Location) -> Result<String, wasm_bindgen::JsValue>| {
        location
            .as_ref()
            .and_then(|l| f(l).ok())
            .unwrap_or_default()
    };
    Endpoints::from_location(
        &read(web_sys::Location::protocol),
        &read(web_sys::Location::hostname),
        &read(web_sys::Location::origin),
    )
}

#[function_component(App)]
pub fn app() -> Html {
    let endpoints = use_memo((), |_| endpoints_of_this_page());
    let topic = use_state(|| "topic_1".to_owned());
    let message = use_state(|| "hello".to_owned());

    let on_topic = {
        let topic = topic.clone();
        Callback::from(move |e: InputEvent| {
            topic.set(e.target_unchecked_into::<HtmlInputElement>().value())
        })
    };
    let on_message = {
        let message = message.clone();
        Callback::from(move |e: InputEvent| {
            message.set(e.target_unchecked_into::<HtmlInputElement>().value())
        })
    };

    html! {
        <>
            <header class="top">
                <div class="wrap">
                    <h1 class="brand">{ "bridge" }</h1>
                    <p class="tagline">{ "MQTT broker · devices and browsers on one router" }</p>
                </div>
            </header>
            <main class="wrap">
                <section class="card">
                    <h2>{ "Endpoints" }</h2>
                    <table class="endpoints">
                        <tbody>
                            <Endpoint label="MQTT over TCP" url={endpoints.mqtt.clone()}
                                note={format!("devices, mosquitto, paho · port {DEFAULT_TCP_PORT}")} />
                            <Endpoint label="MQTT over WebSocket" url={endpoints.ws.clone()}
                                note={format!("browsers · port {DEFAULT_WS_PORT}, path {WS_PATH}, subprotocol mqtt")} />
                            <Endpoint label="Web app and admin" url={endpoints.http.clone()}
                                note={format!("this page · port {DEFAULT_HTTP_PORT} by default")} />
                        </tbody>
                    </table>
                    <p class="hint">
                        { "MQTT 3.1.1 and 3.1. These are the default ports; a broker started with " }
                        <code>{ "--tcp" }</code>{ ", " }<code>{ "--ws" }</code>{ " or " }
                        <code>{ "--http" }</code>{ " listens where it was told." }
                    </p>
                </section>

                <section class="card">
                    <h2>{ "Try it" }</h2>
                    <div class="fields">
                        <label>
                            <span>{ "Topic" }</span>
                            <input type="text" value={(*topic).clone()} oninput={on_topic} spellcheck="false" />
                        </label>
                        <label>
                            <span>{ "Message" }</span>
                            <input type="text" value={(*message).clone()} oninput={on_message} spellcheck="false" />
                        </label>
                    </div>

                    <h3>{ "From a device or a terminal" }</h3>
                    <ol class="steps">
                        <li>
                            { "Subscribe in one terminal:" }
                            <pre class="cmd">{ endpoints.mosquitto_sub(&topic) }</pre>
                        </li>
                        <li>
                            { "Publish from another; the first one prints it:" }
                            <pre class="cmd">{ endpoints.mosquitto_pub(&topic, &message) }</pre>
                        </li>
                    </ol>
                    <p class="hint">
                        { "mosquitto_pub and mosquitto_sub come with Debian's " }
                        <code>{ "mosquitto-clients" }</code>{ " package." }
                    </p>

                    <h3>{ "From a browser" }</h3>
                    <p>
                        { "Any MQTT-over-WebSocket client works; with " }
                        <a href="https://www.npmjs.com/package/mqtt">{ "MQTT.js" }</a>{ ":" }
                    </p>
                    <pre class="cmd">{ endpoints.mqtt_js(&topic, &message) }</pre>
                    <p class="hint">
                        { "Devices and browsers share one router: a message published over TCP reaches \
                           WebSocket subscribers, and the other way round." }
                    </p>
                </section>
            </main>
            <footer class="wrap foot">
                { "bridge · ports follow EMQX's conventions · all configurable" }
            </footer>
        </>
    }
}

#[derive(Properties, PartialEq)]
struct EndpointProps {
    label: AttrValue,
    url: AttrValue,
    note: AttrValue,
}

/// One row of the endpoints table.
#[function_component(Endpoint)]
fn endpoint(props: &EndpointProps) -> Html {
    html! {
        <tr>
            <th scope="row">{ &props.label }</th>
            <td><code class="url">{ &props.url }</code></td>
            <td class="note">{ &props.note }</td>
        </tr>
    }
}
