//! conntrack -E's filters, applied to `Event`s in userspace, plus the part the
//! kernel programs can apply themselves before an event reaches the ring.
//!
//! Semantics follow conntrack-tools 1.4.7 (`nfct_filter()` in src/conntrack.c
//! and libnetfilter_conntrack's NAT tests in src/conntrack/objopt.c) with two
//! deliberate differences. `-m 0` matches mark 0: conntrack only compares the
//! mark when the event carries a CTA_MARK attribute, which the kernel leaves
//! out for mark 0, so there `-m 0` never matches. `--state` takes a comma
//! list, any case, and implies `-p tcp`, where conntrack takes one upper-case
//! state and only after `-p tcp`.

mod nat;
pub mod state;

use std::net::IpAddr;

use tracker_common::{KernelFilter, filter_kind};

use crate::event::{Event, EventKind, L4Ids, ZoneDir};
use crate::model::{Cidr, CtState, EventKinds, Family, MarkMask, Protocol, StateArg, StateSet};

pub use nat::{is_dst_nat, is_src_nat};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("{what} {cidr} is {got}, but the family filter selects {want}: nothing could match")]
    FamilyMismatch {
        what: &'static str,
        cidr: Cidr,
        got: &'static str,
        want: &'static str,
    },
    #[error("{}", state::ctstate_advice(*.0))]
    CtState(CtState),
    #[error("{}", state::not_a_state(.name, *.l4proto, *.implied))]
    NotAState {
        name: &'static str,
        l4proto: u8,
        /// No `-p` was given: the states were taken as TCP's.
        implied: bool,
    },
    #[error("{}", state::no_states(*.0))]
    NoStates(Protocol),
}

/// Which NAT a connection must have (`-n`, `-g`, `-j`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatFilter {
    pub src: bool,
    pub dst: bool,
    pub any: bool,
}

/// Every filter of `tracker events`; all given filters must match (AND).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub kinds: EventKinds,
    pub family: Option<Family>,
    pub proto: Option<Protocol>,
    pub orig_src: Option<Cidr>,
    pub orig_dst: Option<Cidr>,
    pub reply_src: Option<Cidr>,
    pub reply_dst: Option<Cidr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub mark: Option<MarkMask>,
    /// `-w`: the zone of an entry zoned in both directions.
    pub zone: Option<u16>,
    /// `--orig-zone`, `--reply-zone`: a one-direction zone.
    pub orig_zone: Option<u16>,
    pub reply_zone: Option<u16>,
    pub nat: NatFilter,
    /// `--state`: the states (of `proto`'s tracker) the event must show.
    pub states: Option<StateSet>,
    /// Namespace inode; `None` for all. Set by the caller once it has
    /// resolved `--netns` (see [`Filter::with_netns`]).
    pub netns: Option<u32>,
}

impl Default for Filter {
    /// Matches everything.
    fn default() -> Self {
        Filter {
            kinds: EventKinds::ALL,
            family: None,
            proto: None,
            orig_src: None,
            orig_dst: None,
            reply_src: None,
            reply_dst: None,
            sport: None,
            dport: None,
            mark: None,
            zone: None,
            orig_zone: None,
            reply_zone: None,
            nat: NatFilter::default(),
            states: None,
            netns: None,
        }
    }
}

impl Filter {
    /// As in conntrack, an address filter implies its family; contradicting
    /// families are an error rather than a filter that never matches.
    pub fn with_implied_family(mut self) -> Result<Filter, FilterError> {
        self.family = self.implied_family()?;
        Ok(self)
    }

