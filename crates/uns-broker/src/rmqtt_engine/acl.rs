//! Enforces the accounts' roles and access rules (`crate::acl`) on PUBLISH and SUBSCRIBE.
//!
//! A refused PUBLISH gets PUBACK/PUBREC 0x87 (Not authorized) on MQTT 5 and is not delivered or
//! retained; the client stays connected. On MQTT 3.1.1, which has no negative acknowledgement,
//! the message is dropped (rmqtt acknowledges QoS 1/2 as usual). A refused SUBSCRIBE filter gets
//! SUBACK 0x87 (v5) / 0x80 (3.1.1). Each refusal counts in
//! [`crate::BrokerStats::acl_refused`] and is logged once per client, action and topic.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::types::{PublishAclResult, SubscribeAclResult};

use super::hooks::Counters;
use crate::acl::{Access, Accounts};

/// Most (client, topic) pairs remembered for "logged once"; beyond it refusals log again.
const MAX_LOGGED: usize = 10_000;

pub(crate) struct AclGuard {
    accounts: Arc<Accounts>,
    counters: Arc<Counters>,
    logged: Mutex<HashSet<(String, &'static str, String)>>,
}

impl AclGuard {
    pub(crate) fn new(accounts: Arc<Accounts>, counters: Arc<Counters>) -> Self {
        AclGuard {
            accounts,
            counters,
            logged: Mutex::default(),
        }
    }

    /// Whether any session may be refused anything (no handler is needed otherwise).
    pub(crate) fn is_active(&self) -> bool {
        !self.accounts.all_admin()
    }

    fn check(&self, username: Option<&str>, client_id: &str, access: Access, topic: &str) -> bool {
        if self.accounts.allowed(username, client_id, access, topic) {
            return true;
        }
        self.counters.acl_refused.fetch_add(1, Ordering::Relaxed);
        let action = match access {
            Access::Publish => "PUBLISH",
            _ => "SUBSCRIBE",
        };
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if logged.len() >= MAX_LOGGED {
            logged.clear();
        }
        if logged.insert((client_id.to_owned(), action, topic.to_owned())) {
            tracing::warn!(?username, %client_id, %topic, action, "refused by the account's role or rules (logged once per client and topic)");
        }
        false
    }
}

/// `$share/{group}/{filter}` → `filter`.
fn unshared(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_, filter)| filter)
}

#[allow(elided_lifetimes_in_paths)]
#[async_trait]
impl Handler for AclGuard {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let id = &session.id;
                if self.check(
                    id.username.as_deref(),
                    &id.client_id,
                    Access::Publish,
                    &publish.topic,
                ) {
                    return (true, acc);
                }
                let result = PublishAclResult::rejected(false, Some("not authorized".into()));
                (false, Some(HookResult::PublishAclResult(result)))
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let id = &session.id;
                let filter = unshared(&subscribe.topic_filter);
                if self.check(
                    id.username.as_deref(),
                    &id.client_id,
                    Access::Subscribe,
                    filter,
                ) {
                    return (true, acc);
                }
                let result = SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized);
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            _ => (true, acc),
        }
    }
}

/// rmqtt takes each handler as a `Box`; this shares one guard between the two hook types.
pub(crate) struct Shared(pub(crate) Arc<AclGuard>);

#[allow(elided_lifetimes_in_paths)]
#[async_trait]
impl Handler for Shared {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        self.0.hook(param, acc).await
    }
}
