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

/// A confirmed entry: count it, then report it.
#[inline(always)]
pub fn new_entry(ct: u64, record_flags: u16) -> Result<(), i64> {
    let s = summary(ct)?;
    if s.status & status::CONFIRMED == 0 || s.status & status::NAT_CLASH != 0 {
        // Not (yet) in the table, or a clash loser conntrack never reports.
        return Ok(());
    }
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let mut orig = FlowTuple::default();
    if conn::tuple(ct, 0, &mut orig).is_err() {
        bump(stat::READ_ERRORS);
    }
    let hash = tuple_hash(&orig, s.l3, s.l4, s.zone, s.netns);
    let generation = counts::on_new(ct, key(&s), hash, now);
    emit(
        kind::NEW,
        ct,
        &s,
        &orig,
        record_flags,
        generation,
        now,
        0,
        0,
    )
}

/// A change the kernel delivers to its event notifier (`events`: ipct bits
/// of an UPDATE). Counts follow mark changes whatever their origin.
#[inline(always)]
pub fn updated_entry(ct: u64, events: u16, portid: u32) -> Result<(), i64> {
    let s = summary(ct)?;
    if events & ipct::MARK != 0 {
        counts::on_mark_change(ct, s.mark);
    }
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let generation = counts::generation(ct);
    let mut orig = FlowTuple::default();
    if conn::tuple(ct, 0, &mut orig).is_err() {
        bump(stat::READ_ERRORS);
    }
    let mut record_flags = 0;
    if generation != 0 {
        record_flags |= flags::PAIRED;
    }
    if portid != 0 {
        record_flags |= flags::USERSPACE;
    }
    emit(
        kind::UPDATE,
        ct,
        &s,
        &orig,
        record_flags,
        generation,
        now,
        portid,
        events,
    )
}

/// An entry `nf_ct_delete` removed: uncount it, then report it.
#[inline(always)]
pub fn destroyed_entry(ct: u64, portid: u32) -> Result<(), i64> {
    let s = summary(ct)?;
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let generation = counts::on_destroy(ct, key(&s), s.status);
    let mut orig = FlowTuple::default();
    if conn::tuple(ct, 0, &mut orig).is_err() {
        bump(stat::READ_ERRORS);
    }
    let mut record_flags = 0;
    if generation != 0 {
        record_flags |= flags::PAIRED;
    }
    if portid != 0 {
        record_flags |= flags::USERSPACE;
    }
    emit(
        kind::DESTROY,
        ct,
        &s,
        &orig,
        record_flags,
        generation,
        now,
        portid,
        0,
    )
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn emit(
    kind_: u32,
    ct: u64,
    s: &Summary,
    orig: &FlowTuple,
    mut record_flags: u16,
    generation: u64,
    now: u64,
    portid: u32,
    events: u16,
) -> Result<(), i64> {
    if !conn::wanted(kind_, s.netns, s.mark, s.l3, s.l4) {
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
    r.ct = ct;
    r.generation = generation;
    r.orig = *orig;
    r.reply = FlowTuple::default();
    if conn::tuple(ct, 1, &mut r.reply).is_err() {
        bump(stat::READ_ERRORS);
    }
    r.counters = Default::default();
    if kind_ == kind::DESTROY && conn::counters(ct, &mut r.counters).is_ok() {
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
    r.portid = portid;
    r.zone_id = s.zone;
    r.zone_dir = 0;
    r.l3proto = s.l3;
    r.l4proto = s.l4;
    r.tcp_state = if s.l4 == 6 { conn::tcp_state(ct) } else { 0 };
    r.events = events;
    r._pad = [0; 4];
    r.header = conn::header(kind_, record_flags, now);
    entry.submit(0);
    bump(stat::EMITTED);
    Ok(())
}
