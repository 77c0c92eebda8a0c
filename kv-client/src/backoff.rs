//! Retry delays: capped exponential backoff with jitter from a seeded generator.

/// The Clerk's only randomness (jitter), seeded from its configuration: raft-core's
/// reproducible generator.
pub(crate) use raft_core::rng::SplitMix64;

/// How soon to retry after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delay {
    /// A server named the leader: go there now (unless hints have been chasing each other for
    /// too long, then back off).
    FollowHint,
    /// No answer, a transport error or no leader known: try the next server now, and back off
    /// once every server has been tried.
    Rotate,
    /// The server asked to come back later (busy, or it could not tell the outcome): back off
    /// from the first failure.
    Later,
}

/// The delay before attempt number `failures + 1` of a request, in milliseconds.
///
/// `servers` is the cluster size, `min_ms..=max_ms` the backoff range. Exponential backoff
/// doubles from `min_ms` and is capped at `max_ms`; the result is jittered uniformly over its
/// upper half ("equal jitter"), so the cap is never exceeded.
pub(crate) fn delay_ms(
    kind: Delay,
    failures: u32,
    servers: u32,
    min_ms: u64,
    max_ms: u64,
    rng: &mut SplitMix64,
) -> u64 {
    let servers = servers.max(1);
    let exponent = match kind {
        Delay::FollowHint if failures <= 2 * servers => return 0,
        Delay::FollowHint => failures - 2 * servers,
        Delay::Rotate if failures < servers => return 0,
        Delay::Rotate => failures - servers,
        Delay::Later => failures.saturating_sub(1),
    };
    let full = min_ms
        .max(1)
        .saturating_mul(1u64 << exponent.min(62))
        .min(max_ms.max(1));
    let half = full / 2;
    half + rng.next_u64() % (full - half + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_is_immediate_for_one_round_then_backs_off_up_to_the_cap() {
        let mut rng = SplitMix64::new(7);
        let d = |f, rng: &mut SplitMix64| delay_ms(Delay::Rotate, f, 3, 10, 200, rng);
        assert_eq!(d(1, &mut rng), 0);
        assert_eq!(d(2, &mut rng), 0);
        for _ in 0..100 {
            let first = d(3, &mut rng);
            assert!((5..=10).contains(&first), "{first}");
            let second = d(4, &mut rng);
            assert!((10..=20).contains(&second), "{second}");
            let capped = d(40, &mut rng);
            assert!((100..=200).contains(&capped), "{capped}");
        }
        assert!((100..=200).contains(&d(u32::MAX, &mut rng)));
    }

    #[test]
    fn hints_are_followed_at_once_for_a_while_and_later_waits_from_the_start() {
        let mut rng = SplitMix64::new(1);
        assert_eq!(delay_ms(Delay::FollowHint, 6, 3, 10, 200, &mut rng), 0);
        assert!(delay_ms(Delay::FollowHint, 7, 3, 10, 200, &mut rng) >= 5);
        let later = delay_ms(Delay::Later, 1, 3, 10, 200, &mut rng);
        assert!((5..=10).contains(&later));
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let run = |seed| {
            let mut rng = SplitMix64::new(seed);
            (0..20)
                .map(|f| delay_ms(Delay::Later, f, 3, 10, 1_000, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }
}
