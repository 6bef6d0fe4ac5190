//! `--state`: connection states, as conntrack names them for TCP.
//!
//! People also type iptables' ctstate classes here (`--state NEW`), which are
//! not states of a conntrack entry. They parse, so that the filter can answer
//! with what the user probably wants instead of "not a state".

use std::str::FromStr;

use crate::event::vocabulary::{TCP_STATES, tcp_state_by_name};

/// A set of TCP states (`enum tcp_conntrack`), one bit per state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStates(u16);

impl TcpStates {
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
/// (ESTABLISHED is both, and taken as the TCP state.)
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

/// What `--state S[,S...]` says: the TCP states named and, if any, the
/// first ctstate class named (which the filter refuses with advice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateArg {
    pub tcp: TcpStates,
    pub ctstate: Option<CtState>,
}

impl FromStr for StateArg {
    type Err = String;

    /// A comma list of conntrack's TCP state names (plus LISTEN, conntrack's
    /// old name for SYN_SENT2), case-insensitive.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut arg = StateArg {
            tcp: TcpStates::default(),
            ctstate: None,
        };
        for item in s.split(',') {
            let name = item.trim();
            if name.is_empty() {
                return Err(format!(
                    "`{s}` has an empty item: give TCP states separated by commas (e.g. \
                     SYN_SENT,ESTABLISHED)"
                ));
            }
            if let Some(state) = tcp_state_by_name(name) {
                arg.tcp.insert(state);
            } else if let Some(c) = CtState::by_name(name) {
                arg.ctstate = arg.ctstate.or(Some(c));
            } else {
                return Err(format!(
                    "`{item}` is not a TCP state: use {}, comma separated",
                    TCP_STATES.join(", ")
                ));
            }
        }
        Ok(arg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<StateArg, String> {
        s.parse()
    }

    fn states(s: &str) -> Vec<u8> {
        let arg = parse(s).unwrap();
        (0..16).filter(|&i| arg.tcp.contains(i)).collect()
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
        assert_eq!(parse("ESTABLISHED").unwrap().ctstate, None);
    }

    #[test]
    fn ctstate_classes_parse_for_the_filter_to_answer() {
        let arg = parse("new").unwrap();
        assert_eq!(arg.ctstate, Some(CtState::New));
        assert!(arg.tcp.is_empty());
        let arg = parse("ESTABLISHED,RELATED,INVALID").unwrap();
        assert_eq!(arg.ctstate, Some(CtState::Related));
        assert_eq!(states("ESTABLISHED,RELATED"), [3]);
        assert_eq!(
            parse("Untracked").unwrap().ctstate,
            Some(CtState::Untracked)
        );
    }

    #[test]
    fn unknown_names_are_refused_with_the_list() {
        assert_eq!(
            parse("SYN_SENT,ESTABLISHD").unwrap_err(),
            "`ESTABLISHD` is not a TCP state: use NONE, SYN_SENT, SYN_RECV, ESTABLISHED, \
             FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2, comma separated"
        );
        assert_eq!(
            parse("SYN_SENT,,CLOSE").unwrap_err(),
            "`SYN_SENT,,CLOSE` has an empty item: give TCP states separated by commas (e.g. \
             SYN_SENT,ESTABLISHED)"
        );
        assert!(parse("").unwrap_err().contains("has an empty item"));
        assert!(
            parse("SYN_SENT,")
                .unwrap_err()
                .contains("has an empty item")
        );
        // SCTP's and DCCP's names are not TCP states.
        assert!(parse("COOKIE_WAIT").is_err());
        assert!(parse("OPEN").is_err());
    }

    #[test]
    fn out_of_range_states_are_never_contained() {
        let mut s = TcpStates::default();
        s.insert(200);
        assert!(s.is_empty() && !s.contains(200) && !s.contains(16));
    }
}
