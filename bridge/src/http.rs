//! The HTTP side: the built web app, served from a directory.
//!
//! [`router`] is a plain `axum::Router` so that other routes (the admin API under
//! `/api/v1`) can be nested next to it; the web app only answers what nothing else
//! matched, which also makes client-side (SPA) routes load `index.html`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::services::{ServeDir, ServeFile};

/// The broker's MQTT endpoints, shown on the page served when the web app is missing.
/// The server adds it to the router as an `axum::Extension`; without it the page just
/// points at the broker's output.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// Bound address of the MQTT-over-TCP listener, if enabled.
    pub tcp: Option<SocketAddr>,
    /// Bound address of the MQTT-over-WebSocket listener, if enabled.
    pub ws: Option<SocketAddr>,
    /// HTTP path of the WebSocket endpoint, e.g. `/mqtt`.
    pub ws_path: String,
}

/// Serves the web app built into `web_root` (its `index.html` and assets).
///
/// Paths that are not files get `index.html`, so that the app's own routes survive a
/// reload. While `web_root/index.html` does not exist (checked on every request, so
/// building the app while the broker runs needs no restart) `/` answers a short page
/// telling the operator how to build it and where the MQTT endpoints are.
pub fn router(web_root: PathBuf) -> Router {
    let web_root = Arc::new(web_root);
    Router::new().fallback(move |request: Request| serve_web_app(web_root.clone(), request))
}

async fn serve_web_app(web_root: Arc<PathBuf>, request: Request) -> Response {
    let index = web_root.join("index.html");
    let built = tokio::fs::metadata(&index)
        .await
        .is_ok_and(|meta| meta.is_file());
    if !built {
        return not_built(&web_root, &request);
    }
    let mut files = ServeDir::new(web_root.as_path()).fallback(ServeFile::new(&index));
    match files.try_call(request).await {
        Ok(response) => response.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, root = %web_root.display(), "cannot serve web app file");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the web app files\n",
            )
                .into_response()
        }
    }
}

