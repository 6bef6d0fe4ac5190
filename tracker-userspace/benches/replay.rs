//! Userspace alone: synthesised ring records through decode → filter →
//! format, single-threaded, into a buffered sink. Prints one line per mode:
//! `replay<TAB>mode<TAB>events=N<TAB>seconds=S<TAB>events_per_s=R`
//! (`cargo xtask bench` reads them into BENCHMARKS.md).
//!
//! `cargo bench -p tracker-userspace --bench replay [-- SECONDS]`

use std::hint::black_box;
use std::io::{self, BufWriter};
use std::time::{Duration, Instant};

use tracker_common::{
    FlowRecord, KernelOffsets, RECORD_VERSION, RecordHeader, flags, kind, status,
};
use tracker_userspace::btf::KernelBtf;
use tracker_userspace::filter::Filter;
use tracker_userspace::model::MarkMask;
use tracker_userspace::output::{OutputFormat, Writer};
use tracker_userspace::source::ebpf::decode::{self, ConnFields, Decoder};
use tracker_userspace::source::ebpf::host::{Clock, KernelProfile};

/// Distinct records replayed in a loop: enough to defeat branch-predictor
/// luck, few enough to stay in cache like a ring's recent pages.
const RECORDS: usize = 4096;
/// Events per flush, like one drained ring batch.
const BATCH: usize = 64;

/// A plausible mix: 70 % TCP, 25 % UDP, 5 % ICMP; 10 % IPv6; half NEW, half
/// DESTROY (with counters and timestamps); marks 0–3.
fn synthesise(i: usize, offsets: &KernelOffsets) -> FlowRecord {
    let l4proto = match i % 20 {
        0 => 1,
        1..=5 => 17,
        _ => 6,
    };
    let v6 = i % 10 == 3;
    let destroy = i % 2 == 1;
    let mut r = FlowRecord {
        header: RecordHeader {
            kind: if destroy { kind::DESTROY } else { kind::NEW },
            version: RECORD_VERSION,
            flags: if destroy {
                flags::HAS_ACCT | flags::HAS_TSTAMP | flags::PAIRED
            } else {
                0
            },
            time_ns: 1_000_000_000 + i as u64 * 1000,
        },
        ct: 0xffff_8880_0000_0000 + (i as u64) * 320,
        generation: 1_000_000_000 + i as u64,
        netns: 4026531840,
        jiffies: 1_000_000,
        start_ns: 1_700_000_000_000_000_000,
        stop_ns: 1_700_000_001_000_000_000,
        ..Default::default()
    };
    let mut f = ConnFields {
        status: status::CONFIRMED
            | if destroy {
                status::SEEN_REPLY | status::ASSURED
            } else {
                0
            },
        mark: (i % 4) as u32,
        timeout: 1_000_000 + if destroy { 0 } else { 120 * 250 },
        l3proto: if v6 { 10 } else { 2 },
        l4proto,
        tcp_state: if l4proto == 6 {
            if destroy { 7 } else { 1 }
        } else {
            0
        },
        ..Default::default()
    };
    let a = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
    let b = [192, 0, 2, (i % 250) as u8 + 1];
    if v6 {
        f.orig.src = [
            0xfd, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, a[0], a[1], a[2], a[3],
        ];
        f.orig.dst = [
            0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, b[0], b[1], b[2], b[3],
        ];
    } else {
        f.orig.src[..4].copy_from_slice(&a);
        f.orig.dst[..4].copy_from_slice(&b);
    }
    if l4proto == 1 {
        f.orig.src_id = (i as u16).to_be_bytes();
        f.orig.dst_id = [8, 0];
    } else {
        f.orig.src_id = (32768 + (i % 28000) as u16).to_be_bytes();
        f.orig.dst_id = [443u16, 53, 80][i % 3].to_be_bytes();
    }
    f.reply.src = f.orig.dst;
    f.reply.dst = f.orig.src;
    f.reply.src_id = f.orig.dst_id;
    f.reply.dst_id = f.orig.src_id;
    if l4proto == 1 {
        f.reply.src_id = f.orig.src_id;
        f.reply.dst_id = [0, 0];
    }
    if destroy {
        r.counters[0].packets = 10 + i as u64 % 100;
        r.counters[0].bytes = 1500 * r.counters[0].packets;
        r.counters[1].packets = 8 + i as u64 % 50;
        r.counters[1].bytes = 900 * r.counters[1].packets;
    }
    decode::encode_conn(&f, offsets, &mut r.conn);
    r
}

