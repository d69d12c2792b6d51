#!/usr/bin/env python3
"""An MQTT 5.0 client (paho-mqtt 2.x) driven by JSON steps, for the bridge's end-to-end tests.

    v5_client.py --port P [--host H] [--ws] [--path /mqtt] [--id ID] [--no-clean-start]
                 [--keepalive S] [--connect-props JSON] [--will JSON] STEP...

Every event is printed as one JSON line (flushed at once):
    {"ev":"connack","rc":0,"session_present":false,"props":{...}}
    {"ev":"suback","codes":[0,1,143]}
    {"ev":"unsuback","codes":[0,17]}
    {"ev":"msg","topic":"a/b","raw_topic":"","payload":"x","qos":1,"retain":false,
     "dup":false,"props":{...}}
    {"ev":"published","mid":1,"rc":0}
    {"ev":"disconnected","rc":142,"from_server":true,"props":{...}}
        the connection ended without our DISCONNECT ("from_server": a DISCONNECT came)
    {"ev":"mark","name":"..."}
    {"ev":"done"}

"props" are paho's Properties.json(): names without spaces ("UserProperty" is a list of
[key, value] pairs in wire order, "CorrelationData" is hex). Incoming topic aliases are
resolved here, as an application would (paho 2.2 does not): "topic" is the resolved topic,
"raw_topic" the one on the wire.

Steps (one JSON object each), run in order after a successful CONNACK:
    {"sub":[{"filter":"a/#","qos":1,"nl":false,"rap":false,"rh":0}], "id":7}
    {"unsub":["a/#"]}
    {"pub":"topic","payload":"x","qos":1,"retain":false,"props":{...}}
        waits until the QoS flow completes (PUBACK / PUBCOMP), prints "published"
    {"recv":N,"timeout":S}      waits until N messages in all have been received
    {"listen":S}                keeps the connection serviced for S seconds
    {"expect_disconnect":S}     waits up to S seconds for the server to end the connection
    {"wait_file":"path","timeout":S}   waits until the file exists
    {"mark":"name"}
    {"disconnect":0,"props":{...}}     DISCONNECT with that reason code; ends the steps
    {"abort":true}              exits at once without DISCONNECT (the OS closes the socket)
Without a final disconnect/abort step the client disconnects normally (reason 0).

Properties given in JSON use paho's names: {"UserProperty":[["k","v"]],"ContentType":"t",
"CorrelationData":"<hex>","MessageExpiryInterval":5,...}.

Exit codes: 0 success; 2 connection failed or refused; 3 timeout; 4 connection lost
unexpectedly.
"""

import argparse
import json
import os
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions


def out(obj):
    print(json.dumps(obj, sort_keys=True), flush=True)


def props_json(props):
    if props is None:
        return {}
    data = props.json()
    for k, v in list(data.items()):
        if isinstance(v, (bytes, bytearray)):
            data[k] = v.hex()
        elif isinstance(v, list):
            data[k] = [list(x) if isinstance(x, tuple) else x for x in v]
    return data


def make_props(packet_type, spec):
    if not spec:
        return None
    p = Properties(packet_type)
    for name, value in spec.items():
        if name in ("CorrelationData", "AuthenticationData"):
            value = bytes.fromhex(value)
        elif name == "UserProperty":
            value = [tuple(x) for x in value]
        setattr(p, name, value)
    return p


