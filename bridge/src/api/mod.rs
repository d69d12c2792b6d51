//! The admin HTTP API under `/api/v1`, in the style of EMQX's dashboard API, and the
//! Prometheus exposition at `/metrics`.
//!
//! Layout: handlers are thin and grouped by concern ([`clients`], [`subscriptions`],
//! [`retained`], [`publish`], [`metrics`], [`auth`]); request and response bodies are serde structs
//! next to their handlers; every failure is an [`error::ApiError`] (status + JSON
//! `{"code", "message"}`); paged listings share [`paging`]. Everything but `POST
//! /api/v1/login` requires `Authorization: Bearer <token>` ([`auth::require_token`]);
//! `/metrics` too unless `[dashboard] prometheus_public = true`.

pub mod accounts;
pub mod auth;
pub mod clients;
pub mod error;
pub mod metrics;
pub mod paging;
pub mod publish;
pub mod retained;
pub mod subscriptions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use axum::Router;

use crate::broker::Broker;
use crate::sys::Stats;
use auth::Auth;
use error::ApiError;

/// What every handler can reach. Cheap to clone (all shared).
#[derive(Clone)]
pub struct ApiState {
    pub broker: Arc<Broker>,
    pub stats: Arc<Stats>,
    pub auth: Arc<Auth>,
    pub info: Arc<BrokerInfo>,
    /// How long a token lives unused, as told to the client at login.
    pub token_ttl: Duration,
}

/// Static facts about this broker, shown by `GET /api/v1/broker`.
#[derive(Debug, Clone, Default)]
pub struct BrokerInfo {
    /// The listeners that are bound, with their addresses.
    pub listeners: Vec<ListenerInfo>,
    /// Seconds between `$SYS` updates (0: off).
    pub sys_interval: u64,
}

/// One bound listener.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// `tcp`, `ws` or `http`.
    pub kind: &'static str,
    pub address: SocketAddr,
    /// The WebSocket endpoint's path, for `ws`.
    pub path: Option<String>,
}

/// Options of the API itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiOptions {
    /// Serve `GET /metrics` without a token.
    pub prometheus_public: bool,
}

/// The API's routes: `/api/v1/...` and `/metrics`. Merge it with the web app's router;
/// it has no fallback of its own outside `/api/v1`, so the web app still answers
/// everything else.
pub fn router(state: ApiState, options: ApiOptions) -> Router {
    // Room for a maximum-size payload in base64 inside a JSON body.
    let body_limit = (state.broker.settings.max_packet_size / 3 * 4 + 64 * 1024).max(2 << 20);
    let protected = Router::new()
        .route("/logout", post(auth::logout))
        .route("/users/{username}/password", put(auth::change_password))
        .route("/stats", get(metrics::stats))
        .route("/broker", get(metrics::broker))
        .route("/metrics", get(metrics::metrics))
        .route("/metrics/history", get(metrics::history))
        .route("/clients", get(clients::list))
        .route(
            "/clients/{clientid}",
            get(clients::get).delete(clients::kick),
        )
        .route(
            "/clients/{clientid}/subscriptions",
            get(clients::subscriptions),
        )
        .route("/clients/{clientid}/subscribe", post(clients::subscribe))
        .route(
            "/clients/{clientid}/unsubscribe",
            post(clients::unsubscribe),
        )
        .route(
            "/sessions/{clientid}",
            axum::routing::delete(clients::remove_session),
        )
        .route("/subscriptions", get(subscriptions::list))
        .route("/topics", get(subscriptions::topics))
        .route("/retained", get(retained::list))
        .route(
            "/retained/{*topic}",
            get(retained::get).delete(retained::delete),
        )
        .route("/publish", post(publish::publish))
        // route_layer: only matched routes need a token, so unknown paths are plain 404s.
        .route_layer(from_fn_with_state(state.clone(), auth::require_token));
    let api = Router::new()
        .route("/login", post(auth::login))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state.clone());

    let mut prometheus = Router::new().route("/metrics", get(metrics::prometheus));
    if !options.prometheus_public {
        prometheus = prometheus.route_layer(from_fn_with_state(state.clone(), auth::require_token));
    }
    Router::new()
        .nest("/api/v1", api)
        .merge(prometheus.with_state(state))
}

// OriginalUri: inside `nest` the plain URI has lost its `/api/v1` prefix.
async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found("NOT_FOUND", format!("no API endpoint {}", uri.path()))
}

async fn method_not_allowed(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{} does not take this method", uri.path()),
    )
}

/// RFC 3339 with milliseconds, UTC.
pub(crate) fn rfc3339(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}
