//! The fast writer against the serde writer it replaced (json/reference.rs):
//! byte for byte over many generated events, and its parts (addresses,
//! times and dates, numbers, names) against their references over many
//! values each.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{
    YEAR_0, YEAR_10000, civil_from_days, date_of_day, needs_no_escaping, push_addr, push_name,
    push_time, reference,
};
use crate::event::vocabulary::{self, AF_INET, AF_INET6};
use crate::event::{Counters, Event, EventKind, L4Ids, Tuple, ZoneDir};
use crate::output::conntrack_text::{Addr, sec_usec};

/// splitmix64: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }

    /// A number with a bias to digit-count edges and the type's extremes
    /// (callers truncate it with `as`).
    fn num(&mut self) -> u64 {
        match self.below(5) {
            0 => self.pick(&[
                0,
                1,
                9,
                10,
                99,
                100,
                255,
                256,
                999,
                1000,
                9999,
                65_535,
                65_536,
                u64::from(u32::MAX),
                1 << 53,
                (1 << 53) - 1,
                u64::MAX,
            ]),
            1 => self.below(100),
            2 => self.next() >> self.below(64),
            _ => self.next(),
        }
    }

    fn octet(&mut self) -> u8 {
        match self.below(3) {
            0 => self.pick(&[0, 1, 9, 10, 99, 100, 199, 200, 255]),
            _ => self.next() as u8,
        }
    }

    fn ipv4(&mut self) -> Ipv4Addr {
        Ipv4Addr::new(self.octet(), self.octet(), self.octet(), self.octet())
    }

    /// Zero groups at random places (runs of every length, ties between
    /// runs), groups of every hex width, and the special forms.
    fn ipv6(&mut self) -> Ipv6Addr {
        match self.below(8) {
            0 => self.pick(&[
                Ipv6Addr::UNSPECIFIED,
                Ipv6Addr::LOCALHOST,
                "1::".parse().unwrap(),
                "fe80::".parse().unwrap(),
                "::ffff:0.0.0.0".parse().unwrap(),
                "::ffff:255.255.255.255".parse().unwrap(),
                "::0.0.0.2".parse().unwrap(),
                "::0.1.0.0".parse().unwrap(),
                "::ffff:0:1.2.3.4".parse().unwrap(),
                "1:0:0:2:0:0:3:4".parse().unwrap(),
                "1:0:0:2::3".parse().unwrap(),
                "0:1:0:1:0:1:0:1".parse().unwrap(),
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
            ]),
            1 => self.ipv4().to_ipv6_mapped(),
            2 => self.ipv4().to_ipv6_compatible(),
            _ => {
                let zeros = self.next();
                let mut seg = [0u16; 8];
                for (i, s) in seg.iter_mut().enumerate() {
                    if zeros & (1 << i) == 0 {
                        *s = match self.below(3) {
                            0 => self.pick(&[1, 0xf, 0x10, 0xff, 0x100, 0xfff, 0x1000, 0xffff]),
                            _ => self.next() as u16,
                        };
                    }
                }
                Ipv6Addr::from(seg)
            }
        }
    }

    fn addr(&mut self, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(self.ipv6())
        } else {
            IpAddr::V4(self.ipv4())
        }
    }

    /// Whole seconds since the epoch, mostly years 0..=9999 (the fixed-width
    /// path), sometimes outside (the wide one), and the boundaries.
    fn secs(&mut self) -> i64 {
        match self.below(8) {
            0 => self.pick(&[
                0,
                -1,
                1,
                86_399,
                86_400,
                YEAR_0,
                YEAR_0 - 1,
                YEAR_10000,
                YEAR_10000 - 1,
                951_782_400,   // 2000-02-29
                4_107_542_400, // 2100-03-01
            ]),
            1 => YEAR_10000 + self.below(1 << 40) as i64,
            2 => YEAR_0 - 1 - self.below(1 << 40) as i64,
            3 => -(self.below(1 << 32) as i64),
            _ => YEAR_0 + self.below((YEAR_10000 - YEAR_0) as u64) as i64,
        }
    }

    fn time(&mut self) -> SystemTime {
        let secs = self.secs();
        // Nanoseconds too: the writers truncate to microseconds.
        let any = self.below(1_000_000_000) as u32;
        let nanos = self.pick(&[0, 1, 999, 1000, 999_999_999, any]);
        let d = Duration::new(secs.unsigned_abs(), 0);
        let whole = if secs >= 0 {
            UNIX_EPOCH + d
        } else {
            UNIX_EPOCH - d
        };
        whole + Duration::from_nanos(u64::from(nanos))
    }

    fn l4(&mut self, l4proto: u8) -> L4Ids {
        // Usually what the protocol carries; sometimes any shape, which the
        // writer prints as it finds it.
        let (a, b, c) = (self.num() as u16, self.num() as u16, self.num() as u16);
        let (kind, code) = (self.num() as u8, self.num() as u8);
        if self.one_in(8) {
            return self.pick(&[
                L4Ids::Ports { sport: a, dport: b },
                L4Ids::Icmp { kind, code, id: c },
                L4Ids::Gre {
                    src_key: a,
                    dst_key: b,
                },
                L4Ids::None,
            ]);
        }
        vocabulary::l4_ids(l4proto, a, b, c, kind, code)
    }

    fn ns(&mut self) -> u64 {
        match self.below(4) {
            0 => self.pick(&[0, 1, 999_999, 1_000_000, u64::MAX]),
            1 => 1_700_000_000_000_000_000 + self.below(1 << 40),
            _ => self.num(),
        }
    }

    /// One event. Each bit of `shape` decides one optional part, so running
    /// `shape` over 0..1 << SHAPE_BITS meets every combination of them.
    fn event(&mut self, shape: u32) -> Event {
        let has = |bit: u32| shape & (1 << bit) != 0;
        let v6 = has(0);
        let l3proto = match self.below(16) {
            0 => self.pick(&[0, 1, 7, 255]),
            _ if v6 => AF_INET6,
            _ => AF_INET,
        };
        let l4proto = if has(1) {
            6
        } else {
            self.pick(&[1, 17, 33, 47, 58, 132, 136, 0, 2, 41, 50, 99, 254, 255])
        };
        let orig = Tuple {
            src: self.addr(v6),
            dst: {
                // Now and then a family mismatch, printed as found.
                let other = self.one_in(16);
                self.addr(v6 != other)
            },
            l4: self.l4(l4proto),
        };
        let reply = Tuple {
            src: self.addr(v6),
            dst: self.addr(v6),
            l4: self.l4(l4proto),
        };
        let mut counters = || Counters {
            packets: self.num(),
            bytes: self.num(),
        };
        let counters = has(5).then(|| [counters(), counters()]);
        let zone = if has(9) {
            1 + self.below(u64::from(u16::MAX)) as u16
        } else {
            0
        };
        Event {
            kind: self.pick(&[EventKind::New, EventKind::Update, EventKind::Destroy]),
            time: self.time(),
            l3proto,
            l4proto,
            orig,
            reply,
            status: match self.below(4) {
                0 => self.pick(&[0, u32::MAX, 0xffff, 0x1_0000, 1 << 31]),
                _ => self.next() as u32,
            },
            changes: has(2).then(|| match self.below(4) {
                0 => self.pick(&[0, u16::MAX, 0xf000, 1]),
                _ => self.next() as u16,
            }),
            tcp_state: has(3).then(|| match self.below(4) {
                0 => self.next() as u8,
                _ => self.below(10) as u8,
            }),
            // As the sources set them: only on their own protocol's events.
            sctp_state: (l4proto == 132 && has(3)).then(|| match self.below(4) {
                0 => self.next() as u8,
                _ => self.below(10) as u8,
            }),
            dccp_state: (l4proto == 33 && has(3)).then(|| match self.below(4) {
                0 => self.next() as u8,
                _ => self.below(10) as u8,
            }),
            timeout: has(4).then(|| self.num() as u32),
            mark: self.num() as u32,
            mark_changed: self.one_in(2),
            zone,
            zone_dir: self.pick(&[ZoneDir::Both, ZoneDir::Orig, ZoneDir::Reply]),
            netns: self.num() as u32,
            counters,
            start_ns: has(6).then(|| self.ns()),
            // Sometimes stop before start, or equal, or 0 (never stopped).
            stop_ns: has(7).then(|| match self.below(4) {
                0 => self.pick(&[0, 1, u64::MAX]),
                _ => self.ns(),
            }),
            portid: has(8).then(|| {
                let any = self.next() as u32;
                self.pick(&[0, 1, u32::MAX, any])
            }),
            conn_id: self.num(),
            ct_id: self.one_in(2).then(|| self.next() as u32),
        }
    }
}

