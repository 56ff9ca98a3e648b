//! Runtime weights: changes made through the admin API, on top of routes.yaml.
//!
//! `PUT /v1/experiments/{name}/weights`, `POST …/promote` and `POST …/reset` change the
//! weights of the process that receives them only. They are persisted in
//! `admin.state_file` (temp file, fsync, rename, fsync of the directory) so that a restart
//! of that process keeps them; a file reload keeps them too (the file's other changes
//! apply), until a reset. With several replicas the ConfigMap is the way to change traffic:
//! runtime weights make replicas diverge, which `cohort_config_info{version}` shows.
//!
//! The overlay replaces the weights of the variants it names; variants it does not name
//! keep their file weight, and names the file no longer has are ignored (and logged).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use cohort_config::{FileConfig, Routes};
use cohort_rollout::RolloutEvent;

/// Runtime weights of one experiment, with who set them and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentOverride {
    pub weights: BTreeMap<String, f64>,
    pub set_by: String,
    pub set_at: String,
}

/// Everything in `admin.state_file`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overrides {
    /// Format version of the file.
    #[serde(default = "one")]
    pub v: u32,
    #[serde(default)]
    pub experiments: BTreeMap<String, ExperimentOverride>,
    /// experiment → its rollouts' recorded actions (every rollout id it has had).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rollouts: BTreeMap<String, Vec<RolloutEvent>>,
}

fn one() -> u32 {
    1
}

impl Overrides {
    /// Reads the state file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<Self, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a cohort state file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
        }
    }

    /// Writes the state durably: temp file, fsync, rename over, fsync the directory.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("state.json"),
            std::process::id()
        ));
        {
            let mut f = std::fs::File::create(&tmp)?;
            let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
            f.write_all(&json)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(())
    }

    /// Adds recorded rollout actions, leaving out exact copies of those already held.
    pub fn merge_rollouts(&mut self, events: impl IntoIterator<Item = RolloutEvent>) {
        for e in events {
            let held = self.rollouts.entry(e.experiment.clone()).or_default();
            if !held.contains(&e) {
                held.push(e);
            }
        }
    }

    /// `file` with the runtime weights laid over it; the second value lists what was
    /// ignored because the file no longer has it.
    pub fn overlay(&self, file: &FileConfig) -> (FileConfig, Vec<String>) {
        use cohort_config::schema::UnknownName;
        let mut out = file.clone();
        let mut ignored = Vec::new();
        for (exp_name, o) in &self.experiments {
            for unknown in out.set_weights(exp_name, &o.weights) {
                ignored.push(match unknown {
                    UnknownName::Experiment => format!(
                        "runtime weights for experiment {exp_name:?}, which the file no longer has"
                    ),
                    UnknownName::Variant(variant) => format!(
                        "runtime weight of {exp_name}/{variant}, a variant the file no longer has"
                    ),
                });
            }
        }
        (out, ignored)
    }
}

/// What a process starts with: the file's table with the runtime weights laid over it.
pub struct Startup {
    /// The runtime weights in force (for the reloader and the admin API).
    pub overrides: Overrides,
    pub routes: Routes,
    /// What could not be applied as it was, and what was done instead (logged as errors).
    pub notices: Vec<String>,
    /// Rollouts that start now (no record yet): already in `overrides`, still to be
    /// appended to rollouts.jsonl.
    pub starts: Vec<RolloutEvent>,
}

