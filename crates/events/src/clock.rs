//! Wall-clock timestamps as RFC 3339 UTC strings (`2026-11-25T14:25:10.123Z`), without a
//! date-time dependency: the civil-from-days conversion of Howard Hinnant's algorithms.

use std::time::{SystemTime, UNIX_EPOCH};

/// `t` as RFC 3339 UTC with milliseconds (`2026-11-25T14:25:10.123Z`).
pub fn rfc3339(t: SystemTime) -> String {
    rfc3339_bytes(t).iter().map(|&c| char::from(c)).collect()
}

/// [`rfc3339`] into a fixed buffer (ASCII), without allocating.
pub fn rfc3339_bytes(t: SystemTime) -> [u8; 24] {
    // Events come in thousands a second: the date and time of the last second formatted
    // on this thread are reused, and only the milliseconds written.
    thread_local! {
        static LAST: std::cell::Cell<Option<(u64, [u8; 24])>> = const { std::cell::Cell::new(None) };
    }
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let mut b = match LAST.with(std::cell::Cell::get) {
        Some((last, b)) if last == secs => b,
        _ => {
            let b = format_second(secs);
            LAST.with(|last| last.set(Some((secs, b))));
            b
        }
    };
    let ms = d.subsec_millis();
    b[20] = b'0' + (ms / 100) as u8;
    b[21] = b'0' + (ms / 10 % 10) as u8;
    b[22] = b'0' + (ms % 10) as u8;
    b
}

/// `secs` since the epoch as RFC 3339, milliseconds left at `000`.
fn format_second(secs: u64) -> [u8; 24] {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    // Digits written in place: the event writer formats one timestamp per event, and
    // `format!` made that a seventh of its time.
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (0..width).rev() {
            b[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u64);
    put(5, 2, u64::from(m));
    put(8, 2, u64::from(day));
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    b
}

/// Now, as [`rfc3339`].
pub fn now() -> String {
    rfc3339(SystemTime::now())
}

/// Seconds since the Unix epoch, as a float (for Prometheus timestamps).
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Nanoseconds since the Unix epoch of an RFC 3339 timestamp (`2026-11-25T14:25:10.123Z`,
/// any number of fraction digits, `Z` or a `±HH:MM` offset; a space for the `T` is accepted).
/// None when it is not one.
pub fn parse_nanos(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                frac = frac * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            frac *= 10;
        }
    }
    let offset_s = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let o = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if sign == b'+' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec + offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(frac)
}

/// RFC 3339 UTC with milliseconds of nanoseconds since the epoch (inverse of
/// [`parse_nanos`] to the millisecond).
pub fn from_nanos(ns: i64) -> String {
    let (secs, sub) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        sub / 1_000_000
    )
}

/// Days since 1970-01-01 of a civil date (Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day in a century leap year), 12:34:56.789 UTC.
        let t = UNIX_EPOCH + Duration::from_millis(951_827_696_789);
        assert_eq!(rfc3339(t), "2000-02-29T12:34:56.789Z");
        // 2026-11-25T00:00:00Z = 1795564800.
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_564_800)),
            "2026-11-25T00:00:00.000Z"
        );
    }

    #[test]
    fn the_reused_second_gets_each_instants_milliseconds() {
        let base = UNIX_EPOCH + Duration::from_secs(1_795_564_800);
        for (ms, want) in [
            (7, "2026-11-25T00:00:00.007Z"),
            (999, "2026-11-25T00:00:00.999Z"),
            (1_050, "2026-11-25T00:00:01.050Z"),
            (40, "2026-11-25T00:00:00.040Z"),
            (86_400_000, "2026-11-26T00:00:00.000Z"),
        ] {
            assert_eq!(rfc3339(base + Duration::from_millis(ms)), want);
        }
    }

    #[test]
    fn parsing_inverts_formatting_and_honours_offsets() {
        for ms in [0i64, 951_827_696_789, 1_795_564_800_123, -86_400_000] {
            let s = rfc3339(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64));
            if ms >= 0 {
                assert_eq!(parse_nanos(&s), Some(ms * 1_000_000), "{s}");
            }
            assert_eq!(
                parse_nanos(&from_nanos(ms * 1_000_000)),
                Some(ms * 1_000_000)
            );
        }
        assert_eq!(
            parse_nanos("2026-11-25T01:00:00+01:00"),
            parse_nanos("2026-11-25T00:00:00Z")
        );
        assert_eq!(
            parse_nanos("2026-11-25T00:00:00.5Z"),
            Some(1_795_564_800_500_000_000)
        );
        assert_eq!(
            parse_nanos("2026-11-25T00:00:00.123456789Z"),
            Some(1_795_564_800_123_456_789)
        );
        for bad in [
            "",
            "2026-11-25",
            "2026-13-01T00:00:00Z",
            "2026-11-25T00:00:00",
            "2026-11-25T00:00:00.Z",
            "x026-11-25T00:00:00Z",
        ] {
            assert_eq!(parse_nanos(bad), None, "{bad}");
        }
    }
}
