//! The client state machine, driven natively: a scripted broker decodes what the client
//! sends and answers with hand-picked packets.

use bytes::{Bytes, BytesMut};
use client_wasm::{Client, Event, Options, State};
use protocol::{
    encode, reason, Ack, ConnAck, Decoder, Disconnect, Packet, Properties, ProtocolVersion,
    Publish, QoS, SubAck, UnsubAck,
};

/// The broker side of the conversation.
struct Broker {
    decoder: Decoder,
}

impl Broker {
    fn new() -> Broker {
        Broker {
            decoder: Decoder::new(1 << 20),
        }
    }

    /// Everything the client wants to send, decoded.
    fn receive(&mut self, client: &mut Client, now: u64) -> Vec<Packet> {
        let mut packets = Vec::new();
        let mut buf = BytesMut::new();
        while let Some(bytes) = client.poll_transmit(now) {
            buf.extend_from_slice(&bytes);
        }
        while let Some(packet) = self.decoder.decode(&mut buf).expect("client sent garbage") {
            packets.push(packet);
        }
        packets
    }
}

fn send(client: &mut Client, now: u64, packets: &[Packet]) {
    let mut buf = BytesMut::new();
    for packet in packets {
        encode(packet, ProtocolVersion::V3_1_1, &mut buf).unwrap();
    }
    client.handle_input(now, &buf);
}

fn events(client: &mut Client) -> Vec<Event> {
    std::iter::from_fn(|| client.poll_event()).collect()
}

fn connack(session_present: bool) -> Packet {
    Packet::ConnAck(ConnAck::new(reason::SUCCESS, session_present))
}

fn pubrel(pkid: u16) -> Packet {
    Packet::PubRel(Ack::new(pkid))
}

fn options(clean: bool) -> Options {
    let mut options = Options::new("c1");
    options.clean_session = clean;
    options.keep_alive = 10;
    options
}

/// Opens the transport and completes the handshake.
fn connected(options: Options) -> (Client, Broker) {
    let mut client = Client::new(options);
    let mut broker = Broker::new();
    client.connect();
    assert!(client.poll_open(0));
    client.handle_transport_open(0);
    let sent = broker.receive(&mut client, 0);
    assert!(matches!(&sent[..], [Packet::Connect(c)] if c.client_id == "c1"));
    send(&mut client, 1, &[connack(false)]);
    assert_eq!(
        events(&mut client),
        vec![Event::Connected {
            session_present: false
        }]
    );
    (client, broker)
}

/// Loses the connection and reconnects, answering CONNACK with `session_present`.
fn reconnect(client: &mut Client, broker: &mut Broker, now: u64, session_present: bool) {
    client.handle_transport_closed(now, "socket closed");
    let lost = events(client);
    assert!(
        matches!(
            &lost[..],
            [Event::ConnectionLost {
                reconnect_in: Some(_),
                ..
            }]
        ),
        "{lost:?}"
    );
    let State::WaitingToReconnect { at } = client.state() else {
        panic!("not waiting to reconnect: {:?}", client.state());
    };
    assert!(!client.poll_open(at - 1));
    assert!(client.poll_open(at));
    client.handle_transport_open(at);
    *broker = Broker::new();
    let sent = broker.receive(client, at);
    assert!(matches!(sent[0], Packet::Connect(_)));
    send(client, at, &[connack(session_present)]);
}

