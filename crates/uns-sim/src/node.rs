//! One simulated edge node on the wire: its MQTT connection, its devices' models, and store and forward.
//!
//! Two tasks per edge node:
//! - the **link** task owns rumqttc's `EventLoop` and only polls it. Before each CONNECT it asks the node
//!   task for the Will (the bdSeq changes per CONNECT) and hands back the publishes the dead connection
//!   never sent. It forwards connection events and incoming messages over an unbounded channel, so it
//!   never waits on the node task while the node task waits on it.
//! - the **node** task owns the [`EdgeNode`] session and the models: it samples each device at its own
//!   phase of the period ([`crate::schedule`]),
//!   publishes births and DATA with `try_publish` (never blocking on the link), and buffers in its store
//!   whatever it cannot publish: while disconnected, while the primary host is offline, when the
//!   request channel is full, and the publishes the link hands back.
//!
//! Forwarding: once born, buffered records go out oldest first as historical DATA (`is_historical`,
//! original timestamps), up to [`FORWARD_BATCH`] records per sample period, each batch deleted in one
//! write transaction after it was handed to the link. Live DATA is not held back meanwhile: historical
//! values never overwrite a host's current value, so the two may interleave.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, Publish, QoS, Request,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uns_sparkplug::edge::{DeviceDef, EdgeNode, Outgoing, Qos};
use uns_sparkplug::{SparkplugTopic, Value, decode};

use crate::config::{NodeSpec, SimConfig};
use crate::plant::DeviceModel;
use crate::schedule::{self, Origin, Schedule};
use crate::store::{Buffer, Counters, Record, Values};
use crate::{SimConnect, SimError, SimStats};

/// Buffered records forwarded per sample period (and right after a birth).
pub(crate) const FORWARD_BATCH: usize = 200;

/// Requests rumqttc's channel holds before `try_publish` reports it full.
const REQUEST_CAPACITY: usize = 10_000;

/// How long an intentional disconnect waits for the NDEATH to leave.
const DISCONNECT_GRACE: Duration = Duration::from_secs(3);

/// What the link task tells the node task.
enum LinkEvent {
    /// The link is about to send CONNECT: reply with the Will. `unsent` are the publishes of the previous
    /// connection that never left (to buffer again).
    Connecting {
        unsent: Vec<Publish>,
        reply: oneshot::Sender<LastWill>,
    },
    /// CONNACK received: the session may begin.
    Connected,
    /// The connection failed or dropped.
    Lost(String),
    /// A message on a subscribed topic.
    Message(Publish),
}

/// Everything an edge node task needs, shared by all nodes of one run.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) config: Arc<SimConfig>,
    pub(crate) connect: SimConnect,
    pub(crate) buffer: Buffer,
    pub(crate) stats: SimStats,
    /// The run's start (tokio instant and wall-clock ms): every device's sample grid counts from it
    /// (see [`crate::schedule`]).
    pub(crate) origin: Origin,
}

/// One edge node ready to run.
pub(crate) struct SimNode {
    edge: EdgeNode,
    /// `(device id, model)`, in definition order.
    models: Vec<(String, DeviceModel)>,
    /// Each device's sampling phase within the period (same order as `models`).
    phases: Vec<Duration>,
    /// Each device's counters as last saved (same order as `models`): no published count exceeds them.
    saved: Vec<Counters>,
}

