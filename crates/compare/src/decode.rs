//! A body as sent, decompressed per its `Content-Encoding` (gzip, deflate, br), never to
//! more than a limit: a small compressed body can stand for a huge one.

use std::borrow::Cow;
use std::io::Read;

/// Why a body could not be read as plain bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("content-encoding {0:?} is not one cohort reads (gzip, deflate, br)")]
    Unsupported(String),
    #[error("decompressed, the body is longer than the limit")]
    TooLarge,
    #[error("the body is not valid {0}")]
    Corrupt(&'static str),
}

/// `body` decompressed per `encoding` (a `Content-Encoding` value: codings in the order
/// applied, e.g. `gzip` or `identity`), at most `max` bytes at every step.
pub fn decode<'a>(
    body: &'a [u8],
    encoding: Option<&str>,
    max: usize,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    let codings: Vec<String> = encoding
        .unwrap_or("")
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    let mut out = Cow::Borrowed(body);
    // Codings are listed in the order they were applied: undo them from the last.
    for coding in codings.iter().rev() {
        let plain = match coding.as_str() {
            "gzip" | "x-gzip" => inflate(flate2::read::MultiGzDecoder::new(&out[..]), max, "gzip")?,
            // HTTP's "deflate" is the zlib format (RFC 9110 §8.4.1.2).
            "deflate" => inflate(flate2::read::ZlibDecoder::new(&out[..]), max, "deflate")?,
            "br" => inflate(
                brotli_decompressor::Decompressor::new(&out[..], 4096),
                max,
                "brotli",
            )?,
            other => return Err(DecodeError::Unsupported(other.to_owned())),
        };
        out = Cow::Owned(plain);
    }
    Ok(out)
}

/// Reads `r` to its end, failing past `max` bytes.
fn inflate(r: impl Read, max: usize, what: &'static str) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let read = r
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| DecodeError::Corrupt(what))?;
    if read > max {
        return Err(DecodeError::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn identity_borrows_and_gzip_and_deflate_inflate() {
        assert!(matches!(
            decode(b"abc", None, 10),
            Ok(Cow::Borrowed(b"abc"))
        ));
        assert_eq!(&*decode(b"abc", Some("identity"), 10).unwrap(), b"abc");
        assert_eq!(
            &*decode(&gzip(b"hello"), Some("gzip"), 10).unwrap(),
            b"hello"
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"hello").unwrap();
        let z = z.finish().unwrap();
        assert_eq!(&*decode(&z, Some("deflate"), 10).unwrap(), b"hello");
        // Two codings: gzip applied last is undone first.
        let mut twice = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        twice.write_all(&gzip(b"x")).unwrap();
        let twice = twice.finish().unwrap();
        assert_eq!(&*decode(&twice, Some("gzip, deflate"), 100).unwrap(), b"x");
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_garbage_is_named() {
        let big = gzip(&vec![b'0'; 1 << 20]);
        assert!(big.len() < 2048);
        assert_eq!(decode(&big, Some("gzip"), 1000), Err(DecodeError::TooLarge));
        assert_eq!(
            decode(b"not gzip", Some("gzip"), 1000),
            Err(DecodeError::Corrupt("gzip"))
        );
        assert_eq!(
            decode(b"x", Some("zstd"), 1000),
            Err(DecodeError::Unsupported("zstd".into()))
        );
    }
}
