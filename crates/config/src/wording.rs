//! serde's and the YAML parser's messages in the words of someone editing routes.yaml:
//! "must be a number", not "invalid type: string, expected f64"; a route "needs a
//! `match` (e.g. `match: {path_prefix: /}`)", not "missing field `match`"; a YAML syntax
//! error called one. Anything not recognised passes through unchanged.

/// `reason` (serde's or the parser's) for the value at `path`, reworded. The path is shown
/// before it, so a value's own complaint starts "must be"; only the file as a whole is
/// named.
pub(crate) fn reword(path: &str, reason: &str) -> String {
    let key = if path.is_empty() { "the file " } else { "" };
    if let Some(rest) = reason.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        let example = example(field).map_or(String::new(), |e| format!(" (e.g. `{e}`)"));
        // "a url", "a unit" (said "you…"), but "an upstream".
        let article = if field.starts_with(['a', 'e', 'i', 'o', 'u'])
            && !matches!(field, "url" | "unit" | "unit_from")
        {
            "an"
        } else {
            "a"
        };
        return format!("{} needs {article} `{field}`{example}", section(path));
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((got, expected)) = reason
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once(", expected "))
        {
            return format!(
                "{key}must be {} (got {})",
                expected_words(expected),
                got_words(got)
            );
        }
    }
    if let Some(rest) = reason.strip_prefix("unknown variant `") {
        if let Some((got, expected)) = rest.split_once("`, expected ") {
            let choices = expected.trim_start_matches("one of ").replace('`', "");
            let choices = choices.replace(", ", " | ").replace(" or ", " | ");
            return format!("{key}must be one of {choices} (got `{got}`)");
        }
    }
    if let Some(rest) = reason.strip_prefix("unknown field `") {
        if let Some((got, expected)) = rest.split_once("`, expected ") {
            let keys = expected.trim_start_matches("one of ").replace('`', "");
            return format!("unknown key `{got}` (a typo?); here the keys are: {keys}");
        }
        if let Some((got, _)) = rest.split_once("`, there are no fields") {
            return format!("unknown key `{got}`: this section takes no keys");
        }
    }
    if path.is_empty() && is_syntax(reason) {
        return format!("YAML syntax error: {}", syntax_words(reason));
    }
    reason.to_owned()
}

/// What the value at `path` is, for "… needs a `field`".
fn section(path: &str) -> &'static str {
    let last = path.rsplit('.').next().unwrap_or(path);
    if last.starts_with("routes[") {
        "route"
    } else if last.starts_with("variants[") {
        "variant"
    } else if last.starts_with("experiments[") {
        "experiment"
    } else if last.starts_with("tokens[") {
        "token"
    } else if last == "match" {
        "match"
    } else if path.is_empty() {
        "the file"
    } else {
        "this section"
    }
}

/// An example of a required key, as it would be written.
fn example(field: &str) -> Option<&'static str> {
    Some(match field {
        "match" => "match: {path_prefix: /}",
        "path_prefix" => "path_prefix: /invocations",
        "experiment" => "experiment: iris-model",
        "name" => "name: rf",
        "control" => "control: rf",
        "variants" => "variants: [{name: rf, weight: 50, upstream: \"http://127.0.0.1:5001\"}, …]",
        "weight" => "weight: 50",
        "upstream" => "upstream: \"http://127.0.0.1:5001\"",
        "scopes" => "scopes: [control]",
        "token_env" => "token_env: COHORT_TOKEN_OPS",
        _ => return None,
    })
}

/// serde's "expected …" in plain words.
fn expected_words(expected: &str) -> String {
    match expected {
        "f64" | "f32" => "a number".to_owned(),
        "u64" | "u32" | "u16" | "u8" | "usize" => "a whole number, 0 or more".to_owned(),
        "i64" | "i32" => "a whole number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a string" | "a borrowed string" => "a string".to_owned(),
        "a sequence" => "a list (`[a, b]` or `- ` items)".to_owned(),
        "a map" => "a mapping (`key: value`)".to_owned(),
        "socket address" => "an address like 127.0.0.1:8080".to_owned(),
        e if e.starts_with("struct ") => "a mapping (`key: value`)".to_owned(),
        e if e.starts_with("a sequence of") || e.starts_with("tuple") => {
            "a list (`[a, b]` or `- ` items)".to_owned()
        }
        other => other.to_owned(),
    }
}

