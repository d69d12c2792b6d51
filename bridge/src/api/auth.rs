//! Logging in to the admin API: bearer tokens, the middleware that requires them, the
//! throttle on failed logins (per client address and per user name, so that neither many
//! names from one address nor one name from many addresses escape it), and the login,
//! logout and password-change handlers.
//!
//! Tokens are 256 random bits, kept only in memory (a restart logs everyone out), and
//! expire after [`crate::config::Dashboard::token_ttl`] without use.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::accounts::{Accounts, PasswordError};
use super::error::{ApiError, ApiJson, ApiPath, ApiResult};
use super::ApiState;
use crate::logsafe::untrusted;
use crate::throttle::{NameKeys, Rules, Throttle};

/// How failed logins slow down one address, and one user name: 3 free failures, then a
/// wait of 2 s that doubles with each further failure, up to 5 minutes.
pub const LOGIN_RULES: Rules = Rules {
    free_failures: 3,
    first_wait: Duration::from_secs(2),
    max_wait: Duration::from_secs(5 * 60),
    max_keys: MAX_TRACKED,
};
/// Failed logins from one address, or for one user name, allowed before the throttle
/// starts.
pub const FREE_FAILURES: u32 = LOGIN_RULES.free_failures;
/// Above this many tokens, expired ones are swept on insert.
const SWEEP_ABOVE: usize = 10_000;
/// Addresses, and user names, whose failures are remembered at most: a flood of logins
/// from many addresses or with made-up names evicts the oldest instead of growing memory.
pub const MAX_TRACKED: usize = 10_000;

/// Password checks (argon2, ~19 MiB each) running at once; more wait in line, so a
/// flood of logins costs queue slots, not memory.
const MAX_CONCURRENT_CHECKS: usize = 2;

/// Tokens, the throttle and the account.
pub struct Auth {
    pub accounts: Accounts,
    ttl: Duration,
    checks: tokio::sync::Semaphore,
    tokens: Mutex<HashMap<String, Token>>,
    by_address: Throttle<IpAddr>,
    by_name: Throttle<u64>,
    names: NameKeys,
}

struct Token {
    username: String,
    last_used: Instant,
}

/// Who made an authenticated request: put into the request by [`require_token`].
#[derive(Debug, Clone)]
pub struct Caller {
    pub username: String,
    pub token: String,
}

impl Auth {
    /// Tokens expire after `ttl` without use.
    pub fn new(accounts: Accounts, ttl: Duration) -> Auth {
        Auth {
            accounts,
            ttl,
            checks: tokio::sync::Semaphore::new(MAX_CONCURRENT_CHECKS),
            tokens: Mutex::new(HashMap::new()),
            by_address: Throttle::new(LOGIN_RULES),
            by_name: Throttle::new(LOGIN_RULES),
            names: NameKeys::default(),
        }
    }

    /// A new token for `username`.
    pub fn issue(&self, username: &str) -> ApiResult<String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| ApiError::internal(format!("no randomness for a token: {e}")))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        if tokens.len() > SWEEP_ABOVE {
            tokens.retain(|_, t| now.duration_since(t.last_used) <= self.ttl);
        }
        tokens.insert(
            token.clone(),
            Token {
                username: username.to_owned(),
                last_used: now,
            },
        );
        Ok(token)
    }

    /// The user of a valid token, refreshing its idle time; forgets an expired one.
    pub fn check(&self, token: &str) -> Option<String> {
        let mut tokens = self.tokens.lock();
        let now = Instant::now();
        let entry = tokens.get_mut(token)?;
        if now.duration_since(entry.last_used) > self.ttl {
            tokens.remove(token);
            return None;
        }
        entry.last_used = now;
        Some(entry.username.clone())
    }

    /// Revokes one token.
    pub fn revoke(&self, token: &str) {
        self.tokens.lock().remove(token);
    }

    /// Revokes every token of `username` except `keep` (after a password change).
    pub fn revoke_others(&self, username: &str, keep: &str) {
        self.tokens
            .lock()
            .retain(|token, t| token == keep || t.username != username);
    }

    /// `Err(seconds)` while a login from `ip` or for `username` must wait: the longer of
    /// the two waits.
    pub fn throttled(&self, ip: IpAddr, username: &str) -> Result<(), u64> {
        let address = self.by_address.wait(&ip);
        let name = self.by_name.wait(&self.names.key(username));
        match (address, name) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(a), Err(b)) => Err(seconds(a.max(b))),
            (Err(wait), _) | (_, Err(wait)) => Err(seconds(wait)),
        }
    }

    /// Counts a failed login from `ip` for `username`; from the [`FREE_FAILURES`]th
    /// failure of either on, it is blocked for a time that doubles with each failure.
    pub fn failed(&self, ip: IpAddr, username: &str) {
        self.by_address.failed(ip);
        self.by_name.failed(self.names.key(username));
    }

    /// Forgets the failures of `ip` and of `username` (they logged in).
    pub fn succeeded(&self, ip: IpAddr, username: &str) {
        self.by_address.succeeded(&ip);
        self.by_name.succeeded(&self.names.key(username));
    }
}

