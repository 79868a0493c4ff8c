//! Broker configuration: plain data with the UNS defaults, and its validation.
//!
//! [`BrokerConfig`] is what a config file or the CLI produces. It never binds a port; [`crate::start`]
//! does, after [`BrokerConfig::validate`] has passed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Default per-client queue length (messages waiting for a subscriber), see [`BrokerConfig::max_queue`].
pub const DEFAULT_MAX_QUEUE: usize = 100_000;
/// Default per-client inflight window (unacknowledged QoS 1/2 messages), see [`BrokerConfig::max_inflight`].
pub const DEFAULT_MAX_INFLIGHT: usize = 128;
/// Default `$SYS` publish interval (mosquitto's default), see [`BrokerConfig::sys_interval`].
pub const DEFAULT_SYS_INTERVAL: Duration = Duration::from_secs(10);
/// Default largest MQTT packet accepted or sent (1 MiB), see [`BrokerConfig::max_packet_size`].
pub const DEFAULT_MAX_PACKET_SIZE: u32 = 1024 * 1024;
/// Default most levels in a topic name or filter, see [`BrokerConfig::max_topic_levels`].
pub const DEFAULT_MAX_TOPIC_LEVELS: usize = 64;
/// Default longest topic name or filter in bytes, see [`BrokerConfig::max_topic_length`].
pub const DEFAULT_MAX_TOPIC_LENGTH: usize = 1024;
/// Default time a new connection has to send its CONNECT, see [`BrokerConfig::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default life of an offline persistent session, see [`BrokerConfig::session_expiry`].
pub const DEFAULT_SESSION_EXPIRY: Duration = Duration::from_secs(3600);
/// Highest `max_topic_levels` accepted: far below the ~10 000 levels at which the engine's
/// per-level recursion overflows a worker stack (and below where debug builds do).
pub const MAX_TOPIC_LEVELS_LIMIT: usize = 512;

