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

use cohort_config::FileConfig;

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

    /// `file` with the runtime weights laid over it; the second value lists what was
    /// ignored because the file no longer has it.
    pub fn overlay(&self, file: &FileConfig) -> (FileConfig, Vec<String>) {
        let mut out = file.clone();
        let mut ignored = Vec::new();
        for (exp_name, o) in &self.experiments {
            let Some(exp) = out.experiments.iter_mut().find(|e| &e.name == exp_name) else {
                ignored.push(format!(
                    "runtime weights for experiment {exp_name:?}, which the file no longer has"
                ));
                continue;
            };
            for (variant, w) in &o.weights {
                match exp.variants.iter_mut().find(|v| &v.name == variant) {
                    Some(v) => v.weight = *w,
                    None => ignored.push(format!(
                        "runtime weight of {exp_name}/{variant}, a variant the file no longer has"
                    )),
                }
            }
        }
        (out, ignored)
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
