//! [`Oee`], the service: subscribe → decode → [`Engine::apply`] → store → publish, in one loop.
//!
//! Durability: every input that changed the engine is appended to `oee_inputs_v1` in `data_dir/oee.redb`
//! (as topic and payload) before anything it caused is published. The messages already waiting in the
//! inbox (up to [`MAX_BATCH`]) are applied together and stored in one commit, then published. Once
//! `snapshot_every_inputs` inputs are stored, the commit that would store the next ones instead writes
//! [`Engine::snapshot`] to `oee_snapshot_v1` (keyed by the sequence number of the first input it does
//! not cover) and deletes every input it covers: the log never holds more than that many inputs. On
//! start the snapshot is restored and the inputs after it are replayed; the engine, being a function of
//! its input sequence, comes back to exactly where it was: same accumulated time and counts, same
//! closed periods and versions. Retained inputs the broker sends again after a (re)connect are
//! duplicates and apply once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tracing::{info, warn};
use uns_client::{ClientError, UnsClient};
use uns_model::payload::{CmdReply, ErrorReport, OeeResult, SchemaTag, Timestamp};
use uns_model::topic::{Class, CountKind, Id, Location, OeePeriodKind, TopicFilter, UnsTopic};
use uns_service::{ConfigEnv, ConfigError, Context, Service};
use uns_store::{Bytes, ReadableTx, Store, StoreError, Table, U64};

use crate::config::{OeeConfig, Settings};
use crate::engine::{
    Applied, Engine, Input, OpenPeriod, Publication, Rejected, SnapshotError, parse_location,
};
use crate::input;

/// Every input that changed the engine, in arrival order: sequence → `topic \n payload`.
const INPUTS: Table<U64, Bytes> = Table::new("oee_inputs_v1");

/// The engine as of a point of the log (at most one row): sequence of the first input it does not
/// cover → [`Engine::snapshot`].
const SNAPSHOT: Table<U64, Bytes> = Table::new("oee_snapshot_v1");

/// The OEE service.
pub struct Oee {
    settings: Settings,
}

