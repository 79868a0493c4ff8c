//! Confirmations out: the [`ErpAdapter`] seam (a vendor connector such as SAP OData implements it),
//! the HTTP adapter ([`HttpErp`]: our JSON or B2MML `ProductionPerformance`, the event id as
//! `Idempotency-Key`), and the demo adapter ([`DemoErp`], demo only).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use uns_model::payload::{MovementKind, WorkOrderEvent, WorkOrderEventKind};

/// The header carrying the idempotency key (the `confirmation_requested` event id).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// What the ERP answered to an accepted confirmation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    /// The ERP's confirmation document number, when it gave one.
    pub erp_document: Option<String>,
}

/// Why a posting failed (the outbox retries it).
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// No connection, or it broke.
    #[error("cannot reach the ERP: {0}")]
    Connect(String),
    /// No answer in time.
    #[error("no answer from the ERP within {0:?}")]
    Timeout(Duration),
    /// The ERP answered with an error status.
    #[error("the ERP answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The start of its body.
        body: String,
    },
}

/// Posts one confirmation to an ERP. Implementations must be idempotent on `event.header.event_id`
/// (pass it on as the ERP's idempotency key), since the outbox delivers at least once.
#[async_trait::async_trait]
pub trait ErpAdapter: Send + Sync {
    /// Posts `event` (a `confirmation_requested`).
    async fn post(&self, event: &WorkOrderEvent) -> Result<Posted, PostError>;
    /// A short description for health and logs.
    fn describe(&self) -> String;
}

/// The body format of [`HttpErp`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The `work-order-event` document as published (`application/json`).
    #[default]
    Json,
    /// B2MML V0600 `ProductionPerformance` (`application/xml`).
    B2mml,
}

/// Posts to an `http://` URL with hyper (TLS belongs to a proxy in front of the ERP).
pub struct HttpErp {
    uri: hyper::Uri,
    authority: String,
    format: Format,
    timeout: Duration,
}

/// Why an `erp_url` is not usable.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// Not a URL.
    #[error("not a URL: {0}")]
    Invalid(String),
    /// Only plain HTTP is spoken.
    #[error("only http:// URLs are supported (put a TLS proxy in front of an https ERP)")]
    Scheme,
}

impl HttpErp {
    /// An adapter posting to `url`.
    pub fn new(url: &str, format: Format, timeout: Duration) -> Result<Self, UrlError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|err: hyper::http::uri::InvalidUri| UrlError::Invalid(err.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(UrlError::Scheme);
        }
        let host = uri
            .host()
            .ok_or_else(|| UrlError::Invalid("no host".to_owned()))?;
        let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        Ok(Self {
            uri,
            authority,
            format,
            timeout,
        })
    }

    async fn send(&self, event: &WorkOrderEvent) -> Result<Posted, PostError> {
        let (body, content_type) = match self.format {
            Format::Json => (
                serde_json::to_vec(event).map_err(|err| PostError::Connect(err.to_string()))?,
                "application/json",
            ),
            Format::B2mml => (
                production_performance(event).into_bytes(),
                "application/xml",
            ),
        };
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|err| PostError::Connect(err.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| PostError::Connect(err.to_string()))?;
        let connection = tokio::spawn(connection);
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .to_owned();
        let request = Request::post(path)
            .header(HOST, &self.authority)
            .header(CONTENT_TYPE, content_type)
            .header(IDEMPOTENCY_HEADER, event.header.event_id.to_string())
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| PostError::Connect(err.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| PostError::Connect(err.to_string()))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        connection.abort();
        if !status.is_success() {
            return Err(PostError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned(),
            });
        }
        Ok(Posted {
            erp_document: document_reference(&body),
        })
    }
}

/// The document number in an ERP's JSON answer: `document`, `erp_document`, `document_number` or
/// `id` (a string or number).
fn document_reference(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    ["document", "erp_document", "document_number", "id"]
        .iter()
        .find_map(|key| match value.get(key)? {
            serde_json::Value::String(text) => Some(text.clone()),
            serde_json::Value::Number(number) => Some(number.to_string()),
            _ => None,
        })
}

#[async_trait::async_trait]
impl ErpAdapter for HttpErp {
    async fn post(&self, event: &WorkOrderEvent) -> Result<Posted, PostError> {
        match tokio::time::timeout(self.timeout, self.send(event)).await {
            Ok(result) => result,
            Err(_) => Err(PostError::Timeout(self.timeout)),
        }
    }

    fn describe(&self) -> String {
        format!("{} ({:?})", self.uri, self.format)
    }
}

/// The built-in demo ERP of `uns up --demo` without `erp_url`: accepts every confirmation and
/// answers a document number `DEMO-{n}`. Demo only: it posts nothing anywhere.
#[derive(Default)]
pub struct DemoErp {
    n_posted: AtomicU64,
}

