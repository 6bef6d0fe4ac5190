//! One JSON object per event and line. Field names are snake_case and stable;
//! docs/json-schema.md describes them and docs/event.schema.json is the
//! schema the tests validate every object against.
//!
//! The object is written straight into the output buffer: keys as byte
//! literals, vocabulary names from tables built at compile time, numbers,
//! addresses and times assembled in registers and appended in copies of
//! constant size. Through serde, string escaping and `core::fmt` for
//! addresses and times took most of an event's time.
//! json/reference.rs keeps that serde writer as the tests' oracle: the bytes
//! must stay the same, key order included.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::conntrack_text::sec_usec;
use crate::event::vocabulary::{
    CHANGE_NAMES, STATUS_NAMES, dccp_state_name, l3_name, l4_label, sctp_state_name,
    shown_tcp_state, tcp_state_name,
};
use crate::event::{Counters, Event, EventKind, L4Ids, Tuple, ZoneDir};
use crate::model::addr::{ipv6_ends_in_ipv4, ipv6_zero_run};

#[cfg(test)]
mod differential;
#[cfg(test)]
mod reference;

/// The JSON Schema (draft 2020-12) of one event object (docs/event.schema.json);
/// the tests validate every event shape against it.
#[cfg(test)]
pub const EVENT_SCHEMA: &str = include_str!("../../../docs/event.schema.json");

