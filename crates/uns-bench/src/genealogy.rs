//! Genealogy benchmark: a generated year of a multi-level plant in the genealogy ledger
//! (`uns_genealogy::Ledger` on a real redb file), [`run`].
//!
//! The plant (a bakery with rework), per day, in this order:
//!
//! | step | per day | inputs → outputs | edges |
//! |---|---|---|---|
//! | receive | 40 raw lots (5 ingredients, 3 packaging materials) | → 1 | 0 |
//! | mix | 400 | 3 ingredient lots of the last 2 days, and in 30 % of mixes 1 baked lot of the day before (rework) → 1 | 3.3 |
//! | bake | 950 | 1 mix of the day + film + tray → 1 | 3 |
//! | split | 200 | 1 baked lot of the day → 2 sublots | 2 |
//! | pack | 800 | 2 of the day's baked lots and sublots + carton → 1 | 3 |
//! | rework loop | 10 | a pack lot → itself | 1 |
//! | merge | 100 pallets | 10 pack lots of the day → 1 | 10 |
//! | ship | 100 | 1 pallet to a customer | 0 |
//!
//! That is 2 690 lots, ~7 980 edges and 2 600 events a day: 1 M lots take 372 days and give
//! ~2.9 M edges. The rework makes the graph deep across days (a pallet's inputs reach back
//! through yesterday's bakes), so depth 5 and depth 20 answer differently. Quantities are large
//! enough that no event is refused; [`run`] checks that.
//!
//! Figures:
//! 1. Bulk ingest: the generated events through [`Ledger::apply_batch`], `batch` per commit.
//! 2. Durable ingest, as the service applies them: `durable_events` more transforms, one
//!    [`Ledger::apply`] (one fsynced commit) each, on the full file.
//! 3. Trace latency: `traces` backward traces from random pallets and forward traces from
//!    random ingredient lots, at depth 5 and 20 (the answer includes the mass balance), with the
//!    lots each answer holds.
//! 4. Store size per million events (the file, and a copy written in one transaction), and
//!    the time `verify` takes over the whole chain.

use std::fmt::Write as _;
use std::path::PathBuf;

use tokio::time::Instant;
use uns_genealogy::{Direction, Ledger, Outcome, Tolerances, TraceQuery};
use uns_model::payload::{
    EventHeader, GenealogyEvent, GenealogyKind, LotQuantity, Quantity, SchemaTag, Timestamp, Uom,
};
use uns_model::topic::{Id, Location};
use uns_store::StoreError;
use uuid::Uuid;

use crate::report::MachineInfo;

/// Lots the plant makes per day (see the module table).
pub const LOTS_PER_DAY: usize = 40 + 400 + 950 + 2 * 200 + 800 + 100;

const INGREDIENTS: [&str; 5] = ["flour", "sugar", "salt", "yeast", "butter"];
const PACKAGING: [&str; 3] = ["film", "tray", "carton"];
/// 2025-01-01T00:00:00Z.
const YEAR_START_MS: i64 = 1_735_689_600_000;
const DAY_MS: i64 = 86_400_000;

/// Knobs of [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenealogyBenchOptions {
    /// Directory to create the temporary store in.
    pub dir: PathBuf,
    /// Lots to generate (rounded up to whole days of [`LOTS_PER_DAY`]).
    pub lots: usize,
    /// Events per commit while generating.
    pub batch: usize,
    /// Events applied one per durable commit, for the service's ingest rate.
    pub durable_events: usize,
    /// Traces timed per direction and depth.
    pub traces: usize,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for GenealogyBenchOptions {
    /// The system temp dir, 1 M lots, 2 000 events per commit, 500 durable events, 1 000
    /// traces per figure, seed 7.
    fn default() -> Self {
        Self {
            dir: std::env::temp_dir(),
            lots: 1_000_000,
            batch: 2_000,
            durable_events: 500,
            traces: 1_000,
            seed: 7,
        }
    }
}

