"""A Sparkplug B edge node written with PyPI `pysparkplug` (a library we did not write).

Usage: pysparkplug_edge.py HOST PORT GROUP EDGE [KEEPALIVE_S]

Publishes NBIRTH and a DBIRTH for device `filler` with Int8 (negative), UInt32 (large), Float,
Double, Boolean, String and Int64 (negative) metrics, then one DDATA with new values, prints
`ready`, and stays connected until killed (the interop test kills it with SIGKILL and expects the
broker to fire the NDEATH Will).
"""
import sys
import time

import pysparkplug as psp

host, port, group, edge = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
keepalive = int(sys.argv[5]) if len(sys.argv) > 5 else 2


def metric(name, datatype, value):
    return psp.Metric(
        timestamp=psp.get_current_timestamp(), name=name, datatype=datatype, value=value
    )


def values(level, counter, temperature, pressure, running, recipe, energy):
    return [
        metric("Level", psp.DataType.INT8, level),
        metric("Counter", psp.DataType.UINT32, counter),
        metric("Temperature", psp.DataType.FLOAT, temperature),
        metric("Pressure", psp.DataType.DOUBLE, pressure),
        metric("Running", psp.DataType.BOOLEAN, running),
        metric("Recipe", psp.DataType.STRING, recipe),
        metric("Energy", psp.DataType.INT64, energy),
    ]


node = psp.EdgeNode(group, edge, [metric("Uptime", psp.DataType.INT64, 1)])
node.register(psp.Device("filler", values(-5, 4_000_000_000, 71.5, 1.25, True, "A-1", -9_000_000_000)))
node.connect(host, port=port, keepalive=keepalive, blocking=False)
deadline = time.monotonic() + 20
while not node._connected:
    if time.monotonic() > deadline:
        sys.exit("not connected within 20 s")
    time.sleep(0.05)
# Let the births go out before the data (paho publishes from its own thread, in order).
node.update_device("filler", values(-7, 4_000_000_001, 72.5, -0.5, False, "B-2", -9_000_000_001))
print("ready", flush=True)
while True:
    time.sleep(1)
