//! The protobuf wire format, read without copying: varints, fixed 32/64-bit values and
//! length-delimited bytes, each with its field number.

#[derive(Debug, Clone, Copy)]
pub enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn varint(&mut self) -> Result<u64, &'static str> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or("truncated varint")?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long")
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.buf.len() {
            return Err("truncated field");
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next (field number, value), or `None` at the end.
    pub fn next_field(&mut self) -> Result<Option<(u64, WireValue<'a>)>, &'static str> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = key >> 3;
        if tag == 0 {
            return Err("field number 0");
        }
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().map_err(|_| "fixed64")?,
            )),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                WireValue::Bytes(self.take(len)?)
            }
            5 => WireValue::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().map_err(|_| "fixed32")?,
            )),
            _ => return Err("unsupported wire type"),
        };
        Ok(Some((tag, value)))
    }
}
