//! Per-mark counts kept from ctnetlink events, for `tracker serve` when the
//! eBPF hooks cannot attach. There is no kernel map to read, and dumping the
//! table per scrape is what the service exists to avoid, so the counts are
//! followed instead: one dump at start-up, then every NEW, UPDATE and
//! DESTROY applied to a table of live entries keyed by the kernel's
//! conntrack id. Closed-flow totals come from the DESTROY events' counters.
//!
//! Exact as long as no event is lost. ctnetlink drops events when the
//! socket's receive buffer overflows (ENOBUFS, counted and reported); the
//! eBPF source does not depend on events for either number.

use std::collections::{BTreeMap, HashMap};

use tracker_common::{ClosedFlows, MarkKey};

use super::dump::DumpEntry;
use super::{ClosedRow, CountRow, add_closed, sum_rows};
use crate::event::{Event, EventKind};

/// What is remembered of a live entry: the key it is counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Counted {
    mark: u32,
    l3proto: u8,
    l4proto: u8,
}

#[derive(Debug, Default)]
pub struct Follower {
    live: HashMap<u32, Counted>,
    /// Live entries per key, kept with `live` at every change so that a
    /// scrape costs one row per key rather than a pass over every entry
    /// (milliseconds per scrape at a few hundred thousand entries).
    per_key: HashMap<Counted, u64>,
    closed: BTreeMap<u32, ClosedFlows>,
}

impl Follower {
    /// Starts from a dump made after the event socket was subscribed, with
    /// the events received meanwhile still queued. Applying those events in
    /// order afterwards is then exact: a NEW for an entry the dump listed is
    /// ignored, a DESTROY for one it did not list matches its queued NEW.
    pub fn seeded(entries: &[DumpEntry]) -> Self {
        let live = entries
            .iter()
            .map(|e| {
                (
                    e.id,
                    Counted {
                        mark: e.mark,
                        l3proto: e.l3proto,
                        l4proto: e.l4proto,
                    },
                )
            })
            .collect();
        let mut f = Follower {
            live,
            ..Follower::default()
        };
        for c in f.live.values() {
            *f.per_key.entry(*c).or_default() += 1;
        }
        f
    }

    fn count(&mut self, key: Counted) {
        *self.per_key.entry(key).or_default() += 1;
    }

    fn uncount(&mut self, key: Counted) {
        if let Some(n) = self.per_key.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.per_key.remove(&key);
            }
        }
    }

    pub fn apply(&mut self, ev: &Event) {
        let Some(id) = ev.ct_id else { return };
        let counted = Counted {
            mark: ev.mark,
            l3proto: ev.l3proto,
            l4proto: ev.l4proto,
        };
        match ev.kind {
            EventKind::New => {
                if let std::collections::hash_map::Entry::Vacant(v) = self.live.entry(id) {
                    v.insert(counted);
                    self.count(counted);
                }
            }
            // A mark change arrives as an UPDATE carrying the new mark; an
            // UPDATE for an unknown id follows a NEW that was lost.
            EventKind::Update => {
                if let Some(old) = self.live.insert(id, counted) {
                    self.uncount(old);
                }
                self.count(counted);
            }
            EventKind::Destroy => {
                if let Some(old) = self.live.remove(&id) {
                    self.uncount(old);
                }
                let t = self.closed.entry(ev.mark).or_default();
                let mut flow = ClosedFlows {
                    flows: 1,
                    ..Default::default()
                };
                if let Some(c) = ev.counters {
                    flow.packets = [c[0].packets, c[1].packets];
                    flow.bytes = [c[0].bytes, c[1].bytes];
                }
                add_closed(t, &flow);
            }
        }
    }

    pub fn rows(&self) -> Vec<CountRow> {
        sum_rows(
            self.per_key.iter().map(|(c, &n)| {
                (
                    MarkKey {
                        netns: 0,
                        mark: c.mark,
                        l3proto: c.l3proto,
                        l4proto: c.l4proto,
                        _pad: [0; 2],
                    },
                    // At most the number of live entries, so no overflow.
                    n as i64,
                )
            }),
            None,
        )
    }

    pub fn closed(&self) -> Vec<ClosedRow> {
        self.closed
            .iter()
            .map(|(&mark, &totals)| ClosedRow {
                mark: Some(mark),
                totals,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Counters, L4Ids, Tuple};

    fn event(kind: EventKind, id: u32, mark: u32) -> Event {
        let t = Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            l4: L4Ids::Ports {
                sport: 1000 + id as u16,
                dport: 53,
            },
        };
        let mut e = Event::bare(kind, 17, t, t);
        e.ct_id = Some(id);
        e.mark = mark;
        e
    }

    fn dumped(id: u32, mark: u32) -> DumpEntry {
        DumpEntry {
            l3proto: 2,
            l4proto: 17,
            mark,
            id,
            ..DumpEntry::default()
        }
    }

    fn connections(f: &Follower) -> Vec<(u32, u64)> {
        f.rows().iter().map(|r| (r.mark, r.connections)).collect()
    }

    #[test]
    fn events_queued_during_the_seed_dump_count_once() {
        // 1 and 2 were listed by the dump; 2's NEW was also queued. 3 was
        // created and destroyed while the dump ran, so the dump missed it.
        let mut f = Follower::seeded(&[dumped(1, 7), dumped(2, 7)]);
        for e in [
            event(EventKind::New, 2, 7),
            event(EventKind::New, 3, 7),
            event(EventKind::Destroy, 3, 7),
            event(EventKind::Destroy, 1, 7),
        ] {
            f.apply(&e);
        }
        assert_eq!(connections(&f), vec![(7, 1)]);
        assert_eq!(f.closed()[0].totals.flows, 2);
    }

    #[test]
    fn kept_totals_equal_a_pass_over_the_live_entries() {
        // A deterministic mix of NEW, UPDATE (mark changes, unknown ids)
        // and DESTROY (known and unknown ids) over a seeded table.
        let mut f = Follower::seeded(&[dumped(1, 1), dumped(2, 2), dumped(3, 1)]);
        let mut x = 12345u32;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let (id, mark) = (x % 64, (x >> 8) % 4);
            let kind =
                [EventKind::New, EventKind::Update, EventKind::Destroy][(x >> 16) as usize % 3];
            f.apply(&event(kind, id, mark));
            let mut by_pass: BTreeMap<u32, u64> = BTreeMap::new();
            for c in f.live.values() {
                *by_pass.entry(c.mark).or_default() += 1;
            }
            let kept: BTreeMap<u32, u64> = connections(&f).into_iter().collect();
            assert_eq!(kept, by_pass);
        }
    }

    #[test]
    fn a_mark_change_moves_the_entry_and_destroy_books_the_new_mark() {
        let mut f = Follower::default();
        f.apply(&event(EventKind::New, 1, 0));
        f.apply(&event(EventKind::New, 2, 0));
        f.apply(&event(EventKind::Update, 1, 5));
        assert_eq!(connections(&f), vec![(0, 1), (5, 1)]);
        let mut d = event(EventKind::Destroy, 1, 5);
        d.counters = Some([
            Counters {
                packets: 3,
                bytes: 300,
            },
            Counters {
                packets: 2,
                bytes: 120,
            },
        ]);
        f.apply(&d);
        assert_eq!(connections(&f), vec![(0, 1)]);
        let closed = f.closed();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].mark, Some(5));
        assert_eq!(
            closed[0].totals,
            ClosedFlows {
                flows: 1,
                packets: [3, 2],
                bytes: [300, 120],
            }
        );
    }
}
