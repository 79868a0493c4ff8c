//! When each device samples, and the timestamp its sample carries.
//!
//! Every device samples once per period on its own grid: sample `k` of a device with phase `p` is due at
//! `start + p + k × period` (tokio time) and is stamped `start_ms + p + k × period` (wall-clock ms, rounded
//! down). The sample is taken when it is due or later (after a stall, overdue samples are taken at once,
//! each still stamped with its own grid instant), so a timestamp is never later than the wall clock when
//! the sample is published.
//!
//! The phases spread the devices of the whole plant over the period so that each period is not one burst
//! of all metrics: with `n_devices` devices in the plant, device `g` (its index in plant order) gets a
//! phase drawn uniformly from its own slot `[g/n, (g+1)/n) × period`, from a random stream of the seed and
//! `g`. The same seed gives the same phases, phases differ between devices and stay inside the period.

use std::time::Duration;

use tokio::time::Instant;

use crate::rng::Rng;

/// The time origin of a run: a tokio instant and the wall-clock time (ms since the epoch) taken at the
/// same moment, so timestamps follow tokio time (and paused-time tests work).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    /// The tokio instant of the start.
    pub(crate) instant: Instant,
    /// Wall-clock ms since the epoch at the start, rounded down (so it is never ahead of the clock).
    pub(crate) wall_ms: u64,
}

impl Origin {
    /// Now: the wall clock is read first and rounded down, so `wall_ms` is not later than `instant`.
    pub(crate) fn now() -> Origin {
        let wall_ms = crate::node::now_ms();
        Origin {
            instant: Instant::now(),
            wall_ms,
        }
    }
}

/// The phase of device `device_idx` (its index in the whole plant, of `n_devices`) within `period`.
pub(crate) fn phase(seed: u64, device_idx: usize, n_devices: usize, period: Duration) -> Duration {
    let n_devices = n_devices.max(1);
    let mut rng = Rng::for_stream(seed, &format!("phase/{device_idx}"));
    let slot = (device_idx % n_devices) as f64 + rng.unit();
    let fraction = slot / n_devices as f64;
    // `fraction` < 1, so the phase stays below the period (nanosecond rounding goes down).
    Duration::from_nanos((period.as_nanos() as f64 * fraction) as u64)
        .min(period.saturating_sub(Duration::from_nanos(1)))
}

/// A sample that is due: which device, when and with which timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    /// The device's index within its node, or `None` for a node without devices (a tick only).
    pub(crate) device_idx: Option<usize>,
    /// When to take the sample (tokio time).
    pub(crate) instant: Instant,
    /// The sample's timestamp (wall-clock ms since the epoch).
    pub(crate) timestamp_ms: u64,
    /// The last sample of this period for the node: time for the once-per-period work (forwarding).
    pub(crate) ends_round: bool,
}

/// The sampling schedule of one node's devices: yields their samples in time order.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    origin: Origin,
    period_nanos: u128,
    /// `(phase in ns, device index within the node)`, sorted by phase (then index).
    slots: Vec<(u128, Option<usize>)>,
    /// The period of the next sample.
    round: u64,
    /// The position in `slots` of the next sample.
    slot_idx: usize,
}

impl Schedule {
    /// A schedule for devices with these phases (index = device index within the node).
    pub(crate) fn new(origin: Origin, period: Duration, phases: &[Duration]) -> Schedule {
        let mut slots: Vec<(u128, Option<usize>)> = phases
            .iter()
            .enumerate()
            .map(|(device_idx, phase)| (phase.as_nanos(), Some(device_idx)))
            .collect();
        if slots.is_empty() {
            slots.push((0, None));
        }
        slots.sort_unstable();
        Schedule {
            origin,
            period_nanos: period.as_nanos().max(1),
            slots,
            round: 0,
            slot_idx: 0,
        }
    }

    /// The next sample, without consuming it.
    pub(crate) fn peek(&self) -> Due {
        let (phase_nanos, device_idx) = self.slots[self.slot_idx];
        let offset_nanos = self.period_nanos * u128::from(self.round) + phase_nanos;
        let offset = Duration::from_nanos(u64::try_from(offset_nanos).unwrap_or(u64::MAX));
        Due {
            device_idx,
            instant: self.origin.instant + offset,
            // Whole ms rounded down, so the stamp is never later than the instant it stands for.
            timestamp_ms: self.origin.wall_ms + (offset_nanos / 1_000_000) as u64,
            ends_round: self.slot_idx + 1 == self.slots.len(),
        }
    }