/// Everything the embedded broker needs to start.
///
/// `Default` is the UNS default: MQTT on `127.0.0.1:1883`, websockets on `127.0.0.1:8083`, no users
/// (anonymous on loopback only), retained store under `./data/broker/`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// MQTT 3.1.1 and 5 on one TCP port. Port 0 asks the OS for a free port (tests);
    /// [`crate::BrokerHandle::mqtt_addr`] reports the real one.
    pub listen: SocketAddr,
    /// MQTT over websockets (browser clients); `None` disables the listener.
    pub ws_listen: Option<SocketAddr>,
    /// MQTT 3.1.1 and 5 over TLS (8883 by convention); `None` (the default) disables it. Needs
    /// [`BrokerConfig::tls_cert`] and [`BrokerConfig::tls_key`].
    pub tls_listen: Option<SocketAddr>,
    /// The TLS listener's certificate chain, PEM (server certificate first).
    pub tls_cert: Option<PathBuf>,
    /// The TLS listener's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// State directory; the retained store is `data_dir/broker/retained.redb`.
    pub data_dir: PathBuf,
    /// Username/password accounts. Empty means anonymous clients, which
    /// [`BrokerConfig::validate`] allows on loopback listeners only unless
    /// [`BrokerConfig::allow_anonymous`] is set. With users configured, anonymous clients are
    /// refused unless `allow_anonymous` is set.
    pub users: Vec<User>,
    /// Accounts the embedding program adds for its own services (`uns up` gives each in-process
    /// service a `service` account with a generated password). Checked like [`BrokerConfig::users`],
    /// but they do not count as configured users: anonymous clients keep the rights they have
    /// without users, and the network listeners still need `users` or `allow_anonymous`.
    /// Never read from a config file.
    #[serde(skip)]
    pub internal_users: Vec<User>,
    /// Explicit opt-in to anonymous clients on non-loopback listeners (or alongside users).
    pub allow_anonymous: bool,
    /// Messages queued per client beyond its inflight window (default [`DEFAULT_MAX_QUEUE`],
    /// 100 000: enough for MQTT Explorer's `#` subscription to receive a large UNS's retained
    /// messages in one burst). When full, a new QoS 0 message is dropped, and for QoS 1/2 the
    /// oldest queued message is dropped; every drop is counted in
    /// [`crate::BrokerStats::messages_dropped`].
    pub max_queue: usize,
    /// Unacknowledged QoS 1/2 messages in flight per client, 1..=65535 (default
    /// [`DEFAULT_MAX_INFLIGHT`]).
    pub max_inflight: usize,
    /// How often the `$SYS/broker/...` topics are republished (default 10 s, at least 1 s).
    /// In a config file: seconds as an integer, or a string such as `"10s"`, `"500ms"`, `"2m"`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub sys_interval: Duration,
    /// Largest MQTT packet accepted from or sent to a client, in bytes (default 1 MiB).
    pub max_packet_size: u32,
    /// Most levels (`/`-separated parts) in a topic name or filter a client sends (default
    /// [`DEFAULT_MAX_TOPIC_LEVELS`] = 64, at most [`MAX_TOPIC_LEVELS_LIMIT`]). An ISA-95 UNS
    /// topic (`uns/v1/enterprise/site/area/line/cell/class/...`) has about 10. A PUBLISH or
    /// Will beyond it is refused and the client disconnected; a SUBSCRIBE filter beyond it gets
    /// SUBACK 0x8F (v5) / 0x80 (3.1.1) and the client is disconnected.
    pub max_topic_levels: usize,
    /// Longest topic name or filter in bytes (default [`DEFAULT_MAX_TOPIC_LENGTH`] = 1024,
    /// 16..=65535); refused like [`BrokerConfig::max_topic_levels`].
    pub max_topic_length: usize,
    /// Time a new connection has to send its CONNECT (default [`DEFAULT_CONNECT_TIMEOUT`] = 5 s,
    /// 100 ms..=5 min), on every listener; a websocket's HTTP upgrade counts in it. Beyond it the
    /// broker closes the socket without a CONNACK. Same formats as `sys_interval`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub connect_timeout: Duration,
    /// How long a persistent session (MQTT 3.1.1 CleanSession = 0) lives after its connection
    /// closed, and the most an MQTT 5 client's Session Expiry Interval is granted (default
    /// [`DEFAULT_SESSION_EXPIRY`] = 1 h, 1 s..=7 days). While offline the session queues up to
    /// [`BrokerConfig::max_queue`] messages and (rmqtt 0.24) keeps its socket's descriptor.
    #[serde(deserialize_with = "deserialize_duration")]
    pub session_expiry: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1883),
            ws_listen: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8083)),
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            data_dir: PathBuf::from("data"),
            users: Vec::new(),
            internal_users: Vec::new(),
            allow_anonymous: false,
            max_queue: DEFAULT_MAX_QUEUE,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            sys_interval: DEFAULT_SYS_INTERVAL,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            max_topic_levels: DEFAULT_MAX_TOPIC_LEVELS,
            max_topic_length: DEFAULT_MAX_TOPIC_LENGTH,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            session_expiry: DEFAULT_SESSION_EXPIRY,
        }
    }
}

/// One broker account.
///
/// In a config file: `{ username = "scada-bridge", password = "..." }` (a service's account, by
/// its name), `{ username = "line-1", password_hash = "$argon2id$v=19$...", role = "edge",
/// groups = ["acme-berlin"] }`, `{ username = "alice", password = "...", role = "operator" }`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct User {
    /// The MQTT CONNECT username.
    pub username: String,
    /// How the password is checked.
    #[serde(flatten)]
    pub secret: Secret,
    /// What the account may do when no `acl` rule decides (see [`crate::Role`]). `None`: the
    /// `service` role if the username is a service's name, else `viewer`.
    #[serde(default)]
    pub role: Option<crate::Role>,
    /// For `role = "service"`: the service (default: the username).
    #[serde(default)]
    pub service: Option<String>,
    /// For `role = "edge"`: the Sparkplug groups the account publishes for.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Additional rules, tried before the role, first match wins (see [`crate::AclRule`]).
    #[serde(default)]
    pub acl: Vec<crate::AclRule>,
}

impl User {
    /// An account with the default role and no rules.
    pub fn new(username: impl Into<String>, secret: Secret) -> User {
        User {
            username: username.into(),
            secret,
            role: None,
            service: None,
            groups: Vec::new(),
            acl: Vec::new(),
        }
    }

