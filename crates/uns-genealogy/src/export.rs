//! What regulators and partners read: GS1 EPCIS 2.0 JSON-LD, the FSMA 204 sortable spreadsheet of
//! a trace, and the recall sheet (one row per affected lot).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Value, json};
use uns_model::payload::{GenealogyEvent, GenealogyKind, LotQuantity, LotStatus, Timestamp};
use uns_model::topic::{Id, Location};
use uns_store::{Chain, ReadableTx, StoreError};
use uuid::Uuid;

use crate::ledger::{
    CHAIN, EVENTS, LOT_EVENTS, LOTS, Ledger, LogEntry, LotRecord, StatusChange, decode_entry,
    prefix_end, prefix_key,
};
use crate::trace::Trace;

/// The EPCIS 2.0 JSON-LD context.
pub const EPCIS_CONTEXT: &str = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld";

/// Records read per batch when an export walks the log.
const BATCH: usize = 1024;

/// Percent-encodes everything but URI unreserved characters.
fn uri_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The EPCIS class identifier of a lot: `urn:uns:lot:{material}:{lot}`.
pub fn lot_uri(material: &str, lot: &Id) -> String {
    format!("urn:uns:lot:{}:{}", uri_part(material), lot.as_str())
}

fn location_uri(location: &Location) -> String {
    let path: Vec<String> = location
        .segments()
        .iter()
        .map(|s| uri_part(s.as_str()))
        .collect();
    format!("urn:uns:loc:{}", path.join(":"))
}

/// All the events of the log, with the material of every lot they name.
struct LogView {
    events: Vec<(u64, u64, Option<Location>, GenealogyEvent)>,
    /// Quality decisions: (seq, record time, the change).
    decisions: Vec<(u64, u64, StatusChange)>,
    materials: BTreeMap<Id, String>,
}

fn read_log(tx: &impl ReadableTx) -> Result<LogView, StoreError> {
    let chain = Chain::new(CHAIN);
    let mut events = Vec::new();
    let mut decisions = Vec::new();
    let mut from = 1;
    loop {
        let batch = chain.iter(tx, from, BATCH)?;
        let Some(last) = batch.last() else { break };
        from = last.seq + 1;
        for record in batch {
            let decoded = decode_entry(record.seq, record.time_ms, &record.payload)?;
            match decoded.entry {
                LogEntry::Event { site, event } => {
                    events.push((record.seq, record.time_ms, site, event));
                }
                LogEntry::Status(change) => {
                    decisions.push((record.seq, record.time_ms, change));
                }
            }
        }
    }
    let mut materials = BTreeMap::new();
    for (_, _, _, event) in &events {
        for item in items(&event.kind) {
            if let Some(material) = &item.material {
                materials
                    .entry(item.lot.clone())
                    .or_insert_with(|| material.clone());
            }
        }
    }
    for (_, _, _, event) in &events {
        for item in items(&event.kind) {
            if !materials.contains_key(&item.lot)
                && let Some(record) = tx.get(&LOTS, item.lot.as_str())?
            {
                materials.insert(item.lot.clone(), record.lot.material);
            }
        }
    }
    for (_, _, change) in &decisions {
        if !materials.contains_key(&change.lot)
            && let Some(record) = tx.get(&LOTS, change.lot.as_str())?
        {
            materials.insert(change.lot.clone(), record.lot.material);
        }
    }
    Ok(LogView {
        events,
        decisions,
        materials,
    })
}

fn items(kind: &GenealogyKind) -> Vec<&LotQuantity> {
    match kind {
        GenealogyKind::Receive { lot, .. }
        | GenealogyKind::Scrap { lot }
        | GenealogyKind::Ship { lot, .. } => vec![lot],
        GenealogyKind::Transform {
            consumed, produced, ..
        } => consumed.iter().chain(produced).collect(),
        GenealogyKind::Split { into, .. } => into.iter().collect(),
        GenealogyKind::Merge { sources, into } => sources.iter().chain([into]).collect(),
        GenealogyKind::Move { .. } | GenealogyKind::Correct => Vec::new(),
    }
}

