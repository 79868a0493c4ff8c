//! The configuration file (`--config`, TOML) merged with command-line flags into [`Settings`].
//!
//! Two stages (STYLE habit 17): [`FileConfig`] is the file as written (serde, unknown keys
//! refused); [`Settings::embedded`] and [`Settings::external`] apply the flags and validate. Loading never binds a port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use uns_broker::{BrokerConfig, Secret, User};
use uns_meta::{PlantConfig, PlantModel};
use uns_scada_bridge::BridgeConfig;
use uns_sim::SimConfig;

use uns_client::BrokerUrl;

use crate::cli::{CommonArgs, EmbeddedBrokerArgs, ExternalBrokerArgs};

/// The default configuration file, printed by `uns generate-config`.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("../../../deploy/uns.toml");

/// The config file as written.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileConfig {
    data_dir: PathBuf,
    broker: BrokerConfig,
    http: HttpConfig,
    plant: Option<PlantConfig>,
    sim: SimConfig,
    scada_bridge: BridgeConfig,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            broker: BrokerConfig::default(),
            http: HttpConfig::default(),
            plant: None,
            sim: SimConfig::default(),
            scada_bridge: BridgeConfig::default(),
        }
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct HttpConfig {
    listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
        }
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
    /// Whether `uns up` also runs the simulated plant.
    pub(crate) demo: bool,
    pub(crate) sim: SimConfig,
    pub(crate) scada_bridge: BridgeConfig,
    pub(crate) http_listen: SocketAddr,
    pub(crate) plant: PlantModel,
    pub(crate) ready_file: Option<PathBuf>,
}

impl Settings {
    /// `uns up` and `uns broker`: the embedded broker with the flags applied.
    pub(crate) fn embedded(
        common: &CommonArgs,
        broker_args: &EmbeddedBrokerArgs,
        demo: bool,
    ) -> anyhow::Result<Self> {
        let file = read_optional(common.config.as_deref())?;
        let mut broker = file.broker;
        if broker.data_dir != BrokerConfig::default().data_dir {
            anyhow::bail!("set data_dir at the top of the config file, not in [broker]");
        }
        let data_dir = common.data_dir.clone().unwrap_or(file.data_dir);
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
            broker.users.push(User {
                username: user.username.clone(),
                secret: Secret::Password(user.password.clone()),
            });
        }
        broker.validate().context("invalid [broker] settings")?;
        Ok(Self {
            backbone: Backbone::Embedded(broker),
            data_dir,
            demo,
            sim: file.sim,
            scada_bridge: file.scada_bridge,
            http_listen: common.http_listen.unwrap_or(file.http.listen),
            plant: plant_model(file.plant, demo)?,
            ready_file: common.ready_file.clone(),
        })
    }

    /// A standalone service connecting to a broker elsewhere.
    pub(crate) fn external(
        common: &CommonArgs,
        broker_args: &ExternalBrokerArgs,
    ) -> anyhow::Result<Self> {
        let file = read_optional(common.config.as_deref())?;
        let credentials = match (&broker_args.username, &broker_args.password) {
            (Some(user), password) => Some((user.clone(), password.clone().unwrap_or_default())),
            (None, Some(_)) => anyhow::bail!("--password (UNS_MQTT_PASSWORD) needs --username"),
            (None, None) => broker_args.broker.username().map(|user| {
                let password = broker_args.broker.password().unwrap_or_default();
                (user.to_owned(), password.to_owned())
            }),
        };
        Ok(Self {
            backbone: Backbone::External {
                url: broker_args.broker.clone(),
                credentials,
            },
            data_dir: common.data_dir.clone().unwrap_or(file.data_dir),
            demo: false,
            sim: file.sim,
            scada_bridge: file.scada_bridge,
            http_listen: common.http_listen.unwrap_or(file.http.listen),
            plant: plant_model(file.plant, false)?,
            ready_file: common.ready_file.clone(),
        })
    }
}

fn plant_model(plant: Option<PlantConfig>, demo: bool) -> anyhow::Result<PlantModel> {
    match (plant, demo) {
        (Some(_), true) => {
            anyhow::bail!(
                "--demo uses the demo plant; remove [plant] from the config or drop --demo"
            )
        }
        (Some(plant), false) => PlantModel::try_from(plant).context("invalid [plant] model"),
        (None, _) => Ok(PlantModel::demo()),
    }
}

fn read_optional(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    match path {
        Some(path) => read_config(path),
        None => Ok(FileConfig::default()),
    }
}

fn read_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

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

    #[test]
    fn the_documented_defaults_are_the_defaults() {
        let parsed: FileConfig = toml::from_str(DEFAULT_CONFIG).expect("deploy/uns.toml parses");
        assert_eq!(parsed, FileConfig::default());
    }

    #[test]
    fn flags_override_the_file() {
        let file = write_config("data_dir = \"/var/lib/uns\"\n[http]\nlisten = \"127.0.0.1:9000\"");
        let mut common = common();
        common.config = Some(file.path().to_path_buf());
        let mut broker = broker_args();
        broker.listen = Some("127.0.0.1:0".parse().unwrap());
        let settings = Settings::embedded(&common, &broker, false).unwrap();
        let Backbone::Embedded(config) = &settings.backbone else {
            panic!("embedded expected");
        };
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/uns"));
        assert_eq!(settings.http_listen.port(), 9000);
        common.data_dir = Some(PathBuf::from("/tmp/x"));
        let settings = Settings::embedded(&common, &broker, false).unwrap();
        let Backbone::Embedded(config) = &settings.backbone else {
            panic!("embedded expected");
        };
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn anonymous_on_the_network_is_refused_with_a_hint() {
        let mut broker = broker_args();
        broker.listen = Some("0.0.0.0:1883".parse().unwrap());
        let err = Settings::embedded(&common(), &broker, false).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("allow_anonymous"), "{text}");
        broker.allow_anonymous = true;
        assert!(Settings::embedded(&common(), &broker, false).is_ok());
    }

    #[test]
    fn demo_and_a_plant_section_conflict() {
        let file = write_config("[[plant.nodes]]\npath = \"x\"\ndisplay_name = \"X\"");
        let mut common = common();
        common.config = Some(file.path().to_path_buf());
        let err = Settings::embedded(&common, &broker_args(), true).unwrap_err();
        assert!(err.to_string().contains("--demo"), "{err}");
        let settings = Settings::embedded(&common, &broker_args(), false).unwrap();
        assert_eq!(settings.plant.len(), 1);
    }

    #[test]
    fn empty_user_entries_are_skipped() {
        let cli =
            crate::cli::Cli::try_parse_from(["uns", "broker", "--user", "a:1,,b:2,"]).unwrap();
        let crate::cli::Command::Broker(args) = cli.command else {
            panic!("broker expected");
        };
        let settings = Settings::embedded(&args.common, &args.broker, false).unwrap();
        let Backbone::Embedded(config) = settings.backbone else {
            panic!("embedded expected");
        };
        let names: Vec<_> = config.users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(
            crate::cli::Cli::try_parse_from(["uns", "broker", "--user", "nopassword"]).is_err()
        );
    }

    #[test]
    fn external_credentials() {
        let args = ExternalBrokerArgs {
            broker: "mqtt://broker:1883".parse().unwrap(),
            username: None,
            password: Some("secret".to_owned()),
        };
        assert!(Settings::external(&common(), &args).is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<FileConfig>("[brokr]\nlisten = \"127.0.0.1:1\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