/// Why the service loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum OeeError {
    /// The broker client failed.
    #[error("mqtt: {0}")]
    Client(#[from] ClientError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The HTTP routes could not be mounted.
    #[error("http: {0}")]
    Http(String),
    /// The stored snapshot cannot be restored.
    #[error("{0} (in oee.redb)")]
    Snapshot(#[from] SnapshotError),
}

impl Service for Oee {
    const NAME: &'static str = "oee";
    const SECTION: &'static str = "oee";
    const ABOUT: &'static str =
        "ISO 22400-2 OEE per cell, line, site, hour, shift, day and work order, from event time";
    type Config = OeeConfig;
    type Error = OeeError;

    fn configure(config: OeeConfig, _env: &ConfigEnv) -> Result<Self, ConfigError> {
        let settings =
            Settings::try_from(&config).map_err(|err| ConfigError::new(err.key, err.message))?;
        Ok(Self { settings })
    }

    async fn run(&self, mut ctx: Context) -> Result<(), OeeError> {
        let store = Store::open(&ctx.data_dir.join("oee.redb"))?;
        let (restored, mut log) = replay(store, &self.settings).await?;
        let engine = Arc::new(Mutex::new(restored));
        ctx.http
            .mount(router(engine.clone()))
            .map_err(|err| OeeError::Http(err.to_string()))?;
        for filter in filters() {
            ctx.client.subscribe(&filter).await?;
        }
        // Closed periods are retained: put them back in case the broker lost them.
        let closed = lock(&engine).all_closed();
        publish(&ctx.client, closed).await?;
        info!(n_inputs = log.seq, replayed = log.rows, "oee started");
        let interval = Duration::from_millis(
            u64::try_from(self.settings.publish_interval_ms).unwrap_or(5_000),
        );
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut changed = true;
        loop {
            let trigger = tokio::select! {
                () = ctx.shutdown.cancelled() => break,
                message = ctx.inbox.recv() => match message {
                    Some(message) => Trigger::Message(message),
                    None => break,
                },
                _ = ticker.tick() => Trigger::Tick,
            };
            match trigger {
                Trigger::Tick => {
                    if changed {
                        let now = chrono::Utc::now().timestamp_millis();
                        let current = lock(&engine).current(Some(now));
                        publish(&ctx.client, current).await?;
                        changed = false;
                    }
                }
                Trigger::Message(message) => {
                    // Whatever else is already waiting goes into the same store commit (one fsync per
                    // batch instead of per input; nothing is published before its commit).
                    let mut batch = vec![message];
                    while batch.len() < MAX_BATCH {
                        match tokio::time::timeout(Duration::ZERO, ctx.inbox.recv()).await {
                            Ok(Some(message)) => batch.push(message),
                            _ => break,
                        }
                    }
                    let mut pending = Pending::default();
                    for message in &batch {
                        handle(&ctx.client, &mut log, &engine, &mut pending, message).await?;
                    }
                    if pending.flush(&ctx.client, &mut log, &engine).await? {
                        changed = true;
                    }
                }
            }
        }
        info!("oee stopped");
        Ok(())
    }
}

/// One trigger of the loop.
enum Trigger {
    Message(uns_client::Message),
    Tick,
}

/// What the service subscribes to: `_state`, `_count/*`, `_count/events`, `_wo/_active`, `_meta` and
/// `_cmd/oee/close` at any location.
pub fn filters() -> Vec<TopicFilter> {
    // `_count/produced` is not read: PQ is good + scrap + rework.
    let classes = [
        Class::State,
        Class::Count(CountKind::Good),
        Class::Count(CountKind::Scrap),
        Class::Count(CountKind::Rework),
        Class::CountEvents,
        Class::WorkOrderActive,
        Class::Meta,
    ];
    classes
        .iter()
        .chain([&input::close_class()])
        .flat_map(TopicFilter::at_any_location)
        .collect()
}

fn lock(engine: &Mutex<Engine>) -> std::sync::MutexGuard<'_, Engine> {
    // A panic while holding the lock leaves the engine as it was before the call (inputs apply whole or
    // not at all), so a poisoned lock is still usable.
    engine
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The input log and the snapshot in `oee.redb`.
struct Log {
    store: Store,
    /// The sequence number of the next input.
    seq: u64,
    /// Inputs stored since the snapshot (or since the start, without one).
    rows: u64,
    /// `snapshot_every_inputs`.
    every: u64,
}

impl Log {
    /// Stores `records` (the inputs `engine` applied last) in one commit; when the log would then hold
    /// `every` inputs or more, the commit instead stores the snapshot of `engine` and deletes every
    /// input it covers (those stored before and these).
    async fn write(
        &mut self,
        engine: &Mutex<Engine>,
        records: Vec<Vec<u8>>,
    ) -> Result<(), OeeError> {
        let first = self.seq;
        let next = first + records.len() as u64;
        let snapshot =
            (self.rows + records.len() as u64 >= self.every).then(|| lock(engine).snapshot());
        let snapshotted = snapshot.is_some();
        self.store
            .write(move |tx| {
                match &snapshot {
                    Some(bytes) => {
                        tx.remove_range(&SNAPSHOT, ..)?;
                        tx.insert(&SNAPSHOT, &next, bytes)?;
                        tx.remove_range(&INPUTS, ..&next)?;
                    }
                    None => {
                        for (key, record) in (first..).zip(&records) {
                            tx.insert(&INPUTS, &key, record)?;
                        }
                    }
                }
                Ok(())
            })
            .await?;
        self.rows = if snapshotted {
            0
        } else {
            self.rows + (next - first)
        };
        self.seq = next;
        Ok(())
    }
}

/// The engine as stored: the snapshot restored, then the inputs after it applied again.
async fn replay(store: Store, settings: &Settings) -> Result<(Engine, Log), OeeError> {
    let (snapshot, rows) = store
        .read(|tx| {
            let snapshot = tx.last(&SNAPSHOT)?;
            let rows = match &snapshot {
                Some((covered, _)) => tx.range(&INPUTS, covered..)?,
                None => tx.iter(&INPUTS)?,
            };
            Ok((snapshot, rows))
        })
        .await?;
    let (mut engine, mut next) = match snapshot {
        Some((covered, bytes)) => (Engine::restore(settings.clone(), &bytes)?, covered),
        None => (Engine::new(settings.clone()), 0),
    };
    let n_rows = rows.len() as u64;
    for (seq, bytes) in rows {
        next = seq + 1;
        let Some((topic, payload)) = split_record(&bytes) else {
            continue;
        };
        // Only inputs that decoded and applied were stored, so these succeed again.
        if let Ok(topic) = topic.parse::<UnsTopic>()
            && let Ok(Some(input)) = input::decode(&topic, payload)
        {
            let _ = engine.apply(input);
        }
    }
    let log = Log {
        store,
        seq: next,
        rows: n_rows,
        every: settings.snapshot_every_inputs,
    };
    Ok((engine, log))
}

fn split_record(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let idx = bytes.iter().position(|b| *b == b'\n')?;
    Some((std::str::from_utf8(&bytes[..idx]).ok()?, &bytes[idx + 1..]))
}

/// The most messages applied before one store commit.
const MAX_BATCH: usize = 256;

/// Inputs applied but not yet stored, and what they caused (published after the commit).
#[derive(Default)]
struct Pending {
    records: Vec<Vec<u8>>,
    publications: Vec<Publication>,
}

impl Pending {
    /// Stores the records in one commit, then publishes; true when there were any.
    async fn flush(
        &mut self,
        client: &UnsClient,
        log: &mut Log,
        engine: &Mutex<Engine>,
    ) -> Result<bool, OeeError> {
        if self.records.is_empty() {
            return Ok(false);
        }
        log.write(engine, std::mem::take(&mut self.records)).await?;
        publish(client, std::mem::take(&mut self.publications)).await?;
        Ok(true)
    }
}

fn record(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut record = topic.as_bytes().to_vec();
    record.push(b'\n');
    record.extend_from_slice(payload);
    record
}

/// Applies one message; what it changed goes into `pending`.
async fn handle(
    client: &UnsClient,
    log: &mut Log,
    engine: &Arc<Mutex<Engine>>,
    pending: &mut Pending,
    message: &uns_client::Message,
) -> Result<(), OeeError> {
    let Ok(topic) = message.topic.parse::<UnsTopic>() else {
        return Ok(());
    };
    if let (Some(location), Some(class)) = (topic.location(), topic.class())
        && input::is_close(class)
    {
        // The inputs before it are stored first: the log keeps the order the engine saw.
        pending.flush(client, log, engine).await?;
        return close(client, log, engine, message, &topic, location.clone()).await;
    }
    let decoded = match input::decode(&topic, &message.payload) {
        Ok(Some(decoded)) => decoded,
        Ok(None) => return Ok(()),
        Err(err) => {
            reject(client, &topic, message, "bad_payload", err.to_string()).await?;
            return Ok(());
        }
    };
    let applied = lock(engine).apply(decoded);
    let applied = match applied {
        Ok(applied) => applied,
        Err(err @ (Rejected::TooLate { .. } | Rejected::BadTime)) => {
            reject(client, &topic, message, "too_late", err.to_string()).await?;
            return Ok(());
        }
    };
    if applied.duplicate {
        return Ok(());
    }
    pending
        .records
        .push(record(&message.topic, &message.payload));
    pending.publications.extend(applied.publications);
    Ok(())
}

/// One period in the reply to `_cmd/oee/close`.
#[derive(Serialize)]
struct ClosedPeriod {
    scope: String,
    period: OeePeriodKind,
    id: String,
    version: u32,
}

/// A period the close request left running.
#[derive(Serialize)]
struct RunningPeriod {
    scope: String,
    period: OeePeriodKind,
    id: String,
    ends: Timestamp,
}

/// The result of a `_cmd/oee/close` reply.
#[derive(Serialize)]
struct CloseReply {
    /// The time the closed periods ended by.
    at: Timestamp,
    closed: Vec<ClosedPeriod>,
    still_open: Vec<RunningPeriod>,
}

/// `_cmd/oee/close`: closes the periods of the scope (and the scopes below it) that ended by the time
/// asked for (default: the newest event time or the clock, whichever is later) without waiting for the
/// grace, records the request with that time (so a replay closes the same periods), publishes the
/// finals and answers with what it closed and what is still running. A refusal is answered and
/// reported on `_errors`.
async fn close(
    client: &UnsClient,
    log: &mut Log,
    engine: &Arc<Mutex<Engine>>,
    message: &uns_client::Message,
    topic: &UnsTopic,
    location: Location,
) -> Result<(), OeeError> {
    let outcome = match input::close_request(&message.payload) {
        Ok(request) => {
            let now = chrono::Utc::now().timestamp_millis();
            let mut engine = lock(engine);
            close_in(&mut engine, &location, request, now)
        }
        Err(err) => Err(format!(
            "the body of _cmd/oee/close is {{\"period\": \"hour|shift|day|wo\", \"at\": RFC 3339}} \
             (both optional): {err}"
        )),
    };
    let (at, request, applied, still_open) = match outcome {
        Ok(outcome) => outcome,
        Err(reason) => {
            client
                .reply(message, &CmdReply::error(reason.clone()))
                .await?;
            reject(client, topic, message, "bad_command", reason).await?;
            return Ok(());
        }
    };
    if !applied.duplicate {
        let body = serde_json::to_vec(&request).unwrap_or_default();
        log.write(engine, vec![record(&message.topic, &body)])
            .await?;
    }
    let closed = applied
        .publications
        .iter()
        .filter_map(|publication| match &publication.class {
            Class::Oee(kind, id) => Some(ClosedPeriod {
                scope: publication.location.to_string(),
                period: *kind,
                id: id.as_str().to_owned(),
                version: publication.result.version,
            }),
            _ => None,
        })
        .collect();
    publish(client, applied.publications).await?;
    let reply = CloseReply {
        at,
        closed,
        still_open: still_open
            .into_iter()
            .map(|open| RunningPeriod {
                scope: open.location.to_string(),
                period: open.kind,
                id: open.id,
                ends: Timestamp::from_unix_ms(open.end).unwrap_or(at),
            })
            .collect(),
    };
    client
        .reply(message, &CmdReply::ok(serde_json::to_value(&reply).ok()))
        .await?;
    Ok(())
}

/// The engine side of a close request: resolves its time, applies it and lists what stays open.
fn close_in(
    engine: &mut Engine,
    location: &Location,
    request: input::CloseRequest,
    now: i64,
) -> Result<(Timestamp, input::CloseRequest, Applied, Vec<OpenPeriod>), String> {
    let latest = engine
        .watermark()
        .map_or(now, |watermark| watermark.max(now));
    let at = request.at.map_or(latest, |at| at.unix_ms());
    let at_ts = Timestamp::from_unix_ms(at).ok_or("the time is out of range")?;
    if at > latest {
        return Err(format!(
            "cannot close periods by {at_ts}: it is later than both the clock and the newest event time"
        ));
    }
    if engine.scopes_under(location).is_empty() {
        return Err(format!("no OEE data at or below {location}"));
    }
    let kind = request.period;
    let applied = engine
        .apply(Input::Close {
            location: location.clone(),
            kind,
            at,
        })
        .map_err(|err| err.to_string())?;
    let still_open = engine.still_open(location, kind, at);
    let request = input::CloseRequest {
        period: kind,
        at: Some(at_ts),
    };
    Ok((at_ts, request, applied, still_open))
}

async fn reject(
    client: &UnsClient,
    topic: &UnsTopic,
    message: &uns_client::Message,
    kind: &str,
    reason: String,
) -> Result<(), ClientError> {
    let Some(location) = topic.location() else {
        return Ok(());
    };
    warn!(topic = %message.topic, %reason, "rejected input");
    let excerpt: String = String::from_utf8_lossy(&message.payload)
        .chars()
        .take(200)
        .collect();
    let report = ErrorReport {
        schema: SchemaTag::default(),
        service: Id::new(Oee::NAME).unwrap_or_else(|_| uns_model::topic::slug(Oee::NAME)),
        topic: Some(message.topic.clone()),
        reason,
        payload_excerpt: Some(excerpt),
        payload_sha256: None,
        occurred_at: Timestamp::from(chrono::Utc::now()),
    };
    client
        .report_error(
            &UnsTopic::located(location.clone(), Class::Errors),
            kind,
            &report,
        )
        .await
}

async fn publish(client: &UnsClient, publications: Vec<Publication>) -> Result<(), ClientError> {
    for publication in publications {
        let topic = UnsTopic::located(publication.location, publication.class);
        client.publish(&topic, &publication.result).await?;
    }
    Ok(())
}

/// `GET /api/v1/oee?scope=PATH&period=hour|shift|day|wo[&id=ID]`: a closed period with `id`, the open one
/// without.
fn router(engine: Arc<Mutex<Engine>>) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/oee", get(report))
        .with_state(engine)
}