/// What went wrong in [`run`].
#[derive(Debug, thiserror::Error)]
pub enum GenealogyBenchError {
    /// The temporary directory could not be created.
    #[error("creating a temporary directory in {path}: {source}")]
    TempDir {
        /// The parent asked for.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A generated event was refused, or an answer came out wrong.
    #[error("genealogy benchmark check failed: {0}")]
    Check(String),
}

/// The latency of one kind of trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceFigure {
    /// Backward (from pallets) or forward (from ingredient lots).
    pub direction: Direction,
    /// The depth asked for.
    pub depth: u32,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Slowest, µs.
    pub max_us: f64,
    /// Mean lots per answer.
    pub mean_lots: f64,
    /// Most lots in one answer.
    pub max_lots: usize,
    /// Share of answers the depth limit cut.
    pub truncated_share: f64,
}

/// The figures of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct GenealogyBenchReport {
    /// When it ran.
    pub date: String,
    /// Where it ran.
    pub machine: MachineInfo,
    /// The options of the run.
    pub options: GenealogyBenchOptions,
    /// Days generated.
    pub days: usize,
    /// Lots in the ledger after generation (before the durable figure adds its own).
    pub n_lots: u64,
    /// Edges (input → output links) generated.
    pub n_edges: u64,
    /// Events generated (chain records before the durable figure adds its own).
    pub n_events: u64,
    /// Bulk ingest, events per second.
    pub bulk_events_per_s: f64,
    /// Durable ingest (one commit per event), events per second.
    pub durable_events_per_s: f64,
    /// Durable ingest latency p50, µs.
    pub durable_p50_us: f64,
    /// Durable ingest latency p99, µs.
    pub durable_p99_us: f64,
    /// Trace figures: backward and forward at depth 5 and 20.
    pub traces: Vec<TraceFigure>,
    /// File size after generation, bytes.
    pub store_bytes: u64,
    /// Size of a copy of it written in one transaction (`Store::backup`), bytes.
    pub copy_bytes: u64,
    /// Seconds `verify` took over the whole chain.
    pub verify_secs: f64,
}

impl GenealogyBenchReport {
    /// Bytes of store per million events.
    pub fn bytes_per_million_events(&self) -> f64 {
        self.store_bytes as f64 / self.n_events.max(1) as f64 * 1e6
    }

    /// The report as a short Markdown section.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        // Writing into a String cannot fail, so the fmt::Results below are ignored.
        let _ = writeln!(md, "## Genealogy (uns-genealogy ledger on redb)\n");
        let _ = writeln!(md, "- Date: {}", self.date);
        let _ = writeln!(md, "- Machine: {}", self.machine.describe());
        let _ = writeln!(
            md,
            "- Plant: {} days, {} lots, {} edges, {} events (seed {}); file in {}\n",
            self.days,
            self.n_lots,
            self.n_edges,
            self.n_events,
            self.options.seed,
            self.options.dir.display()
        );
        let _ = writeln!(md, "| figure | value |");
        let _ = writeln!(md, "|---|---|");
        let _ = writeln!(
            md,
            "| bulk ingest ({} events per commit) | {:.0} events/s |",
            self.options.batch, self.bulk_events_per_s
        );
        let _ = writeln!(
            md,
            "| durable ingest (one commit per event, {} events) | {:.0} events/s (p50 {:.0} µs, p99 {:.0} µs) |",
            self.options.durable_events,
            self.durable_events_per_s,
            self.durable_p50_us,
            self.durable_p99_us
        );
        let _ = writeln!(
            md,
            "| store size | {:.1} MB, {:.0} MB per million events |",
            self.store_bytes as f64 / 1e6,
            self.bytes_per_million_events() / 1e6
        );
        let _ = writeln!(
            md,
            "| a copy of it (`Store::backup`, one transaction) | {:.1} MB, {:.0} MB per million events |",
            self.copy_bytes as f64 / 1e6,
            self.copy_bytes as f64 / self.n_events.max(1) as f64
        );
        let _ = writeln!(
            md,
            "| verify the whole chain ({} records) | {:.1} s |",
            self.n_events + self.options.durable_events as u64,
            self.verify_secs
        );
        let _ = writeln!(
            md,
            "\n| trace ({} each) | depth | p50 | p99 | max | lots per answer (mean / max) | cut by the depth |",
            self.options.traces
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        for figure in &self.traces {
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} / {} | {:.0} % |",
                match figure.direction {
                    Direction::Backward => "backward from a pallet",
                    Direction::Forward => "forward from an ingredient lot",
                },
                figure.depth,
                figure.p50_us / 1e3,
                figure.p99_us / 1e3,
                figure.max_us / 1e3,
                figure.mean_lots,
                figure.max_lots,
                figure.truncated_share * 100.0
            );
        }
        md
    }
}

