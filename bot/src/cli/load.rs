//! `switchyard-bot load`: its flags, its `[load]` file section, the resolved [`LoadPlan`], and
//! running it on a runtime of `--threads` workers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::common::{positive, CommonArgs, CommonKeys};
use super::file::{read_file_config, LoadFile};
use super::{conclude, usage_error};
use crate::load::{self, LoadOptions, Mix};

pub(super) const LOAD_ABOUT: &str = "\
Open-model load generator: arrivals at --rate per second, scheduled independently of responses,
spread round-robin over --connections keep-alive connections; latency is measured from each
request's scheduled send time (coordinated omission corrected). --mix weights like (like or
unlike a post of another user), post (create a post), read (GET a post) and health (GET /healthz).
When the mix needs them, a setup step first signs up --setup-users users (at least one per
connection), logs them in and has each create --setup-posts posts.";

#[derive(Debug, Clone, Args, Default)]
pub struct LoadArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Arrivals per second [default: 1000].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of load [default: 10].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Keep-alive connections, one task each [default: 32].
    #[arg(long)]
    pub connections: Option<usize>,
    /// Operation weights [default: like=70,post=20,read=10].
    #[arg(long)]
    pub mix: Option<String>,
    /// Requests in flight per connection; 1 = no pipelining [default: 1].
    #[arg(long)]
    pub pipeline: Option<usize>,
    /// Runtime worker threads; 1 runs a current-thread runtime [default: 1].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Users the setup step signs up (at least one per connection for like/post) [default: 0,
    /// i.e. one per connection].
    #[arg(long)]
    pub setup_users: Option<usize>,
    /// Posts each setup user creates [default: 2].
    #[arg(long)]
    pub setup_posts: Option<usize>,
}

impl LoadFile {
    pub(super) fn common(&self) -> CommonKeys {
        CommonKeys {
            seed: self.seed,
            url: self.url.clone(),
            report: self.report.clone(),
            progress: self.progress,
            timeout_ms: self.timeout_ms,
        }
    }
}

/// `--mix` when neither the flag nor the file gives one.
const DEFAULT_MIX: &str = "like=70,post=20,read=10";

/// A load run, fully resolved.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub options: LoadOptions,
    pub report: Option<PathBuf>,
}

/// Merges flags, the file and defaults for `load`.
pub fn resolve_load(args: &LoadArgs, config: Option<&Path>) -> Result<LoadPlan, String> {
    let file = read_file_config(config)?;
    let section = &file.load;
    let common = args.common.merge(section.common(), file.common());
    let url = common
        .url
        .ok_or("load needs --url URL (a running server)")?;
    let mix = match &args.mix {
        Some(text) => Mix::parse(text)?,
        None => match section.mix.clone() {
            Some(mix) => mix,
            // Invariant: the default mix is a constant that parses.
            None => Mix::parse(DEFAULT_MIX).expect("default mix parses"),
        },
    };
    let duration = positive(
        "duration",
        args.duration.or(section.duration).unwrap_or(10.0),
    )?;
    let options = LoadOptions {
        url,
        seed: common.seed,
        rate: positive("rate", args.rate.or(section.rate).unwrap_or(1000.0))?,
        duration: Duration::from_secs_f64(duration),
        connections: positive(
            "connections",
            args.connections.or(section.connections).unwrap_or(32),
        )?,
        pipeline: positive("pipeline", args.pipeline.or(section.pipeline).unwrap_or(1))?,
        threads: positive("threads", args.threads.or(section.threads).unwrap_or(1))?,
        mix,
        setup_users: args.setup_users.or(section.setup_users).unwrap_or(0),
        setup_posts: args.setup_posts.or(section.setup_posts).unwrap_or(2),
        timeout: Duration::from_millis(positive("timeout-ms", common.timeout_ms)?),
        progress: common.progress,
    };
    Ok(LoadPlan {
        options,
        report: common.report,
    })
}

/// Runs a resolved load on a runtime with `threads` workers; returns the exit code.
pub fn run_load_plan(plan: LoadPlan) -> u8 {
    println!(
        "seed {} (replay with --seed {})",
        plan.options.seed, plan.options.seed
    );
    let runtime = if plan.options.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(plan.options.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => return usage_error(&format!("starting the runtime: {error}")),
    };
    let report = runtime.block_on(load::run(plan.options.clone()));
    conclude(&report, plan.report.as_deref())
}
