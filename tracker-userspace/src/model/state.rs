//! `--state`: connection states, as conntrack names them for TCP, SCTP and
//! DCCP — the protocols whose trackers have states.
//!
//! People also type iptables' ctstate classes here (`--state NEW`), which are
//! not states of a conntrack entry. They parse, so that the filter can answer
//! with what the user probably wants instead of "not a state".

use std::str::FromStr;

use crate::event::vocabulary::{DCCP_STATES, SCTP_STATES, TCP_STATES, ipproto, state_by_name};

/// A set of one protocol's states (`enum tcp_conntrack`, `enum
/// sctp_conntrack`, `enum ct_dccp_states`), one bit per state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateSet(u16);

impl StateSet {
    pub fn insert(&mut self, state: u8) {
        if let Some(bit) = 1u16.checked_shl(state.into()) {
            self.0 |= bit;
        }
    }

    pub fn contains(&self, state: u8) -> bool {
        1u16.checked_shl(state.into())
            .is_some_and(|bit| self.0 & bit != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

/// iptables' `-m conntrack --ctstate` classes that are not TCP states.
/// (ESTABLISHED is both, and taken as the TCP state; INVALID is also a DCCP
/// state, and taken as that with `-p dccp`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtState {
    New,
    Related,
    Invalid,
    Untracked,
}

impl CtState {
    fn by_name(name: &str) -> Option<CtState> {
        [
            ("NEW", CtState::New),
            ("RELATED", CtState::Related),
            ("INVALID", CtState::Invalid),
            ("UNTRACKED", CtState::Untracked),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, c)| c)
    }
}

/// The protocols with states, in the order of [`StateArg`]'s arrays.
pub const STATE_PROTOCOLS: [u8; 3] = [ipproto::TCP, ipproto::SCTP, ipproto::DCCP];

/// A name of the list that one protocol has no state of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lacking {
    /// An iptables ctstate class (advice instead of "not a state").
    CtState(CtState),
    /// Another protocol's state, by its canonical name.
    Name(&'static str),
}

/// What `--state S[,S...]` says, for each protocol with states (TCP, SCTP,
/// DCCP, see [`STATE_PROTOCOLS`]): the states named, and the first name of
/// the list that protocol lacks. Which protocol applies is `-p`'s to say, so
/// the filter picks one (see `filter::state::resolve`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateArg {
    pub sets: [StateSet; 3],
    pub lacking: [Option<Lacking>; 3],
}

impl StateArg {
    /// The states named for `l4proto`, or the first name it lacks.
    pub fn for_proto(&self, l4proto: u8) -> Option<Result<StateSet, Lacking>> {
        let i = STATE_PROTOCOLS.iter().position(|&p| p == l4proto)?;
        Some(self.lacking[i].map_or(Ok(self.sets[i]), Err))
    }
}

impl FromStr for StateArg {
    type Err = String;

    /// A comma list of conntrack's state names, case-insensitive: TCP's
    /// (plus LISTEN, conntrack's old name for SYN_SENT2), SCTP's and DCCP's.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut arg = StateArg {
            sets: [StateSet::default(); 3],
            lacking: [None; 3],
        };
        for item in s.split(',') {
            let name = item.trim();
            if name.is_empty() {
                return Err(format!(
                    "`{s}` has an empty item: give states separated by commas (e.g. \
                     SYN_SENT,ESTABLISHED)"
                ));
            }
            let states = STATE_PROTOCOLS.map(|p| state_by_name(p, name));
            let ctstate = CtState::by_name(name);
            let canonical = STATE_PROTOCOLS
                .iter()
                .zip(states)
                .find_map(|(&p, st)| Some(canonical_name(p, st?)));
            let lacking = match (ctstate, canonical) {
                (Some(c), _) => Lacking::CtState(c),
                (None, Some(n)) => Lacking::Name(n),
                (None, None) => {
                    return Err(format!(
                        "`{item}` is not a conntrack state: TCP's are {}; SCTP's are {}; \
                         DCCP's are {} (comma separated)",
                        TCP_STATES.join(", "),
                        SCTP_STATES.join(", "),
                        DCCP_STATES.join(", ")
                    ));
                }
            };
            for (i, st) in states.into_iter().enumerate() {
                match st {
                    Some(st) => arg.sets[i].insert(st),
                    None => arg.lacking[i] = arg.lacking[i].or(Some(lacking)),
                }
            }
        }
        Ok(arg)
    }
}

