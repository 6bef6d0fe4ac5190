//! One JSON object per event and line. Field names are snake_case and stable;
//! docs/json-schema.md describes them and docs/event.schema.json is the
//! schema the tests validate every object against.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::fmt;

use serde::Serialize;
use serde::ser::{SerializeSeq as _, Serializer};

use super::conntrack_text::{Addr, sec_usec};
use crate::event::vocabulary::{
    CHANGE_NAMES, STATUS_NAMES, l3_name, l4_label, shown_tcp_state, tcp_state_name,
};
use crate::event::{Event, EventKind, L4Ids, Tuple, ZoneDir};

/// The JSON Schema (draft 2020-12) of one event object (docs/event.schema.json);
/// the tests validate every event shape against it.
#[cfg(test)]
pub const EVENT_SCHEMA: &str = include_str!("../../../docs/event.schema.json");

/// Serialises a `Display` value as a JSON string, written straight into the
/// output (no intermediate `String` per field).
struct Shown<T>(T);

impl<T: fmt::Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// `BIT_<n>`: a status bit without a name.
struct BitName(usize);

impl fmt::Display for BitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BIT_{}", self.0)
    }
}

/// The set status bits as names ([`STATUS_NAMES`]), lowest first; bits
/// without a name as `BIT_<n>`.
struct StatusList(u32);

impl Serialize for StatusList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.count_ones() as usize))?;
        for bit in (0..32).filter(|bit| self.0 & (1 << bit) != 0) {
            match STATUS_NAMES.get(bit) {
                Some(name) => seq.serialize_element(name)?,
                None => seq.serialize_element(&Shown(BitName(bit)))?,
            }
        }
        seq.end()
    }
}

/// The named event bits of an UPDATE ([`CHANGE_NAMES`]), lowest first; bits
/// without a name are left out.
struct ChangeList(u16);

impl Serialize for ChangeList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            CHANGE_NAMES
                .iter()
                .enumerate()
                .filter(|(bit, _)| self.0 & (1 << bit) != 0)
                .map(|(_, name)| name),
        )
    }
}

#[derive(Serialize)]
struct JsonEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: Shown<Rfc3339>,
    family: &'static str,
    proto: Cow<'static, str>,
    proto_num: u8,
    orig: JsonTuple<'a>,
    reply: JsonTuple<'a>,
    status: StatusList,
    #[serde(skip_serializing_if = "Option::is_none")]
    changed: Option<ChangeList>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<u32>,
    mark: u32,
    zone: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    zone_dir: Option<&'static str>,
    netns: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<Shown<Rfc3339>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<Shown<Rfc3339>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    portid: Option<u32>,
    id: u64,
}

#[derive(Serialize)]
struct JsonTuple<'a> {
    src: Shown<Addr<'a>>,
    dst: Shown<Addr<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gre_src_key: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gre_dst_key: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    packets: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
}

impl<'a> JsonTuple<'a> {
    fn new(t: &'a Tuple, counters: Option<crate::event::Counters>) -> Self {
        let mut j = JsonTuple {
            src: Shown(Addr(&t.src)),
            dst: Shown(Addr(&t.dst)),
            sport: None,
            dport: None,
            icmp_type: None,
            icmp_code: None,
            icmp_id: None,
            gre_src_key: None,
            gre_dst_key: None,
            packets: counters.map(|c| c.packets),
            bytes: counters.map(|c| c.bytes),
        };
        match t.l4 {
            L4Ids::Ports { sport, dport } => {
                j.sport = Some(sport);
                j.dport = Some(dport);
            }
            L4Ids::Icmp { kind, code, id } => {
                j.icmp_type = Some(kind);
                j.icmp_code = Some(code);
                j.icmp_id = Some(id);
            }
            L4Ids::Gre { src_key, dst_key } => {
                j.gre_src_key = Some(src_key);
                j.gre_dst_key = Some(dst_key);
            }
            L4Ids::None => {}
        }
        j
    }
}

