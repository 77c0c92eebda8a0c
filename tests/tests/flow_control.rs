//! Flow control: a follower far behind (on a slow link, or crashed for a while) costs the
//! leader bounded memory, and catches up once it can.
//!
//! At every step the suite checks the leader's bookkeeping for the victim (appends and bytes
//! unacknowledged) against the configured bounds, and the bytes actually on their way to the
//! victim against a bound derived from them.

use raft_tests::{cmd, ensure, seed_suite, Outcome, Sim, SimConfig};

const SEEDS: u64 = 50;
const MAX_INFLIGHT: usize = 8;
const MAX_INFLIGHT_BYTES: usize = 16 * 1024;
const MAX_APPEND_BYTES: usize = 4 * 1024;
const CHUNK_BYTES: usize = 4 * 1024;

/// Bytes the leader may have out to one follower: two windows (the byte bound plus the message
/// that crosses it, and a snapshot chunk), one probe or heartbeat per heartbeat interval of the
/// round trip, and the framing of each message (entry sizes are counted by `size_hint`).
///
/// The leader counts every append not answered yet, including those sent before it went back to
/// probing, so windows never pile up. Two windows because a go-back after a reordered append
/// resends entries whose first copy may still be on the wire: the leader frees an append when
/// any copy of its entries is acknowledged. This holds while a round trip stays under the
/// leader's retransmission wait (at least two heartbeat intervals, see
/// `raft_core::progress::SILENT_INTERVALS_BEFORE_PROBE`).
fn network_bound(round_trip_ms: u64, heartbeat_ms: u64) -> u64 {
    const FRAMING: u64 = 64;
    let window = (MAX_INFLIGHT_BYTES + MAX_APPEND_BYTES + CHUNK_BYTES) as u64;
    let resends = round_trip_ms / heartbeat_ms + 1;
    2 * window
        + resends * (MAX_APPEND_BYTES as u64 + FRAMING)
        + 2 * (MAX_INFLIGHT as u64 + 1) * FRAMING
}

fn far_behind(seed: u64) -> Outcome {
    let mut config = SimConfig::new(3, seed);
    config.raft.max_inflight_appends = MAX_INFLIGHT;
    config.raft.max_inflight_bytes = MAX_INFLIGHT_BYTES;
    config.raft.max_append_bytes = MAX_APPEND_BYTES;
    config.raft.snapshot_chunk_bytes = CHUNK_BYTES;
    config.snapshot_every = [None, Some(200)][(seed % 2) as usize];
    config.snapshot_padding = 20 * 1024;
    let heartbeat_ms = config.tick_ms * u64::from(config.raft.heartbeat_interval);
    let mut sim = Sim::new(config);
    sim.one(cmd(0), 3, true)?;
    let leader = sim.check_one_leader()?;
    let victim = (leader + 1) % 3;
    let victim_id = victim as u64 + 1;
    // A slow link (80 ms each way, a round trip near twice the heartbeat interval) on half the
    // seeds; a crash on the others, restarted later.
    let slow = seed % 4 < 2;
    let extra = 80;
    if slow {
        sim.set_node_delay(victim, extra);
    } else {
        sim.crash(victim);
    }
    let bound = network_bound(2 * extra + 10, heartbeat_ms);
    let mut peak_network = 0;
    let mut next = 1;
    for _ in 0..400 {
        for _ in 0..5 {
            next += 1;
            let mut value = cmd(next);
            value.resize(200, 7);
            sim.propose(leader, value);
        }
        sim.sleep(5)?;
        let Some(node) = sim.node(leader).filter(|n| n.is_leader()) else {
            continue; // a rare election under load: the bounds hold for whoever leads next
        };
        if let Some(progress) = node.progress(victim_id) {
            ensure!(
                sim,
                progress.inflight() <= MAX_INFLIGHT,
                "{} appends in flight to the victim",
                progress.inflight()
            );
            ensure!(
                sim,
                progress.inflight_bytes() < MAX_INFLIGHT_BYTES + MAX_APPEND_BYTES,
                "{} bytes of entries in flight to the victim",
                progress.inflight_bytes()
            );
        }
        let network = sim.bytes_in_flight_to(victim);
        peak_network = peak_network.max(network);
        ensure!(
            sim,
            network <= bound,
            "{network} bytes on their way to the victim (bound {bound})"
        );
    }
    if !slow {
        sim.restart(victim);
    }
    sim.set_node_delay(victim, 0);
    let last = sim.one(cmd(u64::MAX), 3, true)?;
    sim.wait(last, 3, None)?;
    tracing::debug!(peak_network, bound, "far-behind follower caught up");
    Ok(())
}

seed_suite!(far_behind_follower, SEEDS, far_behind);