#[derive(Serialize)]
struct ApiError {
    error: String,
}

fn api_error(status: StatusCode, error: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: error.into(),
        }),
    )
        .into_response()
}

async fn report(State(engine): State<Arc<Mutex<Engine>>>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let mut scope = None;
    let mut period = None;
    let mut id = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "scope" => scope = Some(value.into_owned()),
            "period" => period = Some(value.into_owned()),
            "id" => id = Some(value.into_owned()),
            _ => {}
        }
    }
    let Some(location) = scope.as_deref().and_then(parse_location) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "scope=PATH is required, e.g. acme/berlin/packaging/line-1",
        );
    };
    let kind = match period.as_deref() {
        Some("hour") => OeePeriodKind::Hour,
        Some("shift") => OeePeriodKind::Shift,
        Some("day") => OeePeriodKind::Day,
        Some("wo") => OeePeriodKind::Wo,
        _ => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "period=hour|shift|day|wo is required",
            );
        }
    };
    let engine = lock(&engine);
    let found: Option<OeeResult> = match id.as_deref() {
        Some(id) => engine.closed(&location, kind, id).cloned(),
        None => {
            let now = chrono::Utc::now().timestamp_millis();
            let scope = engine.scope_of(&location);
            let as_of = engine.watermark().map_or(now, |w| w.max(now));
            engine
                .current_of(&scope, as_of)
                .into_iter()
                .find(|p| p.class == Class::OeeCurrent(kind))
                .map(|p| p.result)
        }
    };
    match found {
        Some(result) => Json(result).into_response(),
        None => api_error(
            StatusCode::NOT_FOUND,
            format!(
                "no {} result at {location}{}",
                kind.as_str(),
                id.map(|id| format!(" for {id}")).unwrap_or_default()
            ),
        ),
    }
}
