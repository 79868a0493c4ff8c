//! The measurements, each run against one broker address with the client in [`crate::mqtt`].
//!
//! Publishers flood, but never more than [`WINDOW`] messages ahead of what the subscriber has
//! received (an in-process counter): the figure is then the rate a broker sustains end to end,
//! not how fast it can grow a queue. A QoS 0 message the broker drops would hold the window
//! forever, so when the subscriber makes no progress for [`QUIET`] the outstanding messages are
//! written off as lost and counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::ClientError;
use crate::mqtt::{self, MqttClient, PUBACK, PUBLISH};

/// Payload size of every benchmark message.
pub(crate) const PAYLOAD_BYTES: usize = 64;
/// Most messages all publishers together may be ahead of the subscriber.
const WINDOW: u64 = 10_000;
/// Most unacknowledged QoS 1 PUBLISHes per publisher (rumqttc's default inflight).
const MAX_INFLIGHT: u64 = 100;
/// Messages a flooding publisher encodes into one write.
const BATCH: u64 = 32;
/// No progress for this long means the outstanding messages are lost (or the run is stuck).
const QUIET: Duration = Duration::from_secs(1);
/// Upper bound for draining the messages in flight after publishing stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// Limit for each CONNECT and SUBSCRIBE handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many connections the RSS figure opens at the same time.
const CONNECT_CONCURRENCY: usize = 50;
/// Upper bound on stored latency samples (memory guard for very long runs).
const MAX_LATENCY_SAMPLES: usize = 20_000_000;

/// Result of one flood run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Flow {
    /// Messages the publishers wrote.
    pub(crate) sent: u64,
    /// Messages the subscriber received.
    pub(crate) received: u64,
    /// From the first publish to the last message received.
    pub(crate) elapsed: Duration,
}

impl Flow {
    /// Adds another run of the same figure.
    pub(crate) fn merge(self, other: Self) -> Self {
        Self {
            sent: self.sent + other.sent,
            received: self.received + other.received,
            elapsed: self.elapsed + other.elapsed,
        }
    }

    /// Received messages per second.
    pub(crate) fn rate(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// Messages sent but never received.
    pub(crate) fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }
}

/// A counter that one task advances and others await.
#[derive(Debug, Default)]
struct Progress {
    /// Messages received (subscriber) or PUBACKs received (publisher).
    count: AtomicU64,
    /// When `count` last advanced, in nanoseconds since the run's epoch.
    last_ns: AtomicU64,
    /// Woken (all waiters) whenever `count` advances.
    advanced: Notify,
}

impl Progress {
    fn get(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    fn add(&self, n: u64, epoch: Instant) {
        self.last_ns.store(nanos_since(epoch), Ordering::Release);
        self.count.fetch_add(n, Ordering::AcqRel);
        self.advanced.notify_waiters();
    }

    /// Waits until `done(count)` holds. Returns `false` when the count stops advancing for
    /// `quiet`, or at `deadline`.
    async fn wait_for(
        &self,
        done: impl Fn(u64) -> bool,
        quiet: Duration,
        deadline: Instant,
    ) -> bool {
        loop {
            let advanced = self.advanced.notified();
            tokio::pin!(advanced);
            // Register before checking, so an advance between the check and the await is seen.
            advanced.as_mut().enable();
            if done(self.get()) {
                return true;
            }
            let until = (Instant::now() + quiet).min(deadline);
            if tokio::time::timeout_at(until, advanced).await.is_err() {
                return done(self.get());
            }
        }
    }
}

/// Nanoseconds since `epoch`; the payload timestamp clock. Every task of a run shares `epoch`,
/// so publisher and subscriber read the same monotonic clock.
fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// What the subscriber does with each payload.
trait PayloadSink: Send + 'static {
    fn on_payload(&mut self, payload: &[u8]);
}

/// Throughput runs only count messages.
impl PayloadSink for () {
    fn on_payload(&mut self, _payload: &[u8]) {}
}

/// Latency runs turn the send timestamp in the first 8 payload bytes into a sample.
#[derive(Debug)]
struct LatencySink {
    /// The run's clock origin, shared with the publisher.
    epoch: Instant,
    /// One-way latencies in nanoseconds, in arrival order.
    samples: Vec<u64>,
}

