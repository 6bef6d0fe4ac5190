//! `tracker serve`: the tracker as a service. It attaches like `events`,
//! then answers Prometheus scrapes from the kernel's maps (live connections
//! and closed flows per mark, events by kind) and, when asked, appends every
//! event to a JSON-lines file, until SIGTERM or SIGINT.
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
use tracker_common::{KernelFilter, filter_kind};

use crate::cli::{Cli, ServeArgs};
use crate::command::{self, Opened, UsageError};
use crate::counts::{Reader, dump, follow::Follower, maps};
use crate::event::{Event, EventKind};
use crate::metrics::{self, MarkLabels, Snapshot, http};
use crate::model::{EventKinds, NetnsArg, NetnsSelection};
use crate::output::{OutputFormat, Writer};
use crate::source::{Source, acct, sysctl};

pub async fn run(cli: &Cli, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let selection = args.netns.selection();
    let netns = command::resolve_netns(&selection)?;
    let _instance = claim_instance(netns)?;
    let listener = bind(args.listen)?;
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "tracker: warning: the metrics endpoint {} is reachable from the network; it has no \
             authentication",
            args.listen
        );
    }
    let file_kinds = args.event_mask.unwrap_or(EventKinds {
        new: true,
        update: false,
        destroy: true,
    });
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
        // Only what goes to the file passes the ring; the metrics are kept
        // in maps and per-kind counters whatever the filter says.
        kernel_filter: KernelFilter {
            kinds: if events_file.is_some() {
                kind_bits(file_kinds)
            } else {
                0
            },
            netns: netns.unwrap_or(0),
            ..Default::default()
        },
        kinds: Some(file_kinds),
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
                for ev in batch.drain(..) {
                    counts.apply(&ev);
                    if let Some(f) = events_file.as_mut()
                        && wanted(file_kinds, &ev)
                        && let Err(e) = f.write(&ev)
                    {
                        failure = Some(e);
                        break;
                    }
                }
                if let Some(f) = events_file.as_mut()
                    && let Err(e) = f.flush()
                {
                    failure = Some(e);
                }
                if failure.is_some() {
                    break;
                }
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

fn kind_bits(k: EventKinds) -> u32 {
    (if k.new { filter_kind::NEW } else { 0 })
        | (if k.update { filter_kind::UPDATE } else { 0 })
        | (if k.destroy { filter_kind::DESTROY } else { 0 })
}

fn wanted(k: EventKinds, ev: &Event) -> bool {
    match ev.kind {
        EventKind::New => k.new,
        EventKind::Update => k.update,
        EventKind::Destroy => k.destroy,
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

    fn write(&mut self, ev: &Event) -> anyhow::Result<()> {
        self.writer
            .write_event(ev)
            .with_context(|| format!("writing {}", self.path.display()))
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
        reader: Reader,
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
                let reader = Reader::Maps(s.map_counts().map_err(|e| anyhow!(e))?);
                Counts::Maps { reader, closed }
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

    fn snapshot(&self, source: &Source, netns: Option<u32>, table: &Table) -> Snapshot {
        let mut s = Snapshot {
            source: source.name(),
            lost: source.lost(),
            table: table.read(),
            ..Snapshot::default()
        };
        match (self, source) {
            (Counts::Maps { reader, closed }, Source::Ebpf(ebpf)) => {
                s.connections = reader.read(netns).unwrap_or_default();
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
