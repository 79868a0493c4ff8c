//! The connect timeout: a connection that has not sent its CONNECT within
//! `BrokerConfig::connect_timeout` is closed, on every listener.
//!
//! rmqtt 0.24 reads a new connection's first bytes (its protocol-version probe, `Dispatcher::
//! probe_version` in rmqtt-net) with no timeout: a socket that never sends anything is held
//! forever, with its file descriptor, and enough of them exhaust the process's descriptors so
//! that no client can connect. Its own `handshake_timeout` (which we set to the same value)
//! only starts after that probe, and the engine gives us no hook at accept time.
//!
//! So this watchdog looks at the process's own sockets (`/proc/self/fd`, Linux): every socket
//! accepted on one of our listeners is remembered when first seen; when it has not reached
//! rmqtt's `ClientConnect` hook (which records its peer address) within the timeout, it is
//! `shutdown(2)`. The engine's read then ends, and the engine closes the socket itself: the
//! watchdog never closes a descriptor it does not own. Before the shutdown the descriptor's
//! socket inode is checked again, so a descriptor number reused meanwhile is left alone (the
//! window between that check and the shutdown is one system call).
//!
//! Cost: one `readlink` per open descriptor per tick (a quarter of the timeout, at least
//! 250 ms), plus `getsockname`/`getpeername` once per new socket. Other operating systems:
//! no watchdog; only rmqtt's `handshake_timeout` applies.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};

/// A connection's peer address. rmqtt's `Id` carries the listener's configured address, not
/// the socket's own, so the peer alone identifies a connection; two live connections from the
/// same peer address to two of our listeners would only make one of them escape the timeout.
type AddrPair = SocketAddr;

/// Address pairs of connections whose CONNECT reached the engine, with when it did.
#[derive(Clone, Default)]
pub(crate) struct Connected(Arc<Mutex<HashMap<AddrPair, Instant>>>);

impl Connected {
    fn insert(&self, pair: AddrPair) {
        self.lock().insert(pair, Instant::now());
    }

    fn contains(&self, pair: &AddrPair) -> bool {
        self.lock().contains_key(pair)
    }

    /// Forgets pairs recorded before `before` whose socket is gone.
    fn prune(&self, live: &HashSet<AddrPair>, before: Instant) {
        self.lock()
            .retain(|pair, at| live.contains(pair) || *at >= before);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AddrPair, Instant>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Records every connection whose CONNECT was received.
pub(crate) struct ConnectSeen(pub(crate) Connected);

#[allow(elided_lifetimes_in_paths)]
#[async_trait]
impl Handler for ConnectSeen {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        if let Parameter::ClientConnect(connect_info) = param {
            let id = connect_info.id();
            if let Some(remote) = id.remote_addr {
                self.0.insert(remote);
            }
        }
        (true, acc)
    }
}

/// One accepted socket the watchdog knows, by socket inode.
struct Tracked {
    pair: Option<AddrPair>,
    first_seen: Instant,
    /// Connected, shut down, or not one of ours: nothing more to do.
    done: bool,
    seen_in: u64,
}

/// Scans the process's sockets until the task is aborted.
pub(crate) async fn run(listeners: Vec<SocketAddr>, timeout: Duration, connected: Connected) {
    let tick = (timeout / 4).max(Duration::from_millis(250));
    let state = Arc::new(Mutex::new((HashMap::<u64, Tracked>::new(), 0u64)));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let state = state.clone();
        let listeners = listeners.clone();
        let connected = connected.clone();
        let scan = tokio::task::spawn_blocking(move || {
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            let (tracked, generation) = &mut *state;
            *generation += 1;
            scan(&listeners, timeout, &connected, tracked, *generation)
        });
        match scan.await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(
                    closed = n,
                    timeout_ms = timeout.as_millis() as u64,
                    "closed connections that sent no CONNECT within connect_timeout"
                );
            }
            Err(e) => tracing::warn!(cause = %e, "connect-timeout scan failed"),
        }
    }
}

#[cfg(target_os = "linux")]
fn scan(
    listeners: &[SocketAddr],
    timeout: Duration,
    connected: &Connected,
    tracked: &mut HashMap<u64, Tracked>,
    generation: u64,
) -> usize {
    use nix::sys::socket::{Shutdown, SockaddrStorage, getpeername, getsockname, shutdown};

    let started = Instant::now();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut live = HashSet::new();
    let mut n_closed = 0;
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Some(inode) = socket_inode(fd) else {
            continue;
        };
        let entry = tracked.entry(inode).or_insert_with(|| {
            let pair = getsockname::<SockaddrStorage>(fd)
                .ok()
                .and_then(|a| to_std(&a))
                .filter(|local| is_ours(listeners, local))
                .and_then(|_| to_std(&getpeername::<SockaddrStorage>(fd).ok()?));
            Tracked {
                done: pair.is_none(),
                pair,
                first_seen: started,
                seen_in: generation,
            }
        });
        entry.seen_in = generation;
        let Some(pair) = entry.pair else { continue };
        live.insert(pair);
        if entry.done {
            continue;
        }
        if connected.contains(&pair) {
            entry.done = true;
        } else if started.duration_since(entry.first_seen) >= timeout
            && socket_inode(fd) == Some(inode)
        {
            let _ = shutdown(fd, Shutdown::Both);
            entry.done = true;
            n_closed += 1;
        }
    }
    tracked.retain(|_, t| t.seen_in == generation);
    // Pairs recorded during this scan may belong to sockets the directory listing missed.
    connected.prune(&live, started);
    n_closed
}

#[cfg(not(target_os = "linux"))]
fn scan(
    _listeners: &[SocketAddr],
    _timeout: Duration,
    _connected: &Connected,
    _tracked: &mut HashMap<u64, Tracked>,
    _generation: u64,
) -> usize {
    0
}

/// The socket inode behind descriptor `fd`, if it is a socket.
#[cfg(target_os = "linux")]
fn socket_inode(fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let link = link.to_str()?;
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(target_os = "linux")]
fn to_std(addr: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

/// Whether a socket bound to `local` was accepted by one of our listeners.
fn is_ours(listeners: &[SocketAddr], local: &SocketAddr) -> bool {
    listeners.iter().any(|listener| {
        listener.port() == local.port()
            && (listener.ip().is_unspecified() || listener.ip() == local.ip())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sockets_on_our_listeners_are_ours() {
        let ours: Vec<SocketAddr> = vec![
            "127.0.0.1:1883".parse().unwrap(),
            "0.0.0.0:8083".parse().unwrap(),
        ];
        assert!(is_ours(&ours, &"127.0.0.1:1883".parse().unwrap()));
        assert!(is_ours(&ours, &"10.0.0.5:8083".parse().unwrap()));
        assert!(!is_ours(&ours, &"127.0.0.2:1883".parse().unwrap()));
        assert!(!is_ours(&ours, &"127.0.0.1:50000".parse().unwrap()));
    }
}
