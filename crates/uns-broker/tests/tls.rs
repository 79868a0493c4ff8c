//! MQTT over TLS over real sockets: a certificate made by rcgen for 127.0.0.1, a client that
//! trusts it (tokio-rustls, MQTT 3.1.1 packets written by hand) and one that trusts another
//! certificate; accounts and roles apply on the TLS port as on the plain one.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use uns_broker::{BrokerConfig, Role, Secret, User};

type Result<T = ()> = anyhow::Result<T>;

const DEADLINE: Duration = Duration::from_secs(20);

/// A self-signed certificate for 127.0.0.1: (certificate PEM, key PEM, certificate DER).
fn certificate() -> Result<(String, String, CertificateDer<'static>)> {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    Ok((
        certified.cert.pem(),
        certified.signing_key.serialize_pem(),
        certified.cert.der().clone(),
    ))
}

fn connector(trusted: CertificateDer<'static>) -> Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    roots.add(trusted)?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

fn string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&u16::try_from(text.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// A packet with a one-byte remaining length (every packet here is shorter than 128 bytes).
fn packet(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header, u8::try_from(body.len()).unwrap_or(127)];
    out.extend_from_slice(body);
    out
}

/// MQTT 3.1.1 CONNECT with username and password, clean session.
fn connect(client_id: &str, username: &str, password: &str) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, "MQTT");
    body.extend_from_slice(&[4, 0xC2, 0, 60]);
    string(&mut body, client_id);
    string(&mut body, username);
    string(&mut body, password);
    packet(0x10, &body)
}

/// MQTT 3.1.1 PUBLISH, QoS 1, retained, packet id 1.
fn publish_retained(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, topic);
    body.extend_from_slice(&[0, 1]);
    body.extend_from_slice(payload);
    packet(0x33, &body)
}

fn users() -> Vec<User> {
    vec![User {
        role: Some(Role::Admin),
        ..User::new("admin", Secret::Password("admin-pw".into()))
    }]
}

async fn start(
    dir: &tempfile::TempDir,
) -> Result<(uns_broker::BrokerHandle, CertificateDer<'static>)> {
    let (cert_pem, key_pem, cert_der) = certificate()?;
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, cert_pem)?;
    std::fs::write(&key, key_pem)?;
    let broker = uns_broker::start(BrokerConfig {
        listen: "127.0.0.1:0".parse()?,
        ws_listen: None,
        tls_listen: Some("127.0.0.1:0".parse()?),
        tls_cert: Some(cert),
        tls_key: Some(key),
        data_dir: dir.path().to_owned(),
        users: users(),
        ..BrokerConfig::default()
    })
    .await?;
    Ok((broker, cert_der))
}

/// Over TLS: a wrong password gets CONNACK 4 (bad user name or password), the admin's retained PUBLISH is acknowledged
/// and a plain-port subscriber receives it.
#[tokio::test]
async fn mqtt_over_tls_with_a_trusted_certificate() -> Result {
    let dir = tempfile::tempdir()?;
    let (broker, cert) = start(&dir).await?;
    let tls_addr = broker.tls_addr().context("TLS listener")?;
    let connector = connector(cert)?;
    let server = ServerName::try_from("127.0.0.1")?;

    let tcp = tokio::net::TcpStream::connect(tls_addr).await?;
    let mut tls = timeout(DEADLINE, connector.connect(server.clone(), tcp)).await??;
    tls.write_all(&connect("tls-1", "admin", "wrong")).await?;
    let mut connack = [0u8; 4];
    timeout(DEADLINE, tls.read_exact(&mut connack)).await??;
    ensure!(
        connack == [0x20, 2, 0, 4],
        "wrong password over TLS: {connack:?}"
    );

    let tcp = tokio::net::TcpStream::connect(tls_addr).await?;
    let mut tls = timeout(DEADLINE, connector.connect(server, tcp)).await??;
    tls.write_all(&connect("tls-2", "admin", "admin-pw"))
        .await?;
    timeout(DEADLINE, tls.read_exact(&mut connack)).await??;
    ensure!(connack == [0x20, 2, 0, 0], "CONNACK over TLS: {connack:?}");
    tls.write_all(&publish_retained("tls/test", b"over tls"))
        .await?;
    let mut puback = [0u8; 4];
    timeout(DEADLINE, tls.read_exact(&mut puback)).await??;
    ensure!(puback == [0x40, 2, 0, 1], "PUBACK over TLS: {puback:?}");

    let mut options = rumqttc::MqttOptions::new("plain", "127.0.0.1", broker.mqtt_addr().port());
    options.set_credentials("admin", "admin-pw");
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    client
        .subscribe("tls/test", rumqttc::QoS::AtLeastOnce)
        .await?;
    let payload = timeout(DEADLINE, async {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)) =
                eventloop.poll().await?
            {
                return Ok::<_, anyhow::Error>(publish.payload);
            }
        }
    })
    .await??;
    ensure!(payload.as_ref() == b"over tls", "{payload:?}");
    broker.shutdown().await?;
    Ok(())
}

/// A client that trusts another certificate fails the handshake; the plain port is unchanged.
#[tokio::test]
async fn a_client_trusting_another_certificate_is_refused() -> Result {
    let dir = tempfile::tempdir()?;
    let (broker, _cert) = start(&dir).await?;
    let (_, _, other) = certificate()?;
    let tcp = tokio::net::TcpStream::connect(broker.tls_addr().context("TLS")?).await?;
    match timeout(
        DEADLINE,
        connector(other)?.connect(ServerName::try_from("127.0.0.1")?, tcp),
    )
    .await?
    {
        Err(e) => ensure!(
            e.to_string().contains("invalid peer certificate"),
            "handshake error: {e}"
        ),
        Ok(_) => bail!("handshake succeeded with an untrusted certificate"),
    }
    broker.shutdown().await?;
    Ok(())
}

/// A missing key file fails the start with the path in the error, before anything listens.
#[tokio::test]
async fn a_missing_key_file_fails_the_start() -> Result {
    let dir = tempfile::tempdir()?;
    let (cert_pem, _, _) = certificate()?;
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, cert_pem)?;
    let result = uns_broker::start(BrokerConfig {
        listen: "127.0.0.1:0".parse()?,
        ws_listen: None,
        tls_listen: Some("127.0.0.1:0".parse()?),
        tls_cert: Some(cert),
        tls_key: Some(dir.path().join("missing.pem")),
        data_dir: dir.path().to_owned(),
        ..BrokerConfig::default()
    })
    .await;
    match result {
        Err(uns_broker::BrokerError::Tls { path, .. }) => {
            ensure!(path.ends_with("missing.pem"), "{}", path.display());
        }
        other => bail!("expected a TLS error, got {other:?}"),
    }
    Ok(())
}