const SHAPE_BITS: u32 = 10;

fn fast(ev: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    super::format_event(&mut out, ev).unwrap();
    out
}

fn oracle(ev: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    reference::format_event(&mut out, ev).unwrap();
    out
}

#[test]
fn fast_writer_matches_serde_byte_for_byte() {
    let mut rng = Rng(0x7261_636b_6572);
    // Optional keys, each both present and absent somewhere: proof that the
    // generator reached every shape the writer has.
    let optional = [
        "changed",
        "tcp_state",
        "sctp_state",
        "dccp_state",
        "timeout",
        "zone_dir",
        "start",
        "stop",
        "duration_ms",
        "portid",
    ];
    let tuple_optional = ["sport", "icmp_type", "gre_src_key", "packets"];
    let mut present = [0usize; 14];
    let mut absent = [0usize; 14];
    let mut wide_times = 0;
    let mut out = Vec::new();
    for round in 0..8 {
        for shape in 0..1u32 << SHAPE_BITS {
            let ev = rng.event(shape);
            let want = oracle(&ev);
            // Appends, as the caller reuses one buffer.
            out.clear();
            out.extend_from_slice(b"prefix");
            super::format_event(&mut out, &ev).unwrap();
            let got = &out[b"prefix".len()..];
            assert!(
                got == want.as_slice(),
                "round {round} shape {shape:#x}: {ev:?}\n fast: {}\nserde: {}",
                String::from_utf8_lossy(got),
                String::from_utf8_lossy(&want),
            );
            let line = std::str::from_utf8(got).unwrap();
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            let v: Value = serde_json::from_str(line).unwrap();
            let obj = v.as_object().unwrap();
            assert_eq!(obj["id"].as_u64(), Some(ev.conn_id));
            assert_eq!(obj["mark"].as_u64(), Some(u64::from(ev.mark)));
            wide_times += usize::from(obj["time"].as_str().unwrap().len() != 27);
            for (i, key) in optional.iter().enumerate() {
                if obj.contains_key(*key) {
                    present[i] += 1;
                } else {
                    absent[i] += 1;
                }
            }
            for (i, key) in tuple_optional.iter().enumerate() {
                if obj["orig"].get(key).is_some() {
                    present[optional.len() + i] += 1;
                } else {
                    absent[optional.len() + i] += 1;
                }
            }
        }
    }
    let keys = optional.iter().chain(&tuple_optional);
    for (i, key) in keys.enumerate() {
        assert!(
            present[i] > 100 && absent[i] > 100,
            "{key}: present {} absent {}",
            present[i],
            absent[i]
        );
    }
    assert!(wide_times > 100, "years outside 0..=9999: {wide_times}");
}