fn lots_named(kind: &GenealogyKind) -> Vec<&Id> {
    let mut lots: Vec<&Id> = items(kind).into_iter().map(|i| &i.lot).collect();
    match kind {
        GenealogyKind::Split { source, .. } => lots.push(source),
        GenealogyKind::Move { lot, .. } => lots.push(lot),
        _ => {}
    }
    lots
}

fn time_ms(ms: u64) -> Timestamp {
    Timestamp::from_unix_ms(i64::try_from(ms).unwrap_or(i64::MAX))
        .or_else(|| Timestamp::from_unix_ms(0))
        .expect("the Unix epoch is a valid time")
}

fn quantity_list(items: &[&LotQuantity], materials: &BTreeMap<Id, String>) -> Value {
    Value::Array(
        items
            .iter()
            .map(|item| {
                let material = item
                    .material
                    .as_ref()
                    .or_else(|| materials.get(&item.lot))
                    .map_or("unknown", String::as_str);
                json!({
                    "epcClass": lot_uri(material, &item.lot),
                    "quantity": item.quantity.qty,
                    "uom": item.quantity.uom.as_str(),
                })
            })
            .collect(),
    )
}

/// One EPCIS event for a genealogy event (`None` for `correct`, which only voids).
fn epcis_event(
    event: &GenealogyEvent,
    site: Option<&Location>,
    record_ms: u64,
    materials: &BTreeMap<Id, String>,
) -> Option<Value> {
    let mut out = json!({
        "eventID": format!("urn:uuid:{}", event.header.event_id),
        "eventTime": event.header.occurred_at.to_string(),
        "recordTime": time_ms(record_ms).to_string(),
        "eventTimeZoneOffset": "+00:00",
    });
    let fields = match &event.kind {
        GenealogyKind::Receive { lot, location, .. } => json!({
            "type": "ObjectEvent",
            "action": "ADD",
            "bizStep": "receiving",
            "disposition": "active",
            "quantityList": quantity_list(&[lot], materials),
            "bizLocation": location.as_ref().or(site).map(|l| json!({"id": location_uri(l)})),
        }),
        GenealogyKind::Ship { lot, customer, to } => {
            let mut destinations = Vec::new();
            if let Some(customer) = customer {
                destinations.push(json!({
                    "type": "owning_party",
                    "destination": format!("urn:uns:party:{}", uri_part(customer)),
                }));
            }
            if let Some(to) = to {
                destinations.push(json!({"type": "location", "destination": location_uri(to)}));
            }
            json!({
                "type": "ObjectEvent",
                "action": "OBSERVE",
                "bizStep": "shipping",
                "disposition": "in_transit",
                "quantityList": quantity_list(&[lot], materials),
                "readPoint": site.map(|l| json!({"id": location_uri(l)})),
                "destinationList": (!destinations.is_empty()).then_some(destinations),
            })
        }
        GenealogyKind::Scrap { lot } => json!({
            "type": "ObjectEvent",
            "action": "DELETE",
            "bizStep": "destroying",
            "disposition": "destroyed",
            "quantityList": quantity_list(&[lot], materials),
        }),
        GenealogyKind::Move { lot, to, .. } => {
            let material = materials.get(lot).map_or("unknown", String::as_str);
            json!({
                "type": "ObjectEvent",
                "action": "OBSERVE",
                "bizStep": "storing",
                "disposition": "active",
                "quantityList": [{"epcClass": lot_uri(material, lot)}],
                "bizLocation": {"id": location_uri(to)},
            })
        }
        GenealogyKind::Transform {
            consumed,
            produced,
            wo_id,
        } => json!({
            "type": "TransformationEvent",
            "bizStep": "commissioning",
            "disposition": "active",
            "inputQuantityList": quantity_list(&consumed.iter().collect::<Vec<_>>(), materials),
            "outputQuantityList": quantity_list(&produced.iter().collect::<Vec<_>>(), materials),
            "transformationID": wo_id.as_ref().map(|wo| format!("urn:uns:wo:{wo}")),
            "readPoint": site.map(|l| json!({"id": location_uri(l)})),
        }),
        GenealogyKind::Split { source, into } => {
            let inputs: Vec<LotQuantity> = into
                .iter()
                .map(|sublot| LotQuantity {
                    lot: source.clone(),
                    material: None,
                    quantity: sublot.quantity,
                })
                .collect();
            json!({
                "type": "TransformationEvent",
                "bizStep": "repackaging",
                "inputQuantityList": quantity_list(&inputs.iter().collect::<Vec<_>>(), materials),
                "outputQuantityList": quantity_list(&into.iter().collect::<Vec<_>>(), materials),
            })
        }
        GenealogyKind::Merge { sources, into } => json!({
            "type": "TransformationEvent",
            "bizStep": "repackaging",
            "inputQuantityList": quantity_list(&sources.iter().collect::<Vec<_>>(), materials),
            "outputQuantityList": quantity_list(&[into], materials),
        }),
        GenealogyKind::Correct => return None,
    };
    if let (Value::Object(out), Value::Object(fields)) = (&mut out, fields) {
        out.extend(fields.into_iter().filter(|(_, v)| !v.is_null()));
    }
    Some(out)
}

