//! Session-lifecycle corrections on top of rmqtt 0.24, each measured by a test in
//! `tests/compat.rs`:
//!
//! 1. **DISCONNECT ends the connection.** rmqtt records a client's DISCONNECT but keeps reading
//!    until the client closes the socket. rumqttc (our own client library) does not close after
//!    DISCONNECT, so the connection lingered until keepalive expiry, still counted as connected.
//!    Our `SessionManager` wraps rmqtt's session; when rmqtt stores the DISCONNECT we post
//!    `Closed` to the session's own channel, which ends it exactly as a socket close after
//!    DISCONNECT would (Will discarded, persistent session kept). MQTT 3.1.1 §3.14.4 / MQTT 5
//!    §3.14.4: on DISCONNECT the server discards the Will and "SHOULD close the Network
//!    Connection if the Client has not already done so".
//! 2. **The old client's Will on takeover.** rmqtt suppresses it when the new connection
//!    resumes a persistent session. MQTT 3.1.1 §3.1.2.5 publishes the Will whenever the network
//!    connection closes without DISCONNECT, and MQTT 5 §3.1.4 (point 3) says the existing
//!    client's Will "is published as described in section 3.1.2.5" (at once when its Will
//!    Delay Interval is 0). We publish it ourselves in exactly the case rmqtt skips.
//! 3. **Session Present after a session that ended.** A connection whose session ends with it
//!    (3.1.1 CleanSession = 1, or MQTT 5 Session Expiry 0) leaves rmqtt's session entry behind
//!    for a moment; an immediate reconnect with CleanSession = 0 / Clean Start = 0 found it and
//!    got Session Present = 1. Before the handshake looks, we wait (bounded) until such an
//!    ended session's entry is gone.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, Register, ReturnType, Type};
use rmqtt::session::{DefaultSession, SessionLike, SessionManager, SessionState};
use rmqtt::types::{
    ConnectInfo, ConnectInfoType, Disconnect, DisconnectInfo, FitterType, From, Id, IsPing,
    ListenerConfig, Message, MessageQueueType, OutInflightType, Password, Publish, Reason,
    SessionSubs, SubscriptionOptions, Subscriptions, TimestampMillis, TopicFilter, UserName,
};

/// How long a reconnect waits for its ended predecessor's session to be cleaned up.
const ENDED_SESSION_WAIT: Duration = Duration::from_secs(2);
/// How long the takeover-Will check waits for the new connection's session to appear.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// Installs our session manager and registers the session-lifecycle handlers.
pub(crate) async fn register(register: &dyn Register, scx: &ServerContext) {
    *scx.extends.session_mgr_mut().await = Box::new(ClosingSessionManager);
    register
        .add(
            Type::ClientConnect,
            Box::new(EndedSessionWait { scx: scx.clone() }),
        )
        .await;
    register
        .add(
            Type::ClientDisconnected,
            Box::new(TakeoverWill { scx: scx.clone() }),
        )
        .await;
}

/// rmqtt's session store, but sessions that close their connection on DISCONNECT.
struct ClosingSessionManager;

#[async_trait]
impl SessionManager for ClosingSessionManager {
    #[allow(clippy::too_many_arguments)]
    async fn create(
        &self,
        id: Id,
        scx: ServerContext,
        listen_cfg: ListenerConfig,
        _fitter: FitterType,
        subscriptions: SessionSubs,
        deliver_queue: MessageQueueType,
        out_inflight: OutInflightType,
        conn_info: ConnectInfoType,
        created_at: TimestampMillis,
        connected_at: TimestampMillis,
        session_present: bool,
        superuser: bool,
        connected: bool,
        disconnect_info: Option<DisconnectInfo>,
        _last_id: Option<Id>,
    ) -> rmqtt::Result<Arc<dyn SessionLike>> {
        let inner = DefaultSession::new(
            id,
            scx,
            listen_cfg,
            subscriptions,
            deliver_queue,
            out_inflight,
            conn_info,
            created_at,
            connected_at,
            session_present,
            superuser,
            connected,
            disconnect_info,
        );
        Ok(Arc::new(ClosingSession(inner)))
    }
}

/// rmqtt's `DefaultSession` plus: a stored DISCONNECT closes the connection.
struct ClosingSession(DefaultSession);

