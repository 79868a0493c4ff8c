//! Any bytes into the Sparkplug B decoder: it never panics, and what it decodes re-encodes to a
//! fixed point (encode ∘ decode of its own encoding gives the same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = uns_sparkplug::payload::decode(data) else {
        return;
    };
    // A decoded payload may hold what has no valid encoding (a datatype that differs from the
    // value's); refusing it is fine, panicking is not.
    let Ok(bytes) = uns_sparkplug::payload::encode(&payload) else {
        return;
    };
    let again = uns_sparkplug::payload::decode(&bytes).expect("our own encoding decodes");
    let bytes_again = uns_sparkplug::payload::encode(&again).expect("and encodes again");
    assert_eq!(bytes, bytes_again, "encode/decode is not a fixed point");
});
