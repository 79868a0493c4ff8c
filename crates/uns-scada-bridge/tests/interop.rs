//! Interop with Python peers (filled in below).
