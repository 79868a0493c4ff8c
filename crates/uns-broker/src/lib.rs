//! The UNS's embedded MQTT broker: MQTT 3.1.1 and 5 on one port, websockets, TLS (`tls.rs`),
//! username/password auth with roles, `$SYS` topics and retained messages that survive restarts.
//!
//! ```no_run
//! # async fn run() -> Result<(), uns_broker::BrokerError> {
//! let broker = uns_broker::start(uns_broker::BrokerConfig::default()).await?;
//! println!("MQTT on {}", broker.mqtt_addr());
//! broker.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # Invariants
//!
//! - **Nothing outside this crate knows the engine.** The engine is rmqtt 0.24, embedded in the
//!   caller's tokio runtime, behind the crate-private `Engine` trait; the public API is
//!   [`BrokerConfig`], [`start`], [`BrokerHandle`], [`BrokerStats`] and the error types. No
//!   rmqtt type appears in a public signature, so the engine can be swapped.
//! - **Our retained store, our format.** Retained messages live in `data_dir/broker/retained.redb`
//!   (redb, layout documented in `store.rs`), plugged in through rmqtt's `RetainStorage` trait.
//! - **[`BrokerHandle::shutdown`] really stops the broker**: the ports close, every client is
//!   disconnected (its Will published), the store is flushed and closed; a second [`start`] on
//!   the same `data_dir` in the same process works afterwards.
//! - **A crash does not swallow Wills.** The Will of every connected client is kept in
//!   `data_dir/broker/wills.redb` (durable before its CONNACK, removed when its connection ends);
//!   the next [`start`] publishes the ones a crash left before it accepts anyone, as the server
//!   closing those connections would have (`rmqtt_engine/wills.rs`). So a retained STATE
//!   `online` of a Sparkplug host does not outlive a `kill -9` of the broker.
//! - **Several brokers per process are fine**: rmqtt keeps its state in a per-broker context;
//!   the one global (a CPU-busy cache) is switched off.
//!
//! # Settings pinned against rmqtt's defaults (each covered by a test in `tests/`: `compat.rs`, ACL and auth in `acl.rs`, TLS in `tls.rs`)
//!
//! | setting | rmqtt default | ours | why |
//! |---|---|---|---|
//! | `TCP_NODELAY` | off | on | small UNS messages must not wait for Nagle/delayed ACK |
//! | retained TTL | 5 min (`rmqtt-retainer`) / none stored (core) | never, unless the publisher set Message Expiry | MQTT Explorer must show the whole namespace |
//! | retained persistence | sled plugin | redb, batched writer | survives restarts; workspace standard |
//! | broker message expiry | 5 min, sent to v5 subscribers | none | v5 subscribers get no Message Expiry the publisher did not set |
//! | per-client queue | 1 000 | [`BrokerConfig::max_queue`] = 100 000 | a `#` subscriber receives every retained message |
//! | inflight window | 16 | [`BrokerConfig::max_inflight`] = 128 | throughput for QoS 1 subscribers |
//! | shared subscriptions | refused | `$share/group/filter`, round robin | services scale out |
//! | ACL | none (allow) | per-account roles derived from the model's owner column, then rules (see `acl.rs`); reading `#` and `$SYS/#` is allowed to every role but `edge` | each account writes only what it owns; MQTT Explorer reads everything |
//! | auth | anonymous | users from config (plain or Argon2 PHC hash); anonymous only on loopback unless opted in; a service's client ids only for its account | secure by default; no session takeover of a service |
//! | TLS | rustls with aws-lc-rs (`tls` feature, a C build) | rustls with ring in `tls.rs`, relaying to the MQTT listener | no C toolchain; auth and limits apply unchanged |
//! | busy check | on (refuses CONNECT under host load) | off | an edge box under load must still accept its services |
//! | `$SYS` | JSON blobs, plugin | mosquitto topic names, retained, every [`BrokerConfig::sys_interval`] | what MQTT Explorer and dashboards read |
//!
//! Drops: when a client's queue is full, a new QoS 0 message is dropped; for QoS 1/2 the
//! oldest queued message is dropped. Each drop counts in [`BrokerStats::messages_dropped`].
//!
//! Logging: rmqtt logs through the `log` crate; this crate through `tracing`.

#![deny(missing_docs)]

mod acl;
mod config;
mod engine;
mod limits;
mod rmqtt_engine;
mod store;
mod tls;

use std::net::SocketAddr;

pub use acl::{Access, AclRule, Permission, Role};
pub use config::{
    BrokerConfig, ConfigError, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_INFLIGHT,
    DEFAULT_MAX_PACKET_SIZE, DEFAULT_MAX_QUEUE, DEFAULT_MAX_TOPIC_LENGTH, DEFAULT_MAX_TOPIC_LEVELS,
    DEFAULT_SESSION_EXPIRY, DEFAULT_SYS_INTERVAL, MAX_TOPIC_LEVELS_LIMIT, Secret, User,
};
pub use store::StoreError;

