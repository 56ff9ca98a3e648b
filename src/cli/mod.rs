//! The bodies of the `cohort` subcommands. Each returns the process exit code:
//! 0 success, 1 invalid input (config or arguments), 2 usage (clap), 3 unacknowledged
//! reshuffle (`check --against`).

pub mod assign;
pub mod check;
pub mod clickhouse;
pub mod demo;
pub mod report;
pub mod serve;
pub mod shipping;

/// Output format of the commands that serve both people and scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// One JSON document, for scripts (the shape README documents).
    Json,
}

/// Exit codes shared by the subcommands.
pub mod exit {
    pub const OK: u8 = 0;
    pub const INVALID: u8 = 1;
    /// A command line clap cannot catch (2, as clap exits on its own errors).
    pub const USAGE: u8 = 2;
    pub const RESHUFFLE: u8 = 3;
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the span fields (route, experiment, variant, request_id).
    Json,
}

/// Logs to standard error, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing(format: LogFormat) {
    // The h2 library warns once per connection it closes for a flood of stream resets; a
    // flood of such connections would flood the log. cohort reports them itself, at most
    // once a second (the accept loop's connections).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,h2=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
