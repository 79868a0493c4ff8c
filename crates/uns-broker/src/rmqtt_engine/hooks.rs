//! Our hook handlers on rmqtt: authentication, topic limits and the counters behind
//! `BrokerStats`.
//!
//! rmqtt runs handlers registered per hook type; we register them directly on its hook
//! manager (no plugin system). They are started by [`crate::start`] and stopped on shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use rmqtt::codec::error::DecodeError;
use rmqtt::codec::v5::{PublishAckReason, SubscribeAckReason};
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::net::MqttError;
use rmqtt::types::{
    AuthResult, ConnectInfo, LastWill, Message, PublishAclResult, PublishResult, Reason,
    SubscribeAclResult,
};

use crate::acl::Accounts;
use crate::limits::{TopicLimits, TopicRefusal};

/// Message counters, updated by [`CountingHandler`] and read by `BrokerHandle::stats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// PUBLISH packets received from clients (Wills included, `$SYS` excluded).
    pub(crate) received: AtomicU64,
    /// PUBLISH packets sent to subscribers (retained and `$SYS` deliveries included).
    pub(crate) sent: AtomicU64,
    /// Messages the engine discarded for a subscriber: its queue was full, the message expired
    /// before delivery, or the session was gone.
    pub(crate) dropped: AtomicU64,
    /// PUBLISH packets, SUBSCRIBE filters and CONNECTs (reserved client id, Will) refused by
    /// an account's role or rules.
    pub(crate) acl_refused: AtomicU64,
}

/// Counts publishes in, deliveries out and drops.
pub(crate) struct CountingHandler(pub(crate) Arc<Counters>);

// `Parameter<'_>` would make the lifetime early-bound and no longer match rmqtt's trait.
#[allow(elided_lifetimes_in_paths)]
#[async_trait]
impl Handler for CountingHandler {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let counter = match param {
            Parameter::MessagePublish(_, from, _) if !from.is_system() => Some(&self.0.received),
            Parameter::MessageDelivered(..) => Some(&self.0.sent),
            Parameter::MessageDropped(_, _, _, reason) => {
                tracing::debug!(%reason, "message dropped");
                Some(&self.0.dropped)
            }
            _ => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        (true, acc)
    }
}

/// Checks every CONNECT: its Will topic against the topic limits (and for wildcards), then
/// username/password against the accounts, then the client id (a service's ids are reserved
/// for its account) and whether the account may publish its Will.
///
/// rmqtt calls this for every client because the listeners' own `allow_anonymous` is off; the
/// anonymous decision is ours ([`crate::BrokerConfig::anonymous_allowed`]). With no users
/// configured, an unknown username is accepted as anonymous (there is nothing to check it
/// against); internal accounts are always checked. rmqtt runs this hook before it takes over an
/// existing session of the same client id, so a refused client id disturbs no one.
pub(crate) struct AuthHandler {
    accounts: Arc<Accounts>,
    /// `acl_refused` counts CONNECTs refused for a reserved client id or a Will.
    counters: Arc<Counters>,
    anonymous: bool,
    limits: TopicLimits,
}

impl AuthHandler {
    pub(crate) fn new(
        accounts: Arc<Accounts>,
        counters: Arc<Counters>,
        anonymous: bool,
        limits: TopicLimits,
    ) -> Self {
        AuthHandler {
            accounts,
            counters,
            anonymous,
            limits,
        }
    }

    fn verify(&self, username: &str, password: &[u8]) -> bool {
        let Some(account) = self.accounts.account(Some(username)) else {
            return false;
        };
        account.secret.verify(password)
    }

    /// The decision for a CONNECT whose Will topic passed the limits.
    fn authenticate(&self, connect_info: &ConnectInfo) -> AuthResult {
        let client_id = &connect_info.id().client_id;
        let username = connect_info.username().map(|name| name.as_ref());
        match username {
            None if !self.anonymous => {
                // NotFound makes rmqtt refuse with "not authorized".
                return AuthResult::NotFound;
            }
            None => {}
            Some(username) if self.accounts.must_verify(username) => {
                let password = connect_info
                    .password()
                    .map(|p| p.as_ref())
                    .unwrap_or_default();
                if !self.verify(username, password) {
                    tracing::info!(%username, "refused connect: bad username or password");
                    return AuthResult::BadUsernameOrPassword;
                }
            }
            Some(_) => {}
        }
        let will_topic = connect_info.last_will().map(|will| match will {
            LastWill::V3(will) => will.topic.as_ref(),
            LastWill::V5(will) => will.topic.as_ref(),
        });
        match self.accounts.admit(username, client_id, will_topic) {
            Ok(()) => AuthResult::Allow(false, None),
            Err(refusal) => {
                self.counters.acl_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(?username, %client_id, ?refusal, "refused connect: not authorized");
                // CONNACK 0x87 Not authorized (v5) / 0x05 (3.1.1).
                AuthResult::NotAuthorized
            }
        }
    }
}

