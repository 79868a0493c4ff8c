"""A Sparkplug B edge node written with PyPI `mqtt-spb-wrapper` 2.x (a library we did not write).

Usage: spb_wrapper_edge.py HOST PORT GROUP EDGE

Publishes an NBIRTH for the edge node and a DBIRTH for device `filler` (the library gives each device
its own MQTT connection, whose Will is the DDEATH) with Int8 (negative), UInt32 (large), Float,
Double, Boolean, String and Int64 (negative) metrics, then one DDATA with new values, prints `ready`
and stays connected until killed. Its metric names get the library's `DATA/` prefix.
"""
import sys
import time

from mqtt_spb_wrapper import MqttSpbEntityDevice, MqttSpbEntityEdgeNode
from mqtt_spb_wrapper.spb_protobuf import MetricDataType

host, port, group, edge = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def set_values(entity, level, counter, temperature, pressure, running, recipe, energy):
    entity.data.set_value("Level", level, spb_data_type=MetricDataType.Int8)
    entity.data.set_value("Counter", counter, spb_data_type=MetricDataType.UInt32)
    entity.data.set_value("Temperature", temperature, spb_data_type=MetricDataType.Float)
    entity.data.set_value("Pressure", pressure, spb_data_type=MetricDataType.Double)
    entity.data.set_value("Running", running, spb_data_type=MetricDataType.Boolean)
    entity.data.set_value("Recipe", recipe, spb_data_type=MetricDataType.String)
    entity.data.set_value("Energy", energy, spb_data_type=MetricDataType.Int64)


node = MqttSpbEntityEdgeNode(group, edge)
node.data.set_value("Uptime", 1, spb_data_type=MetricDataType.Int64)
if not node.connect(host, port, client_id=f"spbw-{edge}"):
    sys.exit("edge node not connected")
node.publish_birth()

device = MqttSpbEntityDevice(group, edge, "filler")
set_values(device, -5, 4_000_000_000, 71.5, 1.25, True, "A-1", -9_000_000_000)
if not device.connect(host, port, client_id=f"spbw-{edge}-filler"):
    sys.exit("device not connected")
device.publish_birth()
set_values(device, -7, 4_000_000_001, 72.5, -0.5, False, "B-2", -9_000_000_001)
device.publish_data()
print("ready", flush=True)
while True:
    time.sleep(1)
