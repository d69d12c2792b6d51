//! The HTTP side: the built web app, served from a directory, and the listener's
//! connections.
//!
//! [`router`] is a plain `axum::Router` so that other routes (the admin API under
//! `/api/v1`) can be nested next to it; the web app only answers what nothing else
//! matched, which also makes client-side (SPA) routes load `index.html`. Paths under
//! `/api` never reach the web app: nothing else matched them, so they are the API's JSON
//! 404. [`with_security_headers`] adds the anti-framing and anti-sniffing headers to every
//! response.
//!
//! [`serve_connection`] serves one accepted connection with hyper's HTTP/1, under the
//! `[http]` timeouts ([`Limits`]): the request line and headers must arrive within the
//! header timeout, and a connection where nothing moves for the idle timeout (between
//! keep-alive requests, or a body or response that stalled) is closed. The server's accept
//! loop caps how many run at once and answers the others with [`over_capacity_response`].

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tower_http::services::{ServeDir, ServeFile};

use crate::api::error::ApiError;

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
    let path = request.uri().path();
    if path == "/api" || path.starts_with("/api/") {
        // No API route matched: the API's own 404, not the app's index.html, so that a
        // client of the API (or a mistyped version) gets JSON it can read.
        return ApiError::not_found("NOT_FOUND", format!("no API endpoint {path}")).into_response();
    }
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

/// Adds to every response of `app` the headers that keep its pages out of other sites'
/// frames (clickjacking: `X-Frame-Options: DENY`, and `Content-Security-Policy:
/// frame-ancestors 'none'` for browsers that follow only CSP) and stop browsers from
/// guessing a type other than the one sent (`X-Content-Type-Options: nosniff`).
pub fn with_security_headers(app: Router) -> Router {
    app.layer(axum::middleware::map_response(add_security_headers))
}

async fn add_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name.clone(), HeaderValue::from_static(value));
    }
    response
}

const SECURITY_HEADERS: &[(header::HeaderName, &str)] = &[
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

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

// --- connections -----------------------------------------------------------------------

/// The HTTP listener's bounds, from `[http]` (see [`crate::config::Http`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The request line and headers must have arrived this long after the connection
    /// opened (first request) or after the first byte of the request (later ones).
    pub header_timeout: Duration,
    /// A connection where nothing is read or written for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once (0: no limit); enforced by the accept loop.
    pub max_connections: usize,
}

impl From<&crate::config::Http> for Limits {
    fn from(http: &crate::config::Http) -> Limits {
        Limits {
            header_timeout: Duration::from_secs(http.header_timeout),
            idle_timeout: Duration::from_secs(http.idle_timeout),
            max_connections: http.max_connections,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::from(&crate::config::Http::default())
    }
}

/// hyper's read buffer for one connection, at most. hyper's default (~400 KiB) times
/// `max_connections` slow clients would be hundreds of MiB.
const MAX_READ_BUFFER: usize = 64 * 1024;
/// The largest request line and headers accepted; a larger head is answered 431.
pub const MAX_REQUEST_HEAD: usize = 32 * 1024;

/// The bytes written, raw, to a connection over `max_connections` before closing it.
pub fn over_capacity_response() -> Vec<u8> {
    let body =
        r#"{"code":"SERVICE_UNAVAILABLE","message":"too many HTTP connections; retry later"}"#;
    let mut response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in SECURITY_HEADERS {
        let _ = write!(response, "{name}: {value}\r\n");
    }
    response.push_str("\r\n");
    response.push_str(body);
    response.into_bytes()
}

/// Serves one accepted HTTP connection with `app` until the client closes it, a timeout
/// of `limits` closes it, or `stop` is cancelled (then the request in progress, if any,
/// is finished and the connection closed).
pub async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let io = hyper_util::rt::TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let service = AppService {
        app,
        peer,
        activity: activity.clone(),
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        // Ours below also covers the wait between keep-alive requests and stalled bodies;
        // hyper's would cut keep-alive connections at the header timeout.
        .header_read_timeout(None)
        .max_buf_size(MAX_READ_BUFFER)
        .max_header_size(MAX_REQUEST_HEAD);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        let (deadline, _) = activity.deadline(&limits);
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "HTTP connection failed");
                }
                return;
            }
            () = tokio::time::sleep_until(deadline) => {
                // The deadline moves with the traffic: only a passed one closes.
                let (deadline, waiting_for) = activity.deadline(&limits);
                if deadline <= Instant::now() {
                    tracing::debug!(%peer, waiting_for, "HTTP connection timed out; closing it");
                    return;
                }
            }
            () = stop.cancelled(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What a connection is doing, as its I/O and its requests tell: read by the timer of
/// [`serve_connection`]. Times are milliseconds since `start`.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// The last read or write.
    last_io: AtomicU64,
    /// Requests received whose response has not been sent (0 or 1 with HTTP/1).
    in_progress: AtomicUsize,
    /// Requests received so far.
    requests: AtomicU64,
    /// When the last response was sent.
    idle_since: AtomicU64,
    /// The first byte read since then (the next request's head is arriving), or [`NEVER`].
    head_from: AtomicU64,
}

