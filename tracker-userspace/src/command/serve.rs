//! `tracker serve`: the tracker as a service. It attaches like `events`,
//! then answers Prometheus scrapes from the kernel's maps (live connections
//! and closed flows per mark, events by kind) and, when asked, appends every
//! event to a JSON-lines file, until SIGTERM or SIGINT. The filters of
//! `tracker events` choose what goes to that file, and nothing else.
//!
//! Everything that can fail on the command line or the machine (a second
//! instance, a busy port, an unwritable file) is checked before the hooks
//! attach, so a refusal leaves nothing attached or pinned.

use std::fs::File;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracker_common::KernelFilter;

use crate::cli::{Cli, ServeArgs};
use crate::command::{self, Opened, UsageError, filters};
use crate::counts::{MapCounts, dump, expired::Paced, follow::Follower, maps};
use crate::event::{Event, EventKind};
use crate::filter::{Filter, FilterError};
use crate::metrics::{self, MarkLabels, Snapshot, http};
use crate::model::{EventKinds, NetnsArg, NetnsSelection};
use crate::output::{OutputFormat, Writer};
use crate::source::{Source, acct, sysctl};

pub async fn run(cli: &Cli, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    if let Some(sentence) = refused_option(args) {
        return Err(UsageError(sentence).into());
    }
    let selection = args.netns.selection();
    let netns = command::resolve_netns(&selection)?;
    let file_filter = file_filter(args)
        .map_err(|e| UsageError(e.to_string()))?
        .with_netns(netns);
    let _instance = claim_instance(netns)?;
    let listener = bind(args.listen)?;
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "tracker: warning: the metrics endpoint {} is reachable from the network; it has no \
             authentication",
            args.listen
        );
    }
    let mut events_file = args
        .events_json
        .as_deref()
        .map(EventsFile::open)
        .transpose()?;
    let acct_guard =
        match acct::prepare(&selection, args.set_nf_conntrack_acct).map_err(|e| anyhow!(e))? {
            acct::Acct::On => None,
            acct::Acct::Set(guard, note) => {
                eprintln!("tracker: {note}");
                Some(guard)
            }
            acct::Acct::Warn(warning) => {
                eprintln!("tracker: warning: {warning}");
                None
            }
        };

    let request = command::Request {
        kernel_filter: kernel_filter(events_file.is_some().then_some(&file_filter), netns),
        kinds: Some(file_filter.kinds),
        netlink_kinds: Some(EventKinds::ALL),
        set_events_sysctl: args.set_nf_conntrack_events,
        account_closed: true,
        ..command::Request::new(cli, &selection)
    };
    let Opened {
        mut source,
        description,
    } = command::open_source(&request).await?;
    let mut counts = Counts::of(&mut source)?;
    let table = Table::open(&selection);
    let mut marks = MarkLabels::new(args.max_marks as usize);

    let (scrape_tx, mut scrapes) = mpsc::channel::<http::Scrape>(16);
    let server = http::spawn(listener, scrape_tx);
    eprintln!(
        "tracker: serving metrics on http://{}/metrics ({description})",
        args.listen
    );

    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut upkeep = tokio::time::interval(Duration::from_secs(2));
    let mut batch = Vec::with_capacity(1024);
    let mut failure = None;
    loop {
        tokio::select! {
            r = source.next_batch(&mut batch) => {
                if let Err(e) = r {
                    failure = Some(e.context("reading events"));
                    break;
                }
                for ev in &batch {
                    counts.apply(ev);
                }
                if let Some(f) = events_file.as_mut()
                    && let Err(e) = f.write_batch(&file_filter, batch.drain(..))
                {
                    failure = Some(e);
                    break;
                }
                batch.clear();
            }
            Some(reply) = scrapes.recv() => {
                let snapshot = counts.snapshot(&source, netns, &table);
                let _ = reply.send(metrics::render(&snapshot, &mut marks).map_err(|e| e.to_string()));
            }
            _ = upkeep.tick() => source.upkeep(),
            _ = sighup.recv() => {
                if let Some(f) = events_file.as_mut()
                    && let Err(e) = f.reopen()
                {
                    failure = Some(e);
                    break;
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    // The events the kernel already handed over still reach the events file.
    if failure.is_none()
        && let Some(f) = events_file.as_mut()
    {
        batch.clear();
        let written = source
            .pending(&mut batch)
            .and_then(|()| f.write_batch(&file_filter, batch.drain(..)));
        if let Err(e) = written {
            failure = Some(e);
        }
    }
    server.abort();
    let lost = source.lost();
    // Detaches the hooks and removes the pins before the last line.
    drop(counts);
    drop(source);
    drop(acct_guard);
    eprintln!("tracker: stopped serving; {lost} events lost.");
    match failure {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Options `tracker serve` parses only to refuse them: the conntrack -E
/// options `events` refuses, and filters without the file they select for.
fn refused_option(args: &ServeArgs) -> Option<String> {
    if let Some(sentence) = filters::refused_option(&args.filter) {
        return Some(sentence);
    }
    if args.events_json.is_some() {
        return None;
    }
    let option = match args.event_mask {
        Some(_) => "-e/--event-mask",
        None => args.filter.first_given()?,
    };
    Some(format!(
        "{option} only applies to --events-json, which is not given: the filters select the \
         events written to that file, never what the metrics count"
    ))
}

/// What goes to --events-json: the filters of `tracker events`, for NEW and
/// DESTROY unless -e says otherwise (UPDATE costs a hook run per change).
fn file_filter(args: &ServeArgs) -> Result<Filter, FilterError> {
    let kinds = args.event_mask.unwrap_or(EventKinds {
        new: true,
        update: false,
        destroy: true,
    });
    filters::build(&args.filter, kinds)
}

/// What the eBPF programs let into the ring: what the file wants, and
/// nothing without a file.
///
/// The metrics must not depend on it, and do not: the live counts per mark
/// move before the programs read the filter, and the closed-flow totals and
/// events by kind look at its netns alone (tracker-ebpf's `emit.rs`), which
/// is the watched namespace either way. The file's kinds, family, protocol
/// and mark only decide what reaches the ring, which only the file reads.
/// (The netlink fallback has no kernel filter: every event is followed for
/// the metrics, and the file's filter is applied after that.)
fn kernel_filter(file: Option<&Filter>, netns: Option<u32>) -> KernelFilter {
    // No kind bit set: nothing goes to the ring.
    let filter = file.map_or_else(KernelFilter::default, Filter::kernel_filter);
    KernelFilter {
        netns: netns.unwrap_or(0),
        ..filter
    }
}

/// One `tracker serve` per watched namespace: two would attach the hooks
/// twice and export the same connections twice. The claim is an abstract
/// unix socket, which the kernel releases when the process ends however it
/// ends, so a crashed instance never blocks the next one.
fn claim_instance(netns: Option<u32>) -> anyhow::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt as _;
    let name = match netns {
        Some(inode) => format!("tracker-serve/netns:{inode}"),
        None => "tracker-serve/all-netns".to_string(),
    };
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .context("naming the instance socket")?;
    UnixListener::bind_addr(&addr).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow!(
                "another `tracker serve` is already running for {}: stop it first (its metrics \
                 already cover these connections)",
                match netns {
                    Some(inode) => format!("network namespace {inode}"),
                    None => "all network namespaces".to_string(),
                }
            )
        } else {
            anyhow!("claiming the instance socket: {e}")
        }
    })
}

fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let std_listener = std::net::TcpListener::bind(addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow!(
            "cannot listen on {addr}: the port is in use by another program; choose another \
             with --listen ADDR:PORT"
        ),
        std::io::ErrorKind::AddrNotAvailable => anyhow!(
            "cannot listen on {addr}: no interface of this host has that address; choose \
             another with --listen ADDR:PORT"
        ),
        _ => anyhow!("cannot listen on {addr}: {e}"),
    })?;
    std_listener
        .set_nonblocking(true)
        .context("configuring the metrics socket")?;
    tokio::net::TcpListener::from_std(std_listener).context("registering the metrics socket")
}