impl SimNode {
    /// Builds the session and the models of one node; fails on invalid ids. `first_device_idx` is the
    /// plant-wide index of the node's first device and `n_devices` the plant's device count (for the
    /// sampling phases).
    pub(crate) fn new(
        config: &SimConfig,
        spec: &NodeSpec,
        first_device_idx: usize,
        n_devices: usize,
        saved: &HashMap<String, Counters>,
    ) -> Result<SimNode, SimError> {
        let models: Vec<(String, DeviceModel)> = spec
            .cells
            .iter()
            .map(|cell| {
                let stream = format!("{}/{}", spec.edge, cell.device);
                let mut model = DeviceModel::new(
                    config.seed,
                    &stream,
                    cell.kind,
                    cell.ideal_per_hour,
                    cell.extra_metrics,
                );
                if let Some(counters) = saved.get(&cell.device) {
                    model.restore_counters(counters.good, counters.reject);
                }
                (cell.device.clone(), model)
            })
            .collect();
        let saved = spec
            .cells
            .iter()
            .map(|cell| saved.get(&cell.device).copied().unwrap_or_default())
            .collect();
        let devices = models
            .iter()
            .map(|(device, model)| DeviceDef::new(device.clone(), model.metric_defs()))
            .collect();
        let edge = EdgeNode::new(config.group.clone(), spec.edge.clone(), Vec::new(), devices)?;
        let period = config.period();
        let phases = (0..models.len())
            .map(|device_idx| {
                schedule::phase(
                    config.seed,
                    first_device_idx + device_idx,
                    n_devices,
                    period,
                )
            })
            .collect();
        Ok(SimNode {
            edge,
            models,
            phases,
            saved,
        })
    }

    /// Makes sure the next round cannot publish a count beyond the saved ones: where it could, saves
    /// the counts plus a reserve of about one second of production (at least one round), in one
    /// durable write awaited before the round starts. A failed save is logged and tried again next
    /// round.
    pub(crate) async fn reserve_counters(&mut self, buffer: &Buffer, dt_s: f64, speed: f64) {
        let (updates, reserved) = self.reservation(dt_s, speed);
        self.save_counters(buffer, updates, reserved).await;
    }

    /// What [`SimNode::reserve_counters`] saves: `(device, counters)` to write, and every device's
    /// saved counters once written (for [`SimNode::set_saved`]).
    pub(crate) fn reservation(
        &self,
        dt_s: f64,
        speed: f64,
    ) -> (Vec<(String, Counters)>, Vec<Counters>) {
        let reserve_s = dt_s.max(speed);
        let mut updates = Vec::new();
        let mut reserved = self.saved.clone();
        for ((device, model), saved) in self.models.iter().zip(reserved.iter_mut()) {
            let (good, reject) = model.counters();
            let next_round = model.max_parts(dt_s);
            if good + next_round <= saved.good && reject + next_round <= saved.reject {
                continue;
            }
            let reserve = model.max_parts(reserve_s).max(next_round);
            *saved = Counters {
                good: good + reserve,
                reject: reject + reserve,
            };
            updates.push((device.clone(), *saved));
        }
        (updates, reserved)
    }

    /// Records what is saved now (after a write of a [`SimNode::reservation`]).
    pub(crate) fn set_saved(&mut self, saved: Vec<Counters>) {
        self.saved = saved;
    }

    /// The edge node id.
    pub(crate) fn edge_id(&self) -> &str {
        self.edge.edge()
    }

    /// Saves `updates` (device, counters); on success `all` becomes what is saved.
    async fn save_counters(
        &mut self,
        buffer: &Buffer,
        updates: Vec<(String, Counters)>,
        all: Vec<Counters>,
    ) {
        if updates.is_empty() {
            return;
        }
        let edge = self.edge.edge().to_owned();
        let rows = updates
            .into_iter()
            .map(|(device, counters)| (edge.clone(), device, counters))
            .collect();
        match buffer.save_counters(rows).await {
            Ok(()) => self.saved = all,
            Err(error) => tracing::error!(%edge, %error, "cannot save the counters"),
        }
    }

