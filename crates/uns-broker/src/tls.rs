//! MQTT over TLS: a rustls listener in front of the plain MQTT listener.
//!
//! rmqtt 0.24 has TLS listeners of its own behind its `tls` feature, but that feature builds
//! rustls with the aws-lc-rs provider (a C library compiled from source) on Linux. We terminate
//! TLS here instead, with tokio-rustls and the ring provider, and relay each decrypted
//! connection over loopback to the plain MQTT listener: the broker sees exactly the client's
//! MQTT bytes, so authentication, roles, client-id reservation and topic limits apply as on the
//! plain port. The broker sees the relay's loopback address as the client's address.
//!
//! Tasks: one accept loop, which owns every connection's relay task (a `JoinSet`); aborting it
//! (on shutdown) closes the listening socket and every TLS connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::BrokerError;

/// A running TLS listener.
pub(crate) struct TlsListener {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TlsListener {
    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the listening socket and every TLS connection.
    pub(crate) async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The rustls server config from a PEM certificate chain and a PEM private key.
pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, BrokerError> {
    let bad = |path: &Path, reason: String| BrokerError::Tls {
        path: path.to_owned(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(cert, "no certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(certs, key_der)
        })
        .map_err(|e| {
            bad(
                key,
                format!("certificate and key do not make a TLS config: {e}"),
            )
        })?;
    Ok(Arc::new(config))
}

/// Binds `listen` and relays each TLS connection to the plain MQTT listener at `upstream`.
/// A client has `handshake_timeout` to complete the TLS handshake.
pub(crate) async fn start(
    listen: SocketAddr,
    config: Arc<ServerConfig>,
    upstream: SocketAddr,
    handshake_timeout: Duration,
) -> Result<TlsListener, BrokerError> {
    let bind_error = |source: std::io::Error| BrokerError::Bind {
        what: "TLS",
        addr: listen,
        source: source.into(),
    };
    let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let upstream = loopback_if_unspecified(upstream);
    let acceptor = TlsAcceptor::from(config);
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        connections.spawn(relay(tcp, peer, acceptor.clone(), upstream, handshake_timeout));
                    }
                    Err(e) => {
                        tracing::warn!(cause = %e, "accepting a TLS connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next() => {}
            }
        }
    });
    tracing::info!(%addr, "MQTT over TLS listening");
    Ok(TlsListener { addr, task })
}

/// One connection: the TLS handshake, then bytes both ways until either side closes.
async fn relay(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    upstream: SocketAddr,
    handshake_timeout: Duration,
) {
    let _ = tcp.set_nodelay(true);
    let mut tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%peer, cause = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let mut plain = match TcpStream::connect(upstream).await {
        Ok(plain) => plain,
        Err(e) => {
            tracing::warn!(%peer, cause = %e, "relaying TLS to the MQTT listener");
            return;
        }
    };
    let _ = plain.set_nodelay(true);
    if let Err(e) = tokio::io::copy_bidirectional(&mut tls, &mut plain).await {
        tracing::debug!(%peer, cause = %e, "TLS connection ended");
    }
}

fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}
