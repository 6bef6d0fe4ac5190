//! Turning a conntrack entry into a `FlowRecord` in the ring, and the counts
//! bookkeeping that must happen whether or not the record fits.
//!
//! Every hook ends here. When the change is known to be shown before the
//! entry is read (see `shown_unread`: the default filter qualifies), the
//! record is reserved in the ring first and the entry is copied straight
//! into it with one `bpf_probe_read_kernel`; the filter and the counts read
//! that copy, and the record is then submitted or discarded. Otherwise, or
//! when the ring is full, the entry goes to this CPU's scratch record, so
//! the counts still see it and a drop is counted. (Copying a finished record
//! into the ring, as `bpf_ringbuf_output` does, was the dearest step of a
//! hook.)

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_jiffies64, bpf_ktime_get_boot_ns},
};
use tracker_common::{
    FlowRecord, KernelFilter, MarkKey, RecordHeader, filter_kind, flags, ipct, kind, stat, status,
};

use crate::{
    closed,
    conn::{self, Conn, Entry},
    counts::{self, Claimer},
    maps::{EVENTS, Scratch, bump},
};

#[unsafe(no_mangle)]
static FILTER: KernelFilter = KernelFilter {
    kinds: filter_kind::NEW | filter_kind::DESTROY,
    netns: 0,
    mark: 0,
    mark_mask: 0,
    match_mark: 0,
    l3proto: 0,
    l4proto: 0,
    _pad: 0,
};

/// Unread bytes in the ring at which the reader is woken (set by userspace
/// before load); 0: never. Below it records go in without a wakeup and the
/// reader collects them on its own short timer: a wakeup per record
/// (irq_work, then a self-IPI) costs more than the rest of a hook, and a
/// busy reader only needs one per batch. A ring that holds more than the
/// timer's period of records at any rate conntrack reaches needs none, and
/// then the hooks skip the check of the unread bytes too.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 1 << 20;

/// Non-zero when the counts keep each entry's tuple hash (set before load):
/// only the start-up count from the dump's marks needs it, to skip entries
/// the hooks counted already, and only where the seed hook (seed.rs) cannot
/// load.
#[unsafe(no_mangle)]
static TUPLE_HASHES: u32 = 1;

/// The original tuple's hash for the counts, when they keep it.
#[inline(always)]
fn tuple_hash(c: &Conn<'_>, s: &Summary) -> u64 {
    // SAFETY: a global set before load.
    if unsafe { core::ptr::read_volatile(&TUPLE_HASHES) } != 0 {
        c.original_hash(s.l3, s.l4, s.zone, s.netns)
    } else {
        0
    }
}

/// The filter bit of a record kind.
#[inline(always)]
fn kind_bit(kind_: u32) -> u32 {
    match kind_ {
        kind::NEW => filter_kind::NEW,
        kind::DESTROY => filter_kind::DESTROY,
        kind::UPDATE => filter_kind::UPDATE,
        _ => 0,
    }
}

/// The filter global; read volatile so the placeholder the object is built
/// with is not folded into the code.
#[inline(always)]
fn filter() -> KernelFilter {
    // SAFETY: a global set before load.
    unsafe { core::ptr::read_volatile(&FILTER) }
}

/// Whether the kernel-side filter lets an event through.
#[inline(always)]
fn wanted(kind_: u32, s: &Summary) -> bool {
    let f = filter();
    (f.kinds & kind_bit(kind_)) != 0
        && (f.netns == 0 || f.netns == s.netns)
        && (f.match_mark == 0 || (s.mark & f.mark_mask) == f.mark)
        && (f.l3proto == 0 || f.l3proto == s.l3)
        && (f.l4proto == 0 || f.l4proto == s.l4)
}

/// Whether a change goes to userspace before the entry is copied, so its
/// record can be reserved in the ring first and the entry copied straight
/// into it. That holds when its kind is shown and the filter looks at no
/// field of the entry, or only at its namespace: the default shows one
/// namespace, so there the namespace is read first (two small reads, or
/// two plain loads for a typed entry, which the summary then reuses as
/// `netns`). With a mark or protocol filter, or
/// an entry of another namespace (a container host makes most entries in
/// others), the entry goes to the scratch record first, so rejected entries
/// cost no ring space and wake no reader. The filter is a frozen global:
/// the verifier keeps one branch.
#[inline(always)]
fn shown_unread(ct: u64, change: Change, netns: &mut u32) -> bool {
    let f = filter();
    let kind_ = match change {
        Change::New { .. } => kind::NEW,
        Change::Update { .. } => kind::UPDATE,
        Change::Destroy { .. } => kind::DESTROY,
        Change::Seed { .. } => return false,
    };
    if (f.kinds & kind_bit(kind_)) == 0 || f.match_mark != 0 || f.l3proto != 0 || f.l4proto != 0 {
        return false;
    }
    if f.netns == 0 {
        return true;
    }
    if *netns == 0 {
        *netns = conn::netns_of(ct);
    }
    *netns == f.netns
}

