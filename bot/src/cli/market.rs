//! `switchyard-bot market`: its flags, its `[market]` file section, the resolved
//! [`MarketPlan`] (target, options), and running it on a current-thread runtime (the embedded
//! engine is opened with a fixed price and shut down here).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use switchyard_engine::market::money::parse_amount;
use switchyard_engine::market::source::{Rates, SourceSpec};
use switchyard_engine::market::MarketConfig;

use super::common::{positive, CommonArgs, CommonKeys, Place, TargetArgs};
use super::file::{read_file_config, MarketFile};
use super::{conclude, usage_error};
use crate::market::{self, HttpMarket, MarketOptions};
use crate::report::Report;
use crate::transport::EmbeddedTransport;

pub(super) const MARKET_ABOUT: &str = "\
Seeded users place BTC buy orders with idempotency keys against a server (--url) or an embedded
engine with a fixed price (--embedded --data-dir), then the bot's ledger must match the server
exactly.

users: --users users sign up as market.<seed in hex>.<n>@example.net and log in (embedded: the
market takes any user id, derived from the address). A user that already has orders (an earlier
run with the same seed) stops the run with exit code 1.
orders: --orders orders, planned from the seed: a user, EUR/GBP/USD in a random mix of cases, an
amount from 0.01 to --max-amount with 2 decimals, and an Idempotency-Key bot-<seed in hex>-<n>.
With --retry-percent chance an order is sent twice with the same key and body (both at once, or
the second after the first's answer). --concurrency tasks place them. An attempt without an
answer, or with a 503, is sent again with the same key and body (doubling back-off, or the
server's Retry-After), a 429 after its Retry-After; a 409 btc_cap_exceeded is final.
check: every copy and retry of a key got the same order, at most one 201; every user's orders
(every keyset page) are exactly the ledger's, field by field; every user's orders sum to the
total before the run plus the ledger's, at most --cap-satoshis; btc_amount is amount /
exchange_rate rounded up at 8 decimals; with a price that did not move, every order refused as
over the cap does not fit next to the final total. Exact integer arithmetic. Exit code 2 on any
difference.

Over HTTP the bot needs the admin token (--admin-token or SWITCHYARD_ADMIN_TOKEN) to list every
user's orders, and --cap-satoshis must be the server's market.cap_satoshis. For the cap check run
the server with a fixed price (--set market.price_source=fixed:EUR=50000,GBP=43000,USD=58000)
and give it room for the run's orders per user (market.rate_limit_per_minute, 60 by default,
else 429s are waited out). Nothing else may place orders during the run. Keys of the --config
file: the top level and a [market] section with the flags' names in snake_case.";

/// The embedded engine's price when `--price` is not given.
pub const DEFAULT_PRICE: &str = "EUR=50000,GBP=43000,USD=58000";

#[derive(Debug, Clone, Args, Default)]
pub struct MarketArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// The server's admin token, to list every user's orders (HTTP only)
    /// [default: $SWITCHYARD_ADMIN_TOKEN].
    #[arg(long)]
    pub admin_token: Option<String>,
    /// Users placing orders [default: 10].
    #[arg(long)]
    pub users: Option<usize>,
    /// Orders to place, each with its own Idempotency-Key [default: 500].
    #[arg(long)]
    pub orders: Option<usize>,
    /// Orders placed at once, on this many tokio tasks [default: 8].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Chance in percent that an order is deliberately sent twice with the same key and body
    /// [default: 20].
    #[arg(long)]
    pub retry_percent: Option<u64>,
    /// Largest amount of an order, a decimal with at most 2 decimals [default: 1000.00].
    #[arg(long)]
    pub max_amount: Option<String>,
    /// The BTC cap in satoshis: the server's market.cap_satoshis (HTTP), or the embedded
    /// engine's [default: 10000000000, 100 BTC].
    #[arg(long)]
    pub cap_satoshis: Option<u64>,
    /// The whole run must finish within this many seconds [default: 300].
    #[arg(long)]
    pub deadline_seconds: Option<u64>,
    /// Embedded only: the fixed price, fiat per BTC [default: EUR=50000,GBP=43000,USD=58000].
    #[arg(long, value_name = "EUR=..,GBP=..,USD=..")]
    pub price: Option<String>,
    /// Embedded only: the engine's market.rate_limit_per_minute, orders per user per minute,
    /// 0 = unlimited [default: the engine's, 60].
    #[arg(long)]
    pub rate_limit_per_minute: Option<u32>,
}

