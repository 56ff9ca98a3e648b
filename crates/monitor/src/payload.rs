//! Model inputs and outputs, read from the JSON bodies of an inference call.
//!
//! Inputs, in the shapes MLflow's `models serve` and KServe accept:
//!
//! * `{"dataframe_split": {"columns": [...], "data": [[...], ...]}}` — named by `columns`;
//! * `{"dataframe_records": [{"a": 1, "b": "x"}, ...]}` — named by each record's keys;
//! * `{"instances": [...]}` (MLflow, KServe v1) and `{"inputs": [...]}` (MLflow) — each
//!   instance a list (by position), an object (by key) or a single value (one column);
//!   `{"inputs": {"a": [...], "b": [...]}}` — columns by name;
//! * KServe v2, `{"inputs": [{"name": ..., "shape": [...], "data": [...]}, ...]}` — a tensor
//!   of shape `[N]` or `[N, 1]` is one column named by the tensor; one of shape `[N, F]`, F
//!   columns by position; `data` flat (row-major) or nested.
//!
//! Outputs: `{"predictions": [...]}` (MLflow, KServe v1: one value per row, or an object
//! whose single or first numeric field is taken, or a list of which [`Shape::element`] is
//! taken) and KServe v2 `{"outputs": [{"shape": [N] or [N, K], "data": [...]}]}` (its first
//! output). With a JSON pointer configured, the rows (inputs) or values (outputs) are read at
//! that pointer instead, in any of the row shapes above.
//!
//! Columns without a name in the payload are named by the configured names, in order, and
//! past them by position: `f0`, `f1`, …. A number is a number; a string, a boolean or a
//! number of a column configured as categorical is a category; null is missing. A payload
//! that is not JSON, or in none of these shapes, is an [`Unreadable`], never an error for
//! the client: monitoring counts it and the request goes on.

use serde_json::Value;

/// One value of a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Number(f64),
    Category(String),
    Missing,
}

/// Rows of named columns, in the order they were first seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    /// One entry per row, one cell per column (missing where the row had none).
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    fn column(&mut self, name: &str) -> usize {
        match self.columns.iter().position(|c| c == name) {
            Some(i) => i,
            None => {
                self.columns.push(name.to_owned());
                for row in &mut self.rows {
                    row.push(Cell::Missing);
                }
                self.columns.len() - 1
            }
        }
    }

    pub(crate) fn push_row(&mut self, cells: Vec<(String, Cell)>) {
        let mut row = vec![Cell::Missing; self.columns.len()];
        for (name, cell) in cells {
            let i = self.column(&name);
            row.resize(self.columns.len(), Cell::Missing);
            row[i] = cell;
        }
        row.resize(self.columns.len(), Cell::Missing);
        self.rows.push(row);
    }

    /// Appends `other`'s rows, by column name.
    pub fn append(&mut self, other: &Table) {
        for row in &other.rows {
            self.push_row(
                other
                    .columns
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect(),
            );
        }
    }

    /// Adds a column with one cell per row (cells past the rows are dropped).
    pub fn add_column(&mut self, name: &str, cells: Vec<Cell>) {
        let i = self.column(name);
        for (row, cell) in self.rows.iter_mut().zip(cells) {
            row[i] = cell;
        }
    }

    /// The cells of column `name`, one per row.
    pub fn column_cells(&self, name: &str) -> Option<impl Iterator<Item = &Cell>> {
        let i = self.columns.iter().position(|c| c == name)?;
        Some(self.rows.iter().map(move |r| &r[i]))
    }
}

/// Why a payload yielded nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Not JSON (or cut short by the capture limit).
    NotJson,
    /// JSON in none of the known shapes (or nothing at the configured pointer).
    UnknownShape,
}

impl Unreadable {
    /// The label of `cohort_monitor_unreadable_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotJson => "not_json",
            Self::UnknownShape => "unknown_shape",
        }
    }
}

