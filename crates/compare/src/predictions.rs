//! The predictions of an inference answer, as one flat list of elements.
//!
//! Known shapes, tried in order:
//!
//! * MLflow and KServe v1: `{"predictions": […]}`;
//! * KServe v2 / Triton: `{"outputs": [{"name", "data": […]}, …]}`, every output's data in
//!   order;
//! * a bare JSON array (MLflow 1.x);
//!
//! or, when configured, whatever a JSON pointer points at. Arrays are flattened depth
//! first (a list of class probabilities per row is its rows' elements in order); an object
//! (a row of named outputs) gives its values in the order written. A bare number or string
//! is one element.

use serde_json::Value;

/// One element of a prediction.
#[derive(Debug, Clone, PartialEq)]
pub enum Element {
    Number(f64),
    Text(String),
    Bool(bool),
    Null,
}

/// Why an answer has no predictions to compare.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("the body is not JSON")]
    NotJson,
    #[error("no predictions where they were looked for")]
    UnknownShape,
}

/// The predictions of `body`, at `pointer` when one is configured.
pub fn read_predictions(body: &[u8], pointer: Option<&str>) -> Result<Vec<Element>, Unreadable> {
    let v: Value = serde_json::from_slice(body).map_err(|_| Unreadable::NotJson)?;
    let mut out = Vec::new();
    match pointer {
        Some(p) => flatten(v.pointer(p).ok_or(Unreadable::UnknownShape)?, &mut out),
        None => match &v {
            Value::Object(o) => {
                if let Some(p) = o.get("predictions") {
                    flatten(p, &mut out);
                } else if let Some(Value::Array(outputs)) = o.get("outputs") {
                    for output in outputs {
                        flatten(
                            output.get("data").ok_or(Unreadable::UnknownShape)?,
                            &mut out,
                        );
                    }
                } else {
                    return Err(Unreadable::UnknownShape);
                }
            }
            Value::Array(_) => flatten(&v, &mut out),
            _ => return Err(Unreadable::UnknownShape),
        },
    }
    Ok(out)
}

fn flatten(v: &Value, out: &mut Vec<Element>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        Value::Object(fields) => fields.values().for_each(|f| flatten(f, out)),
        Value::Number(n) => out.push(n.as_f64().map_or(Element::Null, Element::Number)),
        Value::String(s) => out.push(Element::Text(s.clone())),
        Value::Bool(b) => out.push(Element::Bool(*b)),
        Value::Null => out.push(Element::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Element::{Number as N, Text as T};

    fn read(body: &str) -> Result<Vec<Element>, Unreadable> {
        read_predictions(body.as_bytes(), None)
    }

    #[test]
    fn each_known_shape_reads_to_a_flat_list() {
        assert_eq!(
            read(r#"{"predictions": [1, 0.5]}"#),
            Ok(vec![N(1.0), N(0.5)])
        );
        assert_eq!(
            read(r#"{"predictions": [[0.1, 0.9], [0.7, 0.3]]}"#),
            Ok(vec![N(0.1), N(0.9), N(0.7), N(0.3)])
        );
        assert_eq!(
            read(r#"{"predictions": [{"label": "cat", "score": 0.8}]}"#),
            Ok(vec![T("cat".into()), N(0.8)])
        );
        assert_eq!(
            read(
                r#"{"model_name": "m", "outputs": [{"name": "a", "data": [1, 2]}, {"name": "b", "data": ["x"]}]}"#
            ),
            Ok(vec![N(1.0), N(2.0), T("x".into())])
        );
        assert_eq!(
            read("[true, null]"),
            Ok(vec![Element::Bool(true), Element::Null])
        );
    }

    #[test]
    fn a_pointer_reads_where_it_points_and_unknown_bodies_are_named() {
        assert_eq!(
            read_predictions(br#"{"result": {"scores": [3]}}"#, Some("/result/scores")),
            Ok(vec![N(3.0)])
        );
        assert_eq!(
            read_predictions(br#"{"result": 1}"#, Some("/nope")),
            Err(Unreadable::UnknownShape)
        );
        assert_eq!(read("<html>"), Err(Unreadable::NotJson));
        assert_eq!(read(r#"{"error": "x"}"#), Err(Unreadable::UnknownShape));
        assert_eq!(read("3"), Err(Unreadable::UnknownShape));
    }
}
