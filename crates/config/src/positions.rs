//! Where every node of a YAML document is: `experiments[1].control` → line 14, column 14.
//!
//! serde attaches a position only to errors raised while deserializing. The checks that run
//! afterwards (a control that is not a variant, a route naming a missing experiment, duplicate
//! names) need positions too, so the same text is parsed a second time with a position-keeping
//! event parser (yaml-rust2) and every node's path is recorded. Paths use the same syntax as
//! serde_yaml's own error paths: `a.b[2].c`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Positions of every value (and every mapping key) by path.
#[derive(Debug, Default, Clone)]
pub struct Positions {
    values: HashMap<String, Position>,
    keys: HashMap<String, Position>,
}

impl Positions {
    /// Records the positions of `text`. A document that does not parse yields an empty map
    /// (serde reports the syntax error with its own position first).
    pub fn of(text: &str) -> Self {
        let mut recorder = Recorder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut recorder, false).is_err() {
            return Self::default();
        }
        recorder.positions
    }

    /// The position of the value at `path`, or of its nearest recorded ancestor
    /// (a default that was never written points at the section that lacks it).
    pub fn value(&self, path: &str) -> Option<Position> {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return Some(*pos);
            }
            p = parent(p)?;
        }
    }

    /// The position of the key that names `path` (falls back to [`Self::value`]).
    pub fn key(&self, path: &str) -> Option<Position> {
        self.keys.get(path).copied().or_else(|| self.value(path))
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → `` (the root) → None.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
    },
    Seq {
        path: String,
        index: usize,
    },
    /// A mapping or sequence used as a key: nothing inside it is addressable.
    Opaque,
}

#[derive(Default)]
struct Recorder {
    stack: Vec<Frame>,
    positions: Positions,
}

impl Recorder {
    /// The path of a node that starts now, or None if it is a mapping key (or inside one).
    fn path_of_next_node(&mut self, mark: Marker, scalar: Option<&str>) -> Option<String> {
        let pos = Position {
            line: mark.line(),
            // yaml-rust2 counts columns from 0.
            column: mark.col() + 1,
        };
        match self.stack.last_mut() {
            None => {
                self.positions.values.insert(String::new(), pos);
                Some(String::new())
            }
            Some(Frame::Opaque) => None,
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    // This node is a key. yaml-rust2 marks a block mapping at its first
                    // `:`; the first key is where a reader sees the mapping begin.
                    if let Some(start) = self.positions.values.get_mut(path.as_str()) {
                        if (pos.line, pos.column) < (start.line, start.column) {
                            *start = pos;
                        }
                    }
                    let name = scalar.unwrap_or("?").to_owned();
                    let full = join(path, &name);
                    self.positions.keys.insert(full, pos);
                    *key = Some(name);
                    None
                }
                Some(name) => {
                    let full = join(path, &name);
                    self.positions.values.insert(full.clone(), pos);
                    Some(full)
                }
            },
            Some(Frame::Seq { path, index }) => {
                let full = format!("{path}[{index}]");
                *index += 1;
                self.positions.values.insert(full.clone(), pos);
                Some(full)
            }
        }
    }

    fn is_key_position(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame::Map { key: None, .. }) | Some(Frame::Opaque)
        )
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                self.path_of_next_node(mark, Some(&value));
            }
            Event::Alias(_) => {
                self.path_of_next_node(mark, None);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_seq = matches!(ev, Event::SequenceStart(..));
                let frame = if self.is_key_position() {
                    // Complex keys are unusual in a config; mark the key as seen.
                    self.path_of_next_node(mark, None);
                    Frame::Opaque
                } else {
                    match self.path_of_next_node(mark, None) {
                        Some(path) if is_seq => Frame::Seq { path, index: 0 },
                        Some(path) => Frame::Map { path, key: None },
                        None => Frame::Opaque,
                    }
                };
                self.stack.push(frame);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_values_keys_and_sequence_items() {
        let text = "listen: 0.0.0.0:8080\nexperiments:\n  - name: a\n    control: rf\n  - name: b\n    variants:\n      - { name: x, weight: 1 }\n";
        let p = Positions::of(text);
        assert_eq!(p.value("listen"), Some(Position { line: 1, column: 9 }));
        assert_eq!(p.key("listen"), Some(Position { line: 1, column: 1 }));
        assert_eq!(
            p.value("experiments[0]"),
            Some(Position { line: 3, column: 5 })
        );
        assert_eq!(
            p.value("experiments[0].control"),
            Some(Position {
                line: 4,
                column: 14
            })
        );
        assert_eq!(
            p.value("experiments[1].name"),
            Some(Position {
                line: 5,
                column: 11
            })
        );
        assert_eq!(
            p.value("experiments[1].variants[0].weight"),
            Some(Position {
                line: 7,
                column: 28
            })
        );
        // Unwritten keys fall back to their nearest written ancestor.
        assert_eq!(
            p.value("experiments[0].salt"),
            Some(Position { line: 3, column: 5 })
        );
    }

    #[test]
    fn parent_walks_up_to_the_root() {
        assert_eq!(parent("a.b[2].c"), Some("a.b[2]"));
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a"), Some(""));
        assert_eq!(parent(""), None);
    }
}
