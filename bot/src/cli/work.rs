//! `switchyard-bot work`: its flags, its `[work]` file section, the resolved [`WorkPlan`]
//! (target, options, drain or lease-only), and running it on a current-thread runtime (the
//! embedded engine is opened and shut down here).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::common::{positive, CommonArgs, CommonKeys, Place, TargetArgs};
use super::file::{read_file_config, WorkFile};
use super::{conclude, usage_error};
use crate::report::Report;
use crate::transport::EmbeddedTransport;
use crate::work::{self, HttpWork, WorkMode, WorkOptions};

pub(super) const WORK_ABOUT: &str = "\
Simulated work clients, against a server (--url) or an embedded engine (--embedded --data-dir).

add: --items items with keys bot-<seed>-<n> (over HTTP with the admin token: --admin-token or
SWITCHYARD_ADMIN_TOKEN), in chunks of up to 18000 per request. A key that already exists (an
earlier run with the same seed) stops the run.
drain: --clients simulated clients, each on its own task, register, lease up to --max-buckets
buckets and report a result for every item; with --crash-percent chance per bucket a client
reports only half, stops and comes back under a new registration. The abandoned lease expires
after work.lease_seconds: run the server with a short lease (--set work.lease_seconds=1), or give
--lease-seconds to an embedded run. With --crash-percent 0 the drain is a pure throughput run.
check: every item must be done with exactly one result and acknowledged exactly once; exit code 2
otherwise.

The report gives the add rate, the drain time, leases/s (buckets leased per second of drain) and
results/s (items reported per second of drain). Keys of the --config file: the top level and a
[work] section with the flags' names in snake_case.

--lease-only measures what the PostgreSQL peer's W4 does (claim one unowned bucket, set owner and
expiry; no completion): after the same add phase, a lease phase instead of the drain: each client
registers, then leases up to --max-buckets buckets per request and keeps them, never reporting,
heartbeating or crashing (--crash-percent must be 0 or unset), until a lease answers with no
bucket. The leases must outlive the run: embedded, the lease is 3600 s unless --lease-seconds is
given; a server keeps its own work.lease_seconds (default 2 h) and
work.leased_buckets_per_client_max (default 100; give the server at least items / clients, e.g.
--set work.leased_buckets_per_client_max=1000000, or the run stops at too_many_buckets). check: every item was handed
out in exactly one bucket, no bucket id twice, and the server lists every item as leased; exit
code 2 otherwise. The report gives leases/s (buckets leased per second of the lease phase), lease
requests/s and the lease latency. The leases stay on the server: use a fresh data dir or server
for the next run.";

#[derive(Debug, Clone, Args, Default)]
pub struct WorkArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// The server's admin token (adds the items; HTTP only) [default: $SWITCHYARD_ADMIN_TOKEN].
    #[arg(long)]
    pub admin_token: Option<String>,
    /// Simulated clients, one task each [default: 8].
    #[arg(long)]
    pub clients: Option<usize>,
    /// Items to add and drain [default: 2000].
    #[arg(long)]
    pub items: Option<usize>,
    /// Buckets per lease request [default: 1].
    #[arg(long)]
    pub max_buckets: Option<usize>,
    /// Chance in percent that a client crashes mid-bucket; 0 = a pure throughput run
    /// [default: 10; with --lease-only 0, the only value allowed].
    #[arg(long)]
    pub crash_percent: Option<u64>,
    /// Lease without reporting (the PostgreSQL peer's W4): a lease phase instead of the drain,
    /// then check every item was handed out once and is leased.
    #[arg(long)]
    pub lease_only: bool,
    /// The whole run must finish within this many seconds [default: 300].
    #[arg(long)]
    pub deadline_seconds: Option<u64>,
    /// Embedded only: the engine's work.lease_seconds, after which a crashed client's lease
    /// expires [default: 5; with --lease-only 3600]. A server's lease is its own (--set
    /// work.lease_seconds=N).
    #[arg(long)]
    pub lease_seconds: Option<u64>,
    /// Embedded only: the engine's work.bucket_size, items per bucket [default: the engine's,
    /// 180].
    #[arg(long)]
    pub bucket_size: Option<usize>,
    /// Embedded only: the engine's work.max_expiries, after which a bucket is dead-lettered
    /// [default: the engine's, 5].
    #[arg(long)]
    pub max_expiries: Option<u32>,
}