    /// Runs the node until `shutdown`, then publishes NDEATH (if born) and disconnects.
    pub(crate) async fn run(self, shared: Shared, shutdown: CancellationToken) {
        let edge_id = self.edge.edge().to_owned();
        let mut options = MqttOptions::new(
            format!("{}-{}", shared.config.client_id_prefix, edge_id),
            shared.connect.host.clone(),
            shared.connect.port,
        );
        options
            .set_keep_alive(Duration::from_secs(shared.config.keep_alive_s.max(1)))
            // Sparkplug over MQTT 3.1.1 requires a clean session [tck-id-principles-persistence-clean-session-311].
            .set_clean_session(true)
            .set_max_packet_size(1024 * 1024, 1024 * 1024);
        if let Some(username) = &shared.connect.username {
            options.set_credentials(
                username.clone(),
                shared.connect.password.clone().unwrap_or_default(),
            );
        }
        let (client, event_loop) = AsyncClient::new(options, REQUEST_CAPACITY);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let link_stop = CancellationToken::new();
        let reconnect_delay = Duration::from_millis(shared.config.reconnect_delay_ms);
        let link = tokio::spawn(run_link(
            event_loop,
            events_tx,
            link_stop.clone(),
            reconnect_delay,
        ));
        let mut session = Session {
            node: self,
            client,
            shared,
            link_up: false,
            host_online: false,
            host_timestamp: 0,
            online: false,
            pending: Vec::new(),
        };
        session.run(events_rx, &shutdown).await;
        session.finish().await;
        // The link ends by itself after our DISCONNECT went out; otherwise stop it after the grace time.
        let link_stopper = link_stop.clone();
        let stop_late = tokio::spawn(async move {
            tokio::time::sleep(DISCONNECT_GRACE).await;
            link_stopper.cancel();
        });
        if let Err(error) = link.await {
            tracing::error!(edge = %edge_id, %error, "the MQTT link task failed");
        }
        stop_late.abort();
    }
}

/// The node task's state.
struct Session {
    node: SimNode,
    client: AsyncClient,
    shared: Shared,
    /// CONNACK received and no error since.
    link_up: bool,
    /// The primary host's last STATE said online (always `true` without a primary host).
    host_online: bool,
    /// The timestamp of the primary host's last STATE message considered.
    host_timestamp: u64,
    /// Born and publishing: `link_up && host_online` and the births went out.
    online: bool,
    /// Records to append to the buffer at the end of this period or before the next link event (one
    /// write transaction).
    pending: Vec<Record>,
}

