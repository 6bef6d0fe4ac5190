//! Command line: `tracker [GLOBAL] <COMMAND>`.
//!
//! Every value that can be wrong (address, CIDR, mark, protocol, interval,
//! size) has its own value parser, so clap rejects it with one line that names
//! the bad value and exits with code 2 before anything is loaded.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::OutputFormat;

const MAIN_EXAMPLES: &str = "\
Examples:
  tracker events                          # like `conntrack -E`
  tracker events -e NEW,DESTROY -p tcp     # TCP creations and deletions
  tracker events -o json --count 100       # 100 events as JSON lines
  tracker counts --watch 2s                # live connections per mark
  tracker --source netlink events          # use ctnetlink instead of eBPF";

const EVENTS_EXAMPLES: &str = "\
Examples:
  tracker events -e NEW -p udp --dport 53
  tracker events -s 10.0.0.0/8 -m 0x10/0xf0 -o extended,timestamp
  tracker events -f ipv6 -d 2001:db8::/32 -o json --duration 30s
  tracker events -j -e DESTROY --all-netns
  tracker events -e ALL --set-nf-conntrack-events -p tcp --dport 443

Filters combine with AND, like conntrack -E. Unlike conntrack, `-m 0` matches
connections whose mark is 0 (conntrack only matches events that carry a mark
attribute, which the kernel omits for mark 0).";

const COUNTS_EXAMPLES: &str = "\
Examples:
  tracker counts
  tracker counts --watch            # refresh every second
  tracker counts --watch 5s -o json
  tracker counts --mark 0x100/0xff00 --netns /run/netns/blue";

#[derive(Debug, Parser)]
#[command(
    name = "tracker",
    version,
    about = "conntrack flow tracker: conntrack -E compatible events, JSON and live per-mark counts",
    after_help = MAIN_EXAMPLES
)]
pub struct Cli {
    /// Where events come from: the eBPF hooks, ctnetlink, or eBPF with a
    /// netlink fallback (e.g. --source netlink).
    #[arg(long, global = true, help_heading = "Global options", value_enum, default_value_t = SourceKind::Auto)]
    pub source: SourceKind,

    /// How the eBPF programs attach: fentry/fexit, kprobes, or the best the
    /// kernel allows (e.g. --hook kprobe).
    #[arg(long, global = true, help_heading = "Global options", value_enum, default_value_t = HookKind::Auto)]
    pub hook: HookKind,

