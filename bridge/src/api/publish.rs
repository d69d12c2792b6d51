//! Publishing a message through the broker, as a client would.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use bytes::Bytes;
use protocol::topic::validate_topic_name;
use serde::{Deserialize, Serialize};

use super::clients::parse_qos;
use super::error::{ApiError, ApiJson, ApiResult};
use super::retained::Encoding;
use super::ApiState;
use crate::broker::Message;

/// `POST /api/v1/publish` body.
#[derive(Debug, Deserialize)]
pub struct PublishRequest {
    pub topic: String,
    /// Text, or base64 with `"encoding": "base64"`. Empty by default (with `retain`,
    /// that clears the topic's retained message, as in MQTT).
    #[serde(default)]
    pub payload: String,
    #[serde(default)]
    pub qos: u8,
    #[serde(default)]
    pub retain: bool,
    #[serde(default)]
    pub encoding: Encoding,
}

/// `POST /api/v1/publish` answer.
#[derive(Debug, Serialize)]
pub struct PublishResponse {
    /// An identifier for this publish, for logs and the dashboard.
    pub id: String,
    /// Subscriptions it matched.
    pub delivered_to: usize,
}

/// `POST /api/v1/publish`: routes the message to matching subscribers (and stores it if
/// retained). 400 for a bad topic name, QoS or payload.
pub async fn publish(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<PublishRequest>,
) -> ApiResult<Json<PublishResponse>> {
    validate_topic_name(&body.topic)
        .map_err(|e| ApiError::bad_request("INVALID_TOPIC", format!("topic: {e}")))?;
    let qos = parse_qos(body.qos)?;
    let payload = match body.encoding {
        Encoding::Plain => Bytes::from(body.payload),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(body.payload.trim())
            .map(Bytes::from)
            .map_err(|e| {
                ApiError::bad_request("BAD_REQUEST", format!("payload: bad base64: {e}"))
            })?,
    };
    // What a client could not send, the API cannot either: the PUBLISH packet (fixed
    // header up to 5 bytes, topic with its length, packet id) must fit the limit.
    let max = state.broker.settings.max_packet_size;
    let packet = payload.len() + body.topic.len() + 9;
    if packet > max {
        return Err(ApiError::bad_request(
            "PAYLOAD_TOO_LARGE",
            format!("the message would be a {packet}-byte packet; packets are limited to {max}"),
        ));
    }
    let id = message_id()?;
    let delivered_to = state
        .broker
        .try_publish(
            Message::new(body.topic, payload, qos, body.retain),
            true,
            &crate::store::Durability::unwaited(),
        )
        .map_err(|_| {
            ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "QUOTA_EXCEEDED",
                "the retained store is full (max_retained_messages, max_retained_bytes): \
                 clear some retained messages first",
            )
        })?;
    Ok(Json(PublishResponse { id, delivered_to }))
}

/// 128 random bits in hex.
fn message_id() -> ApiResult<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::internal(format!("no randomness for a message id: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
