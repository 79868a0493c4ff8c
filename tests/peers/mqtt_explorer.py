"""Connects the way MQTT Explorer does and reports what it sees.

MQTT Explorer (and most browsing tools) connect with MQTT 3.1.1 and subscribe to `#` and
`$SYS/#` at QoS 0. This peer does the same with paho-mqtt (a client we did not write), waits
until every expected topic has arrived (or a deadline passes) and stays connected at least
`--min-seconds`, then prints one JSON object:

    {"connected": true, "disconnects": 0, "messages": [{"topic", "retain", "payload"}...],
     "missing": [...]}

Exit code 0 when every expected topic arrived and the connection never dropped, else 1.
"""

import argparse
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--expect", action="append", default=[], help="topic that must arrive")
    parser.add_argument("--expect-prefix", action="append", default=[], help="some topic with this prefix must arrive")
    parser.add_argument("--two-subscribes", action="store_true", help="subscribe # and $SYS/# separately")
    parser.add_argument("--min-seconds", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()

    lock = threading.Lock()
    messages = []
    seen = set()
    state = {"connected": False, "disconnects": 0, "connack": None, "closing": False}
    done = threading.Event()

    def satisfied() -> bool:
        if not all(t in seen for t in args.expect):
            return False
        return all(any(t.startswith(p) for t in seen) for p in args.expect_prefix)

    def on_connect(client, userdata, flags, reason_code, properties):
        state["connack"] = str(reason_code)
        if reason_code.is_failure:
            done.set()
            return
        state["connected"] = True
        if args.two_subscribes:
            client.subscribe("#", qos=0)
            client.subscribe("$SYS/#", qos=0)
        else:
            client.subscribe([("#", 0), ("$SYS/#", 0)])

    def on_disconnect(client, userdata, flags, reason_code, properties):
        with lock:
            if not state["closing"]:
                state["disconnects"] += 1
        done.set()

    def on_message(client, userdata, message):
        try:
            payload = message.payload.decode("utf-8")
        except UnicodeDecodeError:
            payload = "<binary %d bytes>" % len(message.payload)
        with lock:
            messages.append({"topic": message.topic, "retain": bool(message.retain), "payload": payload})
            seen.add(message.topic)

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id="mqtt-explorer-peer-%d" % int(time.time() * 1000),
        protocol=mqtt.MQTTv311,
    )
    if args.username:
        client.username_pw_set(args.username, args.password)
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=60)
    client.loop_start()

    start = time.monotonic()
    deadline = start + args.timeout
    while time.monotonic() < deadline and not done.is_set():
        with lock:
            ok = satisfied()
        if ok and time.monotonic() - start >= args.min_seconds:
            break
        done.wait(0.05)
    with lock:
        state["closing"] = True
    client.disconnect()
    client.loop_stop()

    with lock:
        missing = [t for t in args.expect if t not in seen]
        missing += [p + "*" for p in args.expect_prefix if not any(t.startswith(p) for t in seen)]
        unexpected_disconnects = state["disconnects"]
        report = {
            "connected": state["connected"],
            "connack": state["connack"],
            "disconnects": unexpected_disconnects,
            "seconds": round(time.monotonic() - start, 3),
            "messages": messages,
            "missing": missing,
        }
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0 if state["connected"] and not missing and unexpected_disconnects == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
