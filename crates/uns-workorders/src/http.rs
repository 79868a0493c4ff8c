//! The HTTP API, mounted on the process's HTTP endpoint: `GET /api/v1/work-orders[?status=]`,
//! `GET /api/v1/work-orders/{id}`, `POST /api/v1/work-orders/{id}/{verb}`. Handlers hold no
//! state: each request goes to the service loop as an [`ApiRequest`] and waits for its answer,
//! so HTTP and MQTT commands go through the same code in the same order.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, oneshot};
use uns_model::payload::WorkOrderStatus;

use crate::lifecycle::parse_status;

/// An answer: a JSON body, or a status with the reason.
pub type ApiResult = Result<serde_json::Value, (StatusCode, String)>;

/// A request for the service loop. The loop answers on `reply`; a dropped `reply` (the loop
/// ended) answers 503.
#[derive(Debug)]
pub enum ApiRequest {
    /// Every order, optionally of one status.
    List {
        /// The status asked for.
        status: Option<WorkOrderStatus>,
        /// Where the answer goes.
        reply: oneshot::Sender<ApiResult>,
    },
    /// One order.
    Get {
        /// Its id, as given.
        id: String,
        /// Where the answer goes.
        reply: oneshot::Sender<ApiResult>,
    },
    /// A verb (or `consume`) on one order.
    Command {
        /// Its id, as given.
        id: String,
        /// The verb, as given.
        verb: String,
        /// The request body (empty, or JSON for `consume`).
        body: Bytes,
        /// Where the answer goes.
        reply: oneshot::Sender<ApiResult>,
    },
}

/// The routes, sending to the loop through `loop_tx`.
pub fn router(loop_tx: mpsc::Sender<ApiRequest>) -> Router {
    Router::new()
        .route("/api/v1/work-orders", get(list))
        .route("/api/v1/work-orders/{id}", get(show))
        .route("/api/v1/work-orders/{id}/{verb}", post(command))
        .with_state(loop_tx)
}

async fn list(State(loop_tx): State<mpsc::Sender<ApiRequest>>, uri: Uri) -> Response {
    let status_text = uri.query().and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("status="))
            .map(str::to_owned)
    });
    let status = match status_text.as_deref() {
        None | Some("") => None,
        Some(text) => match parse_status(text) {
            Some(status) => Some(status),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown status {text:?} (expected planned, released, running, held, completed, closed or cancelled)"
                    ),
                );
            }
        },
    };
    ask(&loop_tx, |reply| ApiRequest::List { status, reply }).await
}

async fn show(State(loop_tx): State<mpsc::Sender<ApiRequest>>, Path(id): Path<String>) -> Response {
    ask(&loop_tx, |reply| ApiRequest::Get { id, reply }).await
}

async fn command(
    State(loop_tx): State<mpsc::Sender<ApiRequest>>,
    Path((id, verb)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    ask(&loop_tx, |reply| ApiRequest::Command {
        id,
        verb,
        body,
        reply,
    })
    .await
}

async fn ask(
    loop_tx: &mpsc::Sender<ApiRequest>,
    request: impl FnOnce(oneshot::Sender<ApiResult>) -> ApiRequest,
) -> Response {
    let (reply_tx, reply_rx) = oneshot::channel();
    if loop_tx.send(request(reply_tx)).await.is_err() {
        return unavailable();
    }
    match reply_rx.await {
        Ok(Ok(body)) => (StatusCode::OK, axum::Json(body)).into_response(),
        Ok(Err((status, message))) => error(status, message),
        Err(_) => unavailable(),
    }
}

fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the workorders service is restarting".to_owned(),
    )
}

fn error(status: StatusCode, message: String) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "ok": false, "error": message })),
    )
        .into_response()
}