const NEVER: u64 = u64::MAX;

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_io: AtomicU64::new(0),
            in_progress: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_from: AtomicU64::new(NEVER),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    fn read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if self.in_progress.load(Ordering::Relaxed) == 0
            && self.requests.load(Ordering::Relaxed) > 0
        {
            // Only the first byte starts the header clock.
            let _ =
                self.head_from
                    .compare_exchange(NEVER, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    /// A request's head has been read: until the returned guard is dropped (its response
    /// sent), the idle timeout applies.
    fn request_started(self: &Arc<Self>) -> InProgress {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_progress.fetch_add(1, Ordering::Relaxed);
        self.head_from.store(NEVER, Ordering::Relaxed);
        self.last_io.store(self.now(), Ordering::Relaxed);
        InProgress(self.clone())
    }

    /// When the connection is to be closed unless something happens first, and what it is
    /// waiting for.
    fn deadline(&self, limits: &Limits) -> (Instant, &'static str) {
        let at = |ms: u64, timeout: Duration| {
            self.start + Duration::from_millis(ms).saturating_add(timeout)
        };
        if self.in_progress.load(Ordering::Relaxed) > 0 {
            let last = self.last_io.load(Ordering::Relaxed);
            return (at(last, limits.idle_timeout), "a request to finish");
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            return (at(0, limits.header_timeout), "the first request head");
        }
        match self.head_from.load(Ordering::Relaxed) {
            NEVER => (
                at(self.idle_since.load(Ordering::Relaxed), limits.idle_timeout),
                "another request (keep-alive)",
            ),
            from => (at(from, limits.header_timeout), "a request head"),
        }
    }
}

/// A request in progress; dropped with its response body (sent, or abandoned).
#[derive(Debug)]
struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        let now = self.0.now();
        self.0.idle_since.store(now, Ordering::Relaxed);
        self.0.last_io.store(now, Ordering::Relaxed);
        self.0.in_progress.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, telling [`Activity`] about every byte that moves.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The router as hyper's per-connection service: hands each request the peer's address
/// (`ConnectInfo`, as `axum::serve` did) and counts it in progress until its response body
/// is done.
#[derive(Clone)]
struct AppService {
    app: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for AppService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let in_progress = self.activity.request_started();
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.oneshot(request).await?;
            Ok(response.map(|body| {
                Body::new(Tracked {
                    body,
                    _in_progress: in_progress,
                })
            }))
        })
    }
}

/// A response body that keeps its request counted in progress until it is dropped.
struct Tracked {
    body: Body,
    _in_progress: InProgress,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
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

