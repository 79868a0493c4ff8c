//! The test harness: a real broker, the real HTTP endpoint, the plant model service and the bridge
//! in one `Runtime`, an observer client, a blocking HTTP client, and a stand-in ERP.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio_util::sync::CancellationToken;
use uns_client::{BrokerUrl, ClientMetrics, ClientOptions, Inbox, Message, Metrics, UnsClient};
use uns_erp_bridge::{ErpBridge, ErpBridgeConfig};
use uns_service::{
    BrokerEndpoint, ConfigEnv, Configured, Health, HttpServer, RestartPolicy, Routes, Runtime,
    RuntimeOptions, Service,
};

pub const DEADLINE: Duration = Duration::from_secs(15);

pub struct Harness {
    pub dir: tempfile::TempDir,
    _broker: uns_broker::BrokerHandle,
    pub broker_url: BrokerUrl,
    pub http: SocketAddr,
    pub observer: UnsClient,
    pub inbox: Inbox,
    runtime: Option<Runtime>,
    stop: CancellationToken,
}

pub async fn start(config: ErpBridgeConfig) -> anyhow::Result<Harness> {
    let dir = tempfile::tempdir()?;
    let broker = uns_broker::start(uns_broker::BrokerConfig {
        listen: "127.0.0.1:0".parse()?,
        ws_listen: None,
        data_dir: dir.path().join("broker"),
        ..Default::default()
    })
    .await?;
    let broker_url = BrokerUrl::new("127.0.0.1", broker.mqtt_addr().port());
    let stop = CancellationToken::new();
    let observer_metrics = Metrics::new();
    let (observer, inbox, _) = UnsClient::start(
        ClientOptions::new(broker_url.clone(), "observer")?,
        ClientMetrics::register(&observer_metrics),
        stop.clone(),
    );
    observer.wait_connected(DEADLINE).await?;
    let mut harness = Harness {
        dir,
        _broker: broker,
        broker_url,
        http: "127.0.0.1:0".parse()?,
        observer,
        inbox,
        runtime: None,
        stop,
    };
    harness.start_runtime(config).await?;
    Ok(harness)
}

