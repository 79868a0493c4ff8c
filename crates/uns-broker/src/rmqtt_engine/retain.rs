//! rmqtt's `RetainStorage` backed by our memory tree plus the redb [`RetainedStore`].
//!
//! rmqtt 0.24 ships no usable retained store in its core (its default logs a warning and drops
//! the message) and its `rmqtt-retainer` plugin expires messages after 5 minutes by default and
//! persists through sled. This adapter pins the UNS behaviour instead:
//!
//! - a retained message never expires unless its publisher set an MQTT 5 Message Expiry
//!   Interval (then it expires per the spec); rmqtt's listener-wide default TTL is ignored;
//! - every change to a non-`$` topic is persisted to redb (batched by the writer thread);
//!   `$SYS/...` topics live in memory only, since they describe one broker run;
//! - topic alias and subscription identifiers are stripped before storing (they belong to the
//!   publisher's connection, not to the message).

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rmqtt::codec::v5::PublishProperties;
use rmqtt::retain::{RetainStorage, RetainTree};
use rmqtt::topic::Topic;
use rmqtt::types::{
    ClientId, CodecPublish, From, Id, Publish, QoS, Retain, TopicFilter, TopicName,
};
use rmqtt::utils::timestamp_millis;
use tokio::sync::RwLock;

use crate::store::{RetainedMessage, RetainedProperties, RetainedStore};

/// A retained message in memory: the engine's value plus its absolute expiry, if any.
#[derive(Clone, Debug)]
struct Entry {
    retain: Retain,
    /// Unix ms after which the message is gone; `None` = never.
    expires_at_ms: Option<i64>,
}

impl Entry {
    fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }
}

/// The engine-facing retained store. Shared between the engine (behind its `RetainStorage`
/// box) and the broker handle (for stats and shutdown).
pub(crate) struct RetainAdapter {
    /// Every live retained message, in rmqtt's own topic tree so filter matching (wildcards,
    /// `$`-topics not matched by leading wildcards) is exactly the engine's.
    tree: RwLock<RetainTree<Entry>>,
    /// Number of messages in `tree` (`RetainTree` has no O(1) size).
    count: AtomicIsize,
    /// Highest `count` seen, for rmqtt's `max()`.
    max: AtomicIsize,
    /// The persistent copy.
    store: Arc<RetainedStore>,
}

impl RetainAdapter {
    /// Builds the adapter around an opened store and the messages loaded from it.
    pub(crate) fn new(store: Arc<RetainedStore>, loaded: Vec<(String, RetainedMessage)>) -> Self {
        let mut tree = RetainTree::default();
        let now_ms = timestamp_millis();
        let mut count = 0;
        for (topic, message) in loaded {
            let Ok(parsed) = Topic::from_str(&topic) else {
                tracing::warn!(%topic, "skipping stored retained message with an invalid topic");
                continue;
            };
            let entry = to_entry(&topic, message);
            if entry.is_expired(now_ms) {
                store.remove(&topic);
                continue;
            }
            tree.insert(&parsed, entry);
            count += 1;
        }
        RetainAdapter {
            tree: RwLock::new(tree),
            count: AtomicIsize::new(count),
            max: AtomicIsize::new(count),
            store,
        }
    }

    /// Current number of retained messages (including in-memory `$SYS` ones).
    pub(crate) fn len(&self) -> usize {
        usize::try_from(self.count.load(Ordering::Relaxed)).unwrap_or(0)
    }

    fn changed(&self, delta: isize) {
        let now = self.count.fetch_add(delta, Ordering::Relaxed) + delta;
        self.max.fetch_max(now, Ordering::Relaxed);
    }
}

/// Topics starting with `$` (`$SYS/...`) are server-generated and not persisted.
fn persisted(topic: &str) -> bool {
    !topic.starts_with('$')
}

