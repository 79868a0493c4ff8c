//! The configuration file (`--config`, TOML) merged with command-line flags into [`Settings`].
//!
//! Two stages (STYLE habit 17): the file as written ([`CoreConfig`] for the process's own sections,
//! `[broker]`, `[http]`, `[supervisor]`, plus one raw TOML table per service section) and the
//! validated [`Settings`], in which every service of the run is already configured through its
//! `uns_service::ServiceEntry`. Loading never binds a port. Every error here is a [`ConfigFailure`]
//! naming the file, the section and the key, and the binary exits with status 2 on it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use std::sync::Arc;

use uns_broker::{BrokerConfig, Role, Secret, User};
use uns_client::BrokerUrl;
use uns_service::auth::PasswordCheck;
use uns_service::{
    ConfigEnv, Configured, HttpAccount, HttpAuth, HttpAuthConfig, HttpRole, RequireAuth,
    RestartPolicy, ServiceEntry,
};

use crate::cli::{CommonArgs, EmbeddedBrokerArgs, ExternalBrokerArgs};
use crate::services::{InUp, SERVICES};

/// The default configuration file, printed by `uns generate-config`.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("../../../deploy/uns.toml");

/// Sections of the file that belong to the process rather than to a service.
const CORE_SECTIONS: &[&str] = &["data_dir", "broker", "http", "supervisor"];

/// A configuration that cannot be used. The binary prints it and exits with status 2, before
/// anything listens or connects.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConfigFailure(pub(crate) String);

/// The process's own sections as written.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct CoreConfig {
    data_dir: PathBuf,
    broker: BrokerConfig,
    http: HttpConfig,
    supervisor: SupervisorConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            broker: BrokerConfig::default(),
            http: HttpConfig::default(),
            supervisor: SupervisorConfig::default(),
        }
    }
}

/// `[http]`: the one HTTP endpoint (`/healthz`, `/metrics`, the APIs, the console) and who may
/// use it (docs/SECURITY.md "HTTP"). Its accounts are `[broker] users`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct HttpConfig {
    listen: SocketAddr,
    /// `auto`: an account is needed once `listen` is not loopback; `always`: on loopback too.
    require_auth: RequireAuth,
    /// Serve callers without credentials on a non-loopback `listen` anyway (explicit opt-in).
    allow_anonymous: bool,
    /// Life of a login token (`POST /api/v1/login`, the `/login` page), in seconds.
    session_ttl_s: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            require_auth: RequireAuth::Auto,
            allow_anonymous: false,
            session_ttl_s: uns_service::auth::DEFAULT_SESSION_TTL.as_secs(),
        }
    }
}

impl HttpConfig {
    /// The endpoint's accounts (`users`: the broker's configured accounts, not `uns up`'s
    /// internal ones) and settings, checked against the address it will listen on.
    fn auth(
        &self,
        users: &[User],
        listen: SocketAddr,
        origin: &str,
    ) -> Result<HttpAuth, ConfigFailure> {
        if self.session_ttl_s == 0 {
            return Err(ConfigFailure(format!(
                "config file {origin}: [http] session_ttl_s: must be at least 1 (seconds)"
            )));
        }
        let auth = HttpAuth::new(
            http_accounts(users),
            HttpAuthConfig {
                require_auth: self.require_auth,
                allow_anonymous: self.allow_anonymous,
                session_ttl: Duration::from_secs(self.session_ttl_s),
            },
        );
        auth.check_listen(listen)
            .map_err(|err| ConfigFailure(format!("invalid [http] settings: {err}")))?;
        Ok(auth)
    }
}