impl WorkFile {
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

/// Where a work run goes.
#[derive(Debug, Clone)]
pub enum WorkTarget {
    Http {
        url: String,
        admin_token: String,
    },
    Embedded {
        data_dir: PathBuf,
        lease_seconds: u64,
        bucket_size: Option<usize>,
        max_expiries: Option<u32>,
    },
}

/// A work run, fully resolved.
#[derive(Debug, Clone)]
pub struct WorkPlan {
    pub target: WorkTarget,
    pub options: WorkOptions,
    /// The drain, or `--lease-only`.
    pub mode: WorkMode,
    /// Per-request timeout (HTTP).
    pub timeout: Duration,
    pub report: Option<PathBuf>,
}

/// `--lease-seconds` of an embedded run when neither the flag nor the file gives one.
const EMBEDDED_LEASE_SECONDS: u64 = 5;

/// The same for an embedded `--lease-only` run: its leases must outlive the run and its check.
const EMBEDDED_LEASE_ONLY_LEASE_SECONDS: u64 = 3600;

/// Merges flags, the file and defaults for `work`.
pub fn resolve_work(args: &WorkArgs, config: Option<&Path>) -> Result<WorkPlan, String> {
    let file = read_file_config(config)?;
    let section = &file.work;
    let common = args.common.merge(section.common(), file.common());
    let lease_seconds = args.lease_seconds.or(section.lease_seconds);
    let bucket_size = args.bucket_size.or(section.bucket_size);
    let max_expiries = args.max_expiries.or(section.max_expiries);
    let lease_only = args.lease_only || section.lease_only.unwrap_or(false);
    let target = match args.target.place(
        common.url.clone(),
        section.embedded,
        section.data_dir.clone(),
    )? {
        Place::DataDir(data_dir) => WorkTarget::Embedded {
            data_dir,
            lease_seconds: positive(
                "lease-seconds",
                lease_seconds.unwrap_or(if lease_only {
                    EMBEDDED_LEASE_ONLY_LEASE_SECONDS
                } else {
                    EMBEDDED_LEASE_SECONDS
                }),
            )?,
            bucket_size: bucket_size
                .map(|size| positive("bucket-size", size))
                .transpose()?,
            max_expiries: max_expiries
                .map(|count| positive("max-expiries", count))
                .transpose()?,
        },
        Place::Url(url) => {
            if lease_seconds.is_some() || bucket_size.is_some() || max_expiries.is_some() {
                return Err(
                    "--lease-seconds, --bucket-size and --max-expiries configure the \
                            embedded engine; a server has its own (--set work.lease_seconds=N)"
                        .into(),
                );
            }
            let admin_token = args
                .admin_token
                .clone()
                .or_else(|| std::env::var("SWITCHYARD_ADMIN_TOKEN").ok())
                .filter(|token| !token.is_empty())
                .ok_or(
                    "work over --url needs --admin-token (or SWITCHYARD_ADMIN_TOKEN) to add items",
                )?;
            WorkTarget::Http { url, admin_token }
        }
    };
    let crash_percent = args.crash_percent.or(section.crash_percent);
    let crash_percent = match (lease_only, crash_percent) {
        (true, None | Some(0)) => 0,
        (true, Some(percent)) => {
            return Err(format!(
                "--lease-only clients never report, heartbeat or crash: --crash-percent must be \
                 0 or unset with --lease-only, got {percent}"
            ))
        }
        (false, percent) => percent.unwrap_or(10),
    };
    if crash_percent > 100 {
        return Err(format!(
            "--crash-percent must be 0..=100, got {crash_percent}"
        ));
    }
    let options = WorkOptions {
        seed: common.seed,
        clients: positive("clients", args.clients.or(section.clients).unwrap_or(8))?,
        items: positive("items", args.items.or(section.items).unwrap_or(2000))?,
        max_buckets: positive(
            "max-buckets",
            args.max_buckets.or(section.max_buckets).unwrap_or(1),
        )?,
        crash_percent,
        deadline: Duration::from_secs(positive(
            "deadline-seconds",
            args.deadline_seconds
                .or(section.deadline_seconds)
                .unwrap_or(300),
        )?),
        progress: common.progress,
    };
    Ok(WorkPlan {
        target,
        options,
        mode: if lease_only {
            WorkMode::LeaseOnly
        } else {
            WorkMode::Drain
        },
        timeout: Duration::from_millis(positive("timeout-ms", common.timeout_ms)?),
        report: common.report,
    })
}

/// Opens the plan's target, runs the work scenario on it and closes it (the embedded engine is
/// shut down in order). Err: the target could not be opened or closed (exit code 1).
pub async fn run_work(plan: &WorkPlan) -> Result<Report, String> {
    let options = plan.options.clone();
    match &plan.target {
        WorkTarget::Http { url, admin_token } => {
            let transport = HttpWork::new(url, options.clients, plan.timeout, admin_token.clone())
                .map_err(|error| error.to_string())?;
            Ok(work::run_mode(Arc::new(transport), options, plan.mode).await)
        }
        WorkTarget::Embedded {
            data_dir,
            lease_seconds,
            bucket_size,
            max_expiries,
        } => {
            let mut config = EmbeddedTransport::config(data_dir, None, None);
            config
                .section_mut::<switchyard_engine::work::WorkConfig>()
                .lease_seconds = *lease_seconds;
            if let Some(size) = bucket_size {
                config
                    .section_mut::<switchyard_engine::work::WorkConfig>()
                    .bucket_size = *size;
            }
            if let Some(count) = max_expiries {
                config
                    .section_mut::<switchyard_engine::work::WorkConfig>()
                    .max_expiries = *count;
            }
            if plan.mode == WorkMode::LeaseOnly {
                // A lease-only client keeps every bucket it gets: let it hold them all (a bucket
                // holds at least one item), so each client registers once.
                config
                    .section_mut::<switchyard_engine::work::WorkConfig>()
                    .leased_buckets_per_client_max = config
                    .section_mut::<switchyard_engine::work::WorkConfig>()
                    .leased_buckets_per_client_max
                    .max(options.items);
            }
            let shown = data_dir.display().to_string();
            let transport = tokio::task::spawn_blocking(move || EmbeddedTransport::open(config))
                .await
                .map_err(|error| error.to_string())?
                .map_err(|error| format!("opening the engine in {shown}: {error}"))?;
            let transport = Arc::new(transport);
            let report = work::run_mode(transport.clone(), options, plan.mode).await;
            tokio::task::spawn_blocking(move || transport.shutdown())
                .await
                .map_err(|error| error.to_string())?
                .map_err(|error| format!("shutting the engine down: {error}"))?;
            Ok(report)
        }
    }
}

/// Runs a resolved work scenario on a new current-thread tokio runtime (like `load`'s default:
/// on this 2-core machine a multi-thread runtime's cross-thread wake-ups cost the bot ~25% more
/// CPU, taken from the server it measures); returns the exit code.
pub fn run_work_plan(plan: WorkPlan) -> u8 {
    println!(
        "seed {} (replay with --seed {})",
        plan.options.seed, plan.options.seed
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return usage_error(&format!("starting the runtime: {error}")),
    };
    match runtime.block_on(run_work(&plan)) {
        Ok(report) => conclude(&report, plan.report.as_deref()),
        Err(message) => {
            let code = usage_error(&message);
            println!("replay with --seed {}", plan.options.seed);
            code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    use crate::cli::Cli;
    use crate::cli::Command;

    fn parse(arguments: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("switchyard-bot").chain(arguments.iter().copied()))
            .expect("parses")
    }

    #[test]
    fn work_targets_need_url_or_embedded_data_dir() {
        let embedded = WorkArgs {
            target: TargetArgs {
                embedded: true,
                data_dir: None,
            },
            ..WorkArgs::default()
        };
        assert!(resolve_work(&embedded, None)
            .unwrap_err()
            .contains("--data-dir"));
        let both = WorkArgs {
            target: TargetArgs {
                embedded: true,
                data_dir: Some("/tmp/x".into()),
            },
            common: CommonArgs {
                url: Some("http://127.0.0.1:1".into()),
                ..CommonArgs::default()
            },
            ..WorkArgs::default()
        };
        assert!(resolve_work(&both, None).unwrap_err().contains("not both"));
        assert!(resolve_work(&WorkArgs::default(), None)
            .unwrap_err()
            .contains("--url"));
        let cli = parse(&[
            "work",
            "--embedded",
            "--data-dir",
            "/tmp/x",
            "--lease-seconds",
            "1",
            "--bucket-size",
            "10",
            "--crash-percent",
            "0",
        ]);
        let Command::Work(args) = &cli.command else {
            panic!("work")
        };
        let plan = resolve_work(args, None).unwrap();
        assert!(matches!(
            plan.target,
            WorkTarget::Embedded {
                lease_seconds: 1,
                bucket_size: Some(10),
                max_expiries: None,
                ..
            }
        ));
        assert_eq!(plan.options.crash_percent, 0);
        assert_eq!(plan.options.items, 2000);
        let cli = parse(&[
            "work",
            "--url",
            "http://127.0.0.1:1",
            "--admin-token",
            "t",
            "--lease-seconds",
            "1",
        ]);
        let Command::Work(args) = &cli.command else {
            panic!("work")
        };
        assert!(resolve_work(args, None)
            .unwrap_err()
            .contains("embedded engine"));
    }

    #[test]
    fn lease_only_gets_a_long_embedded_lease_and_refuses_crashes() {
        let resolve = |arguments: &[&str]| {
            let cli = parse(arguments);
            let Command::Work(args) = &cli.command else {
                panic!("work")
            };
            resolve_work(args, cli.config.as_deref())
        };
        let embedded = ["work", "--embedded", "--data-dir", "/tmp/x", "--lease-only"];
        let plan = resolve(&embedded).unwrap();
        assert_eq!(plan.mode, WorkMode::LeaseOnly);
        assert_eq!(plan.options.crash_percent, 0);
        assert!(matches!(
            plan.target,
            WorkTarget::Embedded {
                lease_seconds: EMBEDDED_LEASE_ONLY_LEASE_SECONDS,
                ..
            }
        ));
        let plan = resolve(
            &[
                &embedded[..],
                &["--lease-seconds", "9", "--crash-percent", "0"],
            ]
            .concat(),
        )
        .unwrap();
        assert!(matches!(
            plan.target,
            WorkTarget::Embedded {
                lease_seconds: 9,
                ..
            }
        ));
        let error = resolve(&[&embedded[..], &["--crash-percent", "10"]].concat()).unwrap_err();
        assert!(
            error.contains("--lease-only") && error.contains("--crash-percent"),
            "{error}"
        );
        let plan = resolve(&["work", "--embedded", "--data-dir", "/tmp/x"]).unwrap();
        assert_eq!(plan.mode, WorkMode::Drain);
        assert_eq!(plan.options.crash_percent, 10);
        assert!(matches!(
            plan.target,
            WorkTarget::Embedded {
                lease_seconds: EMBEDDED_LEASE_SECONDS,
                ..
            }
        ));
        // The file's [work] section may ask for it too; a crash percentage there is refused.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bot.toml");
        std::fs::write(&path, "[work]\nlease_only = true\ncrash_percent = 5\n").unwrap();
        let error = resolve(&[
            "work",
            "--embedded",
            "--data-dir",
            "/tmp/x",
            "--config",
            path.to_str().unwrap(),
        ])
        .unwrap_err();
        assert!(error.contains("--crash-percent"), "{error}");
    }
}
