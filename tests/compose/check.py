"""Checks what MQTT Explorer would show of a compose-run UNS, polling until it holds.

Runs the MQTT Explorer peer (tests/peers/mqtt_explorer.py: paho, MQTT 3.1.1, `#` + `$SYS/#`)
against the broker published on the host, and checks its report:

- every node of the plant file (deploy/compose/meta.toml) has a retained `_meta` document with
  the node's ISA-95 level, and the `uns/v1/_schemas/...` documents are there;
- `--status NAME=STATUS`: the retained `uns/v1/_services/NAME` health document has that status;
- `--new-instance NAME=STARTED_AT`: ... and its `started_at` differs (a new process published it);
- `--baseline FILE`: every retained topic saved earlier with `--save` is back (same payload,
  except live documents: health, whose payload belongs to the current instance, the
  Sparkplug STATE, and the bridge's `_tag`/`_state`/`_count` values, which move on);
- `--live-since MS`: a `_tag` value made by the SCADA bridge (it names its Sparkplug `src`) with
  `timestamp_ms` >= MS (Unix ms; values sampled after that moment) and a `_state` document
  arrive, both on a node of the plant file (the bridge mapped the simulator's Sparkplug
  metrics onto the modeled cells);
- `--min-retained-tags N`: at least N retained `_tag` documents made by the bridge on plant
  nodes (the count is always reported);
- `--counts-kept`: with `--baseline`, no `_count` total (`total.qty`) is below its saved value
  (counters accumulate; a restart must not lose what they had counted);
- `--settle SECONDS`: stay subscribed at least that long, so `--save` gets every retained
  message rather than the first ones to arrive;
- `--retained TOPIC=PAYLOAD`: that retained message is present;
- `--present TOPIC`: some retained message is on that topic (its JSON is in the summary's
  `present`, for the caller to check fields);
- `--sys`: some `$SYS/...` topic arrives;
- `--ws-port PORT`: a paho client over websockets (path `/mqtt`, as browsers and MQTT
  Explorer use it) receives the retained `uns/v1/_services/...` documents too.

When something does not hold yet it runs the peer again, until `--deadline` seconds have
passed; then it prints what was missing and exits 1. `--publish TOPIC=PAYLOAD` publishes a
retained QoS 1 message first (with paho, as `--publisher`, default the `--username` account). Run it with the paho venv's
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


def is_live(topic):
    """Retained documents whose payload moves on by itself: present after a restart, but newer."""
    if topic.startswith(SERVICES) or topic.startswith("spBv1.0/STATE/"):
        return True
    segments = topic.split("/")
    # Work orders, OEE results and lots move on too (status, quantities, rolling KPIs).
    return any(seg in ("_tag", "_state", "_count", "_wo", "_oee", "_lot") for seg in segments)


def bridged_tag(topic, payload, nodes):
    """The `_tag` document if this is one the SCADA bridge made (it names its Sparkplug source)
    on a plant node, else None. Keeps the test's own probe `_tag` out of the counts."""
    if plant_location(topic, nodes, "_tag") is None:
        return None
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if isinstance(doc, dict) and "value" in doc and isinstance(doc.get("src"), dict) and doc["src"].get("group"):
        return doc
    return None


def plant_location(topic, nodes, kind):
    """The plant node path of `uns/v1/{path}/{kind}[/...]`, or None when it is not a plant node."""
    if not topic.startswith("uns/v1/"):
        return None
    segments = topic[len("uns/v1/"):].split("/")
    if kind not in segments:
        return None
    path = "/".join(segments[:segments.index(kind)])
    return path if path in nodes else None


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
    # The account that owns the topic publishes it (the engineer's account is a viewer: it
    # reads everything and publishes nothing).
    username, _, password = (args.publisher or "%s:%s" % (args.username, args.password)).partition(":")
    client.username_pw_set(username, password)
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