/// `--events-json`: JSON lines appended to a file that log rotation may
/// move away; SIGHUP reopens the path.
struct EventsFile {
    path: PathBuf,
    writer: Writer<BufWriter<File>>,
}

impl EventsFile {
    fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(EventsFile {
            path: path.to_path_buf(),
            writer: Self::writer(path)?,
        })
    }

    fn writer(path: &Path) -> anyhow::Result<Writer<BufWriter<File>>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| -> anyhow::Error {
                let msg = format!("cannot open --events-json {}: {e}", path.display());
                match e.kind() {
                    // A path that cannot exist is the command line's fault.
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory => {
                        UsageError(msg).into()
                    }
                    _ => anyhow!(msg),
                }
            })?;
        Ok(Writer::new(
            BufWriter::with_capacity(64 * 1024, file),
            OutputFormat::Json,
            false,
        ))
    }

    /// Writes the events that pass `filter`, then flushes: once per batch
    /// of the source, and at exit for the events it had already handed over.
    fn write_batch(
        &mut self,
        filter: &Filter,
        events: impl Iterator<Item = Event>,
    ) -> anyhow::Result<()> {
        for ev in events.filter(|ev| filter.matches(ev)) {
            self.writer
                .write_event(&ev)
                .with_context(|| format!("writing {}", self.path.display()))?;
        }
        self.flush()
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.writer
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }

    fn reopen(&mut self) -> anyhow::Result<()> {
        self.flush()?;
        self.writer = Self::writer(&self.path)?;
        Ok(())
    }
}