    fn implied_family(&self) -> Result<Option<Family>, FilterError> {
        let mut family = self.family;
        for (what, cidr) in [
            ("--src", self.orig_src),
            ("--dst", self.orig_dst),
            ("--reply-src", self.reply_src),
            ("--reply-dst", self.reply_dst),
        ] {
            let Some(cidr) = cidr else { continue };
            match family {
                None => family = Some(cidr.family()),
                Some(f) if f != cidr.family() => {
                    return Err(FilterError::FamilyMismatch {
                        what,
                        cidr,
                        got: cidr.family().name(),
                        want: f.name(),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(family)
    }

    /// Adds `--state`, which implies `-p tcp` when no `-p` is given; see
    /// [`state::resolve`].
    pub fn with_states(mut self, arg: Option<StateArg>) -> Result<Filter, FilterError> {
        if let Some(arg) = arg {
            let (proto, states) = state::resolve(arg, self.proto)?;
            self.proto = Some(proto);
            self.states = Some(states);
        }
        Ok(self)
    }

    /// Restricts to one network namespace (by inode).
    pub fn with_netns(mut self, inode: Option<u32>) -> Self {
        self.netns = inode;
        self
    }

    /// True when the event passes every filter.
    pub fn matches(&self, ev: &Event) -> bool {
        let kind_ok = match ev.kind {
            EventKind::New => self.kinds.new,
            EventKind::Update => self.kinds.update,
            EventKind::Destroy => self.kinds.destroy,
        };
        if !kind_ok {
            return false;
        }
        let differs = |want: Option<u32>, have: u32| want.is_some_and(|w| w != have);
        if differs(self.family.map(|f| f.l3proto().into()), ev.l3proto.into())
            || differs(self.proto.map(|p| p.0.into()), ev.l4proto.into())
            || differs(self.zone.map(u32::from), ev.zone_in(ZoneDir::Both).into())
            || differs(
                self.orig_zone.map(u32::from),
                ev.zone_in(ZoneDir::Orig).into(),
            )
            || differs(
                self.reply_zone.map(u32::from),
                ev.zone_in(ZoneDir::Reply).into(),
            )
            || differs(self.netns, ev.netns)
            || self.mark.is_some_and(|m| !m.matches(ev.mark))
        {
            return false;
        }
        let addr_ok = |c: &Option<Cidr>, a: &IpAddr| c.is_none_or(|c| c.contains(a));
        if !addr_ok(&self.orig_src, &ev.orig.src)
            || !addr_ok(&self.orig_dst, &ev.orig.dst)
            || !addr_ok(&self.reply_src, &ev.reply.src)
            || !addr_ok(&self.reply_dst, &ev.reply.dst)
        {
            return false;
        }
        if self.sport.is_some() || self.dport.is_some() {
            // Original direction, like conntrack's --sport/--dport.
            let L4Ids::Ports { sport, dport } = ev.orig.l4 else {
                return false;
            };
            if self.sport.is_some_and(|p| p != sport) || self.dport.is_some_and(|p| p != dport) {
                return false;
            }
        }
        if self.states.is_some_and(|s| !state::matches(s, ev)) {
            return false;
        }
        self.nat_matches(ev)
    }

    /// conntrack's `filter_nat()` without NAT addresses: `-j` wants either,
    /// `-n -g` both, `-n` or `-g` alone the one.
    fn nat_matches(&self, ev: &Event) -> bool {
        let NatFilter { src, dst, any } = self.nat;
        if any {
            is_src_nat(ev) || is_dst_nat(ev)
        } else if src && dst {
            is_src_nat(ev) && is_dst_nat(ev)
        } else if src {
            is_src_nat(ev)
        } else if dst {
            is_dst_nat(ev)
        } else {
            true
        }
    }

    /// What the kernel programs can check before writing to the ring: event
    /// kinds, netns, family, protocol and mark. Zero fields other than
    /// `kinds` mean "any". TCP states stay in userspace for now.
    pub fn kernel_filter(&self) -> KernelFilter {
        let kinds = [
            (self.kinds.new, filter_kind::NEW),
            (self.kinds.destroy, filter_kind::DESTROY),
            (self.kinds.update, filter_kind::UPDATE),
        ]
        .iter()
        .filter(|(wanted, _)| *wanted)
        .fold(0, |acc, (_, bit)| acc | bit);
        let (match_mark, mark, mark_mask) = match self.mark {
            Some(m) => (1, m.value, m.mask),
            None => (0, 0, 0),
        };
        KernelFilter {
            kinds,
            netns: self.netns.unwrap_or(0),
            mark,
            mark_mask,
            match_mark,
            l3proto: self.family.map_or(0, Family::l3proto),
            l4proto: self.proto.map_or(0, |p| p.0),
            // Kernel side later: self.states as a bit set, tested on the copied state.
            _pad: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Tuple;
    use tracker_common::status;

    fn test_event(kind: EventKind, l4proto: u8, orig: Tuple, reply: Tuple) -> Event {
        Event::bare(kind, l4proto, orig, reply)
    }

    /// The filter `tracker events ARGS` builds (the state tests use it too).
    pub(super) fn filter(args: &[&str]) -> Result<Filter, FilterError> {
        use clap::Parser as _;

        let argv = ["tracker", "events"].iter().chain(args);
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        let crate::cli::Command::Events(args) = cli.command else {
            unreachable!("parsed as `tracker events`")
        };
        crate::command::events::filter_from_args(&args)
    }

    fn f(args: &[&str]) -> Filter {
        filter(args).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn tcp4() -> Event {
        test_event(
            EventKind::New,
            6,
            Tuple {
                src: ip("10.0.0.1"),
                dst: ip("192.0.2.10"),
                l4: L4Ids::Ports {
                    sport: 40000,
                    dport: 443,
                },
            },
            Tuple {
                src: ip("192.0.2.10"),
                dst: ip("10.0.0.1"),
                l4: L4Ids::Ports {
                    sport: 443,
                    dport: 40000,
                },
            },
        )
    }

    fn udp6() -> Event {
        test_event(
            EventKind::Destroy,
            17,
            Tuple {
                src: ip("2001:db8:1::5"),
                dst: ip("2001:db8:2::53"),
                l4: L4Ids::Ports {
                    sport: 5353,
                    dport: 53,
                },
            },
            Tuple {
                src: ip("2001:db8:2::53"),
                dst: ip("2001:db8:1::5"),
                l4: L4Ids::Ports {
                    sport: 53,
                    dport: 5353,
                },
            },
        )
    }

    fn icmp4() -> Event {
        test_event(
            EventKind::Update,
            1,
            Tuple {
                src: ip("10.0.0.1"),
                dst: ip("10.0.0.2"),
                l4: L4Ids::Icmp {
                    kind: 8,
                    code: 0,
                    id: 1,
                },
            },
            Tuple {
                src: ip("10.0.0.2"),
                dst: ip("10.0.0.1"),
                l4: L4Ids::Icmp {
                    kind: 0,
                    code: 0,
                    id: 1,
                },
            },
        )
    }

    #[test]
    fn empty_filter_matches_everything() {
        let fl = f(&[]);
        assert!(fl.matches(&tcp4()) && fl.matches(&udp6()) && fl.matches(&icmp4()));
        assert_eq!(fl, Filter::default());
        assert_eq!(
            fl.kernel_filter(),
            KernelFilter {
                kinds: filter_kind::NEW | filter_kind::DESTROY | filter_kind::UPDATE,
                ..KernelFilter::default()
            }
        );
    }

    #[test]
    fn event_kinds() {
        let fl = f(&["-e", "NEW,DESTROY"]);
        assert!(fl.matches(&tcp4()) && fl.matches(&udp6()) && !fl.matches(&icmp4()));
        let fl = f(&["-e", "upd"]);
        assert!(!fl.matches(&tcp4()) && fl.matches(&icmp4()));
    }

    #[test]
    fn protocol_by_name_and_number() {
        assert!(f(&["-p", "tcp"]).matches(&tcp4()));
        assert!(!f(&["-p", "tcp"]).matches(&udp6()));
        assert!(f(&["-p", "17"]).matches(&udp6()));
        assert!(f(&["-p", "icmp"]).matches(&icmp4()));
    }

    #[test]
    fn family() {
        assert!(f(&["-f", "ipv4"]).matches(&tcp4()));
        assert!(!f(&["-f", "ipv4"]).matches(&udp6()));
        assert!(f(&["-f", "ipv6"]).matches(&udp6()));
    }

    #[test]
    fn v4_addresses_and_cidrs() {
        assert!(f(&["-s", "10.0.0.1"]).matches(&tcp4()));
        assert!(!f(&["-s", "10.0.0.2"]).matches(&tcp4()));
        assert!(f(&["--orig-src", "10.0.0.0/8"]).matches(&tcp4()));
        assert!(f(&["-d", "192.0.2.0/24"]).matches(&tcp4()));
        assert!(!f(&["-d", "192.0.3.0/24"]).matches(&tcp4()));
        assert!(f(&["-r", "192.0.2.10"]).matches(&tcp4()));
        assert!(f(&["-q", "10.0.0.0/31"]).matches(&tcp4()));
        assert!(!f(&["-q", "10.0.0.2/31"]).matches(&tcp4()));
        // An IPv4 address filter implies the family.
        assert!(!f(&["-s", "0.0.0.0/0"]).matches(&udp6()));
    }

    #[test]
    fn v6_addresses_and_cidrs() {
        assert!(f(&["-s", "2001:db8:1::/48"]).matches(&udp6()));
        assert!(!f(&["-s", "2001:db8:2::/48"]).matches(&udp6()));
        assert!(f(&["-d", "2001:db8:2::53"]).matches(&udp6()));
        assert!(f(&["-r", "2001:db8::/32"]).matches(&udp6()));
        assert!(f(&["-q", "2001:db8:1::5/128"]).matches(&udp6()));
        assert!(f(&["-s", "2001:db8:1::4/127"]).matches(&udp6()));
        assert!(!f(&["-s", "2001:db8:1::6/127"]).matches(&udp6()));
        assert!(!f(&["-s", "::/0"]).matches(&tcp4()));
        assert!(f(&["-s", "::/0"]).matches(&udp6()));
    }

    #[test]
    fn contradicting_families_are_an_error() {
        let e = filter(&["-f", "ipv6", "-s", "10.0.0.1"]).unwrap_err();
        assert!(e.to_string().contains("--src 10.0.0.1/32 is ipv4"), "{e}");
        assert!(filter(&["-s", "10.0.0.1", "-d", "::1"]).is_err());
        assert_eq!(f(&["-s", "10.0.0.1"]).family, Some(Family::Ipv4));
    }

    #[test]
    fn ports_in_original_direction() {
        assert!(f(&["--dport", "443"]).matches(&tcp4()));
        assert!(f(&["--sport", "40000", "--dport", "443"]).matches(&tcp4()));
        assert!(!f(&["--sport", "443"]).matches(&tcp4()));
        assert!(!f(&["--dport", "40000"]).matches(&tcp4()));
        // No ports, no match.
        assert!(!f(&["--dport", "0"]).matches(&icmp4()));
    }

    #[test]
    fn marks_with_masks() {
        let mut e = tcp4();
        e.mark = 0x1234;
        assert!(f(&["-m", "0x1234"]).matches(&e));
        assert!(f(&["-m", "4660"]).matches(&e));
        assert!(!f(&["-m", "0x1235"]).matches(&e));
        assert!(f(&["-m", "0x1200/0xff00"]).matches(&e));
        assert!(f(&["-m", "0x34/0xff"]).matches(&e));
        assert!(!f(&["-m", "0x1300/0xff00"]).matches(&e));
        assert!(f(&["-m", "0/0"]).matches(&e));
        // Unlike conntrack, -m 0 matches mark 0.
        assert!(f(&["-m", "0"]).matches(&tcp4()));
        assert!(!f(&["-m", "0"]).matches(&e));
    }

    #[test]
    fn zone_and_netns() {
        let mut e = tcp4();
        e.zone = 5;
        assert!(f(&["-w", "5"]).matches(&e));
        assert!(!f(&["-w", "0"]).matches(&e));
        assert!(f(&["-w", "0"]).matches(&tcp4()));
        assert!(!f(&["--orig-zone", "5"]).matches(&e));
        assert!(f(&["--orig-zone", "0", "--reply-zone", "0"]).matches(&e));
        let fl = f(&[]).with_netns(Some(4026531840));
        assert!(fl.matches(&tcp4()));
        e.netns = 4026532000;
        assert!(!fl.matches(&e));
    }

    /// What conntrack 1.4.7 -E showed for four entries inserted with
    /// `--orig-zone 5`, `--reply-zone 5`, `-w 5` and no zone: an absent
    /// direction's zone compares as 0.
    #[test]
    fn zone_filters_read_one_direction_each() {
        let zoned = |zone, dir| {
            let mut e = tcp4();
            e.zone = zone;
            e.zone_dir = dir;
            e
        };
        let entries = [
            zoned(5, ZoneDir::Orig),
            zoned(5, ZoneDir::Reply),
            zoned(5, ZoneDir::Both),
            zoned(0, ZoneDir::Both),
        ];
        for (args, shown) in [
            (&["--orig-zone", "5"][..], [true, false, false, false]),
            (&["--reply-zone", "5"], [false, true, false, false]),
            (&["-w", "5"], [false, false, true, false]),
            (&["--orig-zone", "0"], [false, true, true, true]),
            (&["--reply-zone", "0"], [true, false, true, true]),
            (&["-w", "0"], [true, true, false, true]),
        ] {
            let fl = f(args);
            let got = entries.each_ref().map(|e| fl.matches(e));
            assert_eq!(got, shown, "{args:?}");
        }
    }

    fn snat(mut e: Event) -> Event {
        // 10.0.0.1:40000 leaves as 198.51.100.1:40000.
        e.reply.dst = ip("198.51.100.1");
        e.status |= status::SRC_NAT | status::SRC_NAT_DONE | status::DST_NAT_DONE;
        e
    }

    fn dnat(mut e: Event) -> Event {
        // 192.0.2.10:443 is really served by 10.9.9.9:8443.
        e.reply.src = ip("10.9.9.9");
        e.reply.l4 = L4Ids::Ports {
            sport: 8443,
            dport: 40000,
        };
        e.status |= status::DST_NAT | status::DST_NAT_DONE | status::SRC_NAT_DONE;
        e
    }

    #[test]
    fn nat_detection() {
        let plain = tcp4();
        assert!(!is_src_nat(&plain) && !is_dst_nat(&plain));
        // A null binding: NAT ran, nothing changed.
        let mut null = tcp4();
        null.status |= status::SRC_NAT_DONE | status::DST_NAT_DONE;
        assert!(!is_src_nat(&null) && !is_dst_nat(&null));
        assert!(is_src_nat(&snat(tcp4())) && !is_dst_nat(&snat(tcp4())));
        assert!(is_dst_nat(&dnat(tcp4())) && !is_src_nat(&dnat(tcp4())));
        // Port-only source NAT (masquerade with a port clash).
        let mut spat = tcp4();
        spat.reply.l4 = L4Ids::Ports {
            sport: 443,
            dport: 40001,
        };
        spat.status |= status::SRC_NAT | status::SRC_NAT_DONE;
        assert!(is_src_nat(&spat));
        // Tuples differ but NAT has not run yet: conntrack says no.
        let mut pending = tcp4();
        pending.reply.dst = ip("198.51.100.1");
        assert!(!is_src_nat(&pending));
        // IPv6 source NAT.
        let mut v6 = udp6();
        v6.reply.dst = ip("2001:db8:ffff::1");
        v6.status |= status::SRC_NAT_DONE;
        assert!(is_src_nat(&v6));
    }

    #[test]
    fn nat_filters() {
        let both = dnat(snat(tcp4()));
        for (args, plain, s, d, b) in [
            (&["-n"][..], false, true, false, true),
            (&["-g"], false, false, true, true),
            (&["-j"], false, true, true, true),
            (&["-n", "-g"], false, false, false, true),
        ] {
            let fl = f(args);
            assert_eq!(fl.matches(&tcp4()), plain, "{args:?} plain");
            assert_eq!(fl.matches(&snat(tcp4())), s, "{args:?} snat");
            assert_eq!(fl.matches(&dnat(tcp4())), d, "{args:?} dnat");
            assert_eq!(fl.matches(&both), b, "{args:?} both");
        }
    }

    #[test]
    fn kernel_part() {
        let k = f(&[
            "-e",
            "NEW",
            "-p",
            "udp",
            "-m",
            "0x10/0xf0",
            "-s",
            "10.0.0.0/8",
        ])
        .with_netns(Some(77))
        .kernel_filter();
        assert_eq!(
            k,
            KernelFilter {
                kinds: 1,
                netns: 77,
                mark: 0x10,
                mark_mask: 0xf0,
                match_mark: 1,
                l3proto: 2,
                l4proto: 17,
                _pad: 0
            }
        );
        assert_eq!(f(&["-e", "DESTROY", "-f", "ipv6"]).kernel_filter().kinds, 2);
        assert_eq!(
            f(&["-e", "DESTROY", "-f", "ipv6"]).kernel_filter().l3proto,
            10
        );
        assert_eq!(f(&["-e", "NEW,DESTROY"]).kernel_filter().kinds, 3);
        assert_eq!(f(&["-e", "UPDATE"]).kernel_filter().kinds, 4);
        assert_eq!(f(&[]).kernel_filter().kinds, 7);
        let k = f(&["-m", "0"]).kernel_filter();
        assert_eq!((k.match_mark, k.mark, k.mark_mask), (1, 0, u32::MAX));
    }
}