// `Parameter<'_>` would make the lifetime early-bound and no longer match rmqtt's trait.
#[allow(elided_lifetimes_in_paths)]
#[async_trait]
impl Handler for AuthHandler {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let Parameter::ClientAuthenticate(connect_info) = param else {
            return (true, acc);
        };
        if let Some(refusal) = will_refusal(connect_info, &self.limits) {
            tracing::info!(client_id = %connect_info.id().client_id, %refusal, "refused connect: Will topic");
            // CONNACK 0x87 (v5) / 0x05 (3.1.1). MQTT 5 has 0x90 (Topic Name invalid) for this,
            // but rmqtt 0.24 passes no connect info to its CONNACK hook on a refused handshake
            // (`refused_ack(.., None, ..)` in v5.rs), so the code cannot be changed from here.
            return (
                false,
                Some(HookResult::AuthResult(AuthResult::NotAuthorized)),
            );
        }
        let result = self.authenticate(connect_info);
        (false, Some(HookResult::AuthResult(result)))
    }
}

/// Why `connect_info`'s Will topic is refused, if it is.
fn will_refusal(connect_info: &ConnectInfo, limits: &TopicLimits) -> Option<TopicRefusal> {
    let topic = match connect_info.last_will()? {
        LastWill::V3(will) => &will.topic,
        LastWill::V5(will) => &will.topic,
    };
    limits.check_name(topic).err()
}

/// Refuses PUBLISH topic names and SUBSCRIBE filters beyond the topic limits, before the
/// engine parses them into its trees (whose insert and drop recurse once per level), and
/// PUBLISH topic names with `+` or `#` (MQTT-3.3.2-2; rmqtt 0.24 delivered and retained them).
///
/// PUBLISH: PUBACK/PUBREC 0x90 (Topic Name invalid) and the connection is closed, for every
/// QoS (rmqtt's `disconnect` flag). SUBSCRIBE: SUBACK 0x8F (Topic Filter invalid; 0x80 for
/// 3.1.1) and the connection is closed.
pub(crate) struct TopicGuard {
    pub(crate) scx: ServerContext,
    pub(crate) limits: TopicLimits,
}

#[allow(elided_lifetimes_in_paths)]
#[async_trait]
impl Handler for TopicGuard {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let Err(refusal) = self.limits.check_name(&publish.topic) else {
                    return (true, acc);
                };
                tracing::info!(client_id = %session.id.client_id, %refusal, "refused PUBLISH; disconnecting");
                let result = PublishAclResult(PublishResult::reason_code(
                    PublishAckReason::TopicNameInvalid,
                    Some(refusal.to_string().into()),
                    true,
                ));
                (false, Some(HookResult::PublishAclResult(result)))
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let Err(refusal) = self.limits.check_filter(&subscribe.topic_filter) else {
                    return (true, acc);
                };
                tracing::info!(client_id = %session.id.client_id, %refusal, "refused SUBSCRIBE; disconnecting");
                // The SUBACK goes out first: this message is read after the SUBSCRIBE is done.
                if let Some(tx) = self
                    .scx
                    .extends
                    .shared()
                    .await
                    .entry(session.id.clone())
                    .tx()
                {
                    let reason =
                        Reason::MqttError(MqttError::Decode(DecodeError::InvalidTopicFilter));
                    let _ = tx.unbounded_send(Message::Closed(reason));
                }
                let result =
                    SubscribeAclResult::new_failure(SubscribeAckReason::TopicFilterInvalid);
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            _ => (true, acc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, User};

    fn check_verify(secret: Secret, username: &str, password: &str, expected: bool) {
        let handler = AuthHandler::new(
            Arc::new(Accounts::new(&[User::new("scada", secret)], &[])),
            Arc::default(),
            false,
            TopicLimits {
                max_levels: 64,
                max_length: 1024,
            },
        );
        assert_eq!(
            handler.verify(username, password.as_bytes()),
            expected,
            "{username}/{password}"
        );
    }

    #[test]
    fn passwords_verify() {
        let plain = || Secret::Password("s3cret".into());
        check_verify(plain(), "scada", "s3cret", true);
        check_verify(plain(), "scada", "s3cre", false);
        check_verify(plain(), "scada", "s3cret!", false);
        check_verify(plain(), "other", "s3cret", false);
        // Generated with the argon2 crate's defaults for the password "s3cret".
        use argon2::PasswordHasher;
        let salt = argon2::password_hash::SaltString::from_b64("c2FsdHNhbHRzYWx0").expect("salt");
        let hash = argon2::Argon2::default()
            .hash_password(b"s3cret", &salt)
            .expect("hash")
            .to_string();
        check_verify(Secret::PasswordHash(hash.clone()), "scada", "s3cret", true);
        check_verify(Secret::PasswordHash(hash), "scada", "wrong", false);
    }
}