/// A wait in whole seconds, rounded up: "Retry-After: 0" would invite an immediate retry.
fn seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// The client's IP address (unspecified when the server runs without connect info, as
/// in unit tests). Behind a reverse proxy this is the proxy's, so the login throttle
/// then applies to all users together.
pub struct PeerIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip()),
        ))
    }
}

/// Middleware: lets the request through only with `Authorization: Bearer <valid token>`,
/// and hands the handler a [`Caller`].
pub async fn require_token(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
        .map(str::to_owned);
    let Some(token) = token else {
        return ApiError::unauthorized(
            "missing `Authorization: Bearer <token>`; POST /api/v1/login gives one",
        )
        .into_response();
    };
    match state.auth.check(&token) {
        Some(username) => {
            request.extensions_mut().insert(Caller { username, token });
            next.run(request).await
        }
        None => {
            ApiError::unauthorized("the token is invalid or expired; log in again").into_response()
        }
    }
}

/// The token of an `Authorization` header value; the scheme is case-insensitive.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `POST /api/v1/login` body.
#[derive(Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

// Written by hand so that a password can never reach a log through `{:?}`.
impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `POST /api/v1/login` answer.
#[derive(Debug, Serialize)]
pub struct LoginResponse {
    pub token: String,
    pub username: String,
    /// True while the well-known default password is in use: the dashboard asks for a
    /// change.
    pub default_password: bool,
    /// Seconds the token stays valid without use.
    pub token_ttl: u64,
}

fn too_many_failures(seconds: u64) -> ApiError {
    ApiError {
        retry_after: Some(seconds),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            format!("too many failed logins; retry in {seconds} s"),
        )
    }
}

/// `POST /api/v1/login`: a token for the right username and password; 401 otherwise,
/// 429 (with `Retry-After`) while the address or the user name is throttled after
/// repeated failures.
pub async fn login(
    State(state): State<ApiState>,
    PeerIp(ip): PeerIp,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    state
        .auth
        .throttled(ip, &body.username)
        .map_err(too_many_failures)?;
    // One check at a time per permit; the throttle is asked again once a permit is ours,
    // so attempts queued behind failures from the same address or for the same name are
    // refused, not checked.
    let _permit = state
        .auth
        .checks
        .acquire()
        .await
        .map_err(|e| ApiError::internal(format!("password check unavailable: {e}")))?;
    state
        .auth
        .throttled(ip, &body.username)
        .map_err(too_many_failures)?;
    let auth = state.auth.clone();
    let username = body.username.clone();
    // argon2 takes tens of milliseconds (far more in debug builds): not on the runtime.
    let verified =
        tokio::task::spawn_blocking(move || auth.accounts.verify(&username, &body.password))
            .await
            .map_err(|e| ApiError::internal(format!("password check failed: {e}")))?;
    let Some(logged_in) = verified else {
        state.auth.failed(ip, &body.username);
        tracing::warn!(%ip, username = %untrusted(&body.username), "admin API login failed");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "BAD_USERNAME_OR_PASSWORD",
            "wrong username or password",
        ));
    };
    state.auth.succeeded(ip, &body.username);
    let token = state.auth.issue(&body.username)?;
    tracing::info!(%ip, username = %untrusted(&body.username), "admin API login");
    Ok(Json(LoginResponse {
        token,
        username: body.username,
        default_password: logged_in.default_password,
        token_ttl: state.token_ttl.as_secs(),
    }))
}

/// `POST /api/v1/logout`: revokes the token used for it.
pub async fn logout(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> StatusCode {
    state.auth.revoke(&caller.token);
    StatusCode::NO_CONTENT
}

/// `PUT /api/v1/users/{username}/password` body.
#[derive(Deserialize)]
pub struct ChangePassword {
    pub old_password: String,
    pub new_password: String,
}

impl std::fmt::Debug for ChangePassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangePassword { <redacted> }")
    }
}