impl MarketFile {
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

/// Where a market run goes.
#[derive(Debug, Clone)]
pub enum MarketTarget {
    Http {
        url: String,
        admin_token: String,
    },
    Embedded {
        data_dir: PathBuf,
        /// The fixed price the engine reads.
        rates: Rates,
        rate_limit_per_minute: Option<u32>,
    },
}

/// A market run, fully resolved.
#[derive(Debug, Clone)]
pub struct MarketPlan {
    pub target: MarketTarget,
    pub options: MarketOptions,
    /// Per-request timeout (HTTP).
    pub timeout: Duration,
    pub report: Option<PathBuf>,
}

/// `EUR=..,GBP=..,USD=..` (or with the server's `fixed:` prefix) as rates.
pub fn parse_price(text: &str) -> Result<Rates, String> {
    let spec = if text.starts_with("fixed:") {
        text.to_string()
    } else {
        format!("fixed:{text}")
    };
    match SourceSpec::parse(&spec) {
        Ok(SourceSpec::Fixed(rates)) => Ok(rates),
        Ok(_) => Err(format!("--price {text}: expected EUR=..,GBP=..,USD=..")),
        Err(error) => Err(format!("--price {text}: {error}")),
    }
}

/// Merges flags, the file and defaults for `market`.
pub fn resolve_market(args: &MarketArgs, config: Option<&Path>) -> Result<MarketPlan, String> {
    let file = read_file_config(config)?;
    let section = &file.market;
    let common = args.common.merge(section.common(), file.common());
    let price = args.price.clone().or(section.price.clone());
    let rate_limit_per_minute = args.rate_limit_per_minute.or(section.rate_limit_per_minute);
    let target = match args.target.place(
        common.url.clone(),
        section.embedded,
        section.data_dir.clone(),
    )? {
        Place::DataDir(data_dir) => MarketTarget::Embedded {
            data_dir,
            rates: parse_price(price.as_deref().unwrap_or(DEFAULT_PRICE))?,
            rate_limit_per_minute,
        },
        Place::Url(url) => {
            if price.is_some() || rate_limit_per_minute.is_some() {
                return Err(
                    "--price and --rate-limit-per-minute configure the embedded engine; \
                            a server has its own (--set market.price_source=fixed:EUR=..,GBP=..,\
                            USD=.., --set market.rate_limit_per_minute=N)"
                        .into(),
                );
            }
            let admin_token = args
                .admin_token
                .clone()
                .or_else(|| std::env::var("SWITCHYARD_ADMIN_TOKEN").ok())
                .filter(|token| !token.is_empty())
                .ok_or(
                    "market over --url needs --admin-token (or SWITCHYARD_ADMIN_TOKEN) to list \
                     every user's orders",
                )?;
            MarketTarget::Http { url, admin_token }
        }
    };
    let retry_percent = args.retry_percent.or(section.retry_percent).unwrap_or(20);
    if retry_percent > 100 {
        return Err(format!(
            "--retry-percent must be 0..=100, got {retry_percent}"
        ));
    }
    let max_amount = args
        .max_amount
        .clone()
        .or(section.max_amount.clone())
        .unwrap_or_else(|| "1000.00".into());
    let max_amount_cents = parse_amount(&max_amount).map_err(|_| {
        format!(
            "--max-amount must be a decimal above 0 and below 1000000000 with at most 2 \
             decimals, got {max_amount:?}"
        )
    })?;
    let options = MarketOptions {
        seed: common.seed,
        users: positive("users", args.users.or(section.users).unwrap_or(10))?,
        orders: args.orders.or(section.orders).unwrap_or(500),
        concurrency: positive(
            "concurrency",
            args.concurrency.or(section.concurrency).unwrap_or(8),
        )?,
        retry_percent,
        max_amount_cents,
        cap_satoshis: positive(
            "cap-satoshis",
            args.cap_satoshis
                .or(section.cap_satoshis)
                .unwrap_or(MarketConfig::default().cap_satoshis),
        )?,
        deadline: Duration::from_secs(positive(
            "deadline-seconds",
            args.deadline_seconds
                .or(section.deadline_seconds)
                .unwrap_or(300),
        )?),
        progress: common.progress,
    };
    Ok(MarketPlan {
        target,
        options,
        timeout: Duration::from_millis(positive("timeout-ms", common.timeout_ms)?),
        report: common.report,
    })
}

/// Opens the plan's target, runs the market scenario on it and closes it (the embedded engine
/// is shut down in order). Err: the target could not be opened or closed (exit code 1).
pub async fn run_market(plan: &MarketPlan) -> Result<Report, String> {
    let options = plan.options.clone();
    match &plan.target {
        MarketTarget::Http { url, admin_token } => {
            let transport =
                HttpMarket::new(url, options.concurrency, plan.timeout, admin_token.clone())
                    .map_err(|error| error.to_string())?;
            Ok(market::run(Arc::new(transport), options).await)
        }
        MarketTarget::Embedded {
            data_dir,
            rates,
            rate_limit_per_minute,
        } => {
            let mut config = EmbeddedTransport::config(data_dir, None, None);
            let section = config.section_mut::<MarketConfig>();
            section.cap_satoshis = options.cap_satoshis;
            if let Some(per_minute) = rate_limit_per_minute {
                section.rate_limit_per_minute = *per_minute;
            }
            let rates = *rates;
            let shown = data_dir.display().to_string();
            let transport =
                tokio::task::spawn_blocking(move || market::embedded::open(config, rates))
                    .await
                    .map_err(|error| error.to_string())?
                    .map_err(|error| format!("opening the engine in {shown}: {error}"))?;
            let transport = Arc::new(transport);
            let report = market::run(transport.clone(), options).await;
            tokio::task::spawn_blocking(move || transport.shutdown())
                .await
                .map_err(|error| error.to_string())?
                .map_err(|error| format!("shutting the engine down: {error}"))?;
            Ok(report)
        }
    }
}

/// Runs a resolved market scenario on a new current-thread tokio runtime (as `work` does: the
/// bot's tasks mostly wait for answers); returns the exit code.
pub fn run_market_plan(plan: MarketPlan) -> u8 {
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
    match runtime.block_on(run_market(&plan)) {
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

    use crate::cli::{Cli, Command};

    fn resolve(arguments: &[&str]) -> Result<MarketPlan, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("switchyard-bot").chain(arguments.iter().copied()))
                .expect("parses");
        let Command::Market(args) = &cli.command else {
            panic!("market")
        };
        resolve_market(args, cli.config.as_deref())
    }

