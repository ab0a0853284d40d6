//! `switchyard-bot fanout`: its flags and running it (see [`crate::fanout`]).

use std::time::Duration;

use clap::Args;

use crate::fanout::{self, FanoutOptions};

pub(super) const FANOUT_ABOUT: &str = "\
Measures one dispatch's fan-out over HTTP: the bot runs a loopback webhook receiver, creates
--recipients contacts pointing at it (one group, an event type on the webhook channel, a
program), then a dispatch starting now, and reports notifications per second from the 201 to
the dispatch reported done (every outcome recorded durably), the time to the last delivery, the
API's latency during the fan-out (GET /api/v1/dispatches/{id} every --probe-interval-ms), and
with --server-pid the server's peak RSS. Needs the admin token. Nothing else should run.";

#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// The server, http://host:port.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The server's admin token [default: $SWITCHYARD_ADMIN_TOKEN].
    #[arg(long)]
    pub admin_token: Option<String>,
    /// Contacts to notify.
    #[arg(long, default_value_t = 100_000)]
    pub recipients: usize,
    /// Concurrent requests while creating contacts.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// The server's pid, for its peak RSS.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Milliseconds between two probes of the API during the fan-out.
    #[arg(long, default_value_t = 10)]
    pub probe_interval_ms: u64,
    /// Another path to probe during the fan-out (GET with the admin token; repeatable).
    #[arg(long = "probe-path")]
    pub probe_paths: Vec<String>,
    /// Seconds allowed for one request.
    #[arg(long, default_value_t = 30)]
    pub timeout_seconds: u64,
}

pub fn run_fanout(args: &FanoutArgs) -> u8 {
    let Some(admin_token) = args
        .admin_token
        .clone()
        .or_else(|| std::env::var("SWITCHYARD_ADMIN_TOKEN").ok())
    else {
        return super::usage_error("fanout needs --admin-token or SWITCHYARD_ADMIN_TOKEN");
    };
    if args.recipients == 0 || args.connections == 0 {
        return super::usage_error("--recipients and --connections must be at least 1");
    }
    let options = FanoutOptions {
        recipients: args.recipients,
        connections: args.connections,
        admin_token,
        server_pid: args.server_pid,
        probe_interval_ms: args.probe_interval_ms,
        probe_paths: args.probe_paths.clone(),
        timeout: Duration::from_secs(args.timeout_seconds.max(1)),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return super::usage_error(&format!("runtime: {error}")),
    };
    match runtime.block_on(fanout::run(&args.url, &options)) {
        Ok(report) => {
            print!("{}", report.render_text());
            0
        }
        Err(error) => {
            eprintln!("switchyard-bot fanout: {error}");
            1
        }
    }
}