/// xorshift64*: a small deterministic generator (no dependency, same plant for the same seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn id(text: String) -> Result<Id, GenealogyBenchError> {
    Id::new(&text).map_err(|err| GenealogyBenchError::Check(format!("lot id {text}: {err}")))
}

fn qty(lot: &Id, qty: f64) -> LotQuantity {
    LotQuantity {
        lot: lot.clone(),
        material: None,
        quantity: Quantity::new(qty, Uom::EA),
    }
}

fn new_lot(lot: &Id, material: &str, amount: f64) -> LotQuantity {
    LotQuantity {
        material: Some(material.to_owned()),
        ..qty(lot, amount)
    }
}

/// The generator's state: the lots it can draw inputs from.
struct Plant {
    rng: Rng,
    n_events: u64,
    n_edges: u64,
    /// Ingredient lots per material, received in the last two days.
    ingredients: Vec<Vec<Id>>,
    /// Packaging lots per material, last two days.
    packaging: Vec<Vec<Id>>,
    /// Yesterday's baked lots (rework inputs).
    baked_yesterday: Vec<Id>,
    /// Every pallet and every ingredient lot (trace starts).
    pallets: Vec<Id>,
    raw_ingredients: Vec<Id>,
    site: Location,
}

impl Plant {
    fn event(
        &mut self,
        day: usize,
        kind: GenealogyKind,
    ) -> (Option<Location>, GenealogyEvent, u64) {
        self.n_events += 1;
        // Spread the day's events over its 24 hours, one every ~33 s.
        let at_ms = YEAR_START_MS + day as i64 * DAY_MS + (self.n_events % 2_600) as i64 * 33_000;
        let at = Timestamp::from_unix_ms(at_ms)
            .unwrap_or_else(|| unreachable!("2025 plus a few years is a valid time"));
        let event_id = Uuid::from_u64_pair(0x0194_0000_0000_7000, self.n_events);
        (
            Some(self.site.clone()),
            GenealogyEvent {
                schema: SchemaTag::default(),
                header: EventHeader::new(event_id, at, at),
                kind,
            },
            u64::try_from(at_ms).unwrap_or(0),
        )
    }

    fn transform(
        &mut self,
        day: usize,
        wo: &str,
        consumed: Vec<LotQuantity>,
        produced: LotQuantity,
    ) -> Result<(Option<Location>, GenealogyEvent, u64), GenealogyBenchError> {
        self.n_edges += consumed.len() as u64;
        let kind = GenealogyKind::Transform {
            consumed,
            produced: vec![produced],
            wo_id: Some(id(wo.to_owned())?),
        };
        Ok(self.event(day, kind))
    }

