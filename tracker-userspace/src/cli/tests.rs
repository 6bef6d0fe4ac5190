//! The command-line grammar: parses, refusals and defaults.

use std::time::Duration;

use super::*;
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
    assert_eq!(a.proto, Some(Protocol(6)));
    assert_eq!(a.dport, Some(443));
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
    ] {
        let err = Cli::try_parse_from(args).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{args:?}");
        let msg = err.to_string();
        assert!(msg.contains(bad), "{args:?}: {msg}");
    }
}