    #[tokio::test]
    async fn api_paths_never_get_the_app() {
        let dir = TempDir::new();
        build_app(&dir.0);
        let app = router(dir.0.clone());
        for path in ["/api", "/api/", "/api/v2/stats", "/api/v1/x/y"] {
            let (status, headers, body) = get(&app, path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{path}");
            assert!(body.contains("\"code\":\"NOT_FOUND\""), "{path}: {body}");
        }
        for path in ["/apiary", "/api-docs", "/x/api/y"] {
            let (status, _, body) = get(&app, path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(body, "<html>the app</html>", "{path}");
        }
    }

    #[tokio::test]
    async fn every_response_gets_the_security_headers() {
        let dir = TempDir::new();
        build_app(&dir.0);
        let app = with_security_headers(router(dir.0.clone()));
        for path in ["/", "/assets/app.js", "/spa/route", "/api/nope"] {
            let (_, headers, _) = get(&app, path).await;
            assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY", "{path}");
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                "frame-ancestors 'none'",
                "{path}"
            );
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        }
    }

    #[test]
    fn over_capacity_response_is_a_whole_503() {
        let response = String::from_utf8(over_capacity_response()).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains("Connection: close"), "{head}");
        assert!(head.contains("x-frame-options: DENY"), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], "SERVICE_UNAVAILABLE");
    }

    #[test]
    fn deadlines_follow_what_the_connection_waits_for() {
        let limits = Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 0,
        };
        // `deadline - now`, to the second (the test does not wait).
        let left = |activity: &Activity| {
            let (deadline, waiting_for) = activity.deadline(&limits);
            let left = deadline.saturating_duration_since(Instant::now());
            ((left.as_millis() as u64 + 500) / 1000, waiting_for)
        };
        let activity = Arc::new(Activity::new());
        // A fresh connection has the header timeout, from its opening, bytes or not.
        assert_eq!(left(&activity), (10, "the first request head"));
        activity.read();
        assert_eq!(left(&activity), (10, "the first request head"));

        // A request in progress: the idle timeout, from the last byte moved.
        let in_progress = activity.request_started();
        assert_eq!(left(&activity), (60, "a request to finish"));
        activity.wrote();
        assert_eq!(left(&activity), (60, "a request to finish"));

        // Response sent: keep-alive idle, then the next head from its first byte.
        drop(in_progress);
        assert_eq!(left(&activity), (60, "another request (keep-alive)"));
        activity.read();
        assert_eq!(left(&activity), (10, "a request head"));
        activity.read();
        assert_eq!(left(&activity), (10, "a request head"));
        let _next = activity.request_started();
        assert_eq!(left(&activity), (60, "a request to finish"));
    }

    #[test]
    fn the_header_clock_starts_with_the_first_byte_only() {
        let limits = Limits::default();
        // As if the connection had opened 100 s ago and served a request 50 s ago (unless
        // the machine has been up for less).
        let Some(start) = Instant::now().checked_sub(Duration::from_secs(100)) else {
            return;
        };
        let mut aged = Activity {
            start,
            ..Activity::new()
        };
        aged.requests = AtomicU64::new(1);
        aged.idle_since = AtomicU64::new(50_000);
        aged.last_io = AtomicU64::new(50_000);
        // Idle since 50 s, keep-alive 60 s: 10 s left.
        let (deadline, _) = aged.deadline(&limits);
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        assert!((9..=10).contains(&left), "{left}");
        // A first byte now: the header timeout counts from now, not from the idle start.
        aged.read();
        let (deadline, waiting_for) = aged.deadline(&limits);
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        assert!((9..=10).contains(&left), "{left}");
        assert_eq!(waiting_for, "a request head");
    }

    #[test]
    fn limits_come_from_the_config() {
        let limits = Limits::default();
        assert_eq!(limits.header_timeout, Duration::from_secs(10));
        assert_eq!(limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(limits.max_connections, 1024);
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