#[test]
fn fixed_events_match_serde() {
    // The hand-written events of the other tests, and every event kind with
    // every TCP state, named protocol and a few unnamed ones.
    let mut events = vec![];
    for kind in [EventKind::New, EventKind::Update, EventKind::Destroy] {
        let mut e = super::tests::sample(kind);
        for state in 0..=12 {
            e.tcp_state = Some(state);
            events.push(e.clone());
        }
        for l4proto in [0, 1, 2, 17, 33, 47, 58, 132, 136, 255] {
            e.l4proto = l4proto;
            events.push(e.clone());
        }
        e.changes = Some(u16::MAX);
        e.status = u32::MAX;
        events.push(e);
    }
    for ev in &events {
        assert_eq!(
            String::from_utf8(fast(ev)).unwrap(),
            String::from_utf8(oracle(ev)).unwrap()
        );
    }
}

fn addr_fast(a: IpAddr) -> String {
    let mut out = Vec::new();
    push_addr(&mut out, &a);
    let s = String::from_utf8(out).unwrap();
    s.strip_suffix('"').unwrap().to_owned()
}

/// std prints IPv4-compatible addresses (`::a.b.c.d` to glibc) in hex.
fn ipv4_compatible(a: &Ipv6Addr) -> bool {
    let s = a.segments();
    s[..6] == [0; 6] && s[6] != 0
}

