//! The few DER shapes Symbolon writes and reads by itself (encrypted PKCS#8).
//! Certificates, CSRs and CRLs go through rcgen and x509-parser instead.

pub const SEQUENCE: u8 = 0x30;
pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;

/// Encodes one TLV.
pub fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

pub fn uint(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut v = bytes[skip..].to_vec();
    if v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    tlv(INTEGER, &v)
}

/// Encodes an OID given in dotted-decimal form (all arcs we use fit in u64).
pub fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap_or(0)).collect();
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &arc in &arcs[2..] {
        let mut chunk = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            chunk.insert(0, 0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        body.extend(chunk);
    }
    tlv(OID, &body)
}

/// A cursor over DER input; every read checks tag and length and fails
/// with `None` rather than panicking on truncated or hostile input.
#[derive(Debug)]
pub struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Reader { input }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// Reads one TLV and returns (tag, value).
    pub fn any(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.input.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            first as usize
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | b as usize;
            }
            if len < 0x80 {
                return None; // not minimal: DER forbids it
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return None;
        }
        let (value, tail) = rest.split_at(len);
        self.input = tail;
        Some((tag, value))
    }

    pub fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.any()? {
            (t, v) if t == tag => Some(v),
            _ => None,
        }
    }

    pub fn uint(&mut self) -> Option<u64> {
        let v = self.expect(INTEGER)?;
        if v.is_empty() || v[0] & 0x80 != 0 || v.len() > 9 {
            return None;
        }
        let mut n: u64 = 0;
        for &b in v {
            n = n.checked_mul(256)? | b as u64;
        }
        Some(n)
    }

    /// Peeks at the next tag without consuming it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.input.first().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_lengths_and_integers() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let enc = tlv(OCTET_STRING, &vec![7u8; len]);
            let mut r = Reader::new(&enc);
            assert_eq!(r.expect(OCTET_STRING).unwrap().len(), len);
            assert!(r.is_empty());
        }
        for n in [0u64, 1, 127, 128, 600_000, u64::MAX] {
            let enc = uint(n);
            assert_eq!(Reader::new(&enc).uint(), Some(n));
        }
        // PBKDF2 OID, as openssl writes it
        assert_eq!(
            oid("1.2.840.113549.1.5.12"),
            [6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 5, 12]
        );
    }

    #[test]
    fn truncated_input_is_refused() {
        let enc = seq(&[&uint(5), &tlv(OCTET_STRING, b"abc")]);
        for cut in 0..enc.len() {
            let mut r = Reader::new(&enc[..cut]);
            assert!(r.expect(SEQUENCE).is_none(), "cut at {cut}");
        }
        assert!(
            Reader::new(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5])
                .any()
                .is_none()
        );
    }
}
