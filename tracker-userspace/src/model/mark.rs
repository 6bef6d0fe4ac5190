//! Conntrack marks.

use std::str::FromStr;

/// A conntrack mark match: `mark & mask == value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkMask {
    pub value: u32,
    pub mask: u32,
}

impl MarkMask {
    pub fn matches(&self, mark: u32) -> bool {
        mark & self.mask == self.value
    }
}

impl FromStr for MarkMask {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (v, m) = match s.split_once('/') {
            Some((v, m)) => (v, Some(m)),
            None => (s, None),
        };
        let value = parse_u32_auto(v).ok_or_else(|| {
            format!("`{v}` is not a 32-bit mark (decimal or 0x hex, e.g. 16 or 0x10)")
        })?;
        let mask = match m {
            None => u32::MAX,
            Some(m) => parse_u32_auto(m)
                .ok_or_else(|| format!("mask `{m}` is not a 32-bit number (decimal or 0x hex)"))?,
        };
        if value & !mask != 0 {
            return Err(format!(
                "value {value:#x} has bits outside mask {mask:#x}: it can never match"
            ));
        }
        Ok(MarkMask { value, mask })
    }
}

/// Decimal or `0x` hexadecimal.
fn parse_u32_auto(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() {
            return None;
        }
        u32::from_str_radix(hex, 16).ok()
    } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_values() {
        assert_eq!(
            "16".parse::<MarkMask>().unwrap(),
            MarkMask {
                value: 16,
                mask: u32::MAX
            }
        );
        assert_eq!(
            "0x10/0xf0".parse::<MarkMask>().unwrap(),
            MarkMask {
                value: 0x10,
                mask: 0xf0
            }
        );
        assert_eq!(
            "0".parse::<MarkMask>().unwrap(),
            MarkMask {
                value: 0,
                mask: u32::MAX
            }
        );
        assert_eq!(
            "0/0".parse::<MarkMask>().unwrap(),
            MarkMask { value: 0, mask: 0 }
        );
        assert_eq!(
            "4294967295".parse::<MarkMask>().unwrap(),
            MarkMask {
                value: u32::MAX,
                mask: u32::MAX
            }
        );
        assert!("4294967296".parse::<MarkMask>().is_err());
        assert!("0x".parse::<MarkMask>().is_err());
        assert!("-1".parse::<MarkMask>().is_err());
        assert!("abc".parse::<MarkMask>().unwrap_err().contains("`abc`"));
        assert!("1/zz".parse::<MarkMask>().unwrap_err().contains("`zz`"));
        assert!(
            "0x11/0xf0"
                .parse::<MarkMask>()
                .unwrap_err()
                .contains("never match")
        );
    }
}
