//! The admin API client: `fetch` with the bearer token, JSON in and out, errors as the
//! API writes them (`{"code", "message"}`), and the shapes of its answers.
//!
//! A 401 from any call but login means the token is gone (expired, revoked, a broker
//! restart): [`Api`] tells the dashboard, which goes back to the login page.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use yew::Callback;

use super::format::encode;

/// Where the API lives on the page's own origin.
pub const BASE: &str = "/api/v1";

/// A failed call: the HTTP status (0 when the broker did not answer at all), the API's
/// code and message, and for a throttled login how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl Failure {
    /// The broker could not be reached, or answered something that is not the API.
    pub fn network(message: impl Into<String>) -> Failure {
        Failure {
            status: 0,
            code: "NETWORK".into(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure from an HTTP status and the response body: the API's JSON message when
    /// there is one, else the status.
    pub fn from_response(status: u16, body: &str, retry_after: Option<u64>) -> Failure {
        #[derive(Deserialize)]
        struct Body {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        let (code, message) = match serde_json::from_str::<Body>(body) {
            Ok(b) if !b.message.is_empty() => (b.code, b.message),
            _ => (String::new(), format!("the broker answered HTTP {status}")),
        };
        Failure {
            status,
            code,
            message,
            retry_after,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What login keeps for the session (in sessionStorage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub token: String,
    pub username: String,
    #[serde(default)]
    pub default_password: bool,
}

/// `{"data": [...], "meta": {...}}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Paged<T> {
    pub data: Vec<T>,
    pub meta: Meta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Meta {
    pub page: usize,
    pub limit: usize,
    pub count: usize,
    pub hasnext: bool,
}

/// `GET /stats`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Stats {
    pub connections: u64,
    pub sessions: u64,
    pub subscriptions: u64,
    pub topics: u64,
    pub retained: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub messages_dropped: u64,
    #[serde(default)]
    pub bytes_received: u64,
    #[serde(default)]
    pub bytes_sent: u64,
    pub uptime: u64,
    /// What in the broker's configuration probably does not mean what it says.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// `GET /broker`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Broker {
    pub version: String,
    pub uptime: u64,
    pub started_at: String,
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub sys_interval: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Listener {
    pub kind: String,
    pub address: String,
    #[serde(default)]
    pub path: Option<String>,
}

/// `GET /metrics/history`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct History {
    #[serde(default)]
    pub sample_period: u64,
    pub data: Vec<Point>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Point {
    pub t: i64,
    pub received_rate: f64,
    pub sent_rate: f64,
    #[serde(default)]
    pub dropped_rate: f64,
    #[serde(default)]
    pub connections: u64,
}

/// One client (a session, connected or not) of `GET /clients`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Client {
    pub clientid: String,
    pub username: Option<String>,
    pub protocol: Option<String>,
    pub transport: Option<String>,
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub connected: bool,
    pub connected_at: Option<String>,
    pub keepalive: Option<u16>,
    #[serde(default)]
    pub clean_start: bool,
    pub subscriptions: u64,
    pub inflight: u64,
    pub queued: u64,
    #[serde(default)]
    pub dropped: u64,
}

impl Client {
    /// `127.0.0.1:53422`, `[::1]:53422`.
    pub fn peer(&self) -> Option<String> {
        let ip = self.ip.as_deref()?;
        Some(match (ip.contains(':'), self.port) {
            (true, Some(port)) => format!("[{ip}]:{port}"),
            (false, Some(port)) => format!("{ip}:{port}"),
            (_, None) => ip.to_owned(),
        })
    }
}

/// One subscription, with its MQTT 5.0 options (all 0 for 3.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Subscription {
    pub clientid: String,
    pub topic: String,
    pub qos: u8,
    /// No Local (0 or 1).
    #[serde(default)]
    pub nl: u8,
    /// Retain As Published (0 or 1).
    #[serde(default)]
    pub rap: u8,
    /// Retain Handling (0, 1 or 2).
    #[serde(default)]
    pub rh: u8,
    /// The subscription identifier, if the client gave one.
    #[serde(default)]
    pub subid: Option<u32>,
}

impl Subscription {
    /// The options that differ from a plain subscription's, in words ("–" for none): what
    /// explains why a client gets no echo of its own messages or no retained ones.
    pub fn options_text(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.nl != 0 {
            parts.push("No Local".into());
        }
        if self.rap != 0 {
            parts.push("Retain as Published".into());
        }
        match self.rh {
            0 => {}
            1 => parts.push("Retained: new only".into()),
            _ => parts.push("Retained: never".into()),
        }
        if let Some(id) = self.subid {
            parts.push(format!("ID {id}"));
        }
        if parts.is_empty() {
            "–".into()
        } else {
            parts.join(", ")
        }
    }
}

/// One distinct subscribed filter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Topic {
    pub topic: String,
    pub subscribers: u64,
}

/// One retained message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Retained {
    pub topic: String,
    pub qos: u8,
    /// Null in listings for large payloads.
    pub payload: Option<String>,
    /// `plain` or `base64`.
    #[serde(default)]
    pub encoding: String,
    pub size: u64,
}

impl Retained {
    /// The payload's bytes, when the answer carried them.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let payload = self.payload.as_ref()?;
        if self.encoding == "base64" {
            base64::engine::general_purpose::STANDARD
                .decode(payload.trim())
                .ok()
        } else {
            Some(payload.as_bytes().to_vec())
        }
    }
}

/// `POST /publish` body.
#[derive(Debug, Clone, Serialize)]
pub struct PublishRequest {
    pub topic: String,
    pub payload: String,
    pub qos: u8,
    pub retain: bool,
    pub encoding: &'static str,
}

/// `POST /publish` answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Published {
    pub id: String,
    pub delivered_to: u64,
}

