//! `cohort clickhouse init`: creates the database and tables that events are shipped to,
//! as `serve` does at start with `events.clickhouse.create_schema: true`.

use std::path::PathBuf;

use super::exit;
use cohort_config::schema::ClickHouseConfig;

/// `cohort clickhouse`'s subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create the database and the tables (events, and the shares history) when missing;
    /// changes nothing that exists.
    Init(InitArgs),
}

/// Where the tables go: `events.clickhouse` of a config, and flags over it.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Take `events.clickhouse` from this routes.yaml (the flags below override it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// ClickHouse's HTTP interface, e.g. http://127.0.0.1:8123.
    #[arg(long)]
    pub url: Option<String>,
    /// Database (default: cohort).
    #[arg(long)]
    pub database: Option<String>,
    /// Events table (default: events); the shares history is TABLE_config_versions.
    #[arg(long)]
    pub table: Option<String>,
    /// User (default: default).
    #[arg(long)]
    pub user: Option<String>,
    /// The environment variable that holds the password.
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// Print the statements instead of running them.
    #[arg(long)]
    pub print: bool,
}

pub fn run(command: &Command) -> u8 {
    match command {
        Command::Init(args) => init(args),
    }
}

fn init(args: &InitArgs) -> u8 {
    let cfg = match settings(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cohort clickhouse init: {e}");
            return exit::INVALID;
        }
    };
    let (client, tables) = match cohort_clickhouse::connect(&cfg, |v| std::env::var(v).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cohort clickhouse init: {e}");
            return exit::INVALID;
        }
    };
    if args.print {
        for statement in tables.ddl() {
            println!("{statement};\n");
        }
        return exit::OK;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cohort clickhouse init: cannot start the runtime: {e}");
            return exit::INVALID;
        }
    };
    match runtime.block_on(tables.create(&client)) {
        Ok(()) => {
            println!(
                "ready on {}: database {}, tables {} and {}",
                client.url(),
                tables.database,
                tables.events(),
                tables.versions()
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("cohort clickhouse init: {e}");
            exit::INVALID
        }
    }
}

/// Where the tables are: a config file's `events.clickhouse` section, and flags over it.
pub struct Target {
    pub from_file: Option<ClickHouseConfig>,
    pub url: Option<String>,
    pub database: Option<String>,
    pub table: Option<String>,
    pub user: Option<String>,
    pub password_env: Option<String>,
    /// How the flags are spelled before the key (`--`, `--clickhouse-`), for errors.
    pub flag_prefix: &'static str,
}

impl Target {
    /// The section with the flags applied, validated as the config file's section is.
    pub fn settings(&self) -> Result<ClickHouseConfig, String> {
        let from_file = &self.from_file;
        let url = self
            .url
            .clone()
            .or_else(|| from_file.as_ref().map(|c| c.url.clone()))
            .ok_or("give --url (e.g. --url http://127.0.0.1:8123) or --config with an events.clickhouse section")?;
        // Built as the file's section would be, so the same checks and defaults apply.
        let mut section = serde_json::json!({ "url": url });
        if let Some(c) = from_file {
            section = serde_json::to_value(c).map_err(|e| e.to_string())?;
            section["url"] = url.into();
        }
        for (key, value) in [
            ("database", &self.database),
            ("table", &self.table),
            ("user", &self.user),
            ("password_env", &self.password_env),
        ] {
            if let Some(v) = value {
                section[key] = v.clone().into();
            }
        }
        let yaml = format!("events: {{clickhouse: {section}}}\n");
        // Problems are named by flag: the text parsed here is not a file anyone wrote.
        let routes = cohort_config::parse("the command line", &yaml).map_err(|e| {
            e.problems
                .iter()
                .map(|p| {
                    let key = p.path.trim_start_matches("events.clickhouse.");
                    let flag = if key == "url" && self.flag_prefix != "--" {
                        "--clickhouse".to_owned()
                    } else {
                        format!("{}{}", self.flag_prefix, key.replace('_', "-"))
                    };
                    format!("{flag}: {}", p.reason)
                })
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        routes
            .file
            .events
            .clickhouse
            .ok_or_else(|| "no events.clickhouse section".to_owned())
    }
}

/// `events.clickhouse` of `--config` (or the defaults), with the flags applied.
fn settings(args: &InitArgs) -> Result<ClickHouseConfig, String> {
    let from_file = match &args.config {
        Some(path) => {
            let routes = cohort_config::load(path).map_err(|e| e.to_string())?;
            routes.file.events.clickhouse
        }
        None => None,
    };
    Target {
        from_file,
        url: args.url.clone(),
        database: args.database.clone(),
        table: args.table.clone(),
        user: args.user.clone(),
        password_env: args.password_env.clone(),
        flag_prefix: "--",
    }
    .settings()
}
