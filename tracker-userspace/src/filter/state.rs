//! `--state`, with conntrack's meaning: the TCP state of the entry, compared
//! with the state the event carries — the one `conntrack -E` prints.
//!
//! conntrack 1.4.7 compares ATTR_TCP_STATE strictly (`cmp_meta()` in
//! libnetfilter_conntrack's src/conntrack/compare.c): an event without it
//! never matches. That is a DESTROY on kernels before 5.15 and an UPDATE
//! whose protocol info did not change, whose lines show no state either.

use crate::event::Event;
use crate::event::vocabulary::{ipproto, l4_label, shown_tcp_state};
use crate::model::{CtState, Protocol, StateArg, TcpStates};

use super::FilterError;

/// Checks `--state` against `-p` and returns the protocol to filter on with
/// the states to match: a TCP state implies `-p tcp`, as conntrack only takes
/// `--state` after `-p tcp` (or sctp, dccp, whose states the tracker shows
/// but does not filter on).
pub fn resolve(
    arg: StateArg,
    proto: Option<Protocol>,
) -> Result<(Protocol, TcpStates), FilterError> {
    if let Some(c) = arg.ctstate {
        return Err(FilterError::CtState(c));
    }
    match proto {
        None => Ok((Protocol(ipproto::TCP), arg.tcp)),
        Some(p) if p.0 == ipproto::TCP => Ok((p, arg.tcp)),
        Some(p) => Err(FilterError::NoTcpStates(p)),
    }
}

/// True when the state the event shows is one of `states`.
pub fn matches(states: TcpStates, ev: &Event) -> bool {
    shown_tcp_state(ev).is_some_and(|s| states.contains(s))
}

/// What a ctstate class given to `--state` means, and what to use instead.
pub fn ctstate_advice(c: CtState) -> &'static str {
    match c {
        CtState::New => {
            "--state NEW is iptables' ctstate, not a conntrack entry state: to see new \
             connections, use -e NEW"
        }
        CtState::Related => {
            "--state RELATED is iptables' ctstate, not a conntrack entry state: related \
             connections are created from a helper's expectation (e.g. FTP data) and -o json \
             shows them with EXPECTED in status, but the tracker has no filter for them"
        }
        CtState::Invalid => {
            "--state INVALID is iptables' ctstate, not a conntrack entry state: invalid \
             packets never create a conntrack entry, so no event could match"
        }
        CtState::Untracked => {
            "--state UNTRACKED is iptables' ctstate, not a conntrack entry state: untracked \
             packets never create a conntrack entry, so no event could match"
        }
    }
}

