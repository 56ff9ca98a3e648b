//! The settings a running process cannot change: they take effect when cohort starts.
//!
//! A reload or runtime change whose file differs here is refused with the keys named
//! (`restart_required`). [`ProcessSettings::of`] destructures the file exhaustively, so a
//! key added to routes.yaml does not compile until it is placed on one side: restart-only
//! here, or hot-reloadable by being ignored here.

use std::net::SocketAddr;

use crate::schema::{
    AdminConfig, EventsConfig, FileConfig, LimitsConfig, ShutdownConfig, TokenConfig,
};

/// The restart-only keys of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSettings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub admin_tokens: Vec<TokenConfig>,
    pub limits: LimitsConfig,
    pub shutdown: ShutdownConfig,
    pub events: EventsConfig,
}

impl ProcessSettings {
    pub fn of(file: &FileConfig) -> Self {
        let FileConfig {
            listen,
            // Read per request from the table in force.
            trusted_proxies: _,
            admin,
            limits,
            shutdown,
            events,
            // Read per request from the table in force.
            conversions: _,
            // Read by each reload.
            allow_remove: _,
            routes: _,
            experiments: _,
        } = file;
        let AdminConfig {
            listen: admin_listen,
            tokens,
            // Read at each runtime change.
            state_file: _,
        } = admin;
        Self {
            listen: *listen,
            admin_listen: *admin_listen,
            admin_tokens: tokens.clone(),
            limits: limits.clone(),
            shutdown: shutdown.clone(),
            events: events.clone(),
        }
    }

    /// The keys that differ in `new`, as written in routes.yaml (addresses with their
    /// change); empty when `new` can be applied while serving.
    pub fn changed(&self, new: &Self) -> Vec<String> {
        let mut changed = Vec::new();
        if self.listen != new.listen {
            changed.push(format!("listen ({} → {})", self.listen, new.listen));
        }
        if self.admin_listen != new.admin_listen {
            changed.push(format!(
                "admin.listen ({} → {})",
                self.admin_listen, new.admin_listen
            ));
        }
        if self.admin_tokens != new.admin_tokens {
            changed.push("admin.tokens".to_owned());
        }
        if self.limits != new.limits {
            changed.push("limits".to_owned());
        }
        if self.shutdown != new.shutdown {
            changed.push("shutdown".to_owned());
        }
        if self.events != new.events {
            changed.push("events".to_owned());
        }
        changed
    }
}