/// `PUT /api/v1/users/{username}/password`: checks the old password, stores the new one
/// (hashed) and revokes the user's other tokens.
pub async fn change_password(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(username): ApiPath<String>,
    ApiJson(body): ApiJson<ChangePassword>,
) -> ApiResult<StatusCode> {
    if username != caller.username {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "only your own password can be changed",
        ));
    }
    let _permit = state
        .auth
        .checks
        .acquire()
        .await
        .map_err(|e| ApiError::internal(format!("password check unavailable: {e}")))?;
    let auth: Arc<Auth> = state.auth.clone();
    let name = username.clone();
    let changed = tokio::task::spawn_blocking(move || {
        auth.accounts
            .change_password(&name, &body.old_password, &body.new_password)
    })
    .await
    .map_err(|e| ApiError::internal(format!("password change failed: {e}")))?;
    match changed {
        Ok(()) => {
            state.auth.revoke_others(&username, &caller.token);
            tracing::info!(username = %untrusted(&username), "admin API password changed");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e @ PasswordError::UnknownUser(_)) => {
            Err(ApiError::not_found("USER_NOT_FOUND", e.to_string()))
        }
        Err(e @ PasswordError::WrongOldPassword) => {
            Err(ApiError::bad_request("BAD_OLD_PASSWORD", e.to_string()))
        }
        Err(e @ PasswordError::TooShort) => {
            Err(ApiError::bad_request("PASSWORD_TOO_SHORT", e.to_string()))
        }
        Err(e @ PasswordError::Unchanged) => {
            Err(ApiError::bad_request("PASSWORD_UNCHANGED", e.to_string()))
        }
        Err(e @ PasswordError::Storage(_)) => {
            tracing::error!(error = %e, "admin API password change not stored");
            Err(ApiError::internal(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::Dashboard;

    fn auth(ttl: Duration) -> Auth {
        let dir = std::env::temp_dir().join("bridge-auth-test-never-written");
        Auth::new(Accounts::load(&Dashboard::default(), &dir).unwrap(), ttl)
    }

    #[test]
    fn tokens_are_random_and_revocable() {
        let auth = auth(Duration::from_secs(60));
        let a = auth.issue("admin").unwrap();
        let b = auth.issue("admin").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(auth.check(&a).as_deref(), Some("admin"));
        assert_eq!(auth.check("nope"), None);
        auth.revoke(&a);
        assert_eq!(auth.check(&a), None);
        let c = auth.issue("admin").unwrap();
        auth.revoke_others("admin", &c);
        assert_eq!(auth.check(&b), None);
        assert!(auth.check(&c).is_some());
    }

    #[test]
    fn idle_tokens_expire() {
        let auth = auth(Duration::from_millis(30));
        let token = auth.issue("admin").unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(auth.check(&token), None);
    }

    #[test]
    fn failures_are_throttled_with_growing_waits() {
        let auth = auth(Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        // A new name for each failure: only the address counts them all.
        for n in 1..FREE_FAILURES {
            auth.failed(ip, &format!("user{n}"));
            assert_eq!(auth.throttled(ip, "admin"), Ok(()));
        }
        auth.failed(ip, "last");
        let first = auth.throttled(ip, "admin").unwrap_err();
        assert!(first >= 1);
        auth.failed(ip, "later");
        let second = auth.throttled(ip, "admin").unwrap_err();
        assert!(second > first, "{second} <= {first}");
        assert_eq!(auth.throttled(other, "admin"), Ok(()));
        auth.succeeded(ip, "admin");
        assert_eq!(auth.throttled(ip, "admin"), Ok(()));
    }

    #[test]
    fn failures_for_one_name_from_many_addresses_are_throttled() {
        let auth = auth(Duration::from_secs(60));
        let from = |n: u8| IpAddr::from([198, 51, 100, n]);
        for n in 1..=FREE_FAILURES as u8 {
            assert_eq!(auth.throttled(from(n), "admin"), Ok(()));
            auth.failed(from(n), "admin");
        }
        // Every address, even a fresh one, now waits for this name, and only for it.
        let wait = auth.throttled(from(99), "admin").unwrap_err();
        assert!((1..=2).contains(&wait), "{wait}");
        assert_eq!(auth.throttled(from(99), "operator"), Ok(()));
        auth.failed(from(98), "admin");
        assert!(auth.throttled(from(97), "admin").unwrap_err() > wait);
        // A success (after the wait) forgives the name.
        auth.succeeded(from(99), "admin");
        assert_eq!(auth.throttled(from(97), "admin"), Ok(()));
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
