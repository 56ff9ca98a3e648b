//! cohort's own request ids: unique across replicas, and self-describing for attribution.
//!
//! Format (version 1), five fields joined by `~` (a character names may not contain):
//!
//! ```text
//! c1~<experiment>~<variant>~<config version>~<32 hex digits of randomness>
//! c1~iris-model~lr~0faa580c6cb59cf8~5f0c…e2
//! ```
//!
//! 128 random bits make collisions across replicas negligible without coordination. The
//! id is minted by cohort for every request, sent upstream and returned as
//! `x-cohort-request-id`; a client's own `x-request-id` is forwarded unchanged and never
//! used in its place (with `unit: request` a client-chosen id would let it pick its variant).

/// The fields a request id carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId<'a> {
    pub experiment: &'a str,
    pub variant: &'a str,
    pub config_version: &'a str,
    pub nonce: &'a str,
}

/// Mints a new id.
pub fn mint(experiment: &str, variant: &str, config_version: &str) -> String {
    mint_with(experiment, variant, config_version, rand::random())
}

/// An id with a given random part. With `unit: request` the unit is this 32-hex nonce, so
/// a conversion that names the request id finds its unit without any shared state.
pub fn mint_with(experiment: &str, variant: &str, config_version: &str, nonce: u128) -> String {
    mint_after(&prefix(experiment, variant, config_version), nonce)
}

/// Everything of an id before its nonce: `c1~<experiment>~<variant>~<config version>~`,
/// the same for every request of a variant under one config (the proxy keeps it).
pub fn prefix(experiment: &str, variant: &str, config_version: &str) -> String {
    format!("c1~{experiment}~{variant}~{config_version}~")
}

/// An id from its [`prefix`] and nonce. Built by hand, two hex digits a step: `format!`
/// with a 128-bit hex field costs several times as much, on every request.
pub fn mint_after(prefix: &str, nonce: u128) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 32];
    for (i, pair) in digits.chunks_exact_mut(2).enumerate() {
        let byte = (nonce >> (120 - 8 * i)) as u8;
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    let mut id = String::with_capacity(prefix.len() + digits.len());
    id.push_str(prefix);
    // Hex digits are ASCII: always UTF-8.
    id.push_str(std::str::from_utf8(&digits).unwrap_or_default());
    id
}

/// Reads an id minted by [`mint`]; None for anything else.
pub fn parse(id: &str) -> Option<RequestId<'_>> {
    let mut parts = id.split('~');
    if parts.next()? != "c1" {
        return None;
    }
    let (experiment, variant, config_version, nonce) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_hexdigit());
    (parts.next().is_none() && hex && !experiment.is_empty() && !variant.is_empty()).then_some(
        RequestId {
            experiment,
            variant,
            config_version,
            nonce,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_unique() {
        let a = mint("iris-model", "lr", "0faa580c6cb59cf8");
        let b = mint("iris-model", "lr", "0faa580c6cb59cf8");
        assert_ne!(a, b);
        let p = parse(&a).unwrap();
        assert_eq!(
            (p.experiment, p.variant, p.config_version),
            ("iris-model", "lr", "0faa580c6cb59cf8")
        );
        assert_eq!(parse("client-chosen"), None);
        let n = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210_u128;
        assert_eq!(mint_with("e", "v", "x", n), format!("c1~e~v~x~{n:032x}"));
        assert_eq!(mint_with("e", "v", "x", 1), format!("c1~e~v~x~{:032x}", 1));
        assert_eq!(parse("c1~e~v~x~nothex"), None);
    }
}