/// The startup rule: runtime weights that fit the file apply. An experiment whose runtime
/// weights no longer fit it (a variant it no longer has, a share beyond a lane's
/// `max_weight`) starts with all its traffic on the control, and an unreadable state file
/// (empty, truncated, not JSON) does the same for every experiment: a rollback made at
/// runtime is never silently undone, and the process starts instead of crash-looping with
/// the API that could fix it down. A missing file is no runtime weights.
///
/// Rollouts resume where their recorded actions (the state file's and `recorded`, those of
/// the event directory's rollouts.jsonl) left them; one with no record starts at its first
/// step, and its start is in [`Startup::starts`], to be recorded.
pub fn at_startup(state_path: &Path, file: &Routes, recorded: Vec<RolloutEvent>) -> Startup {
    let mut notices = Vec::new();
    let mut overrides = match Overrides::load(state_path) {
        Ok(o) => o,
        Err(e) => {
            notices.push(format!(
                "{e}: every experiment starts with all traffic on its control; set or reset weights through the admin API to change that"
            ));
            let mut all = Overrides::default();
            for exp in &file.file.experiments {
                all.experiments
                    .insert(exp.name.clone(), on_control(exp, "cohort at startup"));
            }
            all.merge_rollouts(recorded);
            return finish(all, file, notices);
        }
    };
    overrides.merge_rollouts(recorded);
    let names: Vec<String> = overrides.experiments.keys().cloned().collect();
    for name in names {
        let Some(exp) = file.file.experiments.iter().find(|e| e.name == name) else {
            overrides.experiments.remove(&name);
            notices.push(format!(
                "runtime weights for experiment {name:?}, which the file no longer has: dropped"
            ));
            continue;
        };
        let own = &overrides.experiments[&name];
        let unknown: Vec<&str> = own
            .weights
            .keys()
            .filter(|v| !exp.variants.iter().any(|x| &x.name == *v))
            .map(String::as_str)
            .collect();
        let alone = Overrides {
            v: 1,
            experiments: BTreeMap::from([(name.clone(), own.clone())]),
            rollouts: BTreeMap::new(),
        };
        let why = if !unknown.is_empty() {
            Some(format!(
                "they name {}, which it no longer has",
                unknown.join(", ")
            ))
        } else {
            cohort_config::compile_file(alone.overlay(&file.file).0, file.source.clone())
                .err()
                .map(|e| e.to_string())
        };
        if let Some(why) = why {
            notices.push(format!(
                "the runtime weights of experiment {name} (set by {} at {}) no longer fit the file ({why}): it starts with all traffic on its control {}; set or reset its weights through the admin API",
                own.set_by, own.set_at, exp.control
            ));
            overrides
                .experiments
                .insert(name.clone(), on_control(exp, "cohort at startup"));
        }
    }
    finish(overrides, file, notices)
}

fn finish(mut overrides: Overrides, file: &Routes, mut notices: Vec<String>) -> Startup {
    match crate::rollout::layered(file, &overrides) {
        Ok(layered) => {
            overrides.merge_rollouts(layered.starts.iter().cloned());
            Startup {
                overrides,
                routes: layered.routes,
                notices,
                starts: layered.starts,
            }
        }
        // Each fits alone; together they cannot fail, but if they did, the file is safe.
        Err(e) => {
            notices.push(format!(
                "the runtime weights together do not fit the file ({e}): starting with the file's weights"
            ));
            let rollouts = std::mem::take(&mut overrides.rollouts);
            Startup {
                overrides: Overrides {
                    rollouts,
                    ..Overrides::default()
                },
                routes: file.clone(),
                notices,
                starts: Vec::new(),
            }
        }
    }
}

/// All of `exp`'s traffic on its control.
fn on_control(exp: &cohort_config::schema::ExperimentConfig, by: &str) -> ExperimentOverride {
    ExperimentOverride {
        weights: exp
            .variants
            .iter()
            .map(|v| {
                let w = if v.name == exp.control { 100.0 } else { 0.0 };
                (v.name.clone(), w)
            })
            .collect(),
        set_by: by.to_owned(),
        set_at: cohort_events::clock::now(),
    }
}

