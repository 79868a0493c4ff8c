//! End-to-end test helpers: start the real `uns` binary on port 0 and find its addresses,
//! run peers we did not write (Python paho-mqtt in its own venv, Debian's mosquitto), wait
//! for conditions with deadlines, and read HTTP endpoints.
//!
//! Nothing here sleeps to "wait for" something: every wait polls a condition and fails with a
//! message saying what did not happen.
#![allow(clippy::print_stderr, reason = "test helpers explain what they set up")]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use tokio::process::{Child, Command};

/// The addresses a `uns` process reports in its `--ready-file`.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Addresses {
    /// MQTT (3.1.1 and 5), when the process runs the embedded broker.
    pub mqtt: Option<SocketAddr>,
    /// Websockets, when enabled.
    pub ws: Option<SocketAddr>,
    /// HTTP /healthz and /metrics.
    pub http: SocketAddr,
}

/// The workspace's target directory (where cargo put this test binary).
pub fn target_dir() -> PathBuf {
    // The test binary lives in target/<profile>/deps/.
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// The workspace root.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Path of the `uns` binary, built once per test run (debug profile) so the tests always
/// exercise the current source.
pub fn uns_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let status = std::process::Command::new(cargo)
                .args(["build", "--quiet", "-p", "uns-cli", "--bin", "uns"])
                .current_dir(workspace_dir())
                .status()
                .map_err(|err| format!("running cargo build: {err}"))?;
            if !status.success() {
                return Err(format!("cargo build -p uns-cli failed: {status}"));
            }
            let path = target_dir().join("debug").join("uns");
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!("{} missing after cargo build", path.display()))
            }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A running `uns` process (killed on drop).
pub struct UnsProcess {
    child: Child,
    /// Where it listens.
    pub addrs: Addresses,
    /// Its data directory.
    pub data_dir: PathBuf,
    log: PathBuf,
}

impl UnsProcess {
    /// Starts `uns <subcommand>` (`up` or `broker`) with every listener on 127.0.0.1 port 0
    /// and the given data directory, plus `extra` arguments, and waits (at most 30 s) until it
    /// is listening.
    pub async fn start(subcommand: &str, data_dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let mut args = vec!["--listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Self::start_service(subcommand, data_dir, &args).await
    }

    /// Starts `uns <subcommand>` with its HTTP endpoint on port 0, the given data directory and
    /// `extra` arguments (for a standalone service: `--broker ...`), and waits until it is up.
    pub async fn start_service(
        subcommand: &str,
        data_dir: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let binary = uns_binary()?;
        std::fs::create_dir_all(data_dir)?;
        let ready = data_dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let log = data_dir.join(format!("{subcommand}.log"));
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(&binary)
            .arg(subcommand)
            .args(["--http-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--ready-file")
            .arg(&ready)
            .args(extra)
            .env("RUST_LOG", "info,rmqtt=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        let mut process = Self {
            child,
            addrs: Addresses {
                mqtt: None,
                ws: None,
                http: SocketAddr::from(([127, 0, 0, 1], 0)),
            },
            data_dir: data_dir.to_path_buf(),
            log,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && let Ok(addrs) = serde_json::from_str::<Addresses>(&text)
            {
                process.addrs = addrs;
                return Ok(process);
            }
            if let Some(status) = process.child.try_wait()? {
                bail!(
                    "uns {subcommand} exited with {status} before listening:\n{}",
                    process.log_tail()
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "uns {subcommand} not listening within 30 s:\n{}",
                    process.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The embedded broker's MQTT address (for `up` and `broker`).
    pub fn mqtt(&self) -> SocketAddr {
        self.addrs
            .mqtt
            .unwrap_or_else(|| panic!("this uns process runs no broker:\n{}", self.log_tail()))
    }

    /// The last lines of the process's log (stderr), for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGTERM (what `docker compose stop` sends).
    pub fn terminate(&self) -> anyhow::Result<()> {
        self.signal(nix::sys::signal::Signal::SIGTERM)
    }

    /// Sends SIGKILL: an abrupt death, no clean-up.
    pub fn kill(&self) -> anyhow::Result<()> {
        self.signal(nix::sys::signal::Signal::SIGKILL)
    }

    fn signal(&self, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
        let pid = self.pid().context("process already reaped")?;
        let pid = i32::try_from(pid).context("pid out of range")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)?;
        Ok(())
    }

    /// Waits for the process to exit, at most `timeout`.
    pub async fn wait_exit(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => bail!("still running after {timeout:?}:\n{}", self.log_tail()),
        }
    }
}

/// Polls `check` until it returns `Some`, at most `timeout`; fails naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `GET http://{addr}{path}`: status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut response = agent
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string()?;
        Ok((status, body))
    })
    .await?
}

/// A Python interpreter in a venv of its own under `target/peers/{name}`, with the packages in
/// `tests/peers/{requirements}` installed (from PyPI, once; later runs reuse it).
pub fn python_peer(name: &str, requirements: &str) -> anyhow::Result<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let venv = target_dir().join("peers").join(name);
    let python = venv.join("bin").join("python");
    let marker = venv.join(".installed");
    let requirements = workspace_dir().join("tests/peers").join(requirements);
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) && python.is_file()
    {
        return Ok(python);
    }
    eprintln!(
        "creating Python venv {} ({})",
        venv.display(),
        wanted.trim()
    );
    let run = |program: &Path, args: &[&str]| -> anyhow::Result<()> {
        let output = std::process::Command::new(program)
            .args(args)
            .output()
            .with_context(|| format!("running {}", program.display()))?;
        if !output.status.success() {
            bail!(
                "{} {args:?} failed: {}",
                program.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    };
    let venv_text = venv.to_string_lossy().into_owned();
    run(Path::new("python3"), &["-m", "venv", "--clear", &venv_text])?;
    let requirements_text = requirements.to_string_lossy().into_owned();
    run(
        &python,
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            &requirements_text,
        ],
    )?;
    std::fs::write(&marker, wanted)?;
    Ok(python)
}

