//! The overview: the broker's headline counters (`/stats`), a chart of messages in and
//! out per second over the last ten minutes (`/metrics/history`), both refreshed every
//! 2 s, and the broker's version, uptime and listeners (`/broker`).

use std::rc::Rc;

use yew::prelude::*;

use super::api::{Broker, History, Stats};
use super::chart::{window_for, LineChart, Series};
use super::format::{bytes, duration, group, rate};
use super::live::use_get;
use super::ui::{local_time, offset_minutes, refresh_error};
use super::View;
use crate::platform;

/// The chart's longest time span: what the broker keeps.
const WINDOW_MS: i64 = 10 * 60 * 1000;

#[function_component(Overview)]
pub fn overview() -> Html {
    let (stats, _) = use_get::<Stats>(Some("/stats".into()), true);
    let (history, _) = use_get::<History>(Some("/metrics/history".into()), true);
    let (broker, _) = use_get::<Broker>(Some("/broker".into()), false);

    // The chart's data, rebuilt only when a new history arrived.
    let chart = use_memo(history.data.clone(), |data| {
        let points = data.as_ref().map(|h| h.data.as_slice()).unwrap_or_default();
        (
            Rc::new(points.iter().map(|p| p.t).collect::<Vec<i64>>()),
            Rc::new(points.iter().map(|p| p.received_rate).collect::<Vec<f64>>()),
            Rc::new(points.iter().map(|p| p.sent_rate).collect::<Vec<f64>>()),
        )
    });
    let (times, received, sent) = (*chart).clone();
    // A young broker's few minutes fill the chart; then it shows the last ten.
    let window = window_for(
        times.first().copied().unwrap_or(0),
        times.last().copied().unwrap_or(0),
        WINDOW_MS,
    );
    let span = match window / 1000 {
        s if s < 60 => format!("last {s} seconds"),
        60 => "last minute".to_owned(),
        s => format!("last {} minutes", s / 60),
    };
    let last = |values: &[f64]| values.last().copied().unwrap_or(0.0);

    let s = stats.data.as_deref();
    let n = |f: fn(&Stats) -> u64| s.map_or("–".to_owned(), |s| group(f(s)));
    let card = |label: &str, value: String, sub: Html, href: Option<String>, class: &str| {
        let body = html! {
            <>
                <span class="stat-label">{ label }</span>
                <span class="stat-value">{ value }</span>
                <span class="stat-sub">{ sub }</span>
            </>
        };
        match href {
            Some(href) => {
                html! { <a class={classes!("stat", "link", class.to_owned())} {href}>{ body }</a> }
            }
            None => html! { <div class={classes!("stat", class.to_owned())}>{ body }</div> },
        }
    };
    let label = format!(
        "Messages per second over the {span}: now {} received, {} sent",
        rate(last(&received)),
        rate(last(&sent))
    );
    let offset = offset_minutes(platform::now_ms());

    html! {
        <div class="dash-page overview">
            { refresh_error(&stats.error) }
            { for s.into_iter().flat_map(|s| &s.warnings).map(|warning| html! {
                <div class="banner warn config-warning" role="note">
                    <span><b>{ "Configuration: " }</b>{ warning }</span>
                </div>
            }) }
            <section class="stats" aria-label="Counters">
                { card("Connections", n(|s| s.connections),
                    html! { { format!("{} sessions", n(|s| s.sessions)) } },
                    Some(View::Clients.href(&[])), "accent") }
                { card("Subscriptions", n(|s| s.subscriptions),
                    html! { { "across all sessions" } }, Some(View::Subscriptions.href(&[])), "") }
                { card("Topics", n(|s| s.topics),
                    html! { { "distinct filters" } }, Some(View::Topics.href(&[])), "") }
                { card("Retained", n(|s| s.retained),
                    html! { { "messages kept" } }, Some(View::Retained.href(&[])), "") }
                { card("Received", n(|s| s.messages_received),
                    html! { { format!("messages · {}", s.map_or("–".into(), |s| bytes(s.bytes_received))) } },
                    None, "in") }
                { card("Sent", n(|s| s.messages_sent),
                    html! { { format!("messages · {}", s.map_or("–".into(), |s| bytes(s.bytes_sent))) } },
                    None, "out") }
                { card("Dropped", n(|s| s.messages_dropped),
                    html! { { "no subscriber, queue full, expired…" } }, None,
                    if s.is_some_and(|s| s.messages_dropped > 0) { "warn" } else { "" }) }
                { card("Uptime", s.map_or("–".into(), |s| duration(s.uptime)),
                    html! { { broker.data.as_ref().map_or(String::new(), |b| format!("version {}", b.version)) } },
                    None, "") }
            </section>

            <section class="card chart-card" aria-labelledby="rates-title">
                <div class="card-head">
                    <h2 id="rates-title">{ "Messages per second" }</h2>
                    <span class="legend">
                        <span class="chart-key series-in"><i class="swatch" />{ "Received " }
                            <b>{ format!("{}/s", rate(last(&received))) }</b></span>
                        <span class="chart-key series-out"><i class="swatch" />{ "Sent " }
                            <b>{ format!("{}/s", rate(last(&sent))) }</b></span>
                    </span>
                    <span class="muted">{ &span }</span>
                </div>
                { refresh_error(&history.error) }
                <LineChart times={times} window_ms={window} offset_minutes={offset} unit="/s"
                    label={label}
                    series={vec![
                        Series { label: "Received".into(), class: "series-in".into(), values: received },
                        Series { label: "Sent".into(), class: "series-out".into(), values: sent },
                    ]} />
            </section>

            <section class="card broker-card" aria-labelledby="broker-title">
                <h2 id="broker-title">{ "Broker" }</h2>
                { refresh_error(&broker.error) }
                if let Some(b) = broker.data.as_deref() {
                    <dl class="facts">
                        <div><dt>{ "Version" }</dt><dd class="mono">{ &b.version }</dd></div>
                        <div><dt>{ "Uptime" }</dt><dd>{ duration(s.map_or(b.uptime, |s| s.uptime)) }</dd></div>
                        <div><dt>{ "Started" }</dt><dd>{ local_time(&b.started_at) }</dd></div>
                        <div><dt>{ "$SYS topics" }</dt><dd>{
                            if b.sys_interval == 0 { "off".to_owned() } else { format!("every {}", duration(b.sys_interval)) }
                        }</dd></div>
                    </dl>
                    <h3>{ "Listeners" }</h3>
                    <ul class="listeners">
                        { for b.listeners.iter().map(|l| html! {
                            <li>
                                <span class="tag">{ &l.kind }</span>
                                <span class="listener-text">
                                    <span class="mono">{ format!("{}{}", l.address, l.path.as_deref().unwrap_or("")) }</span>
                                    <span class="muted">{ listener_note(&l.kind) }</span>
                                </span>
                            </li>
                        }) }
                    </ul>
                } else if broker.loading() {
                    <p class="muted">{ "Loading…" }</p>
                }
            </section>
        </div>
    }
}

/// What a listener kind is for.
fn listener_note(kind: &str) -> &'static str {
    match kind {
        "tcp" => "MQTT over TCP",
        "ws" => "MQTT over WebSocket",
        "http" => "web app, admin API, Prometheus",
        "tls" | "ssl" => "MQTT over TLS",
        "wss" => "MQTT over secure WebSocket",
        _ => "",
    }
}
