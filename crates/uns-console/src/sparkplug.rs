//! Sparkplug B payloads shown as people read them: decoded because the topic is in the
//! `spBv1.0` namespace (never by guessing from the bytes), with DATA metrics that carry only an
//! alias resolved to the name and datatype their birth certificate declared.
//!
//! [`BirthCache`] keeps the metrics of the latest NBIRTH per edge node and DBIRTH per device
//! (keyed by group, edge and device), forgets them on NDEATH/DDEATH, and turns each message into
//! the JSON the topic pane shows. It observes only: unlike the SCADA bridge's host session it
//! tracks no sequence numbers and never asks for a rebirth.

use std::collections::HashMap;

use serde_json::{Value as Json, json};
use uns_sparkplug::topic::NAMESPACE;
use uns_sparkplug::{DataType, Metric, SparkplugTopic, Value};

/// Births seen, by node and device.
#[derive(Debug, Default)]
pub struct BirthCache {
    births: HashMap<BirthKey, Birth>,
}

/// `(group, edge, device)`; the device is `None` for the node's own NBIRTH.
type BirthKey = (String, String, Option<String>);

#[derive(Debug, Default)]
struct Birth {
    by_alias: HashMap<u64, Declared>,
}

#[derive(Debug, Clone)]
struct Declared {
    name: String,
    datatype: Option<DataType>,
}

/// Whether `topic` is in the Sparkplug B namespace (its first level is `spBv1.0`).
pub fn is_sparkplug(topic: &str) -> bool {
    topic.split('/').next() == Some(NAMESPACE)
}

impl BirthCache {
    /// Number of births held (nodes plus devices).
    pub fn len(&self) -> usize {
        self.births.len()
    }

    /// Whether no birth is held.
    pub fn is_empty(&self) -> bool {
        self.births.is_empty()
    }

    /// The message on `topic` as JSON, learning from births and deaths on the way; `None` when the
    /// topic is not in the Sparkplug namespace. A payload or topic that does not decode gives
    /// `{"error": ...}`: shown, not guessed at.
    pub fn decode(&mut self, topic: &str, payload: &[u8]) -> Option<Json> {
        if !is_sparkplug(topic) {
            return None;
        }
        let parsed: SparkplugTopic = match topic.parse() {
            Ok(parsed) => parsed,
            Err(err) => return Some(json!({ "error": format!("not a Sparkplug B topic: {err}") })),
        };
        let (group, edge, device, kind) = match &parsed {
            SparkplugTopic::State { host_id } => {
                return Some(match uns_sparkplug::host::parse_state(payload) {
                    Ok((online, timestamp)) => json!({
                        "kind": "STATE", "host_id": host_id, "online": online, "timestamp": timestamp
                    }),
                    Err(err) => json!({ "kind": "STATE", "host_id": host_id, "error": err }),
                });
            }
            SparkplugTopic::Node { group, kind, edge } => {
                (group.clone(), edge.clone(), None, kind.as_str())
            }
            SparkplugTopic::Device {
                group,
                kind,
                edge,
                device,
            } => (
                group.clone(),
                edge.clone(),
                Some(device.clone()),
                kind.as_str(),
            ),
        };
        let decoded = match uns_sparkplug::decode(payload) {
            Ok(decoded) => decoded,
            Err(err) => {
                return Some(json!({
                    "kind": kind, "group": group, "edge": edge, "device": device,
                    "error": format!("not a Sparkplug B payload: {err}"),
                }));
            }
        };
        let key: BirthKey = (group.clone(), edge.clone(), device.clone());
        match kind {
            "NBIRTH" => {
                // A new node session: its devices' births are void until they are born again.
                self.births
                    .retain(|(g, e, _), _| !(g == &group && e == &edge));
                self.births.insert(key.clone(), Birth::of(&decoded.metrics));
            }
            "DBIRTH" => {
                self.births.insert(key.clone(), Birth::of(&decoded.metrics));
            }
            _ => {}
        }
        let metrics: Vec<Json> = decoded
            .metrics
            .iter()
            .map(|metric| self.metric_json(&key, metric))
            .collect();
        match kind {
            "NDEATH" => self
                .births
                .retain(|(g, e, _), _| !(g == &group && e == &edge)),
            "DDEATH" => {
                self.births.remove(&key);
            }
            _ => {}
        }
        Some(json!({
            "kind": kind,
            "group": group,
            "edge": edge,
            "device": device,
            "timestamp": decoded.timestamp,
            "seq": decoded.seq,
            "metrics": metrics,
        }))
    }

    /// The declaration of `alias` for a message about `key`: the device's birth first, then the
    /// node's (aliases are unique per edge node across the node and its devices).
    fn declared(&self, key: &BirthKey, alias: u64) -> Option<&Declared> {
        let node_key = (key.0.clone(), key.1.clone(), None);
        self.births
            .get(key)
            .and_then(|birth| birth.by_alias.get(&alias))
            .or_else(|| {
                self.births
                    .get(&node_key)
                    .and_then(|birth| birth.by_alias.get(&alias))
            })
    }

