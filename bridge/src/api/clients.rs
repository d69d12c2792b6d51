//! Clients and sessions: listing, details, kicking, removing sessions, and subscribing on
//! a client's behalf.
//!
//! A "client" here is a session, online or not (as in EMQX): a persistent session whose
//! client is away is listed with `connected: false` and the details of its last connection.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use protocol::QoS;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};
use super::paging::{PageQuery, Paged};
use super::{rfc3339, ApiState};
use crate::broker::{ClientError, SessionSnapshot};
use crate::connection::Transport;
use crate::logsafe::untrusted;
use crate::store::SubRecord;

/// One client as the API shows it.
#[derive(Debug, Serialize)]
pub struct ClientView {
    pub clientid: String,
    pub username: Option<String>,
    /// `MQTT 3.1`, `MQTT 3.1.1` or `MQTT 5.0`; null while disconnected.
    pub protocol: Option<String>,
    /// The CONNECT protocol level: 3, 4 or 5.
    pub proto_ver: Option<u8>,
    /// `tcp` or `ws`.
    pub transport: Option<&'static str>,
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub connected: bool,
    /// RFC 3339.
    pub connected_at: Option<String>,
    /// Seconds, as the client asked in CONNECT.
    pub keepalive: Option<u16>,
    /// Whether the session ends with the connection.
    pub clean_start: bool,
    pub subscriptions: usize,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight: usize,
    /// Messages waiting to be sent.
    pub queued: usize,
    /// Messages dropped for this session because its queue was full.
    pub dropped: u64,
}

impl From<SessionSnapshot> for ClientView {
    fn from(session: SessionSnapshot) -> ClientView {
        let connected = session.connection.is_some();
        let connection = session.last_connection.as_deref();
        ClientView {
            clientid: session.client_id.to_string(),
            username: connection.and_then(|c| c.username.clone()),
            protocol: connection.map(|c| format!("MQTT {}", c.version)),
            proto_ver: connection.map(|c| c.version.level()),
            transport: connection.map(|c| transport_name(c.transport)),
            ip: connection.map(|c| c.peer.ip().to_string()),
            port: connection.map(|c| c.peer.port()),
            connected,
            connected_at: connection.map(|c| rfc3339(c.connected_at)),
            keepalive: connection.map(|c| c.keep_alive),
            clean_start: connection.map_or(session.clean(), |c| c.clean_start),
            subscriptions: session.subscriptions,
            inflight: session.in_flight,
            queued: session.queued,
            dropped: session.dropped,
        }
    }
}

fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Tcp => "tcp",
        Transport::WebSocket => "ws",
        Transport::Tls => "tls",
        Transport::Wss => "wss",
    }
}

/// Filters of `GET /api/v1/clients`.
#[derive(Debug, Default, Deserialize)]
pub struct ClientFilter {
    /// Client ids containing this.
    pub like_clientid: Option<String>,
    /// Usernames containing this.
    pub like_username: Option<String>,
    /// Exactly this peer IP address.
    pub ip: Option<String>,
    pub conn_state: Option<ConnState>,
}

/// `conn_state=` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnState {
    Connected,
    Disconnected,
}

impl ClientFilter {
    fn accepts(&self, client: &ClientView) -> bool {
        let contains = |field: Option<&str>, part: &Option<String>| match part {
            None => true,
            Some(part) => field.is_some_and(|f| f.contains(part.as_str())),
        };
        contains(Some(&client.clientid), &self.like_clientid)
            && contains(client.username.as_deref(), &self.like_username)
            && self
                .ip
                .as_ref()
                .is_none_or(|ip| client.ip.as_deref() == Some(ip.as_str()))
            && self
                .conn_state
                .is_none_or(|state| client.connected == (state == ConnState::Connected))
    }
}

/// `GET /api/v1/clients`: every session, sorted by client id, filtered and paged.
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(paging): ApiQuery<PageQuery>,
    ApiQuery(filter): ApiQuery<ClientFilter>,
) -> ApiResult<Json<Paged<ClientView>>> {
    let paging = paging.check()?;
    let clients: Vec<ClientView> = state
        .broker
        .sessions()
        .into_iter()
        .map(ClientView::from)
        .filter(|c| filter.accepts(c))
        .collect();
    Ok(Json(paging.apply(clients, |c| c)))
}

/// `GET /api/v1/clients/{clientid}`.
pub async fn get(
    State(state): State<ApiState>,
    ApiPath(clientid): ApiPath<String>,
) -> ApiResult<Json<ClientView>> {
    state
        .broker
        .session(&clientid)
        .map(|s| Json(ClientView::from(s)))
        .ok_or_else(|| unknown_client(&clientid))
}