    /// The role the account has: the configured one, else `service` when the username is a
    /// service's name, else `viewer` (what the broker applies, and what the HTTP endpoint maps
    /// to its own roles).
    pub fn effective_role(&self) -> crate::Role {
        match self.role {
            Some(role) => role,
            None if self
                .username
                .parse::<uns_model::owner::ServiceName>()
                .is_ok() =>
            {
                crate::Role::Service
            }
            None => crate::Role::Viewer,
        }
    }
}

/// A user's password, in clear or as a hash.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Secret {
    /// The password itself (compared in constant time). Fine for a config file only root reads.
    Password(String),
    /// An Argon2 PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), as printed by
    /// `echo -n secret | argon2 somesalt -id -e`. Argon2i/d/id are accepted.
    PasswordHash(String),
}

impl Secret {
    /// Whether `password` is this secret's password: a constant-time comparison, or an Argon2
    /// verification (slow on purpose: tens of milliseconds; run it off the async workers when
    /// it is on a request path). The same check the broker makes at CONNECT and the HTTP
    /// endpoint makes for `Authorization: Basic` and `POST /api/v1/login`.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
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

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password(<redacted>)"),
            Secret::PasswordHash(_) => f.write_str("PasswordHash(<redacted>)"),
        }
    }
}

/// Why a [`BrokerConfig`] cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// A listener on a non-loopback address would accept anyone.
    #[error(
        "{listener} listener {addr} is not a loopback address and no users are configured: \
         anyone on the network could connect. Add an account (`--user NAME:PASSWORD`, or \
         `users = [{{ username = \"NAME\", password = \"PASSWORD\" }}]` under [broker] in the \
         config file), accept anonymous clients on purpose (`--allow-anonymous`, or \
         `allow_anonymous = true` under [broker]), or listen on 127.0.0.1"
    )]
    AnonymousOnNetwork {
        /// `mqtt`, `websocket` or `tls`.
        listener: &'static str,
        /// The offending address.
        addr: SocketAddr,
    },
    /// A numeric limit is outside its range.
    #[error("{field} = {value} is out of range: {expected}")]
    OutOfRange {
        /// The config field.
        field: &'static str,
        /// The configured value.
        value: u64,
        /// The allowed range, in words.
        expected: &'static str,
    },
    /// A user entry is unusable.
    #[error("user {username:?}: {reason}")]
    BadUser {
        /// The user's name as configured.
        username: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `tls_listen` is set without both `tls_cert` and `tls_key`.
    #[error("tls_listen needs tls_cert (PEM certificate chain) and tls_key (PEM private key)")]
    TlsIncomplete,
    /// The MQTT and websocket listeners ask for the same address.
    #[error("listen and ws_listen are both {0}; give them different ports")]
    SameAddress(SocketAddr),
}

