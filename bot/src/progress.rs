//! Progress of a phase: an indicatif bar on a terminal, plain lines otherwise (CI logs, pipes).
//! Both go to stderr, so stdout carries only the seed, the differences and the report.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    #[default]
    Auto,
    Bar,
    Plain,
    /// Nothing until the report.
    Off,
}

impl ProgressMode {
    fn resolved(self) -> ProgressMode {
        match self {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Plain,
            other => other,
        }
    }
}

/// Plain mode prints a progress line at most this often.
const PLAIN_LINE_INTERVAL: Duration = Duration::from_secs(2);

/// The progress of one phase. Shared by the phase's tasks (`&Progress` is enough to advance it).
pub struct Progress {
    name: String,
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    total: AtomicU64,
    done: AtomicU64,
    started: Instant,
    last_line: Mutex<Instant>,
}

impl Progress {
    /// Starts a phase of about `total` steps.
    pub fn start(name: &str, total: u64, mode: ProgressMode) -> Self {
        let mode = mode.resolved();
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::new(total);
            // Invariant: the template is a constant that parses.
            let style = ProgressStyle::with_template(
                "{prefix:>22} [{bar:40}] {pos}/{len} {per_sec} eta {eta}",
            )
            .expect("valid progress template")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(name.to_string());
            bar
        });
        if mode == ProgressMode::Plain {
            eprintln!("{name}: started ({total} steps planned)");
        }
        let now = Instant::now();
        Progress {
            name: name.to_string(),
            mode,
            bar,
            total: AtomicU64::new(total),
            done: AtomicU64::new(0),
            started: now,
            last_line: Mutex::new(now),
        }
    }

    /// Raises the planned total by `steps` (Phase III learns its size round by round).
    pub fn add_total(&self, steps: u64) {
        let total = self.total.fetch_add(steps, Ordering::Relaxed) + steps;
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    pub fn advance(&self, steps: u64) {
        let done = self.done.fetch_add(steps, Ordering::Relaxed) + steps;
        match self.mode {
            ProgressMode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.inc(steps);
                }
            }
            ProgressMode::Plain => {
                // Invariant: nothing panics while holding this lock, so it is never poisoned.
                let mut last = self.last_line.lock().expect("progress lock");
                if last.elapsed() >= PLAIN_LINE_INTERVAL {
                    *last = Instant::now();
                    eprintln!(
                        "{}: {done}/{} after {:.1} s",
                        self.name,
                        self.total.load(Ordering::Relaxed),
                        self.started.elapsed().as_secs_f64()
                    );
                }
            }
            ProgressMode::Auto | ProgressMode::Off => {}
        }
    }

    /// Ends the phase with a one-line summary.
    pub fn finish(&self, summary: &str) {
        let line = format!(
            "{}: done, {} steps in {:.3} s{}{summary}",
            self.name,
            self.done.load(Ordering::Relaxed),
            self.started.elapsed().as_secs_f64(),
            if summary.is_empty() { "" } else { "; " },
        );
        match (&self.bar, self.mode) {
            (Some(bar), _) => bar.finish_and_clear(),
            (None, ProgressMode::Off) => return,
            _ => {}
        }
        eprintln!("{line}");
    }
}