/// Appends one event as a JSON object and a newline. Writing cannot fail;
/// the `Result` is the one the caller's error type already carries.
///
/// A string value's opening quote ends the key literal before it and its
/// writer appends the closing one, so that each quote rides along with a
/// write that happens anyway.
pub fn format_event(out: &mut Vec<u8>, ev: &Event) -> serde_json::Result<()> {
    out.extend_from_slice(match ev.kind {
        EventKind::New => br#"{"type":"new","time":""#,
        EventKind::Update => br#"{"type":"update","time":""#,
        EventKind::Destroy => br#"{"type":"destroy","time":""#,
    });
    let (secs, micros) = sec_usec(ev.time);
    push_time(out, secs, micros);
    out.extend_from_slice(br#","family":""#);
    push_name(out, l3_name(ev.l3proto));
    out.extend_from_slice(br#","proto":""#);
    push_name(out, &l4_label(ev.l4proto));
    out.extend_from_slice(br#","proto_num":"#);
    push_num(out, ev.l4proto);
    let (orig_c, reply_c) = match ev.counters {
        Some([o, r]) => (Some(o), Some(r)),
        None => (None, None),
    };
    out.extend_from_slice(br#","orig":{"src":""#);
    push_tuple(out, &ev.orig, orig_c);
    out.extend_from_slice(br#"},"reply":{"src":""#);
    push_tuple(out, &ev.reply, reply_c);
    out.extend_from_slice(br#"},"status":["#);
    push_list(out, &STATUS_JSON, ev.status);
    if let Some(changes) = ev.changes {
        out.extend_from_slice(br#","changed":["#);
        push_list(out, &CHANGE_JSON, u32::from(changes));
    }
    if let Some(name) = shown_tcp_state(ev).map(tcp_state_name) {
        out.extend_from_slice(br#","tcp_state":""#);
        push_name(out, name);
    }
    if let Some(name) = ev.sctp_state.map(sctp_state_name) {
        out.extend_from_slice(br#","sctp_state":""#);
        push_name(out, name);
    }
    if let Some(name) = ev.dccp_state.map(dccp_state_name) {
        out.extend_from_slice(br#","dccp_state":""#);
        push_name(out, name);
    }
    if let Some(timeout) = ev.timeout {
        out.extend_from_slice(br#","timeout":"#);
        push_num(out, timeout);
    }
    out.extend_from_slice(br#","mark":"#);
    push_num(out, ev.mark);
    out.extend_from_slice(br#","zone":"#);
    push_num(out, ev.zone);
    match ev.zone_dir {
        _ if ev.zone == 0 => {}
        ZoneDir::Both => {}
        ZoneDir::Orig => out.extend_from_slice(br#","zone_dir":"orig""#),
        ZoneDir::Reply => out.extend_from_slice(br#","zone_dir":"reply""#),
    }
    out.extend_from_slice(br#","netns":"#);
    push_num(out, ev.netns);
    if let Some(start) = ev.start_ns {
        out.extend_from_slice(br#","start":""#);
        push_time_ns(out, start);
    }
    if let Some(stop) = ev.stop_ns.filter(|s| *s != 0) {
        out.extend_from_slice(br#","stop":""#);
        push_time_ns(out, stop);
    }
    if let (Some(start), Some(stop)) = (ev.start_ns, ev.stop_ns)
        && stop >= start
        && stop != 0
    {
        out.extend_from_slice(br#","duration_ms":"#);
        push_num(out, (stop - start) / 1_000_000);
    }
    if let Some(portid) = ev.portid.filter(|p| *p != 0) {
        out.extend_from_slice(br#","portid":"#);
        push_num(out, portid);
    }
    out.extend_from_slice(br#","id":"#);
    push_num(out, ev.conn_id);
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// One direction: addresses, the protocol's identifiers, then counters.
/// Its `{"src":"` and closing brace go out with the keys around it.
fn push_tuple(out: &mut Vec<u8>, t: &Tuple, counters: Option<Counters>) {
    push_addr(out, &t.src);
    out.extend_from_slice(br#","dst":""#);
    push_addr(out, &t.dst);
    match t.l4 {
        L4Ids::Ports { sport, dport } => {
            out.extend_from_slice(br#","sport":"#);
            push_num(out, sport);
            out.extend_from_slice(br#","dport":"#);
            push_num(out, dport);
        }
        L4Ids::Icmp { kind, code, id } => {
            out.extend_from_slice(br#","icmp_type":"#);
            push_num(out, kind);
            out.extend_from_slice(br#","icmp_code":"#);
            push_num(out, code);
            out.extend_from_slice(br#","icmp_id":"#);
            push_num(out, id);
        }
        L4Ids::Gre { src_key, dst_key } => {
            out.extend_from_slice(br#","gre_src_key":"#);
            push_num(out, src_key);
            out.extend_from_slice(br#","gre_dst_key":"#);
            push_num(out, dst_key);
        }
        L4Ids::None => {}
    }
    if let Some(c) = counters {
        out.extend_from_slice(br#","packets":"#);
        push_num(out, c.packets);
        out.extend_from_slice(br#","bytes":"#);
        push_num(out, c.bytes);
    }
}

/// Appends the first `len` bytes of `block`: a copy of constant size
/// compiles to a few moves, where a copy of `len` bytes calls memcpy.
fn push_block<const N: usize>(out: &mut Vec<u8>, block: &[u8; N], len: usize) {
    let at = out.len();
    out.extend_from_slice(block);
    out.truncate(at + len);
}

/// A name from the vocabulary and its closing quote. The names are plain
/// ASCII identifiers, so they go out unescaped; the tests hold every table
/// to that (`vocabulary_names_need_no_escaping`) and compare the output
/// with serde_json's.
fn push_name(out: &mut Vec<u8>, name: &str) {
    debug_assert!(needs_no_escaping(name.as_bytes()), "{name:?}");
    out.extend_from_slice(name.as_bytes());
    out.push(b'"');
}

/// No byte that JSON strings escape: `"`, `\` and control characters.
const fn needs_no_escaping(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] < 0x20 || s[i] == b'"' || s[i] == b'\\' {
            return false;
        }
        i += 1;
    }
    true
}

/// One element of a list of names: `"NAME",` in a 16-byte block, and its
/// length (0: the bit has no element).
type Element = ([u8; 16], usize);

/// Fails the build when a name needs escaping or outgrows its block.
const fn element(name: &[u8]) -> Element {
    assert!(
        name.len() + 3 <= 16,
        "a list name outgrew its 16-byte block"
    );
    assert!(needs_no_escaping(name), "a list name needs JSON escaping");
    let mut b = [0u8; 16];
    b[0] = b'"';
    let mut i = 0;
    while i < name.len() {
        b[1 + i] = name[i];
        i += 1;
    }
    b[1 + i] = b'"';
    b[2 + i] = b',';
    (b, name.len() + 3)
}

/// The `status` element of each bit: its name ([`STATUS_NAMES`]) or
/// `BIT_<n>`.
const STATUS_JSON: [Element; 32] = {
    let mut t = [([0u8; 16], 0); 32];
    let mut bit = 0;
    while bit < 32 {
        t[bit] = if bit < STATUS_NAMES.len() {
            element(STATUS_NAMES[bit].as_bytes())
        } else if bit < 10 {
            element(&[b'B', b'I', b'T', b'_', b'0' + bit as u8])
        } else {
            element(&[
                b'B',
                b'I',
                b'T',
                b'_',
                b'0' + (bit / 10) as u8,
                b'0' + (bit % 10) as u8,
            ])
        };
        bit += 1;
    }
    t
};

/// The `changed` element of each event bit ([`CHANGE_NAMES`]); bits
/// without a name have none.
const CHANGE_JSON: [Element; 16] = {
    let mut t = [([0u8; 16], 0); 16];
    let mut bit = 0;
    while bit < CHANGE_NAMES.len() {
        t[bit] = element(CHANGE_NAMES[bit].as_bytes());
        bit += 1;
    }
    t
};

/// The elements of the set bits, lowest first, and the closing bracket
/// (after `[`).
fn push_list<const N: usize>(out: &mut Vec<u8>, elements: &[Element; N], bits: u32) {
    let mut bits = bits;
    while bits != 0 {
        let (block, len) = &elements[bits.trailing_zeros() as usize];
        if *len != 0 {
            push_block(out, block, *len);
        }
        bits &= bits - 1;
    }
    match out.last_mut() {
        Some(last) if *last == b',' => *last = b']',
        _ => out.push(b']'),
    }
}

/// `PAIRS[v]`: the two digits of `v` < 100, the first in the low byte.
const PAIRS: [u16; 100] = {
    let mut t = [0u16; 100];
    let mut v = 0;
    while v < 100 {
        t[v] = u16::from_le_bytes([b'0' + (v / 10) as u8, b'0' + (v % 10) as u8]);
        v += 1;
    }
    t
};

fn pair(v: u32) -> u64 {
    u64::from(PAIRS[v as usize])
}

/// Appends the first `len` bytes of `word`, low byte first.
fn push_word(out: &mut Vec<u8>, word: u64, len: usize) {
    push_block(out, &word.to_le_bytes(), len);
}

/// An unsigned integer in decimal, as serde_json writes it (with itoa).
#[inline]
fn push_num(out: &mut Vec<u8>, v: impl Into<u64>) {
    out.extend_from_slice(itoa::Buffer::new().format(v.into()).as_bytes());
}

/// `DOTTED[v]`: the digits of `v` and a dot, the first in the low byte, and
/// their count.
const DOTTED: [(u32, usize); 256] = {
    let mut t = [(0u32, 0usize); 256];
    let mut v = 0;
    while v < 256 {
        let (h, te, o) = (
            b'0' + (v / 100) as u8,
            b'0' + (v / 10 % 10) as u8,
            b'0' + (v % 10) as u8,
        );
        t[v] = if v >= 100 {
            (u32::from_le_bytes([h, te, o, b'.']), 4)
        } else if v >= 10 {
            (u32::from_le_bytes([te, o, b'.', 0]), 3)
        } else {
            (u32::from_le_bytes([o, b'.', 0, 0]), 2)
        };
        v += 1;
    }
    t
};

/// An address as conntrack prints it (`conntrack_text::Addr`) and its
/// closing quote.
fn push_addr(out: &mut Vec<u8>, a: &IpAddr) {
    match *a {
        IpAddr::V4(a) => push_ipv4(out, a),
        IpAddr::V6(a) => push_ipv6(out, a),
    }
}

/// The octets, each with a dot after it, assembled in two words (at most
/// 8 bytes each); the last dot becomes the closing quote.
fn push_ipv4(out: &mut Vec<u8>, a: Ipv4Addr) {
    let [a, b, c, d] = a.octets().map(|o| DOTTED[usize::from(o)]);
    let high = u64::from(a.0) | u64::from(b.0) << (8 * a.1);
    let low = u64::from(c.0) | u64::from(d.0) << (8 * c.1);
    let low = low ^ u64::from(b'.' ^ b'"') << (8 * (c.1 + d.1 - 1));
    push_word(out, high, a.1 + b.1);
    push_word(out, low, c.1 + d.1);
}

/// glibc's `inet_ntop6()`, as `conntrack_text::Addr` displays it, and the
/// closing quote: compresses the first longest run of two or more zero
/// groups, and writes the last 32 bits as dotted IPv4 for IPv4-mapped
/// (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) addresses.
fn push_ipv6(out: &mut Vec<u8>, a: Ipv6Addr) {
    let w = a.segments();
    let (best_base, best_len) = ipv6_zero_run(&w);
    let best_end = best_base + best_len;
    let mut i = 0;
    while i < 8 {
        if best_len != 0 && i == best_base {
            out.push(b':');
            i = best_end;
            continue;
        }
        if i == 6 && ipv6_ends_in_ipv4(&w, (best_base, best_len)) {
            out.push(b':');
            let o = a.octets();
            return push_ipv4(out, Ipv4Addr::new(o[12], o[13], o[14], o[15]));
        }
        let (hex, len) = hex_group(w[i]);
        if i == 0 {
            push_word(out, hex, len);
        } else {
            push_word(out, u64::from(b':') | hex << 8, len + 1);
        }
        i += 1;
    }
    if best_len != 0 && best_end == 8 {
        out.extend_from_slice(b":\"");
    } else {
        out.push(b'"');
    }
}

/// A group in lower-case hex without leading zeros, the first digit in the
/// low byte, and its length: the four nibbles spread to bytes and turned
/// into digits side by side.
fn hex_group(g: u16) -> (u64, usize) {
    let n = u32::from(g);
    let nibbles = n >> 12 | (n >> 8 & 0xf) << 8 | (n >> 4 & 0xf) << 16 | (n & 0xf) << 24;
    // 1 in each byte whose nibble is a letter (10..=15): adding 6 carries
    // into bit 4 exactly then.
    let letters = (nibbles + 0x0606_0606) >> 4 & 0x0101_0101;
    let ascii = nibbles + 0x3030_3030 + letters * (b'a' - b'0' - 10) as u32;
    let len = (16 - g.leading_zeros()).div_ceil(4).max(1);
    (u64::from(ascii >> (8 * (4 - len))), len as usize)
}

/// 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z in seconds since the
/// epoch: the times whose year has four digits.
const YEAR_0: i64 = -62_167_219_200;
const YEAR_10000: i64 = 253_402_300_800;

/// A time since the epoch in RFC 3339, `2026-11-21T06:40:01.123456Z` (UTC,
/// microseconds, always six digits), and the closing quote: two 16-byte
/// writes.
fn push_time(out: &mut Vec<u8>, secs: i64, micros: u32) {
    if !(YEAR_0..YEAR_10000).contains(&secs) {
        return push_time_wide(out, secs, micros);
    }
    let since_0 = (secs - YEAR_0) as u64;
    let days = (since_0 / 86_400) as u32;
    let rem = (since_0 % 86_400) as u32;
    let (y, m, d) = date_of_day(days);
    let c = |ch: u8| u64::from(ch);
    // YYYY-MM- DDThh:mm :ss.uuuu uuZ"
    let w0 = pair(y / 100) | pair(y % 100) << 16 | c(b'-') << 32 | pair(m) << 40 | c(b'-') << 56;
    let w1 = pair(d)
        | c(b'T') << 16
        | pair(rem / 3600) << 24
        | c(b':') << 40
        | pair(rem / 60 % 60) << 48;
    let w2 = c(b':')
        | pair(rem % 60) << 8
        | c(b'.') << 24
        | pair(micros / 10_000) << 32
        | pair(micros / 100 % 100) << 48;
    let w3 = pair(micros % 100) | c(b'Z') << 16 | c(b'"') << 24;
    let head = u128::from(w0) | u128::from(w1) << 64;
    let tail = u128::from(w2) | u128::from(w3) << 64;
    out.extend_from_slice(&head.to_le_bytes());
    push_block(out, &tail.to_le_bytes(), 12);
}

/// Days since 0000-01-01 (< 3 652 425, the end of 9999) → (year, month,
/// day): Neri and Schneider's Euclidean affine functions ("Euclidean affine
/// functions and their application to calendar algorithms", 2022), which
/// need only u32 multiplications and shifts. The tests check it against
/// [`civil_from_days`] on every day of those years.
fn date_of_day(days: u32) -> (u32, u32, u32) {
    // Counted from 0000-03-01 (the year then ends with the leap day), one
    // 400-year cycle earlier so that January and February of year 0 stay
    // positive.
    const K: u32 = 146_097 - 60;
    const L: u32 = 400;
    let n = days + K;
    let n1 = 4 * n + 3;
    let century = n1 / 146_097;
    let nc = n1 % 146_097 / 4;
    let n2 = 4 * nc + 3;
    let p2 = 2_939_745 * u64::from(n2);
    let z = (p2 >> 32) as u32;
    let ny = (p2 as u32) / 2_939_745 / 4;
    let y = 100 * century + z;
    let n3 = 2141 * ny + 197_913;
    let (m, d) = (n3 >> 16, (n3 & 0xffff) / 2141);
    // The computational year starts in March.
    let jan_feb = ny >= 306;
    (
        y + u32::from(jan_feb) - L,
        if jan_feb { m - 12 } else { m },
        d + 1,
    )
}

/// A year outside 0..=9999 (a wall clock far off), padded as `{:04}` pads:
/// to four characters, a minus sign counting as one.
#[cold]
fn push_time_wide(out: &mut Vec<u8>, secs: i64, micros: u32) {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400) as u32;
    if y < 0 {
        out.push(b'-');
        let abs = y.unsigned_abs();
        let digits = abs.checked_ilog10().map_or(1, |l| l as usize + 1);
        out.extend(std::iter::repeat_n(b'0', 3usize.saturating_sub(digits)));
        push_num(out, abs);
    } else {
        push_num(out, y as u64);
    }
    let mut b = *b"-00-00T00:00:00.000000Z\"";
    for (at, v) in [
        (1, m),
        (4, d),
        (7, rem / 3600),
        (10, rem / 60 % 60),
        (13, rem % 60),
        (16, micros / 10_000),
        (18, micros / 100 % 100),
        (20, micros % 100),
    ] {
        b[at..at + 2].copy_from_slice(&PAIRS[v as usize].to_le_bytes());
    }
    out.extend_from_slice(&b);
}

/// Nanoseconds since the epoch (the tstamp extension) as [`push_time`].
fn push_time_ns(out: &mut Vec<u8>, ns: u64) {
    push_time(
        out,
        (ns / 1_000_000_000) as i64,
        (ns % 1_000_000_000 / 1000) as u32,
    );
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
    use serde_json::Value;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
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

    /// The time as `push_time` writes it, without the closing quote.
    fn unquoted(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        let s = String::from_utf8(out).unwrap();
        s.strip_suffix('"').unwrap().to_owned()
    }

    fn rfc3339(t: SystemTime) -> String {
        let (secs, micros) = sec_usec(t);
        unquoted(|out| push_time(out, secs, micros))
    }

    fn rfc3339_ns(ns: u64) -> String {
        unquoted(|out| push_time_ns(out, ns))
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
        // Years past 9999 take the wide path, unpadded beyond four digits.
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(253_402_300_800)),
            "10000-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_micros(253_402_300_799_999_999)),
            "9999-12-31T23:59:59.999999Z"
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