impl BrokerConfig {
    /// Checks the config without touching the network or the disk.
    ///
    /// Secure by default, as mosquitto 2 does it: a listener on a non-loopback address needs
    /// users or an explicit `allow_anonymous = true`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let listeners = [
            ("mqtt", Some(self.listen)),
            ("websocket", self.ws_listen),
            ("tls", self.tls_listen),
        ];
        for (listener, addr) in listeners {
            let Some(addr) = addr else { continue };
            if !addr.ip().is_loopback() && self.users.is_empty() && !self.allow_anonymous {
                return Err(ConfigError::AnonymousOnNetwork { listener, addr });
            }
        }
        if self.tls_listen.is_some() && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return Err(ConfigError::TlsIncomplete);
        }
        if self.ws_listen == Some(self.listen) && self.listen.port() != 0 {
            return Err(ConfigError::SameAddress(self.listen));
        }
        check_range(
            "max_queue",
            self.max_queue as u64,
            1,
            u64::MAX,
            "at least 1",
        )?;
        check_range(
            "max_inflight",
            self.max_inflight as u64,
            1,
            65_535,
            "1..=65535",
        )?;
        check_range(
            "sys_interval (seconds)",
            self.sys_interval.as_secs(),
            1,
            u64::MAX,
            "at least 1 second",
        )?;
        check_range(
            "max_packet_size",
            u64::from(self.max_packet_size),
            1024,
            268_435_455,
            "1024..=268435455 bytes",
        )?;
        check_range(
            "max_topic_levels",
            self.max_topic_levels as u64,
            1,
            MAX_TOPIC_LEVELS_LIMIT as u64,
            "1..=512",
        )?;
        check_range(
            "max_topic_length",
            self.max_topic_length as u64,
            16,
            65_535,
            "16..=65535 bytes",
        )?;
        check_range(
            "connect_timeout (ms)",
            u64::try_from(self.connect_timeout.as_millis()).unwrap_or(u64::MAX),
            100,
            300_000,
            "100ms..=5m",
        )?;
        check_range(
            "session_expiry (seconds)",
            self.session_expiry.as_secs(),
            1,
            7 * 24 * 3600,
            "1s..=7 days",
        )?;
        let mut seen = std::collections::HashSet::new();
        for user in self.users.iter().chain(&self.internal_users) {
            let bad = |reason: &str| ConfigError::BadUser {
                username: user.username.clone(),
                reason: reason.to_owned(),
            };
            if user.username.is_empty() {
                return Err(bad("the username is empty"));
            }
            if !seen.insert(user.username.as_str()) {
                return Err(bad("configured twice"));
            }
            if let Some(problem) = user.acl.iter().find_map(crate::acl::rule_problem) {
                return Err(bad(&problem));
            }
            if let Err(problem) = crate::acl::Grant::of(user) {
                return Err(bad(&problem));
            }
            match &user.secret {
                Secret::Password(password) if password.is_empty() => {
                    return Err(bad("the password is empty"));
                }
                Secret::Password(_) => {}
                Secret::PasswordHash(hash) => {
                    if let Err(e) = argon2::PasswordHash::new(hash) {
                        return Err(bad(&format!(
                            "password_hash is not an Argon2 PHC string: {e}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The topic limits the hooks enforce.
    pub(crate) fn topic_limits(&self) -> crate::limits::TopicLimits {
        crate::limits::TopicLimits {
            max_levels: self.max_topic_levels,
            max_length: self.max_topic_length,
        }
    }

    /// Whether a client without username may connect.
    pub(crate) fn anonymous_allowed(&self) -> bool {
        self.users.is_empty() || self.allow_anonymous
    }
}

fn check_range(
    field: &'static str,
    value: u64,
    min: u64,
    max: u64,
    expected: &'static str,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            value,
            expected,
        })
    }
}

/// Parses `10`, `"10"`, `"10s"`, `"500ms"`, `"2m"` or `"1h"`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit.trim() {
        "" | "s" => Some(Duration::from_secs(number)),
        "ms" => Some(Duration::from_millis(number)),
        "m" => number.checked_mul(60).map(Duration::from_secs),
        "h" => number.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

fn deserialize_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Seconds(seconds) => Ok(Duration::from_secs(seconds)),
        Raw::Text(text) => parse_duration(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?}: use seconds or a number with ms, s, m or h"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_duration(input: &str, expected: Option<Duration>) {
        assert_eq!(parse_duration(input), expected, "input {input:?}");
    }

    #[test]
    fn durations_parse() {
        check_duration("10", Some(Duration::from_secs(10)));
        check_duration("10s", Some(Duration::from_secs(10)));
        check_duration("500ms", Some(Duration::from_millis(500)));
        check_duration("2m", Some(Duration::from_secs(120)));
        check_duration("1h", Some(Duration::from_secs(3600)));
        check_duration("", None);
        check_duration("s", None);
        check_duration("10x", None);
        check_duration("-1s", None);
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("test addresses are valid")
    }

    fn check_validate(config: BrokerConfig, expected: Result<(), ConfigError>) {
        assert_eq!(config.validate(), expected, "config {config:?}");
    }

    fn user(username: &str, secret: Secret) -> User {
        User::new(username, secret)
    }

    #[test]
    fn validation_is_secure_by_default() {
        let base = BrokerConfig::default;
        check_validate(base(), Ok(()));
        check_validate(
            BrokerConfig {
                listen: addr("0.0.0.0:1883"),
                ..base()
            },
            Err(ConfigError::AnonymousOnNetwork {
                listener: "mqtt",
                addr: addr("0.0.0.0:1883"),
            }),
        );
        check_validate(
            BrokerConfig {
                ws_listen: Some(addr("0.0.0.0:8083")),
                ..base()
            },
            Err(ConfigError::AnonymousOnNetwork {
                listener: "websocket",
                addr: addr("0.0.0.0:8083"),
            }),
        );
        check_validate(
            BrokerConfig {
                listen: addr("0.0.0.0:1883"),
                allow_anonymous: true,
                ..base()
            },
            Ok(()),
        );
        check_validate(
            BrokerConfig {
                listen: addr("0.0.0.0:1883"),
                users: vec![user("a", Secret::Password("pw".into()))],
                ..base()
            },
            Ok(()),
        );
        check_validate(
            BrokerConfig {
                tls_listen: Some(addr("0.0.0.0:8883")),
                tls_cert: Some("cert.pem".into()),
                tls_key: Some("key.pem".into()),
                ..base()
            },
            Err(ConfigError::AnonymousOnNetwork {
                listener: "tls",
                addr: addr("0.0.0.0:8883"),
            }),
        );
        check_validate(
            BrokerConfig {
                tls_listen: Some(addr("127.0.0.1:8883")),
                tls_cert: Some("cert.pem".into()),
                ..base()
            },
            Err(ConfigError::TlsIncomplete),
        );
        check_validate(
            BrokerConfig {
                ws_listen: Some(addr("127.0.0.1:1883")),
                ..base()
            },
            Err(ConfigError::SameAddress(addr("127.0.0.1:1883"))),
        );
        check_validate(
            BrokerConfig {
                max_inflight: 70_000,
                ..base()
            },
            Err(ConfigError::OutOfRange {
                field: "max_inflight",
                value: 70_000,
                expected: "1..=65535",
            }),
        );
        check_validate(
            BrokerConfig {
                max_queue: 0,
                ..base()
            },
            Err(ConfigError::OutOfRange {
                field: "max_queue",
                value: 0,
                expected: "at least 1",
            }),
        );
        check_validate(
            BrokerConfig {
                users: vec![user("a", Secret::Password(String::new()))],
                ..base()
            },
            Err(ConfigError::BadUser {
                username: "a".into(),
                reason: "the password is empty".into(),
            }),
        );
        check_validate(
            BrokerConfig {
                users: vec![
                    user("a", Secret::Password("x".into())),
                    user("a", Secret::Password("y".into())),
                ],
                ..base()
            },
            Err(ConfigError::BadUser {
                username: "a".into(),
                reason: "configured twice".into(),
            }),
        );
        let bad_hash = BrokerConfig {
            users: vec![user("a", Secret::PasswordHash("plain".into()))],
            ..base()
        };
        assert!(matches!(
            bad_hash.validate(),
            Err(ConfigError::BadUser { .. })
        ));
    }

    #[test]
    fn error_says_how_to_fix_anonymous_on_network() {
        let config = BrokerConfig {
            listen: addr("0.0.0.0:1883"),
            ..BrokerConfig::default()
        };
        let message = config.validate().expect_err("must be refused").to_string();
        assert!(message.contains("allow_anonymous = true"), "{message}");
        assert!(message.contains("users"), "{message}");
    }

    #[test]
    fn config_file_deserializes_with_defaults() {
        let text = r#"
            listen = "0.0.0.0:1883"
            sys_interval = "30s"
            users = [
                { username = "scada", password = "pw" },
                { username = "erp", password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA" },
            ]
        "#;
        let config: BrokerConfig = toml::from_str(text).expect("valid config");
        assert_eq!(config.listen, addr("0.0.0.0:1883"));
        assert_eq!(config.sys_interval, Duration::from_secs(30));
        assert_eq!(config.max_queue, DEFAULT_MAX_QUEUE);
        assert_eq!(config.ws_listen, BrokerConfig::default().ws_listen);
        assert_eq!(config.users[0].secret, Secret::Password("pw".into()));
        assert!(matches!(config.users[1].secret, Secret::PasswordHash(_)));
        assert_eq!(config.validate(), Ok(()));
    }
}
