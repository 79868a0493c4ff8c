//! The supervisor and the HTTP endpoint against a real broker, real sockets and real HTTP: a service
//! that panics and one that returns an error are `failed` on `uns/v1/_services/{name}` and on
//! `/healthz` (503, named) at once, restarted with a doubling backoff, their restart count visible in
//! the health document, on `/healthz` and on `/metrics`; a steady service next to them keeps running.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use uns_client::{BrokerUrl, ClientMetrics, ClientOptions, Inbox, Metrics, UnsClient};
use uns_model::payload::{HealthStatus, ServiceHealth, decode};
use uns_model::topic::{Class, TopicFilter, UnsTopic};
use uns_service::{
    BrokerEndpoint, ConfigEnv, ConfigError, Configured, Context, Health, HttpServer, RestartPolicy,
    Routes, Runtime, RuntimeOptions, Service,
};

const DEADLINE: Duration = Duration::from_secs(10);

/// Why the flaky services fail.
#[derive(Debug, thiserror::Error)]
#[error("the test asked for a failure")]
struct Asked;

/// Waits for a command on `{location}/_cmd/{verb}`, then fails as `FAIL` says. Counts its runs.
struct Flaky<const PANIC: bool> {
    runs: Arc<AtomicU32>,
}

fn boom_topic(verb: &str) -> UnsTopic {
    UnsTopic::located(
        "acme".parse().expect("valid location"),
        Class::Cmd(vec![uns_model::topic::Id::new(verb).expect("valid verb")]),
    )
}

async fn wait_for_command(ctx: &mut Context, verb: &str) -> Result<bool, Asked> {
    let topic = boom_topic(verb);
    ctx.client
        .subscribe(&TopicFilter::new(&topic.to_string()).expect("valid filter"))
        .await
        .map_err(|_| Asked)?;
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return Ok(false),
            message = ctx.inbox.recv() => match message {
                Some(message) if message.topic == topic.to_string() => return Ok(true),
                Some(_) => {}
                None => return Ok(false),
            },
        }
    }
}

impl Service for Flaky<true> {
    const NAME: &'static str = "panicker";
    const SECTION: &'static str = "panicker";
    type Config = ();
    type Error = Asked;

    fn configure((): (), _env: &ConfigEnv) -> Result<Self, ConfigError> {
        unreachable!("built in code")
    }

    async fn run(&self, mut ctx: Context) -> Result<(), Asked> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        ctx.http
            .mount(axum::Router::new().route("/api/v1/panicker", get(|| async { "alive" })))
            .map_err(|_| Asked)?;
        if wait_for_command(&mut ctx, "panic").await? {
            panic!("the test asked for a panic");
        }
        Ok(())
    }
}

impl Service for Flaky<false> {
    const NAME: &'static str = "failer";
    const SECTION: &'static str = "failer";
    type Config = ();
    type Error = Asked;

    fn configure((): (), _env: &ConfigEnv) -> Result<Self, ConfigError> {
        unreachable!("built in code")
    }

    async fn run(&self, mut ctx: Context) -> Result<(), Asked> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if wait_for_command(&mut ctx, "fail").await? {
            return Err(Asked);
        }
        Ok(())
    }
}

/// Runs until shutdown.
struct Steady;

impl Service for Steady {
    const NAME: &'static str = "steady";
    const SECTION: &'static str = "steady";
    type Config = ();
    type Error = Asked;

    fn configure((): (), _env: &ConfigEnv) -> Result<Self, ConfigError> {
        Ok(Self)
    }

