//! The event filters: conntrack -E's options that select events, in one
//! struct that `tracker events` and `tracker serve` (for `--events-json`)
//! both flatten, so the two commands accept the same words with the same
//! meaning and the same refusals.

use std::str::FromStr;

use clap::Args;

use crate::model::{Cidr, Family, MarkMask, Protocol, StateArg, number};

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Layer-4 protocol, by name or number (e.g. -p tcp; -p 47).
    #[arg(short = 'p', long = "proto", value_name = "PROTO", value_parser = Protocol::from_str)]
    pub proto: Option<Protocol>,

    /// Original source address or network (e.g. -s 10.0.0.0/8; -s 2001:db8::1).
    #[arg(short = 's', long = "src", visible_alias = "orig-src", value_name = "ADDR[/LEN]",
          value_parser = Cidr::from_str)]
    pub src: Option<Cidr>,

    /// Original destination address or network (e.g. -d 192.0.2.1).
    #[arg(short = 'd', long = "dst", visible_alias = "orig-dst", value_name = "ADDR[/LEN]",
          value_parser = Cidr::from_str)]
    pub dst: Option<Cidr>,

    /// Reply source address or network (e.g. -r 10.1.0.0/16).
    #[arg(short = 'r', long = "reply-src", value_name = "ADDR[/LEN]", value_parser = Cidr::from_str)]
    pub reply_src: Option<Cidr>,

    /// Reply destination address or network, the address a source NAT
    /// rewrote to (e.g. -q 198.51.100.7).
    #[arg(short = 'q', long = "reply-dst", value_name = "ADDR[/LEN]", value_parser = Cidr::from_str)]
    pub reply_dst: Option<Cidr>,

    /// Original source port (e.g. --sport 40000).
    #[arg(long, value_name = "PORT", value_parser = number::parse_port)]
    pub sport: Option<u16>,

    /// Original destination port (e.g. --dport 443).
    #[arg(long, value_name = "PORT", value_parser = number::parse_port)]
    pub dport: Option<u16>,

    /// States the event shows, comma separated, case-insensitive: TCP's
    /// (NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK,
    /// TIME_WAIT, CLOSE, SYN_SENT2; without -p, -p tcp is implied), or SCTP's
    /// or DCCP's after -p sctp or -p dccp. DESTROY lines without a state
    /// (kernels before 5.15) never match (e.g. --state ESTABLISHED; --state
    /// SYN_SENT,SYN_RECV; -p sctp --state COOKIE_WAIT).
    #[arg(long, value_name = "STATE[,STATE...]", value_parser = StateArg::from_str)]
    pub state: Option<StateArg>,

    /// Conntrack mark, decimal or 0x hex, with an optional mask; matches when
    /// mark & MASK == VALUE (e.g. -m 0x10/0xf0). -m 0 matches mark 0.
    #[arg(short = 'm', long = "mark", value_name = "VALUE[/MASK]", value_parser = MarkMask::from_str)]
    pub mark: Option<MarkMask>,

    /// Conntrack zone of entries zoned in both directions; 0 also matches
    /// entries zoned in one direction only, as in conntrack (e.g. -w 10).
    #[arg(short = 'w', long = "zone", value_name = "ZONE", value_parser = number::parse_zone)]
    pub zone: Option<u16>,

    /// Zone of entries zoned in the original direction only (`zone-orig=`);
    /// 0 matches every other entry, as in conntrack (e.g. --orig-zone 10).
    #[arg(long = "orig-zone", value_name = "ZONE", value_parser = number::parse_zone)]
    pub orig_zone: Option<u16>,

    /// Zone of entries zoned in the reply direction only (`zone-reply=`);
    /// 0 matches every other entry, as in conntrack (e.g. --reply-zone 10).
    #[arg(long = "reply-zone", value_name = "ZONE", value_parser = number::parse_zone)]
    pub reply_zone: Option<u16>,

    /// Address family (e.g. -f ipv6).
    #[arg(short = 'f', long = "family", value_enum, value_name = "FAMILY")]
    pub family: Option<Family>,

    /// Only source-NATed connections (e.g. -n). conntrack's address form
    /// (-n ADDR) is refused: use -n -q ADDR.
    #[arg(short = 'n', long = "src-nat", value_name = "ADDR", num_args = 0..=1)]
    pub src_nat: Option<Option<String>>,

    /// Only destination-NATed connections (e.g. -g). conntrack's address
    /// form (-g ADDR) is refused: use -g -r ADDR.
    #[arg(short = 'g', long = "dst-nat", value_name = "ADDR", num_args = 0..=1)]
    pub dst_nat: Option<Option<String>>,

    /// Only connections with any NAT (e.g. -j). conntrack's address form
    /// (-j ADDR) is refused: use -n -q ADDR or -g -r ADDR.
    #[arg(short = 'j', long = "any-nat", value_name = "ADDR", num_args = 0..=1)]
    pub any_nat: Option<Option<String>>,

    /// conntrack's label filter; refused: the tracker does not read
    /// connection labels (use a connmark and -m).
    #[arg(short = 'l', long = "label", value_name = "LABEL", hide = true)]
    pub label: Option<String>,

    /// conntrack's SELinux secmark filter; refused: the tracker does not read
    /// the secmark (use a connmark and -m).
    #[arg(short = 'c', long = "secmark", value_name = "SECMARK", hide = true)]
    pub secmark: Option<String>,
}

impl FilterArgs {
    /// The first filter option given, as `-x/--long` (or `--long` alone when
    /// it has no short form), for sentences that name it; `None` when no
    /// filter is given.
    pub fn first_given(&self) -> Option<&'static str> {
        // Every field, named: a filter added to the struct must be added here.
        let FilterArgs {
            proto,
            src,
            dst,
            reply_src,
            reply_dst,
            sport,
            dport,
            state,
            mark,
            zone,
            orig_zone,
            reply_zone,
            family,
            src_nat,
            dst_nat,
            any_nat,
            label,
            secmark,
        } = self;
        [
            (proto.is_some(), "-p/--proto"),
            (src.is_some(), "-s/--src"),
            (dst.is_some(), "-d/--dst"),
            (reply_src.is_some(), "-r/--reply-src"),
            (reply_dst.is_some(), "-q/--reply-dst"),
            (sport.is_some(), "--sport"),
            (dport.is_some(), "--dport"),
            (state.is_some(), "--state"),
            (mark.is_some(), "-m/--mark"),
            (zone.is_some(), "-w/--zone"),
            (orig_zone.is_some(), "--orig-zone"),
            (reply_zone.is_some(), "--reply-zone"),
            (family.is_some(), "-f/--family"),
            (src_nat.is_some(), "-n/--src-nat"),
            (dst_nat.is_some(), "-g/--dst-nat"),
            (any_nat.is_some(), "-j/--any-nat"),
            (label.is_some(), "-l/--label"),
            (secmark.is_some(), "-c/--secmark"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    }
}
