//! Network namespaces.

use std::path::PathBuf;
use std::str::FromStr;

/// A network namespace given by inode number or by a path to open
/// (e.g. /run/netns/NAME or /proc/PID/ns/net).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetnsArg {
    Inode(u32),
    Path(PathBuf),
}

impl FromStr for NetnsArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty namespace: give an inode number or a path".into());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(NetnsArg::Inode)
                .map_err(|_| format!("`{s}` is not a namespace inode (a 32-bit number)"));
        }
        let path = PathBuf::from(s);
        if !path.exists() {
            return Err(format!(
                "`{s}` does not exist (give a namespace inode or a path)"
            ));
        }
        Ok(NetnsArg::Path(path))
    }
}

/// Which namespaces a command looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetnsSelection {
    Current,
    One(NetnsArg),
    All,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_values() {
        assert_eq!(
            "4026531840".parse::<NetnsArg>().unwrap(),
            NetnsArg::Inode(4026531840)
        );
        assert_eq!(
            "/proc/self/ns/net".parse::<NetnsArg>().unwrap(),
            NetnsArg::Path("/proc/self/ns/net".into())
        );
        assert!(
            "/nonexistent/ns"
                .parse::<NetnsArg>()
                .unwrap_err()
                .contains("/nonexistent/ns")
        );
        assert!("99999999999".parse::<NetnsArg>().is_err());
    }
}