/// How to read one side of the call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shape {
    /// Names for columns the payload does not name, in order.
    pub names: Vec<String>,
    /// Columns whose numbers are categories (codes, not quantities).
    pub categorical: Vec<String>,
    /// Read at this JSON pointer (RFC 6901) instead of the known shapes.
    pub pointer: Option<String>,
    /// Outputs: of a prediction that is a list (class probabilities), the element taken.
    pub element: Option<usize>,
}

impl Shape {
    fn name(&self, position: usize) -> String {
        self.names
            .get(position)
            .cloned()
            .unwrap_or_else(|| format!("f{position}"))
    }

    fn cell(&self, column: &str, v: &Value) -> Cell {
        let categorical = self.categorical.iter().any(|c| c == column);
        match v {
            Value::Number(n) if categorical => Cell::Category(n.to_string()),
            Value::Number(n) => n.as_f64().map_or(Cell::Missing, Cell::Number),
            Value::String(s) => Cell::Category(s.clone()),
            Value::Bool(b) => Cell::Category(b.to_string()),
            _ => Cell::Missing,
        }
    }
}

/// The input rows of a request body.
pub fn inputs(body: &[u8], shape: &Shape) -> Result<Table, Unreadable> {
    let v: Value = serde_json::from_slice(body).map_err(|_| Unreadable::NotJson)?;
    if let Some(p) = &shape.pointer {
        let at = v.pointer(p).ok_or(Unreadable::UnknownShape)?;
        return rows_of(at, shape);
    }
    let obj = v.as_object().ok_or(Unreadable::UnknownShape)?;
    if let Some(split) = obj.get("dataframe_split") {
        return dataframe_split(split, shape);
    }
    if let Some(records) = obj.get("dataframe_records") {
        return rows_of(records, shape);
    }
    if let Some(inst) = obj.get("instances") {
        return rows_of(inst, shape);
    }
    match obj.get("inputs") {
        Some(Value::Array(items)) if items.first().is_some_and(is_v2_tensor) => {
            v2_tensors(items, shape)
        }
        Some(Value::Object(cols)) => columns_of(cols, shape),
        Some(rows) => rows_of(rows, shape),
        None => Err(Unreadable::UnknownShape),
    }
}

/// The predictions of a response body, one cell per row.
pub fn outputs(body: &[u8], shape: &Shape) -> Result<Vec<Cell>, Unreadable> {
    let v: Value = serde_json::from_slice(body).map_err(|_| Unreadable::NotJson)?;
    let column = shape.name(0);
    let values = if let Some(p) = &shape.pointer {
        v.pointer(p).ok_or(Unreadable::UnknownShape)?
    } else if let Some(p) = v.get("predictions") {
        p
    } else if let Some(Value::Array(outs)) = v.get("outputs") {
        let first = outs.first().ok_or(Unreadable::UnknownShape)?;
        let table = v2_tensors(std::slice::from_ref(first), shape)?;
        let pick = shape
            .element
            .unwrap_or(0)
            .min(table.columns.len().saturating_sub(1));
        return Ok(table
            .rows
            .into_iter()
            .map(|mut r| std::mem::replace(&mut r[pick], Cell::Missing))
            .collect());
    } else if v.is_array() {
        // A bare list of predictions (some MLflow flavours).
        &v
    } else {
        return Err(Unreadable::UnknownShape);
    };
    let list = match values {
        Value::Array(a) => a.as_slice(),
        // A pandas-style {"col": [...]} of one column.
        Value::Object(o) if o.len() == 1 => match o.values().next() {
            Some(Value::Array(a)) => a.as_slice(),
            _ => return Err(Unreadable::UnknownShape),
        },
        single => std::slice::from_ref(single),
    };
    Ok(list
        .iter()
        .map(|p| match p {
            Value::Array(probs) => shape
                .element
                .and_then(|i| probs.get(i))
                .map_or(Cell::Missing, |x| shape.cell(&column, x)),
            Value::Object(o) => o
                .values()
                .find(|x| x.is_number())
                .or_else(|| o.values().next())
                .map_or(Cell::Missing, |x| shape.cell(&column, x)),
            x => shape.cell(&column, x),
        })
        .collect())
}

