//! Integration tests of `uns-sim`, one binary: the machine model and config (pure), and the simulated
//! plant on a real embedded broker (births, commands, store and forward across a broker restart).

mod plant;
mod wire;
