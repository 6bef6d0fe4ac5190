//! Lengths of time.

use std::str::FromStr;
use std::time::Duration;

/// A length of time given as `500ms`, `10s`, `2m`, `1h` or plain seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationArg(pub Duration);

impl FromStr for DurationArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad = || format!("`{s}` is not a duration: use e.g. 500ms, 10s, 2m or 1h");
        let n: u64 = num.parse().map_err(|_| bad())?;
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "" | "s" => Duration::from_secs(n),
            "m" | "min" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        Ok(DurationArg(d))
    }
}

/// A duration that must not be zero (a refresh period).
pub fn parse_interval(s: &str) -> Result<DurationArg, String> {
    let d: DurationArg = s.parse()?;
    if d.0.is_zero() {
        return Err(format!("interval `{s}` must be longer than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            "500ms".parse::<DurationArg>().unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            "10s".parse::<DurationArg>().unwrap().0,
            Duration::from_secs(10)
        );
        assert_eq!(
            "10".parse::<DurationArg>().unwrap().0,
            Duration::from_secs(10)
        );
        assert_eq!(
            "2m".parse::<DurationArg>().unwrap().0,
            Duration::from_secs(120)
        );
        assert_eq!(
            "1h".parse::<DurationArg>().unwrap().0,
            Duration::from_secs(3600)
        );
        assert!(
            "1.5s"
                .parse::<DurationArg>()
                .unwrap_err()
                .contains("`1.5s`")
        );
        assert!("s".parse::<DurationArg>().is_err());
        assert!("10x".parse::<DurationArg>().is_err());
        assert!(parse_interval("0s").unwrap_err().contains("`0s`"));
    }
}
