//! The client runtime against the real embedded broker on a real socket: request/response,
//! health with its Will, clean shutdown, inbox delivery.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uns_broker::{BrokerConfig, BrokerHandle};
use uns_client::{BrokerUrl, ClientMetrics, ClientOptions, Inbox, Metrics, UnsClient};
use uns_model::payload::{CmdReply, HealthStatus, ServiceHealth, decode};
use uns_model::topic::{Class, Id, TopicFilter, UnsTopic};

const DEADLINE: Duration = Duration::from_secs(10);

async fn start_broker() -> (BrokerHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ws_listen: None,
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    };
    (uns_broker::start(config).await.expect("broker starts"), dir)
}

async fn connect(
    broker: &BrokerHandle,
    service: &str,
) -> (
    UnsClient,
    Inbox,
    tokio::task::JoinHandle<()>,
    CancellationToken,
) {
    let addr = broker.mqtt_addr();
    let options = ClientOptions::new(BrokerUrl::new(addr.ip().to_string(), addr.port()), service)
        .expect("valid service name");
    let shutdown = CancellationToken::new();
    let (client, inbox, event_loop) = UnsClient::start(
        options,
        ClientMetrics::register(&Metrics::new()),
        shutdown.clone(),
    );
    client.wait_connected(DEADLINE).await.expect("connects");
    (client, inbox, event_loop, shutdown)
}

fn ping_topic() -> UnsTopic {
    UnsTopic::located(
        "acme/berlin".parse().expect("location"),
        Class::Cmd(vec![Id::new("ping").expect("id")]),
    )
}

async fn next_health(inbox: &mut Inbox, wanted: HealthStatus) -> ServiceHealth {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let message = inbox.recv().await.expect("inbox open");
            if let Ok(health) = decode::<ServiceHealth>(&message.payload)
                && health.status == wanted
            {
                return health;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {wanted:?} health within {DEADLINE:?}"))
}

#[tokio::test]
async fn request_reply_round_trip_with_concurrent_requests() {
    let (broker, _dir) = start_broker().await;
    let (responder, mut requests, _responder_loop, _stop1) = connect(&broker, "responder").await;
    responder
        .subscribe(&TopicFilter::new(&ping_topic().to_string()).expect("filter"))
        .await
        .expect("subscribe");
    // The responder echoes the request body back as the result.
    let echo = responder.clone();
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let body: serde_json::Value =
                serde_json::from_slice(&request.payload).unwrap_or_default();
            let _ = echo.reply(&request, &CmdReply::ok(Some(body))).await;
        }
    });
    let (requester, _inbox, _requester_loop, _stop2) = connect(&broker, "requester").await;
    // The responder's subscription is in place once a request gets through; retry the first
    // one until then (a request before SUBACK has no reader).
    let first = first_reply_once_the_responder_listens(&requester).await;
    assert_eq!(first.result, Some(serde_json::json!({"n": -1})));

    let requests = (0..20).map(|n| {
        let requester = requester.clone();
        async move {
            let reply = requester
                .request(&ping_topic(), &serde_json::json!({ "n": n }), DEADLINE)
                .await
                .expect("reply");
            (n, decode::<CmdReply>(&reply.payload).expect("a CmdReply"))
        }
    });
    for (n, reply) in futures::future::join_all(requests).await {
        assert!(reply.ok);
        assert_eq!(
            reply.result,
            Some(serde_json::json!({ "n": n })),
            "reply {n} crossed"
        );
    }
}

async fn first_reply_once_the_responder_listens(requester: &UnsClient) -> CmdReply {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match requester
            .request(
                &ping_topic(),
                &serde_json::json!({"n": -1}),
                Duration::from_millis(300),
            )
            .await
        {
            Ok(reply) => return decode::<CmdReply>(&reply.payload).expect("a CmdReply"),
            Err(_) if tokio::time::Instant::now() < deadline => {}
            Err(err) => panic!("no reply within {DEADLINE:?}: {err}"),
        }
    }
}

#[tokio::test]
async fn a_request_without_responder_times_out() {
    let (broker, _dir) = start_broker().await;
    let (requester, _inbox, _loop, _stop) = connect(&broker, "lonely").await;
    let err = requester
        .request(
            &ping_topic(),
            &serde_json::json!({}),
            Duration::from_millis(200),
        )
        .await
        .expect_err("nobody answers");
    assert!(err.to_string().contains("no reply"), "{err}");
}

