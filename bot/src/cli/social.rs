//! `switchyard-bot social`: its flags, its `[social]` file section, the mail list, the resolved
//! [`SocialPlan`], and running it (HTTP or embedded) on a multi-thread runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::common::{positive, CommonArgs, CommonKeys, Place, TargetArgs};
use super::file::{read_file_config, SocialFile};
use super::{conclude, usage_error};
use crate::report::Outcome;
use crate::social::{self, SocialOptions};
use crate::transport::{EmbeddedTransport, HttpTransport};

pub(super) const SOCIAL_ABOUT: &str = "\
Simulate users against a server (--url) or an embedded engine (--embedded --data-dir) and check
the server against the bot's own ledger after each phase.

Phase I (sign-up): addresses from the mail list, in order, until --users users exist; an address
refused as taken or undeliverable is skipped. Passwords are derived from the seed.
Phase II (posts): every user logs in and creates 1..=--max-posts posts (drawn per user).
Phase III (likes, in rounds): every user with posts gets a like budget of 1..=--max-likes. In each
round the users, in descending order of post count, each with budget left: build the zero list
(every post of every OTHER user that has at least one post with zero likes), draw 1..=remaining
budget, pick that many distinct posts from it uniformly, and like each picked post it does not
like yet or unlike one it already likes (a user never likes its own post). Every like or unlike
uses one unit of budget. Phase III stops when no user has budget left or no post with zero
likes remains.

After each phase the bot compares every user's posts_count and likes_given, every post's likes
and likers, and GET /api/v1/stats/social (and, embedded, the engine's own check) with its ledger,
and stops with exit code 2 on any difference, printing each.

The same --seed and options give the same sequence of operations; --concurrency N runs users on N
tasks, which changes how users interleave but never a user's own sequence.";

#[derive(Debug, Clone, Args, Default)]
pub struct SocialArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Users to sign up [default: 50].
    #[arg(long)]
    pub users: Option<usize>,
    /// Each user creates 1..=N posts [default: 7].
    #[arg(long)]
    pub max_posts: Option<u64>,
    /// Each user's like budget is 1..=N [default: 10].
    #[arg(long)]
    pub max_likes: Option<u64>,
    /// Users run in parallel on N tokio tasks [default: 1].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Mail list, one address a line [default: data/mail_list.txt, built in].
    #[arg(long, value_name = "FILE")]
    pub mail_list: Option<PathBuf>,
    /// Write the operation log (one operation a line, in plan order) to this file.
    #[arg(long, value_name = "FILE")]
    pub op_log: Option<PathBuf>,
    /// Also check the ledger after every Phase III round.
    #[arg(long)]
    pub check_every_round: bool,
    /// Embedded only: argon2 memory cost in KiB [default: the engine's].
    #[arg(long)]
    pub hash_memory_kib: Option<u32>,
    /// Embedded only: argon2 iterations [default: the engine's].
    #[arg(long)]
    pub hash_iterations: Option<u32>,
}

impl SocialFile {
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

/// The built-in mail list (data/mail_list.txt).
const MAIL_LIST: &str = include_str!("../../../data/mail_list.txt");

/// Addresses of a mail list: one a line; blank lines and `#` comments skipped.
pub fn parse_mail_list(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The shipped mail list.
pub fn builtin_mail_list() -> Vec<String> {
    parse_mail_list(MAIL_LIST)
}

/// Where a simulation runs.
#[derive(Debug, Clone)]
pub enum Target {
    Http {
        url: String,
    },
    Embedded {
        data_dir: PathBuf,
        hash_memory_kib: Option<u32>,
        hash_iterations: Option<u32>,
    },
}

/// A simulation, fully resolved.
#[derive(Debug, Clone)]
pub struct SocialPlan {
    pub target: Target,
    pub options: SocialOptions,
    pub timeout: Duration,
    pub report: Option<PathBuf>,
    pub op_log: Option<PathBuf>,
}

/// Merges flags, the file and defaults for `social`.
pub fn resolve_social(args: &SocialArgs, config: Option<&Path>) -> Result<SocialPlan, String> {
    let file = read_file_config(config)?;
    let section = &file.social;
    let common = args.common.merge(section.common(), file.common());
    let target = match args.target.place(
        common.url.clone(),
        section.embedded,
        section.data_dir.clone(),
    )? {
        Place::DataDir(data_dir) => Target::Embedded {
            data_dir,
            hash_memory_kib: args.hash_memory_kib.or(section.hash_memory_kib),
            hash_iterations: args.hash_iterations.or(section.hash_iterations),
        },
        Place::Url(url) => Target::Http { url },
    };
    let mail_list = match args.mail_list.clone().or(section.mail_list.clone()) {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|error| format!("--mail-list {}: {error}", path.display()))?;
            parse_mail_list(&text)
        }
        None => builtin_mail_list(),
    };
    let options = SocialOptions {
        seed: common.seed,
        users: positive("users", args.users.or(section.users).unwrap_or(50))?,
        max_posts: positive(
            "max-posts",
            args.max_posts.or(section.max_posts).unwrap_or(7),
        )?,
        max_likes: positive(
            "max-likes",
            args.max_likes.or(section.max_likes).unwrap_or(10),
        )?,
        concurrency: positive(
            "concurrency",
            args.concurrency.or(section.concurrency).unwrap_or(1),
        )?,
        mail_list: Arc::new(mail_list),
        check_every_round: args.check_every_round || section.check_every_round.unwrap_or(false),
        progress: common.progress,
    };
    Ok(SocialPlan {
        target,
        options,
        timeout: Duration::from_millis(positive("timeout-ms", common.timeout_ms)?),
        report: common.report,
        op_log: args.op_log.clone().or(section.op_log.clone()),
    })
}

