//! Retained messages: listing, one message, deleting.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use protocol::topic::{self, validate_topic_filter};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiPath, ApiQuery, ApiResult};
use super::paging::{PageQuery, Paged};
use super::ApiState;
use crate::broker::Message;
use crate::logsafe::untrusted;

/// Payloads larger than this are left out of listings (`payload: null`); fetch the one
/// message to see them.
pub const LIST_PAYLOAD_MAX: usize = 4096;

/// How a payload is written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// UTF-8 text as is.
    #[default]
    Plain,
    /// Standard base64 with padding.
    Base64,
}

/// One retained message as the API shows it.
#[derive(Debug, Serialize)]
pub struct RetainedView {
    pub topic: String,
    pub qos: u8,
    /// The payload as text when it is valid UTF-8, else base64 (see `encoding`). Null in
    /// listings for payloads above [`LIST_PAYLOAD_MAX`] bytes.
    pub payload: Option<String>,
    pub encoding: Encoding,
    /// Payload size in bytes.
    pub size: usize,
}

impl RetainedView {
    fn new(message: &Message, with_payload: bool) -> RetainedView {
        let (payload, encoding) = match std::str::from_utf8(&message.payload) {
            Ok(text) => (text.to_owned(), Encoding::Plain),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(&message.payload),
                Encoding::Base64,
            ),
        };
        RetainedView {
            topic: message.topic.clone(),
            qos: message.qos as u8,
            payload: with_payload.then_some(payload),
            encoding,
            size: message.payload.len(),
        }
    }
}

/// Filters of `GET /api/v1/retained`.
#[derive(Debug, Default, Deserialize)]
pub struct RetainedFilter {
    /// A topic filter (wildcards allowed) the topics must match; a plain topic name
    /// selects just that topic.
    pub topic: Option<String>,
    /// Topics containing this.
    pub like_topic: Option<String>,
}

/// `GET /api/v1/retained`: retained messages sorted by topic, filtered and paged.
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(paging): ApiQuery<PageQuery>,
    ApiQuery(filter): ApiQuery<RetainedFilter>,
) -> ApiResult<Json<Paged<RetainedView>>> {
    let paging = paging.check()?;
    if let Some(filter) = &filter.topic {
        validate_topic_filter(filter)
            .map_err(|e| ApiError::bad_request("INVALID_TOPIC_FILTER", format!("topic: {e}")))?;
    }
    let messages: Vec<Arc<Message>> = state
        .broker
        .retained_messages()
        .into_iter()
        .filter(|m| {
            filter
                .topic
                .as_ref()
                .is_none_or(|f| topic::matches(f, &m.topic))
                && filter
                    .like_topic
                    .as_ref()
                    .is_none_or(|part| m.topic.contains(part.as_str()))
        })
        .collect();
    Ok(Json(paging.apply(messages, |m| {
        RetainedView::new(&m, m.payload.len() <= LIST_PAYLOAD_MAX)
    })))
}

/// `GET /api/v1/retained/{topic}` (the topic percent-encoded or with its `/` as is).
pub async fn get(
    State(state): State<ApiState>,
    ApiPath(topic): ApiPath<String>,
) -> ApiResult<Json<RetainedView>> {
    state
        .broker
        .retained_message(&topic)
        .map(|m| Json(RetainedView::new(&m, true)))
        .ok_or_else(|| no_retained(&topic))
}

/// `DELETE /api/v1/retained/{topic}`: 204, or 404 if the topic has no retained message.
pub async fn delete(
    State(state): State<ApiState>,
    ApiPath(topic): ApiPath<String>,
) -> ApiResult<StatusCode> {
    if state.broker.delete_retained(&topic) {
        tracing::info!(topic = %untrusted(&topic), "retained message deleted through the admin API");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_retained(&topic))
    }
}

fn no_retained(topic: &str) -> ApiError {
    ApiError::not_found(
        "RETAINED_NOT_FOUND",
        format!("no retained message on {topic:?}"),
    )
}
