//! The configuration file (`--config`, TOML) merged with command-line flags into [`Settings`].
//!
//! Two stages (STYLE habit 17): [`FileConfig`] is the file as written (serde, unknown keys
//! refused); [`Settings::load`] applies the flags and validates. Loading never binds a port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use uns_broker::BrokerConfig;
use uns_meta::{PlantConfig, PlantModel};

use crate::cli::RunArgs;

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
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            broker: BrokerConfig::default(),
            http: HttpConfig::default(),
            plant: None,
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

/// Validated settings for `uns up` and `uns broker`.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) broker: BrokerConfig,
    pub(crate) http_listen: SocketAddr,
    pub(crate) plant: PlantModel,
    pub(crate) ready_file: Option<PathBuf>,
}

impl Settings {
    /// Reads the config file (if any), applies the flags, validates.
    pub(crate) fn load(args: &RunArgs, demo: bool) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_config(path)?,
            None => FileConfig::default(),
        };
        Self::from_parts(file, args, demo)
    }

    fn from_parts(file: FileConfig, args: &RunArgs, demo: bool) -> anyhow::Result<Self> {
        let mut broker = file.broker;
        if broker.data_dir != BrokerConfig::default().data_dir {
            anyhow::bail!("set data_dir at the top of the config file, not in [broker]");
        }
        broker.data_dir = args.data_dir.clone().unwrap_or(file.data_dir);
        if let Some(listen) = args.listen {
            broker.listen = listen;
        }
        if let Some(ws) = args.ws_listen {
            broker.ws_listen = ws.0;
        }
        if args.allow_anonymous {
            broker.allow_anonymous = true;
        }
        broker.validate().context("invalid [broker] settings")?;
        let plant = match (file.plant, demo) {
            (Some(_), true) => {
                anyhow::bail!(
                    "--demo uses the demo plant; remove [plant] from the config or drop --demo"
                )
            }
            (Some(plant), false) => PlantModel::try_from(plant).context("invalid [plant] model")?,
            (None, _) => PlantModel::demo(),
        };
        Ok(Self {
            broker,
            http_listen: args.http_listen.unwrap_or(file.http.listen),
            plant,
            ready_file: args.ready_file.clone(),
        })
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

    fn args() -> RunArgs {
        RunArgs {
            config: None,
            data_dir: None,
            http_listen: None,
            listen: None,
            ws_listen: None,
            allow_anonymous: false,
            ready_file: None,
        }
    }

    #[test]
    fn the_documented_defaults_are_the_defaults() {
        let parsed: FileConfig = toml::from_str(DEFAULT_CONFIG).expect("deploy/uns.toml parses");
        assert_eq!(parsed, FileConfig::default());
    }

    #[test]
    fn flags_override_the_file() {
        let file: FileConfig =
            toml::from_str("data_dir = \"/var/lib/uns\"\n[http]\nlisten = \"127.0.0.1:9000\"")
                .unwrap();
        let mut args = args();
        args.listen = Some("127.0.0.1:0".parse().unwrap());
        args.data_dir = Some(PathBuf::from("/tmp/x"));
        let settings = Settings::from_parts(file, &args, false).unwrap();
        assert_eq!(settings.broker.listen.port(), 0);
        assert_eq!(settings.broker.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(settings.http_listen.port(), 9000);
    }

    #[test]
    fn anonymous_on_the_network_is_refused_with_a_hint() {
        let mut args = args();
        args.listen = Some("0.0.0.0:1883".parse().unwrap());
        let err = Settings::from_parts(FileConfig::default(), &args, false).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("allow_anonymous"), "{text}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<FileConfig>("[brokr]\nlisten = \"127.0.0.1:1\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
