//! Service-level documents: [`ServiceHealth`] (`uns/v1/_services/{name}`), [`ErrorReport`] (`_errors`) and
//! [`CmdReply`] (the reply to a `_cmd` request).

use serde::{Deserialize, Serialize};

use super::{SchemaTag, Timestamp, document};
use crate::topic::Id;

/// A service's health, retained, with a Will that says `stopped`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHealth {
    /// Always `uns/service-health/v1`.
    pub schema: SchemaTag<ServiceHealth>,
    /// The service name (as in the topic).
    pub service: Id,
    /// Current status.
    pub status: HealthStatus,
    /// The service's version.
    pub version: String,
    /// When this instance started.
    pub started_at: Timestamp,
    /// The last error, when degraded or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// How often the supervisor restarted the service loop since this instance started (absent = 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u32,
}
document!(ServiceHealth, "service-health", 1);

impl ServiceHealth {
    /// A health document with no error.
    pub fn new(
        service: Id,
        status: HealthStatus,
        version: impl Into<String>,
        started_at: Timestamp,
    ) -> Self {
        Self {
            schema: SchemaTag::default(),
            service,
            status,
            version: version.into(),
            started_at,
            last_error: None,
            restarts: 0,
        }
    }
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// Service status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Connecting, loading state.
    Starting,
    /// Working normally.
    Running,
    /// Working, but something is wrong (see `last_error`).
    Degraded,
    /// Shut down (or died: the Will).
    Stopped,
    /// The service loop ended with an error or a panic; the supervisor restarts it with backoff
    /// (`restarts` counts how often) or, for a standalone service, the process exits non-zero.
    Failed,
}

/// Rejected input, published so nothing is lost silently. Carries an excerpt of the payload, its SHA-256,
/// or both (at least one; checked on deserialization).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawErrorReport")]
pub struct ErrorReport {
    /// Always `uns/error-report/v1`.
    pub schema: SchemaTag<ErrorReport>,
    /// The service that rejected it.
    pub service: Id,
    /// The topic it arrived on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Why it was rejected.
    pub reason: String,
    /// The start of the payload (lossy UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_excerpt: Option<String>,
    /// Lowercase hex SHA-256 of the whole payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
    /// When it was rejected.
    pub occurred_at: Timestamp,
}
document!(ErrorReport, "error-report", 1);

#[derive(Deserialize)]
struct RawErrorReport {
    schema: SchemaTag<ErrorReport>,
    service: Id,
    #[serde(default)]
    topic: Option<String>,
    reason: String,
    #[serde(default)]
    payload_excerpt: Option<String>,
    #[serde(default)]
    payload_sha256: Option<String>,
    occurred_at: Timestamp,
}

impl TryFrom<RawErrorReport> for ErrorReport {
    type Error = &'static str;

    fn try_from(raw: RawErrorReport) -> Result<Self, Self::Error> {
        if raw.payload_excerpt.is_none() && raw.payload_sha256.is_none() {
            return Err("payload_excerpt or payload_sha256: one of them is required");
        }
        if let Some(hash) = &raw.payload_sha256
            && (hash.len() != 64
                || !hash
                    .bytes()
                    .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')))
        {
            return Err("payload_sha256: must be 64 lowercase hex digits");
        }
        Ok(Self {
            schema: raw.schema,
            service: raw.service,
            topic: raw.topic,
            reason: raw.reason,
            payload_excerpt: raw.payload_excerpt,
            payload_sha256: raw.payload_sha256,
            occurred_at: raw.occurred_at,
        })
    }
}

/// The reply to a `_cmd` request: `{ok, error?, result?}`. `error` is required when `ok` is false
/// (checked on deserialization).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawCmdReply")]
pub struct CmdReply {
    /// Always `uns/cmd-reply/v1`.
    pub schema: SchemaTag<CmdReply>,
    /// Whether the command was carried out.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Command-specific result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}
document!(CmdReply, "cmd-reply", 1);

impl CmdReply {
    /// A success, with an optional result.
    pub fn ok(result: Option<serde_json::Value>) -> Self {
        Self {
            schema: SchemaTag::default(),
            ok: true,
            error: None,
            result,
        }
    }

    /// A failure with its reason.
    pub fn error(error: impl Into<String>) -> Self {
        Self {
            schema: SchemaTag::default(),
            ok: false,
            error: Some(error.into()),
            result: None,
        }
    }
}

#[derive(Deserialize)]
struct RawCmdReply {
    schema: SchemaTag<CmdReply>,
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    result: Option<serde_json::Value>,
}

impl TryFrom<RawCmdReply> for CmdReply {
    type Error = &'static str;

    fn try_from(raw: RawCmdReply) -> Result<Self, Self::Error> {
        if !raw.ok && raw.error.is_none() {
            return Err("error: required when ok is false");
        }
        Ok(Self {
            schema: raw.schema,
            ok: raw.ok,
            error: raw.error,
            result: raw.result,
        })
    }
}