impl PayloadSink for LatencySink {
    fn on_payload(&mut self, payload: &[u8]) {
        let now = nanos_since(self.epoch);
        if let Some(stamp) = payload.first_chunk::<8>()
            && self.samples.len() < MAX_LATENCY_SAMPLES
        {
            self.samples
                .push(now.saturating_sub(u64::from_le_bytes(*stamp)));
        }
    }
}

/// Connects a subscriber and subscribes it to `filter`.
async fn subscriber(
    addr: SocketAddr,
    client_id: &str,
    filter: &str,
    qos: u8,
) -> Result<MqttClient, ClientError> {
    let mut client = MqttClient::connect(addr, client_id, HANDSHAKE_TIMEOUT).await?;
    client.subscribe(filter, qos, HANDSHAKE_TIMEOUT).await?;
    Ok(client)
}

/// Reads PUBLISHes until `stop` fires, acknowledging QoS 1 ones, advancing `progress` once
/// per read and handing each payload to `sink`, which it returns at the end.
async fn run_subscriber<S: PayloadSink>(
    mut client: MqttClient,
    progress: Arc<Progress>,
    epoch: Instant,
    mut stop: oneshot::Receiver<()>,
    mut sink: S,
) -> Result<S, ClientError> {
    let mut acks = Vec::with_capacity(4096);
    loop {
        let mut n_new = 0;
        while let Some(frame) = client.reader.try_frame()? {
            if frame.kind == PUBLISH {
                let publish = mqtt::parse_publish(&frame)?;
                if let Some(packet_id) = publish.packet_id {
                    mqtt::encode_puback(packet_id, &mut acks);
                }
                sink.on_payload(publish.payload);
                n_new += 1;
            }
        }
        if n_new > 0 {
            progress.add(n_new, epoch);
        }
        if !acks.is_empty() {
            client
                .writer
                .write_all(&acks)
                .await
                .map_err(|source| ClientError::Io {
                    step: "write PUBACK",
                    source,
                })?;
            acks.clear();
        }
        tokio::select! {
            biased;
            _ = &mut stop => {
                client.disconnect().await;
                return Ok(sink);
            }
            filled = client.reader.fill() => filled?,
        }
    }
}

/// Shared state of the publishers of one flood.
#[derive(Debug)]
struct Flood {
    /// Messages written by all publishers.
    sent: AtomicU64,
    /// Messages given up as lost, so they stop holding the window.
    written_off: AtomicU64,
    /// The subscriber's receive counter.
    received: Arc<Progress>,
    /// Publishing stops here.
    deadline: Instant,
    /// Shared clock origin.
    epoch: Instant,
    /// QoS of every PUBLISH.
    qos: u8,
}

impl Flood {
    /// Waits until the window has room. Returns `false` once the deadline has passed.
    async fn window_open(&self) -> bool {
        let open = |received: u64| {
            let sent = self.sent.load(Ordering::Acquire);
            sent.saturating_sub(received + self.written_off.load(Ordering::Acquire)) < WINDOW
        };
        loop {
            if Instant::now() >= self.deadline {
                return false;
            }
            if self.received.wait_for(open, QUIET, self.deadline).await {
                return true;
            }
            if Instant::now() < self.deadline {
                // No progress for QUIET: the outstanding messages were dropped by the broker.
                let outstanding = self
                    .sent
                    .load(Ordering::Acquire)
                    .saturating_sub(self.received.get());
                self.written_off.store(outstanding, Ordering::Release);
            }
        }
    }
}