    fn metric_json(&self, key: &BirthKey, metric: &Metric) -> Json {
        let declared = metric.alias.and_then(|alias| self.declared(key, alias));
        let (name, name_from) = match (&metric.name, declared) {
            (Some(name), _) => (Some(name.clone()), Some("payload")),
            (None, Some(declared)) => (Some(declared.name.clone()), Some("birth")),
            (None, None) => (None, None),
        };
        let datatype = metric
            .datatype
            .or_else(|| declared.and_then(|declared| declared.datatype));
        let mut value_error = None;
        let value = match (&metric.value, datatype) {
            (None, _) => Json::Null,
            (Some(Value::Untyped(raw)), Some(datatype)) => {
                match Value::from_raw(datatype, raw.clone()) {
                    Ok(value) => value.to_json(),
                    Err(err) => {
                        value_error = Some(err.to_string());
                        raw.to_json()
                    }
                }
            }
            (Some(value), _) => value.to_json(),
        };
        let mut out = json!({
            "name": name,
            "name_from": name_from,
            "alias": metric.alias,
            "datatype": datatype.map(DataType::name),
            "timestamp": metric.timestamp,
            "historical": metric.is_historical,
            "transient": metric.is_transient,
            "value": value,
        });
        if name.is_none() {
            out["error"] = json!(format!(
                "{} is not declared by any birth seen for this node or device",
                metric.label()
            ));
        }
        if let Some(err) = value_error {
            out["error"] = json!(format!("value does not fit its birth datatype: {err}"));
        }
        if let Some(properties) = &metric.properties {
            out["properties"] = properties.to_json();
        }
        out
    }
}

impl Birth {
    fn of(metrics: &[Metric]) -> Self {
        let by_alias = metrics
            .iter()
            .filter_map(|metric| {
                Some((
                    metric.alias?,
                    Declared {
                        name: metric.name.clone()?,
                        datatype: metric.datatype,
                    },
                ))
            })
            .collect();
        Self { by_alias }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uns_sparkplug::{Payload, RawValue, encode};

    fn topic(kind: &str, device: Option<&str>) -> String {
        let mut topic = format!("{NAMESPACE}/plant/{kind}/edge-1");
        if let Some(device) = device {
            topic.push('/');
            topic.push_str(device);
        }
        topic
    }

    fn birth_metric(name: &str, alias: u64, value: Value) -> Metric {
        Metric {
            alias: Some(alias),
            ..Metric::new(name, value)
        }
    }

    fn data_metric(alias: u64, raw: RawValue, historical: bool) -> Metric {
        Metric {
            alias: Some(alias),
            value: Some(Value::Untyped(raw)),
            is_historical: historical,
            ..Metric::default()
        }
    }

    fn bytes(metrics: Vec<Metric>) -> Vec<u8> {
        encode(&Payload {
            timestamp: Some(1),
            seq: Some(0),
            metrics,
            ..Payload::default()
        })
        .expect("encodes")
    }

    #[test]
    fn data_aliases_resolve_through_the_births() {
        let mut cache = BirthCache::default();
        let nbirth = bytes(vec![birth_metric("bdSeq", 0, Value::Int64(0))]);
        cache.decode(&topic("NBIRTH", None), &nbirth);
        let dbirth = bytes(vec![birth_metric("Temperature", 7, Value::Int16(-3))]);
        cache.decode(&topic("DBIRTH", Some("plc")), &dbirth);
        assert_eq!(cache.len(), 2);
        let ddata = bytes(vec![
            data_metric(7, RawValue::Int(0xFFFF_FFFB), true),
            data_metric(0, RawValue::Long(4), false),
            data_metric(99, RawValue::Int(1), false),
        ]);
        let shown = cache
            .decode(&topic("DDATA", Some("plc")), &ddata)
            .expect("a Sparkplug topic");
        let metrics = &shown["metrics"];
        assert_eq!(metrics[0]["name"], "Temperature");
        assert_eq!(metrics[0]["name_from"], "birth");
        assert_eq!(metrics[0]["datatype"], "Int16");
        assert_eq!(
            metrics[0]["value"], -5,
            "typed through the birth's datatype"
        );
        assert_eq!(metrics[0]["historical"], true);
        assert_eq!(metrics[1]["name"], "bdSeq", "node aliases apply to devices");
        assert_eq!(metrics[2]["name"], Json::Null);
        assert!(
            metrics[2]["error"]
                .as_str()
                .is_some_and(|e| e.contains("alias 99"))
        );

        // A new NBIRTH voids the device's birth until it is born again.
        cache.decode(&topic("NBIRTH", None), &nbirth);
        let shown = cache
            .decode(&topic("DDATA", Some("plc")), &ddata)
            .expect("a Sparkplug topic");
        assert_eq!(shown["metrics"][0]["name"], Json::Null);
        cache.decode(&topic("NDEATH", None), &bytes(Vec::new()));
        assert!(cache.is_empty());
    }

    #[test]
    fn only_the_namespace_decides() {
        let mut cache = BirthCache::default();
        let protobuf = bytes(vec![birth_metric("x", 1, Value::Boolean(true))]);
        assert_eq!(cache.decode("plant/NBIRTH/edge-1", &protobuf), None);
        let garbage = cache
            .decode(&topic("NDATA", None), b"{\"not\": \"protobuf\"}")
            .expect("a Sparkplug topic");
        assert!(garbage["error"].as_str().is_some());
        let state = cache
            .decode(
                &format!("{NAMESPACE}/STATE/host"),
                br#"{"online":true,"timestamp":5}"#,
            )
            .expect("a Sparkplug topic");
        assert_eq!(state["online"], true);
        let bad_topic = cache
            .decode(&format!("{NAMESPACE}/plant/NOPE/edge"), b"")
            .expect("a Sparkplug topic");
        assert!(bad_topic["error"].as_str().is_some());
    }
}
