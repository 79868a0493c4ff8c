//! Per-account access rules over real sockets: rumqttc 3.1.1 and 5 clients against the embedded
//! broker on 127.0.0.1:0.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use rumqttc::v5::mqttbytes::v5 as mqtt5;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout;
use uns_broker::{Access, AclRule, BrokerConfig, Permission, Secret, User};

type Result<T = ()> = anyhow::Result<T>;

const DEADLINE: Duration = Duration::from_secs(20);

fn user(name: &str, acl: Vec<AclRule>) -> User {
    User {
        username: name.into(),
        secret: Secret::Password(format!("{name}-pw")),
        acl,
    }
}

fn rule(permission: Permission, access: Access, filter: &str) -> AclRule {
    AclRule {
        permission,
        access,
        filter: filter.into(),
    }
}

/// `admin` has no rules (everything); `edge-a` may publish its own Sparkplug group only and
/// subscribe to everything but `$SYS`.
async fn start() -> Result<(uns_broker::BrokerHandle, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse()?,
        ws_listen: None,
        data_dir: dir.path().to_owned(),
        users: vec![
            user("admin", Vec::new()),
            user(
                "edge-a",
                vec![
                    rule(Permission::Deny, Access::Publish, "spBv1.0/STATE/#"),
                    rule(Permission::Allow, Access::Publish, "spBv1.0/%u/#"),
                    rule(Permission::Allow, Access::Subscribe, "#"),
                ],
            ),
        ],
        ..BrokerConfig::default()
    };
    Ok((uns_broker::start(config).await?, dir))
}

/// Runs an event loop, forwarding incoming packets; ends on the first error.
fn pump<P: Send + 'static, E: std::fmt::Display>(
    mut next: impl FnMut() -> std::pin::Pin<
        Box<dyn Future<Output = std::result::Result<Option<P>, E>> + Send>,
    > + Send
    + 'static,
) -> UnboundedReceiver<std::result::Result<P, String>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match next().await {
                Ok(Some(packet)) => {
                    if tx.send(Ok(packet)).is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });
    rx
}

async fn next_matching<P: std::fmt::Debug, T>(
    rx: &mut UnboundedReceiver<std::result::Result<P, String>>,
    what: &str,
    mut pick: impl FnMut(&P) -> Option<T>,
) -> Result<T> {
    let wait = async {
        loop {
            match rx.recv().await {
                Some(Ok(packet)) => {
                    if let Some(found) = pick(&packet) {
                        return Ok(found);
                    }
                }
                Some(Err(e)) => bail!("connection error while waiting for {what}: {e}"),
                None => bail!("event loop ended while waiting for {what}"),
            }
        }
    };
    timeout(DEADLINE, wait)
        .await
        .with_context(|| format!("waiting for {what}"))?
}

type V4Rx = UnboundedReceiver<std::result::Result<rumqttc::Packet, String>>;
type V5Rx = UnboundedReceiver<std::result::Result<rumqttc::v5::Incoming, String>>;

async fn v4(id: &str, name: &str, port: u16) -> Result<(rumqttc::AsyncClient, V4Rx)> {
    let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    options.set_credentials(name, format!("{name}-pw"));
    let (client, eventloop) = rumqttc::AsyncClient::new(options, 100);
    let eventloop = std::sync::Arc::new(tokio::sync::Mutex::new(eventloop));
    let mut rx = pump(move || {
        let eventloop = eventloop.clone();
        Box::pin(async move {
            match eventloop.lock().await.poll().await? {
                rumqttc::Event::Incoming(packet) => Ok::<_, rumqttc::ConnectionError>(Some(packet)),
                rumqttc::Event::Outgoing(_) => Ok(None),
            }
        })
    });
    next_matching(&mut rx, "CONNACK", |p| {
        matches!(p, rumqttc::Packet::ConnAck(_)).then_some(())
    })
    .await?;
    Ok((client, rx))
}

async fn v5(id: &str, name: &str, port: u16) -> Result<(rumqttc::v5::AsyncClient, V5Rx)> {
    let mut options = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", port);
    options.set_credentials(name, format!("{name}-pw"));
    let (client, eventloop) = rumqttc::v5::AsyncClient::new(options, 100);
    let eventloop = std::sync::Arc::new(tokio::sync::Mutex::new(eventloop));
    let mut rx = pump(move || {
        let eventloop = eventloop.clone();
        Box::pin(async move {
            match eventloop.lock().await.poll().await? {
                rumqttc::v5::Event::Incoming(packet) => {
                    Ok::<_, rumqttc::v5::ConnectionError>(Some(packet))
                }
                rumqttc::v5::Event::Outgoing(_) => Ok(None),
            }
        })
    });
    next_matching(&mut rx, "CONNACK", |p| {
        matches!(p, mqtt5::Packet::ConnAck(_)).then_some(())
    })
    .await?;
    Ok((client, rx))
}