fn canonical_name(l4proto: u8, state: u8) -> &'static str {
    let names: &[&'static str] = match l4proto {
        ipproto::SCTP => &SCTP_STATES,
        ipproto::DCCP => &DCCP_STATES,
        _ => &TCP_STATES,
    };
    names[usize::from(state)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<StateArg, String> {
        s.parse()
    }

    fn states_of(s: &str, l4proto: u8) -> Vec<u8> {
        let set = parse(s).unwrap().for_proto(l4proto).unwrap().unwrap();
        (0..16).filter(|&i| set.contains(i)).collect()
    }

    fn states(s: &str) -> Vec<u8> {
        states_of(s, ipproto::TCP)
    }

    #[test]
    fn one_state_and_lists() {
        assert_eq!(states("ESTABLISHED"), [3]);
        assert_eq!(states("SYN_SENT,ESTABLISHED"), [1, 3]);
        assert_eq!(states("time_wait, Close"), [7, 8]);
        assert_eq!(states("NONE,SYN_SENT2"), [0, 9]);
        assert_eq!(states("LISTEN"), [9]);
        assert_eq!(states("CLOSE,CLOSE"), [8]);
        assert_eq!(
            states(
                "NONE,SYN_SENT,SYN_RECV,ESTABLISHED,FIN_WAIT,CLOSE_WAIT,LAST_ACK,TIME_WAIT,\
                 CLOSE,SYN_SENT2"
            ),
            (0..10).collect::<Vec<u8>>()
        );
    }

    #[test]
    fn sctp_and_dccp_names_are_their_trackers_states() {
        assert_eq!(states_of("ESTABLISHED", ipproto::SCTP), [4]);
        assert_eq!(
            states_of("cookie_wait,HEARTBEAT_ACKED", ipproto::SCTP),
            [2, 9]
        );
        assert_eq!(states_of("OPEN,TIMEWAIT", ipproto::DCCP), [4, 7]);
        assert_eq!(states_of("INVALID", ipproto::DCCP), [9]);
        // NONE is every tracker's state 0.
        assert_eq!(states_of("NONE", ipproto::DCCP), [0]);
        // A name one protocol lacks is kept, for the refusal.
        let arg = parse("ESTABLISHED,COOKIE_WAIT").unwrap();
        assert_eq!(
            arg.for_proto(ipproto::TCP),
            Some(Err(Lacking::Name("COOKIE_WAIT")))
        );
        assert_eq!(
            arg.for_proto(ipproto::DCCP),
            Some(Err(Lacking::Name("ESTABLISHED")))
        );
        assert!(arg.for_proto(ipproto::SCTP).unwrap().is_ok());
        // UDP has no states at all.
        assert_eq!(arg.for_proto(ipproto::UDP), None);
    }

    #[test]
    fn ctstate_classes_parse_for_the_filter_to_answer() {
        let arg = parse("new").unwrap();
        assert_eq!(
            arg.for_proto(ipproto::TCP),
            Some(Err(Lacking::CtState(CtState::New)))
        );
        let arg = parse("ESTABLISHED,RELATED,INVALID").unwrap();
        assert_eq!(
            arg.for_proto(ipproto::TCP),
            Some(Err(Lacking::CtState(CtState::Related)))
        );
        assert_eq!(
            parse("Untracked").unwrap().for_proto(ipproto::SCTP),
            Some(Err(Lacking::CtState(CtState::Untracked)))
        );
        // INVALID is DCCP's state 9 as well as a ctstate class.
        assert_eq!(states_of("INVALID", ipproto::DCCP), [9]);
    }

    #[test]
    fn unknown_names_are_refused_with_the_lists() {
        assert_eq!(
            parse("SYN_SENT,ESTABLISHD").unwrap_err(),
            "`ESTABLISHD` is not a conntrack state: TCP's are NONE, SYN_SENT, SYN_RECV, \
             ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2; SCTP's \
             are NONE, CLOSED, COOKIE_WAIT, COOKIE_ECHOED, ESTABLISHED, SHUTDOWN_SENT, \
             SHUTDOWN_RECD, SHUTDOWN_ACK_SENT, HEARTBEAT_SENT, HEARTBEAT_ACKED; DCCP's are \
             NONE, REQUEST, RESPOND, PARTOPEN, OPEN, CLOSEREQ, CLOSING, TIMEWAIT, IGNORE, \
             INVALID (comma separated)"
        );
        assert_eq!(
            parse("SYN_SENT,,CLOSE").unwrap_err(),
            "`SYN_SENT,,CLOSE` has an empty item: give states separated by commas (e.g. \
             SYN_SENT,ESTABLISHED)"
        );
        assert!(parse("").unwrap_err().contains("has an empty item"));
        assert!(
            parse("SYN_SENT,")
                .unwrap_err()
                .contains("has an empty item")
        );
    }

    #[test]
    fn out_of_range_states_are_never_contained() {
        let mut s = StateSet::default();
        s.insert(200);
        assert!(s.is_empty() && !s.contains(200) && !s.contains(16));
    }
}
