//! What access control and TLS cost: connects per second and publish throughput of the embedded
//! broker, in this process, with and without accounts and over the TLS listener.
//!
//! ```text
//! cargo run --release -p uns-broker --example access_cost -- [--connects 2000] [--messages 200000] [--rounds 3]
//! ```
//!
//! Each figure gets a fresh broker (data in a temporary directory) and is run `--rounds` times;
//! the report prints the median of the rounds and their spread (min..max) as a Markdown table.
//!
//! - **connect**: sequential MQTT 3.1.1 CONNECT → CONNACK → DISCONNECT over new TCP (or TLS)
//!   connections: anonymous without accounts, a `service` account with a plain password, and
//!   the same account with an Argon2id hash (the argon2 crate's defaults: m = 19 MiB, t = 2;
//!   at most 200 connects per round).
//! - **publish**: one QoS 0 publisher floods `--messages` 64-byte messages on one topic that
//!   one subscriber receives; messages per second from the first write to the last receipt (a
//!   round whose subscriber lost messages says so). Without accounts every session is an
//!   admin and the broker skips the checks; with accounts each PUBLISH is checked against the
//!   publisher's role: the `scada-bridge` service account on a `_tag` topic it owns (the owner
//!   column parses the UNS topic), or an admin (the check returns at once).
//! - **TLS**: the same publish flood without accounts, the publisher and subscriber on the TLS
//!   listener (rustls, ring, a P-256 certificate made by rcgen) against both on the plain one.
//!
//! The hand-written packets are the ones `tests/tls.rs` uses; nothing here is a test.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use uns_broker::{BrokerConfig, Role, Secret, User};

const TOPIC: &str = "uns/v1/acme/berlin/packaging/line-1/filler/_tag/temperature";
const PAYLOAD: [u8; 64] = [b'x'; 64];
const PASSWORD: &str = "bench-password";
/// Publishes written per `write_all`.
const BATCH: usize = 500;
/// A flood ends when the subscriber got every message or nothing arrived for this long.
const IDLE: Duration = Duration::from_secs(3);

/// How sessions log in and where they connect.
#[derive(Clone, Copy)]
enum Login {
    Anonymous,
    Account(&'static str),
}

struct Setup {
    broker: uns_broker::BrokerHandle,
    _dir: tempfile::TempDir,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Setup {
    async fn start(users: Vec<User>, tls: bool) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut config = BrokerConfig {
            listen: "127.0.0.1:0".parse()?,
            ws_listen: None,
            data_dir: dir.path().to_owned(),
            users,
            ..BrokerConfig::default()
        };
        let mut connector = None;
        if tls {
            let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
            let cert = dir.path().join("cert.pem");
            let key = dir.path().join("key.pem");
            std::fs::write(&cert, certified.cert.pem())?;
            std::fs::write(&key, certified.signing_key.serialize_pem())?;
            config.tls_listen = Some("127.0.0.1:0".parse()?);
            config.tls_cert = Some(cert);
            config.tls_key = Some(key);
            connector = Some((
                tls_connector(certified.cert.der().clone())?,
                ServerName::try_from("127.0.0.1")?,
            ));
        }
        let broker = uns_broker::start(config).await?;
        Ok(Self {
            broker,
            _dir: dir,
            tls: connector,
        })
    }

    async fn open(&self, client_id: &str, login: Login) -> anyhow::Result<Box<dyn StreamBox>> {
        let mut stream: Box<dyn StreamBox> = match &self.tls {
            Some((connector, name)) => {
                let addr = self.broker.tls_addr().context("TLS listener")?;
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                Box::new(connector.connect(name.clone(), tcp).await?)
            }
            None => {
                let tcp = TcpStream::connect(self.broker.mqtt_addr()).await?;
                tcp.set_nodelay(true)?;
                Box::new(tcp)
            }
        };
        stream.write_all(&connect_packet(client_id, login)).await?;
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack).await?;
        ensure!(
            connack == [0x20, 2, 0, 0],
            "CONNACK {connack:?} for {client_id}"
        );
        Ok(stream)
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.broker.shutdown().await?;
        Ok(())
    }
}

