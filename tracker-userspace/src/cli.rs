//! Command line: `tracker [GLOBAL] <COMMAND>`.
//!
//! Every value that can be wrong (address, CIDR, mark, protocol, interval,
//! size) has its own value parser, so clap rejects it with one line that names
//! the bad value and exits with code 2 before anything is loaded.
//! The values and their parsing live in [`crate::model`]; this module only
//! says which option takes which.

mod filters;

use std::str::FromStr;

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::{
    ByteSize, DurationArg, EventKinds, Family, MarkMask, NetnsArg, NetnsSelection, duration, size,
};
use crate::output::OutputFormat;
use crate::source::ebpf::hooks::HookMode;

pub use filters::FilterArgs;

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
  tracker events --state ESTABLISHED --dport 22
  tracker events -s 10.0.0.0/8 -m 0x10/0xf0 -o extended,timestamp
  tracker events -f ipv6 -d 2001:db8::/32 -o json --duration 30s
  tracker events -j -e DESTROY --all-netns
  tracker events -e ALL --set-nf-conntrack-events -p tcp --dport 443

Filters combine with AND, like conntrack -E. Unlike conntrack, `-m 0` matches
connections whose mark is 0 (conntrack only matches events that carry a mark
attribute, which the kernel omits for mark 0), and --state takes a list and
implies -p tcp (conntrack takes one state, after -p tcp).";

const COUNTS_EXAMPLES: &str = "\
Examples:
  tracker counts
  tracker counts --watch            # refresh every second
  tracker counts --watch 5s -o json
  tracker counts --mark 0x100/0xff00 --netns /run/netns/blue";

const SERVE_EXAMPLES: &str = "\
Examples:
  tracker serve                                  # metrics on http://127.0.0.1:10260/metrics
  tracker serve --set-nf-conntrack-acct          # per-mark bytes and packets too
  tracker serve --events-json /var/log/tracker/events.json
  tracker serve --events-json /var/log/tracker/dns.json -e ALL -p udp --dport 53
  tracker serve --listen [::]:10260 --max-marks 64";

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
    #[arg(long, global = true, help_heading = "Global options", value_enum, default_value_t = HookMode::Auto)]
    pub hook: HookMode,

    /// Size of the eBPF ring buffer: a power of two and a multiple of the page
    /// size; K and M suffixes are binary (e.g. --ring-size 64M).
    #[arg(long, global = true, help_heading = "Global options", value_name = "BYTES", default_value = "16M",
          value_parser = size::parse_ring_size)]
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print connection tracking events, like `conntrack -E`.
    #[command(after_help = EVENTS_EXAMPLES)]
    // Boxed: the events options are most of the command line's size.
    Events(Box<EventsArgs>),
    /// Show live connection counts per conntrack mark.
    #[command(after_help = COUNTS_EXAMPLES)]
    Counts(CountsArgs),
    /// Run as a service: Prometheus metrics (live connections per mark,
    /// closed flows with their bytes and packets per mark, events) on
    /// GET /metrics, read from kernel maps at each scrape.
    #[command(after_help = SERVE_EXAMPLES)]
    // Boxed, as events: it takes the events filters too (a `//` comment:
    // clap would show a doc comment in the help).
    Serve(Box<ServeArgs>),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port of the metrics endpoint; loopback unless asked
    /// (e.g. --listen 0.0.0.0:10260; --listen [::1]:9999).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:10260",
          value_parser = parse_listen)]
    pub listen: std::net::SocketAddr,

    /// Most distinct marks reported with a label of their own; further
    /// marks are folded into mark="other" (e.g. --max-marks 64).
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_marks: u32,

    /// Also write every event as JSON lines (the schema of `events -o
    /// json`) to PATH, appending; reopened on SIGHUP for log rotation
    /// (e.g. --events-json /var/log/tracker/events.json).
    #[arg(long, value_name = "PATH")]
    pub events_json: Option<std::path::PathBuf>,

    /// Event kinds written to --events-json (e.g. -e NEW,DESTROY; -e ALL);
    /// default NEW,DESTROY (UPDATE adds a hook run per change, see `events`).
    #[arg(short = 'e', long = "event-mask", value_name = "KINDS",
          value_parser = EventKinds::from_str)]
    pub event_mask: Option<EventKinds>,

    /// Set net.netfilter.nf_conntrack_acct to 1 in the watched namespace
    /// for the run (restored on exit): per-mark bytes and packets of closed
    /// flows need it, for connections created from then on.
    #[arg(long = "set-nf-conntrack-acct")]
    pub set_nf_conntrack_acct: bool,

    /// With UPDATE in --event-mask: set net.netfilter.nf_conntrack_events
    /// to 1 for the run, as `events --set-nf-conntrack-events` does.
    #[arg(long = "set-nf-conntrack-events")]
    pub set_nf_conntrack_events: bool,

    #[command(flatten)]
    pub netns: NetnsArgs,

    /// The filters of `tracker events`, for what goes to --events-json
    /// only: the metrics count every connection whatever they say. Last:
    /// the help heading it sets holds for every option after it.
    #[command(flatten, next_help_heading = "Filters of --events-json")]
    pub filter: FilterArgs,
}

