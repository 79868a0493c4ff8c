//! The HTTP API under `/api/v1` (described in `schemas/api/openapi.json`, served at
//! `/api/v1/openapi.json`): production orders, the material master, dead letters.
//!
//! Access: with `[erp_bridge] tokens` configured every request needs `Authorization: Bearer
//! <token>`; with none, only requests from a loopback peer address are served (secure by default).
//! Both refusals answer 401.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use sha2::{Digest, Sha256};
use uns_model::payload::{ErrorReport, SchemaTag, Timestamp};
use uns_model::topic::{Class, UnsTopic};
use uns_store::EntryId;

use crate::db::{self, LoadMode};
use crate::parse::{self, BodyKind};
use crate::validate::{self, Checks, FieldError, Material};
use crate::{Shared, now_ms};

/// The OpenAPI description of the bridge's and the work-order service's endpoints.
pub const OPENAPI: &str = include_str!("../../../schemas/api/openapi.json");

/// The routes, with `shared` applied.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/api/v1/production-orders",
            post(post_orders).get(list_orders),
        )
        .route(
            "/api/v1/master-data/materials",
            post(post_materials).get(list_materials),
        )
        .route("/api/v1/dead-letters", get(list_dead_letters))
        .route("/api/v1/dead-letters/{id}/replay", post(replay))
        .route_layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .route("/api/v1/openapi.json", get(openapi))
        .with_state(shared)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn digest(text: &[u8]) -> [u8; 32] {
    Sha256::digest(text).into()
}

async fn authorize(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let allowed = if shared.tokens.is_empty() {
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback())
    } else {
        request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|token| {
                // Compare digests, so the time taken does not tell how much of a token matched.
                let presented = digest(token.trim().as_bytes());
                shared.tokens.contains(&presented)
            })
    };
    if !allowed {
        let message = if shared.tokens.is_empty() {
            "no API tokens are configured, so only loopback clients are served ([erp_bridge] tokens)"
        } else {
            "missing or unknown bearer token"
        };
        let mut response = error(StatusCode::UNAUTHORIZED, message);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    next.run(request).await
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Reads the whole body, refusing more than `limit` bytes (413) before reading it when the
/// `Content-Length` says so, and while reading otherwise.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, Response> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than max_body_bytes ({limit} bytes)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    to_bytes(body, limit).await.map_err(|_| too_large())
}

async fn post_orders(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Some(kind) = BodyKind::from_content_type(&content_type) else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type `{content_type}`; send application/json or application/xml (B2MML)"
            ),
        );
    };
    let body = match read_body(&parts.headers, body, shared.max_body_bytes).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let raw_orders = match tokio::task::spawn_blocking({
        let body = body.clone();
        move || parse::parse(kind, &body)
    })
    .await
    {
        Ok(Ok(orders)) => orders,
        Ok(Err(err)) => {
            shared.report(&err.to_string(), &body).await;
            shared.counters.rejected.inc();
            return error(StatusCode::BAD_REQUEST, err.to_string());
        }
        Err(join_error) => return error(StatusCode::INTERNAL_SERVER_ERROR, join_error.to_string()),
    };
    let materials = match db::materials(&shared.store).await {
        Ok(materials) => materials,
        Err(err) => return error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    };
    let received_at = Timestamp::from(chrono::Utc::now());
    let (orders, errors) = {
        let plant = shared.plant();
        let checks = Checks {
            materials: &materials,
            plant: &plant,
            default_line: shared.default_line.as_ref(),
        };
        let mut orders = Vec::with_capacity(raw_orders.len());
        let mut errors: Vec<FieldError> = Vec::new();
        for raw in &raw_orders {
            match validate::validate(raw, &checks, received_at) {
                Ok(order) => orders.push(order),
                Err(order_errors) => errors.extend(order_errors),
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for order in &orders {
            if !seen.insert(order.erp_ref.clone()) {
                errors.push(FieldError {
                    path: "$".to_owned(),
                    message: format!("order `{}` appears twice in one request", order.erp_ref),
                });
            }
        }
        (orders, errors)
    };
    if !errors.is_empty() {
        let reason = format!(
            "production order rejected: {}",
            errors
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        );
        shared.report(&reason, &body).await;
        shared.counters.rejected.inc();
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({ "errors": errors })),
        )
            .into_response();
    }
    let results = match db::accept(&shared.store, orders).await {
        Ok(results) => results,
        Err(err) => return error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    };
    let mut answer = Vec::with_capacity(results.len());
    let mut any_new = false;
    for (outcome, order) in &results {
        if *outcome != db::Outcome::Unchanged {
            let topic = UnsTopic::Located {
                location: validate::site_of(&order.hierarchy_scope),
                class: Class::ErpProductionOrder(order.id.clone()),
            };
            if let Err(err) = shared.client.publish(&topic, order).await {
                return error(StatusCode::SERVICE_UNAVAILABLE, err.to_string());
            }
            any_new |= *outcome == db::Outcome::Created;
            shared.counters.accepted.inc();
        }
        answer.push(json!({
            "id": order.id,
            "erp_ref": order.erp_ref,
            "revision": order.revision,
            "outcome": outcome,
            "hierarchy_scope": order.hierarchy_scope.to_string(),
        }));
    }
    let status = if any_new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, axum::Json(json!({ "orders": answer }))).into_response()
}