    /// Size of the eBPF ring buffer: a power of two and a multiple of the page
    /// size; K and M suffixes are binary (e.g. --ring-size 64M).
    #[arg(long, global = true, help_heading = "Global options", value_name = "BYTES", default_value = "16M",
          value_parser = parse_ring_size)]
    pub ring_size: ByteSize,

    /// More log output on stderr; repeat for more (e.g. -vv).
    #[arg(short, long, global = true, help_heading = "Global options", action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SourceKind {
    Auto,
    Ebpf,
    Netlink,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HookKind {
    Auto,
    Fentry,
    Kprobe,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print connection tracking events, like `conntrack -E`.
    #[command(after_help = EVENTS_EXAMPLES)]
    Events(EventsArgs),
    /// Show live connection counts per conntrack mark.
    #[command(after_help = COUNTS_EXAMPLES)]
    Counts(CountsArgs),
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Event kinds, comma separated, case-insensitive, prefixes allowed
    /// (e.g. -e NEW,DESTROY; -e ALL). Default: ALL with the netlink source;
    /// NEW,DESTROY with the eBPF source, where UPDATE is opt-in (-e ALL or
    /// -e UPDATE): it adds a kprobe run per change the kernel reports (6 per
    /// TCP connect/close measured, 2-3 per UDP flow with replies) and needs
    /// the kernel's event cache, see --set-nf-conntrack-events.
    #[arg(short = 'e', long = "event-mask", visible_alias = "events", value_name = "KINDS",
          value_parser = parse_event_kinds)]
    pub event_mask: Option<EventKinds>,

    /// With UPDATE on the eBPF source: set net.netfilter.nf_conntrack_events
    /// to 1 in the watched namespace for this run, and restore its value on
    /// exit. The kernel only collects UPDATE events for connections created
    /// while it is 1 (or 2 with a ctnetlink listener, e.g. conntrack -E).
    #[arg(long = "set-nf-conntrack-events")]
    pub set_nf_conntrack_events: bool,

    /// Output format, comma separated: extended, timestamp, json
    /// (e.g. -o extended,timestamp).
    #[arg(short = 'o', long = "output", value_name = "FORMAT",
          default_value = "default", value_parser = parse_output_format)]
    pub output: OutputFormat,

    /// Layer-4 protocol, by name or number (e.g. -p tcp; -p 47).
    #[arg(short = 'p', long = "proto", value_name = "PROTO", value_parser = parse_protocol)]
    pub proto: Option<Protocol>,

    /// Original source address or network (e.g. -s 10.0.0.0/8; -s 2001:db8::1).
    #[arg(short = 's', long = "src", visible_alias = "orig-src", value_name = "ADDR[/LEN]",
          value_parser = parse_cidr)]
    pub src: Option<Cidr>,

    /// Original destination address or network (e.g. -d 192.0.2.1).
    #[arg(short = 'd', long = "dst", visible_alias = "orig-dst", value_name = "ADDR[/LEN]",
          value_parser = parse_cidr)]
    pub dst: Option<Cidr>,

    /// Reply source address or network (e.g. -r 10.1.0.0/16).
    #[arg(short = 'r', long = "reply-src", value_name = "ADDR[/LEN]", value_parser = parse_cidr)]
    pub reply_src: Option<Cidr>,

    /// Reply destination address or network, the address a source NAT
    /// rewrote to (e.g. -q 198.51.100.7).
    #[arg(short = 'q', long = "reply-dst", value_name = "ADDR[/LEN]", value_parser = parse_cidr)]
    pub reply_dst: Option<Cidr>,

    /// Original source port (e.g. --sport 40000).
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    pub sport: Option<u16>,

    /// Original destination port (e.g. --dport 443).
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    pub dport: Option<u16>,

    /// Conntrack mark, decimal or 0x hex, with an optional mask; matches when
    /// mark & MASK == VALUE (e.g. -m 0x10/0xf0). -m 0 matches mark 0.
    #[arg(short = 'm', long = "mark", value_name = "VALUE[/MASK]", value_parser = parse_mark)]
    pub mark: Option<MarkMask>,

    /// Conntrack zone (e.g. -w 10).
    #[arg(short = 'w', long = "zone", value_name = "ZONE", value_parser = parse_zone)]
    pub zone: Option<u16>,

    /// Address family (e.g. -f ipv6).
    #[arg(short = 'f', long = "family", value_enum, value_name = "FAMILY")]
    pub family: Option<Family>,

    /// Only source-NATed connections (e.g. -n).
    #[arg(short = 'n', long = "src-nat")]
    pub src_nat: bool,

    /// Only destination-NATed connections (e.g. -g).
    #[arg(short = 'g', long = "dst-nat")]
    pub dst_nat: bool,

    /// Only connections with any NAT (e.g. -j).
    #[arg(short = 'j', long = "any-nat")]
    pub any_nat: bool,

    /// Stop after N printed events (e.g. --count 10).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,

    /// Stop after this long; units ms, s, m, h (e.g. --duration 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<DurationArg>,

    #[command(flatten)]
    pub netns: NetnsArgs,

    /// Netlink socket receive buffer for --source netlink, like conntrack -b;
    /// K and M suffixes (e.g. --buffer-size 8M).
    #[arg(short = 'b', long = "buffer-size", value_name = "BYTES", value_parser = parse_buffer_size)]
    pub buffer_size: Option<ByteSize>,
}

#[derive(Debug, Args)]
pub struct CountsArgs {
    /// Output format: text (table) or json (one object per refresh)
    /// (e.g. -o json).
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT",
          default_value_t = CountsFormat::Text)]
    pub output: CountsFormat,

    /// Refresh until interrupted, every INTERVAL (default 1s)
    /// (e.g. --watch 500ms).
    #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "1s",
          value_parser = parse_interval)]
    pub watch: Option<DurationArg>,

    /// Only marks with mark & MASK == VALUE (e.g. --mark 0x100/0xff00).
    #[arg(short = 'm', long = "mark", value_name = "VALUE[/MASK]", value_parser = parse_mark)]
    pub mark: Option<MarkMask>,

    #[command(flatten)]
    pub netns: NetnsArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CountsFormat {
    Text,
    Json,
}

