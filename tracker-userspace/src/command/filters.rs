//! What `tracker events` and `tracker serve --events-json` make of the
//! event filters ([`FilterArgs`]): the conntrack -E options refused with
//! what to use instead, and the [`Filter`] the others build.

use crate::cli::FilterArgs;
use crate::filter::{Filter, FilterError, NatFilter};
use crate::model::EventKinds;

/// conntrack -E options the tracker parses only to refuse them, with what
/// to use instead: the sources do not read labels or the secmark, and the
/// NAT address forms have an equivalent with -q/-r.
pub fn refused_option(args: &FilterArgs) -> Option<String> {
    fn nat_addr(given: &Option<Option<String>>) -> Option<&String> {
        given.as_ref().and_then(Option::as_ref)
    }
    if args.label.is_some() {
        return Some(
            "-l/--label is not supported: the tracker does not read connection labels; give \
             the connections a connmark and use -m VALUE[/MASK]"
                .into(),
        );
    }
    if args.secmark.is_some() {
        return Some(
            "-c/--secmark is not supported: the tracker does not read the SELinux secmark; give \
             the connections a connmark and use -m VALUE[/MASK]"
                .into(),
        );
    }
    if let Some(a) = nat_addr(&args.src_nat) {
        return Some(format!(
            "-n {a} is not supported: use -n -q {a} (source NAT whose reply destination, the \
             address it rewrote to, is {a})"
        ));
    }
    if let Some(a) = nat_addr(&args.dst_nat) {
        return Some(format!(
            "-g {a} is not supported: use -g -r {a} (destination NAT whose reply source, the \
             address it rewrote to, is {a})"
        ));
    }
    if let Some(a) = nat_addr(&args.any_nat) {
        return Some(format!(
            "-j {a} is not supported: use -n -q {a} or -g -r {a} (one command each)"
        ));
    }
    None
}

/// The filter the options build, for events of `kinds`; the caller adds
/// the namespace once it has resolved it ([`Filter::with_netns`]).
pub fn build(args: &FilterArgs, kinds: EventKinds) -> Result<Filter, FilterError> {
    Filter {
        kinds,
        family: args.family,
        proto: args.proto,
        orig_src: args.src,
        orig_dst: args.dst,
        reply_src: args.reply_src,
        reply_dst: args.reply_dst,
        sport: args.sport,
        dport: args.dport,
        mark: args.mark,
        zone: args.zone,
        orig_zone: args.orig_zone,
        reply_zone: args.reply_zone,
        nat: NatFilter {
            src: args.src_nat.is_some(),
            dst: args.dst_nat.is_some(),
            any: args.any_nat.is_some(),
        },
        states: None,
        netns: None,
    }
    .with_states(args.state)?
    .with_implied_family()
}