    async fn run(&self, ctx: Context) -> Result<(), Asked> {
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    _broker: uns_broker::BrokerHandle,
    http: SocketAddr,
    observer: UnsClient,
    health_inbox: Inbox,
    runtime: Option<Runtime>,
    stop: CancellationToken,
}

async fn start(
    services: Vec<Configured>,
    restart: RestartPolicy,
) -> anyhow::Result<(Harness, BrokerEndpoint)> {
    let dir = tempfile::tempdir()?;
    let broker = uns_broker::start(uns_broker::BrokerConfig {
        listen: "127.0.0.1:0".parse()?,
        ws_listen: None,
        data_dir: dir.path().join("broker"),
        ..Default::default()
    })
    .await?;
    let url = BrokerUrl::new("127.0.0.1", broker.mqtt_addr().port());
    let endpoint = BrokerEndpoint {
        url: url.clone(),
        credentials: None,
    };
    let stop = CancellationToken::new();
    let health = Health::default();
    let metrics = Metrics::new();
    let routes = Routes::default();
    let http = HttpServer::start(
        "127.0.0.1:0".parse()?,
        health.clone(),
        metrics.clone(),
        routes.clone(),
        stop.clone(),
    )
    .await?;
    let observer_metrics = Metrics::new();
    let (observer, mut health_inbox, _) = UnsClient::start(
        ClientOptions::new(url, "observer")?,
        ClientMetrics::register(&observer_metrics),
        stop.clone(),
    );
    observer.wait_connected(DEADLINE).await?;
    observer
        .subscribe(&TopicFilter::new("uns/v1/_services/+")?)
        .await?;
    let runtime = Runtime::start(
        RuntimeOptions {
            broker: endpoint.clone(),
            data_dir: dir.path().join("data"),
            restart,
            stop_grace: Duration::from_secs(2),
            health,
            metrics,
            routes,
        },
        services,
    )
    .await?;
    // Every service is up once its `running` health is there.
    for name in runtime.names() {
        next_health(&mut health_inbox, name, |h| {
            h.status == HealthStatus::Running
        })
        .await?;
    }
    Ok((
        Harness {
            _dir: dir,
            _broker: broker,
            http: http.local_addr(),
            observer,
            health_inbox,
            runtime: Some(runtime),
            stop,
        },
        endpoint,
    ))
}

/// The next health document of `service` that satisfies `accept`, within [`DEADLINE`].
async fn next_health(
    inbox: &mut Inbox,
    service: &str,
    accept: impl Fn(&ServiceHealth) -> bool,
) -> anyhow::Result<ServiceHealth> {
    let topic = UnsTopic::service(service)?.to_string();
    tokio::time::timeout(DEADLINE, async {
        loop {
            let message = inbox.recv().await.context("observer inbox closed")?;
            if message.topic != topic {
                continue;
            }
            let health: ServiceHealth = decode(&message.payload)?;
            if accept(&health) {
                return Ok(health);
            }
        }
    })
    .await
    .with_context(|| format!("no matching health of {service} within {DEADLINE:?}"))?
}

async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.get(&url).call()?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string()?))
    })
    .await?
}

impl Harness {
    async fn command(&self, verb: &str) -> anyhow::Result<()> {
        self.observer
            .publish_bytes(&boom_topic(verb), bytes::Bytes::from_static(b"{}"))
            .await?;
        Ok(())
    }

