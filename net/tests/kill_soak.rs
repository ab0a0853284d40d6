//! The SIGKILL soak (issue 11): the real `switchyard` binary under mixed load across every
//! workload it serves (social: sign-ups, posts, likes/unlikes; work: item adds, leases,
//! results), killed with SIGKILL at a seeded moment and restarted, cycle after cycle; after each
//! restart every acknowledged write must be there and every invariant checker clean. The
//! episodes are `common/crashes.rs`.
//!
//! CI: 2 episodes of 4 kills. `SWITCHYARD_SLOW_TESTS=1`: 250 episodes (1,000 kills). `SWITCHYARD_SOAK_EPISODES=N`, `SWITCHYARD_SOAK_SEED=S` (replay one episode).

mod common;
#[path = "common/crashes.rs"]
mod crashes;

#[test]
fn acknowledged_writes_survive_repeated_sigkills_under_mixed_load() {
    crashes::run(&crashes::Settings {
        name: "soak",
        env_prefix: "SWITCHYARD_SOAK",
        crash: crashes::Crash::Kill,
        ci_episodes: 2,
        slow_episodes: 250,
        cycles_per_episode: 4,
    });
}