#[derive(Debug, Default, Args)]
pub struct NetnsArgs {
    /// Network namespace by inode number or path; default: the current one
    /// (e.g. --netns /run/netns/blue; --netns 4026532456).
    #[arg(long, value_name = "INODE|PATH", value_parser = parse_netns, conflicts_with = "all_netns")]
    pub netns: Option<NetnsArg>,

    /// All network namespaces (eBPF source only) (e.g. --all-netns).
    #[arg(long)]
    pub all_netns: bool,
}

/// Which namespaces a command looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetnsSelection {
    Current,
    One(NetnsArg),
    All,
}

impl NetnsArgs {
    pub fn selection(&self) -> NetnsSelection {
        match (&self.netns, self.all_netns) {
            (_, true) => NetnsSelection::All,
            (Some(n), false) => NetnsSelection::One(n.clone()),
            (None, false) => NetnsSelection::Current,
        }
    }
}

/// Parses the process arguments; exits with code 2 on a usage error.
pub fn parse() -> Cli {
    Cli::parse()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    /// `AF_INET` / `AF_INET6`.
    pub fn l3proto(self) -> u8 {
        match self {
            Family::Ipv4 => libc::AF_INET as u8,
            Family::Ipv6 => libc::AF_INET6 as u8,
        }
    }

    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
}

/// An address with a prefix length; a plain address has the full length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    pub fn family(&self) -> Family {
        Family::of(&self.addr)
    }

    /// True when `ip` is of the same family and inside the network.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = prefix_mask_u32(self.prefix_len);
                u32::from(net) & mask == u32::from(*ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = prefix_mask_u128(self.prefix_len);
                u128::from(net) & mask == u128::from(*ip) & mask
            }
            _ => false,
        }
    }
}

fn prefix_mask_u32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn prefix_mask_u128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr_s, len_s) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr_s
            .parse()
            .map_err(|_| format!("`{addr_s}` is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len_s {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max && l.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(format!(
                        "prefix length `{l}` is not a number from 0 to {max}"
                    ));
                }
            },
        };
        Ok(Cidr { addr, prefix_len })
    }
}

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

/// A layer-4 protocol by IP protocol number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocol(pub u8);

/// Names conntrack knows (its protocol extensions), with their numbers.
pub const PROTOCOL_NAMES: &[(&str, u8)] = &[
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("icmp", 1),
    ("icmpv6", 58),
    ("sctp", 132),
    ("gre", 47),
    ("dccp", 33),
];

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "ipv6-icmp" => "icmpv6",
            other => other,
        };
        if let Some((_, n)) = PROTOCOL_NAMES.iter().find(|(name, _)| *name == alias) {
            return Ok(Protocol(*n));
        }
        if !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = s.parse::<u8>()
        {
            return Ok(Protocol(n));
        }
        Err(format!(
            "`{s}` is not a protocol: use tcp, udp, udplite, icmp, icmpv6, sctp, gre, dccp or a number 0-255"
        ))
    }
}

/// Which event kinds to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventKinds {
    pub new: bool,
    pub update: bool,
    pub destroy: bool,
}

impl EventKinds {
    pub const ALL: EventKinds = EventKinds {
        new: true,
        update: true,
        destroy: true,
    };
}

impl Default for EventKinds {
    fn default() -> Self {
        Self::ALL
    }
}

impl FromStr for EventKinds {
    type Err = String;