/// The first PUBLISH an admin subscriber sees on `spBv1.0/#`: its topic.
async fn first_topic(rx: &mut V4Rx) -> Result<String> {
    next_matching(rx, "a PUBLISH", |p| match p {
        rumqttc::Packet::Publish(publish) => Some(publish.topic.clone()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn v5_refused_publish_gets_0x87_and_is_not_delivered() -> Result {
    let (broker, _dir) = start().await?;
    let port = broker.mqtt_addr().port();
    let (admin, mut admin_rx) = v4("watcher", "admin", port).await?;
    admin
        .subscribe("spBv1.0/#", rumqttc::QoS::AtLeastOnce)
        .await?;
    next_matching(&mut admin_rx, "SUBACK", |p| {
        matches!(p, rumqttc::Packet::SubAck(_)).then_some(())
    })
    .await?;

    let (edge, mut edge_rx) = v5("edge-a-1", "edge-a", port).await?;
    let qos = rumqttc::v5::mqttbytes::QoS::AtLeastOnce;
    edge.publish(
        "spBv1.0/STATE/scada-bridge",
        qos,
        true,
        r#"{"online":false}"#,
    )
    .await?;
    let reason = next_matching(&mut edge_rx, "PUBACK", |p| match p {
        mqtt5::Packet::PubAck(ack) => Some(ack.reason),
        _ => None,
    })
    .await?;
    ensure!(
        reason == mqtt5::PubAckReason::NotAuthorized,
        "refused publish acked {reason:?}"
    );
    // Still connected: its own group goes through, and is the first thing the admin sees.
    edge.publish("spBv1.0/edge-a/NDATA/n1", qos, false, "x")
        .await?;
    let reason = next_matching(&mut edge_rx, "PUBACK", |p| match p {
        mqtt5::Packet::PubAck(ack) => Some(ack.reason),
        _ => None,
    })
    .await?;
    ensure!(
        reason == mqtt5::PubAckReason::Success,
        "allowed publish acked {reason:?}"
    );
    let topic = first_topic(&mut admin_rx).await?;
    ensure!(
        topic == "spBv1.0/edge-a/NDATA/n1",
        "admin first saw {topic}"
    );

    // A SUBSCRIBE outside the rules gets 0x87.
    edge.subscribe("$SYS/#", qos).await?;
    let codes = next_matching(&mut edge_rx, "SUBACK", |p| match p {
        mqtt5::Packet::SubAck(ack) => Some(ack.return_codes.clone()),
        _ => None,
    })
    .await?;
    ensure!(
        codes == vec![mqtt5::SubscribeReasonCode::NotAuthorized],
        "SUBACK {codes:?}"
    );

    // Nothing refused was retained: a new subscriber to that topic first gets a live message
    // published after its SUBACK (a retained one would come with the subscription).
    let (late, mut late_rx) = v4("late", "admin", port).await?;
    late.subscribe("spBv1.0/STATE/scada-bridge", rumqttc::QoS::AtLeastOnce)
        .await?;
    next_matching(&mut late_rx, "SUBACK", |p| {
        matches!(p, rumqttc::Packet::SubAck(_)).then_some(())
    })
    .await?;
    admin
        .publish(
            "spBv1.0/STATE/scada-bridge",
            rumqttc::QoS::AtLeastOnce,
            false,
            "live",
        )
        .await?;
    let payload = next_matching(&mut late_rx, "a PUBLISH", |p| match p {
        rumqttc::Packet::Publish(publish) => Some(publish.payload.clone()),
        _ => None,
    })
    .await?;
    ensure!(
        payload.as_ref() == b"live",
        "late subscriber first got {payload:?}"
    );
    ensure!(
        broker.stats().acl_refused == 2,
        "refusals counted: {:?}",
        broker.stats()
    );
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn v3_refused_publish_is_dropped_and_the_admin_may_do_it() -> Result {
    let (broker, _dir) = start().await?;
    let port = broker.mqtt_addr().port();
    let (admin, mut admin_rx) = v4("watcher", "admin", port).await?;
    admin
        .subscribe("spBv1.0/#", rumqttc::QoS::AtLeastOnce)
        .await?;
    next_matching(&mut admin_rx, "SUBACK", |p| {
        matches!(p, rumqttc::Packet::SubAck(_)).then_some(())
    })
    .await?;

    let (edge, mut edge_rx) = v4("edge-a-3", "edge-a", port).await?;
    let qos = rumqttc::QoS::AtLeastOnce;
    edge.publish("spBv1.0/other-group/NDEATH/n1", qos, false, "x")
        .await?;
    edge.publish("spBv1.0/edge-a/NBIRTH/n1", qos, false, "y")
        .await?;
    let topic = first_topic(&mut admin_rx).await?;
    ensure!(
        topic == "spBv1.0/edge-a/NBIRTH/n1",
        "admin first saw {topic}"
    );
    edge.subscribe("$SYS/broker/uptime", qos).await?;
    let codes = next_matching(&mut edge_rx, "SUBACK", |p| match p {
        rumqttc::Packet::SubAck(ack) => Some(ack.return_codes.clone()),
        _ => None,
    })
    .await?;
    ensure!(
        codes == vec![rumqttc::SubscribeReasonCode::Failure],
        "SUBACK {codes:?}"
    );

    // The account without rules may publish the same topic.
    admin
        .publish("spBv1.0/other-group/NDEATH/n1", qos, false, "z")
        .await?;
    let topic = first_topic(&mut admin_rx).await?;
    ensure!(
        topic == "spBv1.0/other-group/NDEATH/n1",
        "admin's own publish: {topic}"
    );
    ensure!(
        broker.stats().acl_refused == 2,
        "refusals counted: {:?}",
        broker.stats()
    );
    broker.shutdown().await?;
    Ok(())
}
