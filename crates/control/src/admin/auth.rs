//! Who may call the admin listener's mutating endpoints.
//!
//! `admin.tokens` names bearer tokens whose secrets come from the environment; each has
//! scopes (`control`: reload and runtime weights; `conversions`: reporting conversions).
//! A missing or unknown token is 401; a token without the scope is 403 naming the scope.
//! With no tokens configured, mutating calls are allowed only when the admin listener is
//! bound to loopback (then only local processes reach it); otherwise they are 403 with a
//! message saying how to enable them. Secrets never appear in logs or answers: only the
//! token's name does.
//!
//! Browsers attach no bearer token by themselves, so tokens protect a configured admin from
//! web pages; the tokenless loopback mode needs its own defence, since any page a local
//! browser opens can send requests to 127.0.0.1 (CSRF) or rebind a name of its own to it
//! (DNS rebinding). There a mutating call must carry a `Host` that is an IP literal or
//! `localhost`, no `Origin` but a local one, and, when it has a body or a `Content-Type`,
//! a JSON one (`application/json`; NDJSON for conversions): the kinds of request a page can
//! send without a CORS preflight are refused.

use http::header::{
    HeaderMap, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, TRANSFER_ENCODING,
};

use cohort_config::schema::{AdminConfig, Scope};

/// A configured token with its secret.
struct Token {
    name: String,
    secret: Vec<u8>,
    scopes: Vec<Scope>,
}

/// The admin listener's access rules.
pub struct AdminAuth {
    tokens: Vec<Token>,
    loopback: bool,
}

/// Who made an allowed call (for the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Token(String),
    /// No tokens configured; allowed because the listener is loopback-only.
    Loopback,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Token(name) => write!(f, "token {name}"),
            Caller::Loopback => write!(f, "a local process (loopback admin, no tokens)"),
        }
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// 401: no token, or not one we know.
    Unauthorized(String),
    /// 403: a known token without the scope, or mutations disabled.
    Forbidden(String),
}

impl AdminAuth {
    /// Reads each token's secret from its environment variable (`env` looks it up).
    pub fn from_config(
        admin: &AdminConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut tokens = Vec::with_capacity(admin.tokens.len());
        for (i, t) in admin.tokens.iter().enumerate() {
            let secret = env(&t.env).filter(|s| !s.is_empty()).ok_or_else(|| {
                format!(
                    "admin.tokens[{i}] ({}): the environment variable {} that holds its secret is not set",
                    t.name, t.env
                )
            })?;
            tokens.push(Token {
                name: t.name.clone(),
                secret: secret.into_bytes(),
                scopes: t.scopes.clone(),
            });
        }
        Ok(Self {
            tokens,
            loopback: admin.listen.ip().is_loopback(),
        })
    }

    /// Whether a request with `headers` may do what `scope` covers.
    pub fn check(&self, headers: &HeaderMap, scope: Scope) -> Result<Caller, Denied> {
        let scope_name = cohort_config::schema::yaml_name(&scope);
        if self.tokens.is_empty() {
            return if self.loopback {
                from_a_local_program(headers, scope).map(|()| Caller::Loopback)
            } else {
                Err(Denied::Forbidden(
                    "mutating admin calls are disabled: the admin listener is not bound to loopback \
                     and admin.tokens is empty; add a token, e.g. \
                     `admin: {tokens: [{name: ci, env: COHORT_TOKEN_CI, scopes: [control, conversions]}]}`"
                        .to_owned(),
                ))
            };
        }
        let token = self.token(headers)?;
        if token.scopes.contains(&scope) {
            Ok(Caller::Token(token.name.clone()))
        } else {
            Err(Denied::Forbidden(format!(
                "token {} lacks the scope {scope_name} needed here",
                token.name
            )))
        }
    }

    /// Whether a request may read the admin API beyond the probes and `/metrics`: with
    /// tokens configured, any of them, whatever its scopes (experiment names, weights and
    /// upstream addresses are not for whoever reaches the port); without, anyone who
    /// reaches the listener.
    pub fn check_read(&self, headers: &HeaderMap) -> Result<(), Denied> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        self.token(headers).map(|_| ())
    }

    /// A read that needs `scope` when tokens are configured (a rollout's state is for
    /// whoever may act on it); without tokens, like any read.
    pub fn check_read_scope(&self, headers: &HeaderMap, scope: Scope) -> Result<(), Denied> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        let token = self.token(headers)?;
        if token.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(Denied::Forbidden(format!(
                "token {} lacks the scope {} needed here",
                token.name,
                cohort_config::schema::yaml_name(&scope)
            )))
        }
    }

    /// The configured token a request presents.
    fn token(&self, headers: &HeaderMap) -> Result<&Token, Denied> {
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                Denied::Unauthorized(
                    "an `Authorization: Bearer TOKEN` header is required".to_owned(),
                )
            })?;
        self.tokens
            .iter()
            .find(|t| constant_time_eq(&t.secret, presented.as_bytes()))
            .ok_or_else(|| Denied::Unauthorized("unknown token".to_owned()))
    }
}