/// Where the numbers of a scrape come from.
enum Counts {
    /// The kernel's maps, kept by the hooks.
    Maps {
        counts: MapCounts,
        /// The entries to leave out as expired, with passes over LIVE and
        /// LIVE_SLOTS paced for frequent scrapes (`None` where the kernel
        /// refused the iterators). Boxed, as the closed-flow maps are.
        paced: Option<Box<Paced>>,
        /// Boxed: the maps' handles are large, and read once per scrape.
        closed: Box<maps::ClosedMaps>,
    },
    /// Followed from ctnetlink events (no kernel maps without the hooks).
    Followed { follower: Follower, seen: [u64; 3] },
}

impl Counts {
    fn of(source: &mut Source) -> anyhow::Result<Self> {
        Ok(match source {
            Source::Ebpf(s) => {
                let closed =
                    Box::new(maps::ClosedMaps::take(s.ebpf_mut()).map_err(|e| anyhow!(e))?);
                let mut counts = s.map_counts().map_err(|e| anyhow!(e))?;
                // A pass over every live entry per scrape would cost in
                // proportion to the table; `Paced` spaces them out.
                let pins = std::mem::replace(
                    &mut counts.expired,
                    crate::counts::expired::ExpiredPins::none(),
                );
                let paced = if pins.is_empty() {
                    None
                } else {
                    Some(Box::new(Paced::new(
                        pins,
                        s.live_maps().map_err(|e| anyhow!(e))?,
                    )))
                };
                Counts::Maps {
                    counts,
                    paced,
                    closed,
                }
            }
            // The events socket is already subscribed: what changes during
            // the dump waits in it and is applied after (see `Follower`).
            Source::Netlink(_) => Counts::Followed {
                follower: Follower::seeded(
                    &dump::dump_marks().context("counting the table at start-up")?,
                ),
                seen: [0; 3],
            },
        })
    }

    fn apply(&mut self, ev: &Event) {
        if let Counts::Followed { follower, seen } = self {
            follower.apply(ev);
            seen[match ev.kind {
                EventKind::New => 0,
                EventKind::Update => 1,
                EventKind::Destroy => 2,
            }] += 1;
        }
    }

