//! The web app, served by the broker on its HTTP port (18083 by default).
//! Built for the browser with trunk (`trunk build --release` in www/); it also builds
//! natively so that `cargo clippy` and `cargo test` cover it.

mod app;
mod endpoints;

fn main() {
    yew::Renderer::<app::App>::new().render();
}