/// Whether a tokenless call to a loopback admin came from a program on this machine rather
/// than from a web page (see the module's doc).
fn from_a_local_program(headers: &HeaderMap, scope: Scope) -> Result<(), Denied> {
    let refuse = |why: String| {
        Err(Denied::Forbidden(format!(
            "{why}: without admin.tokens, mutating calls are taken only from local programs, not web pages"
        )))
    };
    // Browsers always send a Host over cleartext HTTP (they speak HTTP/2 only over TLS); a
    // request without one (HTTP/1.0, or HTTP/2 with its authority in the URI) is no page's.
    let host = headers.get(HOST).map(|v| v.to_str().unwrap_or("?"));
    if let Some(host) = host.filter(|h| !local_host(h)) {
        return refuse(format!(
            "Host {host:?} is neither an IP address nor localhost"
        ));
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let name = host_name(origin.split_once("://").map_or("", |(_, h)| h));
        let loopback = name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return refuse(format!("Origin {origin:?} is not a local one"));
        }
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let has_body = headers
        .get(CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || headers.contains_key(TRANSFER_ENCODING);
    let json = match scope {
        Scope::Conversions => &[
            "application/json",
            "application/x-ndjson",
            "application/jsonl",
        ][..],
        Scope::Control => &["application/json"][..],
    };
    match content_type {
        Some(ct) if json.contains(&ct.as_str()) => Ok(()),
        None if !has_body => Ok(()),
        other => refuse(format!(
            "Content-Type {:?} is not {}",
            other.unwrap_or_default(),
            json.join(" or ")
        )),
    }
}

/// `localhost`, or an IP literal, with or without a port.
fn local_host(host: &str) -> bool {
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// The name of `host[:port]`, without the port and an IPv6 literal's brackets.
fn host_name(host: &str) -> &str {
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split_once(']').map_or(v6, |(name, _)| name);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Compares without an early exit, so timing does not reveal how much of a secret matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_config::schema::TokenConfig;
    use http::HeaderValue;

    fn admin(listen: &str, tokens: Vec<TokenConfig>) -> AdminConfig {
        AdminConfig {
            listen: listen.parse().unwrap(),
            tokens,
            ..AdminConfig::default()
        }
    }

    fn bearer(secret: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {secret}")).unwrap(),
        );
        h
    }

    #[test]
    fn tokens_and_scopes() {
        let cfg = admin(
            "0.0.0.0:9901",
            vec![TokenConfig {
                name: "ci".into(),
                env: "T".into(),
                scopes: vec![Scope::Control],
            }],
        );
        let auth = AdminAuth::from_config(&cfg, |_| Some("s3cret".into())).unwrap();
        assert_eq!(
            auth.check(&bearer("s3cret"), Scope::Control),
            Ok(Caller::Token("ci".into()))
        );
        assert!(
            matches!(auth.check(&bearer("s3cret"), Scope::Conversions), Err(Denied::Forbidden(m)) if m.contains("conversions"))
        );
        assert!(matches!(
            auth.check(&bearer("nope"), Scope::Control),
            Err(Denied::Unauthorized(_))
        ));
        assert!(matches!(
            auth.check(&HeaderMap::new(), Scope::Control),
            Err(Denied::Unauthorized(_))
        ));
        let err = AdminAuth::from_config(&cfg, |_| None).err().unwrap();
        assert!(err.contains("environment variable T"), "{err}");
    }

    #[test]
    fn without_tokens_only_loopback() {
        let local = AdminAuth::from_config(&admin("127.0.0.1:9901", vec![]), |_| None).unwrap();
        assert_eq!(
            local.check(&HeaderMap::new(), Scope::Control),
            Ok(Caller::Loopback)
        );
        let mut page = HeaderMap::new();
        page.insert(HOST, HeaderValue::from_static("rebind.evil.example"));
        assert!(matches!(
            local.check(&page, Scope::Control),
            Err(Denied::Forbidden(m)) if m.contains("neither an IP address nor localhost")
        ));
        page.insert(HOST, HeaderValue::from_static("[::1]:9901"));
        assert_eq!(local.check(&page, Scope::Control), Ok(Caller::Loopback));
        let open = AdminAuth::from_config(&admin("0.0.0.0:9901", vec![]), |_| None).unwrap();
        assert!(
            matches!(open.check(&HeaderMap::new(), Scope::Control), Err(Denied::Forbidden(m)) if m.contains("add a token"))
        );
    }
}
