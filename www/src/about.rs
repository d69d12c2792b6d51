//! The About page: where the broker is and how to connect a device or a browser to it.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::endpoints::{DEFAULT_HTTP_PORT, DEFAULT_TCP_PORT, DEFAULT_WS_PORT, WS_PATH};
use crate::platform;
use crate::shell::{Link, Route};

#[derive(Properties, PartialEq, Default)]
pub struct AboutProps {
    /// A line shown above the page (the Dashboard route uses it while it has no page).
    #[prop_or_default]
    pub notice: Option<AttrValue>,
}

#[function_component(About)]
pub fn about(props: &AboutProps) -> Html {
    let endpoints = use_memo((), |_| platform::endpoints());
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
            <div class="wrap about">
                <h1 class="page-title">{ "About · connect a device" }</h1>
                if let Some(notice) = &props.notice {
                    <p class="notice" role="status">{ notice }</p>
                }
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
                        { "MQTT 5.0, 3.1.1 and 3.1. These are the default ports; a broker started with " }
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
                    <p>
                        { "Or use this app's own " }<Link to={Route::Client}>{ "MQTT client" }</Link>
                        { ": it connects to " }<code>{ endpoints.ws.clone() }</code>{ " by default." }
                    </p>
                    <p class="hint">
                        { "Devices and browsers share one router: a message published over TCP reaches \
                           WebSocket subscribers, and the other way round." }
                    </p>
                </section>
            </div>
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
