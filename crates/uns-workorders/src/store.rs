//! The service's redb file (`{data_dir}/workorders/workorders.redb`): orders, the counters'
//! last-seen totals, learned counting cells and the production-order versions applied. The
//! layouts are in `docs/STORAGE.md`.

use std::collections::BTreeMap;
use std::path::Path;

use uns_model::topic::{Id, Location};
use uns_store::{Json, ReadableTx, Seen, Store, StoreError, Str, Table};

use crate::engine::{CounterRecord, Engine, OrderRecord, Outcome};

/// Work order id → its record.
const ORDERS: Table<Str, Json<OrderRecord>> = Table::new("orders_v1");
/// `{location}/{kind}` of a `_count` topic → the last total seen.
const COUNTERS: Table<Str, Json<CounterRecord>> = Table::new("counters_v1");
/// Line → its learned counting cell.
const COUNTING_CELLS: Table<Str, Json<Location>> = Table::new("counting_cells_v1");

/// The name of the [`Seen`] set of production-order versions (`{id}@{revision}`).
const SEEN_ORDERS: &str = "production-orders";

/// The state the engine starts from.
pub type Loaded = (
    BTreeMap<Id, OrderRecord>,
    BTreeMap<String, CounterRecord>,
    BTreeMap<Location, Location>,
);

/// The service's store.
pub struct OrderStore {
    store: Store,
    seen: Seen,
}

impl OrderStore {
    /// Opens (or creates) the file.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let store = tokio::task::spawn_blocking(move || Store::open(&path))
            .await
            .map_err(|err| StoreError::Panicked(err.to_string()))??;
        Ok(Self {
            store,
            seen: Seen::new(SEEN_ORDERS),
        })
    }

    /// Everything stored.
    pub async fn load(&self) -> Result<Loaded, StoreError> {
        self.store
            .read(|tx| {
                let mut orders = BTreeMap::new();
                for (id, record) in tx.iter(&ORDERS)? {
                    if let Ok(id) = Id::new(&id) {
                        orders.insert(id, record);
                    }
                }
                let counters = tx.iter(&COUNTERS)?.into_iter().collect();
                let mut cells = BTreeMap::new();
                for (line, cell) in tx.iter(&COUNTING_CELLS)? {
                    if let Ok(line) = line.parse::<Location>() {
                        cells.insert(line, cell);
                    }
                }
                Ok((orders, counters, cells))
            })
            .await
    }

    /// Whether the production-order version `key` was applied before.
    pub async fn seen(&self, key: &str) -> Result<bool, StoreError> {
        let seen = self.seen.clone();
        let key = key.to_owned();
        self.store.read(move |tx| seen.contains(tx, &key)).await
    }

    /// Writes what `outcome` changed (and, when given, marks the production-order version
    /// `seen_key` applied) in one durable transaction.
    pub async fn save(
        &self,
        engine: &Engine,
        outcome: &Outcome,
        seen_key: Option<String>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let orders: Vec<(String, OrderRecord)> = outcome
            .dirty_orders
            .iter()
            .filter_map(|id| Some((id.to_string(), engine.order(id)?.clone())))
            .collect();
        let counters: Vec<(String, CounterRecord)> = outcome
            .dirty_counters
            .iter()
            .filter_map(|key| Some((key.clone(), *engine.counter(key)?)))
            .collect();
        let cells: Vec<(String, Location)> = outcome
            .dirty_cells
            .iter()
            .filter_map(|line| Some((line.to_string(), engine.learned_cell(line)?.clone())))
            .collect();
        if orders.is_empty() && counters.is_empty() && cells.is_empty() && seen_key.is_none() {
            return Ok(());
        }
        let seen = self.seen.clone();
        self.store
            .write(move |tx| {
                for (id, record) in &orders {
                    tx.insert(&ORDERS, id, record)?;
                }
                for (key, record) in &counters {
                    tx.insert(&COUNTERS, key, record)?;
                }
                for (line, cell) in &cells {
                    tx.insert(&COUNTING_CELLS, line, cell)?;
                }
                if let Some(key) = &seen_key {
                    seen.insert(tx, key, now_ms)?;
                }
                Ok(())
            })
            .await
    }

    /// Finishes the writes and closes the file (so the next run can open it).
    pub async fn close(self) {
        let store = self.store;
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
}