/// serde's description of what it found, e.g. "string \"soon\"", "sequence".
fn got_words(got: &str) -> String {
    let got = got.replace('`', "");
    match got.as_str() {
        "sequence" => "a list".to_owned(),
        "map" => "a mapping".to_owned(),
        "unit value" => "nothing (null)".to_owned(),
        _ => got,
    }
}

/// Whether `reason` comes from the YAML scanner or parser rather than from the schema.
fn is_syntax(reason: &str) -> bool {
    [
        "while parsing",
        "while scanning",
        "did not find expected",
        "found character that cannot start",
        "mapping values are not allowed",
        "found unexpected end of stream",
        "could not find expected",
        "found undefined tag handle",
        "block sequence entries are not allowed",
    ]
    .iter()
    .any(|p| reason.contains(p))
}

/// "X, while parsing a flow mapping at line 10 column 9" → "X (in the flow mapping that
/// starts at line 10, column 9)".
fn syntax_words(reason: &str) -> String {
    match reason.split_once(", while ") {
        Some((what, context)) => {
            let context = context
                .replacen("parsing a ", "the ", 1)
                .replacen("scanning a ", "the ", 1)
                .replacen(" at line ", " that starts at line ", 1)
                .replacen(" column ", ", column ", 1);
            format!("{what} (in {context})")
        }
        None => reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::reword;

    #[test]
    fn serde_messages_in_the_users_words() {
        for (path, serde, ours) in [
            (
                "experiments[0].variants[0].weight",
                "invalid type: string \"abc\", expected f64",
                "must be a number (got string \"abc\")",
            ),
            (
                "routes[0]",
                "missing field `match`",
                "route needs a `match` (e.g. `match: {path_prefix: /}`)",
            ),
            (
                "experiments[0].variants[1]",
                "missing field `upstream`",
                "variant needs an `upstream` (e.g. `upstream: \"http://127.0.0.1:5001\"`)",
            ),
            (
                "routes[0].timeout_ms",
                "invalid type: string \"soon\", expected u64",
                "must be a whole number, 0 or more (got string \"soon\")",
            ),
            (
                "routes",
                "invalid type: integer `5`, expected a sequence",
                "must be a list (`[a, b]` or `- ` items) (got integer 5)",
            ),
            (
                "routes[0].strip_prefix",
                "invalid type: string \"yes please\", expected a boolean",
                "must be true or false (got string \"yes please\")",
            ),
            (
                "experiments[0].variants[1].protocol",
                "unknown variant `h3`, expected `http1` or `h2c`",
                "must be one of http1 | h2c (got `h3`)",
            ),
            (
                "experiments[0].unit",
                "unknown variant `person`, expected one of `user`, `request`",
                "must be one of user | request (got `person`)",
            ),
            (
                "a",
                "unknown field `a`, expected one of `listen`, `routes`",
                "unknown key `a` (a typo?); here the keys are: listen, routes",
            ),
            (
                "",
                "did not find expected ',' or '}', while parsing a flow mapping at line 10 column 9",
                "YAML syntax error: did not find expected ',' or '}' (in the flow mapping that starts at line 10, column 9)",
            ),
            (
                "",
                "found unexpected end of stream, while scanning a quoted scalar at line 2 column 11",
                "YAML syntax error: found unexpected end of stream (in the quoted scalar that starts at line 2, column 11)",
            ),
            // What it does not know stays as it was.
            ("listen", "invalid socket address syntax", "invalid socket address syntax"),
        ] {
            assert_eq!(reword(path, serde), ours, "{path}: {serde}");
        }
    }
}
