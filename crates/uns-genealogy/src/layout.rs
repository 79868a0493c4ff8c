//! Compact binary rows for what a trace reads (store layout 2): the adjacency index edges (with
//! the voided flag, so a trace needs no read of the applied event) and the transform rows the
//! mass balance reads (so it needs no read and JSON decode of the chain record).
//!
//! Each row starts with a version byte ([`ROW_VERSION`]); numbers are little-endian, strings are
//! a length then UTF-8 bytes, times Unix milliseconds ([`Timestamp`] has millisecond precision, so
//! the round trip is exact).

use std::borrow::Cow;

use uns_model::payload::{LotQuantity, LotStatus, Quantity, Timestamp, Uom};
use uns_model::topic::Id;
use uns_store::ValueCodec;
use uuid::Uuid;

use crate::ledger::Edge;

/// The first byte of every binary row of layout 2.
const ROW_VERSION: u8 = 1;

/// An edge as the indexes keep it: the edge, and when a correction voided its event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredEdge {
    pub(crate) edge: Edge,
    /// The correcting event's `occurred_at`, once the edge's event was corrected.
    pub(crate) voided_at: Option<Timestamp>,
}

/// What the mass balance of a transform needs, keyed by its chain record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TransformRow {
    pub(crate) event_id: Uuid,
    pub(crate) wo_id: Option<Id>,
    pub(crate) occurred_at: Timestamp,
    pub(crate) consumed: Vec<LotQuantity>,
    pub(crate) produced: Vec<LotQuantity>,
}

/// Binary codec of [`StoredEdge`].
pub(crate) struct EdgeBin;

/// Binary codec of [`TransformRow`].
pub(crate) struct TransformBin;

const KINDS: [&str; 3] = ["transform", "split", "merge"];

struct Writer(Vec<u8>);

impl Writer {
    fn new(capacity: usize) -> Self {
        let mut bytes = Vec::with_capacity(capacity);
        bytes.push(ROW_VERSION);
        Self(bytes)
    }

    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }

    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn time(&mut self, value: Timestamp) {
        self.0.extend_from_slice(&value.unix_ms().to_le_bytes());
    }

    fn str(&mut self, text: &str) -> Result<(), String> {
        let len = u16::try_from(text.len())
            .map_err(|_| format!("a text of {} bytes is too long for a row", text.len()))?;
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }

    fn opt_str(&mut self, text: Option<&str>) -> Result<(), String> {
        match text {
            Some(text) => {
                self.u8(1);
                self.str(text)
            }
            None => {
                self.u8(0);
                Ok(())
            }
        }
    }

    fn quantity(&mut self, quantity: &Quantity) {
        self.0.extend_from_slice(&quantity.qty.to_le_bytes());
        let code = quantity.uom.as_str().as_bytes();
        let mut padded = [0u8; 3];
        padded[..code.len()].copy_from_slice(code);
        self.0.extend_from_slice(&padded);
    }

    fn lot_quantities(&mut self, items: &[LotQuantity]) -> Result<(), String> {
        let n = u16::try_from(items.len())
            .map_err(|_| format!("{} lots are too many for a row", items.len()))?;
        self.0.extend_from_slice(&n.to_le_bytes());
        for item in items {
            self.str(item.lot.as_str())?;
            self.opt_str(item.material.as_deref())?;
            self.quantity(&item.quantity);
        }
        Ok(())
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, String> {
        match bytes.split_first() {
            Some((&ROW_VERSION, rest)) => Ok(Self { bytes: rest }),
            Some((version, _)) => Err(format!(
                "row version {version}, this build reads {ROW_VERSION}"
            )),
            None => Err("empty row".to_owned()),
        }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        if self.bytes.len() < N {
            return Err(format!(
                "row ends early: {N} bytes wanted, {} left",
                self.bytes.len()
            ));
        }
        let (head, rest) = self.bytes.split_at(N);
        self.bytes = rest;
        // `head` has exactly N bytes.
        Ok(head.try_into().unwrap_or([0; N]))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    fn time(&mut self) -> Result<Timestamp, String> {
        let ms = i64::from_le_bytes(self.take()?);
        Timestamp::from_unix_ms(ms).ok_or_else(|| format!("time {ms} ms is out of range"))
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let len = usize::from(u16::from_le_bytes(self.take()?));
        if self.bytes.len() < len {
            return Err(format!(
                "row ends early: a text of {len} bytes, {} left",
                self.bytes.len()
            ));
        }
        let (text, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        std::str::from_utf8(text).map_err(|err| format!("text is not UTF-8: {err}"))
    }

    fn opt_str(&mut self) -> Result<Option<&'a str>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            flag => Err(format!("option flag {flag}")),
        }
    }

    fn id(&mut self) -> Result<Id, String> {
        let text = self.str()?;
        Id::new(text).map_err(|err| format!("lot id {text:?}: {err}"))
    }

    fn opt_id(&mut self) -> Result<Option<Id>, String> {
        self.opt_str()?
            .map(|text| Id::new(text).map_err(|err| format!("id {text:?}: {err}")))
            .transpose()
    }

    fn quantity(&mut self) -> Result<Quantity, String> {
        let qty = f64::from_le_bytes(self.take()?);
        let code = self.take::<3>()?;
        let len = code.iter().position(|b| *b == 0).unwrap_or(3);
        let text = std::str::from_utf8(&code[..len]).map_err(|err| format!("unit: {err}"))?;
        let uom = Uom::new(text).map_err(|err| err.to_string())?;
        Ok(Quantity { qty, uom })
    }

    fn lot_quantities(&mut self) -> Result<Vec<LotQuantity>, String> {
        let n = usize::from(u16::from_le_bytes(self.take()?));
        (0..n)
            .map(|_| {
                Ok(LotQuantity {
                    lot: self.id()?,
                    material: self.opt_str()?.map(str::to_owned),
                    quantity: self.quantity()?,
                })
            })
            .collect()
    }

    fn end(&self) -> Result<(), String> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(format!("{} bytes after the row", self.bytes.len()))
        }
    }
}