    /// Moves past the sample [`Schedule::peek`] returned.
    pub(crate) fn advance(&mut self) {
        self.slot_idx += 1;
        if self.slot_idx == self.slots.len() {
            self.slot_idx = 0;
            self.round += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_millis(100);

    fn phases(seed: u64, n_devices: usize) -> Vec<Duration> {
        (0..n_devices)
            .map(|device_idx| phase(seed, device_idx, n_devices, PERIOD))
            .collect()
    }

    #[test]
    fn phases_differ_stay_within_the_period_and_follow_the_seed() {
        for n_devices in [1, 2, 5, 40] {
            let first = phases(7, n_devices);
            assert_eq!(first, phases(7, n_devices), "same seed, same phases");
            assert!(first.iter().all(|phase| *phase < PERIOD), "{first:?}");
            let mut sorted = first.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), n_devices, "phases must differ: {first:?}");
            // One device per slot of period / n: the load is even.
            for (device_idx, phase) in first.iter().enumerate() {
                let slot = phase.as_nanos() * n_devices as u128 / PERIOD.as_nanos();
                assert_eq!(slot, device_idx as u128, "{first:?}");
            }
        }
        assert_ne!(phases(7, 5), phases(8, 5), "another seed, other phases");
    }

    /// With paused time: every sample is taken at its grid instant or later, and its timestamp is never
    /// later than the (tokio-driven) wall clock when it is taken; each device keeps a regular grid.
    #[tokio::test(start_paused = true)]
    async fn samples_are_stamped_no_later_than_the_clock_on_a_regular_grid() {
        let origin = Origin {
            instant: Instant::now(),
            wall_ms: 1_700_000_000_123,
        };
        let wall_now = || origin.wall_ms + origin.instant.elapsed().as_millis() as u64;
        let device_phases = phases(3, 3);
        let mut schedule = Schedule::new(origin, PERIOD, &device_phases);
        let mut stamps: Vec<Vec<u64>> = vec![Vec::new(); device_phases.len()];
        let mut n_rounds = 0;
        for sample_idx in 0..60 {
            let due = schedule.peek();
            tokio::time::sleep_until(due.instant).await;
            if sample_idx == 30 {
                // A stall of three periods: the overdue samples are taken late, stamped on the grid.
                tokio::time::advance(PERIOD * 3).await;
            }
            assert!(
                due.timestamp_ms <= wall_now(),
                "sample {sample_idx} stamped {} at {}",
                due.timestamp_ms,
                wall_now()
            );
            let device_idx = due.device_idx.unwrap_or_else(|| panic!("a device"));
            stamps[device_idx].push(due.timestamp_ms);
            n_rounds += usize::from(due.ends_round);
            schedule.advance();
        }
        assert_eq!(n_rounds, 20);
        for (device_idx, device_stamps) in stamps.iter().enumerate() {
            assert_eq!(device_stamps.len(), 20);
            let phase_ms = device_phases[device_idx].as_millis() as u64;
            assert_eq!(device_stamps[0], origin.wall_ms + phase_ms);
            for pair in device_stamps.windows(2) {
                assert_eq!(pair[1] - pair[0], 100, "{device_stamps:?}");
            }
        }
        // The devices sample at different instants of a period.
        let firsts: Vec<u64> = stamps
            .iter()
            .map(|device_stamps| device_stamps[0])
            .collect();
        assert!(
            firsts.windows(2).all(|pair| pair[0] != pair[1]),
            "{firsts:?}"
        );
    }

    #[test]
    fn a_node_without_devices_still_ticks_once_per_period() {
        let origin = Origin {
            instant: Instant::now(),
            wall_ms: 5_000,
        };
        let mut schedule = Schedule::new(origin, PERIOD, &[]);
        for round in 0..3u64 {
            let due = schedule.peek();
            assert_eq!(due.device_idx, None);
            assert!(due.ends_round);
            assert_eq!(due.timestamp_ms, 5_000 + round * 100);
            schedule.advance();
        }
    }
}
