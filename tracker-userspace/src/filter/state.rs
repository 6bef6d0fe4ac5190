//! `--state`, with conntrack's meaning: the protocol state of the entry
//! (TCP, SCTP or DCCP), compared with the state the event carries — the one
//! `conntrack -E` prints.
//!
//! conntrack 1.4.7 compares ATTR_TCP_STATE (and the SCTP and DCCP ones)
//! strictly (`cmp_meta()` in libnetfilter_conntrack's
//! src/conntrack/compare.c): an event without it never matches. That is a
//! DESTROY on kernels before 5.15 and an UPDATE whose protocol info did not
//! change, whose lines show no state either.

use crate::event::Event;
use crate::event::vocabulary::{ipproto, l4_label, shown_state, state_by_name, state_names};
use crate::model::{CtState, Lacking, Protocol, STATE_PROTOCOLS, StateArg, StateSet};

use super::FilterError;

/// Checks `--state` against `-p` and returns the protocol to filter on with
/// the states to match. conntrack only takes `--state` after `-p tcp`, `-p
/// sctp` or `-p dccp`; without `-p` the states are TCP's, and `-p tcp` is
/// implied.
pub fn resolve(
    arg: StateArg,
    proto: Option<Protocol>,
) -> Result<(Protocol, StateSet), FilterError> {
    let p = proto.map_or(ipproto::TCP, |p| p.0);
    match arg.for_proto(p) {
        Some(Ok(set)) => Ok((Protocol(p), set)),
        Some(Err(Lacking::CtState(c))) => Err(FilterError::CtState(c)),
        Some(Err(Lacking::Name(name))) => Err(FilterError::NotAState {
            name,
            l4proto: p,
            implied: proto.is_none(),
        }),
        // A protocol without states. A ctstate class is answered first: it
        // is what the user got wrong.
        None => match arg.for_proto(ipproto::TCP) {
            Some(Err(Lacking::CtState(c))) => Err(FilterError::CtState(c)),
            _ => Err(FilterError::NoStates(Protocol(p))),
        },
    }
}

/// True when the state the event shows is one of `states`.
pub fn matches(states: StateSet, ev: &Event) -> bool {
    shown_state(ev).is_some_and(|s| states.contains(s))
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

/// Why a state name does not go with the protocol filtered on.
pub fn not_a_state(name: &str, l4proto: u8, implied: bool) -> String {
    let label = l4_label(l4proto).to_uppercase();
    if implied {
        let owners: Vec<String> = STATE_PROTOCOLS
            .iter()
            .filter(|&&p| state_by_name(p, name).is_some())
            .map(|&p| format!("-p {}", l4_label(p)))
            .collect();
        return format!(
            "--state {name} is not a TCP state, and without -p --state means TCP states: \
             give {}",
            owners.join(" or ")
        );
    }
    let names = state_names(l4proto).unwrap_or(&[]).join(", ");
    let article = if label.starts_with('S') { "an" } else { "a" };
    format!("--state {name} is not {article} {label} state: {label}'s are {names}")
}

/// Why `--state` does not go with this protocol.
pub fn no_states(p: Protocol) -> String {
    format!(
        "--state filters on TCP, SCTP and DCCP states, and -p {} has none: use it with one \
         of those, or without -p for TCP",
        l4_label(p.0)
    )
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
            let s = fl.states.unwrap();
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
        assert_eq!((fl.proto, fl.states), (None, None));
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
    fn protocols_without_states_are_refused() {
        assert_eq!(
            refusal(&["-p", "udp", "--state", "ESTABLISHED"]),
            "--state filters on TCP, SCTP and DCCP states, and -p udp has none: use it with \
             one of those, or without -p for TCP"
        );
        assert_eq!(
            refusal(&["--state", "ESTABLISHED", "-p", "icmp"]),
            "--state filters on TCP, SCTP and DCCP states, and -p icmp has none: use it with \
             one of those, or without -p for TCP"
        );
        assert_eq!(
            refusal(&["-p", "99", "--state", "CLOSE"]),
            "--state filters on TCP, SCTP and DCCP states, and -p 99 has none: use it with \
             one of those, or without -p for TCP"
        );
    }

    #[test]
    fn sctp_and_dccp_states_go_with_their_protocol() {
        let fl = filter(&["-p", "sctp", "--state", "ESTABLISHED,COOKIE_WAIT"]).unwrap();
        assert_eq!(fl.proto, Some(Protocol(132)));
        assert_eq!(fl.kernel_filter().l4proto, 132);
        let s = fl.states.unwrap();
        assert!(s.contains(4) && s.contains(2) && !s.contains(3));
        let fl = filter(&["--state", "OPEN", "-p", "dccp"]).unwrap();
        assert!(fl.states.unwrap().contains(4));
        // INVALID is a DCCP state, not the ctstate class, with -p dccp.
        assert!(filter(&["-p", "dccp", "--state", "INVALID"]).is_ok());
        assert_eq!(
            refusal(&["--state", "COOKIE_WAIT"]),
            "--state COOKIE_WAIT is not a TCP state, and without -p --state means TCP states: \
             give -p sctp"
        );
        assert_eq!(
            refusal(&["--state", "IGNORE,ESTABLISHED"]),
            "--state IGNORE is not a TCP state, and without -p --state means TCP states: \
             give -p dccp"
        );
        assert_eq!(
            refusal(&["-p", "sctp", "--state", "OPEN"]),
            "--state OPEN is not an SCTP state: SCTP's are NONE, CLOSED, COOKIE_WAIT, \
             COOKIE_ECHOED, ESTABLISHED, SHUTDOWN_SENT, SHUTDOWN_RECD, SHUTDOWN_ACK_SENT, \
             HEARTBEAT_SENT, HEARTBEAT_ACKED"
        );
        assert_eq!(
            refusal(&["-p", "dccp", "--state", "ESTABLISHED"]),
            "--state ESTABLISHED is not a DCCP state: DCCP's are NONE, REQUEST, RESPOND, \
             PARTOPEN, OPEN, CLOSEREQ, CLOSING, TIMEWAIT, IGNORE, INVALID"
        );
        assert_eq!(
            refusal(&["-p", "tcp", "--state", "OPEN"]),
            "--state OPEN is not a TCP state: TCP's are NONE, SYN_SENT, SYN_RECV, ESTABLISHED, \
             FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2"
        );
        assert_eq!(
            refusal(&["-p", "sctp", "--state", "NEW"]),
            refusal(&["--state", "NEW"])
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
            states: fl.states,
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
