//! Live connections per connmark: the one row type every part of the counts
//! speaks, and where the rows are read from. The eBPF programs keep the
//! counts in kernel maps ([`maps`]: the tracker's own, or a running
//! instance's pins); without the hooks, a mark-only table dump ([`dump`])
//! counts them instead. The dump also seeds the maps at start-up with the
//! entries that existed before the hooks attached, so both sources use it.
//!
//! A module of its own rather than part of a source: `tracker counts` reads
//! whichever is there, and the report in `output::counts` only sees rows.

pub mod dump;
pub mod expired;
pub mod follow;
pub mod live;
pub mod maps;

use std::collections::BTreeMap;

use tracker_common::{ClosedFlows, MarkKey};

pub use maps::{CountMap, MapCounts};

/// Live connections of one mark, family and protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountRow {
    pub mark: u32,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub l3proto: u8,
    pub l4proto: u8,
    pub connections: u64,
}

/// Flows of one mark that ended, with the packets and bytes they carried
/// (zero unless `nf_conntrack_acct` was on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClosedRow {
    /// `None`: flows the kernel could not key because its map was full.
    pub mark: Option<u32>,
    pub totals: ClosedFlows,
}

/// Adds `b` into `a`, field by field.
pub fn add_closed(a: &mut ClosedFlows, b: &ClosedFlows) {
    a.flows += b.flows;
    for d in 0..2 {
        a.packets[d] += b.packets[d];
        a.bytes[d] += b.bytes[d];
    }
}

/// Sums closed-flow totals keyed like the kernel's per mark, for one netns
/// (or all with `None`).
fn sum_closed(
    totals: impl IntoIterator<Item = (MarkKey, ClosedFlows)>,
    netns: Option<u32>,
) -> Vec<ClosedRow> {
    let mut sums: BTreeMap<u32, ClosedFlows> = BTreeMap::new();
    for (key, t) in totals {
        if netns.is_some_and(|n| n != key.netns) {
            continue;
        }
        add_closed(sums.entry(key.mark).or_default(), &t);
    }
    sums.into_iter()
        .map(|(mark, totals)| ClosedRow {
            mark: Some(mark),
            totals,
        })
        .collect()
}

/// Where each refresh of `tracker counts` reads its rows from.
pub enum Reader {
    /// The kernel's count maps: a running tracker's pins, or the maps of the
    /// object this process loaded.
    Maps(MapCounts),
    /// A mark-only dump of the table per read (the netlink source).
    Dump,
}

impl Reader {
    /// The rows of one network namespace (`None`: all of them).
    pub fn read(&self, netns: Option<u32>) -> anyhow::Result<Vec<CountRow>> {
        Ok(match self {
            Reader::Maps(maps) => maps.rows(netns),
            Reader::Dump => dump::rows(&dump::dump_marks()?, netns),
        })
    }
}

/// Sums counts keyed like the kernel's per (mark, family, protocol) of one
/// netns (or all with `None`). Negative transient values (a decrement
/// racing an insert) are clamped to zero, and zero rows left out.
fn sum_rows(counts: impl IntoIterator<Item = (MarkKey, i64)>, netns: Option<u32>) -> Vec<CountRow> {
    let mut sums: BTreeMap<(u32, u8, u8), i64> = BTreeMap::new();
    for (key, value) in counts {
        if netns.is_some_and(|n| n != key.netns) {
            continue;
        }
        *sums
            .entry((key.mark, key.l3proto, key.l4proto))
            .or_default() += value;
    }
    sums.into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|((mark, l3proto, l4proto), v)| CountRow {
            mark,
            l3proto,
            l4proto,
            connections: v as u64,
        })
        .collect()
}
