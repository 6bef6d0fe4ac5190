//! `tracker counts`: live connections per mark, from the kernel's count map
//! (a running tracker's pinned maps, or maps this command attaches itself).
//! The netlink fallback has no kernel map: it reads one mark-only dump per
//! refresh — exact, never stale, and throttled to a tenth of the wall clock.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tracker_common::KernelFilter;

use crate::cli::{Cli, CountsArgs, CountsFormat};
use crate::command::{self, Opened};
use crate::counts::{Reader, maps};
use crate::model::EventKinds;
use crate::output::counts::{CountsMeta, CountsReport};
use crate::source::Source;

pub async fn run(cli: &Cli, args: &CountsArgs) -> anyhow::Result<ExitCode> {
    let netns = command::resolve_netns(&args.netns.selection())?;
    // Kept alive while the maps are read: dropping it detaches the hooks.
    let mut _own: Option<Opened> = None;
    let (reader, source_name) = match maps::running_instance() {
        Some(pinned) => (Reader::Maps(pinned), "ebpf"),
        None => {
            let netns_selection = args.netns.selection();
            let request = command::Request {
                // Nothing goes to the ring: the counts are kept in maps.
                kernel_filter: KernelFilter {
                    kinds: 0,
                    ..Default::default()
                },
                kinds: Some(EventKinds {
                    new: true,
                    update: false,
                    destroy: true,
                }),
                ..command::Request::new(cli, &netns_selection)
            };
            let mut opened = command::open_source(&request).await?;
            let reader = match &mut opened.source {
                Source::Ebpf(s) => Reader::Maps(s.map_counts().map_err(anyhow::Error::msg)?),
                Source::Netlink(_) => Reader::Dump,
            };
            let name = opened.source.name();
            _own = Some(opened);
            (reader, name)
        }
    };
    let meta = CountsMeta {
        source: source_name.to_string(),
        stale: false,
    };
    let terminal = std::io::stdout().is_terminal();
    let mut stdout = std::io::stdout();
    // A dump costs the kernel time in proportion to the table: in the netlink
    // fallback keep refreshing below a tenth of the wall clock.
    let mut min_interval = Duration::ZERO;
    let mut throttle_said = false;
    loop {
        let started = Instant::now();
        let mut rows = reader.read(netns)?;
        if matches!(reader, Reader::Dump) {
            min_interval = started.elapsed() * 10;
            if args.watch.is_some_and(|w| w.0 < min_interval) && !throttle_said {
                throttle_said = true;
                eprintln!(
                    "tracker: a table dump took {:.2} s: refreshing every {:.1} s at most, to \
                     keep its cost under 10 % (the eBPF source needs no dump)",
                    started.elapsed().as_secs_f64(),
                    min_interval.as_secs_f64()
                );
            }
        }
        if let Some(m) = args.mark {
            rows.retain(|r| m.matches(r.mark));
        }
        let report = CountsReport::new(&rows, &meta);
        let text = match args.output {
            CountsFormat::Json => report.render_json().context("encoding counts")? + "\n",
            _ => report.render_text(),
        };
        if args.watch.is_some() && terminal {
            // Redraw in place: home the cursor and clear the screen.
            write!(stdout, "\x1b[H\x1b[2J")?;
        }
        if let Err(e) = stdout
            .write_all(text.as_bytes())
            .and_then(|_| stdout.flush())
        {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e.into());
        }
        let Some(interval) = args.watch else { break };
        tokio::select! {
            _ = tokio::time::sleep(interval.0.max(min_interval)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(ExitCode::SUCCESS)
}