/// A plain or TLS connection.
trait StreamBox: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> StreamBox for T {}

fn tls_connector(trusted: CertificateDer<'static>) -> anyhow::Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    roots.add(trusted)?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

fn string(out: &mut Vec<u8>, text: &[u8]) {
    out.extend_from_slice(&u16::try_from(text.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(text);
}

fn remaining_length(mut len: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            return;
        }
    }
}

fn packet(header: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(header);
    remaining_length(body.len(), out);
    out.extend_from_slice(body);
}

fn connect_packet(client_id: &str, login: Login) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    let flags = match login {
        Login::Anonymous => 0x02,
        Login::Account(_) => 0xC2,
    };
    body.extend_from_slice(&[4, flags, 0, 60]);
    string(&mut body, client_id.as_bytes());
    if let Login::Account(username) = login {
        string(&mut body, username.as_bytes());
        string(&mut body, PASSWORD.as_bytes());
    }
    let mut out = Vec::new();
    packet(0x10, &body, &mut out);
    out
}

fn publish_packet(out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(TOPIC.len() + PAYLOAD.len() + 2);
    string(&mut body, TOPIC.as_bytes());
    body.extend_from_slice(&PAYLOAD);
    packet(0x30, &body, out);
}

fn account(username: &str, role: Role, hashed: bool) -> anyhow::Result<User> {
    let secret = if hashed {
        use argon2::PasswordHasher;
        let salt = argon2::password_hash::SaltString::from_b64("YmVuY2hzYWx0YmVuY2g")
            .map_err(|err| anyhow::anyhow!("salt: {err}"))?;
        let hash = argon2::Argon2::default()
            .hash_password(PASSWORD.as_bytes(), &salt)
            .map_err(|err| anyhow::anyhow!("hash: {err}"))?;
        Secret::PasswordHash(hash.to_string())
    } else {
        Secret::Password(PASSWORD.to_owned())
    };
    Ok(User {
        role: Some(role),
        ..User::new(username, secret)
    })
}

/// Connects per second, `n` sequential sessions.
async fn connects(setup: &Setup, login: Login, n: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    for idx in 0..n {
        let mut stream = setup.open(&format!("bench-c{idx}"), login).await?;
        stream.write_all(&[0xE0, 0]).await?;
        // Wait for the broker to close, so sessions do not pile up.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(IDLE, stream.read_to_end(&mut rest)).await;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Messages per second of one publisher → one subscriber, and how many arrived.
async fn flood(
    setup: &Setup,
    publisher: Login,
    subscriber: Login,
    n: usize,
) -> anyhow::Result<(f64, usize)> {
    let mut sub = setup.open("bench-sub", subscriber).await?;
    let mut body = vec![0, 1];
    string(&mut body, TOPIC.as_bytes());
    body.push(0);
    let mut subscribe = Vec::new();
    packet(0x82, &body, &mut subscribe);
    sub.write_all(&subscribe).await?;
    let mut suback = [0u8; 5];
    sub.read_exact(&mut suback).await?;
    ensure!(suback[4] == 0, "SUBACK {suback:?}");
    let mut publisher = setup.open("bench-pub", publisher).await?;

    let receiver = tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 16];
        let mut pending: Vec<u8> = Vec::new();
        let mut received = 0usize;
        let mut last = Instant::now();
        while received < n {
            let read = match tokio::time::timeout(IDLE, sub.read(&mut buf)).await {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(read)) => read,
                Ok(Err(err)) => return Err(anyhow::Error::from(err)),
            };
            pending.extend_from_slice(&buf[..read]);
            let mut at = 0;
            while let Some((header, end)) = frame(&pending[at..]) {
                if header >> 4 == 3 {
                    received += 1;
                    last = Instant::now();
                }
                at += end;
            }
            pending.drain(..at);
        }
        Ok((received, last))
    });

    let mut batch = Vec::new();
    for _ in 0..BATCH {
        publish_packet(&mut batch);
    }
    let started = Instant::now();
    for _ in 0..n / BATCH {
        publisher.write_all(&batch).await?;
    }
    publisher.flush().await?;
    let (received, last) = receiver.await??;
    let elapsed = last.duration_since(started).as_secs_f64();
    Ok((received as f64 / elapsed, received))
}

