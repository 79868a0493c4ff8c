//! The rmqtt 0.24 engine: builds a `ServerContext` with our pinned settings, binds the
//! listeners, and implements the shutdown rmqtt does not have.
//!
//! Tasks and who ends them:
//! - `server`: rmqtt's `MqttServer::run`, which owns the listening sockets. Aborting it drops
//!   them (the ports close at once); connections live in their own tasks.
//! - `sys`: the `$SYS` publisher, aborted on shutdown.
//! - `watchdog`: the connect timeout (`connect_timeout.rs`), aborted on shutdown.
//! - connection/session tasks (spawned by rmqtt): ended by kicking every session.
//! - the retained-store writer thread: joined by `RetainedStore::close`, last.
//!
//! rmqtt keeps no process-global state that couples two `ServerContext`s (everything hangs off
//! the context; the only statics are a CPU-busy cache in `Node::sys_is_busy`, which we turn off
//! with `busy_check_enable(false)`), so several brokers can run in one process. A few of its
//! internal helper tasks (the lazily created task-exec queues) are never stopped; they idle
//! until the runtime ends.

mod acl;
mod connect_timeout;
mod hooks;
mod retain;
mod sessions;
mod shared_sub;
mod sys;
mod wills;

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Register, Type};
use rmqtt::net::{Builder, Listener};
use rmqtt::retain::RetainStorage;
use rmqtt::server::MqttServer;
use rmqtt::types::{Retain, TopicFilter, TopicName};
use tokio::task::JoinHandle;

use crate::config::BrokerConfig;
use crate::engine::Engine;
use crate::store::RetainedStore;
use crate::{BrokerError, BrokerStats};

use hooks::{AuthHandler, Counters, CountingHandler, TopicGuard};
use retain::RetainAdapter;

/// How long shutdown waits for sessions to wind down (Wills published) before closing the
/// store anyway.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Listener ids inside rmqtt (it keys listener configs by id; port 0 would collide).
const MQTT_LISTENER_ID: u16 = 1;
const WS_LISTENER_ID: u16 = 2;

/// A running rmqtt broker.
pub(crate) struct RmqttEngine {
    scx: ServerContext,
    mqtt_addr: SocketAddr,
    ws_addr: Option<SocketAddr>,
    counters: Arc<Counters>,
    retained: Arc<RetainAdapter>,
    store: Arc<RetainedStore>,
    /// The Wills of connected clients (`wills.rs`), closed after the sessions ended.
    will_store: Arc<uns_store::Store>,
    /// Our hook handlers; stopped on shutdown so a stopped broker's context does no work.
    register: Box<dyn Register>,
    /// rmqtt's accept loops; owns the listening sockets.
    server: JoinHandle<()>,
    /// The `$SYS` publisher.
    sys: JoinHandle<()>,
    /// The connect-timeout watchdog.
    watchdog: JoinHandle<()>,
}

/// Applies the UNS settings to one listener. Each is a deliberate choice; see the crate docs.
fn listener_builder(config: &BrokerConfig, name: &str, addr: SocketAddr) -> Builder {
    // `validate` bounds max_inflight to 1..=65535; the fallback is unreachable.
    let max_inflight = u16::try_from(config.max_inflight)
        .ok()
        .and_then(NonZeroU16::new)
        .unwrap_or(NonZeroU16::MIN);
    Builder::new()
        .name(name)
        .laddr(addr)
        // rmqtt defaults to Nagle on: small UNS messages would wait up to 40 ms (delayed ACK).
        .nodelay(true)
        // A restarted broker must rebind its port while old connections sit in TIME_WAIT.
        .reuseaddr(Some(true))
        // Off so that rmqtt runs our authentication hook for every CONNECT (it checks the Will
        // topic); the hook applies `anonymous_allowed` itself.
        .allow_anonymous(false)
        .allow_zero_keepalive(true)
        .max_inflight(max_inflight)
        .max_mqueue_len(config.max_queue)
        .max_packet_size(config.max_packet_size)
        // Bounds the websocket upgrade and, after the version probe, the CONNECT read; the
        // probe itself is bounded by the `connect_timeout` watchdog.
        .handshake_timeout(config.connect_timeout)
        // rmqtt's default is an undocumented 2 h for 3.1.1 and no cap for MQTT 5.
        .session_expiry_interval(config.session_expiry)
        .max_session_expiry_interval(config.session_expiry)
        // rmqtt's default (5 min) is applied to every message without one: it would drop queued
        // messages after 5 minutes and add a Message Expiry property the publisher never set.
        // Zero = no broker-imposed expiry; a publisher's own expiry still applies.
        .message_expiry_interval(Duration::ZERO)
}

