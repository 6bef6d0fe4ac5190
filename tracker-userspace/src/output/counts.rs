//! The per-mark connection count report of `tracker counts`: a text table or
//! one JSON object per refresh. The caller has already applied `--mark`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::counts::CountRow;
use crate::event::vocabulary::{AF_INET, AF_INET6, l3_label, l4_label};

/// Where the counts come from and whether they can be trusted right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountsMeta {
    /// "ebpf" or "netlink".
    pub source: String,
    /// The counts may lag behind the table (e.g. events were lost and the
    /// table is being re-read).
    pub stale: bool,
}

/// Counts per mark, per protocol and per family, ready to print.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CountsReport {
    pub marks: Vec<MarkShare>,
    pub by_proto: BTreeMap<String, u64>,
    pub by_family: BTreeMap<String, u64>,
    pub total: u64,
    pub source: String,
    pub stale: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MarkShare {
    pub mark: u32,
    pub mark_hex: String,
    pub connections: u64,
    /// Fraction of `total`, 0 to 1, rounded to 4 decimals.
    pub share: f64,
}

/// JSON Schema (draft 2020-12) of one `tracker counts -o json` object; the
/// tests validate against it and check that docs/json-schema.md shows it.
#[cfg(test)]
pub const COUNTS_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "tracker counts",
  "type": "object",
  "required": ["marks", "by_proto", "by_family", "total", "source", "stale"],
  "additionalProperties": false,
  "properties": {
    "marks": {
      "type": "array",
      "items": {
        "type": "object",
        "required": ["mark", "mark_hex", "connections", "share"],
        "additionalProperties": false,
        "properties": {
          "mark": { "type": "integer", "minimum": 0, "maximum": 4294967295 },
          "mark_hex": { "type": "string", "pattern": "^(0x[0-9a-f]{8})$" },
          "connections": { "type": "integer", "minimum": 0 },
          "share": { "type": "number", "minimum": 0, "maximum": 1 }
        }
      }
    },
    "by_proto": { "type": "object", "description": "Connections per layer-4 protocol name (or number)." },
    "by_family": {
      "type": "object",
      "required": ["ipv4", "ipv6"],
      "properties": {
        "ipv4": { "type": "integer", "minimum": 0 },
        "ipv6": { "type": "integer", "minimum": 0 }
      }
    },
    "total": { "type": "integer", "minimum": 0 },
    "source": { "enum": ["ebpf", "netlink"] },
    "stale": { "type": "boolean" }
  }
}"#;

impl CountsReport {
    pub fn new(rows: &[CountRow], meta: &CountsMeta) -> Self {
        let mut per_mark: BTreeMap<u32, u64> = BTreeMap::new();
        let mut by_proto: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_family: BTreeMap<String, u64> = [AF_INET, AF_INET6]
            .into_iter()
            .map(|af| (l3_label(af).into_owned(), 0))
            .collect();
        let mut total = 0u64;
        for r in rows.iter().filter(|r| r.connections != 0) {
            *per_mark.entry(r.mark).or_default() += r.connections;
            *by_proto
                .entry(l4_label(r.l4proto).into_owned())
                .or_default() += r.connections;
            *by_family
                .entry(l3_label(r.l3proto).into_owned())
                .or_default() += r.connections;
            total += r.connections;
        }
        let marks = per_mark
            .into_iter()
            .map(|(mark, connections)| MarkShare {
                mark,
                mark_hex: format!("0x{mark:08x}"),
                connections,
                share: if total == 0 {
                    0.0
                } else {
                    (connections as f64 / total as f64 * 10_000.0).round() / 10_000.0
                },
            })
            .collect();
        CountsReport {
            marks,
            by_proto,
            by_family,
            total,
            source: meta.source.clone(),
            stale: meta.stale,
        }
    }