#[test]
fn connect_sends_the_options() {
    let mut options = Options::new("dev-7");
    options.keep_alive = 33;
    options.clean_session = false;
    options.username = Some("user".into());
    options.password = Some(Bytes::from_static(b"secret"));
    let mut client = Client::new(options);
    client.connect();
    assert!(client.poll_open(0));
    assert!(!client.poll_open(0), "open is requested once");
    client.handle_transport_open(0);
    let sent = Broker::new().receive(&mut client, 0);
    let [Packet::Connect(connect)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(connect.client_id, "dev-7");
    assert_eq!(connect.keep_alive, 33);
    assert!(!connect.clean_session);
    assert_eq!(connect.username.as_deref(), Some("user"));
    assert_eq!(connect.password.as_deref(), Some(&b"secret"[..]));
}

#[test]
fn refused_connection_stays_closed() {
    let mut client = Client::new(options(true));
    client.connect();
    client.poll_open(0);
    client.handle_transport_open(0);
    send(
        &mut client,
        1,
        &[Packet::ConnAck(ConnAck::new(reason::NOT_AUTHORIZED, false))],
    );
    assert_eq!(
        events(&mut client),
        vec![Event::Refused {
            code: reason::NOT_AUTHORIZED
        }]
    );
    assert!(client.poll_close());
    client.handle_transport_closed(2, "closed");
    assert_eq!(client.state(), State::Closed);
    assert_eq!(client.next_timeout(), None);
}

#[test]
fn keep_alive_pings_and_gives_up_on_a_silent_broker() {
    let (mut client, mut broker) = connected(options(true));
    assert_eq!(client.next_timeout(), Some(10_000));
    client.handle_timeout(9_999);
    assert!(broker.receive(&mut client, 9_999).is_empty());
    client.handle_timeout(10_000);
    assert_eq!(broker.receive(&mut client, 10_000), vec![Packet::PingReq]);
    // A PINGRESP clears it; the next ping is due a keep-alive after the last send.
    send(&mut client, 10_100, &[Packet::PingResp]);
    assert_eq!(client.next_timeout(), Some(20_000));
    client.handle_timeout(20_000);
    assert_eq!(broker.receive(&mut client, 20_000), vec![Packet::PingReq]);
    // No PINGRESP within the response timeout: the connection is given up.
    client.handle_timeout(30_000);
    assert!(client.poll_close());
    client.handle_transport_closed(30_001, "closed by client");
    let lost = events(&mut client);
    assert!(
        matches!(&lost[..], [Event::ConnectionLost { reason, reconnect_in: Some(1_000) }] if reason.contains("PINGRESP")),
        "{lost:?}"
    );
}

#[test]
fn no_connack_in_time_gives_up() {
    let mut client = Client::new(options(true));
    client.connect();
    client.poll_open(0);
    client.handle_transport_open(0);
    client.handle_timeout(10_000);
    assert!(client.poll_close());
}

#[test]
fn reconnect_backs_off_exponentially_up_to_the_cap() {
    let mut options = options(true);
    options.reconnect_min_ms = 1_000;
    options.reconnect_max_ms = 5_000;
    let mut client = Client::new(options);
    client.connect();
    let mut now = 0;
    let mut delays = Vec::new();
    for _ in 0..5 {
        assert!(client.poll_open(now));
        client.handle_transport_closed(now, "refused");
        let Some(Event::ConnectionLost {
            reconnect_in: Some(delay),
            ..
        }) = client.poll_event()
        else {
            panic!("no reconnect scheduled");
        };
        delays.push(delay);
        now += delay;
    }
    assert_eq!(delays, vec![1_000, 2_000, 4_000, 5_000, 5_000]);
}

#[test]
fn qos1_publish_completes_on_puback() {
    let (mut client, mut broker) = connected(options(true));
    let pkid = client
        .publish("a/b", Bytes::from_static(b"x"), QoS::AtLeastOnce, false)
        .unwrap()
        .unwrap();
    let sent = broker.receive(&mut client, 2);
    assert!(
        matches!(&sent[..], [Packet::Publish(p)] if p.pkid == pkid && p.qos == QoS::AtLeastOnce)
    );
    send(&mut client, 3, &[Packet::PubAck(Ack::new(pkid))]);
    assert_eq!(
        events(&mut client),
        vec![Event::PublishComplete { pkid, reason: 0 }]
    );
    assert_eq!(client.in_flight(), 0);
}

#[test]
fn qos2_publish_flow() {
    let (mut client, mut broker) = connected(options(true));
    let pkid = client
        .publish("a", Bytes::from_static(b"x"), QoS::ExactlyOnce, true)
        .unwrap()
        .unwrap();
    broker.receive(&mut client, 2);
    send(&mut client, 3, &[Packet::PubRec(Ack::new(pkid))]);
    assert_eq!(broker.receive(&mut client, 3), vec![pubrel(pkid)]);
    assert!(events(&mut client).is_empty());
    send(&mut client, 4, &[Packet::PubComp(Ack::new(pkid))]);
    assert_eq!(
        events(&mut client),
        vec![Event::PublishComplete { pkid, reason: 0 }]
    );
}

#[test]
fn qos2_publish_survives_two_reconnects_with_a_persistent_session() {
    let (mut client, mut broker) = connected(options(false));
    let pkid = client
        .publish("a", Bytes::from_static(b"m"), QoS::ExactlyOnce, false)
        .unwrap()
        .unwrap();
    broker.receive(&mut client, 2);

    // Lost before PUBREC: the PUBLISH is re-sent with DUP and the same identifier.
    reconnect(&mut client, &mut broker, 3, true);
    let sent = broker.receive(&mut client, 5_000);
    assert!(
        matches!(&sent[..], [Packet::Publish(p)] if p.pkid == pkid && p.dup && &p.payload[..] == b"m"),
        "{sent:?}"
    );
    send(&mut client, 5_001, &[Packet::PubRec(Ack::new(pkid))]);
    assert_eq!(broker.receive(&mut client, 5_001), vec![pubrel(pkid)]);

    // Lost before PUBCOMP: the PUBREL is re-sent, not the PUBLISH.
    events(&mut client);
    reconnect(&mut client, &mut broker, 5_002, true);
    assert_eq!(broker.receive(&mut client, 10_000), vec![pubrel(pkid)]);
    send(&mut client, 10_001, &[Packet::PubComp(Ack::new(pkid))]);
    let done = events(&mut client);
    assert!(
        done.contains(&Event::PublishComplete { pkid, reason: 0 }),
        "{done:?}"
    );
}

#[test]
fn clean_session_reconnect_abandons_in_flight_publishes() {
    let (mut client, mut broker) = connected(options(true));
    let pkid = client
        .publish("a", Bytes::from_static(b"m"), QoS::AtLeastOnce, false)
        .unwrap()
        .unwrap();
    broker.receive(&mut client, 2);
    reconnect(&mut client, &mut broker, 3, false);
    assert!(broker.receive(&mut client, 5_000).is_empty());
    let after = events(&mut client);
    assert!(
        after.contains(&Event::PublishAbandoned { pkid }),
        "{after:?}"
    );
}

#[test]
fn incoming_qos2_is_delivered_once() {
    let (mut client, mut broker) = connected(options(true));
    let publish = Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: "t".into(),
        pkid: 9,
        payload: Bytes::from_static(b"once"),
        properties: Properties::default(),
    };
    send(&mut client, 2, &[Packet::Publish(publish.clone())]);
    assert_eq!(
        broker.receive(&mut client, 2),
        vec![Packet::PubRec(Ack::new(9))]
    );
    // The broker re-sends it (it lost our PUBREC): acknowledged again, not delivered again.
    let duplicate = Publish {
        dup: true,
        ..publish.clone()
    };
    send(&mut client, 3, &[Packet::Publish(duplicate)]);
    assert_eq!(
        broker.receive(&mut client, 3),
        vec![Packet::PubRec(Ack::new(9))]
    );
    send(&mut client, 4, &[pubrel(9)]);
    assert_eq!(
        broker.receive(&mut client, 4),
        vec![Packet::PubComp(Ack::new(9))]
    );
    assert_eq!(events(&mut client), vec![Event::Message(Box::new(publish))]);
}

