//! The plant views' data, read from the retained UNS topics the console already holds (no call to
//! another service): each new topic name is parsed once through the model ([`UnsTopic`]) and, if a
//! view reads its class, kept in an [`Index`]; a view's answer decodes the latest payload of each
//! indexed topic as the model's typed document. A payload that does not decode is shown with the
//! reason, never dropped silently.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/console/plant` | the ISA-95 tree from `_meta` (and every location with a `_state`), each node's state, counts and active order; the services' health (`uns/v1/_services/*`); the broker's `$SYS` figures |
//! | `GET /api/v1/console/oee` | per scope the open periods (`_oee/current/*`) and the newest closed periods (`_oee/{kind}/{id}`) with every version the console's history holds |
//! | `GET /api/v1/console/work-orders` | every `_wo/{id}` document, newest change first; documents that do not decode are listed with the reason |
//! | `GET /api/v1/console/work-order?topic=` | one document and the events of `{topic}/events` the console's history still holds (bounded by `[console] history_*`), oldest first |
//!
//! The work-order page's lifecycle buttons post to the workorders service's own API
//! (`/api/v1/work-orders/{id}/{verb}`), which decides; the console only shows the answer. The same
//! holds for the ERP bridge's dead letters and the genealogy service's traces: the page asks those
//! services' APIs on the same HTTP port.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};
use uns_model::payload::{
    CountDoc, NodeMeta, OeeResult, ServiceHealth, StateDoc, WorkOrder, WorkOrderEvent,
};
use uns_model::topic::{Class, Location, OeePeriodKind, UnsTopic};

use crate::Shared;
use crate::api::{error, param, params};

/// The broker's statistics topics (not UNS topics; read as text).
const SYS_PREFIX: &str = "$SYS/";

/// Closed periods listed per scope and period kind, newest first.
pub const CLOSED_PER_KIND: usize = 6;

/// The topics the views read, by kind. Names are those of the tree's topics.
#[derive(Debug, Default)]
pub struct Index {
    /// `_wo/{id}` documents.
    work_orders: BTreeSet<Arc<str>>,
    /// Per location, in the tree's order (a parent before its children): the topics of its node.
    nodes: BTreeMap<Location, NodeTopics>,
    /// Per scope: its OEE periods.
    oee: BTreeMap<Location, OeeTopics>,
    /// `uns/v1/_services/{name}`.
    services: BTreeSet<Arc<str>>,
    /// `$SYS/...`.
    sys: BTreeSet<Arc<str>>,
}

/// One location's topics the plant view reads.
#[derive(Debug, Default)]
struct NodeTopics {
    meta: Option<Arc<str>>,
    state: Option<Arc<str>>,
    /// By counter kind (`good`, `scrap`, ...).
    counts: BTreeMap<&'static str, Arc<str>>,
    active: Option<Arc<str>>,
}

/// One scope's OEE topics.
#[derive(Debug, Default)]
struct OeeTopics {
    /// By period kind (`hour`, `shift`, `wo`).
    current: BTreeMap<&'static str, Arc<str>>,
    /// By period kind, then every closed period's topic.
    closed: BTreeMap<&'static str, BTreeSet<Arc<str>>>,
}

impl Index {
    /// Files `topic` (a topic name seen for the first time) under the view that reads it, if any.
    pub fn add(&mut self, topic: &str) {
        if topic.starts_with(SYS_PREFIX) {
            self.sys.insert(Arc::from(topic));
            return;
        }
        if !topic.starts_with("uns/") {
            return;
        }
        let Ok(parsed) = UnsTopic::from_str(topic) else {
            return;
        };
        let name: Arc<str> = Arc::from(topic);
        let (location, class) = match parsed {
            UnsTopic::Service { .. } => {
                self.services.insert(name);
                return;
            }
            UnsTopic::Located { location, class } => (location, class),
            UnsTopic::Schema { .. } | UnsTopic::Reply { .. } => return,
        };
        match class {
            Class::WorkOrder(_) => {
                self.work_orders.insert(name);
            }
            Class::Meta => self.nodes.entry(location).or_default().meta = Some(name),
            Class::State => self.nodes.entry(location).or_default().state = Some(name),
            Class::Count(kind) => {
                self.nodes
                    .entry(location)
                    .or_default()
                    .counts
                    .insert(kind.as_str(), name);
            }
            Class::WorkOrderActive => self.nodes.entry(location).or_default().active = Some(name),
            Class::OeeCurrent(kind) => {
                self.oee
                    .entry(location)
                    .or_default()
                    .current
                    .insert(kind.as_str(), name);
            }
            Class::Oee(kind, _) => {
                self.oee
                    .entry(location)
                    .or_default()
                    .closed
                    .entry(kind.as_str())
                    .or_default()
                    .insert(name);
            }
            _ => {}
        }
    }