use engine::Engine;

/// Why the broker could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The configuration is unusable; nothing was started.
    #[error("invalid broker config: {0}")]
    Config(#[from] ConfigError),
    /// A listener could not bind (port in use, address not local, permissions).
    #[error("binding the {what} listener on {addr}: {source}")]
    Bind {
        /// `MQTT` or `websocket`.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The engine's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The retained store could not be opened, written or closed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The TLS certificate or key could not be read or used.
    #[error("TLS: {path}: {reason}")]
    Tls {
        /// The certificate or key file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A broker task failed unexpectedly (a bug).
    #[error("broker internal error: {0}")]
    Internal(String),
}

/// Counters since [`start`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Clients connected right now (all listeners).
    pub clients_connected: usize,
    /// PUBLISH packets received from clients, Wills included.
    pub messages_received: u64,
    /// PUBLISH packets sent to clients, retained and `$SYS` included.
    pub messages_sent: u64,
    /// Messages discarded for a subscriber (queue full, expired, session gone).
    pub messages_dropped: u64,
    /// PUBLISH packets, SUBSCRIBE filters and CONNECTs (another service's client id, a Will the
    /// account may not publish) refused by an account's role or rules since start.
    pub acl_refused: u64,
    /// Retained messages held (including the broker's own `$SYS` topics).
    pub retained_messages: usize,
    /// True while the retained store cannot write (full disk, I/O error): retained changes
    /// are kept in memory and retried until they commit. For health (`degraded`) and metrics.
    pub retained_store_degraded: bool,
    /// Retained-store commits that failed for a disk reason since start.
    pub retained_store_failed_writes: u64,
    /// Retained changes acknowledged (PUBACK) but not yet committed: what a crash right now
    /// would lose. Changes commit in batches, so this is normally 0 within one commit time.
    pub retained_store_uncommitted: u64,
}

/// Validates `config`, opens the retained store, binds the listeners and returns once they
/// accept connections. Must be called inside a tokio runtime, which then runs the broker.
pub async fn start(config: BrokerConfig) -> Result<BrokerHandle, BrokerError> {
    config.validate()?;
    // Read the certificate before anything listens: a bad file fails the start cleanly.
    let tls_config = match (&config.tls_listen, &config.tls_cert, &config.tls_key) {
        (Some(listen), Some(cert), Some(key)) => Some((*listen, tls::server_config(cert, key)?)),
        _ => None,
    };
    let handshake_timeout = config.connect_timeout;
    let engine = rmqtt_engine::start(config).await?;
    let tls = match tls_config {
        Some((listen, server_config)) => {
            match tls::start(listen, server_config, engine.mqtt_addr(), handshake_timeout).await {
                Ok(tls) => Some(tls),
                Err(e) => {
                    let _ = Box::new(engine).shutdown().await;
                    return Err(e);
                }
            }
        }
        None => None,
    };
    Ok(BrokerHandle {
        engine: Box::new(engine),
        tls,
    })
}

/// A running broker. Dropping it without [`BrokerHandle::shutdown`] leaves the broker running
/// until the tokio runtime ends.
pub struct BrokerHandle {
    engine: Box<dyn Engine>,
    /// The TLS listener, if configured; it relays to the engine's MQTT listener.
    tls: Option<tls::TlsListener>,
}

impl std::fmt::Debug for BrokerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerHandle")
            .field("mqtt_addr", &self.mqtt_addr())
            .field("ws_addr", &self.ws_addr())
            .field("tls_addr", &self.tls_addr())
            .finish()
    }
}

impl BrokerHandle {
    /// The bound MQTT address (the real port when port 0 was asked).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.engine.mqtt_addr()
    }

    /// The bound websocket address, if enabled.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.engine.ws_addr()
    }

    /// The bound MQTT-over-TLS address, if enabled.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().map(tls::TlsListener::addr)
    }

    /// Current counters.
    pub fn stats(&self) -> BrokerStats {
        self.engine.stats()
    }

    /// Test seam: the retained store's next `n` commits fail with "no space left on device",
    /// as on a full disk (`u32::MAX`: until called again with 0). For tests of the full-disk
    /// reporting (health, metrics) of callers, where a real full disk cannot be arranged.
    #[doc(hidden)]
    pub fn inject_retained_disk_full(&self, n: u32) {
        self.engine.inject_retained_disk_full(n);
    }

    /// Stops accepting, disconnects every client (their Wills are published), flushes and
    /// closes the retained store, and returns. Waits at most about 5 s for sessions to end.
    pub async fn shutdown(self) -> Result<(), BrokerError> {
        if let Some(tls) = self.tls {
            tls.stop().await;
        }
        self.engine.shutdown().await
    }
}
