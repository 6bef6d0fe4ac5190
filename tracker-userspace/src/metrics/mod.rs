//! What `tracker serve` exposes: one [`Snapshot`] of the kernel's maps and
//! counters per scrape, rendered in Prometheus's text exposition format
//! (version 0.0.4, which every scraper and `promtool` read) with the
//! `prometheus` crate.

pub mod http;

use std::collections::{BTreeMap, HashSet};

use prometheus::core::Collector;
use prometheus::{Encoder as _, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use tracker_common::ClosedFlows;

use crate::counts::{ClosedRow, CountRow, add_closed};
use crate::event::vocabulary::{l3_label, l4_label};

/// The Content-Type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything one scrape reports, read when the scrape arrives.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// "ebpf" or "netlink".
    pub source: &'static str,
    /// Attached hooks: what each reports and how it is attached.
    pub hooks: Vec<(&'static str, &'static str)>,
    /// The eBPF ring's size in bytes; `None` on the netlink source.
    pub ring_size: Option<u64>,
    pub connections: Vec<CountRow>,
    pub closed: Vec<ClosedRow>,
    /// NEW, UPDATE, DESTROY seen.
    pub events: [u64; 3],
    pub lost: u64,
    /// `nf_conntrack_count` and `nf_conntrack_max` of the watched namespace.
    pub table: Option<(u64, u64)>,
}

/// Which marks get a label of their own. A mark keeps its label once it has
/// one, so a series never moves to "other" (a counter there would then jump);
/// marks first seen after `max` have been labelled are folded into "other".
#[derive(Debug)]
pub struct MarkLabels {
    known: HashSet<u32>,
    max: usize,
}

impl MarkLabels {
    pub fn new(max: usize) -> Self {
        MarkLabels {
            known: HashSet::new(),
            max,
        }
    }

    /// The label of `mark`: its decimal value as conntrack prints it, or
    /// `None` for "other".
    fn label(&mut self, mark: u32) -> Option<u32> {
        if self.known.contains(&mark) {
            return Some(mark);
        }
        if self.known.len() < self.max {
            self.known.insert(mark);
            return Some(mark);
        }
        None
    }
}

fn mark_value(mark: Option<u32>) -> String {
    mark.map_or_else(|| "other".to_string(), |m| m.to_string())
}

/// Builds metric families for one scrape; a registration error can only be
/// a programming error (a duplicate or malformed name), so it is returned.
struct Families {
    registry: Registry,
}

impl Families {
    fn add<C: Collector + Clone + 'static>(&self, c: &C) -> Result<(), String> {
        self.registry
            .register(Box::new(c.clone()))
            .map_err(|e| e.to_string())
    }

    fn gauge(&self, name: &str, help: &str, value: i64) -> Result<(), String> {
        let g = IntGauge::new(name, help).map_err(|e| e.to_string())?;
        g.set(value);
        self.add(&g)
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, String> {
        let g = IntGaugeVec::new(Opts::new(name, help), labels).map_err(|e| e.to_string())?;
        self.add(&g)?;
        Ok(g)
    }

    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, String> {
        let c = IntCounterVec::new(Opts::new(name, help), labels).map_err(|e| e.to_string())?;
        self.add(&c)?;
        Ok(c)
    }
}