    /// The `_wo/{id}` topics, sorted by name.
    pub fn work_orders(&self) -> impl Iterator<Item = &Arc<str>> {
        self.work_orders.iter()
    }
}

/// The latest payload of `topic` and its arrival, copied out under the lock (shared bytes).
fn latest(inner: &crate::Inner, topic: Option<&Arc<str>>) -> Option<(Bytes, u64)> {
    let entry = inner.tree.lookup(topic?)?;
    Some((entry.latest.payload.clone(), entry.latest.arrival_ms))
}

/// `payload` decoded as `T`: `Ok(None)` for an empty (cleared) retained payload, `Err` with the
/// reason when it is not a `what` document.
fn decode<T: DeserializeOwned>(payload: &[u8], what: &str) -> Result<Option<T>, String> {
    if payload.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(payload)
        .map(Some)
        .map_err(|err| format!("not a {what} document: {err}"))
}

/// A decoded document as JSON, or `{"error": reason}`; `null` when absent.
fn shown<T: serde::Serialize>(decoded: Result<Option<T>, String>) -> Json {
    match decoded {
        Ok(Some(doc)) => serde_json::to_value(doc).unwrap_or(Json::Null),
        Ok(None) => Json::Null,
        Err(reason) => json!({ "error": reason }),
    }
}