#[async_trait]
impl SessionLike for ClosingSession {
    fn id(&self) -> &Id {
        self.0.id()
    }
    fn context(&self) -> &ServerContext {
        self.0.context()
    }
    fn listen_cfg(&self) -> &ListenerConfig {
        self.0.listen_cfg()
    }
    fn deliver_queue(&self) -> &MessageQueueType {
        self.0.deliver_queue()
    }
    fn out_inflight(&self) -> &OutInflightType {
        self.0.out_inflight()
    }
    async fn subscriptions(&self) -> rmqtt::Result<SessionSubs> {
        self.0.subscriptions().await
    }
    async fn subscriptions_add(
        &self,
        topic_filter: TopicFilter,
        opts: SubscriptionOptions,
    ) -> rmqtt::Result<Option<SubscriptionOptions>> {
        self.0.subscriptions_add(topic_filter, opts).await
    }
    async fn subscriptions_remove(
        &self,
        topic_filter: &str,
    ) -> rmqtt::Result<Option<(TopicFilter, SubscriptionOptions)>> {
        self.0.subscriptions_remove(topic_filter).await
    }
    async fn subscriptions_drain(&self) -> rmqtt::Result<Subscriptions> {
        self.0.subscriptions_drain().await
    }
    async fn subscriptions_extend(&self, other: Subscriptions) -> rmqtt::Result<()> {
        self.0.subscriptions_extend(other).await
    }
    async fn created_at(&self) -> rmqtt::Result<TimestampMillis> {
        self.0.created_at().await
    }
    async fn session_present(&self) -> rmqtt::Result<bool> {
        self.0.session_present().await
    }
    async fn connect_info(&self) -> rmqtt::Result<Arc<ConnectInfo>> {
        self.0.connect_info().await
    }
    fn username(&self) -> Option<&UserName> {
        self.0.username()
    }
    fn password(&self) -> Option<&Password> {
        self.0.password()
    }
    async fn protocol(&self) -> rmqtt::Result<u8> {
        self.0.protocol().await
    }
    async fn superuser(&self) -> rmqtt::Result<bool> {
        self.0.superuser().await
    }
    async fn connected(&self) -> rmqtt::Result<bool> {
        self.0.connected().await
    }
    async fn connected_at(&self) -> rmqtt::Result<TimestampMillis> {
        self.0.connected_at().await
    }
    async fn disconnected_at(&self) -> rmqtt::Result<TimestampMillis> {
        self.0.disconnected_at().await
    }
    async fn disconnected_reasons(&self) -> rmqtt::Result<Vec<Reason>> {
        self.0.disconnected_reasons().await
    }
    async fn disconnected_reason(&self) -> rmqtt::Result<Reason> {
        self.0.disconnected_reason().await
    }
    async fn disconnected_reason_has(&self) -> bool {
        self.0.disconnected_reason_has().await
    }
    async fn disconnected_reason_add(&self, r: Reason) -> rmqtt::Result<()> {
        self.0.disconnected_reason_add(r).await
    }
    async fn disconnected_reason_take(&self) -> rmqtt::Result<Reason> {
        self.0.disconnected_reason_take().await
    }
    async fn disconnect(&self) -> rmqtt::Result<Option<Disconnect>> {
        self.0.disconnect().await
    }
    async fn disconnected_set(
        &self,
        d: Option<Disconnect>,
        reason: Option<Reason>,
    ) -> rmqtt::Result<()> {
        let received = d.clone();
        self.0.disconnected_set(d, reason).await?;
        // rmqtt stores a DISCONNECT packet with `Some`; its own teardown calls `(None, None)`.
        if let Some(disconnect) = received {
            let scx = self.0.context();
            let tx = scx.extends.shared().await.entry(self.0.id().clone()).tx();
            if let Some(tx) = tx {
                // Ends the online loop as if the client had closed the socket after its DISCONNECT.
                let _ =
                    tx.unbounded_send(Message::Closed(Reason::ConnectDisconnect(Some(disconnect))));
            }
        }
        Ok(())
    }
    async fn on_drop(&self) -> rmqtt::Result<()> {
        self.0.on_drop().await
    }
    async fn keepalive(&self, ping: IsPing) {
        self.0.keepalive(ping).await
    }
}

/// Whether this connection's session ends when the connection does.
fn session_ends_with_connection(connect_info: &ConnectInfo) -> bool {
    match connect_info {
        ConnectInfo::V3(_, connect) => connect.clean_session,
        ConnectInfo::V5(_, connect) => connect.session_expiry_interval_secs == 0,
    }
}

