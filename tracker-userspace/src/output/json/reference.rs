//! The serde-based writer that `json::format_event` replaced, kept unchanged
//! as the oracle of the differential tests (json/differential.rs): the fast
//! writer must produce exactly its bytes.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::ser::{SerializeSeq as _, Serializer};

use super::civil_from_days;
use crate::event::vocabulary::{
    CHANGE_NAMES, STATUS_NAMES, dccp_state_name, l3_name, l4_label, sctp_state_name,
    shown_tcp_state, tcp_state_name,
};
use crate::event::{Event, EventKind, L4Ids, Tuple, ZoneDir};
use crate::output::conntrack_text::{Addr, sec_usec};

/// Serialises a `Display` value as a JSON string.
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
    sctp_state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dccp_state: Option<&'static str>,
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

/// Appends one event as a JSON object and a newline, through serde_json.
pub(super) fn format_event(out: &mut Vec<u8>, ev: &Event) -> serde_json::Result<()> {
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
        sctp_state: ev.sctp_state.map(sctp_state_name),
        dccp_state: ev.dccp_state.map(dccp_state_name),
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
pub(super) struct Rfc3339(pub SystemTime);

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
