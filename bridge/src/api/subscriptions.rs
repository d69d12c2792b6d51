//! Subscriptions across all clients, and the distinct topic filters ("topics").

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use protocol::topic::{self, parse_shared, validate_topic_name};
use serde::{Deserialize, Serialize};

use super::clients::{parse_qos, SubscriptionView};
use super::error::{ApiError, ApiQuery, ApiResult};
use super::paging::{PageQuery, Paged};
use super::ApiState;

/// Filters of `GET /api/v1/subscriptions` and `GET /api/v1/topics`.
#[derive(Debug, Default, Deserialize)]
pub struct SubscriptionFilter {
    /// Only this client's subscriptions.
    pub clientid: Option<String>,
    /// Exactly this topic filter.
    pub topic: Option<String>,
    /// Filters that match this topic name (who would get a message published to it).
    pub match_topic: Option<String>,
    /// Filters that contain this text (a search box's "contains").
    pub like_topic: Option<String>,
    /// Only this granted QoS.
    pub qos: Option<u8>,
}

impl SubscriptionFilter {
    /// Rejects a `match_topic` that is not a topic name and a QoS that does not exist.
    fn check(&self) -> ApiResult<()> {
        if let Some(name) = &self.match_topic {
            validate_topic_name(name)
                .map_err(|e| ApiError::bad_request("INVALID_TOPIC", format!("match_topic: {e}")))?;
        }
        if let Some(qos) = self.qos {
            parse_qos(qos)?;
        }
        Ok(())
    }

    fn accepts_filter(&self, filter: &str) -> bool {
        self.topic.as_ref().is_none_or(|t| t == filter)
            && self
                .like_topic
                .as_ref()
                .is_none_or(|part| filter.contains(part.as_str()))
            && self
                .match_topic
                .as_ref()
                .is_none_or(|name| filter_matches(filter, name))
    }
}

/// Whether a subscription filter (possibly `$share/group/...`) matches a topic name.
fn filter_matches(filter: &str, name: &str) -> bool {
    let inner = match parse_shared(filter) {
        Ok(Some((_, inner))) => inner,
        _ => filter,
    };
    topic::matches(inner, name)
}

/// `GET /api/v1/subscriptions`: every subscription, sorted by filter then client.
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(paging): ApiQuery<PageQuery>,
    ApiQuery(filter): ApiQuery<SubscriptionFilter>,
) -> ApiResult<Json<Paged<SubscriptionView>>> {
    let paging = paging.check()?;
    filter.check()?;
    let list: Vec<_> = state
        .broker
        .subscriptions()
        .into_iter()
        .filter(|(topic, clientid, record)| {
            filter.accepts_filter(topic)
                && filter
                    .clientid
                    .as_ref()
                    .is_none_or(|c| c.as_str() == &**clientid)
                && filter.qos.is_none_or(|q| q == record.qos)
        })
        .collect();
    Ok(Json(paging.apply(list, |(topic, clientid, record)| {
        SubscriptionView::new(clientid.to_string(), topic, &record)
    })))
}

/// One distinct subscribed filter.
#[derive(Debug, Serialize)]
pub struct TopicView {
    pub topic: String,
    /// Sessions subscribed to it.
    pub subscribers: usize,
}

/// `GET /api/v1/topics`: the distinct subscribed filters with their subscriber counts,
/// sorted. Takes `topic`, `match_topic` and `like_topic` as `/subscriptions` does.
pub async fn topics(
    State(state): State<ApiState>,
    ApiQuery(paging): ApiQuery<PageQuery>,
    ApiQuery(filter): ApiQuery<SubscriptionFilter>,
) -> ApiResult<Json<Paged<TopicView>>> {
    let paging = paging.check()?;
    filter.check()?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (topic, _, _) in state.broker.subscriptions() {
        if filter.accepts_filter(&topic) {
            *counts.entry(topic).or_default() += 1;
        }
    }
    let list: Vec<(String, usize)> = counts.into_iter().collect();
    Ok(Json(paging.apply(list, |(topic, subscribers)| TopicView {
        topic,
        subscribers,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_filters_match_by_their_inner_filter() {
        assert!(filter_matches("$share/g/a/+", "a/b"));
        assert!(filter_matches("a/#", "a/b"));
        assert!(!filter_matches("#", "$SYS/broker/uptime"));
        assert!(!filter_matches("$share/g/b", "a"));
    }
}
