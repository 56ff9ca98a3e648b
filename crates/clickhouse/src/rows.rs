//! Reading RowBinary answers: values one after another with no framing, so a row is
//! complete only when its last value is. [`Rows`] takes the answer in whatever pieces the
//! connection delivers and hands out whole rows; [`Cursor`] reads the values of one.

/// Reads values from RowBinary bytes; every read is `None` when the bytes end first.
pub struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// An unsigned LEB128 length.
    pub fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.take(1)?.first()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// A `String` (a length, then bytes that need not be UTF-8).
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        self.take(n)
    }

    /// A `String` as text (invalid UTF-8 replaced).
    pub fn string(&mut self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    pub fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_le_bytes)
    }

    pub fn f64(&mut self) -> Option<f64> {
        self.array().map(f64::from_le_bytes)
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

/// Rows of a streamed answer: [`Rows::feed`] each piece, [`Rows::finish`] at the end.
#[derive(Default)]
pub struct Rows {
    pending: Vec<u8>,
    /// Rows decoded so far.
    pub count: u64,
}

impl Rows {
    /// Decodes every row that `chunk` completes with `row`, which reads one row's values
    /// (`None`: the row is not all here yet), and gives each to `sink`.
    pub fn feed<T>(
        &mut self,
        chunk: &[u8],
        row: impl Fn(&mut Cursor) -> Option<T>,
        mut sink: impl FnMut(T),
    ) {
        self.pending.extend_from_slice(chunk);
        let mut done = 0;
        loop {
            let mut c = Cursor::new(&self.pending[done..]);
            match row(&mut c) {
                Some(r) if c.position() > 0 => {
                    done += c.position();
                    self.count += 1;
                    sink(r);
                }
                _ => break,
            }
        }
        self.pending.drain(..done);
    }

    /// Fails when the answer ended inside a row.
    pub fn finish(&self) -> Result<(), String> {
        if self.pending.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the answer ended inside a row ({} bytes after row {})",
                self.pending.len(),
                self.count
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(c: &mut Cursor) -> Option<(String, i64, f64)> {
        Some((c.string()?, c.i64()?, c.f64()?))
    }

    #[test]
    fn rows_split_anywhere_come_out_whole() {
        let mut bytes = Vec::new();
        let want: Vec<(String, i64, f64)> = (0..50)
            .map(|i| {
                (
                    "u".repeat(i * 7),
                    -(i as i64) * 1_000_000_007,
                    i as f64 / 3.0,
                )
            })
            .collect();
        for (s, i, f) in &want {
            let mut n = s.len();
            loop {
                let b = (n & 0x7f) as u8;
                n >>= 7;
                bytes.push(if n > 0 { b | 0x80 } else { b });
                if n == 0 {
                    break;
                }
            }
            bytes.extend_from_slice(s.as_bytes());
            bytes.extend_from_slice(&i.to_le_bytes());
            bytes.extend_from_slice(&f.to_le_bytes());
        }
        for piece in [1, 3, 17, 1000, bytes.len()] {
            let mut rows = Rows::default();
            let mut got = Vec::new();
            for chunk in bytes.chunks(piece) {
                rows.feed(chunk, row, |r| got.push(r));
            }
            rows.finish().unwrap();
            assert_eq!(got, want, "pieces of {piece} bytes");
        }
        let mut rows = Rows::default();
        rows.feed(&bytes[..bytes.len() - 1], row, drop);
        assert!(rows.finish().unwrap_err().contains("ended inside a row"));
    }
}
