//! Fleet outcomes in ClickHouse: every replica ships its event log to one store, so that
//! one analysis sees the whole fleet.
//!
//! * [`client`]: ClickHouse's HTTP interface (statements, RowBinary inserts), with the
//!   failures told apart (connect, timeout, a refusal and whether retrying can help).
//! * [`schema`]: the events and config-versions tables, created idempotently.
//! * [`rowbinary`]: event lines as rows, or the reason a line can never be one.
//! * [`ship`]: the shipper, from the local spool to the store, at least once, with a
//!   cursor, a dead-letter file and capped backoff.
//! * [`query`] and [`fleet`]: a report over the whole fleet, the heavy part in SQL, the
//!   rest the same analysis as for local logs; [`rows`] reads the answers;
//! * [`live`]: that report cached for a replica's live endpoints and gauges.
//!
//! Layer: above config, events and analysis, beside proxy; nothing here runs on a serving
//! thread.
#![forbid(unsafe_code)]

pub mod client;
pub mod fleet;
pub mod live;
pub mod query;
pub mod rowbinary;
pub mod rows;
pub mod schema;
pub mod ship;

pub use client::{Client, Error};
pub use schema::Tables;

use cohort_config::schema::ClickHouseConfig;

/// A client and the tables of an `events.clickhouse` section. The password is read from
/// the environment variable the section names (`env` looks it up).
pub fn connect(
    cfg: &ClickHouseConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Client, Tables), String> {
    let password = match &cfg.password_env {
        Some(name) => Some(env(name).ok_or_else(|| {
            format!("events.clickhouse.password_env names {name}, which is not set")
        })?),
        None => None,
    };
    let client = Client::new(
        &cfg.url,
        &cfg.user,
        password.as_deref(),
        std::time::Duration::from_millis(cfg.timeout_ms),
    )?;
    Ok((
        client,
        Tables {
            database: cfg.database.clone(),
            events: cfg.table.clone(),
        },
    ))
}
