"""Checks what MQTT Explorer would show of a compose-run UNS, polling until it holds.

Runs the MQTT Explorer peer (tests/peers/mqtt_explorer.py: paho, MQTT 3.1.1, `#` + `$SYS/#`)
against the broker published on the host, and checks its report:

- every node of the plant file (deploy/compose/meta.toml) has a retained `_meta` document with
  the node's ISA-95 level, and the `uns/v1/_schemas/...` documents are there;
- `--status NAME=STATUS`: the retained `uns/v1/_services/NAME` health document has that status;
- `--new-instance NAME=STARTED_AT`: ... and its `started_at` differs (a new process published it);
- `--baseline FILE`: every retained topic saved earlier with `--save` is back (same payload,
  except health documents, whose payload belongs to the current instance);
- `--retained TOPIC=PAYLOAD`: that retained message is present;
- `--sys`: some `$SYS/...` topic arrives;
- `--ws-port PORT`: a paho client over websockets (path `/mqtt`, as browsers and MQTT
  Explorer use it) receives the retained `uns/v1/_services/...` documents too.

When something does not hold yet it runs the peer again, until `--deadline` seconds have
passed; then it prints what was missing and exits 1. `--publish TOPIC=PAYLOAD` publishes a
retained QoS 1 message first (with paho, as the engineer account). Run it with the paho venv's
python (target/peers/paho/bin/python).
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import tomllib

import paho.mqtt.client as mqtt

PEER = os.path.join(os.path.dirname(__file__), "..", "peers", "mqtt_explorer.py")
SERVICES = "uns/v1/_services/"


def pairs(values):
    out = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep:
            raise SystemExit("expected KEY=VALUE, got %r" % value)
        out[key] = rest
    return out


def plant_nodes(path):
    with open(path, "rb") as handle:
        config = tomllib.load(handle)
    return {node["path"]: node.get("level") for node in config.get("plant", {}).get("nodes", [])}


def publish_retained(args, topic, payload):
    done = {"acked": False}
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id="compose-test-pub-%d" % os.getpid(),
        protocol=mqtt.MQTTv311,
    )
    client.username_pw_set(args.username, args.password)
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    info = client.publish(topic, payload, qos=1, retain=True)
    info.wait_for_publish(timeout=10)
    done["acked"] = info.is_published()
    client.disconnect()
    client.loop_stop()
    if not done["acked"]:
        raise SystemExit("publishing %s was not acknowledged" % topic)


def websocket_health(args, services, timeout):
    """Subscribes to the health documents over MQTT-over-websockets; returns what arrived."""
    got = {}
    done = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            got["_connack"] = str(reason_code)
            done.set()
        else:
            client.subscribe(SERVICES + "#", qos=0)

    def on_message(client, userdata, message):
        if message.retain:
            got[message.topic[len(SERVICES):]] = json.loads(message.payload)
        if all(name in got for name in services):
            done.set()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id="compose-test-ws-%d" % os.getpid(),
        protocol=mqtt.MQTTv311,
        transport="websockets",
    )
    client.ws_set_options(path="/mqtt")
    client.username_pw_set(args.username, args.password)
    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(args.host, args.ws_port, keepalive=30)
    except OSError as err:
        return {"_error": str(err)}
    client.loop_start()
    done.wait(timeout)
    client.disconnect()
    client.loop_stop()
    return got


def run_peer(args, expect, timeout):
    cmd = [
        sys.executable, PEER,
        "--host", args.host, "--port", str(args.port),
        "--username", args.username, "--password", args.password,
        "--timeout", str(timeout),
    ]
    for topic in sorted(expect):
        cmd += ["--expect", topic]
    cmd += ["--expect-prefix", "uns/v1/_schemas/"]
    if args.sys:
        cmd += ["--expect-prefix", "$SYS/"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30)
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"connected": False, "error": (proc.stdout + proc.stderr).strip()[-500:], "messages": []}


def evaluate(args, report, nodes, statuses, new_instance, baseline, retained_wanted):
    problems = []
    if not report.get("connected"):
        problems.append("not connected: %s" % (report.get("connack") or report.get("error")))
        return problems, {}
    if report.get("disconnects"):
        problems.append("the broker dropped the peer's connection")
    retained = {}
    for message in report["messages"]:
        if message["retain"] and not message["topic"].startswith("$SYS/"):
            retained[message["topic"]] = message["payload"]
    for path, level in nodes.items():
        topic = "uns/v1/%s/_meta" % path
        if topic not in retained:
            problems.append("no retained " + topic)
            continue
        try:
            doc = json.loads(retained[topic])
        except json.JSONDecodeError:
            problems.append("%s is not JSON" % topic)
            continue
        if level and doc.get("level") != level:
            problems.append("%s: level %r, want %r" % (topic, doc.get("level"), level))
    if not any(t.startswith("uns/v1/_schemas/") for t in retained):
        problems.append("no retained uns/v1/_schemas/...")
    if args.sys and not any(m["topic"].startswith("$SYS/") for m in report["messages"]):
        problems.append("no $SYS/... topic")
    health = {}
    for name in set(statuses) | set(new_instance):
        topic = SERVICES + name
        if topic not in retained:
            problems.append("no retained " + topic)
            continue
        try:
            health[name] = json.loads(retained[topic])
        except json.JSONDecodeError:
            problems.append("%s is not JSON" % topic)
    for name, status in statuses.items():
        if name in health and health[name].get("status") != status:
            problems.append("%s is %r, want %r" % (SERVICES + name, health[name].get("status"), status))
    for name, old in new_instance.items():
        if name in health and health[name].get("started_at") == old:
            problems.append("%s still from the instance started at %s" % (SERVICES + name, old))
    for topic, payload in baseline.items():
        if topic not in retained:
            problems.append("lost retained " + topic)
        elif not topic.startswith(SERVICES) and retained[topic] != payload:
            problems.append("changed retained " + topic)
    for topic, payload in retained_wanted.items():
        if retained.get(topic) != payload:
            problems.append("retained %s is %r, want %r" % (topic, retained.get(topic), payload))
    return problems, retained


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--plant", required=True, help="the meta service's config file")
    parser.add_argument("--status", action="append", default=[])
    parser.add_argument("--new-instance", action="append", default=[])
    parser.add_argument("--retained", action="append", default=[])
    parser.add_argument("--publish", action="append", default=[])
    parser.add_argument("--baseline")
    parser.add_argument("--save")
    parser.add_argument("--sys", action="store_true")
    parser.add_argument("--ws-port", type=int)
    parser.add_argument("--deadline", type=float, default=60.0)
    parser.add_argument("--label", default="check")
    args = parser.parse_args()

    for topic, payload in pairs(args.publish).items():
        publish_retained(args, topic, payload)
    nodes = plant_nodes(args.plant)
    statuses = pairs(args.status)
    new_instance = pairs(args.new_instance)
    retained_wanted = pairs(args.retained)
    baseline = {}
    if args.baseline:
        with open(args.baseline) as handle:
            baseline = json.load(handle)["retained"]
    expect = {"uns/v1/%s/_meta" % path for path in nodes}
    expect |= {SERVICES + name for name in set(statuses) | set(new_instance)}
    expect |= set(baseline) | set(retained_wanted)

    start = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        remaining = args.deadline - (time.monotonic() - start)
        report = run_peer(args, expect, max(3.0, min(20.0, remaining)))
        problems, retained = evaluate(args, report, nodes, statuses, new_instance, baseline, retained_wanted)
        if args.ws_port and not problems:
            over_ws = websocket_health(args, list(statuses), max(3.0, min(10.0, remaining)))
            for name, status in statuses.items():
                if over_ws.get(name, {}).get("status") != status:
                    problems.append("over websockets %s is %r, want %r (%s)" % (
                        SERVICES + name, over_ws.get(name, {}).get("status"), status,
                        over_ws.get("_connack") or over_ws.get("_error") or "no message"))
        elapsed = time.monotonic() - start
        if not problems or elapsed >= args.deadline:
            break
        time.sleep(0.2)  # between polls only; each poll itself waits for the topics
    health = {}
    for topic, payload in retained.items():
        if topic.startswith(SERVICES):
            health[topic[len(SERVICES):]] = json.loads(payload)
    summary = {
        "label": args.label,
        "ok": not problems,
        "seconds": round(elapsed, 2),
        "attempts": attempts,
        "retained_topics": len(retained),
        "meta_nodes": len(nodes),
        "websocket": bool(args.ws_port) and not problems,
        "sys_topics": len({m["topic"] for m in report.get("messages", []) if m["topic"].startswith("$SYS/")}),
        "health": {name: {"status": doc.get("status"), "started_at": doc.get("started_at")} for name, doc in health.items()},
        "problems": problems[:20],
    }
    if args.save and not problems:
        with open(args.save, "w") as handle:
            json.dump({"retained": retained, "health": health}, handle)
    print(json.dumps(summary))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