/// The CBV disposition of a lot status set by a quality decision.
fn disposition(status: LotStatus) -> &'static str {
    match status {
        LotStatus::Released => "available",
        LotStatus::Quarantine => "unavailable",
        LotStatus::Rejected => "non_conformant",
        LotStatus::Planned | LotStatus::InProduction => "in_progress",
        LotStatus::Consumed => "inactive",
        LotStatus::Shipped => "in_transit",
        LotStatus::Destroyed => "destroyed",
    }
}

/// A quality decision as an EPCIS `ObjectEvent` (OBSERVE, `inspecting`) with the disposition of
/// the status it set.
fn epcis_decision(
    change: &StatusChange,
    record_ms: u64,
    materials: &BTreeMap<Id, String>,
) -> Value {
    let material = materials.get(&change.lot).map_or("unknown", String::as_str);
    json!({
        "eventID": format!("urn:uuid:{}", change.event_id),
        "eventTime": change.at.to_string(),
        "recordTime": time_ms(record_ms).to_string(),
        "eventTimeZoneOffset": "+00:00",
        "type": "ObjectEvent",
        "action": "OBSERVE",
        "bizStep": "inspecting",
        "disposition": disposition(change.to),
        "quantityList": [{"epcClass": lot_uri(material, &change.lot)}],
    })
}

/// Which events an export covers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportFilter {
    /// Only events that name one of these lots.
    pub lots: Option<BTreeSet<Id>>,
    /// Only events that occurred at or after.
    pub from: Option<Timestamp>,
    /// Only events that occurred before.
    pub to: Option<Timestamp>,
}

impl ExportFilter {
    fn keeps_decision(&self, change: &StatusChange) -> bool {
        let at = change.at;
        if self.from.is_some_and(|from| at < from) || self.to.is_some_and(|to| at >= to) {
            return false;
        }
        self.lots
            .as_ref()
            .is_none_or(|lots| lots.contains(&change.lot))
    }

    fn keeps(&self, event: &GenealogyEvent) -> bool {
        let at = event.header.occurred_at;
        if self.from.is_some_and(|from| at < from) || self.to.is_some_and(|to| at >= to) {
            return false;
        }
        match &self.lots {
            None => true,
            Some(lots) => lots_named(&event.kind)
                .into_iter()
                .any(|l| lots.contains(l)),
        }
    }
}

