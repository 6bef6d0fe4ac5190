//! Sizes in bytes: the eBPF ring and the netlink socket buffer.

/// A size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// `1234`, `64K`, `16M`, `1G` (also `KiB`/`MiB`/`GiB`); binary multiples.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("`{s}` is not a size: use bytes or a K, M or G suffix (e.g. 16M)");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

fn check_ring_size(bytes: u64, page: u64) -> Result<ByteSize, String> {
    if bytes == 0 || !bytes.is_power_of_two() || !bytes.is_multiple_of(page) {
        return Err(format!(
            "{bytes} bytes is not a power of two multiple of the page size ({page})"
        ));
    }
    if bytes > 1 << 31 {
        return Err(format!(
            "{bytes} bytes is larger than the kernel's 2G ring limit"
        ));
    }
    Ok(ByteSize(bytes))
}

pub fn parse_ring_size(s: &str) -> Result<ByteSize, String> {
    check_ring_size(parse_bytes(s)?, page_size())
}

pub fn parse_buffer_size(s: &str) -> Result<ByteSize, String> {
    let n = parse_bytes(s)?;
    if n == 0 || n > i32::MAX as u64 {
        return Err(format!("`{s}` must be between 1 byte and 2G"));
    }
    Ok(ByteSize(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("16M").unwrap(), 16 << 20);
        assert_eq!(parse_bytes("64k").unwrap(), 64 << 10);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert!(parse_bytes("16Q").unwrap_err().contains("`16Q`"));
        assert!(parse_bytes("M").is_err());
        assert_eq!(check_ring_size(16 << 20, 4096).unwrap(), ByteSize(16 << 20));
        assert!(check_ring_size(3 << 20, 4096).is_err());
        assert!(check_ring_size(2048, 4096).is_err());
        assert!(check_ring_size(0, 4096).is_err());
        assert!(check_ring_size(64 << 10, 65536).is_ok());
        assert!(check_ring_size(4 << 30, 4096).is_err());
        assert_eq!(parse_ring_size("16M").unwrap(), ByteSize(16 << 20));
        assert!(parse_buffer_size("0").is_err());
        assert_eq!(parse_buffer_size("208K").unwrap(), ByteSize(208 << 10));
    }
}