async fn list_orders(State(shared): State<Arc<Shared>>) -> Response {
    match db::orders(&shared.store).await {
        Ok(orders) => axum::Json(orders).into_response(),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

/// `?mode=replace|merge` (replace when absent).
fn load_mode(query: Option<&str>) -> Result<LoadMode, String> {
    let Some(query) = query else {
        return Ok(LoadMode::Replace);
    };
    let mut mode = LoadMode::Replace;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("mode", "replace")) => mode = LoadMode::Replace,
            Some(("mode", "merge")) => mode = LoadMode::Merge,
            Some(("mode", other)) => return Err(format!("mode `{other}`: use replace or merge")),
            _ => {}
        }
    }
    Ok(mode)
}

async fn post_materials(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let mode = match load_mode(request.uri().query()) {
        Ok(mode) => mode,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let (parts, body) = request.into_parts();
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(BodyKind::from_content_type)
        == Some(BodyKind::Json);
    if !is_json {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json");
    }
    let body = match read_body(&parts.headers, body, shared.max_body_bytes).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let materials: Vec<Material> = match serde_json::from_slice(&body) {
        Ok(materials) => materials,
        Err(err) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON: {err}")),
    };
    let mut errors = Vec::new();
    for (idx, material) in materials.iter().enumerate() {
        if material.id.trim().is_empty() {
            errors.push(FieldError {
                path: format!("$[{idx}].id"),
                message: "empty material id".to_owned(),
            });
        }
        if validate::unit(&material.uom).is_none() {
            errors.push(FieldError {
                path: format!("$[{idx}].uom"),
                message: format!("unknown unit `{}`", material.uom),
            });
        }
    }
    if !errors.is_empty() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({ "errors": errors })),
        )
            .into_response();
    }
    let n_loaded = materials.len();
    match db::load_materials(&shared.store, materials, mode).await {
        Ok(n_materials) => axum::Json(json!({
            "loaded": n_loaded,
            "materials": n_materials,
        }))
        .into_response(),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

async fn list_materials(State(shared): State<Arc<Shared>>) -> Response {
    match db::materials(&shared.store).await {
        Ok(materials) => axum::Json(materials.into_values().collect::<Vec<_>>()).into_response(),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

async fn list_dead_letters(State(shared): State<Arc<Shared>>) -> Response {
    let outbox = db::confirmations();
    let listed = shared.store.read(move |tx| outbox.dead_letters(tx)).await;
    match listed {
        Ok(entries) => {
            let letters: Vec<_> = entries
                .iter()
                .map(|entry| {
                    let pending: Option<db::Pending> = serde_json::from_slice(&entry.payload).ok();
                    json!({
                        "id": entry.id.0,
                        "key": entry.key,
                        "attempts": entry.attempts,
                        "enqueued_at": Timestamp::from_unix_ms(entry.enqueued_ms as i64).map(|t| t.to_string()),
                        "dead_at": Timestamp::from_unix_ms(entry.due_ms as i64).map(|t| t.to_string()),
                        "last_error": entry.last_error,
                        "wo_id": pending.as_ref().map(|p| p.event.wo_id.to_string()),
                        "topic": pending.as_ref().map(|p| p.topic.clone()),
                    })
                })
                .collect();
            axum::Json(letters).into_response()
        }
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

async fn replay(State(shared): State<Arc<Shared>>, Path(id): Path<u64>) -> Response {
    let outbox = db::confirmations();
    let now = now_ms();
    let replayed = shared
        .store
        .write(move |tx| {
            if outbox.get(tx, EntryId(id))?.is_none() {
                return Ok(false);
            }
            outbox.replay(tx, EntryId(id), now).map(|()| true)
        })
        .await;
    match replayed {
        Ok(true) => {
            shared.wake.notify_one();
            axum::Json(json!({ "replayed": id })).into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no dead letter {id}")),
        Err(err) => error(StatusCode::CONFLICT, err.to_string()),
    }
}

impl Shared {
    /// Reports a rejected request on the site's (else the enterprise's) `_errors`.
    pub(crate) async fn report(&self, reason: &str, body: &[u8]) {
        let excerpt: String = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        let report = ErrorReport {
            schema: SchemaTag::default(),
            service: self.service_id.clone(),
            topic: Some("POST /api/v1/production-orders".to_owned()),
            reason: reason.chars().take(2000).collect(),
            payload_excerpt: Some(excerpt),
            payload_sha256: Some(
                Sha256::digest(body)
                    .iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect(),
            ),
            occurred_at: Timestamp::from(chrono::Utc::now()),
        };
        if let Err(err) = self
            .client
            .report_error(&self.errors_topic(), "production_order", &report)
            .await
        {
            tracing::warn!(cause = %err, "reporting a rejected order");
        }
    }
}
