//! MQTT 5 shared subscriptions (`$share/{group}/{filter}`), which rmqtt 0.24 disables by
//! default (`is_supported() == false` makes it refuse them).
//!
//! Strategy: round robin over the group's online members (offline persistent members are used
//! only when no member is online, so their session queues the message).

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::subscribe::SharedSubscription;
use rmqtt::types::{
    ClientId, Id, IsOnline, NodeId, SharedGroup, SubscriptionIdentifier, SubscriptionOptions,
    TopicName,
};

/// Round-robin selection within a shared-subscription group.
#[derive(Default)]
pub(crate) struct RoundRobin {
    /// Incremented per delivery; the pick is `next % candidates`.
    next: AtomicUsize,
}

#[async_trait]
impl SharedSubscription for RoundRobin {
    fn is_supported(&self) -> bool {
        true
    }

    async fn choice(
        &self,
        _scx: &ServerContext,
        _group: &SharedGroup,
        _publisher_id: &Id,
        _topic: &TopicName,
        members: &[(
            NodeId,
            ClientId,
            SubscriptionOptions,
            Option<Vec<SubscriptionIdentifier>>,
            Option<IsOnline>,
        )],
    ) -> Option<(usize, IsOnline)> {
        if members.is_empty() {
            return None;
        }
        let online: Vec<usize> = members
            .iter()
            .enumerate()
            .filter(|(_, member)| member.4.unwrap_or(true))
            .map(|(idx, _)| idx)
            .collect();
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        if online.is_empty() {
            Some((turn % members.len(), false))
        } else {
            Some((online[turn % online.len()], true))
        }
    }
}