/// `/clients/{id}` and the like: a path with one encoded segment.
pub fn path(prefix: &str, segment: &str, suffix: &str) -> String {
    format!("{prefix}/{}{suffix}", encode(segment))
}

/// The client of one logged-in session. Compared by token: the dashboard makes a new one
/// only when the token changes.
#[derive(Clone)]
pub struct Api {
    token: std::rc::Rc<str>,
    on_unauthorized: Callback<()>,
}

impl PartialEq for Api {
    fn eq(&self, other: &Api) -> bool {
        self.token == other.token
    }
}

impl Api {
    pub fn new(token: &str, on_unauthorized: Callback<()>) -> Api {
        Api {
            token: token.into(),
            on_unauthorized,
        }
    }

    /// `POST /login`: no token needed; a 401 is a wrong password, not an expired session.
    pub async fn login(username: &str, password: &str) -> Result<Login, Failure> {
        let body = serde_json::json!({ "username": username, "password": password }).to_string();
        let (status, text, retry_after) = send("POST", "/login", None, Some(body)).await?;
        if status == 200 {
            serde_json::from_str(&text).map_err(|e| Failure::network(format!("bad answer: {e}")))
        } else {
            Err(Failure::from_response(status, &text, retry_after))
        }
    }

    /// A GET: the answer's body (JSON, decoded by the caller).
    pub async fn get_text(&self, path: &str) -> Result<String, Failure> {
        self.call("GET", path, None).await
    }

    /// A POST with a JSON body, its JSON answer decoded.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Failure> {
        let body = serde_json::to_string(body).unwrap_or_default();
        let text = self.call("POST", path, Some(body)).await?;
        serde_json::from_str(&text).map_err(|e| Failure::network(format!("bad answer: {e}")))
    }

    /// A call whose answer has no body worth reading (204s: DELETE, logout, password).
    pub async fn send<B: Serialize>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), Failure> {
        let body = body.map(|b| serde_json::to_string(b).unwrap_or_default());
        self.call(method, path, body).await.map(drop)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<String, Failure> {
        let (status, text, retry_after) = send(method, path, Some(&self.token), body).await?;
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            if status == 401 {
                self.on_unauthorized.emit(());
            }
            Err(Failure::from_response(status, &text, retry_after))
        }
    }
}

/// One HTTP exchange with the API: status, body text, `Retry-After` seconds.
#[cfg(target_arch = "wasm32")]
async fn send(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Result<(u16, String, Option<u64>), Failure> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;

    let js = |e: wasm_bindgen::JsValue| {
        Failure::network(format!(
            "the broker did not answer ({})",
            e.as_string()
                .or_else(|| js_sys::Error::from(e).message().as_string())
                .unwrap_or_default()
        ))
    };
    let window = web_sys::window().ok_or_else(|| Failure::network("no window"))?;
    let headers = web_sys::Headers::new().map_err(js)?;
    headers.set("Accept", "application/json").map_err(js)?;
    if let Some(token) = token {
        headers
            .set("Authorization", &format!("Bearer {token}"))
            .map_err(js)?;
    }
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    if let Some(body) = body {
        headers
            .set("Content-Type", "application/json")
            .map_err(js)?;
        init.set_body(&wasm_bindgen::JsValue::from_str(&body));
    }
    init.set_headers(&headers);
    let url = format!("{BASE}{path}");
    let response: web_sys::Response = JsFuture::from(window.fetch_with_str_and_init(&url, &init))
        .await
        .map_err(js)?
        .dyn_into()
        .map_err(js)?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get("Retry-After")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse().ok());
    let text = JsFuture::from(response.text().map_err(js)?)
        .await
        .map_err(js)?
        .as_string()
        .unwrap_or_default();
    Ok((status, text, retry_after))
}

