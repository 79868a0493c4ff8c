//! The bridge's store (`{data_dir}/erp-bridge/erp-bridge.redb`, layouts in `docs/STORAGE.md`): the
//! material master, the orders received (for idempotency and revisions), and the outbox of
//! confirmations to post.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uns_model::payload::{ProductionOrder, Timestamp, WorkOrderEvent};
use uns_store::{Json, Outbox, ReadableTx, Store, StoreError, Str, Table};

use crate::validate::Material;

/// Material master: material id → [`Material`].
pub const MATERIALS: Table<Str, Json<Material>> = Table::new("materials_v1");
/// Orders received: ERP id → [`StoredOrder`].
pub const ORDERS: Table<Str, Json<StoredOrder>> = Table::new("orders_v1");

/// The outbox of confirmations (`outbox.confirmations.*`).
pub fn confirmations() -> Outbox {
    Outbox::new("confirmations")
}

/// An order as last accepted, with the fingerprint of its content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredOrder {
    /// SHA-256 (hex) of the order's content without `revision` and `received_at`.
    pub fingerprint: String,
    /// The order as published.
    pub order: ProductionOrder,
}

/// One outbox entry's payload: the `confirmation_requested` event and the topic it came on, so
/// the outcome is published next to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// The `_wo/{id}/events` topic the request arrived on.
    pub topic: String,
    /// The request.
    pub event: WorkOrderEvent,
}

/// What accepting an order did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new order (revision 1).
    Created,
    /// A changed order: revision counted up.
    Revised,
    /// The same content again: nothing published.
    Unchanged,
}

/// How `POST /api/v1/master-data/materials` combines the body with the master.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadMode {
    /// The body becomes the whole master.
    #[default]
    Replace,
    /// The body's materials are added or updated; the others stay.
    Merge,
}

/// The content fingerprint of an order (independent of revision and receive time).
pub fn fingerprint(order: &ProductionOrder) -> String {
    let mut content = order.clone();
    content.revision = 1;
    content.received_at = Timestamp::from_unix_ms(0).unwrap_or(order.received_at);
    // A serializable payload type: serde_json cannot fail on it.
    let bytes = serde_json::to_vec(&content).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Stores the orders of one request in one transaction: each new, revised (revision + 1) or
/// unchanged. Returns each order as it now stands with the outcome.
pub async fn accept(
    store: &Store,
    orders: Vec<ProductionOrder>,
) -> Result<Vec<(Outcome, ProductionOrder)>, StoreError> {
    store
        .write(move |tx| {
            let mut results = Vec::with_capacity(orders.len());
            for mut order in orders {
                let print = fingerprint(&order);
                let outcome = match tx.get(&ORDERS, &order.erp_ref)? {
                    Some(known) if known.fingerprint == print => {
                        results.push((Outcome::Unchanged, known.order));
                        continue;
                    }
                    Some(known) => {
                        order.revision = known.order.revision.saturating_add(1);
                        Outcome::Revised
                    }
                    None => Outcome::Created,
                };
                let stored = StoredOrder {
                    fingerprint: print,
                    order: order.clone(),
                };
                tx.insert(&ORDERS, &order.erp_ref, &stored)?;
                results.push((outcome, order));
            }
            Ok(results)
        })
        .await
}

/// Every order received, by ERP id.
pub async fn orders(store: &Store) -> Result<Vec<ProductionOrder>, StoreError> {
    store
        .read(|tx| {
            Ok(tx
                .range(&ORDERS, ..)?
                .into_iter()
                .map(|(_, stored)| stored.order)
                .collect())
        })
        .await
}

/// The material master.
pub async fn materials(store: &Store) -> Result<BTreeMap<String, Material>, StoreError> {
    store
        .read(|tx| Ok(tx.range(&MATERIALS, ..)?.into_iter().collect()))
        .await
}

/// Loads materials into the master; returns the master's size after.
pub async fn load_materials(
    store: &Store,
    materials: Vec<Material>,
    mode: LoadMode,
) -> Result<u64, StoreError> {
    store
        .write(move |tx| {
            if mode == LoadMode::Replace {
                tx.remove_range(&MATERIALS, ..)?;
            }
            for material in &materials {
                tx.insert(&MATERIALS, &material.id, material)?;
            }
            tx.len(&MATERIALS)
        })
        .await
}
