//! Wills that survive a broker crash.
//!
//! MQTT publishes a client's Will when its network connection closes without DISCONNECT, including
//! when the server closes it (MQTT 3.1.1 §3.1.2.5, MQTT 5 §3.1.2.5). A broker that dies (`kill -9`,
//! power loss) closes every connection but publishes nothing, so a retained "I am online" stays
//! retained for good: a Sparkplug primary host's `spBv1.0/STATE/{host}` stays `online`, and edge
//! nodes forward their store-and-forward backlog to a host that is not there (issue 9 item 5).
//!
//! So the broker keeps the Will of every connected client in `data_dir/broker/wills.redb` (table
//! `wills_v1`: client id → the connection it belongs to, topic, payload, QoS, retain):
//! - written durably in the `ClientConnected` hook, which rmqtt runs before it sends the CONNACK,
//!   so no client can publish (e.g. its STATE birth) before its Will is on disk;
//! - removed in the `ClientDisconnected` hook (the Will was published or discarded), only if it
//!   is still that connection's (a takeover's new connection writes its own first);
//! - at start, before the listeners accept, every Will left over from the last run is published
//!   as the server would have when it closed those connections (retained ones replace the retained
//!   message, so `STATE` reads `online: false` until the host really reconnects), then removed once
//!   the retained store committed them.
//!
//! Cost: one durable write per CONNECT and per disconnect of a client that has a Will (none for
//! clients without one). Wills of MQTT 5 clients with a Will Delay Interval are published at start
//! without the delay (their session did not survive the crash either).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::session::SessionState;
use rmqtt::types::{ClientId, CodecPublish, From, Id, Publish, QoS, TopicName};
use serde::{Deserialize, Serialize};
use uns_store::{Json, ReadableTx, Store, StoreError, Str, Table};

use crate::store::RetainedStore;

/// The Wills of connected clients, by client id.
const WILLS: Table<Str, Json<StoredWill>> = Table::new("wills_v1");

/// How long start-up waits for the retained store to commit the Wills it published before it
/// forgets them (they are published again at the next start if it did not).
const COMMIT_WAIT: Duration = Duration::from_secs(5);

/// One connected client's Will.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredWill {
    /// The connection it belongs to (its creation time and remote address).
    connection: String,
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
}

fn connection_of(id: &Id) -> String {
    format!("{}/{:?}", id.create_time, id.remote_addr)
}

/// Opens `dir/wills.redb` (`dir` exists: the retained store made it).
pub(crate) fn open(dir: &std::path::Path) -> Result<Store, StoreError> {
    Store::open(&dir.join("wills.redb"))
}

/// Publishes the Wills left over from the last run (connections the broker's death closed) and
/// forgets them once `retained` committed. Call after the hooks are registered and before the
/// listeners accept. Returns how many were published.
pub(crate) async fn publish_leftovers(
    scx: &ServerContext,
    store: &Store,
    retained: &RetainedStore,
) -> Result<usize, StoreError> {
    let leftovers = store.read(|tx| tx.range(&WILLS, ..)).await?;
    if leftovers.is_empty() {
        return Ok(0);
    }
    for (client_id, will) in &leftovers {
        let publish = CodecPublish {
            dup: false,
            retain: will.retain,
            qos: match will.qos {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                _ => QoS::ExactlyOnce,
            },
            topic: TopicName::from(will.topic.as_str()),
            packet_id: None,
            payload: bytes::Bytes::from(will.payload.clone()),
            properties: None,
        };
        let id = Id::new(0, 0, None, None, ClientId::from(client_id.as_str()), None);
        let publish = Publish::new(
            Box::new(publish),
            None,
            None,
            Some(rmqtt::utils::timestamp_millis()),
        );
        if let Err(e) =
            SessionState::forwards(scx, From::from_lastwill(id), publish, false, None).await
        {
            tracing::warn!(%client_id, cause = %e, "publishing a Will left over from the last run");
        }
    }
    let committed = tokio::time::timeout(COMMIT_WAIT, async {
        let mut poll = tokio::time::interval(Duration::from_millis(5));
        while retained.n_uncommitted() > 0 {
            poll.tick().await;
        }
    })
    .await
    .is_ok();
    if committed {
        let forget = leftovers.clone();
        store
            .write(move |tx| {
                for (client_id, will) in &forget {
                    if tx.get(&WILLS, client_id)?.as_ref() == Some(will) {
                        tx.remove(&WILLS, client_id)?;
                    }
                }
                Ok(())
            })
            .await?;
    } else {
        tracing::warn!(
            "the retained store did not commit the left-over Wills in time; they are published again at the next start"
        );
    }
    let clients: Vec<&str> = leftovers.iter().map(|(id, _)| id.as_str()).collect();
    tracing::warn!(
        n = leftovers.len(),
        ?clients,
        "published the Wills of connections the broker's last run ended without publishing them (it did not stop cleanly)"
    );
    Ok(leftovers.len())
}

/// Keeps the Will of every connected client in the store (see the [module docs](self)).
pub(crate) struct WillRecorder {
    store: Arc<Store>,
    /// Client id → connection of the Wills stored, so a disconnect of a client without one
    /// costs no write.
    recorded: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl WillRecorder {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            recorded: std::sync::Mutex::default(),
        }
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        // A poisoned lock only means a panic elsewhere while it was held; the map is still valid.
        self.recorded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[allow(elided_lifetimes_in_paths)]
#[async_trait]
impl Handler for WillRecorder {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientConnected(session) => {
                let Ok(info) = session.connect_info().await else {
                    return (true, acc);
                };
                let Some(will) = info.last_will() else {
                    return (true, acc);
                };
                let Ok(publish) = Publish::try_from(will) else {
                    return (true, acc);
                };
                let client_id = session.id.client_id.to_string();
                self.recorded()
                    .insert(client_id.clone(), connection_of(&session.id));
                let record = StoredWill {
                    connection: connection_of(&session.id),
                    topic: publish.topic.to_string(),
                    payload: publish.payload.to_vec(),
                    qos: u8::from(publish.qos),
                    retain: publish.retain,
                };
                // Durable before the CONNACK goes out.
                let written = self
                    .store
                    .write(move |tx| tx.insert(&WILLS, &client_id, &record))
                    .await;
                if let Err(e) = written {
                    tracing::warn!(client_id = %session.id.client_id, cause = %e, "recording a Will; it is lost if the broker dies");
                }
            }
            Parameter::ClientDisconnected(session, _) => {
                let client_id = session.id.client_id.to_string();
                let connection = connection_of(&session.id);
                {
                    let mut recorded = self.recorded();
                    if recorded.get(&client_id) != Some(&connection) {
                        return (true, acc);
                    }
                    recorded.remove(&client_id);
                }
                let removed = self
                    .store
                    .write(move |tx| {
                        let current = tx.get(&WILLS, &client_id)?;
                        if current.is_some_and(|will| will.connection == connection) {
                            tx.remove(&WILLS, &client_id)?;
                        }
                        Ok(())
                    })
                    .await;
                if let Err(e) = removed {
                    tracing::warn!(client_id = %session.id.client_id, cause = %e, "forgetting a Will; it may be published again at the next start");
                }
            }
            _ => {}
        }
        (true, acc)
    }
}

/// One [`WillRecorder`] registered for both hooks.
pub(crate) struct Shared(pub(crate) Arc<WillRecorder>);

#[allow(elided_lifetimes_in_paths)]
#[async_trait]
impl Handler for Shared {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        self.0.hook(param, acc).await
    }
}