/// What every hook needs to know about the entry before deciding what to do.
struct Summary {
    status: u32,
    mark: u32,
    netns: u32,
    zone: u16,
    l3: u8,
    l4: u8,
}

impl Summary {
    /// `netns`: the entry's namespace when it was already read, else 0 (no
    /// namespace has inode 0).
    #[inline(always)]
    fn of(c: &Conn<'_>, netns: u32) -> Option<Self> {
        let (l3, l4) = c.protocols();
        Some(Summary {
            status: c.status()?,
            mark: c.mark(),
            netns: if netns != 0 {
                netns
            } else {
                conn::netns_inum(c.net())
            },
            zone: c.zone_id(),
            l3,
            l4,
        })
    }

    #[inline(always)]
    fn key(&self) -> MarkKey {
        MarkKey {
            netns: self.netns,
            mark: self.mark,
            l3proto: self.l3,
            l4proto: self.l4,
            _pad: [0; 2],
        }
    }
}

/// What happened to the entry.
#[derive(Clone, Copy)]
pub enum Change {
    /// Confirmed by its first packet, or inserted over ctnetlink; `claimer`:
    /// the kind of program, which decides how it may claim a slot
    /// (`counts::Claimer`).
    New {
        netlink_insert: bool,
        claimer: Claimer,
    },
    /// Reported to the event notifier: the ipct bits of an UPDATE.
    Update { events: u16, portid: u32 },
    /// Removed by `nf_ct_delete`; `portid` of a netlink requester.
    Destroy { portid: u32 },
    /// Listed by the tracker's start-up dump (seed.rs): remembered and
    /// counted unless a NEW hook already did; never reported.
    Seed { claimer: Claimer },
}

/// Counts and reports a change of `entry`.
#[inline(always)]
pub fn report(entry: Entry, change: Change) {
    let ct = entry.addr();
    if ct == 0 {
        return;
    }
    // One call of `fill` for both destinations keeps the program small
    // (and under the verifier's stack limit).
    // A plain integer (0 = not read), not an Option: with an Option, 5.10's
    // verifier rejected the DESTROY kretprobe for reading a stack slot that
    // path had not written ("invalid read from stack").
    let mut netns = match entry {
        // Two plain loads: cheap enough to make for every change.
        Entry::Typed(ct) => conn::netns_of_typed(ct),
        Entry::Untyped(_) => 0,
    };
    let reserve_first = shown_unread(ct, change, &mut netns);
    let reserved = if reserve_first {
        EVENTS.reserve::<FlowRecord>(0)
    } else {
        None
    };
    let scratch = if reserved.is_some() {
        None
    } else {
        match Scratch::enter() {
            Some(s) => Some(s),
            None => return,
        }
    };
    let record = match (&reserved, &scratch) {
        (Some(e), _) => e.as_ptr().cast_mut().cast::<FlowRecord>(),
        (None, Some(s)) => s.record,
        (None, None) => return,
    };
    // SAFETY: ring memory is always initialized (zeroed at map creation,
    // then earlier records) and every field of FlowRecord is a plain
    // integer, so any bytes are a valid value; a scratch slot is this run's.
    let keep = fill(entry, change, netns, unsafe { &mut *record });
    match (reserved, scratch) {
        (Some(e), _) => {
            if keep {
                e.submit(wakeup(true));
            } else {
                e.discard(BPF_RB_NO_WAKEUP as u64);
            }
        }
        (None, Some(s)) => {
            if keep {
                // Reserve-first found the ring full: the event is lost, but
                // the counts moved. Otherwise the filter has let it through.
                let sent = !reserve_first
                    // SAFETY: the scratch record `fill` completed.
                    && EVENTS
                        .output::<FlowRecord>(unsafe { &*record }, wakeup(false))
                        .is_ok();
                if !sent {
                    bump(stat::RING_DROPS);
                }
            }
            s.leave();
        }
        (None, None) => {}
    }
}

