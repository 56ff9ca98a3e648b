//! Config errors that say where and why: `routes.yaml:14:14: experiments[1].control: …`.

use serde::Serialize;

use super::positions::Position;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// The file as the user named it.
    pub file: String,
    /// Where in the file (absent for errors that have no place, e.g. an unreadable file).
    #[serde(flatten)]
    pub position: Option<Position>,
    /// The YAML path, e.g. `experiments[1].control` (empty for the whole document).
    pub path: String,
    /// What is wrong and, where it helps, what to do.
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(pos) = self.position {
            write!(f, ":{pos}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// A config that cannot be used: every problem found, in file order where known.
///
/// Parsing stops at the first YAML or type error (serde's); validation after that reports
/// all the problems it finds, so one edit-check cycle fixes them all.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub fn single(problem: Problem) -> Self {
        Self {
            problems: vec![problem],
        }
    }

    /// The first (primary) problem.
    pub fn first(&self) -> Option<&Problem> {
        self.problems.first()
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}
