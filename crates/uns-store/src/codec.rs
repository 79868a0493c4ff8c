//! Key and value codecs: how a typed key or value becomes the bytes redb stores.
//!
//! Every table is a redb table of `&[u8]` keys and `&[u8]` values; the codec of a [`Table`]
//! decides the bytes. Key codecs keep the order of the typed keys in the byte order redb
//! sorts by, so a range over typed keys is a range over bytes.
//!
//! [`Table`]: crate::Table

use std::borrow::Cow;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// How a key is stored. Implemented by [`Str`], [`U64`] and [`Bytes`].
pub trait KeyCodec: 'static {
    /// The key as a caller passes it (`str`, `u64`, `[u8]`).
    type Ref: ?Sized;
    /// The key as reads return it (`String`, `u64`, `Vec<u8>`).
    type Owned;
    /// The stored bytes; their byte order is the key order.
    fn encode(key: &Self::Ref) -> Cow<'_, [u8]>;
    /// Back from stored bytes; `Err` names what is wrong.
    fn decode(bytes: &[u8]) -> Result<Self::Owned, String>;
}

/// How a value is stored. Implemented by [`Json`] and [`Bytes`].
pub trait ValueCodec: 'static {
    /// The value as a caller passes it.
    type Ref: ?Sized;
    /// The value as reads return it.
    type Owned;
    /// The stored bytes; `Err` names what could not be encoded.
    fn encode(value: &Self::Ref) -> Result<Cow<'_, [u8]>, String>;
    /// Back from stored bytes; `Err` names what is wrong.
    fn decode(bytes: &[u8]) -> Result<Self::Owned, String>;
}

/// A UTF-8 string key, stored as its bytes (so keys sort as byte strings).
#[derive(Debug, Clone, Copy)]
pub struct Str;

/// A `u64` key, stored as 8 big-endian bytes (so keys sort numerically).
#[derive(Debug, Clone, Copy)]
pub struct U64;

/// Raw bytes, as key or value, stored as they are.
#[derive(Debug, Clone, Copy)]
pub struct Bytes;

/// A serde value stored as JSON (`serde_json`), readable with any JSON tool.
pub struct Json<T>(PhantomData<fn() -> T>);

impl KeyCodec for Str {
    type Ref = str;
    type Owned = String;

    fn encode(key: &str) -> Cow<'_, [u8]> {
        Cow::Borrowed(key.as_bytes())
    }

    fn decode(bytes: &[u8]) -> Result<String, String> {
        String::from_utf8(bytes.to_vec()).map_err(|e| format!("key is not UTF-8: {e}"))
    }
}

impl KeyCodec for U64 {
    type Ref = u64;
    type Owned = u64;

    fn encode(key: &u64) -> Cow<'_, [u8]> {
        Cow::Owned(key.to_be_bytes().to_vec())
    }

    fn decode(bytes: &[u8]) -> Result<u64, String> {
        let bytes: [u8; 8] = bytes
            .try_into()
            .map_err(|_| format!("u64 key has {} bytes, not 8", bytes.len()))?;
        Ok(u64::from_be_bytes(bytes))
    }
}

impl KeyCodec for Bytes {
    type Ref = [u8];
    type Owned = Vec<u8>;

    fn encode(key: &[u8]) -> Cow<'_, [u8]> {
        Cow::Borrowed(key)
    }

    fn decode(bytes: &[u8]) -> Result<Vec<u8>, String> {
        Ok(bytes.to_vec())
    }
}

impl ValueCodec for Bytes {
    type Ref = [u8];
    type Owned = Vec<u8>;

    fn encode(value: &[u8]) -> Result<Cow<'_, [u8]>, String> {
        Ok(Cow::Borrowed(value))
    }

    fn decode(bytes: &[u8]) -> Result<Vec<u8>, String> {
        Ok(bytes.to_vec())
    }
}

impl<T: Serialize + DeserializeOwned + 'static> ValueCodec for Json<T> {
    type Ref = T;
    type Owned = T;

    fn encode(value: &T) -> Result<Cow<'_, [u8]>, String> {
        serde_json::to_vec(value)
            .map(Cow::Owned)
            .map_err(|e| e.to_string())
    }

    fn decode(bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}