/// The broker's accounts as the HTTP endpoint sees them: `admin`, `operator` and `viewer` keep
/// their role; `service` and `edge` accounts (machines that speak MQTT) have no HTTP access.
fn http_accounts(users: &[User]) -> Vec<HttpAccount> {
    users
        .iter()
        // An empty password would let anyone in; the broker's `validate` refuses it, and a
        // standalone service (which does not validate a broker section) skips it.
        .filter(|user| !matches!(&user.secret, Secret::Password(password) if password.is_empty()))
        .map(|user| {
            let secret = user.secret.clone();
            let check: PasswordCheck = Arc::new(move |password| secret.verify(password));
            let name = user.username.clone();
            match user.effective_role() {
                Role::Admin => HttpAccount::new(name, HttpRole::Admin, check),
                Role::Operator => HttpAccount::new(name, HttpRole::Operator, check),
                Role::Viewer => HttpAccount::new(name, HttpRole::Viewer, check),
                Role::Service => HttpAccount::without_access(
                    name,
                    "service accounts are for a service's MQTT connection; give people an admin, operator or viewer account",
                    check,
                ),
                Role::Edge => HttpAccount::without_access(
                    name,
                    "edge accounts are for Sparkplug edge nodes' MQTT connections; give people an admin, operator or viewer account",
                    check,
                ),
            }
        })
        .collect()
}

/// `[supervisor]`: how `uns up` restarts a failed service loop.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct SupervisorConfig {
    /// First wait after a failure, in ms.
    restart_initial_ms: u64,
    /// Longest wait, in ms; a run that lasted longer resets the wait.
    restart_max_ms: u64,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            restart_initial_ms: 1000,
            restart_max_ms: 60_000,
        }
    }
}

/// The file: core sections typed, service sections raw until their service configures them.
#[derive(Debug, Default)]
pub(crate) struct FileConfig {
    core: CoreConfig,
    sections: BTreeMap<String, toml::Value>,
    /// The file's name, for error messages.
    origin: String,
}

impl FileConfig {
    /// Parses `text` (from `origin`): core sections typed, errors naming section and key; every other
    /// top-level key must be a service section.
    pub(crate) fn parse(text: &str, origin: &str) -> Result<Self, ConfigFailure> {
        let mut table: toml::Table = toml::from_str(text)
            .map_err(|err| ConfigFailure(format!("config file {origin}: {err}")))?;
        let mut core = toml::Table::new();
        for key in CORE_SECTIONS {
            if let Some(value) = table.remove(*key) {
                core.insert((*key).to_owned(), value);
            }
        }
        let core: CoreConfig =
            serde_path_to_error::deserialize(toml::Value::Table(core)).map_err(|err| {
                let path = err.path().to_string();
                let (section, key) = path.split_once('.').unwrap_or((path.as_str(), ""));
                ConfigFailure(format!(
                    "config file {origin}: [{section}] {}: {}",
                    if key.is_empty() { "(section)" } else { key },
                    err.inner()
                ))
            })?;
        for key in table.keys() {
            if !SERVICES.iter().any(|listed| listed.entry.section == key) {
                let mut known: Vec<&str> = CORE_SECTIONS.to_vec();
                known.extend(SERVICES.iter().map(|listed| listed.entry.section));
                return Err(ConfigFailure(format!(
                    "config file {origin}: unknown section or key `{key}`; known: {}",
                    known.join(", ")
                )));
            }
        }
        Ok(Self {
            core,
            sections: table.into_iter().collect(),
            origin: origin.to_owned(),
        })
    }

    /// The data directory a run with config file `config` and `--data-dir` `flag` uses (for
    /// the offline tools that read a service's store, `uns genealogy verify`).
    pub(crate) fn data_dir(
        config: Option<&Path>,
        flag: Option<&Path>,
    ) -> Result<PathBuf, ConfigFailure> {
        match flag {
            Some(dir) => Ok(dir.to_owned()),
            None => Ok(Self::read(config)?.core.data_dir),
        }
    }