#[tokio::test]
async fn health_is_running_then_the_will_says_stopped_when_the_connection_dies() {
    let (broker, _dir) = start_broker().await;
    let (watcher, mut inbox, _watcher_loop, _stop1) = connect(&broker, "watcher").await;
    let health_topic = UnsTopic::service("victim").expect("name");
    watcher
        .subscribe(&TopicFilter::new(&health_topic.to_string()).expect("filter"))
        .await
        .expect("subscribe");
    let (_victim, _victim_inbox, victim_loop, _stop2) = connect(&broker, "victim").await;
    next_health(&mut inbox, HealthStatus::Running).await;
    // Dropping the event loop closes the socket without DISCONNECT: an abrupt death.
    victim_loop.abort();
    let health = next_health(&mut inbox, HealthStatus::Stopped).await;
    assert!(
        health
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("Will"),
        "the Will's document says why: {health:?}"
    );
}

#[tokio::test]
async fn clean_shutdown_publishes_stopped_and_no_will() {
    let (broker, _dir) = start_broker().await;
    let (watcher, mut inbox, _watcher_loop, _stop1) = connect(&broker, "watcher").await;
    let health_topic = UnsTopic::service("polite").expect("name");
    watcher
        .subscribe(&TopicFilter::new(&health_topic.to_string()).expect("filter"))
        .await
        .expect("subscribe");
    let (polite, _inbox, polite_loop, stop) = connect(&broker, "polite").await;
    next_health(&mut inbox, HealthStatus::Running).await;
    polite.shutdown(DEADLINE).await;
    let health = next_health(&mut inbox, HealthStatus::Stopped).await;
    assert_eq!(health.last_error, None, "{health:?}");
    stop.cancel();
    tokio::time::timeout(DEADLINE, polite_loop)
        .await
        .expect("event loop ends")
        .expect("no panic");
    // No Will follows the clean stop: the next message (if any) is not another `stopped`.
    let extra = tokio::time::timeout(Duration::from_millis(500), inbox.recv()).await;
    assert!(
        extra.is_err(),
        "unexpected message after a clean stop: {extra:?}"
    );
}

async fn connect_durable(
    broker: &BrokerHandle,
    service: &str,
) -> (UnsClient, Inbox, tokio::task::JoinHandle<()>) {
    let addr = broker.mqtt_addr();
    let mut options =
        ClientOptions::new(BrokerUrl::new(addr.ip().to_string(), addr.port()), service)
            .expect("valid service name");
    options.manual_acks = true;
    options.session_expiry = Some(Duration::from_secs(600));
    let (client, inbox, event_loop) = UnsClient::start(
        options,
        ClientMetrics::register(&Metrics::new()),
        CancellationToken::new(),
    );
    client.wait_connected(DEADLINE).await.expect("connects");
    (client, inbox, event_loop)
}

async fn next_on(inbox: &mut Inbox, topic: &str) -> uns_client::Message {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let message = inbox.recv().await.expect("inbox open");
            if message.topic == topic {
                return message;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("nothing on {topic} within {DEADLINE:?}"))
}

#[tokio::test]
async fn manual_acks_and_a_persistent_session_lose_nothing_while_the_client_is_gone() {
    let (broker, _dir) = start_broker().await;
    let (publisher, _publisher_inbox, _publisher_loop, _stop) = connect(&broker, "publisher").await;
    let events = |n: u32| {
        UnsTopic::located(
            "acme/berlin/line-1".parse().expect("location"),
            Class::WorkOrderEvents(Id::new(&format!("wo-{n}")).expect("id")),
        )
    };
    let (consumer, mut inbox, consumer_loop) = connect_durable(&broker, "durable").await;
    consumer
        .subscribe(&TopicFilter::new("uns/v1/+/+/+/_wo/+/events").expect("filter"))
        .await
        .expect("subscribe");
    // Subscribed once a sentinel on a filter subscribed after it arrives (one connection's
    // SUBSCRIBEs are handled in order).
    let sentinel = UnsTopic::located(
        "acme".parse().expect("location"),
        Class::Cmd(vec![Id::new("sentinel").expect("id")]),
    );
    consumer
        .subscribe(&TopicFilter::new(&sentinel.to_string()).expect("filter"))
        .await
        .expect("subscribe");
    tokio::time::timeout(DEADLINE, async {
        loop {
            publisher
                .publish_bytes(&sentinel, bytes::Bytes::from_static(b"{}"))
                .await
                .expect("publish");
            if let Ok(Some(message)) =
                tokio::time::timeout(Duration::from_millis(200), inbox.recv()).await
            {
                consumer.ack(&message).await.expect("ack");
                return;
            }
        }
    })
    .await
    .expect("the sentinel arrives");
    publisher
        .publish_bytes(&events(0), bytes::Bytes::from_static(b"{\"n\":0}"))
        .await
        .expect("publish");
    let first = next_on(&mut inbox, &events(0).to_string()).await;
    consumer.ack(&first).await.expect("ack");
    publisher
        .publish_bytes(&events(1), bytes::Bytes::from_static(b"{\"n\":1}"))
        .await
        .expect("publish");
    let unacked = next_on(&mut inbox, &events(1).to_string()).await;
    assert_eq!(&unacked.payload[..], b"{\"n\":1}");
    // The consumer dies without acknowledging message 1; message 2 is published while it is gone.
    consumer_loop.abort();
    drop(inbox);
    publisher
        .publish_bytes(&events(2), bytes::Bytes::from_static(b"{\"n\":2}"))
        .await
        .expect("publish");
    let (again, mut inbox, _again_loop) = connect_durable(&broker, "durable").await;
    publisher
        .publish_bytes(&events(3), bytes::Bytes::from_static(b"{\"n\":3}"))
        .await
        .expect("publish");
    // In order: the unacknowledged 1 again, 2 from the time it was gone, then 3; never the
    // acknowledged 0.
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        loop {
            let message = inbox.recv().await.expect("inbox open");
            again.ack(&message).await.expect("ack");
            if !message.topic.ends_with("/events") {
                continue;
            }
            seen.push(String::from_utf8_lossy(&message.payload).into_owned());
            if message.topic == events(3).to_string() {
                return;
            }
        }
    })
    .await
    .expect("message 3 arrives");
    assert_eq!(seen, ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]);
}