/// Rows given as a JSON list (of lists, objects or single values), as in a reference file.
pub fn rows(v: &Value, shape: &Shape) -> Result<Table, Unreadable> {
    rows_of(v, shape)
}

fn is_v2_tensor(v: &Value) -> bool {
    v.get("data").is_some() && v.get("shape").is_some()
}

/// Rows as a list of lists (by position), of objects (by key) or of single values.
fn rows_of(v: &Value, shape: &Shape) -> Result<Table, Unreadable> {
    let rows = v.as_array().ok_or(Unreadable::UnknownShape)?;
    let mut t = Table::default();
    for row in rows {
        let cells: Vec<(String, Cell)> = match row {
            Value::Array(xs) => xs
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    let name = shape.name(i);
                    let cell = shape.cell(&name, x);
                    (name, cell)
                })
                .collect(),
            Value::Object(o) => o
                .iter()
                .map(|(k, x)| (k.clone(), shape.cell(k, x)))
                .collect(),
            x => {
                let name = shape.name(0);
                let cell = shape.cell(&name, x);
                vec![(name, cell)]
            }
        };
        t.push_row(cells);
    }
    Ok(t)
}

fn dataframe_split(v: &Value, shape: &Shape) -> Result<Table, Unreadable> {
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or(Unreadable::UnknownShape)?;
    let Some(names) = v.get("columns").and_then(Value::as_array) else {
        return rows_of(&Value::Array(data.clone()), shape);
    };
    let names: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| n.as_str().map_or_else(|| shape.name(i), str::to_owned))
        .collect();
    let mut t = Table::default();
    for row in data {
        let xs = row.as_array().ok_or(Unreadable::UnknownShape)?;
        t.push_row(
            xs.iter()
                .enumerate()
                .map(|(i, x)| {
                    let name = names.get(i).cloned().unwrap_or_else(|| shape.name(i));
                    let cell = shape.cell(&name, x);
                    (name, cell)
                })
                .collect(),
        );
    }
    Ok(t)
}

/// `{"a": [...], "b": [...]}`: columns by name, rows by index.
fn columns_of(cols: &serde_json::Map<String, Value>, shape: &Shape) -> Result<Table, Unreadable> {
    let n = cols
        .values()
        .map(|c| c.as_array().map_or(1, Vec::len))
        .max()
        .ok_or(Unreadable::UnknownShape)?;
    let mut t = Table::default();
    for i in 0..n {
        t.push_row(
            cols.iter()
                .map(|(k, c)| {
                    let x = match c {
                        Value::Array(a) => a.get(i).unwrap_or(&Value::Null),
                        single => single,
                    };
                    (k.clone(), shape.cell(k, x))
                })
                .collect(),
        );
    }
    Ok(t)
}