/// Copies the entry into `r`, moves the counts, and completes the record.
/// Returns whether the record should go to userspace (the copy worked and
/// the filter wants it).
#[inline(always)]
fn fill(entry: Entry, change: Change, netns: u32, r: &mut FlowRecord) -> bool {
    // In fexit and fentry programs `ct` is a typed kernel pointer, on which
    // the verifier allows no arithmetic, and the counts hash the address.
    // Loaded back from the record's memory it is a plain number.
    // SAFETY: a field of the record this run owns.
    let ct = unsafe {
        core::ptr::write_volatile(&raw mut r.ct, entry.addr());
        core::ptr::read_volatile(&raw const r.ct)
    };
    if conn::copy(ct, &mut r.conn).is_err() {
        bump(stat::READ_ERRORS);
        return false;
    }
    let c = Conn::new(&r.conn);
    let Some(s) = Summary::of(&c, netns) else {
        bump(stat::READ_ERRORS);
        return false;
    };
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let mut bits = 0u16;
    let mut portid = 0;
    let mut events = 0;
    let (kind_, generation) = match change {
        Change::New {
            netlink_insert,
            claimer,
        } => {
            if s.status & status::CONFIRMED == 0 || s.status & status::NAT_CLASH != 0 {
                // Not (yet) in the table, or a clash loser conntrack never
                // reports.
                return false;
            }
            if netlink_insert {
                bits |= flags::NETLINK_INSERT;
            }
            let hash = tuple_hash(&c, &s);
            match counts::on_new(ct, s.key(), hash, now, claimer) {
                Some(generation) => (kind::NEW, generation),
                // The winner of a confirm race, seen again through the
                // loser's packet: not a new connection.
                None => return false,
            }
        }
        Change::Update {
            events: ev,
            portid: p,
        } => {
            // Counts follow mark changes whatever their origin.
            if ev & ipct::MARK != 0 {
                counts::on_mark_change(ct, s.mark);
            }
            events = ev;
            portid = p;
            (kind::UPDATE, counts::generation(ct))
        }
        Change::Destroy { portid: p } => {
            portid = p;
            (kind::DESTROY, counts::on_destroy(ct, s.key(), s.status))
        }
        Change::Seed { claimer } => {
            if s.status & status::CONFIRMED != 0 && s.status & status::NAT_CLASH == 0 {
                counts::on_seed(ct, s.key(), tuple_hash(&c, &s), claimer);
            }
            return false;
        }
    };
    let show = wanted(kind_, &s);
    // Serve's per-mark totals: every change in the watched namespace, and
    // every ended flow with its counters, whether or not it is shown. Only
    // the filter's netns (the namespace serve watches) may gate them: serve
    // puts its --events-json filters (kinds, family, protocol, mark) in the
    // other fields, which must keep choosing what reaches the ring alone.
    let accounted = closed::enabled() && (filter().netns == 0 || filter().netns == s.netns);
    if accounted {
        closed::seen(match kind_ {
            kind::NEW => stat::SEEN_NEW,
            kind::UPDATE => stat::SEEN_UPDATE,
            _ => stat::SEEN_DESTROY,
        });
    }
    let account_closed = accounted && kind_ == kind::DESTROY && s.status & status::NAT_CLASH == 0;
    if !show && !account_closed {
        bump(stat::FILTERED);
        return false;
    }
    // Counters and times are shown at the end of a flow only, as ctnetlink
    // sends them: NEW and UPDATE skip the extension reads.
    let ext = if kind_ == kind::DESTROY {
        conn::extensions(entry, c.ext())
    } else {
        conn::Extensions::default()
    };
    if account_closed {
        closed::add(&s.key(), ext.counters());
    }
    if !show {
        bump(stat::FILTERED);
        return false;
    }
    if generation != 0 && kind_ != kind::NEW {
        bits |= flags::PAIRED;
    }
    if portid != 0 {
        bits |= flags::USERSPACE;
    }
    bits |= ext.flags;
    r.counters = ext.counters;
    r.start_ns = ext.times.0;
    r.stop_ns = ext.times.1;
    r.header = RecordHeader {
        kind: kind_,
        version: tracker_common::RECORD_VERSION,
        flags: bits,
        time_ns: now,
    };
    r.ct = ct;
    r.generation = generation;
    r.netns = s.netns;
    r.portid = portid;
    r.jiffies = unsafe { bpf_jiffies64() } as u32;
    r.events = events;
    r._pad = 0;
    true
}

/// The wakeup flag for a record: force one when it makes the unread bytes
/// cross `WAKEUP_BYTES` (once per crossing, so a slow reader is not sent a
/// wakeup per record), none otherwise. `reserved`: the record already
/// holds its place in the ring (reserve moved the producer position).
#[inline(always)]
fn wakeup(reserved: bool) -> u64 {
    // SAFETY: a global set before load.
    let threshold = unsafe { core::ptr::read_volatile(&WAKEUP_BYTES) };
    if threshold == 0 {
        return BPF_RB_NO_WAKEUP as u64;
    }
    // The ring puts an 8-byte header before each record.
    let size = core::mem::size_of::<FlowRecord>() as u64 + 8;
    let mut unread = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    if !reserved {
        unread += size;
    }
    if unread >= threshold && unread < threshold + size {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}
