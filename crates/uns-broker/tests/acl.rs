//! Roles, access rules and reserved client ids over real sockets: rumqttc 3.1.1 and 5 clients
//! against the embedded broker on 127.0.0.1:0. The attacks are those of issue 14: a fake
//! retained STATE of the SCADA host, an NDEATH of someone else's group (published or as a Will),
//! a fake service health, an empty retained `_meta`, and taking over a service's client id.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use rumqttc::v5::mqttbytes::v5 as mqtt5;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout;
use uns_broker::{Access, AclRule, BrokerConfig, Permission, Role, Secret, User};

type Result<T = ()> = anyhow::Result<T>;

const DEADLINE: Duration = Duration::from_secs(20);

const STATE: &str = "spBv1.0/STATE/scada-bridge";
const META: &str = "uns/v1/acme/berlin/_meta";
const HEALTH: &str = "uns/v1/_services/scada-bridge";
const FOREIGN_NDEATH: &str = "spBv1.0/acme-berlin/NDEATH/line-1";

fn user(name: &str, role: Option<Role>) -> User {
    User {
        role,
        ..User::new(name, Secret::Password(format!("{name}-pw")))
    }
}

fn rule(permission: Permission, access: Access, filter: &str) -> AclRule {
    AclRule {
        permission,
        access,
        filter: filter.into(),
    }
}