/// Runs a resolved simulation on a new tokio runtime; returns the exit code.
pub fn run_social_plan(plan: SocialPlan) -> u8 {
    println!(
        "seed {} (replay with --seed {})",
        plan.options.seed, plan.options.seed
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return usage_error(&format!("starting the runtime: {error}")),
    };
    let run = runtime.block_on(async {
        match &plan.target {
            Target::Http { url } => {
                let transport = HttpTransport::new(url, plan.options.concurrency, plan.timeout)
                    .map_err(|e| e.to_string())?;
                Ok(social::run(Arc::new(transport), plan.options.clone()).await)
            }
            Target::Embedded {
                data_dir,
                hash_memory_kib,
                hash_iterations,
            } => {
                let config =
                    EmbeddedTransport::config(data_dir, *hash_memory_kib, *hash_iterations);
                let transport =
                    tokio::task::spawn_blocking(move || EmbeddedTransport::open(config))
                        .await
                        .map_err(|error| error.to_string())?
                        .map_err(|error| {
                            format!("opening the engine in {}: {error}", data_dir.display())
                        })?;
                let transport = Arc::new(transport);
                let run = social::run(transport.clone(), plan.options.clone()).await;
                let closing = transport.clone();
                tokio::task::spawn_blocking(move || closing.shutdown())
                    .await
                    .map_err(|error| error.to_string())?
                    .map_err(|error| format!("shutting the engine down: {error}"))?;
                Ok::<_, String>(run)
            }
        }
    });
    let run = match run {
        Ok(run) => run,
        Err(message) => {
            let code = usage_error(&message);
            println!("replay with --seed {}", plan.options.seed);
            return code;
        }
    };
    if let Some(path) = &plan.op_log {
        let mut text = run.op_log.join("\n");
        text.push('\n');
        if let Err(error) = std::fs::write(path, text) {
            eprintln!(
                "switchyard-bot: writing the op log to {}: {error}",
                path.display()
            );
            return Outcome::Error.exit_code();
        }
    }
    conclude(&run.report, plan.report.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_need_url_or_embedded_data_dir() {
        let args = SocialArgs {
            target: TargetArgs {
                embedded: true,
                data_dir: None,
            },
            ..SocialArgs::default()
        };
        assert!(resolve_social(&args, None)
            .unwrap_err()
            .contains("--data-dir"));
        assert!(resolve_social(&SocialArgs::default(), None).is_err());
    }

    #[test]
    fn the_shipped_mail_list_is_large_distinct_and_deliverable() {
        let list = builtin_mail_list();
        assert!(list.len() >= 5_000, "{}", list.len());
        let distinct: std::collections::BTreeSet<String> = list
            .iter()
            .map(|address| address.to_ascii_lowercase())
            .collect();
        assert_eq!(distinct.len(), list.len());
        for address in &list {
            assert!(
                switchyard_engine::social::offline_email_verdict(address).is_ok(),
                "{address}"
            );
            let domain = address.rsplit_once('@').unwrap().1;
            assert!(["example.com", "example.org", "example.net"].contains(&domain));
        }
    }
}