/// `DELETE /api/v1/clients/{clientid}`: disconnects the client (its session stays if it
/// is persistent). 404 if there is no such client or it is not connected.
pub async fn kick(
    State(state): State<ApiState>,
    ApiPath(clientid): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.broker.kick(&clientid).map_err(client_error)?;
    tracing::info!(client_id = %untrusted(&clientid), "kicked through the admin API");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/sessions/{clientid}`: ends the session, disconnecting its client.
pub async fn remove_session(
    State(state): State<ApiState>,
    ApiPath(clientid): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state
        .broker
        .remove_session(&clientid)
        .map_err(client_error)?;
    tracing::info!(client_id = %untrusted(&clientid), "session removed through the admin API");
    Ok(StatusCode::NO_CONTENT)
}

/// One subscription as the API shows it, with the MQTT 5.0 subscription options under
/// EMQX's names (a 3.1.1 subscription has them all 0).
#[derive(Debug, Serialize)]
pub struct SubscriptionView {
    pub clientid: String,
    pub topic: String,
    /// The granted QoS.
    pub qos: u8,
    /// No Local: 1 if the client does not get its own messages back.
    pub nl: u8,
    /// Retain As Published: 1 if forwarded messages keep their RETAIN flag.
    pub rap: u8,
    /// Retain Handling: 0 send retained messages on subscribe, 1 only if the subscription
    /// is new, 2 never.
    pub rh: u8,
    /// The subscription identifier the client gave (5.0), if any.
    pub subid: Option<u32>,
}

impl SubscriptionView {
    pub fn new(clientid: String, topic: String, record: &SubRecord) -> SubscriptionView {
        SubscriptionView {
            clientid,
            topic,
            qos: record.qos,
            nl: u8::from(record.no_local),
            rap: u8::from(record.retain_as_published),
            rh: record.retain_handling,
            subid: record.subscription_id,
        }
    }
}

/// `GET /api/v1/clients/{clientid}/subscriptions`: the client's filters, sorted.
pub async fn subscriptions(
    State(state): State<ApiState>,
    ApiPath(clientid): ApiPath<String>,
) -> ApiResult<Json<Vec<SubscriptionView>>> {
    let list = state
        .broker
        .client_subscriptions(&clientid)
        .ok_or_else(|| unknown_client(&clientid))?;
    Ok(Json(
        list.into_iter()
            .map(|(topic, record)| SubscriptionView::new(clientid.clone(), topic, &record))
            .collect(),
    ))
}

/// `POST /api/v1/clients/{clientid}/subscribe` body.
#[derive(Debug, Deserialize)]
pub struct SubscribeRequest {
    pub topic: String,
    #[serde(default)]
    pub qos: u8,
}

/// `POST /api/v1/clients/{clientid}/subscribe`: subscribes the session as if the client
/// had sent SUBSCRIBE (retained messages that match are sent to it).
pub async fn subscribe(
    State(state): State<ApiState>,
    ApiPath(clientid): ApiPath<String>,
    ApiJson(body): ApiJson<SubscribeRequest>,
) -> ApiResult<Json<SubscriptionView>> {
    let qos = parse_qos(body.qos)?;
    let record = state
        .broker
        .subscribe_for(&clientid, &body.topic, qos)
        .map_err(client_error)?;
    Ok(Json(SubscriptionView::new(clientid, body.topic, &record)))
}

/// `POST /api/v1/clients/{clientid}/unsubscribe` body.
#[derive(Debug, Deserialize)]
pub struct UnsubscribeRequest {
    pub topic: String,
}

/// `POST /api/v1/clients/{clientid}/unsubscribe`: 204, or 404 if the client had no such
/// subscription.
pub async fn unsubscribe(
    State(state): State<ApiState>,
    ApiPath(clientid): ApiPath<String>,
    ApiJson(body): ApiJson<UnsubscribeRequest>,
) -> ApiResult<StatusCode> {
    if state
        .broker
        .unsubscribe_for(&clientid, &body.topic)
        .map_err(client_error)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "SUBSCRIPTION_NOT_FOUND",
            format!("{clientid:?} has no subscription {:?}", body.topic),
        ))
    }
}

/// A QoS from a request: 0, 1 or 2.
pub fn parse_qos(qos: u8) -> ApiResult<QoS> {
    QoS::from_u8(qos).ok_or_else(|| {
        ApiError::bad_request("BAD_REQUEST", format!("qos must be 0, 1 or 2, not {qos}"))
    })
}

fn unknown_client(clientid: &str) -> ApiError {
    ApiError::not_found("CLIENTID_NOT_FOUND", format!("no client {clientid:?}"))
}

fn client_error(error: ClientError) -> ApiError {
    match error {
        ClientError::UnknownClient(clientid) => unknown_client(&clientid),
        ClientError::InvalidFilter(reason) => ApiError::bad_request(
            "INVALID_TOPIC_FILTER",
            format!("invalid topic filter: {reason}"),
        ),
    }
}
