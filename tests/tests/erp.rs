//! The ERP bridge as its own process (`uns erp-bridge`) against `uns broker`: `kill -9` with a full
//! outbox, confirmations published while it is dead, then a restart: every confirmation reaches the
//! stand-in ERP, none twice (it counts idempotency keys).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use uns_client::{BrokerUrl, ClientMetrics, ClientOptions, Metrics, UnsClient};
use uns_e2e::{UnsProcess, eventually, http_get};
use uns_model::payload::{
    ActivityTimes, EventHeader, Quantity, SchemaTag, Timestamp, Uom, WorkOrderEvent,
    WorkOrderEventKind,
};
use uns_model::topic::{Class, Id, UnsTopic};

/// A minimal HTTP/1.1 ERP: 500 while `accept` is false, else 201; counts accepted postings per
/// `Idempotency-Key`.
#[derive(Clone, Default)]
struct StandIn {
    accept: Arc<Mutex<bool>>,
    accepted: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl StandIn {
    async fn start(self) -> anyhow::Result<std::net::SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let erp = self.clone();
                tokio::spawn(async move {
                    let _ = erp.serve(stream).await;
                });
            }
        });
        Ok(addr)
    }

    async fn serve(&self, mut stream: tokio::net::TcpStream) -> anyhow::Result<()> {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        let header_end = loop {
            let n = stream.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "closed");
            buffer.extend_from_slice(&chunk[..n]);
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let head = String::from_utf8_lossy(&buffer[..header_end]).to_ascii_lowercase();
        let header = |name: &str| {
            head.lines().find_map(|line| {
                line.strip_prefix(&format!("{name}:"))
                    .map(|v| v.trim().to_owned())
            })
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < header_end + length {
            let n = stream.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "closed");
            buffer.extend_from_slice(&chunk[..n]);
        }
        let key = header("idempotency-key").unwrap_or_default();
        let accept = *self.accept.lock().expect("lock");
        let response = if accept {
            *self.accepted.lock().expect("lock").entry(key).or_insert(0) += 1;
            "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 17\r\nconnection: close\r\n\r\n{\"document\":\"D1\"}"
        } else {
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndown"
        };
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        Ok(())
    }
}

fn confirmation(n: u32) -> (UnsTopic, WorkOrderEvent) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
    let now = Timestamp::from_unix_ms(now_ms).expect("now is a valid time");
    let wo = Id::new(&format!("wo-{n}")).expect("id");
    let event = WorkOrderEvent {
        schema: SchemaTag::default(),
        header: EventHeader::new(uuid_v4(n), now, now),
        wo_id: wo.clone(),
        kind: WorkOrderEventKind::ConfirmationRequested {
            is_final: true,
            sequence: 1,
            erp_ref: None,
            production_order: None,
            good: Quantity::new(f64::from(n), Uom::EA),
            scrap: Quantity::new(0.0, Uom::EA),
            rework: Quantity::new(0.0, Uom::EA),
            operation_id: None,
            activity: ActivityTimes::default(),
            goods_movements: Vec::new(),
        },
    };
    let topic = UnsTopic::located(
        "acme/berlin/packaging/line-1".parse().expect("location"),
        Class::WorkOrderEvents(wo),
    );
    (topic, event)
}

/// A distinct event id per test run and `n`.
fn uuid_v4(n: u32) -> uuid::Uuid {
    let mut bytes = *uuid::Uuid::new_v4().as_bytes();
    bytes[12..16].copy_from_slice(&n.to_be_bytes());
    uuid::Uuid::from_bytes(bytes)
}

async fn outbox_depth(bridge: &UnsProcess) -> Option<u64> {
    let (_, metrics) = http_get(bridge.addrs.http, "/metrics").await.ok()?;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("uns_erp_outbox_depth "))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_with_a_full_outbox_then_every_confirmation_arrives_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = UnsProcess::start("broker", &dir.path().join("broker"), &[]).await?;
    let broker_url = format!("mqtt://{}", broker.mqtt());
    let erp = StandIn::default();
    let erp_addr = erp.clone().start().await?;
    let config = dir.path().join("uns.toml");
    std::fs::write(
        &config,
        format!(
            "[erp_bridge]\nerp_url = \"http://{erp_addr}/confirmations\"\ntimeout_ms = 500\nretry_initial_ms = 20\nretry_max_ms = 200\nmax_attempts = 100000\n"
        ),
    )?;
    let bridge_dir = dir.path().join("bridge");
    let args = [
        "--broker",
        broker_url.as_str(),
        "--config",
        config.to_str().unwrap_or_default(),
    ];
    let bridge = UnsProcess::start_service("erp-bridge", &bridge_dir, &args).await?;

    let addr = broker.mqtt();
    let (publisher, _inbox, _loop) = UnsClient::start(
        ClientOptions::new(BrokerUrl::new(addr.ip().to_string(), addr.port()), "e2e-wo")?,
        ClientMetrics::register(&Metrics::new()),
        tokio_util::sync::CancellationToken::new(),
    );
    publisher.wait_connected(Duration::from_secs(10)).await?;
    let events: Vec<_> = (0..40).map(confirmation).collect();
    // The bridge subscribes right after it is up; publish until the first lands in its outbox.
    eventually(
        "the bridge's subscription",
        Duration::from_secs(20),
        || async {
            publisher.publish(&events[0].0, &events[0].1).await.ok()?;
            outbox_depth(&bridge).await.filter(|depth| *depth > 0)
        },
    )
    .await?;
    for (topic, event) in &events[1..30] {
        publisher.publish(topic, event).await?;
    }
    eventually(
        "30 entries in the outbox",
        Duration::from_secs(20),
        || async { outbox_depth(&bridge).await.filter(|depth| *depth == 30) },
    )
    .await?;
    bridge.kill()?;
    let mut bridge = bridge;
    bridge.wait_exit(Duration::from_secs(10)).await?;
    // Published while the bridge is dead: its persistent session keeps them on the broker.
    for (topic, event) in &events[30..] {
        publisher.publish(topic, event).await?;
    }
    *erp.accept.lock().expect("lock") = true;
    let _bridge = UnsProcess::start_service("erp-bridge", &bridge_dir, &args).await?;
    eventually(
        "every confirmation accepted",
        Duration::from_secs(30),
        || async { (erp.accepted.lock().expect("lock").len() == events.len()).then_some(()) },
    )
    .await?;
    let accepted = erp.accepted.lock().expect("lock").clone();
    for (_, event) in &events {
        assert_eq!(
            accepted.get(&event.header.event_id.to_string()),
            Some(&1),
            "{} accepted once",
            event.wo_id
        );
    }
    Ok(())
}