#[test]
fn addresses_match_display() {
    let mut rng = Rng(4);
    let mut checked_std = 0;
    for _ in 0..200_000 {
        let a = rng.ipv6();
        let got = addr_fast(IpAddr::V6(a));
        assert_eq!(got, Addr(&IpAddr::V6(a)).to_string(), "{a:?}");
        // std's Display follows RFC 5952, which compresses as glibc does.
        if !ipv4_compatible(&a) {
            assert_eq!(got, a.to_string(), "{a:?}");
            checked_std += 1;
        } else {
            assert_eq!(got, format!("::{}", Ipv4Addr::from(a.to_bits() as u32)));
        }
    }
    assert!(checked_std > 100_000);
    // Every zero/non-zero pattern of the eight groups, with 0xffff in the
    // sixth (v4-mapped shapes) or not.
    for pattern in 0u32..256 {
        for ffff in [false, true] {
            for value in [1u16, 0xa, 0xab, 0xabc, 0xabcd] {
                let mut seg = [0u16; 8];
                for (i, s) in seg.iter_mut().enumerate() {
                    if pattern & (1 << i) != 0 {
                        *s = if i == 5 && ffff {
                            0xffff
                        } else {
                            value.rotate_left(i as u32)
                        };
                    }
                }
                let a = Ipv6Addr::from(seg);
                assert_eq!(
                    addr_fast(IpAddr::V6(a)),
                    Addr(&IpAddr::V6(a)).to_string(),
                    "{seg:x?}"
                );
            }
        }
    }
    for (input, want) in [
        ("::", "::"),
        ("::1", "::1"),
        ("1::", "1::"),
        ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
        ("::1.2.3.4", "::1.2.3.4"),
        ("::ffff:0:1.2.3.4", "::ffff:0:102:304"),
        ("1:0:0:2::3", "1:0:0:2::3"),
        ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),
        ("1:0:2:0:0:0:3:4", "1:0:2::3:4"),
        ("0:0:1:0:0:1:0:0", "::1:0:0:1:0:0"),
        ("1:0:1:1:1:1:1:1", "1:0:1:1:1:1:1:1"),
        (
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ),
    ] {
        assert_eq!(addr_fast(input.parse().unwrap()), want, "{input}");
    }
    for _ in 0..100_000 {
        let a = IpAddr::V4(rng.ipv4());
        assert_eq!(addr_fast(a), a.to_string());
    }
    for i in 0..=255u8 {
        let a = IpAddr::V4(Ipv4Addr::new(i, 255 - i, i / 2, i.wrapping_mul(7)));
        assert_eq!(addr_fast(a), a.to_string());
    }
}

#[test]
fn times_match_reference() {
    let mut rng = Rng(9);
    for _ in 0..200_000 {
        let t = rng.time();
        let (secs, micros) = sec_usec(t);
        let mut out = Vec::new();
        push_time(&mut out, secs, micros);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}\"", reference::Rfc3339(t)),
            "{t:?}"
        );
    }
}

#[test]
fn vocabulary_names_need_no_escaping() {
    let mut names: Vec<String> = vocabulary::TCP_STATES
        .iter()
        .chain(&vocabulary::STATUS_NAMES)
        .chain(&vocabulary::CHANGE_NAMES)
        .chain(vocabulary::PROTOCOL_NAMES.iter().map(|(name, _)| name))
        .map(|name| name.to_string())
        .collect();
    for n in 0..=u8::MAX {
        names.push(vocabulary::l3_name(n).to_owned());
        names.push(vocabulary::l4_label(n).into_owned());
        names.push(vocabulary::tcp_state_name(n).to_owned());
    }
    for name in &names {
        assert!(needs_no_escaping(name.as_bytes()), "{name:?}");
        // The key before a name writes its opening quote.
        let mut out = b"\"".to_vec();
        push_name(&mut out, name);
        assert_eq!(out, serde_json::to_vec(name).unwrap());
    }
}

#[test]
fn no_escaping_agrees_with_serde_json() {
    let mut samples: Vec<String> = (0..=0x7fu8).map(|b| char::from(b).to_string()).collect();
    samples.extend(["", "plain", "a\"b", "a\\b", "é ü ∑ 😀", "\u{7f}"].map(String::from));
    for s in &samples {
        let plain = serde_json::to_string(s).unwrap() == format!("\"{s}\"");
        assert_eq!(needs_no_escaping(s.as_bytes()), plain, "{s:?}");
    }
}

#[test]
fn dates_match_civil_from_days_every_day() {
    let first = YEAR_0.div_euclid(86_400);
    let end = YEAR_10000.div_euclid(86_400);
    for day in first..end {
        let (y, m, d) = civil_from_days(day);
        assert_eq!(
            date_of_day((day - first) as u32),
            (y as u32, m, d),
            "day {day}"
        );
    }
    assert_eq!(civil_from_days(first), (0, 1, 1));
    assert_eq!(civil_from_days(end - 1), (9999, 12, 31));
}