/// Runs `tests/peers/{script}` with `python` and `args`; returns (exit success, stdout, stderr).
pub async fn run_peer(
    python: &Path,
    script: &str,
    args: &[String],
) -> anyhow::Result<(bool, String, String)> {
    let script = workspace_dir().join("tests/peers").join(script);
    let output = Command::new(python)
        .arg(&script)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// Debian's mosquitto, started on a spare loopback port as an *external* broker (killed on drop).
pub struct Mosquitto {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// Where Debian installs mosquitto.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

impl Mosquitto {
    /// Starts mosquitto (no persistence, anonymous on loopback) on a spare port, or on `port`.
    pub async fn start(port: Option<u16>) -> anyhow::Result<Self> {
        if !Path::new(MOSQUITTO).is_file() {
            bail!("{MOSQUITTO} is missing: apt-get install mosquitto (.ci/run does)");
        }
        let port = match port {
            Some(port) => port,
            None => spare_port()?,
        };
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
            ),
        )?;
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawning mosquitto")?;
        eventually(
            "mosquitto to accept connections",
            Duration::from_secs(10),
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await?;
        Ok(Self {
            child,
            port,
            _dir: dir,
        })
    }

    /// Kills it (SIGKILL) and waits until it is gone.
    pub async fn kill(mut self) -> anyhow::Result<u16> {
        self.child.kill().await?;
        Ok(self.port)
    }
}

/// A loopback port that was free a moment ago.
pub fn spare_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A plain MQTT 3.1.1 subscriber (rumqttc) whose received publishes arrive on a channel.
pub struct Subscriber {
    /// Received `(topic, payload, retain)`.
    pub messages: tokio::sync::mpsc::UnboundedReceiver<(String, bytes::Bytes, bool)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    /// Connects to `addr` and subscribes to `filters` at QoS 1.
    pub async fn connect(addr: SocketAddr, filters: &[&str]) -> anyhow::Result<Self> {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let id = format!("e2e-sub-{}", spare_port()?);
        let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
        let (client, mut event_loop) = AsyncClient::new(options, 100);
        for filter in filters {
            client.subscribe(*filter, QoS::AtLeastOnce).await?;
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let _client = client;
            let mut connected_tx = Some(connected_tx);
            loop {
                match event_loop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(ready) = connected_tx.take() {
                            let _ = ready.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let _ = tx.send((publish.topic, publish.payload, publish.retain));
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), connected_rx)
            .await
            .context("no SUBACK within 10 s")?
            .context("subscriber connection failed")?;
        Ok(Self { messages: rx, task })
    }

    /// Waits (at most `timeout`) for a message on `topic` whose payload satisfies `accept`.
    pub async fn wait_for(
        &mut self,
        topic: &str,
        timeout: Duration,
        mut accept: impl FnMut(&[u8]) -> bool,
    ) -> anyhow::Result<bytes::Bytes> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(remaining, self.messages.recv()).await {
                Ok(Some((got, payload, _))) if got == topic && accept(&payload) => {
                    return Ok(payload);
                }
                Ok(Some(_)) => {}
                Ok(None) => bail!("subscriber disconnected while waiting for {topic}"),
                Err(_) => bail!("no matching message on {topic} within {timeout:?}"),
            }
        }
    }
}