/// One flooding publisher: writes batches on `topic` until the flood's deadline, keeping at
/// most [`MAX_INFLIGHT`] QoS 1 messages unacknowledged. Returns once every QoS 1 message is
/// acknowledged.
async fn run_publisher(
    mut client: MqttClient,
    topic: String,
    flood: Arc<Flood>,
) -> Result<(), ClientError> {
    let acked = Arc::new(Progress::default());
    // QoS 1 needs a reader for PUBACKs; the guard stops it on every way out of this function.
    let ack_reader = (flood.qos > 0).then(|| {
        AbortOnDrop(tokio::spawn(read_acks(
            client.reader,
            Arc::clone(&acked),
            flood.epoch,
        )))
    });
    let payload = [0u8; PAYLOAD_BYTES];
    let mut out = Vec::with_capacity(BATCH as usize * (PAYLOAD_BYTES + topic.len() + 8));
    let mut n_sent: u64 = 0;
    while flood.window_open().await {
        let mut n_batch = BATCH;
        if flood.qos > 0 {
            let room = |n_acked: u64| n_sent - n_acked < MAX_INFLIGHT;
            if !acked.wait_for(room, DRAIN_LIMIT, flood.deadline).await {
                if Instant::now() >= flood.deadline {
                    break;
                }
                return Err(ClientError::Timeout("PUBACK"));
            }
            n_batch = n_batch.min(MAX_INFLIGHT - (n_sent - acked.get()));
        }
        out.clear();
        for _ in 0..n_batch {
            n_sent += 1;
            // Packet ids cycle through 1..=65535; at most MAX_INFLIGHT are in use at once.
            let packet_id = u16::try_from(n_sent % 65_535 + 1).unwrap_or(1);
            mqtt::encode_publish(&topic, flood.qos, packet_id, &payload, &mut out);
        }
        flood.sent.fetch_add(n_batch, Ordering::AcqRel);
        client
            .writer
            .write_all(&out)
            .await
            .map_err(|source| ClientError::Io {
                step: "write PUBLISH",
                source,
            })?;
    }
    if let Some(_ack_reader) = ack_reader {
        let all_acked = acked
            .wait_for(
                |n_acked| n_acked >= n_sent,
                QUIET * 5,
                Instant::now() + DRAIN_LIMIT,
            )
            .await;
        if !all_acked {
            return Err(ClientError::Timeout("final PUBACKs"));
        }
    }
    Ok(())
}

/// Aborts a helper task when its owner goes away, including on early error returns.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Counts PUBACKs into `acked` until the connection fails or the task is aborted.
async fn read_acks(
    mut reader: mqtt::FrameReader,
    acked: Arc<Progress>,
    epoch: Instant,
) -> Result<(), ClientError> {
    loop {
        let mut n_new = 0;
        while let Some(frame) = reader.try_frame()? {
            if frame.kind == PUBACK {
                n_new += 1;
            }
        }
        if n_new > 0 {
            acked.add(n_new, epoch);
        }
        reader.fill().await?;
    }
}

/// Floods for `duration` from `n_publishers` connections (publisher `i` on
/// `uns-bench/{tag}/{i}`) into one subscriber on `uns-bench/{tag}/+`, and measures what the
/// subscriber receives. `tag` keeps runs apart and names the clients, so keep it short.
pub(crate) async fn flood(
    addr: SocketAddr,
    tag: &str,
    qos: u8,
    n_publishers: usize,
    duration: Duration,
) -> Result<Flow, ClientError> {
    let epoch = Instant::now();
    let sub = subscriber(
        addr,
        &format!("{tag}-sub"),
        &format!("uns-bench/{tag}/+"),
        qos,
    )
    .await?;
    let mut publishers = Vec::with_capacity(n_publishers);
    for pub_idx in 0..n_publishers {
        publishers.push(
            MqttClient::connect(addr, &format!("{tag}-pub-{pub_idx}"), HANDSHAKE_TIMEOUT).await?,
        );
    }
    let received = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = oneshot::channel();
    let sub_task = tokio::spawn(run_subscriber(
        sub,
        Arc::clone(&received),
        epoch,
        stop_rx,
        (),
    ));

    let start = Instant::now();
    let flood = Arc::new(Flood {
        sent: AtomicU64::new(0),
        written_off: AtomicU64::new(0),
        received: Arc::clone(&received),
        deadline: start + duration,
        epoch,
        qos,
    });
    let mut tasks = JoinSet::new();
    for (pub_idx, client) in publishers.into_iter().enumerate() {
        tasks.spawn(run_publisher(
            client,
            format!("uns-bench/{tag}/{pub_idx}"),
            Arc::clone(&flood),
        ));
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|error| ClientError::Task(error.to_string()))??;
    }
    let sent = flood.sent.load(Ordering::Acquire);
    received
        .wait_for(
            |n_received| n_received >= sent,
            QUIET,
            Instant::now() + DRAIN_LIMIT,
        )
        .await;
    let _subscriber_gone = stop_tx.send(());
    sub_task
        .await
        .map_err(|error| ClientError::Task(error.to_string()))??;
    let last = epoch + Duration::from_nanos(received.last_ns.load(Ordering::Acquire));
    Ok(Flow {
        sent,
        received: received.get(),
        elapsed: last.saturating_duration_since(start),
    })
}

