//! [`Genealogy`]: the service around the [`Ledger`]: `_genealogy/events` in, `_lot/{id}` out,
//! refusals on `_errors`, `_cmd/lot/*` and `_cmd/trace` over MQTT 5 request/response, and the HTTP
//! API (`/api/v1/trace/{lot}`, `/api/v1/lots` with the lot commands as POSTs,
//! `/api/v1/epcis/events`, `/api/v1/genealogy/verify`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use uns_client::{ClientError, Message, UnsClient};
use uns_model::payload::{
    CmdReply, ErrorReport, EventHeader, GenealogyEvent, GenealogyKind, LotQuantity, Quantity,
    SchemaTag, Timestamp, Uom, decode,
};
use uns_model::topic::{Class, Id, Location, TopicFilter, UnsTopic};
use uns_service::{ConfigEnv, ConfigError, Context, Service};
use uuid::Uuid;

use crate::export::{ExportFilter, recall_csv};
use crate::ledger::{
    Decision, Ledger, LedgerError, LotRecord, Outcome, StatusChangeRequest, Tolerances,
};
use crate::trace::{Direction, TraceQuery};

/// The file in the service's data directory.
pub const FILE: &str = "genealogy.redb";

/// The raw lots `uns up --demo` receives at start (lot, material, quantity, unit), at
/// [`DEMO_SITE`]: the components of the ERP bridge's demo orders, which name these lots, so
/// the demo work orders' transforms consume them.
pub const DEMO_LOTS: [(&str, &str, f64, Uom); 3] = [
    ("pet-2026-001", "RM-PREFORM", 100_000.0, Uom::EA),
    ("cap-2026-001", "RM-CAP", 100_000.0, Uom::EA),
    ("juice-2026-001", "RM-JUICE", 100_000.0, Uom::LTR),
];

/// Where the demo lots are received.
pub const DEMO_SITE: &str = "acme/berlin";

/// The `[genealogy]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenealogyConfig {
    /// Mass balance: relative deviation allowed between a transform's inputs and outputs (0.02 = 2 %).
    pub tolerance: f64,
    /// Per produced material number, overriding `tolerance`.
    pub material_tolerances: BTreeMap<String, f64>,
    /// Largest `depth` a trace request may ask for (and the depth of one that asks for none).
    pub max_depth: u32,
}

impl Default for GenealogyConfig {
    fn default() -> Self {
        Self {
            tolerance: 0.02,
            material_tolerances: BTreeMap::new(),
            max_depth: 64,
        }
    }
}

/// The genealogy service.
pub struct Genealogy {
    tolerances: Tolerances,
    max_depth: u32,
    demo: bool,
    ledger: Mutex<Option<Ledger>>,
}

