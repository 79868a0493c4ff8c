//! Our hook handlers on rmqtt: authentication and the counters behind `BrokerStats`.
//!
//! rmqtt runs handlers registered per hook type; we register them directly on its hook
//! manager (no plugin system). They are started by [`crate::start`] and stopped on shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::types::AuthResult;

use crate::config::{Secret, User};

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

/// Checks CONNECT username/password against the configured users.
///
/// rmqtt calls this only for clients that send a username, or for every client when anonymous
/// access is off. A client without username is left to the listener's `allow_anonymous`.
pub(crate) struct AuthHandler {
    users: Vec<User>,
}

impl AuthHandler {
    pub(crate) fn new(users: Vec<User>) -> Self {
        AuthHandler { users }
    }

    fn verify(&self, username: &str, password: &[u8]) -> bool {
        let Some(user) = self.users.iter().find(|user| user.username == username) else {
            return false;
        };
        match &user.secret {
            Secret::Password(expected) => constant_time_eq(expected.as_bytes(), password),
            Secret::PasswordHash(hash) => {
                use argon2::PasswordVerifier;
                // `validate` checked the PHC string; a parse failure here just refuses.
                argon2::PasswordHash::new(hash)
                    .map(|hash| {
                        argon2::Argon2::default()
                            .verify_password(password, &hash)
                            .is_ok()
                    })
                    .unwrap_or(false)
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

// `Parameter<'_>` would make the lifetime early-bound and no longer match rmqtt's trait.
#[allow(elided_lifetimes_in_paths)]
#[async_trait]
impl Handler for AuthHandler {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let Parameter::ClientAuthenticate(connect_info) = param else {
            return (true, acc);
        };
        let Some(username) = connect_info.username() else {
            // Anonymous and anonymous is off: NotFound makes rmqtt refuse with "not authorized".
            return (false, Some(HookResult::AuthResult(AuthResult::NotFound)));
        };
        let password = connect_info
            .password()
            .map(|p| p.as_ref())
            .unwrap_or_default();
        let result = if self.verify(username, password) {
            AuthResult::Allow(false, None)
        } else {
            tracing::info!(%username, "refused connect: bad username or password");
            AuthResult::BadUsernameOrPassword
        };
        (false, Some(HookResult::AuthResult(result)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_verify(secret: Secret, username: &str, password: &str, expected: bool) {
        let handler = AuthHandler::new(vec![User {
            username: "scada".into(),
            secret,
        }]);
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