class State:
    def __init__(self):
        self.connack = None
        self.subacks = {}
        self.unsubacks = {}
        self.published = {}
        self.messages = 0
        self.aliases = {}
        self.server_disconnect = None
        self.lost = False
        self.closing = False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ws", action="store_true")
    ap.add_argument("--path", default="/mqtt")
    ap.add_argument("--id", default="")
    ap.add_argument("--no-clean-start", action="store_true")
    ap.add_argument("--keepalive", type=int, default=60)
    ap.add_argument("--connect-props", default="")
    ap.add_argument("--will", default="")
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("steps", nargs="*")
    args = ap.parse_args()
    steps = [json.loads(s) for s in args.steps]

    st = State()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=args.id,
        protocol=mqtt.MQTTv5,
        transport="websockets" if args.ws else "tcp",
    )
    if args.ws:
        client.ws_set_options(path=args.path)
    if args.will:
        w = json.loads(args.will)
        client.will_set(
            w["topic"],
            w.get("payload", "").encode(),
            qos=w.get("qos", 0),
            retain=w.get("retain", False),
            properties=make_props(PacketTypes.WILLMESSAGE, w.get("props")),
        )

    def on_connect(c, userdata, flags, reason_code, properties):
        st.connack = reason_code.value
        out(
            {
                "ev": "connack",
                "rc": reason_code.value,
                "session_present": bool(flags.session_present),
                "props": props_json(properties),
            }
        )

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        st.subacks[mid] = [rc.value for rc in reason_codes]

    def on_unsubscribe(c, userdata, mid, reason_codes, properties):
        st.unsubacks[mid] = [rc.value for rc in reason_codes]

    def on_publish(c, userdata, mid, reason_code, properties):
        st.published[mid] = reason_code.value

    def on_message(c, userdata, msg):
        props = props_json(getattr(msg, "properties", None))
        raw = msg.topic
        topic = raw
        alias = props.get("TopicAlias")
        if alias is not None:
            if raw:
                st.aliases[alias] = raw
            else:
                topic = st.aliases.get(alias, "<unknown alias %d>" % alias)
        st.messages += 1
        out(
            {
                "ev": "msg",
                "topic": topic,
                "raw_topic": raw,
                "payload": msg.payload.decode("utf-8", "replace"),
                "len": len(msg.payload),
                "qos": msg.qos,
                "retain": bool(msg.retain),
                "dup": bool(msg.dup),
                "props": props,
            }
        )

    def on_disconnect(c, userdata, flags, reason_code, properties):
        if st.closing:
            return
        st.server_disconnect = reason_code.value
        out(
            {
                "ev": "disconnected",
                "rc": reason_code.value,
                "from_server": bool(flags.is_disconnect_packet_from_server),
                "props": props_json(properties),
            }
        )

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_unsubscribe = on_unsubscribe
    client.on_publish = on_publish
    client.on_message = on_message
    client.on_disconnect = on_disconnect

    def pump(until, timeout, what):
        """Services the connection until `until()` or the timeout; exits on failure."""
        deadline = time.monotonic() + timeout
        while True:
            if until():
                return
            if st.server_disconnect is not None or st.lost:
                out({"ev": "error", "what": f"connection ended while waiting for {what}"})
                sys.exit(4)
            if time.monotonic() > deadline:
                out({"ev": "error", "what": f"timeout waiting for {what}"})
                sys.exit(3)
            rc = client.loop(timeout=0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS and st.server_disconnect is None:
                st.lost = True

    try:
        client.connect(
            args.host,
            args.port,
            keepalive=args.keepalive,
            clean_start=not args.no_clean_start,
            properties=make_props(PacketTypes.CONNECT, json.loads(args.connect_props or "{}")),
        )
    except Exception as e:  # noqa: BLE001 - report any connection error
        out({"ev": "error", "what": f"connect: {e!r}"})
        sys.exit(2)

    deadline = time.monotonic() + args.timeout
    while st.connack is None and st.server_disconnect is None and not st.lost:
        if time.monotonic() > deadline:
            out({"ev": "error", "what": "no CONNACK"})
            sys.exit(2)
        if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS and st.connack is None:
            st.lost = True
    if st.connack is None or st.connack >= 0x80:
        sys.exit(2)

    ended = False
    for step in steps:
        if "sub" in step:
            subs = [
                (
                    s["filter"],
                    SubscribeOptions(
                        qos=s.get("qos", 0),
                        noLocal=s.get("nl", False),
                        retainAsPublished=s.get("rap", False),
                        retainHandling=s.get("rh", 0),
                    ),
                )
                for s in step["sub"]
            ]
            props = None
            if "id" in step:
                props = Properties(PacketTypes.SUBSCRIBE)
                props.SubscriptionIdentifier = step["id"]
            rc, mid = client.subscribe(subs, properties=props)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                out({"ev": "error", "what": f"subscribe: {rc}"})
                sys.exit(4)
            pump(lambda: mid in st.subacks, args.timeout, "SUBACK")
            out({"ev": "suback", "codes": st.subacks[mid]})
        elif "unsub" in step:
            rc, mid = client.unsubscribe(step["unsub"])
            pump(lambda: mid in st.unsubacks, args.timeout, "UNSUBACK")
            out({"ev": "unsuback", "codes": st.unsubacks[mid]})
        elif "pub" in step:
            info = client.publish(
                step["pub"],
                step.get("payload", "").encode(),
                qos=step.get("qos", 0),
                retain=step.get("retain", False),
                properties=make_props(PacketTypes.PUBLISH, step.get("props")),
            )
            mid = info.mid
            if step.get("qos", 0) == 0:
                pump(info.is_published, args.timeout, "QoS 0 publish written")
                rc = 0
            else:
                pump(lambda: mid in st.published, args.timeout, "PUBACK/PUBCOMP")
                rc = st.published[mid]
            out({"ev": "published", "mid": mid, "rc": rc})
        elif "recv" in step:
            n = step["recv"]
            pump(lambda: st.messages >= n, step.get("timeout", args.timeout), f"{n} messages")
        elif "listen" in step:
            end = time.monotonic() + step["listen"]
            pump(lambda: time.monotonic() >= end, step["listen"] + 5, "listen")
        elif "expect_disconnect" in step:
            end = time.monotonic() + step["expect_disconnect"]
            while st.server_disconnect is None and not st.lost:
                if time.monotonic() > end:
                    out({"ev": "error", "what": "server did not end the connection"})
                    sys.exit(3)
                client.loop(timeout=0.05)
            if st.server_disconnect is None:
                out({"ev": "closed"})
            ended = True
            break
        elif "wait_file" in step:
            path = step["wait_file"]
            pump(lambda: os.path.exists(path), step.get("timeout", args.timeout), path)
        elif "mark" in step:
            out({"ev": "mark", "name": step["mark"]})
        elif "disconnect" in step:
            st.closing = True
            client.disconnect(
                reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=step["disconnect"]),
                properties=make_props(PacketTypes.DISCONNECT, step.get("props")),
            )
            for _ in range(40):
                if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                    break
            ended = True
            break
        elif "abort" in step:
            out({"ev": "done"})
            sys.stdout.flush()
            os._exit(0)
        else:
            out({"ev": "error", "what": f"unknown step {step}"})
            sys.exit(5)
    if not ended:
        st.closing = True
        client.disconnect()
        for _ in range(40):
            if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
    out({"ev": "done"})


if __name__ == "__main__":
    main()