impl Session {
    async fn run(
        &mut self,
        mut events: mpsc::UnboundedReceiver<LinkEvent>,
        shutdown: &CancellationToken,
    ) {
        let dt_s = self.shared.config.speed / self.shared.config.rate_hz;
        let mut schedule = Schedule::new(
            self.shared.origin,
            self.shared.config.period(),
            &self.node.phases,
        );
        loop {
            let due = schedule.peek();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                // An overdue sample (after a stall) is taken at once: each keeps its place on the grid.
                () = tokio::time::sleep_until(due.instant) => {
                    schedule.advance();
                    if let Some(device_idx) = due.device_idx {
                        self.sample(device_idx, dt_s, due.timestamp_ms);
                    }
                    if !due.ends_round {
                        // The buffer is written and forwarded once per period, not per device.
                        continue;
                    }
                    let (buffer, speed) = (self.shared.buffer.clone(), self.shared.config.speed);
                    self.node.reserve_counters(&buffer, dt_s, speed).await;
                    self.forward().await;
                }
                event = events.recv() => match event {
                    Some(event) => self.on_link_event(event).await,
                    None => break,
                },
            }
            self.flush_pending().await;
        }
        self.flush_pending().await;
    }

    /// One sample of one device: publish what changed, or keep it for the buffer.
    fn sample(&mut self, device_idx: usize, dt_s: f64, timestamp: u64) {
        let Some((device, model)) = self.node.models.get_mut(device_idx) else {
            return;
        };
        let changed = model.step(dt_s);
        if changed.is_empty() {
            return;
        }
        let values: Vec<(String, Option<Value>, u64)> = changed
            .into_iter()
            .map(|(name, value)| (name, Some(value), timestamp))
            .collect();
        if !self.online {
            if let Err(error) = self.node.edge.record(Some(device), values.clone()) {
                tracing::error!(%device, %error, "cannot record a sample");
            }
            self.pending.push(Record {
                device: Some(device.clone()),
                values,
            });
            return;
        }
        match self.node.edge.data_at(Some(device), values, timestamp) {
            Ok(Some(outgoing)) => {
                if let Err(publish) = try_send(&self.client, &outgoing) {
                    self.rescue(vec![publish]);
                } else {
                    self.shared.stats.add_published(1);
                }
            }
            Ok(None) => {}
            Err(error) => tracing::error!(%device, %error, "cannot build DDATA"),
        }
    }

    async fn on_link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Connecting { unsent, reply } => {
                self.go_offline();
                self.rescue(unsent);
                let now = now_ms();
                match self.node.edge.connect(now) {
                    Ok(will) => {
                        self.shared.stats.add_connect();
                        let _ = reply.send(last_will(&will));
                    }
                    Err(error) => tracing::error!(%error, "cannot build the Will"),
                }
            }
            LinkEvent::Connected => {
                self.link_up = true;
                let edge = self.node.edge.edge().to_owned();
                tracing::info!(%edge, bd_seq = ?self.node.edge.bd_seq(), "connected");
                let ncmd = self.node.edge.ncmd_topic().to_string();
                if let Err(error) = self.client.try_subscribe(ncmd, QoS::AtLeastOnce) {
                    tracing::warn!(%edge, %error, "cannot subscribe to NCMD");
                }
                match self.shared.config.primary_host.clone() {
                    Some(host) => {
                        // Wait for the host's STATE before births
                        // [tck-id-message-flow-edge-node-birth-publish-phid-wait].
                        self.host_online = false;
                        let topic = uns_sparkplug::topic::SparkplugTopic::State { host_id: host }
                            .to_string();
                        if let Err(error) = self.client.try_subscribe(topic, QoS::AtLeastOnce) {
                            tracing::warn!(%edge, %error, "cannot subscribe to STATE");
                        }
                    }
                    None => {
                        self.host_online = true;
                        self.go_online().await;
                    }
                }
            }
            LinkEvent::Lost(reason) => {
                if self.link_up {
                    tracing::warn!(edge = %self.node.edge.edge(), %reason, "connection lost; buffering");
                } else {
                    tracing::debug!(edge = %self.node.edge.edge(), %reason, "connect failed");
                }
                self.go_offline();
            }
            LinkEvent::Message(publish) => self.on_message(publish).await,
        }
    }

    async fn on_message(&mut self, publish: Publish) {
        let topic: SparkplugTopic = match publish.topic.parse() {
            Ok(topic) => topic,
            Err(error) => {
                self.shared.stats.add_command_error();
                tracing::warn!(topic = %publish.topic, %error, "ignoring a message on an unexpected topic");
                return;
            }
        };
        if let SparkplugTopic::State { .. } = topic {
            self.on_host_state(&publish.payload).await;
            return;
        }
        match self
            .node
            .edge
            .on_command(&topic, &publish.payload, now_ms())
        {
            Ok(births) if births.is_empty() => {}
            Ok(births) => {
                tracing::info!(edge = %self.node.edge.edge(), "rebirth requested");
                if self.online {
                    self.send_births(births);
                } else {
                    // Not publishing now; the births go out when the session comes back.
                    self.node.edge.connection_lost();
                }
            }
            Err(error) => {
                self.shared.stats.add_command_error();
                tracing::warn!(topic = %publish.topic, %error, "ignoring a bad command");
            }
        }
    }

    /// A STATE message of the primary host: `{"online": bool, "timestamp": ms}`. Older timestamps are
    /// ignored [tck-id-message-flow-edge-node-birth-publish-phid-wait-timestamp].
    async fn on_host_state(&mut self, payload: &[u8]) {
        #[derive(serde::Deserialize)]
        struct State {
            online: bool,
            timestamp: u64,
        }
        let state: State = match serde_json::from_slice(payload) {
            Ok(state) => state,
            Err(error) => {
                self.shared.stats.add_command_error();
                tracing::warn!(%error, "ignoring a malformed STATE message");
                return;
            }
        };
        if state.timestamp < self.host_timestamp {
            return;
        }
        self.host_timestamp = state.timestamp;
        self.host_online = state.online;
        if state.online && !self.online {
            tracing::info!(edge = %self.node.edge.edge(), "primary host online");
            self.go_online().await;
        } else if !state.online && self.online {
            // With one MQTT server there is no other server to move to, so the node stays connected,
            // stops publishing and buffers until the host is back (then rebirths with the same bdSeq).
            tracing::warn!(edge = %self.node.edge.edge(), "primary host offline; buffering");
            self.online = false;
            self.node.edge.connection_lost();
        }
    }

    /// Births, then the first forwarded batch.
    async fn go_online(&mut self) {
        if !self.link_up || !self.host_online {
            return;
        }
        // Buffer what was sampled while offline before the births, so it is forwarded in order.
        self.flush_pending().await;
        match self.node.edge.birth(now_ms()) {
            Ok(births) => {
                self.online = true;
                self.send_births(births);
            }
            Err(error) => tracing::error!(%error, "cannot build births"),
        }
        self.forward().await;
    }

    fn send_births(&mut self, births: Vec<Outgoing>) {
        let n_births = births.len() as u64;
        for birth in births {
            if let Err(publish) = try_send(&self.client, &birth) {
                tracing::warn!(topic = %publish.topic, "request queue full; birth not sent");
                self.online = false;
                self.node.edge.connection_lost();
                return;
            }
        }
        self.shared.stats.add_published(n_births);
    }

    fn go_offline(&mut self) {
        self.link_up = false;
        self.online = false;
        self.node.edge.connection_lost();
    }

    /// Forwards up to [`FORWARD_BATCH`] buffered records as historical DATA.
    async fn forward(&mut self) {
        if !self.online {
            return;
        }
        let edge_id = self.node.edge.edge().to_owned();
        let batch = match self.shared.buffer.oldest(&edge_id, FORWARD_BATCH).await {
            Ok(batch) => batch,
            Err(error) => {
                tracing::error!(edge = %edge_id, %error, "cannot read the buffer");
                return;
            }
        };
        if batch.is_empty() {
            return;
        }
        let mut sent = Vec::with_capacity(batch.len());
        let mut n_forwarded = 0u64;
        for (key, record) in batch {
            let Some(record) = record else {
                sent.push(key);
                continue;
            };
            let values = record
                .values
                .into_iter()
                .filter(|(name, _, _)| {
                    let known = self.node.edge.alias(record.device.as_deref(), name).is_some();
                    if !known {
                        tracing::warn!(edge = %edge_id, device = ?record.device, %name, "dropping a buffered value of a metric that no longer exists");
                    }
                    known
                })
                .collect();
            let outgoing =
                match self
                    .node
                    .edge
                    .historical(record.device.as_deref(), values, now_ms())
                {
                    Ok(Some(outgoing)) => outgoing,
                    Ok(None) => {
                        sent.push(key);
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(edge = %edge_id, %error, "dropping a buffered record");
                        sent.push(key);
                        continue;
                    }
                };
            if try_send(&self.client, &outgoing).is_err() {
                // The queue is full: the rest stays buffered for the next round.
                break;
            }
            n_forwarded += 1;
            sent.push(key);
        }
        match self.shared.buffer.remove(sent).await {
            Ok(()) => {
                self.shared.stats.add_forwarded(n_forwarded);
                self.shared.stats.add_published(n_forwarded);
            }
            Err(error) => tracing::error!(%error, "cannot remove forwarded records"),
        }
    }

    /// DATA publishes that never left go back to the buffer, with their original timestamps.
    fn rescue(&mut self, publishes: Vec<Publish>) {
        for publish in publishes {
            let Ok(topic) = publish.topic.parse::<SparkplugTopic>() else {
                continue;
            };
            let is_data = matches!(
                &topic,
                SparkplugTopic::Node {
                    kind: uns_sparkplug::NodeMessageKind::NData,
                    ..
                } | SparkplugTopic::Device {
                    kind: uns_sparkplug::DeviceMessageKind::DData,
                    ..
                }
            );
            if !is_data {
                continue;
            }
            let Ok(payload) = decode(&publish.payload) else {
                continue;
            };
            let mut by_device: HashMap<Option<String>, Values> = HashMap::new();
            for metric in payload.metrics {
                let Some((device, def)) = metric
                    .alias
                    .and_then(|alias| self.node.edge.metric_by_alias(alias))
                else {
                    continue;
                };
                let value = match metric.value {
                    Some(Value::Untyped(raw)) => match Value::from_raw(def.datatype, raw) {
                        Ok(value) => Some(value),
                        Err(_) => continue,
                    },
                    other => other,
                };
                by_device
                    .entry(device.map(str::to_owned))
                    .or_default()
                    .push((def.name.clone(), value, metric.timestamp.unwrap_or(0)));
            }
            self.pending.extend(
                by_device
                    .into_iter()
                    .map(|(device, values)| Record { device, values }),
            );
        }
    }

    /// Appends the records kept during this step, in one write transaction.
    async fn flush_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.pending);
        let n_records = records.len() as u64;
        let edge_id = self.node.edge.edge().to_owned();
        match self.shared.buffer.append(&edge_id, records).await {
            Ok(()) => self.shared.stats.add_buffered(n_records),
            Err(error) => tracing::error!(%error, "cannot buffer samples; they are lost"),
        }
    }

    /// NDEATH before the intentional DISCONNECT [tck-id-operational-behavior-edge-node-intentional-disconnect-ndeath].
    async fn finish(&mut self) {
        // The exact counts, so the next run continues from the last published value.
        let exact: Vec<Counters> = self
            .node
            .models
            .iter()
            .map(|(_, model)| {
                let (good, reject) = model.counters();
                Counters { good, reject }
            })
            .collect();
        let updates = self
            .node
            .models
            .iter()
            .map(|(device, _)| device.clone())
            .zip(exact.iter().copied())
            .collect();
        let buffer = self.shared.buffer.clone();
        self.node.save_counters(&buffer, updates, exact).await;
        if self.link_up {
            if let Ok(ndeath) = self.node.edge.disconnect(now_ms()) {
                let _ = try_send(&self.client, &ndeath);
            }
            let _ = self.client.try_disconnect();
        }
        self.online = false;
    }
}

