//! Switches that turn one piece of the request path off, for measuring what each piece
//! costs (bench/README.md, "What each piece costs"). They exist only in a build with the
//! `ablation` feature, which reads them once from `COHORT_ABLATE` (a comma-separated list
//! of [`Piece`] names); in every other build [`off`] is a constant `false` and the checks
//! compile away. A build with a piece off is not a correct proxy: never serve with one.

/// A piece of per-request work that can be switched off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "ablation"), allow(dead_code))]
pub enum Piece {
    /// Request counts, latency histograms and the upstream gauge.
    Metrics = 0,
    /// The request id: a fixed value instead of a minted one (no random draw).
    RequestId,
    /// Header rewriting both ways: hop-by-hop removal, forwarding headers, Host, cohort's
    /// response headers.
    Headers,
    /// Unit extraction and assignment: every request goes to the control.
    Assign,
    /// The upstream timeout's timer.
    Timeout,
    /// The tap on the request body (upload failures told apart from upstream ones).
    UploadTap,
    /// The tap on the response body: the exposure is handed over at the response head.
    ResponseTap,
    /// The connection's activity tracking (in-flight count, last activity).
    Activity,
}

#[cfg(feature = "ablation")]
const NAMES: [(&str, Piece); 8] = [
    ("metrics", Piece::Metrics),
    ("request_id", Piece::RequestId),
    ("headers", Piece::Headers),
    ("assign", Piece::Assign),
    ("timeout", Piece::Timeout),
    ("upload_tap", Piece::UploadTap),
    ("response_tap", Piece::ResponseTap),
    ("activity", Piece::Activity),
];

/// Whether `piece` is switched off in this process.
#[cfg(feature = "ablation")]
pub fn off(piece: Piece) -> bool {
    static OFF: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let mask = *OFF.get_or_init(|| {
        let list = std::env::var("COHORT_ABLATE").unwrap_or_default();
        let mut mask = 0;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match NAMES.iter().find(|(n, _)| *n == name) {
                Some((_, p)) => mask |= 1 << *p as u32,
                None => panic!("COHORT_ABLATE: unknown piece {name:?}"),
            }
        }
        if mask != 0 {
            eprintln!("COHORT_ABLATE: {list} switched off (a measuring build, not a proxy)");
        }
        mask
    });
    mask & (1 << piece as u32) != 0
}

/// Whether `piece` is switched off in this process: never, in this build.
#[cfg(not(feature = "ablation"))]
#[inline(always)]
pub const fn off(_piece: Piece) -> bool {
    false
}