/// The routes.yaml edit that would make `weights` permanent, one line per variant
/// (e.g. `experiments[0].variants[1].weight: 50 → 90`).
pub fn permanent_change(
    file: &FileConfig,
    experiment: &str,
    weights: &BTreeMap<String, f64>,
) -> Vec<String> {
    let Some((i, exp)) = file
        .experiments
        .iter()
        .enumerate()
        .find(|(_, e)| e.name == experiment)
    else {
        return Vec::new();
    };
    exp.variants
        .iter()
        .enumerate()
        .filter_map(|(j, v)| {
            let w = weights.get(&v.name)?;
            (*w != v.weight).then(|| {
                format!(
                    "experiments[{i}].variants[{j}].weight: {} → {w}   # {}",
                    v.weight, v.name
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let mut state = Overrides::default();
        state.experiments.insert(
            "e".into(),
            ExperimentOverride {
                weights: [("rf".to_owned(), 90.0), ("lr".to_owned(), 10.0)].into(),
                set_by: "token ci".into(),
                set_at: "2026-11-25T00:00:00.000Z".into(),
            },
        );
        state.save(&path).unwrap();
        assert_eq!(Overrides::load(&path).unwrap(), state);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        assert_eq!(
            Overrides::load(&dir.path().join("none.json")).unwrap(),
            Overrides::default()
        );
        std::fs::write(&path, "not json").unwrap();
        assert!(Overrides::load(&path)
            .unwrap_err()
            .contains("not a cohort state file"));
    }
}

#[cfg(test)]
mod startup_tests {
    use super::*;

    /// rf (control) and lr, lr in a lane capped at `cap`.
    fn file(cap: f64) -> Routes {
        cohort_config::parse(
            "t.yaml",
            &format!(
                "routes: [{{ name: r, match: {{ path_prefix: / }}, experiment: e }}]\n\
                 experiments:\n  - name: e\n    control: rf\n    variants:\n      \
                 - {{ name: rf, weight: 90, upstream: \"http://h:1\" }}\n      \
                 - {{ name: lr, weight: 10, upstream: \"http://h:2\", lane: {{ start: 0, max_weight: {cap} }} }}\n"
            ),
        )
        .unwrap()
    }

    fn state(dir: &Path, text: &str) -> std::path::PathBuf {
        let path = dir.join("state.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn lr_weight(s: &Startup) -> f64 {
        let e = &s.routes.file.experiments[0];
        e.variants.iter().find(|v| v.name == "lr").unwrap().weight
    }

    const EIGHTY_TWENTY: &str = r#"{"v": 1, "experiments": {"e": {"weights": {"rf": 80, "lr": 20}, "set_by": "ops", "set_at": "2026-12-01T00:00:00Z"}}}"#;

    #[test]
    fn weights_that_fit_apply() {
        let dir = tempfile::tempdir().unwrap();
        let s = at_startup(&state(dir.path(), EIGHTY_TWENTY), &file(0.5), Vec::new());
        assert!(s.notices.is_empty(), "{:?}", s.notices);
        assert_eq!(lr_weight(&s), 20.0);
    }

    /// The file now caps lr below the runtime share: it starts (no crash loop) with lr at 0.
    #[test]
    fn weights_beyond_a_new_lane_put_the_experiment_on_its_control() {
        let dir = tempfile::tempdir().unwrap();
        let s = at_startup(&state(dir.path(), EIGHTY_TWENTY), &file(0.1), Vec::new());
        assert_eq!(lr_weight(&s), 0.0);
        assert!(s.notices[0].contains("no longer fit"), "{:?}", s.notices);
        assert_eq!(s.overrides.experiments["e"].weights["rf"], 100.0);
    }

    /// An empty, truncated or garbage state file must not undo a runtime rollback.
    #[test]
    fn an_unreadable_state_file_puts_every_experiment_on_its_control() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "{\"v\": 1, \"experiments\": {\"e\": {", "garbage"] {
            let s = at_startup(&state(dir.path(), bad), &file(0.5), Vec::new());
            assert_eq!(lr_weight(&s), 0.0, "state {bad:?}");
            assert!(
                s.notices[0].contains("all traffic on its control"),
                "{:?}",
                s.notices
            );
        }
        // A missing file is no runtime weights: the file's own.
        let s = at_startup(&dir.path().join("missing.json"), &file(0.5), Vec::new());
        assert!(s.notices.is_empty());
        assert_eq!(lr_weight(&s), 10.0);
    }

    /// A state naming a variant the file lacks is not applied in part.
    #[test]
    fn a_state_naming_an_unknown_variant_is_not_applied_in_part() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"{"v": 1, "experiments": {"e": {"weights": {"lr": 40, "xgb": 60}, "set_by": "ops", "set_at": "2026-12-01T00:00:00Z"}}}"#;
        let s = at_startup(&state(dir.path(), text), &file(0.5), Vec::new());
        assert_eq!(lr_weight(&s), 0.0);
        assert!(s.notices[0].contains("xgb"), "{:?}", s.notices);
    }
}
