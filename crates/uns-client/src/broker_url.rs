//! Where a service finds its broker: `mqtt://[user[:password]@]host[:port]`.

use std::fmt;
use std::str::FromStr;

/// The default MQTT port (plain TCP).
pub const DEFAULT_MQTT_PORT: u16 = 1883;

/// A parsed broker address, e.g. `mqtt://broker:1883` or `mqtt://oee:secret@10.0.0.5`.
///
/// Credentials in the URL are accepted for convenience; [`crate::ClientOptions::credentials`]
/// takes precedence when both are given.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
}

/// Why a broker URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BrokerUrlError {
    /// The text is not a URL at all.
    #[error("`{url}` is not a URL ({reason}); expected mqtt://host:port")]
    NotAUrl {
        /// The text given.
        url: String,
        /// What the URL parser said.
        reason: String,
    },
    /// The scheme is not one we speak.
    #[error("unsupported scheme `{scheme}` in `{url}`; use mqtt:// (or tcp://)")]
    Scheme {
        /// The text given.
        url: String,
        /// The scheme found.
        scheme: String,
    },
    /// No host part.
    #[error("`{url}` has no host; expected mqtt://host:port")]
    NoHost {
        /// The text given.
        url: String,
    },
    /// A path, query or fragment that would be silently ignored.
    #[error("`{url}` has a path, query or fragment; a broker URL is only mqtt://host:port")]
    Extra {
        /// The text given.
        url: String,
    },
}

impl BrokerUrl {
    /// A URL for `host:port` without credentials.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            username: None,
            password: None,
        }
    }

    /// The host name or IP address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name given in the URL, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password given in the URL, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
}

impl FromStr for BrokerUrl {
    type Err = BrokerUrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let url = url::Url::parse(text).map_err(|err| BrokerUrlError::NotAUrl {
            url: text.to_owned(),
            reason: err.to_string(),
        })?;
        if !matches!(url.scheme(), "mqtt" | "tcp") {
            return Err(BrokerUrlError::Scheme {
                url: text.to_owned(),
                scheme: url.scheme().to_owned(),
            });
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(addr)) => addr.to_string(),
            Some(host) => host.to_string(),
            None => {
                return Err(BrokerUrlError::NoHost {
                    url: text.to_owned(),
                });
            }
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(BrokerUrlError::Extra {
                url: text.to_owned(),
            });
        }
        let username = (!url.username().is_empty()).then(|| url.username().to_owned());
        Ok(Self {
            host,
            port: url.port().unwrap_or(DEFAULT_MQTT_PORT),
            username,
            password: url.password().map(str::to_owned),
        })
    }
}

impl fmt::Display for BrokerUrl {
    /// Prints the URL without the password, so it is safe to log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match &self.username {
            Some(user) => write!(f, "mqtt://{user}@{host}:{}", self.port),
            None => write!(f, "mqtt://{host}:{}", self.port),
        }
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ok((host, port, user, password))` or `Err(fragment of the error message)`.
    type Expected<'a> = Result<(&'a str, u16, Option<&'a str>, Option<&'a str>), &'a str>;

    fn check(text: &str, expected: Expected<'_>) {
        let parsed = text.parse::<BrokerUrl>();
        match (parsed, expected) {
            (Ok(url), Ok((host, port, user, pass))) => {
                assert_eq!(
                    (url.host(), url.port(), url.username(), url.password()),
                    (host, port, user, pass),
                    "{text}"
                );
            }
            (Err(err), Err(fragment)) => {
                assert!(err.to_string().contains(fragment), "{text}: {err}");
            }
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn broker_urls() {
        check("mqtt://broker:1883", Ok(("broker", 1883, None, None)));
        check("mqtt://127.0.0.1", Ok(("127.0.0.1", 1883, None, None)));
        check("tcp://[::1]:2883", Ok(("::1", 2883, None, None)));
        check(
            "mqtt://oee:s3cret@broker:1884",
            Ok(("broker", 1884, Some("oee"), Some("s3cret"))),
        );
        check("broker:1883", Err("unsupported scheme"));
        check("http://broker", Err("unsupported scheme"));
        check("mqtt://broker/path", Err("path, query"));
        check("not a url", Err("is not a URL"));
    }

    #[test]
    fn display_hides_the_password() {
        let url: BrokerUrl = "mqtt://oee:s3cret@broker:1884".parse().unwrap();
        assert_eq!(url.to_string(), "mqtt://oee@broker:1884");
    }
}
