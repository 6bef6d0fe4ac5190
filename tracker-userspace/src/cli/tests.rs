//! The command-line grammar: parses, refusals and defaults.

use std::time::Duration;

use super::*;
use crate::model::Protocol;
use clap::CommandFactory;

#[test]
fn cli_definition_is_consistent() {
    Cli::command().debug_assert();
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
    assert_eq!(a.filter.proto, Some(Protocol(6)));
    assert_eq!(a.filter.dport, Some(443));
    assert_eq!(a.netns.selection(), NetnsSelection::All);
    assert_eq!(a.buffer_size, Some(ByteSize(8 << 20)));
    assert_eq!(a.duration, Some(DurationArg(Duration::from_secs(10))));

    // Global options also after the subcommand.
    let cli = Cli::try_parse_from(["tracker", "counts", "--watch", "--hook", "kprobe"]).unwrap();
    assert_eq!(cli.hook, HookMode::Kprobe);
    let Command::Counts(c) = cli.command else {
        panic!("not counts")
    };
    assert_eq!(c.watch, Some(DurationArg(Duration::from_secs(1))));
    assert_eq!(c.netns.selection(), NetnsSelection::Current);

    let cli = Cli::try_parse_from(["tracker", "counts", "--watch", "250ms", "-o", "json"]).unwrap();
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
            &["tracker", "events", "--state", "ESTABLISHD"],
            "ESTABLISHD",
        ),
        (&["tracker", "events", "--state", "SYN_SENT,"], "--state"),
        (
            &["tracker", "events", "--netns", "1", "--all-netns"],
            "--all-netns",
        ),
        // serve takes the same filters with the same value parsers.
        (&["tracker", "serve", "-p", "bogus"], "bogus"),
        (
            &[
                "tracker",
                "serve",
                "--events-json",
                "/x",
                "-s",
                "10.0.0.300",
            ],
            "10.0.0.300",
        ),
        (
            &[
                "tracker",
                "serve",
                "--events-json",
                "/x",
                "--dport",
                "70000",
            ],
            "70000",
        ),
    ] {
        let err = Cli::try_parse_from(args).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{args:?}");
        let msg = err.to_string();
        assert!(msg.contains(bad), "{args:?}: {msg}");
    }
}

#[test]
fn serve_takes_the_events_filters() {
    let cli = Cli::try_parse_from([
        "tracker",
        "serve",
        "--events-json",
        "/var/log/tracker/events.json",
        "-e",
        "ALL",
        "-p",
        "udp",
        "--dport",
        "53",
        "-s",
        "10.0.0.0/8",
        "-m",
        "0x10/0xf0",
        "-f",
        "ipv4",
        "--orig-zone",
        "4",
        "-n",
    ])
    .unwrap();
    let Command::Serve(a) = cli.command else {
        panic!("not serve")
    };
    assert_eq!(a.event_mask, Some(EventKinds::ALL));
    assert_eq!(a.filter.proto, Some(Protocol(17)));
    assert_eq!(a.filter.dport, Some(53));
    assert_eq!(a.filter.src, Some("10.0.0.0/8".parse().unwrap()));
    assert_eq!(
        a.filter.mark,
        Some(MarkMask {
            value: 0x10,
            mask: 0xf0
        })
    );
    assert_eq!(a.filter.family, Some(Family::Ipv4));
    assert_eq!(a.filter.orig_zone, Some(4));
    assert_eq!(a.filter.src_nat, Some(None));
    assert_eq!(a.filter.first_given(), Some("-p/--proto"));

    // Parsed without --events-json too: serve refuses it with its own sentence.
    let cli = Cli::try_parse_from(["tracker", "serve", "--state", "ESTABLISHED"]).unwrap();
    let Command::Serve(a) = cli.command else {
        panic!("not serve")
    };
    assert_eq!(a.filter.first_given(), Some("--state"));
    let cli = Cli::try_parse_from(["tracker", "serve", "--all-netns"]).unwrap();
    let Command::Serve(a) = cli.command else {
        panic!("not serve")
    };
    assert_eq!(a.filter.first_given(), None);
}

/// A filter option as clap knows it.
#[derive(Debug, PartialEq)]
struct FilterOption {
    id: String,
    short: Option<char>,
    long: Option<String>,
    aliases: Vec<String>,
    hidden: bool,
}

/// The options of a command's `FilterArgs`, in their order.
fn filter_options(command: &str) -> Vec<FilterOption> {
    let cmd = Cli::command();
    let sub = cmd.find_subcommand(command).unwrap();
    let group = sub
        .get_groups()
        .find(|g| g.get_id() == "FilterArgs")
        .expect("the FilterArgs group");
    group
        .get_args()
        .map(|id| {
            let a = sub.get_arguments().find(|a| a.get_id() == id).unwrap();
            FilterOption {
                id: id.to_string(),
                short: a.get_short(),
                long: a.get_long().map(str::to_string),
                aliases: a
                    .get_visible_aliases()
                    .unwrap_or_default()
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
                hidden: a.is_hide_set(),
            }
        })
        .collect()
}

#[test]
fn events_and_serve_share_the_filters() {
    let events = filter_options("events");
    assert_eq!(events, filter_options("serve"));
    let longs: Vec<_> = events.iter().filter_map(|o| o.long.as_deref()).collect();
    assert_eq!(
        longs,
        [
            "proto",
            "src",
            "dst",
            "reply-src",
            "reply-dst",
            "sport",
            "dport",
            "state",
            "mark",
            "zone",
            "orig-zone",
            "reply-zone",
            "family",
            "src-nat",
            "dst-nat",
            "any-nat",
            "label",
            "secmark"
        ]
    );
    let shorts: String = events.iter().filter_map(|o| o.short).collect();
    assert_eq!(shorts, "psdrqmwfngjlc");
    // The aliases conntrack users type.
    assert_eq!(events[1].aliases, ["orig-src"]);
    assert_eq!(events[2].aliases, ["orig-dst"]);
    // -l and -c are parsed only to be refused: hidden from the help.
    assert!(events[16].hidden && events[17].hidden);
    assert!(events[..16].iter().all(|o| !o.hidden));
}