#[test]
fn incoming_qos1_is_acknowledged() {
    let (mut client, mut broker) = connected(options(true));
    send(
        &mut client,
        2,
        &[Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "t".into(),
            pkid: 4,
            payload: Bytes::from_static(b"r"),
            properties: Properties::default(),
        })],
    );
    assert_eq!(
        broker.receive(&mut client, 2),
        vec![Packet::PubAck(Ack::new(4))]
    );
    assert!(matches!(&events(&mut client)[..], [Event::Message(p)] if p.retain));
}

#[test]
fn subscriptions_are_restored_after_a_reconnect_without_session() {
    let (mut client, mut broker) = connected(options(true));
    let pkid = client
        .subscribe(&[("a/+", QoS::AtLeastOnce), ("b/#", QoS::AtMostOnce)])
        .unwrap();
    let sent = broker.receive(&mut client, 2);
    assert!(matches!(&sent[..], [Packet::Subscribe(s)] if s.pkid == pkid && s.filters.len() == 2));
    send(
        &mut client,
        3,
        &[Packet::SubAck(SubAck {
            pkid,
            return_codes: vec![1, reason::UNSPECIFIED_ERROR],
            properties: Properties::default(),
        })],
    );
    let subscribed = events(&mut client);
    assert!(matches!(&subscribed[..], [Event::Subscribed { results, .. }] if results.len() == 2));
    // The refused filter is forgotten; the granted one comes back after a reconnect.
    reconnect(&mut client, &mut broker, 4, false);
    let sent = broker.receive(&mut client, 5_000);
    let [Packet::Subscribe(resubscribe)] = &sent[..] else {
        panic!("{sent:?}")
    };
    let filters: Vec<&str> = resubscribe
        .filters
        .iter()
        .map(|f| f.filter.as_str())
        .collect();
    assert_eq!(filters, vec!["a/+"]);
}

