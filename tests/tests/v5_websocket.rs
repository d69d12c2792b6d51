//! MQTT 5.0 over WebSocket (`ws://.../mqtt`) with python paho: CONNACK properties, publish /
//! subscribe round trips with user properties, and WebSocket <-> TCP.

use serde_json::Value;
use tests::v5::paho::{self, json, Paho};
use tests::{unique, Bridge};

fn users() -> Value {
    json!([["origin", "websocket"], ["n", "1"], ["origin", "again"]])
}

/// One paho v5 client over WebSocket subscribes and publishes to itself at QoS 1: CONNACK
/// carries the 5.0 properties, the message comes back with its user properties in order and
/// its content type.
#[test]
fn paho_v5_over_websocket_round_trip_with_user_properties() {
    let b = Bridge::start();
    let events = Paho::ws(b.ws_port())
        .id(&unique("ws5"))
        .step(json!({"sub": [{"filter": "ws5/t", "qos": 1}]}))
        .step(json!({"pub": "ws5/t", "payload": "over ws", "qos": 1,
                     "props": {"UserProperty": users(), "ContentType": "text/plain"}}))
        .step(json!({"recv": 1}))
        .run();
    let connack = paho::event(&events, "connack");
    assert_eq!(connack["props"]["ReceiveMaximum"], 1024, "{connack}");
    assert_eq!(connack["props"]["TopicAliasMaximum"], 64, "{connack}");
    assert_eq!(paho::event(&events, "suback")["codes"], json!([1]));
    assert_eq!(paho::event(&events, "published")["rc"], 0);
    let msgs = paho::messages(&events);
    assert_eq!(msgs.len(), 1, "{events:#?}");
    assert_eq!(msgs[0]["topic"], "ws5/t");
    assert_eq!(msgs[0]["payload"], "over ws");
    assert_eq!(msgs[0]["qos"], 1);
    assert_eq!(msgs[0]["props"]["UserProperty"], users());
    assert_eq!(msgs[0]["props"]["ContentType"], "text/plain");
}

/// paho v5 over WebSocket to paho v5 over TCP and back, QoS 2, user properties kept.
#[test]
fn paho_v5_websocket_and_tcp_exchange_messages() {
    let b = Bridge::start();
    for (sub_ws, pub_ws) in [(false, true), (true, false)] {
        let client = |ws: bool| {
            if ws {
                Paho::ws(b.ws_port())
            } else {
                Paho::tcp(b.tcp_port())
            }
        };
        let topic = format!("mix/{sub_ws}");
        let mut sub = client(sub_ws)
            .step(json!({"sub": [{"filter": topic, "qos": 2}]}))
            .step(json!({"recv": 1}))
            .spawn();
        sub.wait_ev("suback", paho::RUN);
        client(pub_ws)
            .step(json!({"pub": topic, "payload": "crossing", "qos": 2,
                         "props": {"UserProperty": users()}}))
            .run();
        let events = sub.finish_ok();
        let msgs = paho::messages(&events);
        assert_eq!(msgs.len(), 1, "{events:#?}");
        assert_eq!(msgs[0]["payload"], "crossing");
        assert_eq!(msgs[0]["qos"], 2);
        assert_eq!(
            msgs[0]["props"]["UserProperty"],
            users(),
            "ws subscriber: {sub_ws}"
        );
    }
}