/// Publishes QoS 0 messages at `rate` per second for `duration`, each carrying its send time,
/// and returns one latency sample (nanoseconds) per message received. Topics and client ids
/// are derived from `tag` as in [`flood`].
pub(crate) async fn paced_latency(
    addr: SocketAddr,
    tag: &str,
    rate: u32,
    duration: Duration,
) -> Result<Vec<u64>, ClientError> {
    let epoch = Instant::now();
    let sub = subscriber(
        addr,
        &format!("{tag}-sub"),
        &format!("uns-bench/{tag}/+"),
        0,
    )
    .await?;
    let mut publisher = MqttClient::connect(addr, &format!("{tag}-pub"), HANDSHAKE_TIMEOUT).await?;
    let received = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = oneshot::channel();
    let capacity = (f64::from(rate) * duration.as_secs_f64() * 1.1) as usize;
    let sink = LatencySink {
        epoch,
        samples: Vec::with_capacity(capacity.min(MAX_LATENCY_SAMPLES)),
    };
    let sub_task = tokio::spawn(run_subscriber(
        sub,
        Arc::clone(&received),
        epoch,
        stop_rx,
        sink,
    ));

    let topic = format!("uns-bench/{tag}/0");
    let start = Instant::now();
    let deadline = start + duration;
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut payload = [0u8; PAYLOAD_BYTES];
    let mut out = Vec::with_capacity(4096);
    let mut n_sent: u64 = 0;
    loop {
        ticks.tick().await;
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        // Send whatever is due so the average rate is exact whatever the tick jitter.
        let due = ((now - start).as_secs_f64() * f64::from(rate)) as u64;
        out.clear();
        while n_sent < due {
            payload[..8].copy_from_slice(&nanos_since(epoch).to_le_bytes());
            mqtt::encode_publish(&topic, 0, 0, &payload, &mut out);
            n_sent += 1;
        }
        if !out.is_empty() {
            publisher
                .writer
                .write_all(&out)
                .await
                .map_err(|source| ClientError::Io {
                    step: "write PUBLISH",
                    source,
                })?;
        }
    }
    received
        .wait_for(
            |n_received| n_received >= n_sent,
            QUIET,
            Instant::now() + DRAIN_LIMIT,
        )
        .await;
    let _subscriber_gone = stop_tx.send(());
    publisher.disconnect().await;
    let sink = sub_task
        .await
        .map_err(|error| ClientError::Task(error.to_string()))??;
    Ok(sink.samples)
}

/// Opens `n_connections` idle sessions (client ids `{tag}-{i}`), calls `measure` while they
/// are all open, then closes them.
pub(crate) async fn with_idle_connections<T>(
    addr: SocketAddr,
    tag: &str,
    n_connections: usize,
    measure: impl FnOnce() -> T,
) -> Result<T, ClientError> {
    let mut clients = Vec::with_capacity(n_connections);
    let mut next_idx = 0;
    while next_idx < n_connections {
        let mut batch = JoinSet::new();
        let batch_end = (next_idx + CONNECT_CONCURRENCY).min(n_connections);
        for conn_idx in next_idx..batch_end {
            let client_id = format!("{tag}-{conn_idx}");
            batch.spawn(
                async move { MqttClient::connect(addr, &client_id, HANDSHAKE_TIMEOUT).await },
            );
        }
        while let Some(joined) = batch.join_next().await {
            clients.push(joined.map_err(|error| ClientError::Task(error.to_string()))??);
        }
        next_idx = batch_end;
    }
    let measured = measure();
    drop(clients);
    Ok(measured)
}