/// `admin`; `viewer` (no role: the default); `edge-b` of group `other-group`; `scada-bridge`
/// and `meta` (service accounts by name); `operator`; `edge-a`, a viewer with rules.
async fn start() -> Result<(uns_broker::BrokerHandle, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse()?,
        ws_listen: None,
        data_dir: dir.path().to_owned(),
        users: vec![
            user("admin", Some(Role::Admin)),
            user("viewer", None),
            User {
                groups: vec!["other-group".into()],
                ..user("edge-b", Some(Role::Edge))
            },
            user("scada-bridge", None),
            user("meta", None),
            user("operator", Some(Role::Operator)),
            User {
                acl: vec![
                    rule(Permission::Deny, Access::Publish, "spBv1.0/STATE/#"),
                    rule(Permission::Allow, Access::Publish, "spBv1.0/%u/#"),
                    rule(Permission::Deny, Access::Subscribe, "$SYS/#"),
                ],
                ..user("edge-a", None)
            },
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

fn v4_options(id: &str, name: &str, port: u16) -> rumqttc::MqttOptions {
    let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    options.set_credentials(name, format!("{name}-pw"));
    options
}

fn v5_options(id: &str, name: &str, port: u16) -> rumqttc::v5::MqttOptions {
    let mut options = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", port);
    options.set_credentials(name, format!("{name}-pw"));
    options
}

async fn v4(id: &str, name: &str, port: u16) -> Result<(rumqttc::AsyncClient, V4Rx)> {
    let (client, eventloop) = rumqttc::AsyncClient::new(v4_options(id, name, port), 100);
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

async fn v5_with(options: rumqttc::v5::MqttOptions) -> Result<(rumqttc::v5::AsyncClient, V5Rx)> {
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

async fn v5(id: &str, name: &str, port: u16) -> Result<(rumqttc::v5::AsyncClient, V5Rx)> {
    v5_with(v5_options(id, name, port)).await
}

/// The CONNACK code of a refused MQTT 5 connect (an error if it was accepted).
async fn v5_refusal(options: rumqttc::v5::MqttOptions) -> Result<mqtt5::ConnectReturnCode> {
    let (_client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 10);
    match timeout(DEADLINE, eventloop.poll()).await? {
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => Ok(code),
        other => bail!("expected a refused CONNECT, got {other:?}"),
    }
}

/// The CONNACK code of a refused MQTT 3.1.1 connect.
async fn v4_refusal(options: rumqttc::MqttOptions) -> Result<rumqttc::ConnectReturnCode> {
    let (_client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    match timeout(DEADLINE, eventloop.poll()).await? {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => Ok(code),
        other => bail!("expected a refused CONNECT, got {other:?}"),
    }
}

async fn puback(rx: &mut V5Rx) -> Result<mqtt5::PubAckReason> {
    next_matching(rx, "PUBACK", |p| match p {
        mqtt5::Packet::PubAck(ack) => Some(ack.reason),
        _ => None,
    })
    .await
}

async fn suback(rx: &mut V5Rx) -> Result<Vec<mqtt5::SubscribeReasonCode>> {
    next_matching(rx, "SUBACK", |p| match p {
        mqtt5::Packet::SubAck(ack) => Some(ack.return_codes.clone()),
        _ => None,
    })
    .await
}

const QOS1: rumqttc::v5::mqttbytes::QoS = rumqttc::v5::mqttbytes::QoS::AtLeastOnce;

/// Publishes at QoS 1 and returns the PUBACK reason.
async fn publish5(
    client: &rumqttc::v5::AsyncClient,
    rx: &mut V5Rx,
    topic: &str,
    retain: bool,
    payload: &'static [u8],
) -> Result<mqtt5::PubAckReason> {
    client.publish(topic, QOS1, retain, payload).await?;
    puback(rx).await
}

/// Every retained message a fresh admin subscriber to `#` receives until `marker` (published
/// live by the admin after the subscription), as (topic, payload).
async fn retained_snapshot(port: u16, id: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let (client, mut rx) = v5(id, "admin", port).await?;
    client.subscribe("#", QOS1).await?;
    suback(&mut rx).await?;
    let marker = format!("test/marker/{id}");
    client.publish(&marker, QOS1, false, "m").await?;
    let mut seen = Vec::new();
    loop {
        let (topic, payload) = next_matching(&mut rx, "a PUBLISH", |p| match p {
            mqtt5::Packet::Publish(publish) => Some((
                String::from_utf8_lossy(&publish.topic).into_owned(),
                publish.payload.to_vec(),
            )),
            _ => None,
        })
        .await?;
        if topic == marker {
            return Ok(seen);
        }
        seen.push((topic, payload));
    }
}

/// The plant's real retained documents, published by their owners' accounts.
async fn seed_plant(port: u16) -> Result {
    let (bridge, mut bridge_rx) = v5("uns-scada-bridge", "scada-bridge", port).await?;
    for (topic, payload) in [
        (STATE, &br#"{"online":true,"timestamp":1}"#[..]),
        (HEALTH, br#"{"status":"running"}"#),
    ] {
        let reason = publish5(&bridge, &mut bridge_rx, topic, true, payload).await?;
        ensure!(
            reason == mqtt5::PubAckReason::Success,
            "{topic}: {reason:?}"
        );
    }
    let (meta, mut meta_rx) = v5("uns-meta", "meta", port).await?;
    let reason = publish5(&meta, &mut meta_rx, META, true, br#"{"level":"Site"}"#).await?;
    ensure!(reason == mqtt5::PubAckReason::Success, "{META}: {reason:?}");
    bridge.disconnect().await?;
    meta.disconnect().await?;
    Ok(())
}

/// Issue 14's spoofs, as a viewer and as an edge account of another group: every one refused
/// with 0x87 (PUBACK, or CONNACK for the Will), nothing delivered or retained, the plant's
/// retained STATE, health and `_meta` untouched; the same as an admin succeeds.
#[tokio::test]
async fn spoofs_by_a_viewer_or_a_foreign_edge_are_refused_and_an_admin_may() -> Result {
    let (broker, _dir) = start().await?;
    let port = broker.mqtt_addr().port();
    seed_plant(port).await?;
    let before = retained_snapshot(port, "before").await?;
    ensure!(before.len() == 3, "seeded retained: {before:?}");

    let attacks: [(&str, bool, &'static [u8]); 5] = [
        (
            STATE,
            true,
            br#"{"online":false,"timestamp":99999999999999}"#,
        ),
        (FOREIGN_NDEATH, false, b"bdseq 0"),
        (HEALTH, true, br#"{"status":"stopped"}"#),
        ("uns/v1/_services/scada-bridge", true, b""),
        (META, true, b""),
    ];
    for attacker in ["viewer", "edge-b"] {
        let (client, mut rx) = v5(&format!("{attacker}-1"), attacker, port).await?;
        for (topic, retain, payload) in attacks {
            let reason = publish5(&client, &mut rx, topic, retain, payload).await?;
            ensure!(
                reason == mqtt5::PubAckReason::NotAuthorized,
                "{attacker} publishing {topic}: {reason:?}"
            );
        }
        // The NDEATH as a Will is refused at CONNECT.
        let mut options = v5_options(&format!("{attacker}-will"), attacker, port);
        options.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
            FOREIGN_NDEATH,
            "bdseq 0",
            QOS1,
            false,
            None,
        ));
        let code = v5_refusal(options).await?;
        ensure!(
            code == mqtt5::ConnectReturnCode::NotAuthorized,
            "{attacker}'s NDEATH Will: {code:?}"
        );
        let mut options = v4_options(&format!("{attacker}-will3"), attacker, port);
        options.set_last_will(rumqttc::LastWill::new(
            FOREIGN_NDEATH,
            "bdseq 0",
            rumqttc::QoS::AtLeastOnce,
            false,
        ));
        let code = v4_refusal(options).await?;
        ensure!(
            code == rumqttc::ConnectReturnCode::NotAuthorized,
            "{attacker}'s NDEATH Will over 3.1.1: {code:?}"
        );
    }
    // Nothing refused was delivered or retained.
    let after = retained_snapshot(port, "after").await?;
    ensure!(after == before, "retained changed: {before:?} → {after:?}");
    // 5 PUBLISHes and 2 Wills (v5, 3.1.1) per attacker.
    ensure!(
        broker.stats().acl_refused == 14,
        "refusals counted: {:?}",
        broker.stats()
    );

    // The same as an admin succeeds.
    let (admin, mut admin_rx) = v5("admin-1", "admin", port).await?;
    for (topic, retain, payload) in attacks {
        let reason = publish5(&admin, &mut admin_rx, topic, retain, payload).await?;
        ensure!(
            reason == mqtt5::PubAckReason::Success,
            "admin publishing {topic}: {reason:?}"
        );
    }
    let by_admin = retained_snapshot(port, "by-admin").await?;
    ensure!(
        by_admin.len() == 1 && by_admin[0].0 == STATE,
        "after the admin's changes (health and _meta deleted, STATE overwritten): {by_admin:?}"
    );
    broker.shutdown().await?;
    Ok(())
}

/// An edge account publishes its own group's Sparkplug messages and reads its commands and
/// STATE, nothing else; 3.1.1 refusals are dropped and counted.
#[tokio::test]
async fn an_edge_account_writes_its_group_only() -> Result {
    let (broker, _dir) = start().await?;
    let port = broker.mqtt_addr().port();
    let (edge, mut rx) = v5("edge-b-1", "edge-b", port).await?;
    for (topic, expected) in [
        (
            "spBv1.0/other-group/NBIRTH/n1",
            mqtt5::PubAckReason::Success,
        ),
        (
            "spBv1.0/other-group/DDATA/n1/d1",
            mqtt5::PubAckReason::Success,
        ),
        (
            "spBv1.0/other-group/NCMD/n1",
            mqtt5::PubAckReason::NotAuthorized,
        ),
        ("uns/v1/acme/_errors", mqtt5::PubAckReason::NotAuthorized),
    ] {
        let reason = publish5(&edge, &mut rx, topic, false, b"x").await?;
        ensure!(reason == expected, "{topic}: {reason:?}");
    }
    for (filter, allowed) in [
        ("spBv1.0/other-group/NCMD/n1", true),
        ("spBv1.0/other-group/DCMD/n1/+", true),
        ("spBv1.0/STATE/+", true),
        ("spBv1.0/acme-berlin/NCMD/+", false),
        ("uns/v1/#", false),
        ("#", false),
    ] {
        edge.subscribe(filter, QOS1).await?;
        let codes = suback(&mut rx).await?;
        let granted = codes == vec![mqtt5::SubscribeReasonCode::Success(QOS1)];
        ensure!(granted == allowed, "SUBSCRIBE {filter}: {codes:?}");
    }

    // 3.1.1: the refused publish is dropped; the allowed one after it is the first delivered.
    let (watcher, mut watcher_rx) = v4("watcher", "admin", port).await?;
    watcher
        .subscribe("spBv1.0/#", rumqttc::QoS::AtLeastOnce)
        .await?;
    next_matching(&mut watcher_rx, "SUBACK", |p| {
        matches!(p, rumqttc::Packet::SubAck(_)).then_some(())
    })
    .await?;
    let (edge3, mut edge3_rx) = v4("edge-b-3", "edge-b", port).await?;
    let qos = rumqttc::QoS::AtLeastOnce;
    edge3.subscribe("uns/v1/#", qos).await?;
    let codes = next_matching(&mut edge3_rx, "SUBACK", |p| match p {
        rumqttc::Packet::SubAck(ack) => Some(ack.return_codes.clone()),
        _ => None,
    })
    .await?;
    ensure!(
        codes == vec![rumqttc::SubscribeReasonCode::Failure],
        "3.1.1 SUBACK {codes:?}"
    );
    edge3.publish(FOREIGN_NDEATH, qos, false, "x").await?;
    edge3
        .publish("spBv1.0/other-group/NDATA/n1", qos, false, "y")
        .await?;
    let topic = next_matching(&mut watcher_rx, "a PUBLISH", |p| match p {
        rumqttc::Packet::Publish(publish) => Some(publish.topic.clone()),
        _ => None,
    })
    .await?;
    ensure!(
        topic == "spBv1.0/other-group/NDATA/n1",
        "first delivered: {topic}"
    );
    ensure!(
        broker.stats().acl_refused == 7,
        "refusals counted: {:?}",
        broker.stats()
    );
    broker.shutdown().await?;
    Ok(())
}

/// A service account publishes exactly its service's topics (derived from the owner column);
/// an operator sends commands and corrections but no machine data, and answers on its own reply
/// topic only; rules come before the role.
#[tokio::test]
async fn service_and_operator_accounts_write_what_they_own() -> Result {
    let (broker, _dir) = start().await?;
    let port = broker.mqtt_addr().port();
    let cell = "uns/v1/acme/berlin/packaging/line-1/filler";
    let cases: [(&str, &str, String, bool); 16] = [
        (
            "scada-bridge",
            "uns-scada-bridge",
            format!("{cell}/_tag/temperature"),
            true,
        ),
        (
            "scada-bridge",
            "uns-scada-bridge",
            format!("{cell}/_state"),
            true,
        ),
        ("scada-bridge", "uns-scada-bridge", STATE.to_owned(), true),
        ("scada-bridge", "uns-scada-bridge", HEALTH.to_owned(), true),
        (
            "scada-bridge",
            "uns-scada-bridge",
            format!("{cell}/_wo/wo-1"),
            false,
        ),
        (
            "scada-bridge",
            "uns-scada-bridge",
            "uns/v1/_services/oee".to_owned(),
            false,
        ),
        ("scada-bridge", "uns-scada-bridge", META.to_owned(), false),
        ("meta", "uns-meta", META.to_owned(), true),
        ("meta", "uns-meta", STATE.to_owned(), false),
        ("operator", "op-1", format!("{cell}/_cmd/wo/release"), true),
        ("operator", "op-1", format!("{cell}/_count/events"), true),
        ("operator", "op-1", format!("{cell}/_state"), false),
        // Its own reply topic (its client id), not another client's.
        ("operator", "op-1", "uns/v1/_replies/op-1".to_owned(), true),
        ("operator", "op-1", "uns/v1/_replies/op-2".to_owned(), false),
        ("edge-a", "c-a", "spBv1.0/edge-a/NDATA/n1".to_owned(), true),
        ("edge-a", "c-a", STATE.to_owned(), false),
    ];
    let mut clients = std::collections::HashMap::new();
    for (account, client_id, topic, allowed) in &cases {
        if !clients.contains_key(account) {
            clients.insert(*account, v5(client_id, account, port).await?);
        }
        let (client, rx) = clients.get_mut(account).context("client")?;
        let reason = publish5(client, rx, topic, false, b"{}").await?;
        let expected = if *allowed {
            mqtt5::PubAckReason::Success
        } else {
            mqtt5::PubAckReason::NotAuthorized
        };
        ensure!(
            reason == expected,
            "{account} publishing {topic}: {reason:?}"
        );
    }
    // edge-a's rule denies `$SYS/#`; its viewer role reads the rest.
    let (client, rx) = clients.get_mut("edge-a").context("client")?;
    client.subscribe("$SYS/#", QOS1).await?;
    let codes = suback(rx).await?;
    ensure!(
        codes == vec![mqtt5::SubscribeReasonCode::NotAuthorized],
        "{codes:?}"
    );
    client.subscribe("uns/v1/#", QOS1).await?;
    let codes = suback(rx).await?;
    ensure!(
        codes == vec![mqtt5::SubscribeReasonCode::Success(QOS1)],
        "{codes:?}"
    );
    broker.shutdown().await?;
    Ok(())
}

/// A service's client ids are its account's: another account (or an anonymous client) using
/// the bridge's id is refused at CONNECT with "not authorized", and the bridge's own session
/// is not taken over.
#[tokio::test]
async fn a_services_client_id_is_refused_to_other_accounts() -> Result {
    let (broker, _dir) = start().await?;
    let port = broker.mqtt_addr().port();
    let (bridge, mut bridge_rx) = v5("uns-scada-bridge", "scada-bridge", port).await?;

    let code = v5_refusal(v5_options("uns-scada-bridge", "admin", port)).await?;
    ensure!(
        code == mqtt5::ConnectReturnCode::NotAuthorized,
        "v5: {code:?}"
    );
    let code = v4_refusal(v4_options("uns-scada-bridge-sparkplug", "viewer", port)).await?;
    ensure!(
        code == rumqttc::ConnectReturnCode::NotAuthorized,
        "3.1.1: {code:?}"
    );

    // The bridge's connection is the same one: it publishes, and it was never disconnected
    // (the pump would have reported the error instead of the PUBACK).
    let reason = publish5(&bridge, &mut bridge_rx, STATE, true, b"{}").await?;
    ensure!(reason == mqtt5::PubAckReason::Success, "{reason:?}");
    ensure!(
        broker.stats().clients_connected == 1,
        "{:?}",
        broker.stats()
    );
    ensure!(broker.stats().acl_refused == 2, "{:?}", broker.stats());
    // A client id of a service without an account is free.
    let (_oee, _oee_rx) = v5("uns-oee", "viewer", port).await?;
    broker.shutdown().await?;
    Ok(())
}

/// Accounts the embedding program adds (`internal_users`) do not close the anonymous default:
/// anonymous clients keep every right while no account is configured, but cannot use an
/// internal service account's client ids, and the account's password is checked.
#[tokio::test]
async fn internal_accounts_keep_the_anonymous_default() -> Result {
    let dir = tempfile::tempdir()?;
    let broker = uns_broker::start(BrokerConfig {
        listen: "127.0.0.1:0".parse()?,
        ws_listen: None,
        data_dir: dir.path().to_owned(),
        internal_users: vec![User {
            service: Some("scada-bridge".into()),
            ..user("internal-bridge", Some(Role::Service))
        }],
        ..BrokerConfig::default()
    })
    .await?;
    let port = broker.mqtt_addr().port();
    let (anonymous, mut rx) =
        v5_with(rumqttc::v5::MqttOptions::new("explorer", "127.0.0.1", port)).await?;
    let reason = publish5(&anonymous, &mut rx, META, true, b"{}").await?;
    ensure!(reason == mqtt5::PubAckReason::Success, "{reason:?}");
    let code = v5_refusal(rumqttc::v5::MqttOptions::new(
        "uns-scada-bridge",
        "127.0.0.1",
        port,
    ))
    .await?;
    ensure!(code == mqtt5::ConnectReturnCode::NotAuthorized, "{code:?}");
    let mut wrong = v5_options("uns-scada-bridge", "internal-bridge", port);
    wrong.set_credentials("internal-bridge", "guess");
    let code = v5_refusal(wrong).await?;
    ensure!(
        code == mqtt5::ConnectReturnCode::BadUserNamePassword,
        "{code:?}"
    );
    let (bridge, mut bridge_rx) = v5("uns-scada-bridge", "internal-bridge", port).await?;
    let reason = publish5(&bridge, &mut bridge_rx, META, true, b"{}").await?;
    ensure!(reason == mqtt5::PubAckReason::NotAuthorized, "{reason:?}");
    broker.shutdown().await?;
    Ok(())
}
