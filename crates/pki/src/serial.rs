use std::fmt;

/// A certificate serial number: a positive integer, kept as its big-endian
/// magnitude without leading zeros and shown as lower-case hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// 128 random bits from the system CSPRNG (CA/B Forum asks for at least
    /// 64; 128 makes collisions and prediction irrelevant). Encoded as a
    /// positive INTEGER this takes at most 17 of the 20 octets RFC 5280 allows.
    pub fn random() -> Serial {
        let mut bytes = [0u8; 16];
        loop {
            // `fill` only fails when the OS has no entropy source, which
            // leaves no safe way to issue at all.
            aws_lc_rs::rand::fill(&mut bytes).expect("the system random number generator failed");
            if bytes.iter().any(|b| *b != 0) {
                return Serial::from_be_bytes(&bytes);
            }
        }
    }

    /// From the content octets of a DER INTEGER (or any big-endian bytes).
    pub fn from_be_bytes(bytes: &[u8]) -> Serial {
        let start = bytes.iter().take_while(|b| **b == 0).count();
        Serial(bytes[start..].to_vec())
    }

    /// Parses hex as printed by Symbolon or OpenSSL (`3F:A1…`, `0x3fa1…`).
    pub fn parse_hex(s: &str) -> Result<Serial, String> {
        let cleaned: String = s
            .trim()
            .trim_start_matches("0x")
            .chars()
            .filter(|c| *c != ':')
            .collect();
        if cleaned.is_empty()
            || cleaned.len() > 40
            || !cleaned.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(format!(
                "invalid serial {s:?}; give it in hex as `symbolon ca list` prints it"
            ));
        }
        let padded = if cleaned.len() % 2 == 1 {
            format!("0{cleaned}")
        } else {
            cleaned
        };
        let bytes: Vec<u8> = (0..padded.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).unwrap_or(0))
            .collect();
        Ok(Serial::from_be_bytes(&bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        if self.0.is_empty() {
            return "00".to_string();
        }
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn to_rcgen(&self) -> rcgen::SerialNumber {
        rcgen::SerialNumber::from_slice(&self.0)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_serials_differ_and_fit_rfc5280() {
        let a = Serial::random();
        let b = Serial::random();
        assert_ne!(a, b);
        assert!(a.as_bytes().len() <= 16 && !a.as_bytes().is_empty());
    }

    #[test]
    fn hex_round_trips_in_openssl_form() {
        let s = Serial::parse_hex("00:3F:a1").unwrap();
        assert_eq!(s.to_hex(), "3fa1");
        assert_eq!(Serial::parse_hex("0x3fa1").unwrap(), s);
        assert_eq!(Serial::parse_hex("fa1").unwrap().to_hex(), "0fa1");
        assert!(Serial::parse_hex("xyz").is_err());
        assert!(Serial::parse_hex("").is_err());
    }
}