#[test]
fn unsubscribe_is_acknowledged_and_forgotten() {
    let (mut client, mut broker) = connected(options(true));
    client.subscribe(&[("x", QoS::AtMostOnce)]).unwrap();
    broker.receive(&mut client, 2);
    let pkid = client.unsubscribe(&["x"]).unwrap();
    assert!(
        matches!(&broker.receive(&mut client, 3)[..], [Packet::Unsubscribe(u)] if u.pkid == pkid)
    );
    send(
        &mut client,
        4,
        &[Packet::UnsubAck(UnsubAck {
            pkid,
            reasons: vec![],
            properties: Properties::default(),
        })],
    );
    assert!(events(&mut client).contains(&Event::Unsubscribed {
        pkid,
        filters: vec!["x".into()]
    }));
    assert_eq!(client.subscriptions().count(), 0);
}

#[test]
fn invalid_topics_are_refused_with_the_reason() {
    let (mut client, _) = connected(options(true));
    let err = client.subscribe(&[("a/#/b", QoS::AtMostOnce)]).unwrap_err();
    assert!(err.to_string().contains("a/#/b"), "{err}");
    assert!(client
        .publish("a/+", Bytes::new(), QoS::AtMostOnce, false)
        .is_err());
}

#[test]
fn requests_need_a_connection() {
    let mut client = Client::new(options(true));
    assert!(client
        .publish("a", Bytes::new(), QoS::AtMostOnce, false)
        .is_err());
    assert!(client.subscribe(&[("a", QoS::AtMostOnce)]).is_err());
}

#[test]
fn disconnect_sends_disconnect_and_closes_without_reconnect() {
    let (mut client, mut broker) = connected(options(true));
    client.disconnect();
    assert_eq!(
        broker.receive(&mut client, 2),
        vec![Packet::Disconnect(Disconnect::new(0))]
    );
    assert!(client.poll_close());
    client.handle_transport_closed(3, "closed");
    assert_eq!(events(&mut client), vec![Event::Closed]);
    assert_eq!(client.state(), State::Closed);
    assert!(!client.poll_open(100_000));
}

#[test]
fn garbage_from_the_broker_drops_the_connection() {
    let (mut client, _) = connected(options(true));
    client.handle_input(2, &[0xf0, 0x00]);
    assert!(client.poll_close());
    client.handle_transport_closed(3, "closed");
    assert!(matches!(
        &events(&mut client)[..],
        [Event::ConnectionLost { reason, .. }] if reason.contains("malformed")
    ));
}

// ---- MQTT 5.0 ----

fn v5_options() -> Options {
    let mut options = options(true);
    options.version = ProtocolVersion::V5;
    options.session_expiry = 300;
    options.user_properties = vec![("app".into(), "test".into())];
    options
}

