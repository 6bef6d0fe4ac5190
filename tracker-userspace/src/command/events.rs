//! `tracker events`: the `conntrack -E` counterpart.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{Cli, EventsArgs};
use crate::command::{self, Opened, filters};
use crate::filter::{Filter, FilterError};
use crate::model::EventKinds;
use crate::output::{OutputError, Writer};
use crate::source::Notice;

pub async fn run(cli: &Cli, args: &EventsArgs) -> anyhow::Result<ExitCode> {
    if let Some(sentence) = filters::refused_option(&args.filter) {
        return Err(command::UsageError(sentence).into());
    }
    let netns = command::resolve_netns(&args.netns.selection())?;
    let filter = filter_from_args(args)
        .map_err(|e| command::UsageError(e.to_string()))?
        .with_netns(netns);
    let netns_selection = args.netns.selection();
    let request = command::Request {
        kernel_filter: filter.kernel_filter(),
        kinds: args.event_mask,
        set_events_sysctl: args.set_nf_conntrack_events,
        netlink_buffer: args.buffer_size.map(|b| b.0 as usize),
        netlink_only: args.output.netlink_only(),
        ..command::Request::new(cli, &netns_selection)
    };
    let Opened {
        mut source,
        description,
    } = command::open_source(&request).await?;
    Notice::Listening(description).say();

    let mut out = Writer::stdout(args.output);
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    // A closed terminal ends the run like ^C: hooks detach, sysctls are restored.
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let deadline = args.duration.map(|d| d.0).unwrap_or(Duration::MAX);
    let stop_after = tokio::time::sleep(deadline.min(Duration::from_secs(100 * 365 * 86400)));
    tokio::pin!(stop_after);
    let limit = args.count.unwrap_or(u64::MAX);
    let mut batch = Vec::with_capacity(1024);
    let mut shown: u64 = 0;
    let mut failure = None;
    let mut upkeep = tokio::time::interval(Duration::from_secs(2));
    // Stopped by a signal or --duration, not by the output or --count: the
    // events the kernel has already handed over are still shown.
    let mut show_pending = false;

    'run: loop {
        tokio::select! {
            r = source.next_batch(&mut batch) => {
                if let Err(e) = r {
                    failure = Some(e.context("reading events"));
                    break 'run;
                }
                match show(&mut out, &filter, &mut batch, &mut shown, limit) {
                    Ok(()) => {}
                    Err(Stop::Closed) => break 'run,
                    Err(Stop::Failed(e)) => {
                        failure = Some(e);
                        break 'run;
                    }
                }
                if shown >= limit {
                    break 'run;
                }
            }
            _ = upkeep.tick() => source.upkeep(),
            _ = sigint.recv() => { show_pending = true; break 'run }
            _ = sigterm.recv() => { show_pending = true; break 'run }
            _ = sighup.recv() => { show_pending = true; break 'run }
            _ = &mut stop_after => { show_pending = true; break 'run }
        }
    }
    if show_pending {
        batch.clear();
        match source.pending(&mut batch) {
            Ok(()) => {
                if let Err(Stop::Failed(e)) = show(&mut out, &filter, &mut batch, &mut shown, limit)
                {
                    failure = Some(e);
                }
            }
            Err(e) => failure = Some(e.context("reading events")),
        }
    }
    match out.flush() {
        Ok(()) | Err(OutputError::Closed) => {}
        Err(e) => {
            failure.get_or_insert(e.into());
        }
    }
    let lost = source.lost();
    let source_name = source.name();
    let stats: Vec<String> = source
        .stats()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    log::info!("source counters: {}", stats.join(" "));
    // The eBPF source detaches its hooks, removes its pins and restores the
    // event-cache sysctl here, before the summary line.
    drop(source);
    match source_name {
        // ENOBUFS says events were dropped, not how many.
        "netlink" if lost > 0 => eprintln!(
            "tracker: {shown} flow events have been shown, {lost} lost. ({lost} netlink \
             receive-buffer overruns, each losing an unknown number of events; try a larger \
             --buffer-size or the eBPF source)"
        ),
        _ => eprintln!("tracker: {shown} flow events have been shown, {lost} lost."),
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Why [`show`] stopped.
enum Stop {
    /// The reader of the output went away.
    Closed,
    Failed(anyhow::Error),
}

/// Writes the events of `batch` that pass `filter`, until `shown` reaches
/// `limit`, then flushes: once per batch of the source, and once more at
/// exit for the events it had already handed over.
fn show<W: std::io::Write>(
    out: &mut Writer<W>,
    filter: &Filter,
    batch: &mut Vec<crate::event::Event>,
    shown: &mut u64,
    limit: u64,
) -> Result<(), Stop> {
    let stop = |e: OutputError| match e {
        OutputError::Closed => Stop::Closed,
        e => Stop::Failed(e.into()),
    };
    for ev in batch.drain(..) {
        if *shown >= limit {
            break;
        }
        if filter.matches(&ev) {
            out.write_event(&ev).map_err(stop)?;
            *shown += 1;
        }
    }
    out.flush().map_err(stop)
}

/// Builds the filter from `tracker events` options.
pub fn filter_from_args(args: &EventsArgs) -> Result<Filter, FilterError> {
    // A source without UPDATE (eBPF by default) never produces them.
    filters::build(&args.filter, args.event_mask.unwrap_or(EventKinds::ALL))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tracker events ARGS`, parsed, for tests.
    fn args_from_command_line(args: &[&str]) -> EventsArgs {
        use clap::Parser as _;

        let mut argv = vec!["tracker", "events"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).unwrap();
        let crate::cli::Command::Events(a) = cli.command else {
            unreachable!()
        };
        *a
    }

    /// The filter `tracker events ARGS` builds.
    fn filter_from_command_line(args: &[&str]) -> Result<Filter, FilterError> {
        filter_from_args(&args_from_command_line(args))
    }

    fn refusal(args: &[&str]) -> Option<String> {
        filters::refused_option(&args_from_command_line(args).filter)
    }

    #[test]
    fn refused_options_name_the_alternative() {
        for (args, sentence) in [
            (
                &["-l", "blue"][..],
                "-l/--label is not supported: the tracker does not read connection labels; give \
                 the connections a connmark and use -m VALUE[/MASK]",
            ),
            (
                &["--secmark", "7"],
                "-c/--secmark is not supported: the tracker does not read the SELinux secmark; \
                 give the connections a connmark and use -m VALUE[/MASK]",
            ),
            (
                &["-n", "198.51.100.1"],
                "-n 198.51.100.1 is not supported: use -n -q 198.51.100.1 (source NAT whose \
                 reply destination, the address it rewrote to, is 198.51.100.1)",
            ),
            (
                &["--dst-nat", "10.0.0.9"],
                "-g 10.0.0.9 is not supported: use -g -r 10.0.0.9 (destination NAT whose reply \
                 source, the address it rewrote to, is 10.0.0.9)",
            ),
            (
                &["-j", "10.0.0.9"],
                "-j 10.0.0.9 is not supported: use -n -q 10.0.0.9 or -g -r 10.0.0.9 (one command \
                 each)",
            ),
        ] {
            assert_eq!(refusal(args).as_deref(), Some(sentence), "{args:?}");
        }
        // The flag forms still filter.
        assert_eq!(refusal(&["-n", "-g", "-p", "tcp"]), None);
        assert_eq!(refusal(&["-j"]), None);
        let f = filter_from_command_line(&["-n", "-g"]).unwrap();
        assert!(f.nat.src && f.nat.dst && !f.nat.any);
    }
}