pub(crate) fn epcis_in(
    tx: &impl ReadableTx,
    filter: &ExportFilter,
    created_ms: u64,
) -> Result<Value, StoreError> {
    let view = read_log(tx)?;
    let by_id: BTreeMap<Uuid, usize> = view
        .events
        .iter()
        .enumerate()
        .map(|(n, (_, _, _, e))| (e.header.event_id, n))
        .collect();
    // (chain seq, event): the log's order, quality decisions among the events.
    let mut list: Vec<(u64, Value)> = Vec::new();
    for (seq, record_ms, change) in &view.decisions {
        if filter.keeps_decision(change) {
            list.push((*seq, epcis_decision(change, *record_ms, &view.materials)));
        }
    }
    for (seq, record_ms, site, event) in &view.events {
        // A correction declares the original an error (same eventID, with errorDeclaration) and
        // names its replacement as the corrective event.
        if let Some(original) = event.header.corrects.and_then(|id| by_id.get(&id)) {
            let (_, original_ms, original_site, original_event) = &view.events[*original];
            let keep = filter.keeps(original_event) || filter.keeps(event);
            if keep
                && let Some(mut declared) = epcis_event(
                    original_event,
                    original_site.as_ref(),
                    *original_ms,
                    &view.materials,
                )
            {
                let corrective: Vec<String> = match event.kind {
                    GenealogyKind::Correct => Vec::new(),
                    _ => vec![format!("urn:uuid:{}", event.header.event_id)],
                };
                declared["errorDeclaration"] = json!({
                    "declarationTime": event.header.occurred_at.to_string(),
                    "reason": "incorrect_data",
                    "correctiveEventIDs": corrective,
                });
                list.push((*seq, declared));
            }
        }
        if filter.keeps(event)
            && let Some(value) = epcis_event(event, site.as_ref(), *record_ms, &view.materials)
        {
            list.push((*seq, value));
        }
    }
    // Stable: the error declaration stays before its corrective event.
    list.sort_by_key(|(seq, _)| *seq);
    let list: Vec<Value> = list.into_iter().map(|(_, value)| value).collect();
    Ok(json!({
        "@context": [EPCIS_CONTEXT, {"uns": "https://uns-rs.github.io/ns/genealogy#"}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": time_ms(created_ms).to_string(),
        "epcisBody": {"eventList": list},
    }))
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn csv_row(out: &mut String, fields: &[String]) {
    let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    out.push_str(&line.join(","));
    out.push_str("\r\n");
}

/// The FSMA 204 sheet's columns, in order.
pub const FSMA_COLUMNS: [&str; 15] = [
    "Event ID",
    "Critical Tracking Event",
    "Event Date",
    "Traceability Lot Code",
    "Product Description",
    "Quantity",
    "Unit of Measure",
    "Location",
    "Traceability Lot Code Source",
    "Input Traceability Lot Code",
    "Input Product Description",
    "Input Quantity",
    "Input Unit of Measure",
    "Reference Document",
    "Ship To",
];

/// The recall sheet's columns, in order.
pub const RECALL_COLUMNS: [&str; 11] = [
    "Lot",
    "Material",
    "Quantity",
    "Unit of Measure",
    "Status",
    "Location",
    "Created",
    "Produced By",
    "Shipped Quantity",
    "Customers",
    "Trace Depth",
];

fn seqs_of(tx: &impl ReadableTx, lot: &str) -> Result<Vec<u64>, StoreError> {
    let lower = prefix_key(lot);
    let upper = prefix_end(lot);
    Ok(tx
        .range(&LOT_EVENTS, lower.as_slice()..upper.as_slice())?
        .into_iter()
        .filter_map(|(key, _)| {
            let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
            Some(u64::from_be_bytes(tail))
        })
        .collect())
}

fn fsma_in(tx: &impl ReadableTx, trace: &Trace) -> Result<String, StoreError> {
    let lots: BTreeSet<&Id> = trace.lots.iter().map(|l| &l.lot_id).collect();
    let mut seqs = BTreeSet::new();
    for lot in &lots {
        seqs.extend(seqs_of(tx, lot.as_str())?);
    }
    let materials: BTreeMap<&Id, &str> = trace
        .lots
        .iter()
        .filter_map(|l| Some((&l.lot_id, l.record.as_ref()?.lot.material.as_str())))
        .collect();
    let material = |lot: &Id, item: Option<&String>| -> String {
        item.map(String::as_str)
            .or_else(|| materials.get(lot).copied())
            .unwrap_or("")
            .to_owned()
    };
    let chain = Chain::new(CHAIN);
    let mut out = String::new();
    csv_row(&mut out, &FSMA_COLUMNS.map(str::to_owned));
    for seq in seqs {
        let Some(record) = chain.get(tx, seq)? else {
            continue;
        };
        let LogEntry::Event { site, event } =
            decode_entry(record.seq, record.time_ms, &record.payload)?.entry
        else {
            continue;
        };
        let voided = tx
            .get(&EVENTS, &event.header.event_id.to_string())?
            .is_some_and(|applied| applied.voided.is_some());
        if voided {
            continue;
        }
        let id = event.header.event_id.to_string();
        let date = event.header.occurred_at.to_string();
        let site_text = site.as_ref().map(ToString::to_string).unwrap_or_default();
        match &event.kind {
            GenealogyKind::Receive {
                lot,
                location,
                supplier_lot,
            } => csv_row(
                &mut out,
                &[
                    id,
                    "Receiving".to_owned(),
                    date,
                    lot.lot.to_string(),
                    material(&lot.lot, lot.material.as_ref()),
                    lot.quantity.qty.to_string(),
                    lot.quantity.uom.to_string(),
                    location
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    site_text,
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    supplier_lot
                        .as_ref()
                        .map(|s| format!("supplier lot {s}"))
                        .unwrap_or_default(),
                    String::new(),
                ],
            ),
            GenealogyKind::Ship { lot, customer, to } => csv_row(
                &mut out,
                &[
                    id,
                    "Shipping".to_owned(),
                    date,
                    lot.lot.to_string(),
                    material(&lot.lot, lot.material.as_ref()),
                    lot.quantity.qty.to_string(),
                    lot.quantity.uom.to_string(),
                    site_text.clone(),
                    site_text,
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    [customer.clone(), to.as_ref().map(ToString::to_string)]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" / "),
                ],
            ),
            GenealogyKind::Transform {
                consumed,
                produced,
                wo_id,
            } => {
                for output in produced {
                    for input in consumed {
                        csv_row(
                            &mut out,
                            &[
                                id.clone(),
                                "Transformation".to_owned(),
                                date.clone(),
                                output.lot.to_string(),
                                material(&output.lot, output.material.as_ref()),
                                output.quantity.qty.to_string(),
                                output.quantity.uom.to_string(),
                                site_text.clone(),
                                site_text.clone(),
                                input.lot.to_string(),
                                material(&input.lot, input.material.as_ref()),
                                input.quantity.qty.to_string(),
                                input.quantity.uom.to_string(),
                                wo_id
                                    .as_ref()
                                    .map(|wo| format!("work order {wo}"))
                                    .unwrap_or_default(),
                                String::new(),
                            ],
                        );
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The recall sheet of a trace: one row per affected lot.
pub fn recall_csv(trace: &Trace) -> String {
    let mut out = String::new();
    csv_row(&mut out, &RECALL_COLUMNS.map(str::to_owned));
    for lot in &trace.lots {
        let Some(record) = &lot.record else {
            continue;
        };
        let LotRecord {
            lot: doc,
            shipments,
            created_at,
            ..
        } = record;
        let shipped: f64 = shipments.iter().map(|s| s.quantity.qty).sum();
        let customers: BTreeSet<&str> = shipments
            .iter()
            .filter_map(|s| s.customer.as_deref())
            .collect();
        csv_row(
            &mut out,
            &[
                doc.id.to_string(),
                doc.material.clone(),
                doc.quantity.qty.to_string(),
                doc.quantity.uom.to_string(),
                serde_json::to_value(doc.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                doc.location
                    .as_ref()
                    .or(record.site.as_ref())
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                created_at.to_string(),
                doc.produced_by
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                shipped.to_string(),
                customers.into_iter().collect::<Vec<_>>().join("; "),
                lot.depth.to_string(),
            ],
        );
    }
    out
}

impl Ledger {
    /// The EPCIS 2.0 JSON-LD document of the events `filter` keeps, created at `now_ms`. Walks the
    /// whole log (an export, not a trace).
    pub async fn epcis(&self, filter: ExportFilter, now_ms: u64) -> Result<Value, StoreError> {
        self.store
            .read(move |tx| epcis_in(tx, &filter, now_ms))
            .await
    }

    /// The FSMA 204 sortable spreadsheet (CSV) of the critical tracking events (receiving,
    /// transformation, shipping) of the lots in `trace`; a transformation is one row per input
    /// (and output) with a shared event id. Corrected events are left out.
    pub async fn fsma_csv(&self, trace: Trace) -> Result<String, StoreError> {
        self.store.read(move |tx| fsma_in(tx, &trace)).await
    }
}
