//! OEE.
