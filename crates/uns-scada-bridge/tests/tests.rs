//! Integration tests of `uns-scada-bridge`, one binary: the bridge against an in-process broker on a
//! real socket, fed by a Sparkplug edge node written here (`bridge`) and by edge nodes written with
//! Python libraries we did not write (`interop`).

mod bridge;
mod counts;
mod crash;
mod hardening;
mod interop;
mod support;