/// KServe v2 tensors: each of shape `[N]` or `[N, 1]` a column named by the tensor; one of
/// shape `[N, F]` (F > 1), F columns by position.
fn v2_tensors(tensors: &[Value], shape: &Shape) -> Result<Table, Unreadable> {
    let mut columns: Vec<(String, Vec<Cell>)> = Vec::new();
    for (k, tensor) in tensors.iter().enumerate() {
        let dims: Vec<usize> = tensor
            .get("shape")
            .and_then(Value::as_array)
            .ok_or(Unreadable::UnknownShape)?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<_>>()
            .ok_or(Unreadable::UnknownShape)?;
        let mut flat = Vec::new();
        flatten(
            tensor.get("data").ok_or(Unreadable::UnknownShape)?,
            &mut flat,
        );
        let (rows, width) = match dims.as_slice() {
            [n] => (*n, 1),
            [n, f] => (*n, *f),
            _ => return Err(Unreadable::UnknownShape),
        };
        if rows.checked_mul(width) != Some(flat.len()) {
            return Err(Unreadable::UnknownShape);
        }
        let tensor_name = tensor
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| shape.name(k), str::to_owned);
        for f in 0..width {
            let name = if width == 1 && tensors.len() > 1 {
                tensor_name.clone()
            } else if width == 1 {
                shape
                    .names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| tensor_name.clone())
            } else {
                shape.name(f)
            };
            let cells = (0..rows)
                .map(|r| shape.cell(&name, flat[r * width + f]))
                .collect();
            columns.push((name, cells));
        }
    }
    let rows = columns.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    let mut t = Table {
        columns: columns.iter().map(|(n, _)| n.clone()).collect(),
        rows: vec![Vec::with_capacity(columns.len()); rows],
    };
    for (_, cells) in columns {
        for (r, row) in t.rows.iter_mut().enumerate() {
            row.push(cells.get(r).cloned().unwrap_or(Cell::Missing));
        }
    }
    Ok(t)
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(xs) => xs.iter().for_each(|x| flatten(x, out)),
        x => out.push(x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(x: f64) -> Cell {
        Cell::Number(x)
    }

    fn cat(s: &str) -> Cell {
        Cell::Category(s.to_owned())
    }

    fn read(body: &str) -> Table {
        inputs(body.as_bytes(), &Shape::default()).expect(body)
    }

    #[test]
    fn dataframe_split_is_named_by_its_columns() {
        let t = read(
            r#"{"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2.5, null]]}}"#,
        );
        assert_eq!(t.columns, ["a", "b"]);
        assert_eq!(
            t.rows,
            [vec![n(1.0), cat("x")], vec![n(2.5), Cell::Missing]]
        );
    }

    #[test]
    fn dataframe_records_are_named_by_their_keys_and_may_differ() {
        let t = read(r#"{"dataframe_records": [{"a": 1, "b": 2}, {"b": 3, "c": true}]}"#);
        assert_eq!(t.columns, ["a", "b", "c"]);
        assert_eq!(
            t.rows,
            [
                vec![n(1.0), n(2.0), Cell::Missing],
                vec![Cell::Missing, n(3.0), cat("true")]
            ]
        );
    }

    #[test]
    fn instances_and_inputs_by_position_take_configured_names_then_f_n() {
        let shape = Shape {
            names: vec!["sepal_length".into()],
            ..Shape::default()
        };
        for body in [
            r#"{"instances": [[5.1, 3.5], [4.9, 3.0]]}"#,
            r#"{"inputs": [[5.1, 3.5], [4.9, 3.0]]}"#,
        ] {
            let t = inputs(body.as_bytes(), &shape).unwrap();
            assert_eq!(t.columns, ["sepal_length", "f1"], "{body}");
            assert_eq!(t.rows, [vec![n(5.1), n(3.5)], vec![n(4.9), n(3.0)]]);
        }
        let t = read(r#"{"instances": [1, 2, 3]}"#);
        assert_eq!(
            (t.columns.as_slice(), t.rows.len()),
            (&["f0".to_owned()][..], 3)
        );
        let t = read(r#"{"instances": [{"x": 1}, {"x": 2}]}"#);
        assert_eq!(t.columns, ["x"]);
    }

    #[test]
    fn inputs_as_columns_are_named() {
        let t = read(r#"{"inputs": {"a": [1, 2], "b": ["u", "v"]}}"#);
        assert_eq!(t.columns, ["a", "b"]);
        assert_eq!(t.rows, [vec![n(1.0), cat("u")], vec![n(2.0), cat("v")]]);
    }

    #[test]
    fn kserve_v2_tensors_flat_or_nested() {
        let t = read(
            r#"{"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}"#,
        );
        assert_eq!(t.columns, ["f0", "f1", "f2"]);
        assert_eq!(t.rows[1], [n(4.0), n(5.0), n(6.0)]);
        let t = read(
            r#"{"inputs": [{"name": "age", "shape": [2], "datatype": "INT32", "data": [30, 41]},
                           {"name": "city", "shape": [2, 1], "datatype": "BYTES", "data": [["Oslo"], ["Rome"]]}]}"#,
        );
        assert_eq!(t.columns, ["age", "city"]);
        assert_eq!(t.rows[1], [n(41.0), cat("Rome")]);
        // A shape that does not hold the data is not guessed at.
        assert_eq!(
            inputs(
                br#"{"inputs": [{"name": "x", "shape": [3, 2], "data": [1, 2]}]}"#,
                &Shape::default()
            ),
            Err(Unreadable::UnknownShape)
        );
    }

    #[test]
    fn categorical_columns_keep_numbers_as_codes() {
        let shape = Shape {
            names: vec!["zip".into(), "amount".into()],
            categorical: vec!["zip".into()],
            ..Shape::default()
        };
        let t = inputs(br#"{"instances": [[10115, 9.5]]}"#, &shape).unwrap();
        assert_eq!(t.rows[0], [cat("10115"), n(9.5)]);
    }

    #[test]
    fn a_pointer_reads_rows_where_it_points() {
        let shape = Shape {
            pointer: Some("/payload/rows".into()),
            ..Shape::default()
        };
        let t = inputs(br#"{"payload": {"rows": [{"q": 1}, {"q": 2}]}}"#, &shape).unwrap();
        assert_eq!(t.rows, [vec![n(1.0)], vec![n(2.0)]]);
        assert_eq!(
            inputs(br#"{"payload": {}}"#, &shape),
            Err(Unreadable::UnknownShape)
        );
    }

    #[test]
    fn bad_payloads_are_unreadable_not_errors() {
        let s = Shape::default();
        assert_eq!(inputs(b"not json", &s), Err(Unreadable::NotJson));
        assert_eq!(
            inputs(br#"{"instances": [[1, 2]"#, &s),
            Err(Unreadable::NotJson)
        );
        assert_eq!(inputs(br#"[1, 2]"#, &s), Err(Unreadable::UnknownShape));
        assert_eq!(
            inputs(br#"{"features": [1]}"#, &s),
            Err(Unreadable::UnknownShape)
        );
        assert_eq!(
            inputs(br#"{"instances": 3}"#, &s),
            Err(Unreadable::UnknownShape)
        );
        assert_eq!(outputs(b"", &s), Err(Unreadable::NotJson));
        assert_eq!(
            outputs(br#"{"error": "x"}"#, &s),
            Err(Unreadable::UnknownShape)
        );
    }

    #[test]
    fn predictions_in_each_shape() {
        let s = Shape::default();
        assert_eq!(
            outputs(br#"{"predictions": [0, 1, 0.25]}"#, &s).unwrap(),
            [n(0.0), n(1.0), n(0.25)]
        );
        assert_eq!(outputs(br#"[1, 0]"#, &s).unwrap(), [n(1.0), n(0.0)]);
        assert_eq!(
            outputs(br#"{"predictions": ["setosa"]}"#, &s).unwrap(),
            [cat("setosa")]
        );
        assert_eq!(
            outputs(br#"{"predictions": [{"score": 0.7, "label": "a"}]}"#, &s).unwrap(),
            [n(0.7)]
        );
        assert_eq!(
            outputs(br#"{"predictions": {"0": [0.1, 0.2]}}"#, &s).unwrap(),
            [n(0.1), n(0.2)]
        );
        // Class probabilities: the configured element, else nothing is guessed.
        assert_eq!(
            outputs(br#"{"predictions": [[0.2, 0.8]]}"#, &s).unwrap(),
            [Cell::Missing]
        );
        let second = Shape {
            element: Some(1),
            ..Shape::default()
        };
        assert_eq!(
            outputs(br#"{"predictions": [[0.2, 0.8]]}"#, &second).unwrap(),
            [n(0.8)]
        );
        let v2 = br#"{"model_name": "m", "outputs": [{"name": "p", "shape": [2, 2], "datatype": "FP32", "data": [0.9, 0.1, 0.3, 0.7]}]}"#;
        assert_eq!(outputs(v2, &second).unwrap(), [n(0.1), n(0.7)]);
        assert_eq!(outputs(v2, &s).unwrap(), [n(0.9), n(0.3)]);
    }
}