impl ValueCodec for EdgeBin {
    type Ref = StoredEdge;
    type Owned = StoredEdge;

    fn encode(value: &StoredEdge) -> Result<Cow<'_, [u8]>, String> {
        let edge = &value.edge;
        let kind = KINDS
            .iter()
            .position(|k| *k == edge.kind)
            .ok_or_else(|| format!("edge kind {:?}", edge.kind))?;
        let mut w = Writer::new(64 + edge.from.as_str().len() + edge.to.as_str().len());
        // KINDS has three entries.
        w.u8(kind as u8);
        w.0.extend_from_slice(edge.event_id.as_bytes());
        w.u64(edge.seq);
        w.time(edge.occurred_at);
        match value.voided_at {
            Some(at) => {
                w.u8(1);
                w.time(at);
            }
            None => w.u8(0),
        }
        w.quantity(&edge.quantity);
        w.str(edge.from.as_str())?;
        w.str(edge.to.as_str())?;
        w.opt_str(edge.wo_id.as_ref().map(Id::as_str))?;
        Ok(Cow::Owned(w.0))
    }

    fn decode(bytes: &[u8]) -> Result<StoredEdge, String> {
        let mut r = Reader::new(bytes)?;
        let kind = *KINDS
            .get(usize::from(r.u8()?))
            .ok_or_else(|| "edge kind out of range".to_owned())?;
        let event_id = Uuid::from_bytes(r.take()?);
        let seq = r.u64()?;
        let occurred_at = r.time()?;
        let voided_at = match r.u8()? {
            0 => None,
            1 => Some(r.time()?),
            flag => return Err(format!("voided flag {flag}")),
        };
        let quantity = r.quantity()?;
        let from = r.id()?;
        let to = r.id()?;
        let wo_id = r.opt_id()?;
        r.end()?;
        Ok(StoredEdge {
            edge: Edge {
                from,
                to,
                quantity,
                event_id,
                seq,
                kind: kind.to_owned(),
                wo_id,
                occurred_at,
            },
            voided_at,
        })
    }
}

impl ValueCodec for TransformBin {
    type Ref = TransformRow;
    type Owned = TransformRow;

    fn encode(value: &TransformRow) -> Result<Cow<'_, [u8]>, String> {
        let mut w = Writer::new(64 + 40 * (value.consumed.len() + value.produced.len()));
        w.0.extend_from_slice(value.event_id.as_bytes());
        w.time(value.occurred_at);
        w.opt_str(value.wo_id.as_ref().map(Id::as_str))?;
        w.lot_quantities(&value.consumed)?;
        w.lot_quantities(&value.produced)?;
        Ok(Cow::Owned(w.0))
    }

    fn decode(bytes: &[u8]) -> Result<TransformRow, String> {
        let mut r = Reader::new(bytes)?;
        let event_id = Uuid::from_bytes(r.take()?);
        let occurred_at = r.time()?;
        let wo_id = r.opt_id()?;
        let consumed = r.lot_quantities()?;
        let produced = r.lot_quantities()?;
        r.end()?;
        Ok(TransformRow {
            event_id,
            wo_id,
            occurred_at,
            consumed,
            produced,
        })
    }
}

/// A lot status as issue 13 names it, for a name the ledger wrote before (layout 1).
pub(crate) fn legacy_status(name: &str) -> Option<&'static str> {
    match name {
        "available" => Some("released"),
        "blocked" => Some("rejected"),
        "scrapped" => Some("destroyed"),
        _ => None,
    }
}

/// Deserializes a [`LotStatus`], reading the names of layout 1 as issue 13's (chain records are
/// never rewritten, so quality decisions logged before say `available` and `blocked`).
pub(crate) fn status_or_legacy<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<LotStatus, D::Error> {
    use serde::Deserialize as _;
    use serde::de::IntoDeserializer as _;
    let name = String::deserialize(deserializer)?;
    let name = legacy_status(&name).map_or(name, str::to_owned);
    LotStatus::deserialize(name.into_deserializer())
}
