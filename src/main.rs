//! The `cohort` command line: argument parsing only; each subcommand's body lives in
//! `cohort::cli`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: a request's allocations are made on the
/// serving thread and many are freed on the event writer's thread, which glibc's malloc
/// serialises on its arena locks (bench/README.md has the measurement).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use cohort::cli::{self, Format};

/// An A/B traffic-splitting reverse proxy for ML model variants.
#[derive(Parser)]
#[command(name = "cohort", version, about, long_about = None)]
struct Cli {
    /// Log format on standard error (levels from RUST_LOG, default info).
    #[arg(long, value_enum, global = true, default_value_t = cli::LogFormat::Text)]
    log_format: cli::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a routes.yaml and print its compiled plan; with --against, show what the
    /// change does to units (exit 1: invalid, exit 3: unacknowledged reshuffle).
    Check {
        /// The config to check (or give it as --config, like `serve` and `assign`).
        #[arg(required_unless_present = "config", conflicts_with = "config")]
        file: Option<PathBuf>,
        /// The config to check.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The config currently in force: print the moves from it to FILE.
        #[arg(long, value_name = "OLD")]
        against: Option<PathBuf>,
        /// The runtime weights (admin.state_file) a replica would start FILE with: say what
        /// no longer fits (exit 3).
        #[arg(long, value_name = "STATE")]
        state: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print the variant (and bucket) of each unit, as the proxy would assign it.
    #[command(group(clap::ArgGroup::new("unit_ids").required(true).args(["units", "units_from"])))]
    Assign {
        /// The routes.yaml to read.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The experiment's name.
        #[arg(long)]
        experiment: String,
        /// A unit id (repeatable).
        #[arg(long = "unit", value_name = "UNIT")]
        units: Vec<String>,
        /// Read unit ids, one per line, from FILE ("-" for standard input).
        #[arg(long, value_name = "FILE", conflicts_with = "units")]
        units_from: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Analyse the outcome log: conversion rates, significance, the decision.
    Report(Box<cli::report::Args>),
    /// Run the proxy on the config's public listener.
    Serve {
        /// The routes.yaml to serve.
        #[arg(long, value_name = "FILE", default_value = "routes.yaml")]
        config: PathBuf,
        /// Serving threads, each with its own single-threaded runtime (default: the
        /// environment's COHORT_WORKERS, else one per core; 0 means the default).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Show cohort at work on its built-in default config, with nothing else to set up.
    Demo(cli::demo::Args),
    /// Fleet outcomes in ClickHouse: create the tables events are shipped to.
    #[command(subcommand)]
    Clickhouse(cli::clickhouse::Command),
}

fn main() -> ExitCode {
    let args = Cli::parse();
    cli::init_tracing(args.log_format);
    let code = match args.command {
        Command::Check {
            file,
            config,
            against,
            state,
            format,
        } => match file.or(config) {
            Some(file) => cli::check::run(&file, against.as_deref(), state.as_deref(), format),
            None => cli::exit::USAGE,
        },
        Command::Assign {
            config,
            experiment,
            units,
            units_from,
            format,
        } => cli::assign::run(&config, &experiment, &units, units_from.as_deref(), format),
        Command::Report(args) => cli::report::run(&args),
        Command::Serve { config, workers } => cli::serve::run(&config, workers),
        Command::Demo(args) => cli::demo::run(&args),
        Command::Clickhouse(command) => cli::clickhouse::run(&command),
    };
    ExitCode::from(code)
}
