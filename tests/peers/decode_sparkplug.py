"""Decodes our Sparkplug B traffic with a library we did not write.

Subscribes to `spBv1.0/#` (paho-mqtt), decodes every NBIRTH/DBIRTH/DDATA payload with either
`pysparkplug` or `mqtt-spb-wrapper` (`--lib`), resolves DDATA aliases through the matching
DBIRTH, and prints one JSON object once every device in `--device` has sent births and
`--min-data` DDATA messages (or at `--timeout`):

    {"births": {"line-1/filler": {"Count/Good": "UInt64", ...}},
     "values": {"line-1/filler": {"Count/Good": 12, ...}},
     "n_data": 40, "errors": ["..."], "missing": ["..."]}

Exit code 0 when nothing failed to decode and nothing is missing.
"""

import argparse
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt


def decode_pysparkplug(kind, payload, birth):
    import pysparkplug as ps

    if kind == "DBIRTH":
        decoded = ps.DBirth.decode(payload)
        names = {m.alias: m.name for m in decoded.metrics}
        types = {m.name: m.datatype.name for m in decoded.metrics}
        values = {m.name: m.value for m in decoded.metrics}
        return decoded, names, types, values
    if kind == "NBIRTH":
        decoded = ps.NBirth.decode(payload)
        return decoded, {}, {m.name: m.datatype.name for m in decoded.metrics}, {}
    if kind == "DDATA":
        decoded = ps.DData.decode(payload, birth=birth["raw"])
        values = {}
        for metric in decoded.metrics:
            name = metric.name or birth["names"].get(metric.alias)
            if name is None:
                raise ValueError("alias %r is not in the DBIRTH" % (metric.alias,))
            values[name] = metric.value
        return decoded, {}, {}, values
    return None, {}, {}, {}


def decode_spb_wrapper(kind, payload, birth):
    from mqtt_spb_wrapper import SpbPayloadParser

    parsed = SpbPayloadParser(payload).as_dict()
    if parsed is None:
        raise ValueError("mqtt-spb-wrapper could not parse the payload")
    metrics = parsed.get("metrics", [])
    if kind in ("DBIRTH", "NBIRTH"):
        # protobuf's MessageToDict renders uint64 aliases as strings.
        names = {int(m["alias"]): m["name"] for m in metrics if "alias" in m}
        types = {m["name"]: str(m.get("datatype")) for m in metrics}
        values = {m["name"]: m.get("value") for m in metrics}
        return parsed, names, types, values
    if kind == "DDATA":
        values = {}
        for metric in metrics:
            alias = metric.get("alias")
            name = metric.get("name") or birth["names"].get(int(alias) if alias is not None else None)
            if name is None:
                raise ValueError("alias %r is not in the DBIRTH" % (alias,))
            # DATA carries no datatype (spec): take it from the birth, then decode the raw field.
            if "value" not in metric:
                datatype = birth["datatypes"].get(name)
                raw = next((v for k, v in metric.items() if k.endswith("Value")), None)
                metric["value"] = SpbPayloadParser()._decode_value(datatype, raw) if datatype else raw
            values[name] = metric["value"]
        return parsed, {}, {}, values
    return None, {}, {}, {}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lib", choices=["pysparkplug", "spb-wrapper"], required=True)
    parser.add_argument("--device", action="append", default=[], help="edge/device that must be decoded")
    parser.add_argument("--min-data", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--ready-file", help="written once subscribed")
    args = parser.parse_args()
    decode = decode_pysparkplug if args.lib == "pysparkplug" else decode_spb_wrapper

    lock = threading.Lock()
    births = {}
    raw_datatypes = {}
    values = {}
    n_data = {}
    errors = []

    def on_connect(client, userdata, flags, rc):
        client.subscribe("spBv1.0/#", qos=0)

    def on_subscribe(client, userdata, mid, granted_qos):
        if args.ready_file:
            with open(args.ready_file, "w") as f:
                f.write("subscribed\n")

    def on_message(client, userdata, message):
        parts = message.topic.split("/")
        if len(parts) < 4 or parts[1] == "STATE":
            return
        kind = parts[2]
        key = "/".join(parts[3:])
        with lock:
            try:
                birth = births.get(key)
                if kind == "DDATA" and birth is None:
                    return  # joined mid-stream: wait for the birth
                raw, names, types, decoded_values = decode(kind, message.payload, birth)
                if kind == "DBIRTH":
                    datatypes = {}
                    if args.lib == "spb-wrapper":
                        for m in raw.get("metrics", []):
                            datatypes[m["name"]] = m.get("datatype")
                    births[key] = {"raw": raw, "names": names, "types": types, "datatypes": datatypes}
                    values.setdefault(key, {}).update(decoded_values)
                elif kind == "DDATA":
                    n_data[key] = n_data.get(key, 0) + 1
                    values.setdefault(key, {}).update(decoded_values)
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                errors.append("%s: %s: %r" % (message.topic, type(exc).__name__, exc))

    client = mqtt.Client("decode-peer-%s-%d" % (args.lib, int(time.time() * 1000)))
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        with lock:
            done = all(d in births and n_data.get(d, 0) >= args.min_data for d in args.device)
            if errors or done:
                break
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()

    with lock:
        missing = [d for d in args.device if d not in births or n_data.get(d, 0) < args.min_data]
        report = {
            "births": {k: v["types"] for k, v in births.items()},
            "values": values,
            "n_data": sum(n_data.values()),
            "errors": errors,
            "missing": missing,
        }
    json.dump(report, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0 if not errors and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
