//! Turning a conntrack entry into a `FlowRecord` in the ring, and the counts
//! bookkeeping that must happen whether or not the record fits.

use aya_ebpf::helpers::bpf_ktime_get_boot_ns;
use tracker_common::{FlowRecord, FlowTuple, MarkKey, flags, ipct, kind, stat, status, tuple_hash};

use crate::{
    conn, counts,
    maps::{EVENTS, bump},
};

/// What every hook knows about the entry before deciding what to do.
struct Summary {
    status: u32,
    mark: u32,
    netns: u32,
    zone: u16,
    l3: u8,
    l4: u8,
}

#[inline(always)]
fn summary(ct: u64) -> Result<Summary, i64> {
    let (l3, l4) = conn::protocols(ct);
    Ok(Summary {
        status: conn::status(ct)?,
        mark: conn::mark(ct),
        netns: conn::netns(ct),
        zone: conn::zone_id(ct),
        l3,
        l4,
    })
}

#[inline(always)]
fn key(s: &Summary) -> MarkKey {
    MarkKey {
        netns: s.netns,
        mark: s.mark,
        l3proto: s.l3,
        l4proto: s.l4,
        _pad: [0; 2],
    }
}

/// What a record says beyond the entry's own fields.
struct Report {
    kind: u32,
    flags: u16,
    /// `time_ns` of the entry's NEW; 0 when the hooks never counted it.
    generation: u64,
    now: u64,
    portid: u32,
    /// UPDATE only: the ipct bits delivered.
    events: u16,
}

impl Report {
    /// A record of an entry seen before (UPDATE, DESTROY): paired with its
    /// NEW when the hooks counted it, marked when a netlink request caused it.
    #[inline(always)]
    fn existing(kind: u32, generation: u64, portid: u32, events: u16) -> Self {
        let mut bits = 0;
        if generation != 0 {
            bits |= flags::PAIRED;
        }
        if portid != 0 {
            bits |= flags::USERSPACE;
        }
        Report {
            kind,
            flags: bits,
            generation,
            now: unsafe { bpf_ktime_get_boot_ns() },
            portid,
            events,
        }
    }
}

/// The original tuple; a failed read is counted and leaves zeros.
#[inline(always)]
fn original(ct: u64) -> FlowTuple {
    let mut orig = FlowTuple::default();
    if conn::tuple(ct, 0, &mut orig).is_err() {
        bump(stat::READ_ERRORS);
    }
    orig
}

/// A confirmed entry: count it, then report it.
#[inline(always)]
pub fn new_entry(ct: u64, record_flags: u16) -> Result<(), i64> {
    let s = summary(ct)?;
    if s.status & status::CONFIRMED == 0 || s.status & status::NAT_CLASH != 0 {
        // Not (yet) in the table, or a clash loser conntrack never reports.
        return Ok(());
    }
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let orig = original(ct);
    let hash = tuple_hash(&orig, s.l3, s.l4, s.zone, s.netns);
    let generation = counts::on_new(ct, key(&s), hash, now);
    let report = Report {
        kind: kind::NEW,
        flags: record_flags,
        generation,
        now,
        portid: 0,
        events: 0,
    };
    emit(ct, &s, &orig, report)
}

/// A change the kernel delivers to its event notifier (`events`: ipct bits
/// of an UPDATE). Counts follow mark changes whatever their origin.
#[inline(always)]
pub fn updated_entry(ct: u64, events: u16, portid: u32) -> Result<(), i64> {
    let s = summary(ct)?;
    if events & ipct::MARK != 0 {
        counts::on_mark_change(ct, s.mark);
    }
    let report = Report::existing(kind::UPDATE, counts::generation(ct), portid, events);
    emit(ct, &s, &original(ct), report)
}

/// An entry `nf_ct_delete` removed: uncount it, then report it.
#[inline(always)]
pub fn destroyed_entry(ct: u64, portid: u32) -> Result<(), i64> {
    let s = summary(ct)?;
    let generation = counts::on_destroy(ct, key(&s), s.status);
    let report = Report::existing(kind::DESTROY, generation, portid, 0);
    emit(ct, &s, &original(ct), report)
}

#[inline(always)]
fn emit(ct: u64, s: &Summary, orig: &FlowTuple, report: Report) -> Result<(), i64> {
    if !conn::wanted(report.kind, s.netns, s.mark, s.l3, s.l4) {
        bump(stat::FILTERED);
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<FlowRecord>(0) else {
        bump(stat::RING_DROPS);
        return Ok(());
    };
    // SAFETY: reserve returned room for one FlowRecord; every field is
    // written below before submit.
    let r = unsafe { &mut *entry.as_mut_ptr() };
    let mut record_flags = report.flags;
    r.ct = ct;
    r.generation = report.generation;
    r.orig = *orig;
    r.reply = FlowTuple::default();
    if conn::tuple(ct, 1, &mut r.reply).is_err() {
        bump(stat::READ_ERRORS);
    }
    r.counters = Default::default();
    if report.kind == kind::DESTROY && conn::counters(ct, &mut r.counters).is_ok() {
        record_flags |= flags::HAS_ACCT;
    }
    match conn::timestamps(ct) {
        Ok((start, stop)) => {
            r.start_ns = start;
            r.stop_ns = stop;
            record_flags |= flags::HAS_TSTAMP;
        }
        Err(_) => {
            r.start_ns = 0;
            r.stop_ns = 0;
        }
    }
    r.status = s.status;
    r.mark = s.mark;
    r.netns = s.netns;
    r.timeout_jiffies = conn::timeout_jiffies(ct);
    r.portid = report.portid;
    r.zone_id = s.zone;
    r.zone_dir = 0;
    r.l3proto = s.l3;
    r.l4proto = s.l4;
    r.tcp_state = if s.l4 == 6 { conn::tcp_state(ct) } else { 0 };
    r.events = report.events;
    r._pad = [0; 4];
    r.header = conn::header(report.kind, record_flags, report.now);
    entry.submit(0);
    bump(stat::EMITTED);
    Ok(())
}
