//! `serve`'s shipper: with `events.clickhouse`, a thread of its own ships the event log to
//! ClickHouse ([`cohort_clickhouse::ship`]). It runs at a lower CPU priority than the
//! serving threads, so requests win a shared core; the spool absorbs what it has not
//! shipped yet.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use cohort_clickhouse::ship::{self, ShipMetrics, Shipper};
use cohort_config::schema::EventsConfig;
use cohort_events::SpoolBound;
use cohort_proxy::metrics::Metrics;

/// A running shipper.
pub struct Shipping {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: JoinHandle<()>,
    /// `cohort_clickhouse_lag_seconds`: how far behind this replica's shipping is.
    pub lag: prometheus::Gauge,
}

impl Shipping {
    /// Starts shipping `events` if it names a ClickHouse (None: it does not). Fails on
    /// what no retry can fix: an unset password variable, an unreadable cursor. The
    /// shipping families are on /metrics either way (at zero without shipping), so that
    /// dashboards and alerts find them.
    pub fn start(
        events: &EventsConfig,
        last_window: Duration,
        metrics: &Metrics,
        bound: Option<Arc<SpoolBound>>,
    ) -> Result<Option<Shipping>, String> {
        let ship_metrics = ShipMetrics::new();
        for c in ship_metrics.collectors() {
            metrics.register(c).map_err(|e| e.to_string())?;
        }
        let Some(cfg) = events.clickhouse.clone() else {
            return Ok(None);
        };
        let (client, tables) = cohort_clickhouse::connect(&cfg, |v| std::env::var(v).ok())?;
        std::fs::create_dir_all(&events.dir)
            .map_err(|e| format!("cannot create {}: {e}", events.dir.display()))?;
        let lag = ship_metrics.lag.clone();
        let shipper = Shipper::new(
            &events.dir,
            client,
            tables,
            &ship::replica_name(),
            cfg.batch_max_events as usize,
            ship_metrics,
        )
        .map_err(|e| format!("cannot read the shipping cursor: {e}"))?
        .with_retention(events.shipped_retention())
        .with_bound(bound);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let interval = Duration::from_millis(cfg.flush_interval_ms);
        let thread = std::thread::Builder::new()
            .name("cohort-shipper".into())
            .spawn(move || {
                cohort_sys::lower_thread_priority();
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    tracing::error!("cannot start the shipper's runtime: events stay in the spool");
                    return;
                };
                rt.block_on(ship::run(
                    shipper,
                    cfg.create_schema,
                    interval,
                    async {
                        let _ = stopped.await;
                    },
                    last_window,
                ));
            })
            .map_err(|e| format!("cannot start the shipper thread: {e}"))?;
        tracing::info!(url = %cfg.url, database = %cfg.database, table = %cfg.table, "shipping events to ClickHouse");
        Ok(Some(Shipping { stop, thread, lag }))
    }

    /// Stops it after the round under way and a last window of shipping (blocking).
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