    /// The table, marks in ascending order, then the totals.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<10}  {:<10}  {:>11}  {:>6}",
            "MARK", "HEX", "CONNECTIONS", "SHARE"
        );
        for m in &self.marks {
            let pct = if self.total == 0 {
                0.0
            } else {
                m.connections as f64 * 100.0 / self.total as f64
            };
            let _ = writeln!(
                s,
                "{:<10}  {:<10}  {:>11}  {:>5.1}%",
                m.mark, m.mark_hex, m.connections, pct
            );
        }
        s.push('\n');
        let join = |map: &BTreeMap<String, u64>| {
            if map.is_empty() {
                "-".to_owned()
            } else {
                map.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let _ = writeln!(s, "by protocol: {}", join(&self.by_proto));
        let _ = writeln!(s, "by family:   {}", join(&self.by_family));
        let stale = if self.stale {
            ", STALE: may lag behind the table"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "total:       {} (source: {}{stale})",
            self.total, self.source
        );
        s
    }

    /// One JSON object, without a trailing newline.
    pub fn render_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::json::tests::schema_check;

    fn rows() -> Vec<CountRow> {
        vec![
            CountRow {
                mark: 0,
                l3proto: 2,
                l4proto: 6,
                connections: 5,
            },
            CountRow {
                mark: 0,
                l3proto: 10,
                l4proto: 17,
                connections: 1,
            },
            CountRow {
                mark: 0x10,
                l3proto: 2,
                l4proto: 6,
                connections: 3,
            },
            CountRow {
                mark: 0x10,
                l3proto: 2,
                l4proto: 50,
                connections: 1,
            },
            CountRow {
                mark: 7,
                l3proto: 2,
                l4proto: 1,
                connections: 0,
            },
        ]
    }

    fn meta(stale: bool) -> CountsMeta {
        CountsMeta {
            source: "ebpf".into(),
            stale,
        }
    }

    #[test]
    fn aggregates_per_mark_proto_family() {
        let r = CountsReport::new(&rows(), &meta(false));
        assert_eq!(r.total, 10);
        assert_eq!(r.marks.len(), 2, "zero rows are dropped");
        assert_eq!(
            r.marks[0],
            MarkShare {
                mark: 0,
                mark_hex: "0x00000000".into(),
                connections: 6,
                share: 0.6
            }
        );
        assert_eq!(
            r.marks[1],
            MarkShare {
                mark: 16,
                mark_hex: "0x00000010".into(),
                connections: 4,
                share: 0.4
            }
        );
        assert_eq!(r.by_proto.get("tcp"), Some(&8));
        assert_eq!(r.by_proto.get("udp"), Some(&1));
        assert_eq!(r.by_proto.get("50"), Some(&1));
        assert_eq!(r.by_family.get("ipv4"), Some(&9));
        assert_eq!(r.by_family.get("ipv6"), Some(&1));
    }

    #[test]
    fn text_table() {
        let r = CountsReport::new(&rows(), &meta(false));
        assert_eq!(
            r.render_text(),
            "MARK        HEX         CONNECTIONS   SHARE\n\
             0           0x00000000            6   60.0%\n\
             16          0x00000010            4   40.0%\n\
             \n\
             by protocol: 50 1, tcp 8, udp 1\n\
             by family:   ipv4 9, ipv6 1\n\
             total:       10 (source: ebpf)\n"
        );
    }

    #[test]
    fn text_table_empty_and_stale() {
        let r = CountsReport::new(
            &[],
            &CountsMeta {
                source: "netlink".into(),
                stale: true,
            },
        );
        assert_eq!(
            r.render_text(),
            "MARK        HEX         CONNECTIONS   SHARE\n\
             \n\
             by protocol: -\n\
             by family:   ipv4 0, ipv6 0\n\
             total:       0 (source: netlink, STALE: may lag behind the table)\n"
        );
    }

    #[test]
    fn share_rounding_and_big_marks() {
        let rows = [
            CountRow {
                mark: u32::MAX,
                l3proto: 2,
                l4proto: 6,
                connections: 1,
            },
            CountRow {
                mark: 1,
                l3proto: 2,
                l4proto: 6,
                connections: 2,
            },
        ];
        let r = CountsReport::new(&rows, &meta(false));
        assert_eq!(r.marks[0].share, 0.6667);
        assert_eq!(r.marks[1].share, 0.3333);
        let text = r.render_text();
        assert!(
            text.contains("\n4294967295  0xffffffff            1   33.3%\n"),
            "{text}"
        );
        assert!(
            text.contains("\n1           0x00000001            2   66.7%\n"),
            "{text}"
        );
    }

    #[test]
    fn json_object() {
        let r = CountsReport::new(&rows(), &meta(false));
        let s = r.render_json().unwrap();
        assert_eq!(
            s,
            "{\"marks\":[{\"mark\":0,\"mark_hex\":\"0x00000000\",\"connections\":6,\"share\":0.6},\
             {\"mark\":16,\"mark_hex\":\"0x00000010\",\"connections\":4,\"share\":0.4}],\
             \"by_proto\":{\"50\":1,\"tcp\":8,\"udp\":1},\"by_family\":{\"ipv4\":9,\"ipv6\":1},\
             \"total\":10,\"source\":\"ebpf\",\"stale\":false}"
        );
        let schema: serde_json::Value = serde_json::from_str(COUNTS_SCHEMA).unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        schema_check::validate(&schema, &schema, &v, "$").unwrap();
        let empty: serde_json::Value =
            serde_json::from_str(&CountsReport::new(&[], &meta(true)).render_json().unwrap())
                .unwrap();
        schema_check::validate(&schema, &schema, &empty, "$").unwrap();
    }

    #[test]
    fn schema_is_documented() {
        let doc = include_str!("../../../docs/json-schema.md");
        assert!(
            doc.contains(COUNTS_SCHEMA),
            "docs/json-schema.md has a stale counts schema"
        );
    }
}