/// Why the service loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum GenealogyError {
    /// The MQTT client failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The store failed.
    #[error("genealogy store: {0}")]
    Store(#[from] uns_store::StoreError),
    /// The HTTP routes could not be mounted.
    #[error("mounting the HTTP routes: {0}")]
    Mount(#[from] uns_service::MountError),
    /// Opening the store panicked or was cancelled.
    #[error("opening the store: {0}")]
    Join(String),
}

fn valid_tolerance(value: f64) -> bool {
    value.is_finite() && (0.0..=1.0).contains(&value)
}

impl Service for Genealogy {
    const NAME: &'static str = "genealogy";
    const SECTION: &'static str = "genealogy";
    const ABOUT: &'static str =
        "Lots, genealogy events, forward/backward trace for recalls, EPCIS and FSMA 204 exports";
    type Config = GenealogyConfig;
    type Error = GenealogyError;

    fn configure(config: GenealogyConfig, env: &ConfigEnv) -> Result<Self, ConfigError> {
        if !valid_tolerance(config.tolerance) {
            return Err(ConfigError::new(
                "tolerance",
                "must be a fraction between 0 and 1 (0.02 = 2 %)",
            ));
        }
        for (material, tolerance) in &config.material_tolerances {
            if !valid_tolerance(*tolerance) {
                return Err(ConfigError::new(
                    format!("material_tolerances.{material}"),
                    "must be a fraction between 0 and 1",
                ));
            }
        }
        if config.max_depth == 0 {
            return Err(ConfigError::new("max_depth", "must be at least 1"));
        }
        Ok(Self {
            tolerances: Tolerances {
                default: config.tolerance,
                materials: config.material_tolerances,
            },
            max_depth: config.max_depth,
            demo: env.demo,
            ledger: Mutex::new(None),
        })
    }

    async fn run(&self, mut ctx: Context) -> Result<(), GenealogyError> {
        let ledger = self.ledger(&ctx).await?;
        for filter in TopicFilter::at_any_location(&Class::GenealogyEvents) {
            ctx.client.subscribe(&filter).await?;
        }
        for verb in ["receive", "release", "quarantine", "reject", "ship"] {
            let class = Class::Cmd(vec![id("lot"), id(verb)]);
            for filter in TopicFilter::at_any_location(&class) {
                ctx.client.subscribe(&filter).await?;
            }
        }
        for filter in TopicFilter::at_any_location(&Class::Cmd(vec![id("trace")])) {
            ctx.client.subscribe(&filter).await?;
        }
        let handler = Handler {
            ledger: ledger.clone(),
            client: ctx.client.clone(),
            service: id(Self::NAME),
            max_depth: self.max_depth,
        };
        ctx.http.mount(routes(Api {
            ledger,
            max_depth: self.max_depth,
            handler: handler.clone(),
        }))?;
        if self.demo {
            handler.receive_demo_lots().await?;
        }
        loop {
            tokio::select! {
                () = ctx.shutdown.cancelled() => return Ok(()),
                message = ctx.inbox.recv() => {
                    let Some(message) = message else { return Ok(()) };
                    handler.handle(&message).await?;
                }
            }
        }
    }
}

impl Genealogy {
    /// The ledger, opened on the first run and kept across restarts of the loop (the file is
    /// opened once per process).
    async fn ledger(&self, ctx: &Context) -> Result<Ledger, GenealogyError> {
        if let Some(ledger) = self
            .ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(ledger);
        }
        let path = ctx.data_dir.join(FILE);
        let tolerances = self.tolerances.clone();
        let ledger = tokio::task::spawn_blocking(move || Ledger::open(&path, tolerances))
            .await
            .map_err(|err| GenealogyError::Join(err.to_string()))??;
        *self.ledger.lock().unwrap_or_else(|p| p.into_inner()) = Some(ledger.clone());
        Ok(ledger)
    }
}

fn id(text: &str) -> Id {
    // Only called with the literal ids of this file, which are valid.
    Id::new(text).unwrap_or_else(|err| unreachable!("{text}: {err}"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn now() -> Timestamp {
    Timestamp::from_unix_ms(i64::try_from(now_ms()).unwrap_or(i64::MAX))
        .unwrap_or_else(|| unreachable!("the clock is within chrono's range"))
}

fn excerpt(payload: &[u8]) -> String {
    String::from_utf8_lossy(&payload[..payload.len().min(512)]).into_owned()
}

/// The body of `_cmd/lot/receive`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiveCmd {
    lot: Id,
    material: String,
    quantity: Quantity,
    #[serde(default)]
    location: Option<Location>,
    #[serde(default)]
    supplier_lot: Option<String>,
    #[serde(default)]
    event_id: Option<Uuid>,
}

/// The body of `_cmd/lot/ship`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShipCmd {
    lot: Id,
    quantity: Quantity,
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    to: Option<Location>,
    #[serde(default)]
    event_id: Option<Uuid>,
}

/// The body of `_cmd/lot/{release,quarantine,reject}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionCmd {
    lot: Id,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    event_id: Option<Uuid>,
}

#[derive(Clone)]
struct Handler {
    ledger: Ledger,
    client: UnsClient,
    service: Id,
    max_depth: u32,
}

fn new_event(event_id: Option<Uuid>, kind: GenealogyKind) -> GenealogyEvent {
    let at = now();
    GenealogyEvent {
        schema: SchemaTag::default(),
        header: EventHeader::new(event_id.unwrap_or_else(Uuid::now_v7), at, at),
        kind,
    }
}

