//! Publishes one production order, retained, as the ERP bridge would, so the workorders service
//! can be tried without it: `cargo run -p uns-workorders --example publish_order -- 127.0.0.1:1883 PO-1 500`
//! (order for the demo plant's line 1).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uns_client::{BrokerUrl, ClientMetrics, ClientOptions, Metrics, UnsClient};
use uns_model::payload::{ProductionOrder, Quantity, SchemaTag, Timestamp, Uom};
use uns_model::topic::{Class, Location, UnsTopic, slug};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let broker = args.next().unwrap_or_else(|| "127.0.0.1:1883".to_owned());
    let erp_ref = args.next().unwrap_or_else(|| "PO-1".to_owned());
    let qty: f64 = args.next().unwrap_or_else(|| "500".to_owned()).parse()?;
    let (host, port) = broker
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("broker as HOST:PORT"))?;
    let stop = CancellationToken::new();
    let (client, _inbox, _) = UnsClient::start(
        ClientOptions::new(BrokerUrl::new(host, port.parse()?), "publish-order")?,
        ClientMetrics::register(&Metrics::new()),
        stop.clone(),
    );
    client.wait_connected(Duration::from_secs(5)).await?;
    let line: Location = "acme/berlin/packaging/line-1".parse()?;
    let order = ProductionOrder {
        schema: SchemaTag::default(),
        id: slug(&erp_ref),
        erp_ref: erp_ref.clone(),
        revision: 1,
        material: "BOTTLE-1L".to_owned(),
        description: Some("Demo order".to_owned()),
        quantity: Quantity::new(qty, Uom::EA),
        earliest_start_time: None,
        latest_end_time: None,
        hierarchy_scope: line,
        equipment: Some("WC-4711".to_owned()),
        priority: None,
        parameters: Vec::new(),
        operations: Vec::new(),
        components: Vec::new(),
        received_at: Timestamp::from(chrono::Utc::now()),
    };
    let site: Location = "acme/berlin".parse()?;
    client
        .publish(
            &UnsTopic::located(site, Class::ErpProductionOrder(order.id.clone())),
            &order,
        )
        .await?;
    client.shutdown(Duration::from_secs(2)).await;
    stop.cancel();
    Ok(())
}