/// Fix 3: before a CONNECT is handled, wait until a predecessor whose session already ended
/// has been cleaned up, so the handshake does not report it as present.
struct EndedSessionWait {
    scx: ServerContext,
}

// `Parameter<'_>` would make the lifetime early-bound and no longer match rmqtt's trait.
#[allow(elided_lifetimes_in_paths)]
#[async_trait]
impl Handler for EndedSessionWait {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let Parameter::ClientConnect(connect_info) = param else {
            return (true, acc);
        };
        if connect_info.clean_start() {
            return (true, acc);
        }
        let client_id = connect_info.id().client_id.clone();
        let wait = async {
            let mut poll = tokio::time::interval(Duration::from_millis(2));
            loop {
                let session = self
                    .scx
                    .extends
                    .shared()
                    .await
                    .entry(connect_info.id().clone())
                    .session();
                let Some(session) = session else { return };
                let ended = !session.connected().await.unwrap_or(false)
                    && session
                        .connect_info()
                        .await
                        .map(|info| session_ends_with_connection(&info))
                        .unwrap_or(true);
                // A live predecessor is a takeover; rmqtt handles that.
                if !ended {
                    return;
                }
                poll.tick().await;
            }
        };
        if tokio::time::timeout(ENDED_SESSION_WAIT, wait)
            .await
            .is_err()
        {
            tracing::warn!(%client_id, "ended session still registered; session present may be reported");
        }
        (true, acc)
    }
}

/// Whether `reason` (rmqtt wraps the list of reasons in `Reasons`) includes a kick by a new
/// connection with the same client id (`ConnectKicked(false)`; `true` is an admin kick).
fn kicked_by_takeover(reason: &Reason) -> bool {
    match reason {
        Reason::Reasons(reasons) => reasons.iter().any(kicked_by_takeover),
        other => other.is_kicked(false),
    }
}

/// Fix 2: when a client was kicked by a takeover and rmqtt skipped its Will, publish it.
struct TakeoverWill {
    scx: ServerContext,
}

#[allow(elided_lifetimes_in_paths)]
#[async_trait]
impl Handler for TakeoverWill {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let Parameter::ClientDisconnected(session, reason) = param else {
            return (true, acc);
        };
        // `ConnectKicked(false)`: kicked by a new connection with the same client id.
        if !kicked_by_takeover(reason) {
            return (true, acc);
        }
        let Ok(old_info) = session.connect_info().await else {
            return (true, acc);
        };
        let Some(will) = old_info.last_will() else {
            return (true, acc);
        };
        // A delayed Will is left to rmqtt's delay handling (the new connection cancels it).
        if will
            .will_delay_interval()
            .is_some_and(|delay| !delay.is_zero())
        {
            return (true, acc);
        }
        let Ok(publish) = Publish::try_from(will) else {
            return (true, acc);
        };
        // rmqtt skips the Will iff the new connection resumes the session (Clean Start 0) and
        // the old session was persistent. The new connection's flags are known once its
        // session is registered, which races with this hook: look it up in a task.
        let old_persistent = !session_ends_with_connection(&old_info);
        let old_id = session.id.clone();
        let scx = self.scx.clone();
        tokio::spawn(async move {
            let find_new = async {
                let mut poll = tokio::time::interval(Duration::from_millis(2));
                loop {
                    let current = scx.extends.shared().await.entry(old_id.clone()).session();
                    if let Some(current) = current.filter(|s| s.id != old_id)
                        && let Ok(info) = current.connect_info().await
                    {
                        return Some(info.clean_start());
                    }
                    poll.tick().await;
                }
            };
            let new_clean_start = tokio::time::timeout(TAKEOVER_WAIT, find_new)
                .await
                .ok()
                .flatten();
            // If no new session appeared (its handshake failed after the kick) we cannot tell
            // what rmqtt decided and leave it at that, rather than risk a duplicate Will.
            let rmqtt_skipped = old_persistent && new_clean_start == Some(false);
            if rmqtt_skipped {
                let from = From::from_lastwill(old_id.clone());
                let publish = scx
                    .extends
                    .hook_mgr()
                    .message_publish(None, from.clone(), &publish)
                    .await
                    .unwrap_or(publish);
                if let Err(e) = SessionState::forwards(&scx, from, publish, false, None).await {
                    tracing::warn!(client_id = %old_id.client_id, cause = %e, "publishing Will after takeover");
                }
            }
        });
        (true, acc)
    }
}