    fn snapshot(&mut self, source: &Source, netns: Option<u32>, table: &Table) -> Snapshot {
        let mut s = Snapshot {
            source: source.name(),
            lost: source.lost(),
            table: table.read(),
            ..Snapshot::default()
        };
        match (self, source) {
            (
                Counts::Maps {
                    counts,
                    paced,
                    closed,
                },
                Source::Ebpf(ebpf),
            ) => {
                s.connections = counts.rows_less(netns, || match paced {
                    Some(p) => p.per_key().unwrap_or_else(|e| {
                        log::warn!("reading the expired entries: {e}: they stay counted");
                        Default::default()
                    }),
                    None => Default::default(),
                });
                s.closed = closed.rows(netns);
                s.events = ebpf.seen();
                s.hooks = ebpf.attached_hooks();
                s.ring_size = Some(ebpf.ring_size());
            }
            (Counts::Followed { follower, seen }, _) => {
                s.connections = follower.rows();
                s.closed = follower.closed();
                s.events = *seen;
            }
            _ => {}
        }
        s
    }
}

/// `nf_conntrack_count` and `nf_conntrack_max` of the watched namespace,
/// opened once (inside it) and read at each scrape.
struct Table {
    files: Option<(File, File)>,
}

impl Table {
    fn open(selection: &NetnsSelection) -> Self {
        let path = match selection {
            NetnsSelection::Current => None,
            NetnsSelection::One(NetnsArg::Path(p)) => Some(p.as_path()),
            // A namespace given by inode cannot be entered, and "all" has no
            // single table.
            _ => return Table { files: None },
        };
        let open = |name| sysctl::open_in(&format!("/proc/sys/net/netfilter/{name}"), path, false);
        let files = match (open("nf_conntrack_count"), open("nf_conntrack_max")) {
            (Ok(c), Ok(m)) => Some((c, m)),
            _ => None,
        };
        Table { files }
    }