    /// One day of the plant, in the module table's order.
    fn day(
        &mut self,
        day: usize,
    ) -> Result<Vec<(Option<Location>, GenealogyEvent, u64)>, GenealogyBenchError> {
        let mut events = Vec::with_capacity(2_600);
        // Keep the last two days of raw lots: drop the day before yesterday's (5 per material).
        for lots in self.ingredients.iter_mut().chain(self.packaging.iter_mut()) {
            let excess = lots.len().saturating_sub(5);
            lots.drain(..excess);
        }
        for n in 0..40 {
            let (material, is_ingredient) = if n < 25 {
                (INGREDIENTS[n % 5], true)
            } else {
                (PACKAGING[n % 3], false)
            };
            let lot = id(format!("{material}-d{day}-{n}"))?;
            let index = if is_ingredient { n % 5 } else { n % 3 };
            if is_ingredient {
                self.ingredients[index].push(lot.clone());
                self.raw_ingredients.push(lot.clone());
            } else {
                self.packaging[index].push(lot.clone());
            }
            events.push(self.event(
                day,
                GenealogyKind::Receive {
                    lot: new_lot(&lot, material, 1e12),
                    location: None,
                    supplier_lot: Some(format!("SUP-{day}-{n}")),
                },
            ));
        }
        let mut mixes = Vec::with_capacity(400);
        for n in 0..400 {
            let lot = id(format!("mix-d{day}-{n}"))?;
            let mut consumed = Vec::with_capacity(4);
            let first = self.rng.below(INGREDIENTS.len());
            for k in 0..3 {
                let material = (first + k) % INGREDIENTS.len();
                let source = self.rng.pick(&self.ingredients[material]).clone();
                consumed.push(qty(&source, 1.0));
            }
            if !self.baked_yesterday.is_empty() && self.rng.chance(30) {
                let rework = self.rng.pick(&self.baked_yesterday).clone();
                consumed.push(qty(&rework, 1.0));
            }
            let event = self.transform(
                day,
                &format!("mix-{day}-{n}"),
                consumed,
                new_lot(&lot, "dough", 1e9),
            )?;
            events.push(event);
            mixes.push(lot);
        }
        let mut baked = Vec::with_capacity(950);
        for n in 0..950 {
            let lot = id(format!("bake-d{day}-{n}"))?;
            let mix = self.rng.pick(&mixes).clone();
            let film = self.rng.pick(&self.packaging[0]).clone();
            let tray = self.rng.pick(&self.packaging[1]).clone();
            let event = self.transform(
                day,
                &format!("bake-{day}-{n}"),
                vec![qty(&mix, 1.0), qty(&film, 1.0), qty(&tray, 1.0)],
                new_lot(&lot, "bread", 1e9),
            )?;
            events.push(event);
            baked.push(lot);
        }
        let mut packable = baked.clone();
        for n in 0..200 {
            let source = baked[n * baked.len() / 200].clone();
            let a = id(format!("{source}.a"))?;
            let b = id(format!("{source}.b"))?;
            self.n_edges += 2;
            events.push(self.event(
                day,
                GenealogyKind::Split {
                    source,
                    into: vec![qty(&a, 1e6), qty(&b, 1e6)],
                },
            ));
            packable.push(a);
            packable.push(b);
        }
        let mut packs = Vec::with_capacity(800);
        for n in 0..800 {
            let lot = id(format!("pack-d{day}-{n}"))?;
            let first_idx = self.rng.below(packable.len());
            let second_idx = (first_idx + 1 + self.rng.below(packable.len() - 1)) % packable.len();
            let (first, second) = (packable[first_idx].clone(), packable[second_idx].clone());
            let carton = self.rng.pick(&self.packaging[2]).clone();
            let event = self.transform(
                day,
                &format!("pack-{day}-{n}"),
                vec![qty(&first, 1.0), qty(&second, 1.0), qty(&carton, 1.0)],
                new_lot(&lot, "bread-box", 1e9),
            )?;
            events.push(event);
            packs.push(lot);
        }
        for n in 0..10 {
            let lot = packs[n * 80].clone();
            let event = self.transform(
                day,
                &format!("rework-{day}-{n}"),
                vec![qty(&lot, 1.0)],
                qty(&lot, 1.0),
            )?;
            events.push(event);
        }
        for n in 0..100 {
            let pallet = id(format!("pallet-d{day}-{n}"))?;
            let sources: Vec<LotQuantity> = packs[n * 8..n * 8 + 8]
                .iter()
                .chain(&packs[(n * 8 + 400) % 800..(n * 8 + 400) % 800 + 2])
                .map(|lot| qty(lot, 1.0))
                .collect();
            self.n_edges += sources.len() as u64;
            events.push(self.event(
                day,
                GenealogyKind::Merge {
                    sources,
                    into: new_lot(&pallet, "bread-box", 10.0),
                },
            ));
            self.pallets.push(pallet.clone());
            events.push(self.event(
                day,
                GenealogyKind::Ship {
                    lot: qty(&pallet, 1.0),
                    customer: Some(format!("customer-{}", n % 17)),
                    to: None,
                },
            ));
        }
        self.baked_yesterday = baked;
        Ok(events)
    }
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Generates the plant, then measures; the temporary file is deleted at the end.
pub async fn run(
    options: &GenealogyBenchOptions,
) -> Result<GenealogyBenchReport, GenealogyBenchError> {
    let temp =
        tempfile::tempdir_in(&options.dir).map_err(|source| GenealogyBenchError::TempDir {
            path: options.dir.clone(),
            source,
        })?;
    let path = temp.path().join("genealogy").join("genealogy.redb");
    let ledger = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || Ledger::open(&path, Tolerances::default()))
            .await
            .map_err(|e| {
                GenealogyBenchError::Check(format!("opening the ledger panicked: {e}"))
            })??
    };
    let site: Location = "acme/bakery"
        .parse()
        .map_err(|err| GenealogyBenchError::Check(format!("site: {err}")))?;
    let mut plant = Plant {
        rng: Rng(options.seed.max(1)),
        n_events: 0,
        n_edges: 0,
        ingredients: vec![Vec::new(); INGREDIENTS.len()],
        packaging: vec![Vec::new(); PACKAGING.len()],
        baked_yesterday: Vec::new(),
        pallets: Vec::new(),
        raw_ingredients: Vec::new(),
        site,
    };
    let days = options.lots.div_ceil(LOTS_PER_DAY).max(1);
    let batch = options.batch.max(1);

    // 1. Bulk ingest.
    let started = Instant::now();
    for day in 0..days {
        let events = plant.day(day)?;
        let mut events = events.into_iter().peekable();
        while events.peek().is_some() {
            let chunk: Vec<_> = events.by_ref().take(batch).collect();
            for (n, result) in ledger.apply_batch(chunk).await?.into_iter().enumerate() {
                if !matches!(result, Ok(Outcome::Applied { .. })) {
                    return Err(GenealogyBenchError::Check(format!(
                        "day {day}, event {n} of a batch: {result:?}"
                    )));
                }
            }
        }
    }
    let bulk_secs = started.elapsed().as_secs_f64();
    let n_events = ledger.n_records().await?;
    if n_events != plant.n_events {
        return Err(GenealogyBenchError::Check(format!(
            "{n_events} chain records for {} events",
            plant.n_events
        )));
    }
    let store_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    // A copy written in one transaction holds the same rows without the free pages the
    // generation's commits left behind: the live size.
    let copy = temp.path().join("copy.redb");
    ledger.store().backup(&copy).await?;
    let copy_bytes = std::fs::metadata(&copy).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&copy);
    let n_lots = {
        let mut n = 0u64;
        let mut after = None;
        loop {
            let page = ledger.lots(after.clone(), 10_000).await?;
            n += page.len() as u64;
            match page.last() {
                Some(last) => after = Some(last.lot.id.clone()),
                None => break,
            }
        }
        n
    };

    // 2. Durable ingest on the full file: mixes of the last day's ingredients.
    let last_day = days;
    let mut latencies = Vec::with_capacity(options.durable_events);
    let started = Instant::now();
    for n in 0..options.durable_events {
        let lot = id(format!("extra-{n}"))?;
        let material = n % INGREDIENTS.len();
        let source = plant.rng.pick(&plant.ingredients[material]).clone();
        let (site, event, now_ms) = plant.transform(
            last_day,
            &format!("extra-{n}"),
            vec![qty(&source, 1.0)],
            new_lot(&lot, "dough", 1.0),
        )?;
        let begun = Instant::now();
        let outcome = ledger
            .apply(site, event, now_ms)
            .await
            .map_err(|err| GenealogyBenchError::Check(format!("durable event {n}: {err}")))?;
        latencies.push(begun.elapsed().as_secs_f64() * 1e6);
        if !matches!(outcome, Outcome::Applied { .. }) {
            return Err(GenealogyBenchError::Check(format!(
                "durable event {n}: {outcome:?}"
            )));
        }
    }
    let durable_secs = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);

    // 3. Traces.
    let mut traces = Vec::new();
    for (direction, starts) in [
        (Direction::Backward, &plant.pallets),
        (Direction::Forward, &plant.raw_ingredients),
    ] {
        for depth in [5u32, 20] {
            let mut rng = Rng(options.seed.max(1) ^ u64::from(depth));
            let mut micros = Vec::with_capacity(options.traces);
            let mut n_lots_total = 0usize;
            let mut max_lots = 0usize;
            let mut n_truncated = 0usize;
            for _ in 0..options.traces {
                let lot = rng.pick(starts).clone();
                let query = TraceQuery {
                    lot: lot.clone(),
                    direction,
                    depth: Some(depth),
                    as_of: None,
                };
                let begun = Instant::now();
                let trace = ledger.trace(query).await?.ok_or_else(|| {
                    GenealogyBenchError::Check(format!("lot {lot} unknown to the trace"))
                })?;
                micros.push(begun.elapsed().as_secs_f64() * 1e6);
                n_lots_total += trace.lots.len();
                max_lots = max_lots.max(trace.lots.len());
                n_truncated += usize::from(trace.truncated);
                if trace.lots.len() < 2 {
                    return Err(GenealogyBenchError::Check(format!(
                        "{direction:?} trace of {lot} found nothing"
                    )));
                }
            }
            micros.sort_by(f64::total_cmp);
            let n = options.traces.max(1) as f64;
            traces.push(TraceFigure {
                direction,
                depth,
                p50_us: percentile(&micros, 0.50),
                p99_us: percentile(&micros, 0.99),
                max_us: micros.last().copied().unwrap_or(0.0),
                mean_lots: n_lots_total as f64 / n,
                max_lots,
                truncated_share: n_truncated as f64 / n,
            });
        }
    }

    // 4. Verify.
    let started = Instant::now();
    let report = ledger.verify().await?;
    let verify_secs = started.elapsed().as_secs_f64();
    // The generated events and the durable figure's, each once.
    if report.first_bad.is_some() || report.n_records != plant.n_events {
        return Err(GenealogyBenchError::Check(format!("verify: {report:?}")));
    }
    tokio::task::spawn_blocking(move || ledger.close())
        .await
        .map_err(|e| GenealogyBenchError::Check(format!("closing the ledger panicked: {e}")))?;

    Ok(GenealogyBenchReport {
        date: chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        machine: MachineInfo::current(),
        options: options.clone(),
        days,
        n_lots,
        n_edges: plant.n_edges,
        n_events,
        bulk_events_per_s: n_events as f64 / bulk_secs.max(f64::EPSILON),
        durable_events_per_s: options.durable_events as f64 / durable_secs.max(f64::EPSILON),
        durable_p50_us: percentile(&latencies, 0.50),
        durable_p99_us: percentile(&latencies, 0.99),
        traces,
        store_bytes,
        copy_bytes,
        verify_secs,
    })
}