/// Appends one event as a JSON object and a newline.
pub fn format_event(out: &mut Vec<u8>, ev: &Event) -> serde_json::Result<()> {
    let (orig_c, reply_c) = match ev.counters {
        Some([o, r]) => (Some(o), Some(r)),
        None => (None, None),
    };
    let j = JsonEvent {
        kind: match ev.kind {
            EventKind::New => "new",
            EventKind::Update => "update",
            EventKind::Destroy => "destroy",
        },
        time: Shown(Rfc3339(ev.time)),
        family: l3_name(ev.l3proto),
        proto: l4_label(ev.l4proto),
        proto_num: ev.l4proto,
        orig: JsonTuple::new(&ev.orig, orig_c),
        reply: JsonTuple::new(&ev.reply, reply_c),
        status: StatusList(ev.status),
        changed: ev.changes.map(ChangeList),
        tcp_state: shown_tcp_state(ev).map(tcp_state_name),
        timeout: ev.timeout,
        mark: ev.mark,
        zone: ev.zone,
        zone_dir: match ev.zone_dir {
            _ if ev.zone == 0 => None,
            ZoneDir::Both => None,
            ZoneDir::Orig => Some("orig"),
            ZoneDir::Reply => Some("reply"),
        },
        netns: ev.netns,
        start: ev.start_ns.map(|ns| Shown(Rfc3339::from_ns(ns))),
        stop: ev
            .stop_ns
            .filter(|s| *s != 0)
            .map(|ns| Shown(Rfc3339::from_ns(ns))),
        duration_ms: match (ev.start_ns, ev.stop_ns) {
            (Some(start), Some(stop)) if stop >= start && stop != 0 => {
                Some((stop - start) / 1_000_000)
            }
            _ => None,
        },
        portid: ev.portid.filter(|p| *p != 0),
        id: ev.conn_id,
    };
    serde_json::to_writer(&mut *out, &j)?;
    out.push(b'\n');
    Ok(())
}

/// A time displayed as RFC 3339: `2026-11-21T06:40:01.123456Z` (UTC,
/// microseconds, always six digits).
pub struct Rfc3339(pub SystemTime);