fn qos_from_u8(qos: u8) -> QoS {
    match qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Rebuilds the engine's value from a stored message.
fn to_entry(topic: &str, message: RetainedMessage) -> Entry {
    let properties = message.properties.map(|p| PublishProperties {
        is_utf8_payload: p.payload_is_utf8,
        content_type: p.content_type.map(Into::into),
        response_topic: p.response_topic.map(Into::into),
        correlation_data: p.correlation_data,
        user_properties: p
            .user_properties
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        message_expiry_interval: message.expiry_secs.and_then(std::num::NonZeroU32::new),
        ..PublishProperties::default()
    });
    let publish = CodecPublish {
        dup: false,
        retain: true,
        qos: qos_from_u8(message.qos),
        topic: TopicName::from(topic),
        packet_id: None,
        payload: message.payload,
        properties,
    };
    let from = From::from_custom(Id::new(
        0,
        0,
        None,
        None,
        ClientId::from(message.publisher),
        None,
    ));
    Entry {
        retain: Retain {
            msg_id: None,
            from,
            publish: Publish::new(Box::new(publish), None, None, Some(message.created_ms)),
        },
        expires_at_ms: message
            .expiry_secs
            .map(|secs| message.created_ms + i64::from(secs) * 1000),
    }
}

/// Our persisted form of the engine's value.
fn to_message(retain: &Retain, created_ms: i64) -> RetainedMessage {
    let publish = &retain.publish;
    let properties = publish.properties.as_ref();
    RetainedMessage {
        qos: u8::from(publish.qos),
        created_ms,
        expiry_secs: properties
            .and_then(|p| p.message_expiry_interval)
            .map(|secs| secs.get()),
        publisher: retain.from.id.client_id.to_string(),
        properties: properties.map(|p| RetainedProperties {
            payload_is_utf8: p.is_utf8_payload,
            content_type: p.content_type.as_ref().map(ToString::to_string),
            response_topic: p.response_topic.as_ref().map(ToString::to_string),
            correlation_data: p.correlation_data.clone(),
            user_properties: p
                .user_properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }),
        payload: publish.payload.clone(),
    }
}

#[async_trait]
impl RetainStorage for RetainAdapter {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        mut retain: Retain,
        // rmqtt passes the listener's default message expiry here when the publisher set
        // none; a UNS retained message must not expire, so only the publisher's own property
        // (read from the message below) counts.
        _expiry_interval: Option<Duration>,
    ) -> rmqtt::Result<()> {
        let parsed = Topic::from_str(topic)?;
        if retain.publish.payload.is_empty() {
            let removed = self.tree.write().await.remove(&parsed);
            if removed.is_some() {
                self.changed(-1);
            }
            if persisted(topic) {
                self.store.remove(topic);
            }
            return Ok(());
        }
        if let Some(properties) = retain.publish.properties.as_mut() {
            properties.topic_alias = None;
            properties.subscription_ids.clear();
        }
        retain.publish.packet_id = None;
        retain.publish.dup = false;
        let created_ms = retain.publish.create_time.unwrap_or_else(timestamp_millis);
        retain.publish.create_time = Some(created_ms);
        let message = persisted(topic).then(|| to_message(&retain, created_ms));
        let expires_at_ms = retain
            .publish
            .properties
            .as_ref()
            .and_then(|p| p.message_expiry_interval)
            .map(|secs| created_ms + i64::from(secs.get()) * 1000);
        let mut tree = self.tree.write().await;
        let old = tree.remove(&parsed);
        tree.insert(
            &parsed,
            Entry {
                retain,
                expires_at_ms,
            },
        );
        drop(tree);
        if old.is_none() {
            self.changed(1);
        }
        if let Some(message) = message {
            self.store.put(topic, &message);
        }
        Ok(())
    }

    async fn get(&self, topic_filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        let parsed = Topic::from_str(topic_filter)?;
        let now_ms = timestamp_millis();
        let matches = self.tree.read().await.matches(&parsed);
        let mut live = Vec::with_capacity(matches.len());
        let mut expired = Vec::new();
        for (topic, entry) in matches {
            if entry.is_expired(now_ms) {
                expired.push(topic);
            } else {
                live.push((TopicName::from(topic.to_string()), entry.retain));
            }
        }
        if !expired.is_empty() {
            let mut tree = self.tree.write().await;
            for topic in expired {
                // Re-check under the write lock: the topic may have been republished.
                let still_expired = tree
                    .matches(&topic)
                    .first()
                    .is_some_and(|(_, entry)| entry.is_expired(now_ms));
                if still_expired && tree.remove(&topic).is_some() {
                    self.changed(-1);
                    let name = topic.to_string();
                    if persisted(&name) {
                        self.store.remove(&name);
                    }
                }
            }
        }
        Ok(live)
    }

    async fn count(&self) -> isize {
        self.count.load(Ordering::Relaxed)
    }

    async fn max(&self) -> isize {
        self.max.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retain(topic: &str, created_ms: i64, expiry_secs: Option<u32>) -> Retain {
        to_entry(
            topic,
            RetainedMessage {
                qos: 1,
                created_ms,
                expiry_secs,
                publisher: "p".into(),
                properties: expiry_secs.map(|_| RetainedProperties::default()),
                payload: bytes::Bytes::from_static(b"v"),
            },
        )
        .retain
    }

    async fn topics(adapter: &RetainAdapter, filter: &str) -> Vec<String> {
        let mut topics: Vec<String> = adapter
            .get(&TopicFilter::from(filter))
            .await
            .expect("valid filter")
            .into_iter()
            .map(|(topic, _)| topic.to_string())
            .collect();
        topics.sort();
        topics
    }

    /// rmqtt passes its default TTL as `expiry_interval`; a message older than that TTL is
    /// still retained. A publisher's own Message Expiry is honoured.
    #[tokio::test]
    async fn retained_messages_ignore_the_engine_ttl_but_honour_publisher_expiry() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = RetainedStore::open(dir.path()).expect("open");
        let adapter = RetainAdapter::new(Arc::new(store), Vec::new());
        let day_ago = timestamp_millis() - 86_400_000;
        let ttl = Some(Duration::from_secs(300));
        for (topic, expiry) in [
            ("a/keep", None),
            ("a/expired", Some(60)),
            ("a/live", Some(172_800)),
        ] {
            adapter
                .set(&TopicName::from(topic), retain(topic, day_ago, expiry), ttl)
                .await
                .expect("set");
        }
        assert_eq!(topics(&adapter, "a/#").await, ["a/keep", "a/live"]);
        assert_eq!(adapter.len(), 2, "the expired message was dropped on read");
        // `$SYS` is not matched by a leading wildcard.
        adapter
            .set(
                &TopicName::from("$SYS/x"),
                retain("$SYS/x", day_ago, None),
                None,
            )
            .await
            .expect("set");
        assert_eq!(topics(&adapter, "#").await, ["a/keep", "a/live"]);
        assert_eq!(topics(&adapter, "$SYS/#").await, ["$SYS/x"]);
        // An empty payload deletes.
        let mut delete = retain("a/keep", day_ago, None);
        delete.publish.payload = bytes::Bytes::new();
        adapter
            .set(&TopicName::from("a/keep"), delete, None)
            .await
            .expect("delete");
        assert_eq!(topics(&adapter, "a/#").await, ["a/live"]);
    }
}