/// `subscribe_with` takes any filter (`#`, outside the UNS tree too) and delivers what the
/// publisher sent: its QoS (up to the subscription's 2), its retain flag on a live message (Retain
/// As Published), and its MQTT 5 properties.
#[tokio::test]
async fn raw_subscription_delivers_qos_retain_and_v5_properties() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::PublishProperties;
    use uns_client::SubscribeOptions;

    let (broker, _dir) = start_broker().await;
    let (client, mut inbox, _event_loop, _shutdown) = connect(&broker, "browser").await;
    client
        .subscribe_with(
            &TopicFilter::new("#").expect("valid filter"),
            SubscribeOptions {
                max_qos: 2,
                retain_as_published: true,
            },
        )
        .await
        .expect("subscribes");
    // The subscription is in place once our own health arrives through it.
    next_health(&mut inbox, HealthStatus::Running).await;

    let addr = broker.mqtt_addr();
    let options = rumqttc::v5::MqttOptions::new("v5-publisher", addr.ip().to_string(), addr.port());
    let (publisher, mut event_loop) = rumqttc::v5::AsyncClient::new(options, 10);
    let driver = tokio::spawn(async move { while event_loop.poll().await.is_ok() {} });
    let properties = PublishProperties {
        user_properties: vec![("line".to_owned(), "1".to_owned())],
        content_type: Some("text/plain".to_owned()),
        payload_format_indicator: Some(1),
        ..PublishProperties::default()
    };
    publisher
        .publish_with_properties("plant/raw/topic", QoS::ExactlyOnce, true, "42", properties)
        .await
        .expect("queued");
    let message = tokio::time::timeout(DEADLINE, async {
        loop {
            let message = inbox.recv().await.expect("inbox open");
            if message.topic == "plant/raw/topic" {
                return message;
            }
        }
    })
    .await
    .expect("the raw topic arrives");
    driver.abort();
    assert_eq!(&message.payload[..], b"42");
    assert_eq!(message.qos, 2);
    assert!(message.retain, "a live retained publish keeps its flag");
    assert_eq!(
        message.user_properties,
        vec![("line".to_owned(), "1".to_owned())]
    );
    assert_eq!(message.content_type.as_deref(), Some("text/plain"));
    assert_eq!(message.payload_format_indicator, Some(1));
}

/// Issue 10 item 12: every client metric is on the first scrape with 0, before any reconnect or
/// rejection, so dashboards and alerts work from the start. The broker here is unreachable: the
/// series exist anyway.
#[tokio::test]
async fn every_client_metric_is_registered_with_zero_before_anything_happens() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("{err}"));
    let metrics = Metrics::new();
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let (_client, _inbox, _task) = UnsClient::start(
        ClientOptions::new(BrokerUrl::new("127.0.0.1", unused), "svc")
            .unwrap_or_else(|err| panic!("{err}")),
        ClientMetrics::register(&metrics),
        stop.clone(),
    );
    let text = metrics.encode();
    for series in [
        "uns_mqtt_published_total{service=\"svc\"} 0",
        "uns_mqtt_received_total{service=\"svc\"} 0",
        "uns_mqtt_reconnects_total{service=\"svc\"} 0",
        "uns_mqtt_connected{service=\"svc\"} 0",
    ] {
        assert!(text.contains(series), "{series} missing from\n{text}");
    }
}