#[async_trait::async_trait]
impl ErpAdapter for DemoErp {
    async fn post(&self, _event: &WorkOrderEvent) -> Result<Posted, PostError> {
        let n = self.n_posted.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Posted {
            erp_document: Some(format!("DEMO-{n:08}")),
        })
    }

    fn describe(&self) -> String {
        "the built-in demo ERP (demo only)".to_owned()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A `confirmation_requested` event as a B2MML V0600 `ProductionPerformance`: one
/// `ProductionResponse` (ID = the ERP order) with one `SegmentResponse` carrying the yield, scrap
/// and rework as produced material actuals and each consumption as a consumed one.
pub fn production_performance(event: &WorkOrderEvent) -> String {
    let WorkOrderEventKind::ConfirmationRequested {
        is_final,
        sequence,
        erp_ref,
        good,
        scrap,
        rework,
        operation_id,
        activity,
        goods_movements,
        ..
    } = &event.kind
    else {
        return String::new();
    };
    let order = erp_ref.clone().unwrap_or_else(|| event.wo_id.to_string());
    let mut actuals = String::new();
    let mut actual = |material: &str, usage: &str, qty: f64, uom: &str, lot: Option<&str>| {
        actuals.push_str("      <MaterialActual>\n");
        actuals.push_str(&format!(
            "        <MaterialDefinitionID>{}</MaterialDefinitionID>\n",
            escape(material)
        ));
        if let Some(lot) = lot {
            actuals.push_str(&format!(
                "        <MaterialLotID>{}</MaterialLotID>\n",
                escape(lot)
            ));
        }
        actuals.push_str(&format!("        <MaterialUse>{usage}</MaterialUse>\n"));
        actuals.push_str(&format!(
            "        <Quantity><QuantityString>{qty}</QuantityString><DataType>decimal</DataType><UnitOfMeasure>{uom}</UnitOfMeasure><Key>{usage}</Key></Quantity>\n"
        ));
        actuals.push_str("      </MaterialActual>\n");
    };
    let product = goods_movements
        .iter()
        .find(|movement| movement.movement == MovementKind::ProductionReceipt)
        .map(|movement| movement.material.clone())
        .unwrap_or_default();
    actual(&product, "Produced", good.qty, good.uom.as_str(), None);
    for movement in goods_movements {
        if movement.movement == MovementKind::Consumption {
            actual(
                &movement.material,
                "Consumed",
                movement.quantity.qty,
                movement.quantity.uom.as_str(),
                movement.lot.as_ref().map(|lot| lot.as_str()),
            );
        }
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ProductionPerformance xmlns="http://www.mesa.org/xml/B2MML-V0600">
  <ID>{event_id}</ID>
  <PublishedDate>{recorded}</PublishedDate>
  <ProductionResponse>
    <ID>{order}</ID>
    <ProductionRequestID>{order}</ProductionRequestID>
    <ResponseState>{state}</ResponseState>
    <SegmentResponse>
      <ID>{sequence}</ID>
{operation}      <ActualEndTime>{occurred}</ActualEndTime>
      <ProductionData><ID>scrap</ID><Value><ValueString>{scrap}</ValueString><DataType>decimal</DataType><UnitOfMeasure>{scrap_uom}</UnitOfMeasure></Value></ProductionData>
      <ProductionData><ID>rework</ID><Value><ValueString>{rework}</ValueString><DataType>decimal</DataType><UnitOfMeasure>{rework_uom}</UnitOfMeasure></Value></ProductionData>
      <ProductionData><ID>setup-time</ID><Value><ValueString>{setup}</ValueString><DataType>decimal</DataType><UnitOfMeasure>SEC</UnitOfMeasure></Value></ProductionData>
      <ProductionData><ID>machine-time</ID><Value><ValueString>{machine}</ValueString><DataType>decimal</DataType><UnitOfMeasure>SEC</UnitOfMeasure></Value></ProductionData>
      <ProductionData><ID>labor-time</ID><Value><ValueString>{labor}</ValueString><DataType>decimal</DataType><UnitOfMeasure>SEC</UnitOfMeasure></Value></ProductionData>
{actuals}    </SegmentResponse>
  </ProductionResponse>
</ProductionPerformance>
"#,
        event_id = event.header.event_id,
        recorded = event.header.recorded_at,
        occurred = event.header.occurred_at,
        order = escape(&order),
        state = if *is_final { "Completed" } else { "Running" },
        operation = operation_id
            .as_ref()
            .map(|id| format!(
                "      <ProcessSegmentID>{}</ProcessSegmentID>\n",
                escape(id)
            ))
            .unwrap_or_default(),
        scrap = scrap.qty,
        scrap_uom = scrap.uom.as_str(),
        rework = rework.qty,
        rework_uom = rework.uom.as_str(),
        setup = activity.setup_s,
        machine = activity.machine_s,
        labor = activity.labor_s,
    )
}