    fn read(&self) -> Option<(u64, u64)> {
        let (c, m) = self.files.as_ref()?;
        let value = |f: &File| -> Option<u64> {
            let mut f = f.try_clone().ok()?;
            sysctl::read_value(&mut f).ok()?.parse().ok()
        };
        Some((value(c)?, value(m)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MarkMask, Protocol};

    fn cli(argv: &[&str]) -> Cli {
        use clap::Parser as _;
        Cli::try_parse_from(argv).unwrap()
    }

    /// `tracker serve ARGS`, parsed.
    fn serve_args(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["tracker", "serve"];
        argv.extend_from_slice(args);
        let crate::cli::Command::Serve(a) = cli(&argv).command else {
            unreachable!()
        };
        *a
    }

    /// The filter `tracker events ARGS` builds.
    fn events_filter(args: &[&str]) -> Result<Filter, FilterError> {
        let mut argv = vec!["tracker", "events"];
        argv.extend_from_slice(args);
        let crate::cli::Command::Events(a) = cli(&argv).command else {
            unreachable!()
        };
        command::events::filter_from_args(&a)
    }

    fn with_file<'a>(args: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["--events-json", "/var/log/tracker/events.json"];
        v.extend_from_slice(args);
        v
    }

    #[test]
    fn the_file_filter_is_the_events_filter() {
        for words in [
            &["-e", "NEW,DESTROY", "-p", "udp", "-m", "2"][..],
            &[
                "-e",
                "ALL",
                "-s",
                "10.0.0.0/8",
                "-q",
                "198.51.100.7",
                "--dport",
                "53",
            ],
            &[
                "-e",
                "DESTROY",
                "-f",
                "ipv6",
                "-d",
                "2001:db8::/32",
                "--sport",
                "40000",
            ],
            &["-e", "NEW", "--state", "SYN_SENT,ESTABLISHED", "-n", "-g"],
            &[
                "-e",
                "UPDATE",
                "-w",
                "5",
                "--orig-zone",
                "1",
                "--reply-zone",
                "2",
                "-j",
            ],
            &["-e", "ALL", "-r", "10.1.0.0/16", "-m", "0x10/0xf0"],
        ] {
            let serve = file_filter(&serve_args(&with_file(words))).unwrap();
            assert_eq!(Ok(serve), events_filter(words), "{words:?}");
        }
        // Without -e, NEW and DESTROY: as the eBPF source of `events` shows.
        let f = file_filter(&serve_args(&with_file(&["-p", "tcp"]))).unwrap();
        assert_eq!(
            f,
            events_filter(&["-e", "NEW,DESTROY", "-p", "tcp"]).unwrap()
        );
        // The same contradictions, the same sentence.
        for words in [
            &["-f", "ipv6", "-s", "10.0.0.1"][..],
            &["-p", "udp", "--state", "ESTABLISHED"],
        ] {
            let serve = file_filter(&serve_args(&with_file(words))).unwrap_err();
            assert_eq!(Err(serve), events_filter(words), "{words:?}");
        }
    }

    #[test]
    fn filters_need_the_file() {
        for (words, option) in [
            (&["-p", "udp"][..], "-p/--proto"),
            (&["-m", "0"], "-m/--mark"),
            (&["--dport", "53", "-s", "10.0.0.1"], "-s/--src"),
            (&["--state", "ESTABLISHED"], "--state"),
            (&["-n"], "-n/--src-nat"),
            (&["--orig-zone", "3"], "--orig-zone"),
            (&["-e", "NEW", "-p", "tcp"], "-e/--event-mask"),
        ] {
            assert_eq!(
                refused_option(&serve_args(words)),
                Some(format!(
                    "{option} only applies to --events-json, which is not given: the filters \
                     select the events written to that file, never what the metrics count"
                )),
                "{words:?}"
            );
            assert_eq!(refused_option(&serve_args(&with_file(words))), None);
        }
        assert_eq!(refused_option(&serve_args(&[])), None);
        assert_eq!(refused_option(&serve_args(&["--all-netns"])), None);
        // What `events` refuses, serve refuses with the same sentence.
        assert_eq!(
            refused_option(&serve_args(&with_file(&["-n", "198.51.100.1"]))),
            filters::refused_option(&serve_args(&["-n", "198.51.100.1"]).filter)
        );
        assert!(
            refused_option(&serve_args(&["-l", "blue"]))
                .unwrap()
                .starts_with("-l/--label is not supported")
        );
    }

    /// Refused before anything is opened, as a usage error (exit code 2).
    #[test]
    fn a_filter_without_the_file_is_a_usage_error() {
        let c = cli(&["tracker", "serve", "--listen", "127.0.0.1:1", "-m", "2"]);
        let crate::cli::Command::Serve(args) = &c.command else {
            unreachable!()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt.block_on(run(&c, args)).unwrap_err();
        let usage = e.downcast_ref::<UsageError>().expect("a usage error");
        assert!(
            usage
                .0
                .starts_with("-m/--mark only applies to --events-json")
        );
    }

    #[test]
    fn the_kernel_filter_keeps_the_watched_namespace() {
        let f = file_filter(&serve_args(&with_file(&["-p", "udp", "-m", "0x2/0xf"])))
            .unwrap()
            .with_netns(Some(77));
        let k = kernel_filter(Some(&f), Some(77));
        assert_eq!(
            (k.kinds, k.l4proto, k.match_mark, k.mark, k.mark_mask),
            (3, 17, 1, 2, 0xf)
        );
        // The accounting's namespace, whatever the file's filter says.
        assert_eq!(k.netns, 77);
        assert_eq!(kernel_filter(Some(&f), None).netns, 0);
        // No file: nothing to the ring, the namespace still watched.
        assert_eq!(
            kernel_filter(None, Some(77)),
            KernelFilter {
                netns: 77,
                ..KernelFilter::default()
            }
        );
        assert_eq!(f.proto, Some(Protocol(17)));
        assert_eq!(
            f.mark,
            Some(MarkMask {
                value: 2,
                mask: 0xf
            })
        );
    }
}