/// Natively (clippy, unit tests) there is no network: every call fails.
#[cfg(not(target_arch = "wasm32"))]
async fn send(
    _method: &str,
    path: &str,
    _token: Option<&str>,
    _body: Option<String>,
) -> Result<(u16, String, Option<u64>), Failure> {
    Err(Failure::network(format!(
        "no network outside the browser for {BASE}{path}"
    )))
}

/// sessionStorage: the login lasts as long as the tab.
fn session_storage() -> Option<web_sys::Storage> {
    if cfg!(target_arch = "wasm32") {
        web_sys::window()?.session_storage().ok()?
    } else {
        None
    }
}

const KEY: &str = "bridge.dashboard.login";

/// The login kept for this tab, if any.
pub fn stored_login() -> Option<Login> {
    let text = session_storage()?.get_item(KEY).ok()??;
    serde_json::from_str(&text).ok()
}

/// Keeps (or with `None` forgets) the login for this tab.
pub fn store_login(login: Option<&Login>) {
    let Some(storage) = session_storage() else {
        return;
    };
    let _ = match login.and_then(|l| serde_json::to_string(l).ok()) {
        Some(text) => storage.set_item(KEY, &text),
        None => storage.remove_item(KEY),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_carry_the_api_message() {
        let f = Failure::from_response(
            401,
            r#"{"code":"BAD_USERNAME_OR_PASSWORD","message":"wrong username or password"}"#,
            None,
        );
        assert_eq!(f.code, "BAD_USERNAME_OR_PASSWORD");
        assert_eq!(f.to_string(), "wrong username or password");
        let f = Failure::from_response(502, "<html>bad gateway</html>", Some(3));
        assert_eq!(f.message, "the broker answered HTTP 502");
        assert_eq!(f.retry_after, Some(3));
    }

    #[test]
    fn subscription_options_in_words() {
        let plain: Subscription =
            serde_json::from_str(r#"{"clientid":"c","topic":"t","qos":1}"#).unwrap();
        assert_eq!(plain.options_text(), "–");
        let all: Subscription = serde_json::from_str(
            r#"{"clientid":"c","topic":"t","qos":1,"nl":1,"rap":1,"rh":2,"subid":7}"#,
        )
        .unwrap();
        assert_eq!(
            all.options_text(),
            "No Local, Retain as Published, Retained: never, ID 7"
        );
        let new_only = Subscription {
            rh: 1,
            subid: None,
            ..all
        };
        assert_eq!(
            new_only.options_text(),
            "No Local, Retain as Published, Retained: new only"
        );
    }

    #[test]
    fn answers_decode() {
        let page: Paged<Client> = serde_json::from_str(
            r#"{"data":[{"clientid":"c1","username":null,"protocol":"MQTT 5.0","proto_ver":5,
            "transport":"tcp","ip":"::1","port":5000,"connected":true,
            "connected_at":"2024-01-01T00:00:00.000Z","keepalive":60,"clean_start":true,
            "subscriptions":1,"inflight":0,"queued":2,"dropped":0}],
            "meta":{"page":1,"limit":20,"count":1,"hasnext":false}}"#,
        )
        .unwrap();
        assert_eq!(page.data[0].peer().as_deref(), Some("[::1]:5000"));
        assert_eq!(page.meta.count, 1);
        let retained: Retained = serde_json::from_str(
            r#"{"topic":"t","qos":1,"payload":"AAEC","encoding":"base64","size":3}"#,
        )
        .unwrap();
        assert_eq!(retained.bytes(), Some(vec![0, 1, 2]));
        let login: Login = serde_json::from_str(
            r#"{"token":"abc","username":"admin","default_password":true,"token_ttl":43200}"#,
        )
        .unwrap();
        assert!(login.default_password);
    }

    #[test]
    fn paths_encode_their_segment() {
        assert_eq!(
            path("/clients", "a/b c", "/subscriptions"),
            "/clients/a%2Fb%20c/subscriptions"
        );
        assert_eq!(path("/retained", "/x/#", ""), "/retained/%2Fx%2F%23");
        assert_eq!(stored_login(), None);
    }
}
