//! Starting a broker under test as a child process on a spare 127.0.0.1 port, waiting for it to
//! accept MQTT sessions, and reading its resident memory.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::mqtt::MqttClient;
use crate::{BenchError, BrokerUnderTest};

/// How long a broker may take from spawn to its first CONNACK.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Limit for one readiness connection attempt.
const READY_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Spawn attempts: the spare port is free when picked but another process may take it before
/// the broker binds it, so a broker that exits before it is ready is started again.
const SPAWN_ATTEMPTS: usize = 3;
/// Name of the file in the data directory that receives the broker's stdout and stderr.
const LOG_FILE: &str = "broker.log";
/// How much of the broker log an error message quotes.
const LOG_TAIL_BYTES: usize = 2_000;

/// A broker child process that is accepting connections. Dropping it kills the process
/// (`kill_on_drop`) and then removes its data directory.
#[derive(Debug)]
pub(crate) struct RunningBroker {
    /// Display name, from [`BrokerUnderTest::name`].
    pub(crate) name: String,
    /// The MQTT listener, always on 127.0.0.1.
    pub(crate) addr: SocketAddr,
    /// Process id, for `/proc/{pid}/status`.
    pub(crate) pid: u32,
    /// The child; declared before `data_dir` so it is killed before its files are removed.
    _child: Child,
    /// `{data_dir}`: config files, the broker's own data and its log.
    _data_dir: tempfile::TempDir,
}

impl RunningBroker {
    /// Spawns `broker` and waits until it completes an MQTT handshake.
    pub(crate) async fn start(broker: &BrokerUnderTest) -> Result<Self, BenchError> {
        let mut attempt = 1;
        loop {
            match Self::start_once(broker).await {
                Err(BenchError::BrokerExited { .. }) if attempt < SPAWN_ATTEMPTS => attempt += 1,
                result => return result,
            }
        }
    }

    async fn start_once(broker: &BrokerUnderTest) -> Result<Self, BenchError> {
        let port = spare_port().map_err(BenchError::Port)?;
        let data_dir = tempfile::Builder::new()
            .prefix("uns-bench-")
            .tempdir()
            .map_err(BenchError::DataDir)?;
        let substitute = |text: &str| {
            text.replace("{port}", &port.to_string())
                .replace("{data_dir}", &data_dir.path().to_string_lossy())
        };
        for (file_name, contents) in &broker.files {
            std::fs::write(data_dir.path().join(file_name), substitute(contents))
                .map_err(BenchError::DataDir)?;
        }
        let log_path = data_dir.path().join(LOG_FILE);
        let log = std::fs::File::create(&log_path).map_err(BenchError::DataDir)?;
        let log_for_stderr = log.try_clone().map_err(BenchError::DataDir)?;
        let mut child = Command::new(&broker.program)
            .args(broker.args.iter().map(|arg| substitute(arg)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BenchError::Spawn {
                broker: broker.name.clone(),
                program: broker.program.clone(),
                source,
            })?;
        let pid = child.id().ok_or_else(|| BenchError::BrokerExited {
            broker: broker.name.clone(),
            status: "exited immediately".to_owned(),
            log: log_tail(&log_path),
        })?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        wait_ready(&broker.name, &mut child, addr, &log_path).await?;
        Ok(Self {
            name: broker.name.clone(),
            addr,
            pid,
            _child: child,
            _data_dir: data_dir,
        })
    }

    /// Resident set size of the broker process in bytes (`VmRSS` in `/proc/{pid}/status`).
    pub(crate) fn rss_bytes(&self) -> Result<u64, BenchError> {
        let path = PathBuf::from(format!("/proc/{}/status", self.pid));
        let status = std::fs::read_to_string(&path).map_err(|source| BenchError::Rss {
            broker: self.name.clone(),
            detail: source.to_string(),
        })?;
        parse_vm_rss(&status).ok_or_else(|| BenchError::Rss {
            broker: self.name.clone(),
            detail: format!("no VmRSS line in {}", path.display()),
        })
    }
}

/// Extracts `VmRSS` (reported in kB) from a `/proc/{pid}/status` text, in bytes.
pub(crate) fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?;
    let mut words = line.split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next()? {
        "kB" => Some(value * 1024),
        _ => None,
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn spare_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Polls `addr` with MQTT handshakes until one succeeds, the child exits, or
/// [`READY_TIMEOUT`] passes. The retry delay grows from 10 ms to 200 ms: it is a poll
/// interval, not a wait for something.
async fn wait_ready(
    name: &str,
    child: &mut Child,
    addr: SocketAddr,
    log_path: &Path,
) -> Result<(), BenchError> {
    let started = Instant::now();
    let deadline = started + READY_TIMEOUT;
    let mut delay = Duration::from_millis(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(BenchError::BrokerExited {
                broker: name.to_owned(),
                status: status.to_string(),
                log: log_tail(log_path),
            });
        }
        let last_error =
            match MqttClient::connect(addr, "uns-bench-ready", READY_ATTEMPT_TIMEOUT).await {
                Ok(client) => {
                    client.disconnect().await;
                    return Ok(());
                }
                Err(error) => error,
            };
        if Instant::now() + delay > deadline {
            return Err(BenchError::NotReady {
                broker: name.to_owned(),
                waited: started.elapsed(),
                last_error,
                log: log_tail(log_path),
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

/// The last [`LOG_TAIL_BYTES`] of the broker log, for error messages.
fn log_tail(log_path: &Path) -> String {
    let text = std::fs::read(log_path).unwrap_or_default();
    let tail = &text[text.len().saturating_sub(LOG_TAIL_BYTES)..];
    String::from_utf8_lossy(tail).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let check = |status: &str, expected: Option<u64>| {
            assert_eq!(parse_vm_rss(status), expected, "status {status:?}");
        };
        check(
            "Name:\tmosquitto\nVmRSS:\t    6144 kB\nRssAnon: 1 kB\n",
            Some(6144 * 1024),
        );
        check("VmRSS:\t0 kB", Some(0));
        check("VmHWM:\t10 kB\n", None);
        check("VmRSS:\tlots kB\n", None);
        check("VmRSS:\t10 MB\n", None);
        check("VmRSS:\t10\n", None);
    }

    #[test]
    fn own_process_rss_is_positive() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(parse_vm_rss(&status).unwrap() > 0);
    }
}
