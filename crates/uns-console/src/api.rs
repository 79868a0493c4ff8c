//! The console's HTTP side: the page and its assets (compiled in), the JSON API under
//! `/api/v1/console/`, and the server-sent events that keep the page live.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the page |
//! | `GET /console/{file}` | its ES modules and CSS |
//! | `GET /api/v1/console/tree?path=&q=&match=&limit=` | children of one level, with topic counts per branch (`path` absent: the first level) |
//! | `GET /api/v1/console/topic?name=&history=` | latest message (properties, decoded Sparkplug, schema check) and history |
//! | `GET /api/v1/console/search?q=&match=&limit=` | topic names containing `q` or matching the MQTT filter `match` |
//! | `GET /api/v1/console/stats` | sizes: topics, messages, history points and bytes, births |
//! | `GET /api/v1/console/events?watch=T&watch=U` | SSE: `topic` (a watched topic changed), `tree` (anything changed; at most 1/s), `resync` (events were skipped) |
//! | `GET /api/v1/console/plant`, `.../oee` | the plant view's and the OEE board's data ([`crate::views`]) |
//! | `GET /api/v1/console/work-orders`, `.../work-order?topic=` | the work-order view's data ([`crate::views`]) |
//!
//! Every route answers callers logged in with an account, and anonymous loopback peers
//! ([`loopback_only`]).

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use serde_json::{Value as Json, json};
use tokio::sync::broadcast;
use uns_model::topic::TopicFilter;

use crate::Shared;
use crate::tree::{Filter, Point, Sample, TopicEntry};

/// Most children one tree answer lists (the rest are counted in `n_left_out`).
pub const MAX_CHILDREN: usize = 5000;

/// Most topics one SSE stream watches.
pub const MAX_WATCH: usize = 64;

/// The page and its assets: (path under `/console/`, content type, text).
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../assets/app.js")),
    ("api.js", JS, include_str!("../assets/api.js")),
    ("topics.js", JS, include_str!("../assets/topics.js")),
    ("chart.js", JS, include_str!("../assets/chart.js")),
    ("csv.js", JS, include_str!("../assets/csv.js")),
    ("orders.js", JS, include_str!("../assets/orders.js")),
    ("plant.js", JS, include_str!("../assets/plant.js")),
    ("oee.js", JS, include_str!("../assets/oee.js")),
    ("trace.js", JS, include_str!("../assets/trace.js")),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    ),
];

const INDEX_HTML: &str = include_str!("../assets/index.html");
const JS: &str = "text/javascript; charset=utf-8";

/// The console's routes, bound to `shared`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/console/{file}", get(asset))
        .route("/api/v1/console/tree", get(tree))
        .route("/api/v1/console/topic", get(topic))
        .route("/api/v1/console/search", get(search))
        .route("/api/v1/console/stats", get(stats))
        .route("/api/v1/console/events", get(events))
        .route(
            "/api/v1/console/work-orders",
            get(crate::views::work_orders),
        )
        .route("/api/v1/console/work-order", get(crate::views::work_order))
        .route("/api/v1/console/plant", get(crate::views::plant))
        .route("/api/v1/console/oee", get(crate::views::oee))
        .with_state(shared)
        .layer(middleware::from_fn(loopback_only))
}

/// Serves a caller the HTTP layer authenticated with an account ([`uns_service::Caller`] with a
/// username; its role was checked there), and anonymous callers on loopback only: with no
/// accounts configured the console answers the machine it runs on, whatever address the port
/// listens on.
async fn loopback_only(request: Request, next: Next) -> Response {
    let logged_in = request
        .extensions()
        .get::<uns_service::Caller>()
        .is_some_and(|caller| caller.username.is_some());
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip().to_canonical());
    match peer {
        _ if logged_in => next.run(request).await,
        Some(ip) if ip.is_loopback() => next.run(request).await,
        _ => error(
            StatusCode::FORBIDDEN,
            "the console answers anonymous callers on loopback only: log in at /login with a \
             broker account (configure [broker] users), open it on the machine that runs it, or \
             tunnel (ssh -L 8080:127.0.0.1:8080 HOST)",
        ),
    }
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, text)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *text,
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "no such console file"),
    }
}

