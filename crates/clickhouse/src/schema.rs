//! The tables events are shipped to, created idempotently (`cohort clickhouse init`, or the
//! shipper at start with `create_schema: true`). Only DDL that ClickHouse 18.16 and current
//! releases both accept.
//!
//! * `<table>`: one row per event line, of every type. A plain MergeTree: a
//!   ReplacingMergeTree would merge distinct rows that share a sorting key, and duplicates
//!   of a retried batch are removed at query time, by `event_id`, where they matter.
//!   Partitioned by month of `ts`, ordered for the analysis (experiment, unit, time).
//!   `payload` keeps the whole line, so types this release does not analyse are kept.
//! * `<table>_config_versions`: the shares in force over time (`config-versions.jsonl`),
//!   one row per (version, experiment, variant), which the sample-ratio check needs.
//! * `<table>_rollouts`: every replica's rollout actions (`rollouts.jsonl`), one row per
//!   line, which each replica folds into the fleet's rollout state. `payload` is the line.

use crate::client::{Client, Error};

/// The events table's columns, in the order [`crate::rowbinary`] writes them.
pub const EVENT_COLUMNS: [(&str, &str); 20] = [
    ("date", "Date"),
    ("ts", "String"),
    ("ts_ns", "Int64"),
    ("type", "String"),
    ("event_id", "String"),
    ("experiment", "String"),
    ("unit", "String"),
    ("variant", "String"),
    ("phase", "String"),
    ("config_version", "String"),
    ("route", "String"),
    ("request_id", "String"),
    ("status", "UInt16"),
    ("latency_ms", "Nullable(Float64)"),
    ("aborted", "UInt8"),
    ("forced", "UInt8"),
    ("unit_missing", "UInt8"),
    ("value", "Nullable(Float64)"),
    ("replica", "String"),
    ("payload", "String"),
];

/// The config-versions table's columns, in the order [`crate::rowbinary`] writes them.
pub const VERSION_COLUMNS: [(&str, &str); 7] = [
    ("ts", "String"),
    ("ts_ns", "Int64"),
    ("config_version", "String"),
    ("experiment", "String"),
    ("variant", "String"),
    ("share", "Float64"),
    ("replica", "String"),
];

/// The rollouts table's columns, in the order [`crate::rowbinary`] writes them.
pub const ROLLOUT_COLUMNS: [(&str, &str); 7] = [
    ("ts", "String"),
    ("ts_ns", "Int64"),
    ("experiment", "String"),
    ("rollout_id", "String"),
    ("kind", "String"),
    ("replica", "String"),
    ("payload", "String"),
];

/// Where the events go: a database and the events table's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub database: String,
    pub events: String,
}

impl Tables {
    /// `database.table`, quoted.
    pub fn events(&self) -> String {
        format!("`{}`.`{}`", self.database, self.events)
    }

    /// `database.table_config_versions`, quoted.
    pub fn versions(&self) -> String {
        format!("`{}`.`{}_config_versions`", self.database, self.events)
    }

    /// `database.table_rollouts`, quoted.
    pub fn rollouts(&self) -> String {
        format!("`{}`.`{}_rollouts`", self.database, self.events)
    }

    /// The statements that create the database and the tables when missing.
    pub fn ddl(&self) -> Vec<String> {
        let columns = |cols: &[(&str, &str)]| {
            cols.iter()
                .map(|(n, t)| format!("    `{n}` {t}"))
                .collect::<Vec<_>>()
                .join(",\n")
        };
        vec![
            format!("CREATE DATABASE IF NOT EXISTS `{}`", self.database),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (\n{}\n) ENGINE = MergeTree\nPARTITION BY toYYYYMM(date)\nORDER BY (experiment, unit, ts_ns)",
                self.events(),
                columns(&EVENT_COLUMNS)
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (\n{}\n) ENGINE = MergeTree\nORDER BY (experiment, ts_ns, config_version, variant)",
                self.versions(),
                columns(&VERSION_COLUMNS)
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (\n{}\n) ENGINE = MergeTree\nORDER BY (experiment, rollout_id, ts_ns)",
                self.rollouts(),
                columns(&ROLLOUT_COLUMNS)
            ),
        ]
    }

    /// Creates what is missing; changes nothing that exists.
    pub async fn create(&self, client: &Client) -> Result<(), Error> {
        for statement in self.ddl() {
            client.execute(&statement).await?;
        }
        Ok(())
    }
}
