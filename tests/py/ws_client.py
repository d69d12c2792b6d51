#!/usr/bin/env python3
"""MQTT 3.1.1 over WebSocket with paho-mqtt 2.x, for the bridge's end-to-end tests.

    ws_client.py sub --port P --topic T [--qos Q] [--count N] [--timeout S] [--id ID]
        Subscribes; prints "subscribed <granted-qos>" once the SUBACK arrives, then one line
        per message: "msg <topic> qos=<q> retain=<0|1> <payload>". Exits 0 after N messages,
        3 on timeout, 2 if the connection fails or is refused.

    ws_client.py pub --port P --topic T --message M [--qos Q] [--retain] [--id ID]
        Publishes one message, waits until its QoS flow completes, disconnects cleanly and
        prints "published". Exits 2 on connection failure, 3 on timeout.

Connects to ws://HOST:PORT/mqtt with subprotocol "mqtt" (paho's default for websockets).
"""

import argparse
import sys
import threading
import time

import paho.mqtt.client as mqtt


def out(line):
    print(line, flush=True)


def make_client(args):
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=args.id or "",
        transport="websockets",
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    client.ws_set_options(path=args.path)
    return client


def connect(client, args, on_connected):
    state = {"rc": None}
    connected = threading.Event()

    def on_connect(c, userdata, flags, reason_code, properties):
        state["rc"] = reason_code
        connected.set()
        if not reason_code.is_failure:
            on_connected(c)

    client.on_connect = on_connect
    try:
        client.connect(args.host, args.port, keepalive=30)
    except Exception as e:  # noqa: BLE001 - report any connection error
        out(f"error connect: {e!r}")
        sys.exit(2)
    client.loop_start()
    if not connected.wait(args.timeout):
        out("error: no CONNACK")
        client.loop_stop()
        sys.exit(2)
    if state["rc"].is_failure:
        out(f"error: refused {state['rc']}")
        client.loop_stop()
        sys.exit(2)


def cmd_sub(args):
    client = make_client(args)
    done = threading.Event()
    count = {"n": 0}

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        granted = ",".join(str(rc.value) for rc in reason_codes)
        out(f"subscribed {granted}")

    def on_message(c, userdata, msg):
        payload = msg.payload.decode("utf-8", "replace")
        out(f"msg {msg.topic} qos={msg.qos} retain={int(msg.retain)} {payload}")
        count["n"] += 1
        if count["n"] >= args.count:
            done.set()

    client.on_subscribe = on_subscribe
    client.on_message = on_message
    connect(client, args, lambda c: c.subscribe(args.topic, qos=args.qos))
    ok = done.wait(args.timeout)
    client.disconnect()
    client.loop_stop()
    if not ok:
        out(f"error: timeout after {count['n']} of {args.count} messages")
        sys.exit(3)


def cmd_pub(args):
    client = make_client(args)
    connect(client, args, lambda c: None)
    info = client.publish(args.topic, args.message.encode(), qos=args.qos, retain=args.retain)
    deadline = time.monotonic() + args.timeout
    while not info.is_published():
        if time.monotonic() > deadline:
            out("error: publish not completed")
            client.loop_stop()
            sys.exit(3)
        time.sleep(0.02)
    client.disconnect()
    client.loop_stop()
    out("published")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["sub", "pub"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/mqtt")
    p.add_argument("--topic", required=True)
    p.add_argument("--qos", type=int, default=0)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("--message", default="")
    p.add_argument("--retain", action="store_true")
    p.add_argument("--id", default="")
    args = p.parse_args()
    if args.cmd == "sub":
        cmd_sub(args)
    else:
        cmd_pub(args)


if __name__ == "__main__":
    main()
