//! Power cuts under the real `switchyard` binary (issue 11): the whole data dir (WAL, sled, the
//! JWT secret, `LOCK`) lives on the `switchyard-powercut` FUSE file system, which keeps every
//! write that no fsync/fdatasync covered in memory only; each cycle of mixed load ends in a
//! power cut (alternating `DropAll` and a seeded `KeepSubset`) and a SIGKILL, and after the
//! restart every acknowledged write must be there and every invariant checker clean. The
//! episodes are `common/crashes.rs`.
//!
//! CI: 3 episodes of 2 cuts. `SWITCHYARD_SLOW_TESTS=1`: 100 episodes (200 cuts).
//! `SWITCHYARD_POWERCUT_EPISODES=N`, `SWITCHYARD_POWERCUT_SEED=S` (replay one episode).

mod common;
#[path = "common/crashes.rs"]
mod crashes;

#[test]
fn acknowledged_writes_survive_power_cuts() {
    crashes::run(&crashes::Settings {
        name: "powercut",
        env_prefix: "SWITCHYARD_POWERCUT",
        crash: crashes::Crash::PowerCut,
        ci_episodes: 3,
        slow_episodes: 100,
        cycles_per_episode: 2,
    });
}