/// The query's pairs, in order (repeated keys kept).
pub(crate) fn params(raw: Option<String>) -> Vec<(String, String)> {
    raw.map(|raw| {
        url::form_urlencoded::parse(raw.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}

pub(crate) fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

fn limit(params: &[(String, String)], default: usize, max: usize) -> usize {
    param(params, "limit")
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
        .min(max)
}

/// `match` (an MQTT filter) wins over `q` (text). The error is the message for a 400.
fn filter(params: &[(String, String)]) -> Result<Filter, String> {
    match param(params, "match").filter(|text| !text.is_empty()) {
        Some(text) => TopicFilter::new(text)
            .map(Filter::Wildcard)
            .map_err(|err| format!("match={text:?} is not an MQTT filter: {err}")),
        None => Ok(Filter::text(param(params, "q").unwrap_or_default())),
    }
}

async fn tree(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    let params = params(raw);
    let filter = match filter(&params) {
        Ok(filter) => filter,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let path = param(&params, "path");
    let limit = limit(&params, MAX_CHILDREN, MAX_CHILDREN);
    let inner = shared.lock();
    let listing = inner.tree.children(path, &filter, limit);
    let n_all = inner.tree.stats().n_topics;
    drop(inner);
    match listing {
        Some(listing) => axum::Json(json!({
            "path": path,
            "n_topics": listing.n_topics,
            "n_topics_all": n_all,
            "children": listing.children,
            "n_left_out": listing.n_left_out,
        }))
        .into_response(),
        // An empty tree's first level is an empty listing, not an error.
        None if path.is_none() => axum::Json(json!({
            "path": null, "n_topics": 0, "n_topics_all": n_all, "children": [], "n_left_out": 0
        }))
        .into_response(),
        None => error(StatusCode::NOT_FOUND, "no topic under that path"),
    }
}

async fn topic(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    let params = params(raw);
    let Some(name) = param(&params, "name") else {
        return error(StatusCode::BAD_REQUEST, "name= is required");
    };
    let n_history = param(&params, "history")
        .and_then(|text| text.parse().ok())
        .unwrap_or(usize::MAX);
    // Copy out under the lock (cheap: payloads are shared bytes), render after it.
    let entry = shared.lock().tree.lookup(name).cloned();
    match entry {
        Some(entry) => axum::Json(topic_json(&shared, &entry, n_history)).into_response(),
        None => error(StatusCode::NOT_FOUND, "no message on that topic yet"),
    }
}

async fn search(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    let params = params(raw);
    let filter = match filter(&params) {
        Ok(filter) => filter,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let limit = limit(&params, 500, MAX_CHILDREN);
    let (topics, n_found) = shared.lock().tree.search(&filter, limit);
    let topics: Vec<&str> = topics.iter().map(|topic| &**topic).collect();
    axum::Json(json!({ "topics": topics, "n_found": n_found })).into_response()
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let inner = shared.lock();
    let stats = inner.tree.stats();
    let n_births = inner.births.len();
    drop(inner);
    axum::Json(json!({
        "n_topics": stats.n_topics,
        "n_messages": stats.n_messages,
        "n_history_points": stats.n_history_points,
        "history_payload_bytes": stats.history_payload_bytes,
        "n_births": n_births,
    }))
    .into_response()
}

/// The topic pane's data: the latest message rendered, and the last `n_history` points.
fn topic_json(shared: &Shared, entry: &TopicEntry, n_history: usize) -> Json {
    let skip = entry.history.len().saturating_sub(n_history);
    let history: Vec<Json> = entry
        .history
        .iter()
        .skip(skip)
        .map(|point| point_json(point, true))
        .collect();
    json!({
        "name": &*entry.name,
        "n_messages": entry.n_messages,
        "latest": sample_json(shared, &entry.latest),
        "history": history,
    })
}

fn point_json(point: &Point, with_text: bool) -> Json {
    let mut out = json!({ "arrival_ms": point.arrival_ms, "value": point.value });
    if with_text {
        out["text"] = match std::str::from_utf8(&point.payload) {
            Ok(text) => json!(excerpt(text, 200)),
            Err(_) => json!(format!("({} bytes, binary)", point.payload.len())),
        };
    }
    out
}

fn excerpt(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// One message as the page shows it: flags, properties, and the payload as Sparkplug (decoded at
/// arrival, by namespace), JSON (with its schema check), text, or a hex dump.
fn sample_json(shared: &Shared, sample: &Sample) -> Json {
    let mut out = json!({
        "arrival_ms": sample.arrival_ms,
        "retain": sample.retain,
        "qos": sample.qos,
        "size": sample.payload.len(),
        "properties": sample.properties,
        "value": crate::tree::numeric_value(&sample.payload),
    });
    if let Some(decoded) = &sample.decoded {
        out["sparkplug"] = (**decoded).clone();
        return out;
    }
    match std::str::from_utf8(&sample.payload) {
        Ok(text) => {
            if let Ok(parsed) = serde_json::from_str::<Json>(text) {
                if let Some(check) = shared.schemas.check(&parsed) {
                    out["schema_check"] = json!(check);
                }
                out["json"] = parsed;
            } else {
                out["text"] = json!(excerpt(text, 64 * 1024));
            }
        }
        Err(_) => {
            let shown = &sample.payload[..sample.payload.len().min(1024)];
            out["hex"] = json!(crate::hex(shown));
        }
    }
    out
}

async fn events(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    let watch: HashSet<String> = params(raw)
        .into_iter()
        .filter(|(key, _)| key == "watch")
        .map(|(_, value)| value)
        .take(MAX_WATCH)
        .collect();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = EventStream {
        updates: shared.updates.subscribe(),
        shared,
        watch,
        tick,
        last_version: None,
    };
    Sse::new(stream.into_stream())
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// One page's event stream.
struct EventStream {
    updates: broadcast::Receiver<Arc<str>>,
    shared: Arc<Shared>,
    watch: HashSet<String>,
    tick: tokio::time::Interval,
    /// The version the last `tree` event reported (`None`: none sent yet, so the first tick sends
    /// one and the page knows the stream is live).
    last_version: Option<u64>,
}

impl EventStream {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures::stream::unfold(self, |mut stream| async move {
            let event = stream.next().await?;
            Some((Ok(event), stream))
        })
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            tokio::select! {
                received = self.updates.recv() => match received {
                    Ok(topic) => {
                        if !self.watch.contains(&*topic) {
                            continue;
                        }
                        let entry = self.shared.lock().tree.lookup(&topic).cloned();
                        let Some(entry) = entry else { continue };
                        let point = entry.history.back().map(|point| point_json(point, false));
                        let data = json!({
                            "name": &*entry.name,
                            "n_messages": entry.n_messages,
                            "latest": sample_json(&self.shared, &entry.latest),
                            "point": point,
                        });
                        return Some(Event::default().event("topic").data(data.to_string()));
                    }
                    Err(broadcast::error::RecvError::Lagged(n_skipped)) => {
                        return Some(
                            Event::default()
                                .event("resync")
                                .data(json!({ "n_skipped": n_skipped }).to_string()),
                        );
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.tick.tick() => {
                    let version = self.shared.version.load(Ordering::Relaxed);
                    if self.last_version == Some(version) {
                        continue;
                    }
                    self.last_version = Some(version);
                    let stats = self.shared.lock().tree.stats();
                    let data = json!({
                        "version": version,
                        "n_topics": stats.n_topics,
                        "n_messages": stats.n_messages,
                    });
                    return Some(Event::default().event("tree").data(data.to_string()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    async fn status_from(peer: Option<&str>, path: &str) -> StatusCode {
        status_as(peer, None, path).await
    }

    async fn status_as(
        peer: Option<&str>,
        caller: Option<uns_service::Caller>,
        path: &str,
    ) -> StatusCode {
        let shared = Arc::new(Shared::new(
            crate::tree::HistoryLimits {
                max_values: 1,
                window_ms: 1,
                max_bytes: usize::MAX,
            },
            Arc::new(crate::schema::SchemaBook::new()),
        ));
        let mut request = Request::builder()
            .uri(path)
            .body(axum::body::Body::empty())
            .expect("a valid request");
        if let Some(peer) = peer {
            let peer: SocketAddr = peer.parse().expect("a socket address");
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        if let Some(caller) = caller {
            request.extensions_mut().insert(caller);
        }
        router(shared)
            .oneshot(request)
            .await
            .map_or(StatusCode::INTERNAL_SERVER_ERROR, |response| {
                response.status()
            })
    }

    #[tokio::test]
    async fn only_loopback_peers_are_served() {
        for path in ["/", "/console/app.js", "/api/v1/console/tree"] {
            assert_eq!(
                status_from(Some("127.0.0.1:5000"), path).await,
                StatusCode::OK
            );
            assert_eq!(status_from(Some("[::1]:5000"), path).await, StatusCode::OK);
            assert_eq!(
                status_from(Some("[::ffff:127.0.0.1]:5000"), path).await,
                StatusCode::OK
            );
            assert_eq!(
                status_from(Some("192.168.1.20:5000"), path).await,
                StatusCode::FORBIDDEN,
                "{path}"
            );
            assert_eq!(status_from(None, path).await, StatusCode::FORBIDDEN);
        }
        assert_eq!(
            status_from(Some("127.0.0.1:5000"), "/console/nope.js").await,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn a_caller_logged_in_with_an_account_is_served_from_the_network() {
        let caller = |username: Option<&str>| uns_service::Caller {
            username: username.map(str::to_owned),
            role: uns_service::HttpRole::Viewer,
        };
        let remote = Some("192.168.1.20:5000");
        assert_eq!(
            status_as(
                remote,
                Some(caller(Some("engineer"))),
                "/api/v1/console/tree"
            )
            .await,
            StatusCode::OK
        );
        // Anonymous (the HTTP layer's allow_anonymous): still loopback only.
        assert_eq!(
            status_as(remote, Some(caller(None)), "/api/v1/console/tree").await,
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn every_asset_the_page_imports_is_served() {
        for (_, _, text) in ASSETS {
            for line in text.lines().filter(|line| line.starts_with("import ")) {
                let Some(file) = line
                    .split("'./")
                    .nth(1)
                    .and_then(|rest| rest.split('\'').next())
                else {
                    continue;
                };
                assert!(
                    ASSETS.iter().any(|(name, _, _)| *name == file),
                    "{file} is imported but not served"
                );
            }
        }
        for (name, _, _) in ASSETS {
            assert!(
                INDEX_HTML.contains(&format!("/console/{name}"))
                    || ASSETS
                        .iter()
                        .any(|(_, _, text)| text.contains(&format!("'./{name}'"))),
                "{name} is served but nothing loads it"
            );
        }
    }
}