    fn read(path: Option<&Path>) -> Result<Self, ConfigFailure> {
        let Some(path) = path else {
            return Ok(Self {
                origin: "(none: built-in defaults)".to_owned(),
                ..Self::default()
            });
        };
        let text = std::fs::read_to_string(path).map_err(|err| {
            ConfigFailure(format!(
                "cannot read config file {}: {}",
                path.display(),
                crate::errors::io_reason(&err)
            ))
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Configures `entry` from its section (patched by `patch`), naming the file on error.
    fn configure(
        &self,
        entry: &ServiceEntry,
        env: &ConfigEnv,
        patch: impl FnOnce(&mut toml::Table),
    ) -> Result<Configured, ConfigFailure> {
        let mut section = match self.sections.get(entry.section) {
            Some(toml::Value::Table(table)) => table.clone(),
            Some(other) => {
                return Err(ConfigFailure(format!(
                    "config file {}: [{}] must be a table, found {}",
                    self.origin,
                    entry.section,
                    other.type_str()
                )));
            }
            None => toml::Table::new(),
        };
        patch(&mut section);
        let value = (!section.is_empty()).then_some(toml::Value::Table(section));
        entry
            .configure(value, env)
            .map_err(|err| ConfigFailure(format!("config file {}: {err}", self.origin)))
    }

    fn section_str(&self, section: &str, key: &str) -> Option<String> {
        self.sections
            .get(section)?
            .get(key)?
            .as_str()
            .map(str::to_owned)
    }
}

/// Where the services find the broker.
#[derive(Debug)]
pub(crate) enum Backbone {
    /// Run the embedded broker in this process.
    Embedded(BrokerConfig),
    /// Connect to a broker elsewhere.
    External {
        url: BrokerUrl,
        credentials: Option<(String, String)>,
    },
}

/// Validated settings for any command that runs the broker or services.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) backbone: Backbone,
    /// Each service keeps its state under `data_dir/{service}/`.
    pub(crate) data_dir: PathBuf,
    pub(crate) http_listen: SocketAddr,
    /// Who may use the HTTP endpoint (the broker's configured accounts), checked against
    /// `http_listen`.
    pub(crate) http_auth: HttpAuth,
    pub(crate) ready_file: Option<PathBuf>,
    pub(crate) restart: RestartPolicy,
    /// The services of this run, configured, in start order.
    pub(crate) services: Vec<Configured>,
}

impl Settings {
    /// `uns up` (every service; the simulator only with `--demo`) and `uns broker` (none).
    pub(crate) fn embedded(
        common: &CommonArgs,
        broker_args: &EmbeddedBrokerArgs,
        demo: bool,
        with_services: bool,
    ) -> Result<Self, ConfigFailure> {
        let file = FileConfig::read(common.config.as_deref())?;
        let mut broker = file.core.broker.clone();
        if broker.data_dir != BrokerConfig::default().data_dir {
            return Err(ConfigFailure(format!(
                "config file {}: [broker] data_dir: set data_dir at the top of the config file, not in [broker]",
                file.origin
            )));
        }
        let data_dir = common
            .data_dir
            .clone()
            .unwrap_or_else(|| file.core.data_dir.clone());
        broker.data_dir = data_dir.clone();
        if let Some(listen) = broker_args.listen {
            broker.listen = listen;
        }
        if let Some(ws) = broker_args.ws_listen {
            broker.ws_listen = ws.0;
        }
        if broker_args.allow_anonymous {
            broker.allow_anonymous = true;
        }
        for user in broker_args
            .users
            .iter()
            .filter(|user| !user.username.is_empty())
        {
            broker.users.push(user.to_user());
        }
        broker
            .validate()
            .map_err(|err| ConfigFailure(format!("invalid [broker] settings: {err}")))?;
        let http_listen = common.http_listen.unwrap_or(file.core.http.listen);
        let http_auth = file
            .core
            .http
            .auth(&broker.users, http_listen, &file.origin)?;
        let env = ConfigEnv {
            demo,
            data_dir: data_dir.clone(),
            http_listen,
        };
        let mut services = Vec::new();
        if with_services {
            for listed in SERVICES {
                // Every section is checked, also of a service this run leaves out, so a mistake
                // shows now rather than on the day it is switched on.
                let configured = file.configure(&listed.entry, &env, |section| {
                    demo_patch(&file, listed.entry.section, demo, section);
                })?;
                if listed.in_up == InUp::Always || demo {
                    services.push(configured);
                }
            }
        } else if demo {
            return Err(ConfigFailure(
                "--demo runs the simulated plant with the services; use `uns up --demo`".to_owned(),
            ));
        }
        Ok(Self {
            backbone: Backbone::Embedded(broker),
            data_dir,
            http_listen,
            http_auth,
            ready_file: common.ready_file.clone(),
            restart: file.core.supervisor.policy(),
            services,
        })
    }

    /// A standalone service connecting to a broker elsewhere. `flags` are `(key, value)` pairs from
    /// the service's own flags; they override its section.
    pub(crate) fn external(
        common: &CommonArgs,
        broker_args: &ExternalBrokerArgs,
        entry: &ServiceEntry,
        flags: &[(&str, String)],
    ) -> Result<Self, ConfigFailure> {
        let file = FileConfig::read(common.config.as_deref())?;
        let credentials = match (&broker_args.username, &broker_args.password) {
            (Some(user), password) => Some((user.clone(), password.clone().unwrap_or_default())),
            (None, Some(_)) => {
                return Err(ConfigFailure(
                    "--password (UNS_MQTT_PASSWORD) needs --username (UNS_MQTT_USERNAME)"
                        .to_owned(),
                ));
            }
            (None, None) => broker_args.broker.username().map(|user| {
                let password = broker_args.broker.password().unwrap_or_default();
                (user.to_owned(), password.to_owned())
            }),
        };
        let data_dir = common
            .data_dir
            .clone()
            .unwrap_or_else(|| file.core.data_dir.clone());
        let http_listen = common.http_listen.unwrap_or(file.core.http.listen);
        // A standalone service's HTTP accounts are the `[broker] users` of its config file
        // (whatever broker it connects to).
        let http_auth = file
            .core
            .http
            .auth(&file.core.broker.users, http_listen, &file.origin)?;
        let env = ConfigEnv {
            demo: false,
            data_dir: data_dir.clone(),
            http_listen,
        };
        let service = file.configure(entry, &env, |section| {
            for (key, value) in flags {
                set_dotted(section, key, flag_value(value));
            }
        })?;
        Ok(Self {
            backbone: Backbone::External {
                url: broker_args.broker.clone(),
                credentials,
            },
            data_dir,
            http_listen,
            http_auth,
            ready_file: common.ready_file.clone(),
            // Docker (or systemd) restarts a standalone service; it exits non-zero instead.
            restart: RestartPolicy::Exit,
            services: vec![service],
        })
    }
}

impl SupervisorConfig {
    fn policy(&self) -> RestartPolicy {
        RestartPolicy::Restart {
            initial: Duration::from_millis(self.restart_initial_ms.max(1)),
            max: Duration::from_millis(self.restart_max_ms.max(self.restart_initial_ms).max(1)),
        }
    }
}

/// `uns up --demo` runs the simulator next to the bridge: its nodes wait for the bridge's STATE
/// before their births and buffer meanwhile, as in the compose deployment, so nothing the plant
/// reports before the bridge listens is lost.
fn demo_patch(file: &FileConfig, section: &str, demo: bool, table: &mut toml::Table) {
    if demo && section == "sim" && !table.contains_key("primary_host") {
        let host_id = file
            .section_str("scada_bridge", "host_id")
            .unwrap_or_else(|| uns_scada_bridge::BridgeConfig::default().host_id);
        table.insert("primary_host".to_owned(), toml::Value::String(host_id));
    }
}

/// A flag's text as a TOML value: `7`, `1.5`, `true` as such, anything else as a string.
fn flag_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut table| table.remove("v"))
        .filter(|value| !value.is_table() && !value.is_array())
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

/// Sets `a.b.c` in `table`, creating tables on the way.
fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        None => {
            table.insert(key.to_owned(), value);
        }
        Some((head, rest)) => {
            let inner = table
                .entry(head.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !inner.is_table() {
                *inner = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = inner {
                set_dotted(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common() -> CommonArgs {
        CommonArgs {
            config: None,
            data_dir: None,
            http_listen: None,
            ready_file: None,
        }
    }

    fn broker_args() -> EmbeddedBrokerArgs {
        EmbeddedBrokerArgs {
            listen: None,
            ws_listen: None,
            allow_anonymous: false,
            users: Vec::new(),
        }
    }

    fn write_config(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    fn with_config(text: &str) -> (tempfile::NamedTempFile, CommonArgs) {
        let file = write_config(text);
        let mut common = common();
        common.config = Some(file.path().to_path_buf());
        (file, common)
    }

    #[test]
    fn the_documented_defaults_are_the_defaults() {
        let parsed =
            FileConfig::parse(DEFAULT_CONFIG, "deploy/uns.toml").expect("deploy/uns.toml parses");
        assert_eq!(parsed.core, CoreConfig::default());
        for listed in SERVICES {
            let entry = &listed.entry;
            let documented = parsed.sections.get(entry.section).unwrap_or_else(|| {
                panic!(
                    "deploy/uns.toml has no [{}] section (uns generate-config must print every section)",
                    entry.section
                )
            });
            let default = entry.default_config().expect("defaults serialize");
            assert_eq!(
                documented, &default,
                "[{}] in deploy/uns.toml differs from the code's defaults",
                entry.section
            );
        }
        assert_eq!(
            parsed.sections.len(),
            SERVICES.len(),
            "deploy/uns.toml has a section no service reads"
        );
    }

    #[test]
    fn flags_override_the_file() {
        let (_file, mut common) =
            with_config("data_dir = \"/var/lib/uns\"\n[http]\nlisten = \"127.0.0.1:9000\"");
        let mut broker = broker_args();
        broker.listen = Some("127.0.0.1:0".parse().unwrap());
        let settings = Settings::embedded(&common, &broker, false, true).unwrap();
        let Backbone::Embedded(config) = &settings.backbone else {
            panic!("embedded expected");
        };
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/uns"));
        assert_eq!(settings.http_listen.port(), 9000);
        common.data_dir = Some(PathBuf::from("/tmp/x"));
        let settings = Settings::embedded(&common, &broker, false, true).unwrap();
        let Backbone::Embedded(config) = &settings.backbone else {
            panic!("embedded expected");
        };
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn up_runs_every_service_and_the_simulator_only_with_demo() {
        let names = |demo| {
            Settings::embedded(&common(), &broker_args(), demo, true)
                .unwrap()
                .services
                .iter()
                .map(Configured::name)
                .collect::<Vec<_>>()
        };
        let plain = names(false);
        assert!(!plain.contains(&"sim"), "{plain:?}");
        assert!(plain.contains(&"scada-bridge"), "{plain:?}");
        let demo = names(true);
        assert_eq!(demo.last(), Some(&"sim"), "{demo:?}");
        assert_eq!(demo.len(), plain.len() + 1);
    }

    /// The advice printed for a non-loopback listener without accounts: each way it names works.
    #[test]
    fn anonymous_on_the_network_is_refused_and_every_advice_given_works() {
        let mut broker = broker_args();
        broker.listen = Some("0.0.0.0:1883".parse().unwrap());
        let err = Settings::embedded(&common(), &broker, false, false).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--user NAME:PASSWORD"), "{text}");
        assert!(text.contains("under [broker]"), "{text}");
        assert!(text.contains("--allow-anonymous"), "{text}");
        // 1. `--user NAME:PASSWORD`
        let cli = crate::cli::parse_from([
            "uns",
            "broker",
            "--listen",
            "0.0.0.0:1883",
            "--user",
            "engineer:change-me",
        ])
        .unwrap();
        let crate::cli::Parsed::Builtin(crate::cli::Command::Broker(args)) = cli.command else {
            panic!("broker expected");
        };
        assert!(Settings::embedded(&args.common, &args.broker, false, false).is_ok());
        // 2. `users = [{ username = "NAME", password = "PASSWORD" }]` under [broker]
        let (_file, common_with_users) =
            with_config("[broker]\nusers = [{ username = \"NAME\", password = \"PASSWORD\" }]\n");
        assert!(Settings::embedded(&common_with_users, &broker, false, false).is_ok());
        // 3. `--allow-anonymous`
        broker.allow_anonymous = true;
        assert!(Settings::embedded(&common(), &broker, false, false).is_ok());
        // 4. `allow_anonymous = true` under [broker]
        broker.allow_anonymous = false;
        let (_file, common_anonymous) = with_config("[broker]\nallow_anonymous = true\n");
        assert!(Settings::embedded(&common_anonymous, &broker, false, false).is_ok());
        // 5. listen on 127.0.0.1
        broker.listen = Some("127.0.0.1:1883".parse().unwrap());
        assert!(Settings::embedded(&common(), &broker, false, false).is_ok());
    }

    #[test]
    fn demo_and_a_plant_section_conflict() {
        let (_file, common) = with_config("[[plant.nodes]]\npath = \"x\"\ndisplay_name = \"X\"");
        let err = Settings::embedded(&common, &broker_args(), true, true).unwrap_err();
        assert!(err.to_string().contains("--demo"), "{err}");
        let settings = Settings::embedded(&common, &broker_args(), false, true).unwrap();
        assert!(!settings.services.is_empty());
    }

    #[test]
    fn empty_user_entries_are_skipped() {
        let cli = crate::cli::parse_from(["uns", "broker", "--user", "a:1,,b:2,"]).unwrap();
        let crate::cli::Parsed::Builtin(crate::cli::Command::Broker(args)) = cli.command else {
            panic!("broker expected");
        };
        let settings = Settings::embedded(&args.common, &args.broker, false, false).unwrap();
        let Backbone::Embedded(config) = settings.backbone else {
            panic!("embedded expected");
        };
        let names: Vec<_> = config.users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(crate::cli::parse_from(["uns", "broker", "--user", "nopassword"]).is_err());
    }

    fn broker_run(args: &[&str]) -> Result<Settings, ConfigFailure> {
        let cli = crate::cli::parse_from(args.iter().copied())
            .map_err(|err| ConfigFailure(err.to_string()))?;
        let crate::cli::Parsed::Builtin(crate::cli::Command::Broker(args)) = cli.command else {
            panic!("broker expected");
        };
        Settings::embedded(&args.common, &args.broker, false, false)
    }

    #[test]
    fn users_on_the_command_line_get_roles() {
        let settings = broker_run(&[
            "uns",
            "broker",
            "--user",
            "ops:pw:admin,alice:a:b:operator,line:lp:edge=g1+g2,eng:e:x,oee:o",
        ])
        .unwrap();
        let Backbone::Embedded(config) = settings.backbone else {
            panic!("embedded expected");
        };
        let users: Vec<_> = config
            .users
            .iter()
            .map(|u| {
                (
                    u.username.as_str(),
                    u.secret.clone(),
                    u.effective_role(),
                    u.groups.clone(),
                )
            })
            .collect();
        let pw = |text: &str| Secret::Password(text.to_owned());
        assert_eq!(
            users,
            [
                ("ops", pw("pw"), Role::Admin, vec![]),
                ("alice", pw("a:b"), Role::Operator, vec![]),
                (
                    "line",
                    pw("lp"),
                    Role::Edge,
                    vec!["g1".to_owned(), "g2".to_owned()]
                ),
                ("eng", pw("e:x"), Role::Viewer, vec![]),
                ("oee", pw("o"), Role::Service, vec![]),
            ]
        );
        for bad in ["a:pw:edge", "a::admin", "a:pw:edge=", "a:pw:edge=g+"] {
            let err = broker_run(&["uns", "broker", "--user", bad]);
            assert!(err.is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn http_on_the_network_needs_an_account_with_http_access() {
        let mut network = common();
        network.http_listen = Some("0.0.0.0:8080".parse().unwrap());
        let err = Settings::embedded(&network, &broker_args(), false, false).unwrap_err();
        assert!(
            err.to_string().contains("[http] listen 0.0.0.0:8080"),
            "{err}"
        );
        assert!(err.to_string().contains("allow_anonymous = true"), "{err}");
        // A service account speaks MQTT only: not enough.
        let mut users = broker_args();
        users.users = vec![crate::cli::UserArg {
            username: "oee".to_owned(),
            password: "pw".to_owned(),
            role: None,
            groups: Vec::new(),
        }];
        assert!(Settings::embedded(&network, &users, false, false).is_err());
        users.users[0].role = Some(Role::Viewer);
        let settings = Settings::embedded(&network, &users, false, false).unwrap();
        assert!(settings.http_auth.required_on(settings.http_listen));
        // The explicit opt-in.
        let (_file, mut anonymous) = with_config("[http]\nallow_anonymous = true\n");
        anonymous.http_listen = network.http_listen;
        assert!(Settings::embedded(&anonymous, &broker_args(), false, false).is_ok());
        // `always` needs an account even on loopback.
        let (_file, always) = with_config("[http]\nrequire_auth = \"always\"\n");
        let err = Settings::embedded(&always, &broker_args(), false, false).unwrap_err();
        assert!(err.to_string().contains("require_auth"), "{err}");
        let settings = Settings::embedded(&always, &users, false, false).unwrap();
        assert!(settings.http_auth.required_on(settings.http_listen));
    }

    /// Every compose container listens for HTTP on 0.0.0.0 without accounts of its own: its
    /// file must say so on purpose, or the container would refuse to start.
    #[test]
    fn the_compose_files_may_start_their_http_endpoint() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/compose");
        let mut n_files = 0;
        for entry in std::fs::read_dir(dir).expect("deploy/compose") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_none_or(|ext| ext != "toml") {
                continue;
            }
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(&path).expect("readable");
            let file = FileConfig::parse(&text, &origin).expect("parses");
            let http = &file.core.http;
            assert!(!http.listen.ip().is_loopback(), "{origin}");
            http.auth(&file.core.broker.users, http.listen, &origin)
                .unwrap_or_else(|err| panic!("{origin}: {err}"));
            n_files += 1;
        }
        assert!(n_files >= 8, "{n_files} compose files");
    }

    #[test]
    fn external_credentials() {
        let args = ExternalBrokerArgs {
            broker: "mqtt://broker:1883".parse().unwrap(),
            username: None,
            password: Some("secret".to_owned()),
        };
        let entry = &SERVICES[0].entry;
        assert!(Settings::external(&common(), &args, entry, &[]).is_err());
    }

    /// Bad sections name the file, the section and the key.
    #[test]
    fn bad_sections_name_file_section_and_key() {
        fn check(text: &str, wanted: &[&str]) {
            let (file, common) = with_config(text);
            let err = Settings::embedded(&common, &broker_args(), false, true).unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains(&file.path().display().to_string()),
                "{message}"
            );
            for part in wanted {
                assert!(message.contains(part), "{message:?} lacks {part:?}");
            }
        }
        check(
            "[brokr]\nlisten = \"127.0.0.1:1\"",
            &["unknown section", "brokr"],
        );
        check("[broker]\nmax_queue = \"many\"", &["[broker]", "max_queue"]);
        check("[broker]\nlisen = \"127.0.0.1:1\"", &["[broker]", "lisen"]);
        check(
            "[scada_bridge]\nreorder_timeout_ms = \"soon\"",
            &["[scada_bridge]", "reorder_timeout_ms"],
        );
        check("[scada_bridge]\nhost = \"x\"", &["[scada_bridge]", "host"]);
        check(
            "[[scada_bridge.nodes]]\ngroup = \"g\"\nedge = \"e\"\nlocation = \"Acme/Berlin\"",
            &["[scada_bridge]", "nodes[0].location", "Acme/Berlin"],
        );
        check("[sim]\nspeed = \"fast\"", &["[sim]", "speed"]);
    }

    #[test]
    fn flag_values_are_toml_scalars_or_strings() {
        assert_eq!(flag_value("7"), toml::Value::Integer(7));
        assert_eq!(flag_value("1.5"), toml::Value::Float(1.5));
        assert_eq!(flag_value("true"), toml::Value::Boolean(true));
        assert_eq!(
            flag_value("scada-bridge"),
            toml::Value::String("scada-bridge".to_owned())
        );
        let mut table = toml::Table::new();
        set_dotted(&mut table, "scale.nodes", toml::Value::Integer(3));
        assert_eq!(table["scale"]["nodes"], toml::Value::Integer(3));
    }
}
