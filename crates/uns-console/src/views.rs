//! The plant views' data, read from the retained UNS topics the console already holds (no call to
//! another service): each new topic name is parsed once through the model ([`UnsTopic`]) and, if a
//! view reads its class, kept in an [`Index`]; a view's answer decodes the latest payload of each
//! indexed topic as the model's typed document.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/console/work-orders` | every `_wo/{id}` document, newest change first; documents that do not decode are listed with the reason |
//! | `GET /api/v1/console/work-order?topic=` | one document and the events of `{topic}/events` the console's history still holds (bounded by `[console] history_*`), oldest first |
//!
//! The work-order page's lifecycle buttons post to the workorders service's own API
//! (`/api/v1/work-orders/{id}/{verb}`), which decides; the console only shows the answer.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use uns_model::payload::{WorkOrder, WorkOrderEvent};
use uns_model::topic::{Class, UnsTopic};

use crate::Shared;
use crate::api::{error, param, params};

/// The topics the views read, by kind. Names are those of the tree's topics.
#[derive(Debug, Default)]
pub struct Index {
    /// `_wo/{id}` documents.
    work_orders: BTreeSet<Arc<str>>,
}

impl Index {
    /// Files `topic` (a topic name seen for the first time) under the view that reads it, if any.
    pub fn add(&mut self, topic: &str) {
        if !topic.starts_with("uns/") {
            return;
        }
        let Ok(parsed) = UnsTopic::from_str(topic) else {
            return;
        };
        if let Some(Class::WorkOrder(_)) = parsed.class() {
            self.work_orders.insert(Arc::from(topic));
        }
    }

    /// The `_wo/{id}` topics, sorted by name.
    pub fn work_orders(&self) -> impl Iterator<Item = &Arc<str>> {
        self.work_orders.iter()
    }
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
    match UnsTopic::from_str(topic) {
        Ok(parsed) if matches!(parsed.class(), Some(Class::WorkOrder(_))) => {}
        Ok(_) => return error(StatusCode::BAD_REQUEST, "topic= must be a _wo/{id} topic"),
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("topic= is not a UNS topic: {err}"),
            );
        }
    }
    let events_topic = format!("{topic}/events");
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
}