/// `ADDR:PORT`, with IPv6 addresses in brackets.
fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse().map_err(|_| {
        format!(
            "expected ADDR:PORT with a numeric address, e.g. 127.0.0.1:10260 or [::1]:10260; \
             got {s:?}"
        )
    })
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
          value_parser = EventKinds::from_str)]
    pub event_mask: Option<EventKinds>,

    /// With UPDATE on the eBPF source: set net.netfilter.nf_conntrack_events
    /// to 1 in the watched namespace for this run, and restore its value on
    /// exit. The kernel only collects UPDATE events for connections created
    /// while it is 1 (or 2 with a ctnetlink listener, e.g. conntrack -E).
    #[arg(long = "set-nf-conntrack-events")]
    pub set_nf_conntrack_events: bool,

    /// Output format, comma separated: extended, timestamp, id (the
    /// kernel's conntrack id; netlink source only), ktimestamp (start and
    /// stop on DESTROY), userspace (no effect, as in conntrack 1.4.7), or
    /// json alone (e.g. -o extended,timestamp; -o id).
    #[arg(short = 'o', long = "output", value_name = "FORMAT",
          default_value = "default", value_parser = OutputFormat::from_str)]
    pub output: OutputFormat,

    #[command(flatten)]
    pub filter: FilterArgs,

    /// Stop after N printed events (e.g. --count 10).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,

    /// Stop after this long; units ms, s, m, h (e.g. --duration 30s).
    #[arg(long, value_name = "DURATION", value_parser = DurationArg::from_str)]
    pub duration: Option<DurationArg>,

    #[command(flatten)]
    pub netns: NetnsArgs,

    /// Netlink socket receive buffer for --source netlink, like conntrack -b;
    /// K and M suffixes (e.g. --buffer-size 8M).
    #[arg(short = 'b', long = "buffer-size", value_name = "BYTES", value_parser = size::parse_buffer_size)]
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
          value_parser = duration::parse_interval)]
    pub watch: Option<DurationArg>,

    /// Only marks with mark & MASK == VALUE (e.g. --mark 0x100/0xff00).
    #[arg(short = 'm', long = "mark", value_name = "VALUE[/MASK]", value_parser = MarkMask::from_str)]
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
    #[arg(long, value_name = "INODE|PATH", value_parser = NetnsArg::from_str, conflicts_with = "all_netns")]
    pub netns: Option<NetnsArg>,

    /// All network namespaces (eBPF source only) (e.g. --all-netns).
    #[arg(long)]
    pub all_netns: bool,
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

// The domain enums clap offers as value lists: their spellings on the
// command line live here, not with the types.

impl ValueEnum for HookMode {
    fn value_variants<'a>() -> &'a [Self] {
        &[HookMode::Auto, HookMode::Fentry, HookMode::Kprobe]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            HookMode::Auto => "auto",
            HookMode::Fentry => "fentry",
            HookMode::Kprobe => "kprobe",
        }))
    }
}

impl ValueEnum for Family {
    fn value_variants<'a>() -> &'a [Self] {
        &[Family::Ipv4, Family::Ipv6]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

#[cfg(test)]
mod tests;