fn bind(
    builder: Builder,
    what: &'static str,
    ws: bool,
) -> Result<(Listener, SocketAddr), BrokerError> {
    let addr = builder.laddr;
    let bind_error = |source: rmqtt::Error| BrokerError::Bind {
        what,
        addr,
        source: source.into(),
    };
    let listener = builder.bind().map_err(bind_error)?;
    let listener = if ws { listener.ws() } else { listener.tcp() }.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

/// Starts an rmqtt broker; returns once both listeners are bound.
pub(crate) async fn start(config: BrokerConfig) -> Result<RmqttEngine, BrokerError> {
    let dir = config.data_dir.join("broker");
    let (store, loaded) = tokio::task::spawn_blocking(move || RetainedStore::open(&dir))
        .await
        .map_err(|e| {
            BrokerError::Internal(format!("opening the retained store panicked: {e}"))
        })??;
    let store = Arc::new(store);
    let n_loaded = loaded.len();
    let wills_dir = config.data_dir.join("broker");
    let will_store = tokio::task::spawn_blocking(move || wills::open(&wills_dir))
        .await
        .map_err(|e| BrokerError::Internal(format!("opening the Will store panicked: {e}")))?
        .map_err(crate::store::StoreError::from)?;
    let will_store = Arc::new(will_store);
    let retained = Arc::new(RetainAdapter::new(store.clone(), loaded));

    // Busy checking refuses connections when the host's load average is high: wrong for an
    // embedded broker on a shared edge box, and its cache is the one process-global in rmqtt.
    let scx = ServerContext::new().busy_check_enable(false).build().await;
    *scx.extends.retain_mut().await = Box::new(SharedRetain(retained.clone()));
    *scx.extends.shared_subscription_mut().await = Box::new(shared_sub::RoundRobin::default());

    let counters = Arc::new(Counters::default());
    let register = scx.extends.hook_mgr().register();
    for typ in [
        Type::MessagePublish,
        Type::MessageDelivered,
        Type::MessageDropped,
    ] {
        register
            .add(typ, Box::new(CountingHandler(counters.clone())))
            .await;
    }
    let limits = config.topic_limits();
    let accounts = Arc::new(crate::acl::Accounts::new(
        &config.users,
        &config.internal_users,
    ));
    register
        .add(
            Type::ClientAuthenticate,
            Box::new(AuthHandler::new(
                accounts.clone(),
                counters.clone(),
                config.anonymous_allowed(),
                limits,
            )),
        )
        .await;
    for typ in [Type::MessagePublishCheckAcl, Type::ClientSubscribeCheckAcl] {
        register
            .add(
                typ,
                Box::new(TopicGuard {
                    scx: scx.clone(),
                    limits,
                }),
            )
            .await;
    }
    let acl_guard = acl::AclGuard::new(accounts, counters.clone());
    if acl_guard.is_active() {
        // After `TopicGuard` (registered first): malformed topics are refused as such.
        let acl_guard = Arc::new(acl_guard);
        for typ in [Type::MessagePublishCheckAcl, Type::ClientSubscribeCheckAcl] {
            register
                .add(typ, Box::new(acl::Shared(acl_guard.clone())))
                .await;
        }
    }
    let connected = connect_timeout::Connected::default();
    register
        .add(
            Type::ClientConnect,
            Box::new(connect_timeout::ConnectSeen(connected.clone())),
        )
        .await;
    sessions::register(&*register, &scx).await;
    let will_recorder = Arc::new(wills::WillRecorder::new(will_store.clone()));
    for typ in [Type::ClientConnected, Type::ClientDisconnected] {
        register
            .add(typ, Box::new(wills::Shared(will_recorder.clone())))
            .await;
    }
    register.start().await;
    // Before anyone can connect: what a crash left retained as "online" says offline again.
    wills::publish_leftovers(&scx, &will_store, &store)
        .await
        .map_err(crate::store::StoreError::from)?;

    let (mqtt_listener, mqtt_addr) = bind(
        listener_builder(&config, "uns/mqtt", config.listen),
        "MQTT",
        false,
    )?;
    let mut server = MqttServer::new(scx.clone()).listener_by_id(mqtt_listener, MQTT_LISTENER_ID);
    let mut ws_addr = None;
    if let Some(ws_listen) = config.ws_listen {
        let (ws_listener, addr) = bind(
            listener_builder(&config, "uns/ws", ws_listen),
            "websocket",
            true,
        )?;
        server = server.listener_by_id(ws_listener, WS_LISTENER_ID);
        ws_addr = Some(addr);
    }
    let server = server.build();
    let server = tokio::spawn(async move {
        if let Err(e) = server.run().await {
            tracing::error!(cause = %e, "MQTT server stopped");
        }
    });

    let listeners = std::iter::once(mqtt_addr).chain(ws_addr).collect();
    let watchdog = tokio::spawn(connect_timeout::run(
        listeners,
        config.connect_timeout,
        connected,
    ));

    let sys = tokio::spawn(sys::run(
        sys::SysSources {
            scx: scx.clone(),
            counters: counters.clone(),
            retained: retained.clone(),
            started: tokio::time::Instant::now(),
        },
        config.sys_interval,
    ));

    if config.users.is_empty() {
        tracing::info!(%mqtt_addr, "no broker users configured: anonymous clients allowed (loopback only unless allow_anonymous)");
    }
    tracing::info!(%mqtt_addr, ?ws_addr, retained = n_loaded, "broker listening");
    Ok(RmqttEngine {
        scx,
        mqtt_addr,
        ws_addr,
        counters,
        retained,
        store,
        will_store,
        register,
        server,
        sys,
        watchdog,
    })
}

impl RmqttEngine {
    async fn stop(self) -> Result<(), BrokerError> {
        let RmqttEngine {
            scx,
            store,
            will_store,
            register,
            server,
            sys,
            watchdog,
            ..
        } = self;
        // 1. Stop accepting: the listening sockets live in the server task.
        server.abort();
        sys.abort();
        watchdog.abort();
        let _ = server.await;
        let _ = sys.await;

        // 2. Disconnect every client and end every session (online or offline). A kicked
        //    client's Will is published, as for any connection the server closes.
        let ids: Vec<_> = scx
            .extends
            .shared()
            .await
            .iter()
            .map(|entry| entry.id())
            .collect();
        let n_sessions = ids.len();
        let kicks = ids.into_iter().map(|id| {
            let scx = scx.clone();
            async move {
                let entry = scx.extends.shared().await.entry(id.clone());
                match entry.try_lock().await {
                    Ok(mut entry) => {
                        if let Err(e) = entry.kick(true, true, true).await {
                            tracing::warn!(client_id = %id.client_id, cause = %e, "kicking client on shutdown");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(client_id = %id.client_id, cause = %e, "locking session on shutdown");
                    }
                }
            }
        });
        futures::future::join_all(kicks).await;
        let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
            let mut poll = tokio::time::interval(Duration::from_millis(10));
            while scx.connections.count() > 0 || scx.sessions.count() > 0 {
                poll.tick().await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                connections = scx.connections.count(),
                sessions = scx.sessions.count(),
                "sessions still open after the shutdown deadline; closing the store anyway"
            );
        }
        register.stop().await;
        will_store.close();

        // 3. Flush and close the retained store last.
        tokio::task::spawn_blocking(move || store.close())
            .await
            .map_err(|e| {
                BrokerError::Internal(format!("closing the retained store panicked: {e}"))
            })??;
        tracing::info!(sessions = n_sessions, "broker stopped");
        Ok(())
    }
}

impl Engine for RmqttEngine {
    fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    fn inject_retained_disk_full(&self, n: u32) {
        self.store.store().inject_disk_full(n);
    }

    fn stats(&self) -> BrokerStats {
        BrokerStats {
            clients_connected: usize::try_from(self.scx.connections.count()).unwrap_or(0),
            messages_received: self.counters.received.load(Ordering::Relaxed),
            messages_sent: self.counters.sent.load(Ordering::Relaxed),
            messages_dropped: self.counters.dropped.load(Ordering::Relaxed),
            acl_refused: self.counters.acl_refused.load(Ordering::Relaxed),
            retained_messages: self.retained.len(),
            retained_store_degraded: self.store.degraded().is_some(),
            retained_store_failed_writes: self.store.n_failed_writes(),
            retained_store_uncommitted: self.store.n_uncommitted(),
        }
    }

    fn shutdown(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>> {
        Box::pin(self.stop())
    }
}

/// rmqtt owns its `RetainStorage` as a `Box`; this shares our adapter with the handle.
struct SharedRetain(Arc<RetainAdapter>);

#[async_trait]
impl RetainStorage for SharedRetain {
    fn enable(&self) -> bool {
        self.0.enable()
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        expiry_interval: Option<Duration>,
    ) -> rmqtt::Result<()> {
        self.0.set(topic, retain, expiry_interval).await
    }

    async fn get(&self, topic_filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        self.0.get(topic_filter).await
    }

    async fn count(&self) -> isize {
        self.0.count().await
    }

    async fn max(&self) -> isize {
        self.0.max().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The listener settings we pin against rmqtt's defaults (TCP_NODELAY is not observable
    /// from a client, so it is checked here).
    #[test]
    fn listener_settings_are_pinned() {
        let config = BrokerConfig {
            max_queue: 7,
            max_inflight: 9,
            ..BrokerConfig::default()
        };
        let builder = listener_builder(&config, "t", config.listen);
        let defaults = Builder::new();
        assert!(builder.nodelay && !defaults.nodelay);
        assert_eq!(builder.message_expiry_interval, Duration::ZERO);
        assert_ne!(defaults.message_expiry_interval, Duration::ZERO);
        assert_eq!(builder.max_mqueue_len, 7);
        assert_eq!(builder.max_inflight.get(), 9);
        assert_eq!(builder.reuseaddr, Some(true));
        assert!(builder.allow_zero_keepalive);
        assert!(
            !builder.allow_anonymous,
            "rmqtt's anonymous shortcut is off: our authentication hook sees every CONNECT"
        );
    }
}
