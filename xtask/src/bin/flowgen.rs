//! flowgen: the benchmarks' load generator. Makes new conntrack entries as
//! fast as it can (or at a paced rate) over loopback, bounded in count and
//! time, and prints one line: `flowgen: <mode> flows=N seconds=S rate=R errors=E`.
//!
//! - `udp`: one unconnected socket, one `sendto` per flow; flow i goes to
//!   `BASE + i / NPORTS` port `PORT_LO + i % NPORTS`, so every datagram is a
//!   new 5-tuple (distinct destinations; the source is fixed).
//! - `tcp`: a listener thread on 0.0.0.0:PORT accepts and closes; the client
//!   connects to `BASE + i` (a new address per connection, so ephemeral
//!   ports and TIME_WAIT never run out) and closes at once.
//!
//! Loopback only: every address is in 127.0.0.0/8. Std and libc only.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Bounded loopback load generator for `cargo xtask bench`")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// One new UDP flow per datagram.
    Udp {
        #[command(flatten)]
        bounds: Bounds,
        /// First destination address (must be in 127.0.0.0/8).
        #[arg(long, default_value = "127.1.0.0")]
        base: Ipv4Addr,
        /// Destination ports LO-HI, cycled before the address moves on.
        #[arg(long, default_value = "10000-10999", value_parser = parse_range)]
        ports: (u16, u16),
        /// Datagrams per second; 0 = as fast as possible.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Index of the first flow (so that runs in one namespace do not reuse
        /// tuples that are still in the table).
        #[arg(long, default_value_t = 0)]
        start: u64,
    },
    /// TCP connect + close, one new connection per flow.
    Tcp {
        #[command(flatten)]
        bounds: Bounds,
        /// First destination address (must be in 127.0.0.0/8).
        #[arg(long, default_value = "127.2.0.0")]
        base: Ipv4Addr,
        #[arg(long, default_value_t = 8000)]
        port: u16,
        #[arg(long, default_value_t = 0)]
        start: u64,
    },
}

#[derive(Args)]
struct Bounds {
    /// Stop after this many flows.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s.split_once('-').ok_or("expected LO-HI")?;
    let lo: u16 = lo.parse().map_err(|e| format!("{lo}: {e}"))?;
    let hi: u16 = hi.parse().map_err(|e| format!("{hi}: {e}"))?;
    if lo == 0 || hi < lo {
        return Err(format!("bad port range {s}"));
    }
    Ok((lo, hi))
}

fn main() -> ExitCode {
    match run(Cli::parse().mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flowgen: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(mode: Mode) -> Result<()> {
    match mode {
        Mode::Udp {
            bounds,
            base,
            ports,
            rate,
            start,
        } => udp(&bounds, base, ports, rate, start),
        Mode::Tcp {
            bounds,
            base,
            port,
            start,
        } => tcp(&bounds, base, port, start),
    }
}

/// `base + offset` as an address, refusing to leave 127.0.0.0/8.
fn loopback(base: Ipv4Addr, offset: u64) -> Result<Ipv4Addr> {
    let addr = u64::from(u32::from(base)) + offset;
    let addr = u32::try_from(addr).map(Ipv4Addr::from).ok();
    match addr {
        Some(a) if a.octets()[0] == 127 && a != Ipv4Addr::new(127, 255, 255, 255) => Ok(a),
        _ => bail!("flow address {base} + {offset} leaves 127.0.0.0/8"),
    }
}

fn report(mode: &str, flows: u64, errors: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { flows as f64 / secs } else { 0.0 };
    println!("flowgen: {mode} flows={flows} seconds={secs:.3} rate={rate:.0} errors={errors}");
}

/// Sleeps until flow `done` is due when pacing at `rate` per second.
fn pace(started: Instant, done: u64, rate: u64) {
    if rate == 0 {
        return;
    }
    let due = started + Duration::from_secs_f64(done as f64 / rate as f64);
    let now = Instant::now();
    if due > now {
        thread::sleep(due - now);
    }
}

fn udp(bounds: &Bounds, base: Ipv4Addr, ports: (u16, u16), rate: u64, start: u64) -> Result<()> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the UDP socket")?;
    let nports = u64::from(ports.1 - ports.0) + 1;
    // Check the last address before sending anything.
    loopback(base, (start + bounds.count.saturating_sub(1)) / nports)?;
    let limit = Duration::from_secs_f64(bounds.seconds);
    let payload = [0u8; 16];
    let started = Instant::now();
    let (mut sent, mut errors) = (0u64, 0u64);
    // Paced: a batch is due every 1/rate s; checking the clock every 16
    // datagrams keeps the loop cheap at full speed.
    let batch = if rate == 0 {
        256
    } else {
        (rate / 1000).clamp(1, 16)
    };
    while sent < bounds.count {
        if sent % batch == 0 {
            if started.elapsed() >= limit {
                break;
            }
            pace(started, sent, rate);
        }
        let i = start + sent;
        let addr = loopback(base, i / nports)?;
        let port = ports.0 + (i % nports) as u16;
        match sock.send_to(&payload, SocketAddrV4::new(addr, port)) {
            Ok(_) => {}
            // A full table or a drop rule makes sendto fail (EPERM); the
            // flow still counts as offered.
            Err(_) => errors += 1,
        }
        sent += 1;
    }
    report("udp", sent, errors, started);
    Ok(())
}

fn tcp(bounds: &Bounds, base: Ipv4Addr, port: u16, start: u64) -> Result<()> {
    loopback(base, start + bounds.count)?;
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        .with_context(|| format!("binding port {port}"))?;
    // std listens with a backlog of 128: a burst of connects overflows it
    // while the accept thread waits for a core, and each overflow costs the
    // client a 1 s SYN retransmit. Listening again only raises the backlog.
    // SAFETY: a valid listening socket owned by `listener`.
    if unsafe { libc::listen(listener.as_raw_fd(), 4096) } != 0 {
        bail!("listen: {}", io::Error::last_os_error());
    }
    thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    let limit = Duration::from_secs_f64(bounds.seconds);
    let started = Instant::now();
    let (mut made, mut errors) = (0u64, 0u64);
    while made < bounds.count && started.elapsed() < limit {
        let addr = loopback(base, start + made)?;
        match TcpStream::connect(SocketAddrV4::new(addr, port)) {
            Ok(stream) => drop(stream),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => errors += 1,
        }
        made += 1;
    }
    report("tcp", made, errors, started);
    Ok(())
}