/// The header byte and the length of the first whole packet in `buf`.
fn frame(buf: &[u8]) -> Option<(u8, usize)> {
    let header = *buf.first()?;
    let mut len = 0usize;
    let mut shift = 0;
    for (idx, byte) in buf.iter().enumerate().skip(1).take(4) {
        len |= usize::from(byte & 0x7F) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            let end = idx + 1 + len;
            return (buf.len() >= end).then_some((header, end));
        }
    }
    None
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn row(name: &str, values: &mut [f64], unit: &str, note: &str) -> String {
    let mid = median(values);
    let min = values.first().copied().unwrap_or_default();
    let max = values.last().copied().unwrap_or_default();
    format!("| {name} | {mid:.0} {unit} | {min:.0}..{max:.0} | {note} |")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut n_connects = 2000usize;
    let mut n_messages = 200_000usize;
    let mut rounds = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value: usize = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?
            .parse()
            .with_context(|| format!("{flag} needs a number"))?;
        match flag.as_str() {
            "--connects" => n_connects = value,
            "--messages" => n_messages = value.max(BATCH) / BATCH * BATCH,
            "--rounds" => rounds = value.max(1),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let service = || account("scada-bridge", Role::Service, false);
    let mut lines = vec![
        format!(
            "connects: {n_connects} sequential; publish: {n_messages} × 64 B QoS 0, 1 → 1; {rounds} rounds, median (min..max)"
        ),
        String::new(),
        "| figure | median | spread | note |".to_owned(),
        "|---|---|---|---|".to_owned(),
    ];

    let cases: [(&str, Vec<User>, Login); 3] = [
        ("connect, no accounts (anonymous)", vec![], Login::Anonymous),
        (
            "connect, service account, plain password",
            vec![service()?],
            Login::Account("scada-bridge"),
        ),
        (
            "connect, service account, Argon2id hash",
            vec![account("scada-bridge", Role::Service, true)?],
            Login::Account("scada-bridge"),
        ),
    ];
    for (name, users, login) in cases {
        let mut values = Vec::new();
        // An Argon2 check takes tens of milliseconds by design: fewer rounds of it.
        let n = if name.contains("Argon2") {
            n_connects.min(200)
        } else {
            n_connects
        };
        for _ in 0..rounds {
            let setup = Setup::start(users.clone(), false).await?;
            values.push(connects(&setup, login, n).await?);
            setup.stop().await?;
        }
        lines.push(row(name, &mut values, "connects/s", ""));
    }

    let admin = || account("ops", Role::Admin, false);
    let floods: [(&str, Vec<User>, Login, Login, bool); 4] = [
        (
            "publish, no accounts (no checks)",
            vec![],
            Login::Anonymous,
            Login::Anonymous,
            false,
        ),
        (
            "publish, service account (owner-column check)",
            vec![service()?, admin()?],
            Login::Account("scada-bridge"),
            Login::Account("ops"),
            false,
        ),
        (
            "publish, admin account (check returns at once)",
            vec![admin()?],
            Login::Account("ops"),
            Login::Account("ops"),
            false,
        ),
        (
            "publish over TLS, no accounts",
            vec![],
            Login::Anonymous,
            Login::Anonymous,
            true,
        ),
    ];
    for (name, users, publisher, subscriber, tls) in floods {
        let mut values = Vec::new();
        let mut lost = 0usize;
        for _ in 0..rounds {
            let setup = Setup::start(users.clone(), tls).await?;
            let (rate, received) = flood(&setup, publisher, subscriber, n_messages).await?;
            lost = lost.max(n_messages - received);
            values.push(rate);
            setup.stop().await?;
        }
        let note = if lost > 0 {
            format!("lost up to {lost} (queue full)")
        } else {
            String::new()
        };
        lines.push(row(name, &mut values, "msg/s", &note));
    }
    let mut out = std::io::stdout().lock();
    for line in lines {
        std::io::Write::write_all(&mut out, format!("{line}\n").as_bytes())?;
    }
    Ok(())
}
