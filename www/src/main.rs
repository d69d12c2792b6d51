//! The web app, served by the broker on its HTTP port (18083 by default): an MQTT client
//! (connection profiles, subscriptions, live messages, publish) on client-wasm, the
//! broker's dashboard on its admin API, and the About page with the broker's endpoints.
//! Built for the browser with trunk (`trunk build --release` in www/); it also builds
//! natively so that `cargo clippy` and `cargo test` cover it.

mod about;
mod client;
mod dashboard;
mod endpoints;
mod platform;
mod shell;

fn main() {
    yew::Renderer::<shell::Shell>::new().render();
}