    /// Sends `verb` until `service` reports `failed`, and returns that health document. The
    /// service subscribes inside its run, so the first command may come before its SUBACK; each
    /// attempt gives the failure one second to show, which is the requirement itself.
    async fn fail(&mut self, verb: &str, service: &str) -> anyhow::Result<ServiceHealth> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while tokio::time::Instant::now() < deadline {
            self.command(verb).await?;
            let failed = tokio::time::timeout(
                Duration::from_secs(1),
                next_health(&mut self.health_inbox, service, |h| {
                    h.status == HealthStatus::Failed
                }),
            )
            .await;
            if let Ok(failed) = failed {
                return failed;
            }
        }
        anyhow::bail!("{service}: no `failed` health within 1 s of a command")
    }

    async fn healthz(&self) -> anyhow::Result<(u16, serde_json::Value)> {
        let (status, body) = http_get(self.http, "/healthz").await?;
        Ok((status, serde_json::from_str(&body)?))
    }

    async fn stop(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.stop().await;
        }
        self.stop.cancel();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_loops_are_reported_at_once_and_restarted_with_backoff() -> anyhow::Result<()> {
    let panicker_runs = Arc::new(AtomicU32::new(0));
    let failer_runs = Arc::new(AtomicU32::new(0));
    let restart = RestartPolicy::Restart {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(30),
    };
    let (mut harness, _) = start(
        vec![
            Configured::new(Steady),
            Configured::new(Flaky::<true> {
                runs: panicker_runs.clone(),
            }),
            Configured::new(Flaky::<false> {
                runs: failer_runs.clone(),
            }),
        ],
        restart,
    )
    .await?;
    let (status, body) = harness.healthz().await?;
    assert_eq!(status, 200, "{body}");
    let (_, alive) = http_get(harness.http, "/api/v1/panicker").await?;
    assert_eq!(alive, "alive", "a service's mounted route is served");

    for (verb, name, expected) in [
        ("panic", "panicker", "panicked: the test asked for a panic"),
        ("fail", "failer", "the test asked for a failure"),
    ] {
        // `failed` on the UNS within a second of the fault.
        let failed = harness.fail(verb, name).await?;
        assert_eq!(failed.last_error.as_deref(), Some(expected));
        // /healthz says 503 and names it while it waits for its restart.
        let (status, report) = harness.healthz().await?;
        assert_eq!(status, 503, "{report}");
        assert!(
            report["failing"]
                .as_array()
                .is_some_and(|failing| failing.iter().any(|f| f == name)),
            "{report}"
        );
        assert_eq!(report["components"]["steady"]["ok"], true, "{report}");
        // Restarted after the backoff, with the count on the health document and /healthz.
        let restarted = next_health(&mut harness.health_inbox, name, |h| {
            h.status == HealthStatus::Running && h.restarts == 1
        })
        .await?;
        assert_eq!(restarted.restarts, 1);
        let (status, report) = harness.healthz().await?;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["components"][name]["restarts"], 1, "{report}");
    }
    assert_eq!(panicker_runs.load(Ordering::SeqCst), 2);
    assert_eq!(failer_runs.load(Ordering::SeqCst), 2);
    let (_, alive) = http_get(harness.http, "/api/v1/panicker").await?;
    assert_eq!(alive, "alive", "the restarted run mounted its route again");

    // A second failure waits twice as long; /healthz says so while it waits.
    harness.fail("fail", "failer").await?;
    let (_, report) = harness.healthz().await?;
    let detail = report["components"]["failer"]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(detail.ends_with("restart 2 in 400ms"), "{detail}");
    next_health(&mut harness.health_inbox, "failer", |h| {
        h.status == HealthStatus::Running && h.restarts == 2
    })
    .await?;

    let (_, metrics) = http_get(harness.http, "/metrics").await?;
    for line in [
        "uns_service_restarts_total{service=\"panicker\"} 1",
        "uns_service_restarts_total{service=\"failer\"} 2",
        "uns_service_failures_total{service=\"failer\"} 2",
        "uns_service_restarts_total{service=\"steady\"} 0",
        "uns_service_up{service=\"steady\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in\n{metrics}"
        );
    }
    harness.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn under_the_exit_policy_a_failure_is_reported_and_not_restarted() -> anyhow::Result<()> {
    let runs = Arc::new(AtomicU32::new(0));
    let (mut harness, _) = start(
        vec![Configured::new(Flaky::<false> { runs: runs.clone() })],
        RestartPolicy::Exit,
    )
    .await?;
    harness.fail("fail", "failer").await?;
    let failure = {
        let runtime = harness.runtime.as_mut().context("runtime")?;
        tokio::time::timeout(DEADLINE, runtime.next_failure()).await?
    };
    assert_eq!(failure.service, "failer");
    assert_eq!(failure.error, "the test asked for a failure");
    let (status, _) = harness.healthz().await?;
    assert_eq!(status, 503);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "not restarted");
    harness.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_config_sections_name_the_key() {
    #[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
    #[serde(default, deny_unknown_fields)]
    struct LimitsConfig {
        limit: u32,
        nested: Nested,
    }
    #[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
    #[serde(default, deny_unknown_fields)]
    struct Nested {
        depth: u32,
    }
    struct Limits;
    impl Service for Limits {
        const NAME: &'static str = "limits";
        const SECTION: &'static str = "limits";
        type Config = LimitsConfig;
        type Error = Asked;
        fn configure(config: LimitsConfig, _env: &ConfigEnv) -> Result<Self, ConfigError> {
            if config.limit > 10 {
                return Err(ConfigError::new("limit", "at most 10"));
            }
            Ok(Self)
        }
        async fn run(&self, _ctx: Context) -> Result<(), Asked> {
            Ok(())
        }
    }
    let entry = uns_service::entry::<Limits>();
    let env = ConfigEnv {
        demo: false,
        data_dir: "data".into(),
        http_listen: "127.0.0.1:0".parse().expect("valid address"),
    };
    let check = |text: &str, expected: &str| {
        let value: toml::Value = toml::from_str(text).expect("valid TOML");
        let err = entry.configure(Some(value), &env).expect_err("refused");
        assert_eq!(err.to_string().split(':').next(), Some(expected), "{err}");
    };
    check("limit = \"many\"", "[limits] limit");
    check("nested = { depth = -1 }", "[limits] nested.depth");
    check("limit = 11", "[limits] limit");
    assert!(entry.configure(None, &env).is_ok());
    assert_eq!(
        entry.default_config().expect("serializes"),
        toml::from_str::<toml::Value>("limit = 0\n[nested]\ndepth = 0").expect("valid")
    );
    // An unknown key is named too.
    let value: toml::Value = toml::from_str("lmit = 1").expect("valid TOML");
    let err = entry.configure(Some(value), &env).expect_err("refused");
    assert!(err.to_string().contains("lmit"), "{err}");
}

/// Mounted routes see the peer's address (`ConnectInfo`), which the console's loopback-only rule
/// needs.
#[tokio::test(flavor = "multi_thread")]
async fn mounted_routes_see_the_peer_address() -> anyhow::Result<()> {
    use axum::extract::ConnectInfo;
    let stop = CancellationToken::new();
    let routes = Routes::default();
    routes.mount(
        "peer",
        axum::Router::new().route(
            "/api/v1/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        ),
    )?;
    let http = HttpServer::start(
        "127.0.0.1:0".parse()?,
        Health::default(),
        Metrics::new(),
        routes,
        stop.clone(),
    )
    .await?;
    let (status, body) = http_get(http.local_addr(), "/api/v1/peer").await?;
    stop.cancel();
    assert_eq!((status, body.as_str()), (200, "127.0.0.1"));
    Ok(())
}