/// Opens a 5.0 connection; the CONNACK carries `properties`.
fn connected_v5(options: Options, properties: Properties) -> (Client, Broker) {
    let mut client = Client::new(options);
    let mut broker = Broker::new();
    client.connect();
    assert!(client.poll_open(0));
    client.handle_transport_open(0);
    let sent = broker.receive(&mut client, 0);
    let [Packet::Connect(connect)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(connect.version, ProtocolVersion::V5);
    let connack = Packet::ConnAck(ConnAck {
        session_present: false,
        code: reason::SUCCESS,
        properties,
    });
    let mut buf = BytesMut::new();
    encode(&connack, ProtocolVersion::V5, &mut buf).unwrap();
    client.handle_input(1, &buf);
    assert!(matches!(
        &events(&mut client)[..],
        [Event::Connected { .. }]
    ));
    (client, broker)
}

fn send_v5(client: &mut Client, now: u64, packets: &[Packet]) {
    let mut buf = BytesMut::new();
    for packet in packets {
        encode(packet, ProtocolVersion::V5, &mut buf).unwrap();
    }
    client.handle_input(now, &buf);
}

#[test]
fn v5_connect_carries_properties_and_takes_the_assigned_id() {
    let mut options = v5_options();
    options.client_id = String::new();
    let mut client = Client::new(options);
    client.connect();
    client.poll_open(0);
    client.handle_transport_open(0);
    let sent = Broker::new().receive(&mut client, 0);
    let [Packet::Connect(connect)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(connect.properties.session_expiry_interval, Some(300));
    assert_eq!(connect.properties.topic_alias_maximum, Some(16));
    assert_eq!(
        connect.properties.user_properties,
        vec![("app".to_owned(), "test".to_owned())]
    );
    send_v5(
        &mut client,
        1,
        &[Packet::ConnAck(ConnAck {
            session_present: false,
            code: reason::SUCCESS,
            properties: Properties {
                assigned_client_identifier: Some("auto-7".into()),
                server_keep_alive: Some(5),
                ..Properties::default()
            },
        })],
    );
    assert_eq!(client.client_id(), "auto-7");
    // The broker's keep-alive wins.
    assert_eq!(client.next_timeout(), Some(5_000));
}

#[test]
fn v5_flow_control_holds_publishes_beyond_the_receive_maximum() {
    let (mut client, mut broker) = connected_v5(
        v5_options(),
        Properties {
            receive_maximum: Some(1),
            ..Properties::default()
        },
    );
    let first = client
        .publish("t", Bytes::from_static(b"1"), QoS::AtLeastOnce, false)
        .unwrap()
        .unwrap();
    let second = client
        .publish("t", Bytes::from_static(b"2"), QoS::AtLeastOnce, false)
        .unwrap()
        .unwrap();
    let sent = broker.receive(&mut client, 2);
    assert!(
        matches!(&sent[..], [Packet::Publish(p)] if p.pkid == first),
        "{sent:?}"
    );
    send_v5(
        &mut client,
        3,
        &[Packet::PubAck(Ack::with_reason(
            first,
            reason::NO_MATCHING_SUBSCRIBERS,
        ))],
    );
    let sent = broker.receive(&mut client, 3);
    assert!(
        matches!(&sent[..], [Packet::Publish(p)] if p.pkid == second),
        "{sent:?}"
    );
    assert_eq!(
        events(&mut client),
        vec![Event::PublishComplete {
            pkid: first,
            reason: reason::NO_MATCHING_SUBSCRIBERS
        }]
    );
}

#[test]
fn v5_publish_over_the_broker_maximum_is_refused() {
    let (mut client, _) = connected_v5(
        v5_options(),
        Properties {
            maximum_packet_size: Some(50),
            ..Properties::default()
        },
    );
    let err = client
        .publish("t", Bytes::from(vec![0u8; 100]), QoS::AtMostOnce, false)
        .unwrap_err();
    assert!(
        matches!(err, client_wasm::ClientError::TooLarge(_, 50)),
        "{err}"
    );
}

#[test]
fn v5_topic_aliases_from_the_broker_are_resolved() {
    let (mut client, _) = connected_v5(v5_options(), Properties::default());
    let with_alias = |topic: &str, payload: &'static [u8]| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.into(),
            pkid: 0,
            payload: Bytes::from_static(payload),
            properties: Properties {
                topic_alias: Some(3),
                ..Properties::default()
            },
        })
    };
    send_v5(
        &mut client,
        2,
        &[with_alias("sensors/1", b"a"), with_alias("", b"b")],
    );
    let topics: Vec<String> = events(&mut client)
        .into_iter()
        .map(|e| match e {
            Event::Message(p) => {
                assert_eq!(p.properties.topic_alias, None);
                p.topic
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(topics, vec!["sensors/1", "sensors/1"]);
}

#[test]
fn v5_undefined_alias_drops_the_connection() {
    let (mut client, _) = connected_v5(v5_options(), Properties::default());
    send_v5(
        &mut client,
        2,
        &[Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: String::new(),
            pkid: 0,
            payload: Bytes::new(),
            properties: Properties {
                topic_alias: Some(9),
                ..Properties::default()
            },
        })],
    );
    assert!(client.poll_close());
}

#[test]
fn v5_session_takeover_is_reported_and_not_fought() {
    let (mut client, _) = connected_v5(v5_options(), Properties::default());
    send_v5(
        &mut client,
        2,
        &[Packet::Disconnect(Disconnect::new(
            reason::SESSION_TAKEN_OVER,
        ))],
    );
    assert!(client.poll_close());
    client.handle_transport_closed(3, "closed");
    let lost = events(&mut client);
    assert!(
        matches!(&lost[..], [Event::ConnectionLost { reason, reconnect_in: None }] if reason.contains("session taken over")),
        "{lost:?}"
    );
}

#[test]
fn v5_refusing_pubrec_ends_the_exchange() {
    let (mut client, mut broker) = connected_v5(v5_options(), Properties::default());
    let pkid = client
        .publish("t", Bytes::from_static(b"x"), QoS::ExactlyOnce, false)
        .unwrap()
        .unwrap();
    broker.receive(&mut client, 2);
    send_v5(
        &mut client,
        3,
        &[Packet::PubRec(Ack::with_reason(
            pkid,
            reason::NOT_AUTHORIZED,
        ))],
    );
    assert!(
        broker.receive(&mut client, 3).is_empty(),
        "no PUBREL after a refusal"
    );
    assert_eq!(
        events(&mut client),
        vec![Event::PublishComplete {
            pkid,
            reason: reason::NOT_AUTHORIZED
        }]
    );
}