def watch_live(args, nodes, since_ms, timeout):
    """Subscribes to `uns/v1/#` until a `_tag` value newer than since_ms and a `_state` document
    on plant nodes arrived (or timeout seconds passed); returns what it saw."""
    seen = {"tags": 0, "fresh_tag": None, "state": None, "connack": None}
    lock = threading.Lock()
    done = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):
        seen["connack"] = str(reason_code)
        if reason_code.is_failure:
            done.set()
        else:
            client.subscribe("uns/v1/#", qos=0)

    def on_message(client, userdata, message):
        topic = message.topic
        try:
            doc = json.loads(message.payload)
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        with lock:
            if bridged_tag(topic, message.payload, nodes) is not None:
                seen["tags"] += 1
                stamp = doc.get("timestamp_ms")
                if seen["fresh_tag"] is None and isinstance(stamp, int) and stamp >= since_ms:
                    seen["fresh_tag"] = {"topic": topic, "timestamp_ms": stamp,
                                         "value": doc["value"], "retained": bool(message.retain),
                                         "received_after_ms": int(time.time() * 1000) - since_ms}
            if (seen["state"] is None and topic.endswith("/_state")
                    and plant_location(topic, nodes, "_state") is not None
                    and isinstance(doc.get("state"), dict)):
                seen["state"] = {"topic": topic, "category": doc["state"].get("category")}
            if seen["fresh_tag"] and seen["state"]:
                done.set()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id="compose-test-live-%d" % os.getpid(),
        protocol=mqtt.MQTTv311,
    )
    client.username_pw_set(args.username, args.password)
    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(args.host, args.port, keepalive=30)
    except OSError as err:
        return dict(seen, connack=str(err))
    client.loop_start()
    done.wait(timeout)
    client.disconnect()
    client.loop_stop()
    with lock:
        return dict(seen)


def run_peer(args, expect, timeout):
    cmd = [
        sys.executable, PEER,
        "--host", args.host, "--port", str(args.port),
        "--username", args.username, "--password", args.password,
        "--timeout", str(timeout), "--min-seconds", str(min(args.settle, timeout)),
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
        elif not is_live(topic) and retained[topic] != payload:
            problems.append("changed retained " + topic)
        elif args.counts_kept and "_count" in topic.split("/"):
            before, after = count_total(payload), count_total(retained[topic])
            if before is not None and (after is None or after < before):
                problems.append("%s went back from %s to %s" % (topic, before, after))
    for topic in args.present:
        if topic not in retained:
            problems.append("no retained " + topic)
    for topic, payload in retained_wanted.items():
        if retained.get(topic) != payload:
            problems.append("retained %s is %r, want %r" % (topic, retained.get(topic), payload))
    tags = retained_tags(retained, nodes)
    if tags < args.min_retained_tags:
        problems.append("%d retained _tag documents on plant nodes, want at least %d" % (tags, args.min_retained_tags))
    return problems, retained


def parse_json(payload):
    try:
        return json.loads(payload)
    except (TypeError, ValueError):
        return None


def count_total(payload):
    try:
        qty = json.loads(payload)["total"]["qty"]
    except (ValueError, KeyError, TypeError):
        return None
    return qty if isinstance(qty, (int, float)) else None


def retained_tags(retained, nodes):
    return sum(1 for topic, payload in retained.items() if bridged_tag(topic, payload, nodes) is not None)


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
    parser.add_argument("--publisher", help="USER:PASSWORD for --publish (default: --username)")
    parser.add_argument("--present", action="append", default=[])
    parser.add_argument("--baseline")
    parser.add_argument("--save")
    parser.add_argument("--sys", action="store_true")
    parser.add_argument("--ws-port", type=int)
    parser.add_argument("--live-since", type=int, help="Unix ms; see the module doc")
    parser.add_argument("--min-retained-tags", type=int, default=0)
    parser.add_argument("--settle", type=float, default=0.0)
    parser.add_argument("--counts-kept", action="store_true")
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
    expect |= set(baseline) | set(retained_wanted) | set(args.present)

    start = time.monotonic()
    attempts = 0
    live = None
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
        if args.live_since is not None and not problems:
            live = watch_live(args, nodes, args.live_since, max(3.0, min(20.0, remaining)))
            if not live["fresh_tag"]:
                problems.append("no _tag value with timestamp_ms >= %d on a plant node (%d older ones, connack %s)" % (
                    args.live_since, live["tags"], live["connack"]))
            if not live["state"]:
                problems.append("no _state document on a plant node")
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
        "retained_tags": retained_tags(retained, nodes),
        "meta_nodes": len(nodes),
        "websocket": bool(args.ws_port) and not problems,
        "sys_topics": len({m["topic"] for m in report.get("messages", []) if m["topic"].startswith("$SYS/")}),
        "health": {name: {"status": doc.get("status"), "started_at": doc.get("started_at")} for name, doc in health.items()},
        "live": live and {"fresh_tag": live["fresh_tag"], "state": live["state"]},
        "present": {topic: parse_json(retained.get(topic)) for topic in args.present},
        "problems": problems[:20],
    }
    if args.save and not problems:
        with open(args.save, "w") as handle:
            json.dump({"retained": retained, "health": health}, handle)
    print(json.dumps(summary))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