/// Renders a snapshot, folding marks beyond the label budget into "other".
pub fn render(s: &Snapshot, marks: &mut MarkLabels) -> Result<String, String> {
    let f = Families {
        registry: Registry::new(),
    };
    // Marks get labels in a stable order (by value), so which marks get one
    // does not depend on hash order.
    let mut folded: HashSet<u32> = HashSet::new();
    let mut label = |mark: Option<u32>| {
        let l = mark.and_then(|m| marks.label(m));
        if let (None, Some(m)) = (l, mark) {
            folded.insert(m);
        }
        l
    };

    let mut by_key: BTreeMap<(Option<u32>, u8, u8), i64> = BTreeMap::new();
    let mut rows: Vec<&CountRow> = s.connections.iter().collect();
    rows.sort_by_key(|r| (r.mark, r.l3proto, r.l4proto));
    for r in rows {
        *by_key
            .entry((label(Some(r.mark)), r.l3proto, r.l4proto))
            .or_default() += r.connections as i64;
    }
    let connections = f.gauges(
        "conntrack_tracker_connections",
        "Live connections per connmark, family and protocol, as conntrack -L would count them",
        &["mark", "family", "protocol"],
    )?;
    for ((mark, l3, l4), n) in by_key {
        connections
            .with_label_values(&[
                mark_value(mark),
                l3_label(l3).into_owned(),
                l4_label(l4).into_owned(),
            ])
            .set(n);
    }

    let mut closed: BTreeMap<Option<u32>, ClosedFlows> = BTreeMap::new();
    let mut rows: Vec<&ClosedRow> = s.closed.iter().collect();
    rows.sort_by_key(|r| r.mark);
    for r in rows {
        add_closed(closed.entry(label(r.mark)).or_default(), &r.totals);
    }
    let flows = f.counters(
        "conntrack_tracker_closed_flows_total",
        "Connections that ended, per connmark (at their DESTROY)",
        &["mark"],
    )?;
    let bytes = f.counters(
        "conntrack_tracker_closed_bytes_total",
        "Bytes carried by connections that ended, per connmark and direction (needs \
         net.netfilter.nf_conntrack_acct=1)",
        &["mark", "direction"],
    )?;
    let packets = f.counters(
        "conntrack_tracker_closed_packets_total",
        "Packets carried by connections that ended, per connmark and direction (needs \
         net.netfilter.nf_conntrack_acct=1)",
        &["mark", "direction"],
    )?;
    for (mark, t) in &closed {
        let m = mark_value(*mark);
        flows.with_label_values(&[m.as_str()]).inc_by(t.flows);
        for (d, direction) in ["original", "reply"].into_iter().enumerate() {
            bytes
                .with_label_values(&[m.as_str(), direction])
                .inc_by(t.bytes[d]);
            packets
                .with_label_values(&[m.as_str(), direction])
                .inc_by(t.packets[d]);
        }
    }
    f.gauge(
        "conntrack_tracker_marks_folded",
        "Distinct marks reported under mark=\"other\" because of --max-marks",
        folded.len() as i64,
    )?;

    let events = f.counters(
        "conntrack_tracker_events_total",
        "Conntrack events seen in the watched namespace, by kind",
        &["kind"],
    )?;
    for (kind, n) in ["new", "update", "destroy"].into_iter().zip(s.events) {
        events.with_label_values(&[kind]).inc_by(n);
    }
    let lost = f.counters(
        "conntrack_tracker_events_lost_total",
        "Events that could not be delivered (ring full, unreadable entry; on netlink: \
         receive-buffer overruns, each losing an unknown number)",
        &[],
    )?;
    lost.with_label_values::<&str>(&[]).inc_by(s.lost);
    if let Some(size) = s.ring_size {
        f.gauge(
            "conntrack_tracker_ring_size_bytes",
            "Size of the eBPF ring buffer",
            size as i64,
        )?;
    }
    f.gauges(
        "conntrack_tracker_source_info",
        "Where events and counts come from (always 1)",
        &["source"],
    )?
    .with_label_values(&[s.source])
    .set(1);
    let hooks = f.gauges(
        "conntrack_tracker_hook_info",
        "Attached eBPF hooks and how each is attached: fexit or kprobe (always 1)",
        &["hook", "mode"],
    )?;
    for (hook, mode) in &s.hooks {
        hooks.with_label_values(&[*hook, *mode]).set(1);
    }
    if let Some((entries, limit)) = s.table {
        f.gauge(
            "conntrack_tracker_table_entries",
            "Entries in the conntrack table of the watched namespace (nf_conntrack_count)",
            entries as i64,
        )?;
        f.gauge(
            "conntrack_tracker_table_limit",
            "Size limit of the conntrack table (nf_conntrack_max)",
            limit as i64,
        )?;
    }
    let mut out = Vec::with_capacity(4096);
    TextEncoder::new()
        .encode(&f.registry.gather(), &mut out)
        .map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(mark: u32, l4proto: u8, connections: u64) -> CountRow {
        CountRow {
            mark,
            l3proto: 2,
            l4proto,
            connections,
        }
    }

    fn closed(mark: Option<u32>, flows: u64, bytes: [u64; 2]) -> ClosedRow {
        ClosedRow {
            mark,
            totals: ClosedFlows {
                flows,
                packets: [flows, flows],
                bytes,
            },
        }
    }

    /// The value of `series` (`name{a="x",b="y"}`, labels in any order).
    fn sample(text: &str, series: &str) -> Option<String> {
        fn key(series: &str) -> (String, Vec<String>) {
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            let mut labels: Vec<String> = labels
                .trim_end_matches('}')
                .split(',')
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            labels.sort();
            (name.to_string(), labels)
        }
        let want = key(series);
        text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let (s, v) = l.rsplit_once(' ')?;
            (key(s) == want).then(|| v.to_string())
        })
    }

    #[test]
    fn renders_every_family_with_labels_as_documented() {
        let s = Snapshot {
            source: "ebpf",
            hooks: vec![("DESTROY", "fexit")],
            ring_size: Some(16 << 20),
            connections: vec![row(1, 6, 3), row(2, 17, 5)],
            closed: vec![closed(Some(1), 4, [400, 4000])],
            events: [7, 0, 4],
            lost: 0,
            table: Some((8, 262144)),
        };
        let text = render(&s, &mut MarkLabels::new(1024)).unwrap();
        for (series, value) in [
            (
                r#"conntrack_tracker_connections{mark="1",family="ipv4",protocol="tcp"}"#,
                "3",
            ),
            (
                r#"conntrack_tracker_connections{mark="2",family="ipv4",protocol="udp"}"#,
                "5",
            ),
            (r#"conntrack_tracker_closed_flows_total{mark="1"}"#, "4"),
            (
                r#"conntrack_tracker_closed_bytes_total{mark="1",direction="original"}"#,
                "400",
            ),
            (
                r#"conntrack_tracker_closed_bytes_total{mark="1",direction="reply"}"#,
                "4000",
            ),
            (r#"conntrack_tracker_events_total{kind="new"}"#, "7"),
            (r#"conntrack_tracker_events_total{kind="destroy"}"#, "4"),
            ("conntrack_tracker_events_lost_total", "0"),
            ("conntrack_tracker_ring_size_bytes", "16777216"),
            (r#"conntrack_tracker_source_info{source="ebpf"}"#, "1"),
            (
                r#"conntrack_tracker_hook_info{hook="DESTROY",mode="fexit"}"#,
                "1",
            ),
            ("conntrack_tracker_table_entries", "8"),
            ("conntrack_tracker_table_limit", "262144"),
            ("conntrack_tracker_marks_folded", "0"),
        ] {
            assert_eq!(
                sample(&text, series).as_deref(),
                Some(value),
                "{series} in\n{text}"
            );
        }
        assert!(
            text.contains("# TYPE conntrack_tracker_closed_flows_total counter\n"),
            "{text}"
        );
    }

    #[test]
    fn marks_beyond_the_budget_fold_into_other_and_stay_there() {
        let mut labels = MarkLabels::new(2);
        let s = Snapshot {
            connections: vec![row(1, 6, 1), row(2, 6, 2), row(3, 6, 4), row(4, 6, 8)],
            closed: vec![
                closed(Some(3), 1, [10, 20]),
                closed(None, 2, [1, 2]),
                closed(Some(1), 1, [5, 5]),
            ],
            ..Snapshot::default()
        };
        let text = render(&s, &mut labels).unwrap();
        let conn = |m: &str| {
            sample(
                &text,
                &format!(
                    r#"conntrack_tracker_connections{{mark="{m}",family="ipv4",protocol="tcp"}}"#
                ),
            )
        };
        assert_eq!(conn("1").as_deref(), Some("1"));
        assert_eq!(conn("2").as_deref(), Some("2"));
        assert_eq!(conn("other").as_deref(), Some("12"));
        assert_eq!(conn("3"), None);
        // Mark 3's closed flows and the kernel's overflow slot are both "other".
        assert_eq!(
            sample(
                &text,
                r#"conntrack_tracker_closed_flows_total{mark="other"}"#
            )
            .as_deref(),
            Some("3")
        );
        assert_eq!(
            sample(&text, "conntrack_tracker_marks_folded").as_deref(),
            Some("2")
        );
        // Next scrape: mark 1 is gone from the table, mark 4 does not take
        // its label.
        let s = Snapshot {
            connections: vec![row(4, 6, 8)],
            ..Snapshot::default()
        };
        let text = render(&s, &mut labels).unwrap();
        assert_eq!(
            sample(
                &text,
                r#"conntrack_tracker_connections{mark="other",family="ipv4",protocol="tcp"}"#
            )
            .as_deref(),
            Some("8")
        );
    }
}
