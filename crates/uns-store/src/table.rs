//! [`Table`]: a typed table definition, a name plus a key and a value codec.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use crate::codec::{KeyCodec, ValueCodec};

/// A typed table inside a [`Store`](crate::Store), declared once as a `const`:
///
/// ```
/// use uns_store::{Json, Str, Table};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct WorkOrder { id: String }
/// const ORDERS: Table<Str, Json<WorkOrder>> = Table::new("orders_v1");
/// ```
///
/// The name carries the table's layout version (`_v1`): a new layout is a new table that a
/// migration fills from the old one (see `docs/STORAGE.md`).
pub struct Table<K, V> {
    name: Cow<'static, str>,
    codecs: PhantomData<fn() -> (K, V)>,
}

impl<K: KeyCodec, V: ValueCodec> Table<K, V> {
    /// A table with a fixed name, for `const` definitions.
    pub const fn new(name: &'static str) -> Self {
        Table {
            name: Cow::Borrowed(name),
            codecs: PhantomData,
        }
    }

    /// A table whose name is built at run time (e.g. one per outbox).
    pub fn named(name: String) -> Self {
        Table {
            name: Cow::Owned(name),
            codecs: PhantomData,
        }
    }

    /// The table's name in the file.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        Table {
            name: self.name.clone(),
            codecs: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Table").field(&self.name).finish()
    }
}