/// What the plant view copies out of the tree for one node, before decoding without the lock.
struct NodeCopy {
    location: String,
    depth: usize,
    meta: Option<(Bytes, u64)>,
    state: Option<(Bytes, u64)>,
    counts: Vec<(&'static str, Bytes)>,
    active: Option<(Bytes, u64)>,
}

/// `GET /api/v1/console/plant`.
pub async fn plant(State(shared): State<Arc<Shared>>) -> Response {
    let (nodes, services, sys) = {
        let inner = shared.lock();
        let nodes: Vec<NodeCopy> = inner
            .index
            .nodes
            .iter()
            .map(|(location, topics)| NodeCopy {
                location: location.to_string(),
                depth: location.depth(),
                meta: latest(&inner, topics.meta.as_ref()),
                state: latest(&inner, topics.state.as_ref()),
                counts: topics
                    .counts
                    .iter()
                    .filter_map(|(kind, topic)| {
                        latest(&inner, Some(topic)).map(|(payload, _)| (*kind, payload))
                    })
                    .collect(),
                active: latest(&inner, topics.active.as_ref()),
            })
            .collect();
        let services: Vec<(Arc<str>, Bytes, u64)> = inner
            .index
            .services
            .iter()
            .filter_map(|topic| {
                latest(&inner, Some(topic)).map(|(payload, at)| (topic.clone(), payload, at))
            })
            .collect();
        let sys: Vec<(Arc<str>, Bytes, u64)> = inner
            .index
            .sys
            .iter()
            .filter_map(|topic| {
                latest(&inner, Some(topic)).map(|(payload, at)| (topic.clone(), payload, at))
            })
            .collect();
        (nodes, services, sys)
    };
    let nodes: Vec<Json> = nodes.into_iter().map(node_json).collect();
    let services: Vec<Json> = services
        .into_iter()
        .filter(|(_, payload, _)| !payload.is_empty())
        .map(|(topic, payload, arrival_ms)| {
            json!({
                "topic": &*topic,
                "arrival_ms": arrival_ms,
                "health": shown(decode::<ServiceHealth>(&payload, "uns/service-health/v1")),
            })
        })
        .collect();
    let sys: Vec<Json> = sys
        .into_iter()
        .map(|(topic, payload, arrival_ms)| {
            json!({
                "topic": &*topic,
                "name": topic.strip_prefix(SYS_PREFIX).unwrap_or(&topic),
                "value": String::from_utf8_lossy(&payload),
                "arrival_ms": arrival_ms,
            })
        })
        .collect();
    axum::Json(json!({ "nodes": nodes, "services": services, "sys": sys })).into_response()
}

fn node_json(node: NodeCopy) -> Json {
    let meta = node
        .meta
        .map(|(payload, _)| shown(decode::<NodeMeta>(&payload, "uns/meta/v1")))
        .unwrap_or(Json::Null);
    let state = node
        .state
        .map(|(payload, arrival_ms)| {
            let mut state = shown(decode::<StateDoc>(&payload, "uns/state/v1"));
            if let Some(object) = state.as_object_mut() {
                object.insert("arrival_ms".to_owned(), json!(arrival_ms));
            }
            state
        })
        .unwrap_or(Json::Null);
    let counts: serde_json::Map<String, Json> = node
        .counts
        .into_iter()
        .map(|(kind, payload)| {
            let count = match decode::<CountDoc>(&payload, "uns/count/v1") {
                Ok(Some(count)) => serde_json::to_value(count.total).unwrap_or(Json::Null),
                Ok(None) => Json::Null,
                Err(reason) => json!({ "error": reason }),
            };
            (kind.to_owned(), count)
        })
        .collect();
    // `_wo/_active` carries the running order's document, or null.
    let active = node
        .active
        .map(
            |(payload, _)| match decode::<Option<WorkOrder>>(&payload, "uns/work-order/v1") {
                Ok(Some(Some(order))) => json!({
                    "id": order.id, "status": order.status, "material": order.material,
                    "good": order.quantities.good, "planned": order.quantities.planned,
                }),
                Ok(_) => Json::Null,
                Err(reason) => json!({ "error": reason }),
            },
        )
        .unwrap_or(Json::Null);
    json!({
        "location": node.location,
        "depth": node.depth,
        "meta": meta,
        "state": state,
        "counts": counts,
        "active_order": active,
    })
}

/// What the OEE board copies out of the tree for one period topic: the latest payload and every
/// version its history still holds (a closed period is re-published as version n+1).
struct PeriodCopy {
    topic: Arc<str>,
    arrival_ms: u64,
    latest: Bytes,
    history: Vec<(u64, Bytes)>,
}

fn period_copy(inner: &crate::Inner, topic: &Arc<str>, with_history: bool) -> Option<PeriodCopy> {
    let entry = inner.tree.lookup(topic)?;
    Some(PeriodCopy {
        topic: topic.clone(),
        arrival_ms: entry.latest.arrival_ms,
        latest: entry.latest.payload.clone(),
        history: if with_history {
            entry
                .history
                .iter()
                .map(|point| (point.arrival_ms, point.payload.clone()))
                .collect()
        } else {
            Vec::new()
        },
    })
}

/// `GET /api/v1/console/oee`.
pub async fn oee(State(shared): State<Arc<Shared>>) -> Response {
    type Scope = (
        String,
        Vec<(&'static str, PeriodCopy)>,
        Vec<(&'static str, PeriodCopy)>,
    );
    let scopes: Vec<Scope> = {
        let inner = shared.lock();
        inner
            .index
            .oee
            .iter()
            .map(|(location, topics)| {
                let current = topics
                    .current
                    .iter()
                    .filter_map(|(kind, topic)| {
                        period_copy(&inner, topic, false).map(|copy| (*kind, copy))
                    })
                    .collect();
                let mut closed = Vec::new();
                for (kind, names) in &topics.closed {
                    // Newest first, also after a restart delivered them all at once: hour and
                    // day ids sort by time as text (`2026-12-04t06`, `…t06.2` for the hour
                    // repeated when clocks go back), shift ids by date, then by name within a
                    // date (`2026-12-04.early`); work orders by arrival.
                    let picked: Vec<&Arc<str>> = if *kind == OeePeriodKind::Wo.as_str() {
                        let mut by_arrival: Vec<(u64, &Arc<str>)> = names
                            .iter()
                            .filter_map(|topic| {
                                Some((inner.tree.lookup(topic)?.latest.arrival_ms, topic))
                            })
                            .collect();
                        by_arrival.sort_by_key(|(arrival, _)| std::cmp::Reverse(*arrival));
                        by_arrival.into_iter().map(|(_, topic)| topic).collect()
                    } else {
                        names.iter().rev().collect()
                    };
                    closed.extend(
                        picked
                            .into_iter()
                            .filter_map(|topic| period_copy(&inner, topic, true))
                            // A cleared (empty) retained period takes no place in the list.
                            .filter(|copy| !copy.latest.is_empty())
                            .take(CLOSED_PER_KIND)
                            .map(|copy| (*kind, copy)),
                    );
                }
                (location.to_string(), current, closed)
            })
            .collect()
    };
    let scopes: Vec<Json> = scopes
        .into_iter()
        .map(|(scope, current, closed)| {
            let current: serde_json::Map<String, Json> = current
                .into_iter()
                .filter(|(_, copy)| !copy.latest.is_empty())
                .map(|(kind, copy)| {
                    let mut result = shown(decode::<OeeResult>(&copy.latest, "uns/oee/v1"));
                    if let Some(object) = result.as_object_mut() {
                        object.insert("arrival_ms".to_owned(), json!(copy.arrival_ms));
                        object.insert("topic".to_owned(), json!(&*copy.topic));
                    }
                    (kind.to_owned(), result)
                })
                .collect();
            let closed: Vec<Json> = closed
                .into_iter()
                .filter(|(_, copy)| !copy.latest.is_empty())
                .map(|(kind, copy)| closed_json(kind, &copy))
                .collect();
            json!({ "scope": scope, "current": current, "closed": closed })
        })
        .collect();
    axum::Json(json!({ "scopes": scopes })).into_response()
}

/// One closed period: its latest version's figures and every version seen, oldest first.
fn closed_json(kind: &str, copy: &PeriodCopy) -> Json {
    let latest = match decode::<OeeResult>(&copy.latest, "uns/oee/v1") {
        Ok(Some(result)) => result,
        Ok(None) => return Json::Null,
        Err(reason) => return json!({ "topic": &*copy.topic, "kind": kind, "error": reason }),
    };
    let mut versions: Vec<Json> = copy
        .history
        .iter()
        .filter_map(|(arrival_ms, payload)| {
            let result: OeeResult = serde_json::from_slice(payload).ok()?;
            Some(json!({
                "version": result.version,
                "oee": result.oee,
                "corrects": result.corrects,
                "reason": result.reason,
                "arrival_ms": arrival_ms,
            }))
        })
        .collect();
    // Re-delivered retained copies of the same version are one version.
    versions.dedup_by(|a, b| a["version"] == b["version"]);
    json!({
        "topic": &*copy.topic,
        "kind": kind,
        "id": latest.period.id,
        "start": latest.start,
        "end": latest.end,
        "version": latest.version,
        "final": latest.is_final,
        "availability": latest.availability,
        "performance": latest.performance,
        "quality": latest.quality,
        "oee": latest.oee,
        "versions": versions,
    })
}

/// `GET /api/v1/console/work-orders`.
pub async fn work_orders(State(shared): State<Arc<Shared>>) -> Response {
    let entries: Vec<_> = {
        let inner = shared.lock();
        inner
            .index
            .work_orders()
            .filter_map(|topic| inner.tree.lookup(topic).cloned())
            .collect()
    };
    let mut orders = Vec::new();
    let mut invalid = Vec::new();
    for entry in entries {
        // An empty retained payload clears the document.
        if entry.latest.payload.is_empty() {
            continue;
        }
        match serde_json::from_slice::<WorkOrder>(&entry.latest.payload) {
            Ok(order) => orders.push((order.updated_at.to_string(), entry, order)),
            Err(err) => invalid.push(json!({
                "topic": &*entry.name,
                "error": format!("not a uns/work-order/v1 document: {err}"),
            })),
        }
    }
    orders.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
    let orders: Vec<Json> = orders
        .into_iter()
        .map(|(_, entry, order)| {
            json!({
                "topic": &*entry.name,
                "arrival_ms": entry.latest.arrival_ms,
                "order": order,
            })
        })
        .collect();
    axum::Json(json!({ "work_orders": orders, "invalid": invalid })).into_response()
}

/// `GET /api/v1/console/work-order?topic=`.
pub async fn work_order(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    let params = params(raw);
    let Some(topic) = param(&params, "topic") else {
        return error(StatusCode::BAD_REQUEST, "topic= is required");
    };
    let events_topic = match UnsTopic::from_str(topic) {
        Ok(UnsTopic::Located {
            location,
            class: Class::WorkOrder(id),
        }) => UnsTopic::Located {
            location,
            class: Class::WorkOrderEvents(id),
        }
        .to_string(),
        Ok(_) => return error(StatusCode::BAD_REQUEST, "topic= must be a _wo/{id} topic"),
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("topic= is not a UNS topic: {err}"),
            );
        }
    };
    let (entry, events) = {
        let inner = shared.lock();
        (
            inner.tree.lookup(topic).cloned(),
            inner.tree.lookup(&events_topic).cloned(),
        )
    };
    let Some(entry) = entry else {
        return error(StatusCode::NOT_FOUND, "no work order on that topic yet");
    };
    let order = match serde_json::from_slice::<WorkOrder>(&entry.latest.payload) {
        Ok(order) => order,
        Err(err) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("not a uns/work-order/v1 document: {err}"),
            );
        }
    };
    let events: Vec<Json> = events
        .map(|events| {
            events
                .history
                .iter()
                .map(
                    |point| match serde_json::from_slice::<WorkOrderEvent>(&point.payload) {
                        Ok(event) => json!({ "arrival_ms": point.arrival_ms, "event": event }),
                        Err(err) => json!({
                            "arrival_ms": point.arrival_ms,
                            "error": format!("not a uns/work-order-event/v1 event: {err}"),
                        }),
                    },
                )
                .collect()
        })
        .unwrap_or_default();
    axum::Json(json!({
        "topic": topic,
        "arrival_ms": entry.latest.arrival_ms,
        "order": order,
        "events_topic": events_topic,
        "events": events,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_keeps_work_order_documents_only() {
        let mut index = Index::default();
        for topic in [
            "uns/v1/acme/berlin/packaging/line-1/_wo/wo-1",
            "uns/v1/acme/berlin/packaging/line-1/_wo/wo-1/events",
            "uns/v1/acme/berlin/packaging/line-1/_wo/_active",
            "uns/v1/acme/berlin/packaging/line-1/filler/_state",
            "uns/v1/acme/_wo",
            "spBv1.0/acme/DDATA/line-1/filler",
        ] {
            index.add(topic);
        }
        let found: Vec<&str> = index.work_orders().map(|topic| &**topic).collect();
        assert_eq!(found, ["uns/v1/acme/berlin/packaging/line-1/_wo/wo-1"]);
    }

    #[test]
    fn the_index_files_plant_oee_service_and_sys_topics() {
        let mut index = Index::default();
        for topic in [
            "uns/v1/acme/berlin/packaging/line-1/filler/_meta",
            "uns/v1/acme/berlin/packaging/line-1/filler/_state",
            "uns/v1/acme/berlin/packaging/line-1/filler/_state/events",
            "uns/v1/acme/berlin/packaging/line-1/filler/_count/good",
            "uns/v1/acme/berlin/packaging/line-1/filler/_count/events",
            "uns/v1/acme/berlin/packaging/line-1/_wo/_active",
            "uns/v1/acme/berlin/packaging/line-1/_meta",
            "uns/v1/acme/berlin/packaging/line-1/_oee/current/hour",
            "uns/v1/acme/berlin/packaging/line-1/_oee/hour/2026-12-04t06",
            "uns/v1/_services/oee",
            "uns/v1/_schemas/state/v1",
            "$SYS/broker/uptime",
            "uns/v1/ACME/not-a-uns-topic/_state",
            "machine/speed",
        ] {
            index.add(topic);
        }
        let nodes: Vec<String> = index.nodes.keys().map(ToString::to_string).collect();
        assert_eq!(
            nodes,
            [
                "acme/berlin/packaging/line-1",
                "acme/berlin/packaging/line-1/filler"
            ]
        );
        let filler = &index.nodes[&"acme/berlin/packaging/line-1/filler"
            .parse::<Location>()
            .expect("a location")];
        assert!(filler.meta.is_some() && filler.state.is_some() && filler.active.is_none());
        assert_eq!(filler.counts.keys().copied().collect::<Vec<_>>(), ["good"]);
        let line = &index.nodes[&"acme/berlin/packaging/line-1"
            .parse::<Location>()
            .expect("a location")];
        assert!(line.active.is_some() && line.meta.is_some() && line.state.is_none());
        let oee: Vec<_> = index.oee.values().collect();
        assert_eq!(oee.len(), 1);
        assert_eq!(oee[0].current.keys().copied().collect::<Vec<_>>(), ["hour"]);
        assert_eq!(oee[0].closed["hour"].len(), 1);
        assert_eq!(index.services.len(), 1);
        assert_eq!(index.sys.len(), 1);
        assert_eq!(index.work_orders().count(), 0);
    }
}