    /// Like conntrack's `-e`: comma list of ALL, NEW, UPDATES, DESTROY; each
    /// item a case-insensitive prefix (NEW, UPDATE, UPD, D are fine).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut kinds = EventKinds {
            new: false,
            update: false,
            destroy: false,
        };
        for item in s.split(',') {
            let up = item.trim().to_ascii_uppercase();
            let is = |full: &str| !up.is_empty() && full.starts_with(&up);
            if is("ALL") {
                kinds = EventKinds::ALL;
            } else if is("NEW") {
                kinds.new = true;
            } else if is("UPDATES") {
                kinds.update = true;
            } else if is("DESTROY") {
                kinds.destroy = true;
            } else {
                return Err(format!(
                    "`{item}` is not an event kind: use NEW, UPDATE, DESTROY or ALL, comma separated"
                ));
            }
        }
        Ok(kinds)
    }
}

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

pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    s.parse()
}

pub fn parse_mark(s: &str) -> Result<MarkMask, String> {
    s.parse()
}

pub fn parse_protocol(s: &str) -> Result<Protocol, String> {
    s.parse()
}

pub fn parse_event_kinds(s: &str) -> Result<EventKinds, String> {
    s.parse()
}

pub fn parse_output_format(s: &str) -> Result<OutputFormat, String> {
    s.parse()
}

pub fn parse_duration(s: &str) -> Result<DurationArg, String> {
    s.parse()
}

/// A duration that must not be zero (a refresh period).
pub fn parse_interval(s: &str) -> Result<DurationArg, String> {
    let d: DurationArg = s.parse()?;
    if d.0.is_zero() {
        return Err(format!("interval `{s}` must be longer than zero"));
    }
    Ok(d)
}