/// The link task: polls the event loop, reconnects after `reconnect_delay`, sets a fresh Will before
/// every CONNECT.
async fn run_link(
    mut event_loop: EventLoop,
    events: mpsc::UnboundedSender<LinkEvent>,
    stop: CancellationToken,
    reconnect_delay: Duration,
) {
    let mut unsent = Vec::new();
    loop {
        let (reply_tx, reply_rx) = oneshot::channel();
        let connecting = LinkEvent::Connecting {
            unsent: std::mem::take(&mut unsent),
            reply: reply_tx,
        };
        if events.send(connecting).is_err() {
            return;
        }
        let will = tokio::select! {
            will = reply_rx => match will {
                Ok(will) => will,
                Err(_) => return,
            },
            _ = stop.cancelled() => return,
        };
        event_loop.mqtt_options.set_last_will(will);
        loop {
            let event = tokio::select! {
                event = event_loop.poll() => event,
                _ = stop.cancelled() => return,
            };
            let forwarded = match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => LinkEvent::Connected,
                Ok(Event::Incoming(Packet::Publish(publish))) => LinkEvent::Message(publish),
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => continue,
                Err(error) => {
                    let _ = events.send(LinkEvent::Lost(error.to_string()));
                    break;
                }
            };
            if events.send(forwarded).is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(reconnect_delay) => {}
            _ = stop.cancelled() => return,
        }
        // Requests queued for the dead connection would go out first on the new one, before its
        // births: take them all back (the node buffers the DATA among them).
        event_loop.clean();
        unsent = event_loop
            .pending
            .drain(..)
            .filter_map(|request| match request {
                Request::Publish(publish) => Some(publish),
                _ => None,
            })
            .collect();
    }
}

/// Hands a message to the link without waiting; gives the publish back when the queue is full or closed.
fn try_send(client: &AsyncClient, outgoing: &Outgoing) -> Result<(), Publish> {
    let qos = mqtt_qos(outgoing.qos);
    let topic = outgoing.topic.to_string();
    client
        .try_publish(
            topic.clone(),
            qos,
            outgoing.retain,
            outgoing.payload.clone(),
        )
        .map_err(|error| match error {
            rumqttc::ClientError::Request(Request::Publish(publish))
            | rumqttc::ClientError::TryRequest(Request::Publish(publish)) => publish,
            _ => Publish::new(topic, qos, outgoing.payload.clone()),
        })
}

fn last_will(will: &Outgoing) -> LastWill {
    LastWill::new(
        will.topic.to_string(),
        will.payload.clone(),
        mqtt_qos(will.qos),
        will.retain,
    )
}

fn mqtt_qos(qos: Qos) -> QoS {
    match qos {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
    }
}

/// Wall-clock milliseconds since the Unix epoch (Sparkplug timestamps are UTC ms).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