impl Harness {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// (Re)starts the runtime with the plant model and the bridge.
    pub async fn start_runtime(&mut self, config: ErpBridgeConfig) -> anyhow::Result<()> {
        let env = ConfigEnv {
            demo: false,
            data_dir: self.data_dir(),
            http_listen: "127.0.0.1:0".parse()?,
        };
        let bridge = ErpBridge::configure(config, &env).map_err(|err| anyhow::anyhow!("{err}"))?;
        let meta = uns_meta::Meta::new(uns_meta::PlantModel::demo());
        let health = Health::default();
        let metrics = Metrics::new();
        let routes = Routes::default();
        let http = HttpServer::start(
            "127.0.0.1:0".parse()?,
            health.clone(),
            metrics.clone(),
            routes.clone(),
            self.stop.clone(),
        )
        .await?;
        self.http = http.local_addr();
        let runtime = Runtime::start(
            RuntimeOptions {
                broker: BrokerEndpoint {
                    url: self.broker_url.clone(),
                    credentials: None,
                },
                data_dir: self.data_dir(),
                restart: RestartPolicy::Exit,
                stop_grace: Duration::from_secs(2),
                health,
                metrics,
                routes,
            },
            vec![Configured::new(meta), Configured::new(bridge)],
        )
        .await?;
        self.runtime = Some(runtime);
        // The confirmation connection's SUBSCRIBEs go out before its health document on the same
        // connection, so once `running` is seen the bridge receives every event published after.
        let health_topic = format!(
            "uns/v1/_services/{}",
            uns_erp_bridge::CONFIRMATIONS_CLIENT.0
        );
        self.subscribe(&health_topic).await?;
        self.next(|m| {
            m.topic == health_topic && String::from_utf8_lossy(&m.payload).contains("\"running\"")
        })
        .await
        .context("the confirmation connection did not come up")?;
        // Ready once the API answers and the plant model has arrived (an order on line-1 resolves).
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let (status, _) = self.get("/api/v1/master-data/materials", None).await?;
            // 200, or 401 when tokens are configured: the routes are mounted.
            if status == 200 || status == 401 {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the bridge API did not come up (last status {status})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop_runtime(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.stop().await;
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> anyhow::Result<(u16, String)> {
        http(self.http, "GET", path, None, b"", token).await
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, String)> {
        http(self.http, "POST", path, Some(content_type), body, None).await
    }

    pub async fn load_master(&self, ids: &[&str]) -> anyhow::Result<()> {
        let materials: Vec<_> = ids
            .iter()
            .map(|id| serde_json::json!({"id": id, "description": id, "uom": "EA"}))
            .collect();
        let (status, body) = self
            .post(
                "/api/v1/master-data/materials?mode=merge",
                "application/json",
                &serde_json::to_vec(&materials)?,
            )
            .await?;
        anyhow::ensure!(status == 200, "loading materials: {status} {body}");
        Ok(())
    }

    pub async fn subscribe(&self, filter: &str) -> anyhow::Result<()> {
        self.observer
            .subscribe(&uns_model::topic::TopicFilter::new(filter)?)
            .await?;
        Ok(())
    }

    /// The next message on a topic for which `accept` is true, within [`DEADLINE`].
    pub async fn next(&mut self, accept: impl Fn(&Message) -> bool) -> anyhow::Result<Message> {
        tokio::time::timeout(DEADLINE, async {
            loop {
                let message = self.inbox.recv().await.context("observer inbox closed")?;
                if accept(&message) {
                    return Ok(message);
                }
            }
        })
        .await
        .context("no matching message in time")?
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One HTTP request with ureq (blocking, on the blocking pool); any status is returned.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let url = format!("http://{addr}{path}");
    let method = method.to_owned();
    let content_type = content_type.map(str::to_owned);
    let body = body.to_vec();
    let token = token.map(str::to_owned);
    tokio::task::spawn_blocking(move || -> anyhow::Result<(u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = if method == "GET" {
            let mut request = agent.get(&url);
            if let Some(token) = &token {
                request = request.header("Authorization", &format!("Bearer {token}"));
            }
            request.call()?
        } else {
            let mut request = agent.post(&url);
            if let Some(content_type) = &content_type {
                request = request.header("Content-Type", content_type);
            }
            if let Some(token) = &token {
                request = request.header("Authorization", &format!("Bearer {token}"));
            }
            request.send(&body[..])?
        };
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_default();
        Ok((status, text))
    })
    .await?
}

/// How the stand-in ERP answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErpMode {
    /// 201 with a document number.
    Accept,
    /// 500.
    Fail,
    /// Answers after 5 s (longer than the bridge's timeout in the tests).
    Hang,
}

/// A stand-in ERP: records every posting by idempotency key and answers as its mode says.
#[derive(Clone)]
pub struct TestErp {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<ErpState>>,
}

#[derive(Debug)]
pub struct ErpState {
    pub mode: ErpMode,
    /// Accepted postings by idempotency key: how often each was accepted.
    pub accepted: BTreeMap<String, u32>,
    /// Every request seen (accepted or not).
    pub n_requests: u64,
    /// Body of the last accepted posting.
    pub last_body: String,
    pub last_content_type: String,
}

impl TestErp {
    pub async fn start(mode: ErpMode) -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0".parse()?, mode).await
    }

    pub async fn start_on(addr: SocketAddr, mode: ErpMode) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(ErpState {
            mode,
            accepted: BTreeMap::new(),
            n_requests: 0,
            last_body: String::new(),
            last_content_type: String::new(),
        }));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/confirmations", post(confirm))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { addr, state })
    }

    pub fn url(&self) -> String {
        format!("http://{}/confirmations", self.addr)
    }

    pub fn set_mode(&self, mode: ErpMode) {
        self.state.lock().expect("lock").mode = mode;
    }

    pub fn accepted(&self) -> BTreeMap<String, u32> {
        self.state.lock().expect("lock").accepted.clone()
    }

    pub fn n_requests(&self) -> u64 {
        self.state.lock().expect("lock").n_requests
    }
}

async fn confirm(
    State(state): State<Arc<Mutex<ErpState>>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mode = {
        let mut state = state.lock().expect("lock");
        state.n_requests += 1;
        state.mode
    };
    match mode {
        ErpMode::Fail => (StatusCode::INTERNAL_SERVER_ERROR, "ERP is down".to_owned()),
        ErpMode::Hang => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            (StatusCode::SERVICE_UNAVAILABLE, "too late".to_owned())
        }
        ErpMode::Accept => {
            let mut state = state.lock().expect("lock");
            let n = {
                let count = state.accepted.entry(key.clone()).or_insert(0);
                *count += 1;
                *count
            };
            state.last_body = body;
            state.last_content_type = headers
                .get("content-type")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (
                StatusCode::CREATED,
                serde_json::json!({"document": format!("CONF-{key}-{n}")}).to_string(),
            )
        }
    }
}

/// POSTs `body` over a raw socket, reading the answer while still sending: for a server that
/// answers (413) from the headers and stops reading.
pub async fn post_early_answer(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let body = body.to_vec();
    let sending = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(&body).await
    });
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(DEADLINE, async {
        while !String::from_utf8_lossy(&answer).contains("}") {
            let n = reader.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..n]);
        }
        anyhow::Ok(())
    })
    .await
    .context("no answer in time")??;
    sending.abort();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("no status line")?;
    Ok((status, text))
}