pub fn parse_netns(s: &str) -> Result<NetnsArg, String> {
    s.parse()
}

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
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn cidr_plain_and_prefixed() {
        let c: Cidr = "10.1.2.3".parse().unwrap();
        assert_eq!(c.prefix_len, 32);
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(&"10.255.0.1".parse().unwrap()));
        assert!(!c.contains(&"11.0.0.1".parse().unwrap()));
        assert!(!c.contains(&"::ffff:10.0.0.1".parse().unwrap()));
        let c: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(c.contains(&"2001:db8:ffff::1".parse().unwrap()));
        assert!(!c.contains(&"2001:db9::1".parse().unwrap()));
        let c: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(c.contains(&"1.2.3.4".parse().unwrap()));
        let c: Cidr = "::/0".parse().unwrap();
        assert!(c.contains(&"fe80::1".parse().unwrap()));
        let c: Cidr = "fe80::1/128".parse().unwrap();
        assert!(c.contains(&"fe80::1".parse().unwrap()));
        assert!(!c.contains(&"fe80::2".parse().unwrap()));
    }

    #[test]
    fn cidr_errors_name_the_value() {
        let e = "10.0.0/8".parse::<Cidr>().unwrap_err();
        assert!(e.contains("`10.0.0`"), "{e}");
        let e = "10.0.0.0/33".parse::<Cidr>().unwrap_err();
        assert!(e.contains("`33`") && e.contains("32"), "{e}");
        let e = "::1/129".parse::<Cidr>().unwrap_err();
        assert!(e.contains("`129`"), "{e}");
        assert!("10.0.0.0/".parse::<Cidr>().is_err());
        assert!("10.0.0.0/+8".parse::<Cidr>().is_err());
        assert!("host.example".parse::<Cidr>().is_err());
    }

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

    #[test]
    fn protocols() {
        assert_eq!("tcp".parse::<Protocol>().unwrap(), Protocol(6));
        assert_eq!("UDP".parse::<Protocol>().unwrap(), Protocol(17));
        assert_eq!("ipv6-icmp".parse::<Protocol>().unwrap(), Protocol(58));
        assert_eq!("47".parse::<Protocol>().unwrap(), Protocol(47));
        assert_eq!("0".parse::<Protocol>().unwrap(), Protocol(0));
        assert!("256".parse::<Protocol>().is_err());
        assert!("tcpx".parse::<Protocol>().unwrap_err().contains("`tcpx`"));
        assert_eq!("SCTP".parse::<Protocol>().unwrap(), Protocol(132));
    }

    #[test]
    fn event_kinds_like_conntrack() {
        let k: EventKinds = "NEW,UPDATES,DESTROY".parse().unwrap();
        assert_eq!(k, EventKinds::ALL);
        let k: EventKinds = "new,destroy".parse().unwrap();
        assert_eq!(
            k,
            EventKinds {
                new: true,
                update: false,
                destroy: true
            }
        );
        let k: EventKinds = "UPDATE".parse().unwrap();
        assert_eq!(
            k,
            EventKinds {
                new: false,
                update: true,
                destroy: false
            }
        );
        let k: EventKinds = "all".parse().unwrap();
        assert_eq!(k, EventKinds::ALL);
        let k: EventKinds = "d".parse().unwrap();
        assert_eq!(
            k,
            EventKinds {
                new: false,
                update: false,
                destroy: true
            }
        );
        assert!("NEWS".parse::<EventKinds>().unwrap_err().contains("`NEWS`"));
        assert!("NEW,".parse::<EventKinds>().is_err());
        assert!("".parse::<EventKinds>().is_err());
    }

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

    #[test]
    fn ports_and_zones() {
        assert_eq!(parse_port("443").unwrap(), 443);
        assert!(parse_port("65536").unwrap_err().contains("`65536`"));
        assert!(parse_port("+1").is_err());
        assert_eq!(parse_zone("10").unwrap(), 10);
        assert!(parse_zone("x").is_err());
    }

    #[test]
    fn full_command_lines() {
        let cli = Cli::try_parse_from([
            "tracker",
            "--source",
            "netlink",
            "-vv",
            "events",
            "-e",
            "NEW,DESTROY",
            "-p",
            "tcp",
            "-s",
            "10.0.0.0/8",
            "--dport",
            "443",
            "-m",
            "0x10/0xf0",
            "-o",
            "extended,timestamp",
            "--count",
            "5",
            "--duration",
            "10s",
            "--all-netns",
            "-b",
            "8M",
        ])
        .unwrap();
        assert_eq!(cli.source, SourceKind::Netlink);
        assert_eq!(cli.verbose, 2);
        assert_eq!(cli.ring_size, ByteSize(16 << 20));
        let Command::Events(a) = cli.command else {
            panic!("not events")
        };
        assert_eq!(
            a.event_mask,
            Some(EventKinds {
                new: true,
                update: false,
                destroy: true
            })
        );
        assert_eq!(a.proto, Some(Protocol(6)));
        assert_eq!(a.dport, Some(443));
        assert_eq!(a.netns.selection(), NetnsSelection::All);
        assert_eq!(a.buffer_size, Some(ByteSize(8 << 20)));
        assert_eq!(a.duration, Some(DurationArg(Duration::from_secs(10))));

        // Global options also after the subcommand.
        let cli =
            Cli::try_parse_from(["tracker", "counts", "--watch", "--hook", "kprobe"]).unwrap();
        assert_eq!(cli.hook, HookKind::Kprobe);
        let Command::Counts(c) = cli.command else {
            panic!("not counts")
        };
        assert_eq!(c.watch, Some(DurationArg(Duration::from_secs(1))));
        assert_eq!(c.netns.selection(), NetnsSelection::Current);

        let cli =
            Cli::try_parse_from(["tracker", "counts", "--watch", "250ms", "-o", "json"]).unwrap();
        let Command::Counts(c) = cli.command else {
            panic!("not counts")
        };
        assert_eq!(c.watch, Some(DurationArg(Duration::from_millis(250))));
        assert_eq!(c.output, CountsFormat::Json);
    }

    #[test]
    fn usage_errors_exit_2_and_name_the_value() {
        for (args, bad) in [
            (&["tracker", "events", "-s", "10.0.0.300"][..], "10.0.0.300"),
            (&["tracker", "events", "-m", "zz"], "zz"),
            (&["tracker", "events", "-p", "bogus"], "bogus"),
            (&["tracker", "--ring-size", "3M", "events"], "3M"),
            (&["tracker", "counts", "--watch", "0"], "0"),
            (&["tracker", "events", "-o", "xml"], "xml"),
            (
                &["tracker", "events", "--netns", "1", "--all-netns"],
                "--all-netns",
            ),
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            let msg = err.to_string();
            assert!(msg.contains(bad), "{args:?}: {msg}");
        }
    }
}
