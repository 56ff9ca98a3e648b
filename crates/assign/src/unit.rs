//! Finding the randomization unit's id in a request: headers, cookies, query parameters.
//!
//! Sources are tried in the configured order; the first one present with a non-empty value
//! wins. Nothing here allocates unless a query value needs percent-decoding.

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, COOKIE};

/// One place a unit id may be found (compiled from `unit_from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitSource {
    Header(HeaderName),
    Cookie(String),
    Query(String),
}

impl std::fmt::Display for UnitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnitSource::Header(h) => write!(f, "header {h}"),
            UnitSource::Cookie(c) => write!(f, "cookie {c}"),
            UnitSource::Query(q) => write!(f, "query {q}"),
        }
    }
}

/// The unit id of a request, from the first source that has one.
pub fn find_unit<'a>(
    sources: &[UnitSource],
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Option<Cow<'a, str>> {
    sources.iter().find_map(|source| match source {
        UnitSource::Header(name) => headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(Cow::Borrowed),
        UnitSource::Cookie(name) => cookie(headers, name).map(Cow::Borrowed),
        UnitSource::Query(name) => query.and_then(|q| query_param(q, name)),
    })
}

/// The value of cookie `name` across all `Cookie` headers (RFC 6265 §5.4 syntax).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            if k.trim() != name {
                return None;
            }
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            (!v.is_empty()).then_some(v)
        })
}

/// The first non-empty value of query parameter `name` (`+` and `%XX` decoded). A value
/// whose decoding is not UTF-8 is no value: decoded lossily, different ids would collide.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(k).as_deref() != Some(name) || v.is_empty() {
            return None;
        }
        decode(v).filter(|v| !v.is_empty())
    })
}

/// `application/x-www-form-urlencoded` decoding; invalid escapes are kept as written.
/// None when the decoded bytes are not UTF-8.
fn decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains(['%', '+']) {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn sources() -> Vec<UnitSource> {
        vec![
            UnitSource::Header(HeaderName::from_static("x-user-id")),
            UnitSource::Cookie("cohort_uid".into()),
            UnitSource::Query("uid".into()),
        ]
    }

    #[test]
    fn first_present_source_wins() {
        let h = headers(&[("x-user-id", "alice"), ("cookie", "cohort_uid=bob")]);
        assert_eq!(
            find_unit(&sources(), &h, Some("uid=carol")).as_deref(),
            Some("alice")
        );
        let h = headers(&[("x-user-id", "  "), ("cookie", "a=1; cohort_uid=bob")]);
        assert_eq!(
            find_unit(&sources(), &h, Some("uid=carol")).as_deref(),
            Some("bob")
        );
        let h = headers(&[("cookie", "other=1")]);
        assert_eq!(
            find_unit(&sources(), &h, Some("x=1&uid=car%20ol+x")).as_deref(),
            Some("car ol x")
        );
        assert_eq!(find_unit(&sources(), &h, Some("uid=&x=2")), None);
        assert_eq!(find_unit(&sources(), &h, None), None);
    }

    #[test]
    fn cookies_across_headers_and_quoted() {
        let h = headers(&[("cookie", "a=1"), ("cookie", "cohort_uid=\"q\"")]);
        assert_eq!(cookie(&h, "cohort_uid"), Some("q"));
        let h = headers(&[("cookie", "cohort_uidx=1; xcohort_uid=2")]);
        assert_eq!(cookie(&h, "cohort_uid"), None);
    }

    #[test]
    fn decoding_keeps_invalid_escapes() {
        assert_eq!(decode("a%2").as_deref(), Some("a%2"));
        assert_eq!(decode("a%zz").as_deref(), Some("a%zz"));
        assert_eq!(decode("%41%42").as_deref(), Some("AB"));
        assert_eq!(decode("100%").as_deref(), Some("100%"));
    }

    #[test]
    fn a_query_value_that_is_not_utf8_once_decoded_is_no_unit() {
        // Decoded lossily, both would be U+FFFD: two clients, one unit.
        assert_eq!(query_param("u=%FF", "u"), None);
        assert_eq!(query_param("u=%FE&u=bob", "u").as_deref(), Some("bob"));
        assert_eq!(query_param("u=%C3%A9", "u").as_deref(), Some("é"));
        assert_eq!(query_param("u=a%2", "u").as_deref(), Some("a%2"));
    }
}