impl Handler {
    async fn handle(&self, message: &Message) -> Result<(), GenealogyError> {
        let Ok(topic) = message.uns_topic() else {
            return Ok(());
        };
        let (Some(location), Some(class)) = (topic.location(), topic.class()) else {
            return Ok(());
        };
        match class {
            Class::GenealogyEvents => match decode::<GenealogyEvent>(&message.payload) {
                Ok(event) => {
                    if let Err(reason) = self.apply(location, event).await? {
                        self.refuse(location, message, "refused", reason).await?;
                    }
                }
                Err(err) => {
                    self.refuse(
                        location,
                        message,
                        "bad_event",
                        format!("not a genealogy event: {err}"),
                    )
                    .await?;
                }
            },
            Class::Cmd(verb) => {
                let verb: Vec<&str> = verb.iter().map(Id::as_str).collect();
                let reply = self.command(location, &verb, &message.payload).await?;
                self.client.reply(message, &reply).await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn refuse(
        &self,
        location: &Location,
        message: &Message,
        kind: &str,
        reason: String,
    ) -> Result<(), ClientError> {
        let report = ErrorReport {
            schema: SchemaTag::default(),
            service: self.service.clone(),
            topic: Some(message.topic.clone()),
            reason,
            payload_excerpt: Some(excerpt(&message.payload)),
            payload_sha256: None,
            occurred_at: now(),
        };
        let errors = UnsTopic::located(location.clone(), Class::Errors);
        self.client.report_error(&errors, kind, &report).await
    }

    /// Applies an event and publishes what changed; `Ok(Err(reason))` when refused.
    async fn apply(
        &self,
        location: &Location,
        event: GenealogyEvent,
    ) -> Result<Result<Outcome, String>, GenealogyError> {
        match self
            .ledger
            .apply(Some(location.clone()), event, now_ms())
            .await
        {
            Ok(outcome) => {
                self.publish(location, &outcome).await?;
                Ok(Ok(outcome))
            }
            Err(LedgerError::Refused(refusal)) => Ok(Err(refusal.to_string())),
            Err(LedgerError::Store(err)) => Err(err.into()),
        }
    }

    async fn publish(&self, location: &Location, outcome: &Outcome) -> Result<(), ClientError> {
        let Outcome::Applied {
            changed, removed, ..
        } = outcome
        else {
            return Ok(());
        };
        for record in changed {
            let site = record.site.clone().unwrap_or_else(|| location.clone());
            let topic = UnsTopic::located(site, Class::Lot(record.lot.id.clone()));
            self.client.publish(&topic, &record.lot).await?;
        }
        for lot in removed {
            // An empty retained message clears the lot's document.
            let topic = UnsTopic::located(location.clone(), Class::Lot(lot.clone()));
            self.client.publish_bytes(&topic, Bytes::new()).await?;
        }
        Ok(())
    }

    async fn command(
        &self,
        location: &Location,
        verb: &[&str],
        body: &[u8],
    ) -> Result<CmdReply, GenealogyError> {
        fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, CmdReply> {
            serde_json::from_slice(body).map_err(|err| CmdReply::error(format!("bad body: {err}")))
        }
        let lot_reply = |outcome: Result<Outcome, String>, lot: &Id| match outcome {
            Ok(Outcome::Applied { changed, .. }) => CmdReply::ok(
                changed
                    .iter()
                    .find(|r| r.lot.id == *lot)
                    .and_then(|r| serde_json::to_value(&r.lot).ok()),
            ),
            Ok(Outcome::Duplicate) => CmdReply::ok(None),
            Err(reason) => CmdReply::error(reason),
        };
        Ok(match verb {
            ["lot", "receive"] => match parse::<ReceiveCmd>(body) {
                Ok(cmd) => {
                    let event = new_event(
                        cmd.event_id,
                        GenealogyKind::Receive {
                            lot: LotQuantity {
                                lot: cmd.lot.clone(),
                                material: Some(cmd.material),
                                quantity: cmd.quantity,
                            },
                            location: cmd.location,
                            supplier_lot: cmd.supplier_lot,
                        },
                    );
                    lot_reply(self.apply(location, event).await?, &cmd.lot)
                }
                Err(reply) => reply,
            },
            ["lot", "ship"] => match parse::<ShipCmd>(body) {
                Ok(cmd) => {
                    let event = new_event(
                        cmd.event_id,
                        GenealogyKind::Ship {
                            lot: LotQuantity {
                                lot: cmd.lot.clone(),
                                material: None,
                                quantity: cmd.quantity,
                            },
                            customer: cmd.customer,
                            to: cmd.to,
                        },
                    );
                    lot_reply(self.apply(location, event).await?, &cmd.lot)
                }
                Err(reply) => reply,
            },
            ["lot", decision @ ("release" | "quarantine" | "reject")] => {
                let decision = match *decision {
                    "release" => Decision::Release,
                    "quarantine" => Decision::Quarantine,
                    _ => Decision::Reject,
                };
                match parse::<DecisionCmd>(body) {
                    Ok(cmd) => {
                        let request = StatusChangeRequest {
                            event_id: cmd.event_id.unwrap_or_else(Uuid::now_v7),
                            lot: cmd.lot.clone(),
                            decision,
                            reason: cmd.reason,
                            by: cmd.by,
                        };
                        let outcome = match self.ledger.decide(request, now_ms()).await {
                            Ok((outcome, _)) => {
                                self.publish(location, &outcome).await?;
                                Ok(outcome)
                            }
                            Err(LedgerError::Refused(refusal)) => Err(refusal.to_string()),
                            Err(LedgerError::Store(err)) => return Err(err.into()),
                        };
                        lot_reply(outcome, &cmd.lot)
                    }
                    Err(reply) => reply,
                }
            }
            ["trace"] => match parse::<TraceQuery>(body) {
                Ok(mut query) => {
                    query.depth = Some(query.depth.unwrap_or(self.max_depth).min(self.max_depth));
                    match self.ledger.trace(query).await? {
                        Some(trace) => CmdReply::ok(serde_json::to_value(&trace).ok()),
                        None => CmdReply::error("unknown lot"),
                    }
                }
                Err(reply) => reply,
            },
            _ => CmdReply::error(format!("unknown command {}", verb.join("/"))),
        })
    }

    async fn receive_demo_lots(&self) -> Result<(), GenealogyError> {
        let site: Location = DEMO_SITE
            .parse()
            .unwrap_or_else(|err| unreachable!("{DEMO_SITE}: {err}"));
        for (lot, material, qty, uom) in DEMO_LOTS {
            let lot = id(lot);
            if self.ledger.lot(&lot).await?.is_some() {
                continue;
            }
            let event = new_event(
                None,
                GenealogyKind::Receive {
                    lot: LotQuantity {
                        lot: lot.clone(),
                        material: Some(material.to_owned()),
                        quantity: Quantity::new(qty, uom),
                    },
                    location: Some(site.clone()),
                    supplier_lot: Some(format!("DEMO-{}", lot.as_str().to_uppercase())),
                },
            );
            match self.apply(&site, event).await? {
                Ok(_) => info!(lot = %lot, "demo lot received"),
                Err(reason) => warn!(lot = %lot, %reason, "demo lot refused"),
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
struct Api {
    ledger: Ledger,
    max_depth: u32,
    /// Carries out the lot commands posted over HTTP exactly as their `_cmd/lot/*` twins.
    handler: Handler,
}

fn query_pairs(raw: Option<&str>) -> BTreeMap<String, String> {
    raw.unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut n = 0;
    while n < bytes.len() {
        match bytes[n] {
            b'%' if n + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[n + 1..n + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        n += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        n += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

fn server_error(err: &uns_store::StoreError) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(serde_json::json!({ "error": err.to_string() })),
    )
        .into_response()
}

fn csv(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
}

/// Reads `direction`, `depth`, `as_of` of a trace request.
fn trace_query(
    lot: &str,
    params: &BTreeMap<String, String>,
    max_depth: u32,
) -> Result<TraceQuery, String> {
    let lot = Id::new(lot).map_err(|err| format!("lot {lot:?}: {err}"))?;
    let direction = match params.get("direction") {
        Some(text) => text.parse::<Direction>()?,
        None => Direction::Backward,
    };
    let depth = match params.get("depth") {
        Some(text) => text
            .parse::<u32>()
            .map_err(|err| format!("depth {text:?}: {err}"))?,
        None => max_depth,
    };
    let as_of = match params.get("as_of") {
        Some(text) => Some(
            text.parse::<Timestamp>()
                .map_err(|err| format!("as_of {text:?}: {err} (RFC 3339)"))?,
        ),
        None => None,
    };
    Ok(TraceQuery {
        lot,
        direction,
        depth: Some(depth.min(max_depth)),
        as_of,
    })
}

async fn get_trace(
    State(api): State<Api>,
    Path(lot): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = query_pairs(raw.as_deref());
    let query = match trace_query(&lot, &params, api.max_depth) {
        Ok(query) => query,
        Err(message) => return bad_request(message),
    };
    let trace = match api.ledger.trace(query).await {
        Ok(Some(trace)) => trace,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({ "error": format!("lot {lot} is unknown") })),
            )
                .into_response();
        }
        Err(err) => return server_error(&err),
    };
    match params.get("format").map(String::as_str) {
        None | Some("json") => axum::Json(trace).into_response(),
        Some("recall") | Some("csv") => csv(recall_csv(&trace)),
        Some("fsma") => match api.ledger.fsma_csv(trace).await {
            Ok(body) => csv(body),
            Err(err) => server_error(&err),
        },
        Some(other) => bad_request(format!(
            "format {other:?}: expected json, csv (the recall sheet) or fsma"
        )),
    }
}

async fn get_lots(State(api): State<Api>, RawQuery(raw): RawQuery) -> Response {
    let params = query_pairs(raw.as_deref());
    let after = match params.get("after").map(|a| Id::new(a)).transpose() {
        Ok(after) => after,
        Err(err) => return bad_request(format!("after: {err}")),
    };
    let limit = match params.get("limit").map(|l| l.parse::<usize>()).transpose() {
        Ok(limit) => limit.unwrap_or(100).min(10_000),
        Err(err) => return bad_request(format!("limit: {err}")),
    };
    match api.ledger.lots(after, limit).await {
        Ok(lots) => axum::Json::<Vec<LotRecord>>(lots).into_response(),
        Err(err) => server_error(&err),
    }
}

async fn get_lot(State(api): State<Api>, Path(lot): Path<String>) -> Response {
    let Ok(lot) = Id::new(&lot) else {
        return bad_request(format!("lot {lot:?} is not a valid id"));
    };
    match api.ledger.lot(&lot).await {
        Ok(Some(record)) => axum::Json(record).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(err) => server_error(&err),
    }
}

async fn get_epcis(State(api): State<Api>, RawQuery(raw): RawQuery) -> Response {
    let params = query_pairs(raw.as_deref());
    let mut filter = ExportFilter::default();
    if let Some(lot) = params.get("lot") {
        match Id::new(lot) {
            Ok(lot) => filter.lots = Some([lot].into()),
            Err(err) => return bad_request(format!("lot: {err}")),
        }
    }
    for (key, slot) in [("from", &mut filter.from), ("to", &mut filter.to)] {
        if let Some(text) = params.get(key) {
            match text.parse::<Timestamp>() {
                Ok(at) => *slot = Some(at),
                Err(err) => return bad_request(format!("{key}: {err} (RFC 3339)")),
            }
        }
    }
    match api.ledger.epcis(filter, now_ms()).await {
        Ok(doc) => (
            [(header::CONTENT_TYPE, "application/ld+json")],
            doc.to_string(),
        )
            .into_response(),
        Err(err) => server_error(&err),
    }
}

async fn get_verify(State(api): State<Api>) -> Response {
    match api.ledger.verify().await {
        Ok(report) => {
            let status = if report.first_bad.is_some() {
                StatusCode::CONFLICT
            } else {
                StatusCode::OK
            };
            (status, axum::Json(verify_json(&report))).into_response()
        }
        Err(err) => server_error(&err),
    }
}

/// The JSON form of a chain check (HTTP and `uns genealogy verify`).
pub fn verify_json(report: &uns_store::VerifyReport) -> serde_json::Value {
    serde_json::json!({
        "intact": report.first_bad.is_none(),
        "records_checked": report.n_records,
        "first_bad": report.first_bad.as_ref().map(|bad| serde_json::json!({
            "seq": bad.seq,
            "reason": bad.reason,
        })),
    })
}

/// `POST /api/v1/lots` (receive) and `POST /api/v1/lots/{lot}/{verb}` (ship, release,
/// quarantine, reject): the body of the `_cmd/lot/{verb}` command (the lot from the path), the
/// site from `?site=` (for a receive: required; else the lot's own site); the answer is the
/// command's reply, 200 when carried out, 409 when refused, 400 for a bad request.
async fn post_lot_command(
    api: &Api,
    lot: Option<&str>,
    verb: &str,
    raw_query: Option<&str>,
    body: &[u8],
) -> Response {
    let params = query_pairs(raw_query);
    let mut command: serde_json::Map<String, serde_json::Value> = if body.is_empty() {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice(body) {
            Ok(command) => command,
            Err(err) => return bad_request(format!("the body is not a JSON object: {err}")),
        }
    };
    if let Some(lot) = lot {
        match command.get("lot") {
            Some(named) if named.as_str() != Some(lot) => {
                return bad_request(format!("the body names lot {named}, the path {lot}"));
            }
            _ => {
                command.insert("lot".to_owned(), serde_json::Value::from(lot));
            }
        }
    }
    let site = match params.get("site") {
        Some(text) => match text.parse::<Location>() {
            Ok(site) => Some(site),
            Err(err) => return bad_request(format!("site {text:?}: {err}")),
        },
        None => None,
    };
    let site = match (site, lot) {
        (Some(site), _) => site,
        (None, Some(lot)) => {
            let Ok(lot_id) = Id::new(lot) else {
                return bad_request(format!("lot {lot:?} is not a valid id"));
            };
            match api.ledger.lot(&lot_id).await {
                Ok(Some(record)) => match record.site {
                    Some(site) => site,
                    None => return bad_request(format!("lot {lot} has no site: give ?site=")),
                },
                Ok(None) => {
                    return (
                        StatusCode::NOT_FOUND,
                        axum::Json(serde_json::json!({ "error": format!("lot {lot} is unknown") })),
                    )
                        .into_response();
                }
                Err(err) => return server_error(&err),
            }
        }
        (None, None) => {
            return bad_request("a receive needs ?site= (where _lot/{id} is published)".to_owned());
        }
    };
    let body = serde_json::Value::Object(command).to_string();
    match api
        .handler
        .command(&site, &["lot", verb], body.as_bytes())
        .await
    {
        Ok(reply) => {
            let status = match &reply.error {
                None => StatusCode::OK,
                Some(error) if error.starts_with("bad body") => StatusCode::BAD_REQUEST,
                Some(_) => StatusCode::CONFLICT,
            };
            (status, axum::Json(reply)).into_response()
        }
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({ "error": err.to_string() })),
        )
            .into_response(),
    }
}

async fn post_receive(State(api): State<Api>, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    post_lot_command(&api, None, "receive", raw.as_deref(), &body).await
}

async fn post_lot_verb(
    State(api): State<Api>,
    Path((lot, verb)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    match verb.as_str() {
        "ship" | "release" | "quarantine" | "reject" => {
            post_lot_command(&api, Some(&lot), &verb, raw.as_deref(), &body).await
        }
        other => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({
                "error": format!("no lot command {other:?}: ship, release, quarantine or reject")
            })),
        )
            .into_response(),
    }
}

fn routes(api: Api) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/trace/{lot}", get(get_trace))
        .route("/api/v1/lots", get(get_lots).post(post_receive))
        .route("/api/v1/lots/{lot}", get(get_lot))
        .route(
            "/api/v1/lots/{lot}/{verb}",
            axum::routing::post(post_lot_verb),
        )
        .route("/api/v1/epcis/events", get(get_epcis))
        .route("/api/v1/genealogy/verify", get(get_verify))
        .with_state(api)
}

/// How long a CLI or test waits for a `_cmd/trace` reply by default.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