/// Why `--state` does not go with this protocol.
pub fn no_tcp_states(p: Protocol) -> String {
    match p.0 {
        ipproto::SCTP | ipproto::DCCP => format!(
            "--state filters on TCP states only: the tracker shows {} states but does not \
             filter on them",
            l4_label(p.0)
        ),
        _ => format!(
            "--state filters on TCP states, and -p {} has none: use it with -p tcp, or \
             without -p",
            l4_label(p.0)
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::event::{EventKind, L4Ids, Tuple};
    use crate::filter::Filter;

    use crate::filter::tests::filter;

    fn refusal(args: &[&str]) -> String {
        filter(args).unwrap_err().to_string()
    }

    fn tuple(src: &str, dst: &str, sport: u16, dport: u16) -> Tuple {
        Tuple {
            src: src.parse::<IpAddr>().unwrap(),
            dst: dst.parse::<IpAddr>().unwrap(),
            l4: L4Ids::Ports { sport, dport },
        }
    }

    fn event(kind: EventKind, l4proto: u8, state: Option<u8>) -> Event {
        let mut e = Event::bare(
            kind,
            l4proto,
            tuple("10.0.0.1", "10.0.0.2", 40000, 22),
            tuple("10.0.0.2", "10.0.0.1", 22, 40000),
        );
        e.tcp_state = state;
        e
    }

    #[test]
    fn lists_in_any_position() {
        for args in [
            &["--state", "SYN_SENT,ESTABLISHED"][..],
            &["-p", "tcp", "--state", "syn_sent,established"],
            &[
                "--state",
                "ESTABLISHED,SYN_SENT",
                "-p",
                "tcp",
                "--dport",
                "22",
            ],
            &[
                "-s",
                "10.0.0.0/8",
                "--state=SYN_SENT,ESTABLISHED",
                "-e",
                "NEW",
            ],
        ] {
            let fl = filter(args).unwrap();
            let s = fl.tcp_states.unwrap();
            assert!(s.contains(1) && s.contains(3), "{args:?}");
            assert!((0..16).filter(|&i| s.contains(i)).count() == 2, "{args:?}");
        }
    }

    #[test]
    fn a_state_implies_tcp_in_the_kernel_filter_too() {
        let fl = filter(&["--state", "ESTABLISHED"]).unwrap();
        assert_eq!(fl.proto, Some(Protocol(6)));
        assert_eq!(fl.kernel_filter().l4proto, 6);
        let fl = filter(&["--state", "TIME_WAIT", "-p", "6"]).unwrap();
        assert_eq!(fl.proto, Some(Protocol(6)));
        // Without --state nothing is implied.
        let fl = filter(&[]).unwrap();
        assert_eq!((fl.proto, fl.tcp_states), (None, None));
        assert_eq!(fl.kernel_filter().l4proto, 0);
    }

    #[test]
    fn ctstate_classes_are_refused_with_what_to_use() {
        assert_eq!(
            refusal(&["--state", "NEW", "-p", "tcp", "--dport", "22"]),
            "--state NEW is iptables' ctstate, not a conntrack entry state: to see new \
             connections, use -e NEW"
        );
        assert_eq!(
            refusal(&["-s", "172.17.0.0/16", "--state", "new"]),
            refusal(&["--state", "NEW"])
        );
        assert_eq!(
            refusal(&["--state", "RELATED"]),
            "--state RELATED is iptables' ctstate, not a conntrack entry state: related \
             connections are created from a helper's expectation (e.g. FTP data) and -o json \
             shows them with EXPECTED in status, but the tracker has no filter for them"
        );
        assert_eq!(
            refusal(&["--state", "INVALID"]),
            "--state INVALID is iptables' ctstate, not a conntrack entry state: invalid \
             packets never create a conntrack entry, so no event could match"
        );
        assert_eq!(
            refusal(&["--state", "UNTRACKED"]),
            "--state UNTRACKED is iptables' ctstate, not a conntrack entry state: untracked \
             packets never create a conntrack entry, so no event could match"
        );
        // ESTABLISHED is also a ctstate, but it is a TCP state first.
        assert!(filter(&["--state", "ESTABLISHED"]).is_ok());
        // A ctstate anywhere in the list is answered, before the protocol.
        assert_eq!(
            refusal(&["--state", "ESTABLISHED,RELATED"]),
            refusal(&["--state", "RELATED"])
        );
        assert_eq!(
            refusal(&["-p", "udp", "--state", "NEW"]),
            refusal(&["--state", "NEW"])
        );
    }

    #[test]
    fn protocols_without_tcp_states_are_refused() {
        assert_eq!(
            refusal(&["-p", "udp", "--state", "ESTABLISHED"]),
            "--state filters on TCP states, and -p udp has none: use it with -p tcp, or \
             without -p"
        );
        assert_eq!(
            refusal(&["--state", "ESTABLISHED", "-p", "icmp"]),
            "--state filters on TCP states, and -p icmp has none: use it with -p tcp, or \
             without -p"
        );
        assert_eq!(
            refusal(&["-p", "99", "--state", "CLOSE"]),
            "--state filters on TCP states, and -p 99 has none: use it with -p tcp, or \
             without -p"
        );
        assert_eq!(
            refusal(&["-p", "sctp", "--state", "ESTABLISHED"]),
            "--state filters on TCP states only: the tracker shows sctp states but does not \
             filter on them"
        );
        assert_eq!(
            refusal(&["-p", "dccp", "--state", "NONE"]),
            "--state filters on TCP states only: the tracker shows dccp states but does not \
             filter on them"
        );
    }

    #[test]
    fn the_state_the_line_shows_is_matched() {
        let fl = filter(&["--state", "ESTABLISHED,TIME_WAIT"]).unwrap();
        assert!(!fl.matches(&event(EventKind::New, 6, Some(1))));
        assert!(fl.matches(&event(EventKind::New, 6, Some(3))));
        assert!(fl.matches(&event(EventKind::Update, 6, Some(3))));
        assert!(fl.matches(&event(EventKind::Destroy, 6, Some(7))));
        assert!(!fl.matches(&event(EventKind::Destroy, 6, Some(8))));
        // No state on the line (DESTROY before 5.15, an UPDATE without
        // protocol info): no match, as in conntrack.
        assert!(!fl.matches(&event(EventKind::Destroy, 6, None)));
        assert!(!fl.matches(&event(EventKind::Update, 6, None)));
        // A state on a non-TCP event is never shown, so never matched.
        let f_any = Filter {
            tcp_states: fl.tcp_states,
            ..Filter::default()
        };
        assert!(!f_any.matches(&event(EventKind::New, 17, Some(3))));
        assert!(f_any.matches(&event(EventKind::New, 6, Some(3))));
        // conntrack compares numbers: a state past the table prints as NONE
        // but is not NONE.
        let none = filter(&["--state", "NONE"]).unwrap();
        assert!(none.matches(&event(EventKind::New, 6, Some(0))));
        assert!(!none.matches(&event(EventKind::New, 6, Some(10))));
        // SYN_SENT2 by either name.
        let s2 = filter(&["--state", "LISTEN"]).unwrap();
        assert!(s2.matches(&event(EventKind::Update, 6, Some(9))));
        // Combined with the other filters (AND).
        let fl = filter(&["--state", "ESTABLISHED", "--dport", "23"]).unwrap();
        assert!(!fl.matches(&event(EventKind::New, 6, Some(3))));
    }
}
