//! Ports and zones: plain decimal 16-bit numbers.

pub fn parse_port(s: &str) -> Result<u16, String> {
    if !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && let Ok(p) = s.parse()
    {
        return Ok(p);
    }
    Err(format!("`{s}` is not a port (0-65535)"))
}

pub fn parse_zone(s: &str) -> Result<u16, String> {
    if !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && let Ok(z) = s.parse()
    {
        return Ok(z);
    }
    Err(format!("`{s}` is not a zone (0-65535)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_zones() {
        assert_eq!(parse_port("443").unwrap(), 443);
        assert!(parse_port("65536").unwrap_err().contains("`65536`"));
        assert!(parse_port("+1").is_err());
        assert_eq!(parse_zone("10").unwrap(), 10);
        assert!(parse_zone("x").is_err());
    }
}