impl Rfc3339 {
    fn from_ns(ns: u64) -> Self {
        Rfc3339(UNIX_EPOCH + Duration::from_nanos(ns))
    }
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, micros) = sec_usec(self.0);
        let rem = secs.rem_euclid(86_400) as u64;
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        if !(0..=9999).contains(&y) {
            return write!(
                f,
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
                rem / 3600,
                rem / 60 % 60,
                rem % 60
            );
        }
        // Fixed-width digits into a stack buffer: every event has at least
        // one time, and format padding would dominate its cost.
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        for (at, width, value) in [
            (0, 4, y as u64),
            (5, 2, u64::from(m)),
            (8, 2, u64::from(d)),
            (11, 2, rem / 3600),
            (14, 2, rem / 60 % 60),
            (17, 2, rem % 60),
            (20, 6, u64::from(micros)),
        ] {
            let mut v = value;
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        f.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?)
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::Counters;
    use serde_json::Value;
    use std::net::IpAddr;
    use tracker_common::status;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    pub(crate) fn sample(kind: EventKind) -> Event {
        let orig = Tuple {
            src: ip("10.0.0.1"),
            dst: ip("10.0.0.2"),
            l4: L4Ids::Ports {
                sport: 43210,
                dport: 80,
            },
        };
        let reply = Tuple {
            src: ip("10.0.0.2"),
            dst: ip("10.0.0.1"),
            l4: L4Ids::Ports {
                sport: 80,
                dport: 43210,
            },
        };
        Event {
            time: UNIX_EPOCH + Duration::from_micros(1_795_243_201_123_456),
            tcp_state: Some(1),
            timeout: Some(120),
            conn_id: 0x0010_8880_0123_4567,
            ..Event::bare(kind, 6, orig, reply)
        }
    }

    fn to_value(ev: &Event) -> Value {
        let mut buf = Vec::new();
        format_event(&mut buf, ev).unwrap();
        let s = String::from_utf8(buf).unwrap();
        assert!(s.ends_with('\n') && s.matches('\n').count() == 1, "{s}");
        serde_json::from_str(&s).unwrap()
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1)); // 2100 is no leap year
        assert_eq!(civil_from_days(20_778), (2026, 11, 21));
    }

    fn rfc3339(t: SystemTime) -> String {
        Rfc3339(t).to_string()
    }

    fn rfc3339_ns(ns: u64) -> String {
        Rfc3339::from_ns(ns).to_string()
    }

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_micros(1_795_243_201_123_456)),
            "2026-11-21T06:40:01.123456Z"
        );
        assert_eq!(
            rfc3339_ns(951_782_400_000_000_999),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(
            rfc3339_ns(1_709_251_199_999_999_000),
            "2024-02-29T23:59:59.999999Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_micros(1)),
            "1969-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn new_event_fields() {
        let v = to_value(&sample(EventKind::New));
        assert_eq!(
            v,
            serde_json::json!({
                "type": "new",
                "time": "2026-11-21T06:40:01.123456Z",
                "family": "ipv4",
                "proto": "tcp",
                "proto_num": 6,
                "orig": {"src": "10.0.0.1", "dst": "10.0.0.2", "sport": 43210, "dport": 80},
                "reply": {"src": "10.0.0.2", "dst": "10.0.0.1", "sport": 80, "dport": 43210},
                "status": ["CONFIRMED"],
                "tcp_state": "SYN_SENT",
                "timeout": 120,
                "mark": 0,
                "zone": 0,
                "netns": 4026531840u32,
                "id": 0x0010_8880_0123_4567u64
            })
        );
    }

    #[test]
    fn field_order_is_stable() {
        let mut buf = Vec::new();
        format_event(&mut buf, &sample(EventKind::New)).unwrap();
        let s = String::from_utf8(buf).unwrap();
        assert!(s.starts_with(
            r#"{"type":"new","time":"2026-11-21T06:40:01.123456Z","family":"ipv4","proto":"tcp","proto_num":6,"orig":{"#
        ));
    }

    #[test]
    fn destroy_event_fields() {
        let mut e = sample(EventKind::Destroy);
        e.status |= status::SEEN_REPLY | status::ASSURED | status::SRC_NAT | status::SRC_NAT_DONE;
        e.tcp_state = None;
        e.timeout = None;
        e.mark = 0x10;
        e.zone = 3;
        e.counters = Some([
            Counters {
                packets: 6,
                bytes: 412,
            },
            Counters {
                packets: 4,
                bytes: 2316,
            },
        ]);
        e.start_ns = Some(1_795_243_190_000_000_000);
        e.stop_ns = Some(1_795_243_201_250_000_000);
        e.portid = Some(4242);
        let v = to_value(&e);
        assert_eq!(v["type"], "destroy");
        assert_eq!(
            v["status"],
            serde_json::json!([
                "SEEN_REPLY",
                "ASSURED",
                "CONFIRMED",
                "SRC_NAT",
                "SRC_NAT_DONE"
            ])
        );
        assert_eq!(v["orig"]["packets"], 6);
        assert_eq!(v["reply"]["bytes"], 2316);
        assert_eq!(v["start"], "2026-11-21T06:39:50.000000Z");
        assert_eq!(v["stop"], "2026-11-21T06:40:01.250000Z");
        assert_eq!(v["duration_ms"], 11_250);
        assert_eq!(v["portid"], 4242);
        assert_eq!(v["mark"], 16);
        assert_eq!(v["zone"], 3);
        // A zone of both directions has no direction field; one direction does.
        assert!(v.get("zone_dir").is_none());
        e.zone_dir = ZoneDir::Reply;
        assert_eq!(to_value(&e)["zone_dir"], "reply");
        e.zone = 0;
        assert!(to_value(&e).get("zone_dir").is_none());
        assert!(v.get("tcp_state").is_none() && v.get("timeout").is_none());
    }

    #[test]
    fn icmp_gre_unknown_ipv6() {
        let mut e = sample(EventKind::New);
        e.l4proto = 1;
        e.tcp_state = None;
        e.orig.l4 = L4Ids::Icmp {
            kind: 8,
            code: 0,
            id: 77,
        };
        let v = to_value(&e);
        assert_eq!(
            v["orig"],
            serde_json::json!({"src":"10.0.0.1","dst":"10.0.0.2","icmp_type":8,"icmp_code":0,"icmp_id":77})
        );
        assert_eq!(v["proto"], "icmp");

        e.l4proto = 47;
        e.orig.l4 = L4Ids::Gre {
            src_key: 1,
            dst_key: 2,
        };
        let v = to_value(&e);
        assert_eq!(v["orig"]["gre_src_key"], 1);
        assert_eq!(v["orig"]["gre_dst_key"], 2);

        e.l4proto = 50;
        e.orig.l4 = L4Ids::None;
        let v = to_value(&e);
        assert_eq!(v["proto"], "50");
        assert_eq!(v["proto_num"], 50);
        assert_eq!(
            v["orig"],
            serde_json::json!({"src":"10.0.0.1","dst":"10.0.0.2"})
        );

        e.l3proto = 10;
        e.orig.src = ip("2001:db8::1");
        e.orig.dst = ip("::ffff:10.0.0.2");
        let v = to_value(&e);
        assert_eq!(v["family"], "ipv6");
        assert_eq!(v["orig"]["src"], "2001:db8::1");
        assert_eq!(v["orig"]["dst"], "::ffff:10.0.0.2");
    }

    #[test]
    fn update_lists_what_changed_by_kernel_name() {
        use tracker_common::ipct;
        let mut e = sample(EventKind::Update);
        assert!(to_value(&e).get("changed").is_none(), "unknown, so absent");
        e.changes = Some(ipct::REPLY | ipct::ASSURED | ipct::PROTOINFO | 1 << 15);
        assert_eq!(
            to_value(&e)["changed"],
            serde_json::json!(["reply", "assured", "protoinfo"])
        );
        e.changes = Some(ipct::MARK);
        assert_eq!(to_value(&e)["changed"], serde_json::json!(["mark"]));
    }

    #[test]
    fn status_names_cover_every_bit() {
        let mut e = sample(EventKind::Destroy);
        e.status = u32::MAX;
        let v = to_value(&e);
        let names = v["status"].as_array().unwrap();
        assert_eq!(names.len(), 32);
        assert_eq!(names[12], "NAT_CLASH");
        assert_eq!(names[15], "HW_OFFLOAD");
        assert_eq!(names[16], "BIT_16");
        assert_eq!(names[31], "BIT_31");
        e.status = status::DYING | status::HELPER;
        assert_eq!(
            to_value(&e)["status"],
            serde_json::json!(["DYING", "HELPER"])
        );
    }

    #[test]
    fn every_event_shape_validates_against_the_schema() {
        let schema: Value = serde_json::from_str(EVENT_SCHEMA).unwrap();
        let mut update = sample(EventKind::Update);
        update.changes = Some(tracker_common::ipct::REPLY | tracker_common::ipct::MARK);
        let mut events = vec![sample(EventKind::New), sample(EventKind::Update), update];
        let mut d = sample(EventKind::Destroy);
        d.counters = Some([
            Counters {
                packets: 1,
                bytes: 2,
            },
            Counters {
                packets: 3,
                bytes: 4,
            },
        ]);
        d.start_ns = Some(1);
        d.stop_ns = Some(2_000_000);
        d.portid = Some(9);
        d.status = u32::MAX;
        events.push(d);
        let mut icmp6 = sample(EventKind::New);
        icmp6.l3proto = 10;
        icmp6.l4proto = 58;
        icmp6.orig.l4 = L4Ids::Icmp {
            kind: 128,
            code: 0,
            id: 1,
        };
        icmp6.reply.l4 = L4Ids::Icmp {
            kind: 129,
            code: 0,
            id: 1,
        };
        icmp6.orig.src = ip("fe80::1");
        events.push(icmp6);
        let mut other = sample(EventKind::Destroy);
        other.l4proto = 132;
        other.tcp_state = None;
        other.timeout = None;
        events.push(other.clone());
        other.l4proto = 99;
        other.orig.l4 = L4Ids::None;
        other.reply.l4 = L4Ids::None;
        events.push(other);
        for ev in &events {
            let v = to_value(ev);
            if let Err(e) = schema_check::validate(&schema, &schema, &v, "$") {
                panic!("{e}\n{v}");
            }
        }
        // The schema rejects what it should.
        let mut bad = to_value(&sample(EventKind::New));
        bad["type"] = "created".into();
        assert!(schema_check::validate(&schema, &schema, &bad, "$").is_err());
        let mut bad = to_value(&sample(EventKind::New));
        bad.as_object_mut().unwrap().remove("orig");
        assert!(schema_check::validate(&schema, &schema, &bad, "$").is_err());
        let mut bad = to_value(&sample(EventKind::New));
        bad["orig"]["sport"] = 70000.into();
        assert!(schema_check::validate(&schema, &schema, &bad, "$").is_err());
        let mut bad = to_value(&sample(EventKind::New));
        bad["time"] = "yesterday".into();
        assert!(schema_check::validate(&schema, &schema, &bad, "$").is_err());
    }

    #[test]
    fn documented_examples_validate_and_schema_copy_is_current() {
        let doc = include_str!("../../../docs/json-schema.md");
        let schema: Value = serde_json::from_str(EVENT_SCHEMA).unwrap();
        // The schema block in the document is the schema file.
        assert!(
            doc.contains(EVENT_SCHEMA.trim_end()),
            "docs/json-schema.md has a stale schema copy"
        );
        // Every ```json example block that is an event validates.
        let mut checked = 0;
        for block in doc.split("```json\n").skip(1) {
            let body = block.split("```").next().unwrap();
            let v: Value = serde_json::from_str(body).unwrap();
            if v.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| ["new", "update", "destroy"].contains(&t))
            {
                schema_check::validate(&schema, &schema, &v, "$").unwrap();
                checked += 1;
            }
        }
        assert!(
            checked >= 3,
            "expected an example per event type, found {checked}"
        );
    }

    /// The part of JSON Schema 2020-12 that docs/event.schema.json uses:
    /// type, enum, const, required, properties, additionalProperties: false,
    /// items, minimum, maximum, pattern (only the few the schemas use), $ref to
    /// #/$defs, allOf, anyOf and if/then.
    pub(crate) mod schema_check {
        use serde_json::Value;

        pub(crate) fn validate(root: &Value, s: &Value, v: &Value, at: &str) -> Result<(), String> {
            let Some(s) = s.as_object() else {
                return Ok(());
            };
            for key in s.keys() {
                let known = [
                    "$schema",
                    "$id",
                    "$defs",
                    "$ref",
                    "title",
                    "description",
                    "type",
                    "enum",
                    "const",
                    "required",
                    "properties",
                    "additionalProperties",
                    "items",
                    "minimum",
                    "maximum",
                    "pattern",
                    "allOf",
                    "anyOf",
                    "if",
                    "then",
                    "examples",
                    "format",
                ];
                if !known.contains(&key.as_str()) {
                    return Err(format!(
                        "schema keyword {key} not supported by the test validator"
                    ));
                }
            }
            if let Some(r) = s.get("$ref").and_then(Value::as_str) {
                let name = r
                    .strip_prefix("#/$defs/")
                    .ok_or(format!("unsupported $ref {r}"))?;
                validate(root, &root["$defs"][name], v, at)?;
            }
            if let Some(t) = s.get("type") {
                let types: Vec<&str> = match t {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                let ok = types.iter().any(|t| match *t {
                    "object" => v.is_object(),
                    "array" => v.is_array(),
                    "string" => v.is_string(),
                    "integer" => v.is_u64() || v.is_i64(),
                    "number" => v.is_number(),
                    "boolean" => v.is_boolean(),
                    "null" => v.is_null(),
                    _ => false,
                });
                if !ok {
                    return Err(format!("{at}: {v} is not of type {t}"));
                }
            }
            if let Some(e) = s.get("enum").and_then(Value::as_array)
                && !e.contains(v)
            {
                return Err(format!("{at}: {v} not in enum"));
            }
            if let Some(c) = s.get("const")
                && c != v
            {
                return Err(format!("{at}: {v} is not {c}"));
            }
            if let Some(min) = s.get("minimum").and_then(Value::as_f64)
                && v.as_f64().is_some_and(|n| n < min)
            {
                return Err(format!("{at}: {v} < {min}"));
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64)
                && v.as_f64().is_some_and(|n| n > max)
            {
                return Err(format!("{at}: {v} > {max}"));
            }
            if let (Some(p), Some(text)) = (s.get("pattern").and_then(Value::as_str), v.as_str())
                && !pattern_matches(p, text)?
            {
                return Err(format!("{at}: {text} does not match {p}"));
            }
            if let Some(obj) = v.as_object() {
                if let Some(req) = s.get("required").and_then(Value::as_array) {
                    for r in req.iter().filter_map(Value::as_str) {
                        if !obj.contains_key(r) {
                            return Err(format!("{at}: missing {r}"));
                        }
                    }
                }
                let props = s.get("properties").and_then(Value::as_object);
                for (k, val) in obj {
                    match props.and_then(|p| p.get(k)) {
                        Some(ps) => validate(root, ps, val, &format!("{at}.{k}"))?,
                        None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                            return Err(format!("{at}: unexpected property {k}"));
                        }
                        None => {}
                    }
                }
            }
            if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
                for (i, val) in arr.iter().enumerate() {
                    validate(root, items, val, &format!("{at}[{i}]"))?;
                }
            }
            if let Some(all) = s.get("allOf").and_then(Value::as_array) {
                for sub in all {
                    validate(root, sub, v, at)?;
                }
            }
            if let Some(any) = s.get("anyOf").and_then(Value::as_array)
                && !any.iter().any(|sub| validate(root, sub, v, at).is_ok())
            {
                return Err(format!("{at}: {v} matches no alternative of anyOf"));
            }
            if let Some(cond) = s.get("if")
                && validate(root, cond, v, at).is_ok()
                && let Some(then) = s.get("then")
            {
                validate(root, then, v, at)?;
            }
            Ok(())
        }

        /// The schema uses exactly two patterns; anything else fails loudly.
        fn pattern_matches(p: &str, text: &str) -> Result<bool, String> {
            match p {
                r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$" => {
                    let shape = "dddd-dd-ddTdd:dd:dd.ddddddZ";
                    Ok(text.len() == shape.len()
                        && text.bytes().zip(shape.bytes()).all(|(c, s)| match s {
                            b'd' => c.is_ascii_digit(),
                            _ => c == s,
                        }))
                }
                "^(0x[0-9a-f]{8})$" => Ok(text.len() == 10
                    && text.starts_with("0x")
                    && text[2..]
                        .bytes()
                        .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))),
                r"^BIT_[0-9]+$" => Ok(text
                    .strip_prefix("BIT_")
                    .is_some_and(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))),
                _ => Err(format!("pattern {p} not supported by the test validator")),
            }
        }
    }
}