/// The record as the ring hands it over: bytes without alignment.
fn ring_bytes(records: &[FlowRecord]) -> Vec<Vec<u8>> {
    records
        .iter()
        .map(|r| {
            let size = std::mem::size_of::<FlowRecord>();
            // SAFETY: FlowRecord is repr(C) plain old data without padding.
            unsafe { std::slice::from_raw_parts((r as *const FlowRecord).cast::<u8>(), size) }
                .to_vec()
        })
        .collect()
}

enum Stage {
    /// record + event only.
    Decode,
    /// decode + filter.
    Filter(Filter),
    /// decode + filter + format.
    Format(Filter, OutputFormat),
}

fn run(name: &str, stage: Stage, ring: &[Vec<u8>], decoder: &Decoder, budget: Duration) {
    let mut writer = match &stage {
        Stage::Format(_, format) => Some(Writer::new(
            BufWriter::with_capacity(64 * 1024, io::sink()),
            *format,
            false,
        )),
        _ => None,
    };
    let started = Instant::now();
    let mut events = 0u64;
    let mut passed = 0u64;
    while started.elapsed() < budget {
        for batch in ring.chunks(BATCH) {
            for bytes in batch {
                let ev = decoder
                    .decode(black_box(bytes))
                    .expect("synthesised record");
                events += 1;
                match &stage {
                    Stage::Decode => {
                        black_box(&ev);
                    }
                    Stage::Filter(f) => passed += u64::from(f.matches(&ev)),
                    Stage::Format(f, _) => {
                        if f.matches(&ev) {
                            passed += 1;
                            if let Some(w) = writer.as_mut() {
                                w.write_event(&ev).expect("write to sink");
                            }
                        }
                    }
                }
            }
            if let Some(w) = writer.as_mut() {
                w.flush().expect("flush to sink");
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    black_box(passed);
    println!(
        "replay\t{name}\tevents={events}\tseconds={secs:.3}\tevents_per_s={:.0}",
        events as f64 / secs
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a bare number is the seconds per mode.
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1.0);
    let budget = Duration::from_secs_f64(secs);
    // Records laid out as this host's kernel lays out `struct nf_conn`.
    let offsets = KernelBtf::load()
        .and_then(|b| b.offsets())
        .expect("this benchmark lays records out with the host kernel's BTF");
    let decoder = Decoder {
        offsets,
        clock: Clock::now(),
        profile: KernelProfile::running(),
    };
    let records: Vec<FlowRecord> = (0..RECORDS).map(|i| synthesise(i, &offsets)).collect();
    let ring = ring_bytes(&records);
    let mark1 = || Filter {
        mark: Some("1".parse::<MarkMask>().expect("mark")),
        ..Filter::default()
    };
    let text: OutputFormat = "default".parse().expect("format");
    let extended: OutputFormat = "extended,timestamp".parse().expect("format");
    let json: OutputFormat = "json".parse().expect("format");

    run("decode", Stage::Decode, &ring, &decoder, budget);
    run(
        "decode+filter(-m 1)",
        Stage::Filter(mark1()),
        &ring,
        &decoder,
        budget,
    );
    run(
        "decode+text",
        Stage::Format(Filter::default(), text),
        &ring,
        &decoder,
        budget,
    );
    run(
        "decode+text(extended,timestamp)",
        Stage::Format(Filter::default(), extended),
        &ring,
        &decoder,
        budget,
    );
    run(
        "decode+json",
        Stage::Format(Filter::default(), json),
        &ring,
        &decoder,
        budget,
    );
    run(
        "decode+filter(-m 1)+text",
        Stage::Format(mark1(), text),
        &ring,
        &decoder,
        budget,
    );
}