    #[test]
    fn market_targets_defaults_and_embedded_only_flags() {
        let plan = resolve(&["market", "--embedded", "--data-dir", "/tmp/x"]).unwrap();
        let MarketTarget::Embedded {
            rates,
            rate_limit_per_minute,
            ..
        } = &plan.target
        else {
            panic!("embedded")
        };
        assert_eq!(*rates, parse_price(DEFAULT_PRICE).unwrap());
        assert_eq!(rates.gbp.to_string(), "43000");
        assert_eq!(*rate_limit_per_minute, None);
        assert_eq!(plan.options.users, 10);
        assert_eq!(plan.options.orders, 500);
        assert_eq!(plan.options.retry_percent, 20);
        assert_eq!(plan.options.max_amount_cents, 100_000);
        assert_eq!(plan.options.cap_satoshis, 100 * 100_000_000);

        let plan = resolve(&[
            "market",
            "--embedded",
            "--data-dir",
            "/tmp/x",
            "--price",
            "fixed:EUR=1.5,GBP=2,USD=3",
            "--max-amount",
            "12.5",
            "--rate-limit-per-minute",
            "0",
        ])
        .unwrap();
        assert_eq!(plan.options.max_amount_cents, 1250);
        assert!(matches!(
            plan.target,
            MarketTarget::Embedded {
                rate_limit_per_minute: Some(0),
                ..
            }
        ));

        // The file's [market] section, under the flags.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bot.toml");
        std::fs::write(
            &path,
            "seed = 4\n[market]\norders = 7\nretry_percent = 5\nusers = 2\nembedded = true\n\
             data_dir = \"/tmp/x\"\n",
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let plan = resolve(&["market", "--config", config, "--users", "3"]).unwrap();
        assert_eq!(plan.options.orders, 7);
        assert_eq!(plan.options.retry_percent, 5);
        assert_eq!(plan.options.users, 3);
        assert_eq!(plan.options.seed, 4);
        assert!(matches!(plan.target, MarketTarget::Embedded { .. }));
        std::fs::write(&path, "[market]\norder = 7\n").unwrap();
        let error = resolve(&["market", "--config", config]).unwrap_err();
        assert!(error.contains("unknown field"), "{error}");

        for (arguments, fragment) in [
            (&["market", "--embedded"][..], "--data-dir"),
            (
                &[
                    "market",
                    "--url",
                    "http://127.0.0.1:1",
                    "--admin-token",
                    "t",
                    "--price",
                    DEFAULT_PRICE,
                ][..],
                "embedded engine",
            ),
            (
                &[
                    "market",
                    "--embedded",
                    "--data-dir",
                    "/tmp/x",
                    "--price",
                    "EUR=1",
                ][..],
                "--price",
            ),
            (
                &[
                    "market",
                    "--embedded",
                    "--data-dir",
                    "/tmp/x",
                    "--retry-percent",
                    "101",
                ][..],
                "--retry-percent",
            ),
            (
                &[
                    "market",
                    "--embedded",
                    "--data-dir",
                    "/tmp/x",
                    "--max-amount",
                    "1.001",
                ][..],
                "--max-amount",
            ),
            (
                &[
                    "market",
                    "--embedded",
                    "--data-dir",
                    "/tmp/x",
                    "--users",
                    "0",
                ][..],
                "--users",
            ),
        ] {
            let error = resolve(arguments).unwrap_err();
            assert!(error.contains(fragment), "{arguments:?}: {error}");
        }
    }
}
