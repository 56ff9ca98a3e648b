//! routes.yaml → a validated, compiled, immutable [`Routes`] table.
//!
//! Three steps, each with its own module:
//! 1. [`schema`]: serde parses the text into [`FileConfig`] with every default filled in;
//!    unknown keys and wrong types fail here, with serde_yaml's line and column;
//! 2. [`positions`]: the same text is parsed again by a position-keeping event parser, so
//!    that the checks of step 3 can point at the value they reject;
//! 3. `compile`: cross-key validation (names, references, weights, lanes) and compilation
//!    into the [`Routes`] table of [`table`].
//!
//! Nothing here does I/O except [`load`] reading the file.

#![forbid(unsafe_code)]
// The crate doc is the code map and names private modules too: read it with
// `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

mod assignment;
pub mod compare;
mod compile;
pub use compile::version_of;
mod error;
mod positions;
mod process;
pub mod schema;
mod table;
mod wording;

use std::path::Path;

pub use assignment::{assign, forced_variant, UnknownVariant};
pub use error::{ConfigError, Problem};
pub use positions::{Position, Positions};
pub use process::ProcessSettings;
pub use schema::FileConfig;
pub use table::{
    rollout_weights, Experiment, HostHeader, Rollout, Route, Routes, Shadow, Source, Upstream,
    Variant,
};

/// Reads and compiles the config file at `path`.
pub fn load(path: &Path) -> Result<Routes, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::single(Problem {
            file: file.clone(),
            position: None,
            path: String::new(),
            reason: format!("cannot read the config file: {e}"),
        })
    })?;
    parse(&file, &text)
}

/// The largest config file cohort reads: hundreds of routes and experiments fit in a
/// fraction of it.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// The deepest nesting of mappings and sequences a config may have (routes.yaml's own
/// schema needs 6). Parsers slow down with depth, quadratically on a crafted file.
pub const MAX_DEPTH: usize = 32;

/// Parses and compiles config `text`; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Routes, ConfigError> {
    bounded(file, text)?;
    let parsed: FileConfig = match serde_yaml::from_str(text) {
        Ok(parsed) => parsed,
        // An empty file is an empty config (every default, no routes), not an error.
        Err(_) if text.trim().is_empty() => {
            serde_yaml::from_str("{}").map_err(|e| serde_problem(file, &e))?
        }
        Err(e) => return Err(serde_problem(file, &e)),
    };
    let positions = Positions::of(text);
    let source = Source {
        file: file.to_owned(),
        hash: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes())),
    };
    compile::compile(parsed, source, &positions)
}

/// Refuses a text over [`MAX_FILE_BYTES`] or nested deeper than [`MAX_DEPTH`], before any
/// parser that slows down on it sees it. The depth is measured by a streaming YAML
/// parser that stops at the first node too deep.
fn bounded(file: &str, text: &str) -> Result<(), ConfigError> {
    let problem = |position: Option<Position>, reason: String| {
        Err(ConfigError::single(Problem {
            file: file.to_owned(),
            position,
            path: String::new(),
            reason,
        }))
    };
    if text.len() > MAX_FILE_BYTES {
        return problem(
            None,
            format!(
                "the file is {} bytes; a config may be at most {MAX_FILE_BYTES} bytes",
                text.len()
            ),
        );
    }
    let too_deep = |line, column| {
        problem(
            Some(Position { line, column }),
            format!("nested more than {MAX_DEPTH} levels deep; routes.yaml needs at most 6"),
        )
    };
    let mut parser = yaml_rust2::parser::Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(e) => e,
            // The scanner's own bound on flow nesting (it scans ahead of the events).
            Err(e) if e.info().contains("recursion limit") => {
                return too_deep(e.marker().line(), e.marker().col() + 1)
            }
            // A syntax error is reported by the full parse, with its own position.
            Err(_) => return Ok(()),
        };
        match event {
            yaml_rust2::parser::Event::SequenceStart(..)
            | yaml_rust2::parser::Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return too_deep(mark.line(), mark.col() + 1);
                }
            }
            yaml_rust2::parser::Event::SequenceEnd | yaml_rust2::parser::Event::MappingEnd => {
                depth = depth.saturating_sub(1);
            }
            yaml_rust2::parser::Event::StreamEnd => return Ok(()),
            _ => {}
        }
    }
}

/// Compiles an already parsed config (e.g. one changed at runtime). Errors carry paths but
/// no positions, since there is no text to point into.
pub fn compile_file(file: FileConfig, source: Source) -> Result<Routes, ConfigError> {
    compile::compile(file, source, &Positions::default())
}

/// Turns serde_yaml's "path: reason at line L column C" into a [`Problem`].
fn serde_problem(file: &str, err: &serde_yaml::Error) -> ConfigError {
    let position = err.location().map(|l| Position {
        line: l.line(),
        column: l.column(),
    });
    // The position is reported separately; keep the rest (a YAML syntax error's context,
    // e.g. ", while scanning a quoted scalar at line 2 column 11").
    let mut message = err.to_string();
    if let Some(p) = position {
        message = message.replacen(&format!(" at line {} column {}", p.line, p.column), "", 1);
    }
    let (mut path, reason) = match message.split_once(": ") {
        Some((p, r)) if !p.is_empty() && !p.contains(' ') => (p.to_owned(), r.to_owned()),
        _ => (String::new(), message.clone()),
    };
    // For an unknown key, point the path at the key itself.
    if let Some(rest) = reason.strip_prefix("unknown field `") {
        if let Some((key, _)) = rest.split_once('`') {
            path = if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            };
        }
    }
    let reason = wording::reword(&path, &reason);
    ConfigError::single(Problem {
        file: file.to_owned(),
        position,
        path,
        reason,
    })
}