/// The operator hint shown while the web app is not built: 200 at `/`, 404 elsewhere.
fn not_built(web_root: &Path, request: &Request) -> Response {
    let path = request.uri().path();
    let status = if path == "/" || path == "/index.html" {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    let host = request_host(request.headers(), request.uri().host());
    let endpoints = request.extensions().get::<Endpoints>();

    let mut page = String::from(concat!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<title>bridge: web app not built</title>\n",
        "<style>body{font-family:system-ui,sans-serif;max-width:42rem;margin:3rem auto;",
        "padding:0 1rem;line-height:1.5}code{background:#eee;padding:0 .25em}</style>\n",
        "</head>\n<body>\n<h1>The broker is running, but its web app is not built</h1>\n",
    ));
    let _ = write!(
        page,
        "<p>This HTTP listener serves the web app from <code>{}</code>, \
         which has no <code>index.html</code>.</p>\n\
         <p>Build it with <code>./scripts/run</code> from the repository root (it builds the \
         web app, then starts the broker), or start the broker with \
         <code>--web-root DIR</code> pointing at a built copy. This page is replaced as soon \
         as the files are there; no restart needed.</p>\n",
        escape(&web_root.display().to_string()),
    );
    page.push_str("<h2>MQTT endpoints</h2>\n");
    match endpoints {
        Some(endpoints) if endpoints.tcp.is_some() || endpoints.ws.is_some() => {
            page.push_str("<ul>\n");
            if let Some(tcp) = endpoints.tcp {
                let _ = writeln!(
                    page,
                    "<li>MQTT over TCP: <code>mqtt://{}:{}</code></li>",
                    escape(&display_host(tcp, &host)),
                    tcp.port()
                );
            }
            if let Some(ws) = endpoints.ws {
                let _ = writeln!(
                    page,
                    "<li>MQTT over WebSocket: <code>ws://{}:{}{}</code> \
                     (subprotocol <code>mqtt</code>)</li>",
                    escape(&display_host(ws, &host)),
                    ws.port(),
                    escape(&endpoints.ws_path)
                );
            }
            page.push_str("</ul>\n");
        }
        Some(_) => page.push_str("<p>The MQTT listeners are all disabled.</p>\n"),
        None => page.push_str(
            "<p>The broker printed its listeners when it started \
             (<code>listening tcp …</code>, <code>listening ws …</code>).</p>\n",
        ),
    }
    page.push_str("</body>\n</html>\n");

    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Once the app is built, a reload must show it, not this page.
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

/// The host name the browser used to reach us (without the port), so that endpoint URLs
/// for listeners bound to every interface (`0.0.0.0`) are reachable from that browser.
fn request_host(headers: &HeaderMap, uri_host: Option<&str>) -> String {
    let authority = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or(uri_host)
        .unwrap_or("localhost");
    let host = if authority.starts_with('[') {
        // "[::1]:18083" → "[::1]"
        authority
            .find(']')
            .map_or(authority, |end| &authority[..=end])
    } else {
        authority.split(':').next().unwrap_or(authority)
    };
    if host.is_empty() {
        "localhost".to_owned()
    } else {
        host.to_owned()
    }
}

fn display_host(addr: SocketAddr, request_host: &str) -> String {
    if addr.ip().is_unspecified() {
        request_host.to_owned()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::{to_bytes, Body};
    use axum::Extension;
    use tower::ServiceExt;

    /// A fresh, empty directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "bridge-http-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    async fn get(app: &Router, uri: &str) -> (StatusCode, HeaderMap, String) {
        let request = Request::builder()
            .uri(uri)
            .header(header::HOST, "broker.example:18083")
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    fn build_app(dir: &Path) {
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::write(dir.join("index.html"), "<html>the app</html>").unwrap();
        std::fs::write(dir.join("assets/app.js"), "console.log(1)").unwrap();
    }

    #[tokio::test]
    async fn serves_the_built_app() {
        let dir = TempDir::new();
        build_app(&dir.0);
        let app = router(dir.0.clone());

        let (status, headers, body) = get(&app, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "<html>the app</html>");
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));

        let (status, headers, body) = get(&app, "/assets/app.js").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "console.log(1)");
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("javascript"));
    }

    #[tokio::test]
    async fn app_routes_fall_back_to_index() {
        let dir = TempDir::new();
        build_app(&dir.0);
        let app = router(dir.0.clone());
        let (status, _, body) = get(&app, "/clients/sensor-1").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "<html>the app</html>");
    }

    #[tokio::test]
    async fn files_outside_the_root_are_not_served() {
        let dir = TempDir::new();
        build_app(&dir.0);
        std::fs::write(dir.0.join("../bridge-http-secret"), "secret").ok();
        let app = router(dir.0.clone());
        let (_, _, body) = get(&app, "/../bridge-http-secret").await;
        assert_ne!(body, "secret");
        let (_, _, body) = get(&app, "/%2e%2e/bridge-http-secret").await;
        assert_ne!(body, "secret");
    }

    #[tokio::test]
    async fn missing_app_gives_an_operator_hint() {
        let dir = TempDir::new();
        let root = dir.0.join("dist");
        let app = router(root.clone()).layer(Extension(Endpoints {
            tcp: Some("0.0.0.0:1883".parse().unwrap()),
            ws: Some("127.0.0.1:8083".parse().unwrap()),
            ws_path: "/mqtt".to_owned(),
        }));

        let (status, headers, body) = get(&app, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert!(body.contains("./scripts/run"), "{body}");
        assert!(body.contains(&root.display().to_string()), "{body}");
        // Listeners on every interface are shown with the host the browser used.
        assert!(body.contains("mqtt://broker.example:1883"), "{body}");
        assert!(body.contains("ws://127.0.0.1:8083/mqtt"), "{body}");

        let (status, _, _) = get(&app, "/assets/app.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Building the app while the broker runs takes effect without a restart.
        build_app(&root);
        let (status, _, body) = get(&app, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "<html>the app</html>");
    }

    #[tokio::test]
    async fn hint_without_endpoints_still_helps() {
        let dir = TempDir::new();
        let app = router(dir.0.join("nowhere"));
        let (status, _, body) = get(&app, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("./scripts/run"), "{body}");
        assert!(body.contains("listening tcp"), "{body}");
    }

    #[tokio::test]
    async fn other_routes_can_be_nested_beside_the_app() {
        let dir = TempDir::new();
        build_app(&dir.0);
        let api = Router::new().route("/status", axum::routing::get(|| async { "ok" }));
        let app = router(dir.0.clone()).nest("/api/v1", api);
        let (status, _, body) = get(&app, "/api/v1/status").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok");
        let (_, _, body) = get(&app, "/").await;
        assert_eq!(body, "<html>the app</html>");
    }

    #[test]
    fn host_parsing() {
        let mut headers = HeaderMap::new();
        assert_eq!(request_host(&headers, None), "localhost");
        headers.insert(header::HOST, "example.org:18083".parse().unwrap());
        assert_eq!(request_host(&headers, None), "example.org");
        headers.insert(header::HOST, "[::1]:18083".parse().unwrap());
        assert_eq!(request_host(&headers, None), "[::1]");
        assert_eq!(display_host("[::]:1883".parse().unwrap(), "[::1]"), "[::1]");
        assert_eq!(display_host("[::1]:1883".parse().unwrap(), "x"), "[::1]");
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
