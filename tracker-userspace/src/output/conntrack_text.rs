//! `conntrack -E` lines, byte for byte as conntrack-tools 1.4.7 prints them
//! through libnetfilter_conntrack's `__snprintf_conntrack_default()`
//! (src/conntrack/snprintf_default.c) and conntrack's `event_cb()`.
//!
//! Every token ends in one space and the last space is removed, exactly as the
//! C code does (`size--`).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use tracker_common::status;

use crate::event::vocabulary::{
    dccp_state_name, ipproto, l3_name, l4_name, sctp_state_name, shown_tcp_state, tcp_state_name,
};
use crate::event::{Event, EventKind, L4Ids, Tuple, ZoneDir};
use crate::model::addr::{ipv6_ends_in_ipv4, ipv6_zero_run};

/// Options of conntrack's `-o` that change the text line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextOptions {
    /// `-o extended`: the layer-3 name and number after the event tag.
    pub extended: bool,
    /// `-o timestamp`: `[sec.usec]` and a tab before the line.
    pub timestamp: bool,
    /// `-o id`: `id=N`, the kernel's conntrack id, when the event has it.
    pub id: bool,
    /// `-o ktimestamp`: `[start=...] [stop=...]` from the kernel's tstamp
    /// extension, in ctime(3) form and local time, when the event has them.
    pub ktimestamp: bool,
}

/// Appends one event line, newline included.
pub fn format_event(out: &mut String, ev: &Event, opts: TextOptions) {
    let start = out.len();
    if opts.timestamp {
        // conntrack: printf("[%-.8ld.%-.6ld]\t", tv_sec, tv_usec), taken with
        // gettimeofday() when it prints; we use the time of the event.
        let (sec, usec) = sec_usec(ev.time);
        let _ = write!(out, "[{sec:08}.{usec:06}]\t");
    }
    let line_start = out.len();

    // conntrack's "%9s " tag, then "%-8s %u " names; written piecewise
    // because format padding dominates the cost of a line.
    out.push_str(match ev.kind {
        EventKind::New => "    [NEW] ",
        EventKind::Update => " [UPDATE] ",
        EventKind::Destroy => "[DESTROY] ",
    });
    if opts.extended {
        padded_name(out, l3_name(ev.l3proto));
        num(out, ev.l3proto);
    }
    padded_name(out, l4_name(ev.l4proto));
    num(out, ev.l4proto);
    if let Some(t) = ev.timeout {
        num(out, t);
    }
    // __snprintf_protoinfo{,_sctp,_dccp}(): each state the message carried.
    if let Some(state) = shown_tcp_state(ev) {
        let _ = write!(out, "{} ", tcp_state_name(state));
    }
    if let Some(state) = ev.sctp_state {
        out.push_str(sctp_state_name(state));
        out.push(' ');
    }
    if let Some(state) = ev.dccp_state {
        out.push_str(dccp_state_name(state));
        out.push(' ');
    }

    write_tuple(out, &ev.orig, ev.l4proto);
    // A one-direction zone follows its tuple (`ATTR_ORIG_ZONE`/`ATTR_REPL_ZONE`).
    if ev.zone != 0 && ev.zone_dir == ZoneDir::Orig {
        out.push_str("zone-orig=");
        num(out, ev.zone);
    }
    if let Some(c) = &ev.counters {
        counters(out, c[0].packets, c[0].bytes);
    }
    if ev.status & status::SEEN_REPLY == 0 {
        out.push_str("[UNREPLIED] ");
    }
    write_tuple(out, &ev.reply, ev.l4proto);
    if ev.zone != 0 && ev.zone_dir == ZoneDir::Reply {
        out.push_str("zone-reply=");
        num(out, ev.zone);
    }
    if let Some(c) = &ev.counters {
        counters(out, c[1].packets, c[1].bytes);
    }

    if ev.status & status::HW_OFFLOAD != 0 {
        out.push_str("[HW_OFFLOAD] ");
    } else if ev.status & status::OFFLOAD != 0 {
        out.push_str("[OFFLOAD] ");
    } else if ev.status & status::ASSURED != 0 {
        out.push_str("[ASSURED] ");
    }
    if ev.mark != 0 || ev.mark_changed {
        out.push_str("mark=");
        num(out, ev.mark);
    }
    if ev.zone != 0 && ev.zone_dir == ZoneDir::Both {
        out.push_str("zone=");
        num(out, ev.zone);
    }
    if let Some(start_ns) = ev.start_ns {
        // __snprintf_timestamp_delta(): whole seconds of stop minus whole
        // seconds of start (each truncated first); no stop yet → now.
        let stop_s = match ev.stop_ns {
            Some(stop_ns) if stop_ns != 0 => (stop_ns / 1_000_000_000) as i64,
            _ => sec_usec(ev.time).0,
        };
        let delta = stop_s.wrapping_sub((start_ns / 1_000_000_000) as i64);
        let _ = write!(out, "delta-time={} ", delta as u64);
    }
    if opts.ktimestamp {
        // __snprintf_timestamp_start/stop(): ctime() without its newline.
        if let Some(start_ns) = ev.start_ns {
            out.push_str("[start=");
            ctime(out, start_ns / 1_000_000_000);
            out.push_str("] ");
        }
        if let Some(stop_ns) = ev.stop_ns {
            out.push_str("[stop=");
            ctime(out, stop_ns / 1_000_000_000);
            out.push_str("] ");
        }
    }
    if opts.id
        && let Some(id) = ev.ct_id
    {
        out.push_str("id=");
        num(out, id);
    }
    if opts.extended && ev.netns != 0 {
        // Not in conntrack, whose view is one namespace; with --all-netns the
        // namespace is what tells otherwise identical lines apart.
        let _ = write!(out, "netns={} ", ev.netns);
    }

    // Delete the last blank (the C code's `size--`).
    if out.len() > line_start && out.ends_with(' ') {
        out.pop();
    }
    if let Some(portid) = ev.portid.filter(|p| *p != 0) {
        // conntrack >= 1.4.7 event_cb(): "%s [USERSPACE] portid=%u".
        let _ = write!(out, " [USERSPACE] portid={portid}");
    }
    out.push('\n');
    debug_assert!(out.len() > start);
}

/// ctime(3) of whole seconds since the epoch in local time, without the
/// newline: `Fri Dec  4 10:55:49 2026`.
fn ctime(out: &mut String, secs: u64) {
    let t = secs as libc::time_t;
    // SAFETY: an all-zero `tm` is valid, and localtime_r only writes it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is reentrant.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        let _ = write!(out, "{secs}");
        return;
    }
    asctime(out, &tm);
}

/// asctime(3)'s "%.3s %.3s%3d %.2d:%.2d:%.2d %d" of a broken-down time.
fn asctime(out: &mut String, tm: &libc::tm) {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let day = DAYS.get(tm.tm_wday as usize).unwrap_or(&"???");
    let month = MONTHS.get(tm.tm_mon as usize).unwrap_or(&"???");
    let _ = write!(
        out,
        "{day} {month}{:3} {:02}:{:02}:{:02} {}",
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        i64::from(tm.tm_year) + 1900
    );
}

/// `n` and one space.
fn num(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
    out.push(' ');
}

/// "%-8s " of a name that is at most 8 bytes.
fn padded_name(out: &mut String, name: &str) {
    out.push_str(name);
    out.push_str(&"         "[name.len().min(8)..]);
}

fn counters(out: &mut String, packets: u64, bytes: u64) {
    out.push_str("packets=");
    num(out, packets);
    out.push_str("bytes=");
    num(out, bytes);
}

/// An address and one space; IPv4 (most lines) without the formatter.
fn addr(out: &mut String, a: &IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            let mut b = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(b.format(octet));
            }
            out.push(' ');
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{} ", Addr(a));
        }
    }
}

fn write_tuple(out: &mut String, t: &Tuple, l4proto: u8) {
    out.push_str("src=");
    addr(out, &t.src);
    out.push_str("dst=");
    addr(out, &t.dst);
    // __snprintf_proto() switches on the protocol number, not on the shape
    // of the identifiers.
    match (l4proto, t.l4) {
        (
            ipproto::TCP | ipproto::UDP | ipproto::UDPLITE | ipproto::SCTP | ipproto::DCCP,
            L4Ids::Ports { sport, dport },
        ) => {
            out.push_str("sport=");
            num(out, sport);
            out.push_str("dport=");
            num(out, dport);
        }
        (ipproto::GRE, L4Ids::Gre { src_key, dst_key }) => {
            let _ = write!(out, "srckey=0x{src_key:x} dstkey=0x{dst_key:x} ");
        }
        (ipproto::ICMP | ipproto::ICMPV6, L4Ids::Icmp { kind, code, id }) => {
            let _ = write!(out, "type={kind} code={code} id={id} ");
        }
        _ => {}
    }
}

/// Whole seconds and microseconds since the epoch (negative before it).
pub(crate) fn sec_usec(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_micros()),
        Err(e) => {
            let d = e.duration();
            let mut sec = -(d.as_secs() as i64);
            let mut usec = d.subsec_micros();
            if usec != 0 {
                sec -= 1;
                usec = 1_000_000 - usec;
            }
            (sec, usec)
        }
    }
}

/// An address as conntrack prints it: `inet_ntoa()` for IPv4, glibc's
/// `inet_ntop()` for IPv6.
pub struct Addr<'a>(pub &'a IpAddr);

impl std::fmt::Display for Addr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => fmt_ipv6_glibc(a, f),
        }
    }
}

/// glibc's `inet_ntop6()`: compresses the first longest run of two or more
/// zero groups, and writes the last 32 bits as dotted IPv4 for IPv4-mapped
/// (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) addresses. Rust's
/// `Ipv6Addr` Display differs for the latter (`::102:304`).
fn fmt_ipv6_glibc(a: &Ipv6Addr, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    let w = a.segments();
    let (best_base, best_len) = ipv6_zero_run(&w);
    let mut i = 0;
    while i < 8 {
        if best_len != 0 && i >= best_base && i < best_base + best_len {
            if i == best_base {
                f.write_str(":")?;
            }
            i += 1;
            continue;
        }
        if i != 0 {
            f.write_str(":")?;
        }
        if i == 6 && ipv6_ends_in_ipv4(&w, (best_base, best_len)) {
            let o = a.octets();
            return write!(f, "{}", Ipv4Addr::new(o[12], o[13], o[14], o[15]));
        }
        write!(f, "{:x}", w[i])?;
        i += 1;
    }
    if best_len != 0 && best_base + best_len == 8 {
        f.write_str(":")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Counters;
    use std::time::Duration;

    const SEEN_REPLY: u32 = status::SEEN_REPLY;
    const ASSURED: u32 = status::ASSURED;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ports(src: &str, dst: &str, sport: u16, dport: u16) -> Tuple {
        Tuple {
            src: v4(src),
            dst: v4(dst),
            l4: L4Ids::Ports { sport, dport },
        }
    }

    fn base(kind: EventKind, l4proto: u8, orig: Tuple, reply: Tuple) -> Event {
        Event::bare(kind, l4proto, orig, reply)
    }

    fn line(ev: &Event, opts: TextOptions) -> String {
        let mut s = String::new();
        format_event(&mut s, ev, opts);
        s
    }

    fn tcp_syn() -> Event {
        let mut e = base(
            EventKind::New,
            6,
            ports("10.0.0.1", "10.0.0.2", 43210, 80),
            ports("10.0.0.2", "10.0.0.1", 80, 43210),
        );
        e.timeout = Some(120);
        e.tcp_state = Some(1);
        e
    }

    #[test]
    fn tcp_new_with_state_and_timeout() {
        assert_eq!(
            line(&tcp_syn(), TextOptions::default()),
            "    [NEW] tcp      6 120 SYN_SENT src=10.0.0.1 dst=10.0.0.2 sport=43210 dport=80 \
             [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=80 dport=43210\n"
        );
    }

    #[test]
    fn tcp_update_established_assured() {
        let mut e = tcp_syn();
        e.kind = EventKind::Update;
        e.timeout = Some(432000);
        e.tcp_state = Some(3);
        e.status |= SEEN_REPLY | ASSURED;
        assert_eq!(
            line(&e, TextOptions::default()),
            " [UPDATE] tcp      6 432000 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=43210 dport=80 \
             src=10.0.0.2 dst=10.0.0.1 sport=80 dport=43210 [ASSURED]\n"
        );
    }

    #[test]
    fn tcp_state_out_of_range_prints_none() {
        let mut e = tcp_syn();
        e.tcp_state = Some(10);
        assert!(line(&e, TextOptions::default()).starts_with("    [NEW] tcp      6 120 NONE src="));
        e.tcp_state = Some(9);
        assert!(line(&e, TextOptions::default()).contains(" 120 SYN_SENT2 src="));
    }

    #[test]
    fn udp_unreplied() {
        let mut e = base(
            EventKind::New,
            17,
            ports("192.168.1.10", "8.8.8.8", 5353, 53),
            ports("8.8.8.8", "192.168.1.10", 53, 5353),
        );
        e.timeout = Some(30);
        assert_eq!(
            line(&e, TextOptions::default()),
            "    [NEW] udp      17 30 src=192.168.1.10 dst=8.8.8.8 sport=5353 dport=53 \
             [UNREPLIED] src=8.8.8.8 dst=192.168.1.10 sport=53 dport=5353\n"
        );
    }

    #[test]
    fn icmp_echo() {
        let mut e = base(
            EventKind::New,
            1,
            Tuple {
                src: v4("10.0.0.1"),
                dst: v4("10.0.0.2"),
                l4: L4Ids::Icmp {
                    kind: 8,
                    code: 0,
                    id: 4660,
                },
            },
            Tuple {
                src: v4("10.0.0.2"),
                dst: v4("10.0.0.1"),
                l4: L4Ids::Icmp {
                    kind: 0,
                    code: 0,
                    id: 4660,
                },
            },
        );
        e.timeout = Some(30);
        assert_eq!(
            line(&e, TextOptions::default()),
            "    [NEW] icmp     1 30 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=4660 \
             [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 type=0 code=0 id=4660\n"
        );
    }

    #[test]
    fn icmpv6_echo() {
        let mut e = base(
            EventKind::New,
            58,
            Tuple {
                src: v4("fe80::1"),
                dst: v4("fe80::2"),
                l4: L4Ids::Icmp {
                    kind: 128,
                    code: 0,
                    id: 7,
                },
            },
            Tuple {
                src: v4("fe80::2"),
                dst: v4("fe80::1"),
                l4: L4Ids::Icmp {
                    kind: 129,
                    code: 0,
                    id: 7,
                },
            },
        );
        e.timeout = Some(30);
        assert_eq!(
            line(&e, TextOptions::default()),
            "    [NEW] icmpv6   58 30 src=fe80::1 dst=fe80::2 type=128 code=0 id=7 \
             [UNREPLIED] src=fe80::2 dst=fe80::1 type=129 code=0 id=7\n"
        );
    }

    #[test]
    fn ipv6_tcp_extended() {
        let t = |s: &str, d: &str, sp, dp| Tuple {
            src: v4(s),
            dst: v4(d),
            l4: L4Ids::Ports {
                sport: sp,
                dport: dp,
            },
        };
        let mut e = base(
            EventKind::New,
            6,
            t("2001:db8::1", "2001:db8:0:1::2", 50000, 443),
            t("2001:db8:0:1::2", "2001:db8::1", 443, 50000),
        );
        e.timeout = Some(120);
        e.tcp_state = Some(1);
        assert_eq!(
            line(
                &e,
                TextOptions {
                    extended: true,
                    timestamp: false,
                    ..TextOptions::default()
                }
            ),
            "    [NEW] ipv6     10 tcp      6 120 SYN_SENT src=2001:db8::1 dst=2001:db8:0:1::2 \
             sport=50000 dport=443 [UNREPLIED] src=2001:db8:0:1::2 dst=2001:db8::1 sport=443 dport=50000 netns=4026531840\n"
        );
    }

    #[test]
    fn ipv4_extended() {
        let e = tcp_syn();
        assert!(
            line(
                &e,
                TextOptions {
                    extended: true,
                    timestamp: false,
                    ..TextOptions::default()
                }
            )
            .starts_with("    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=10.0.0.1 ")
        );
    }

    #[test]
    fn gre_keys_in_hex() {
        let mut e = base(
            EventKind::New,
            47,
            Tuple {
                src: v4("10.0.0.1"),
                dst: v4("10.0.0.2"),
                l4: L4Ids::Gre {
                    src_key: 0,
                    dst_key: 0x1a2b,
                },
            },
            Tuple {
                src: v4("10.0.0.2"),
                dst: v4("10.0.0.1"),
                l4: L4Ids::Gre {
                    src_key: 0x1a2b,
                    dst_key: 0,
                },
            },
        );
        e.timeout = Some(30);
        assert_eq!(
            line(&e, TextOptions::default()),
            "    [NEW] gre      47 30 src=10.0.0.1 dst=10.0.0.2 srckey=0x0 dstkey=0x1a2b \
             [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 srckey=0x1a2b dstkey=0x0\n"
        );
    }

    #[test]
    fn unknown_protocol_has_no_ids() {
        let t = |s: &str, d: &str| Tuple {
            src: v4(s),
            dst: v4(d),
            l4: L4Ids::None,
        };
        let mut e = base(
            EventKind::New,
            50,
            t("10.0.0.1", "10.0.0.2"),
            t("10.0.0.2", "10.0.0.1"),
        );
        e.timeout = Some(600);
        assert_eq!(
            line(&e, TextOptions::default()),
            "    [NEW] unknown  50 600 src=10.0.0.1 dst=10.0.0.2 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1\n"
        );
        e.l4proto = 4;
        assert!(line(&e, TextOptions::default()).starts_with("    [NEW] unknown  4 600 src="));
    }

    #[test]
    fn sctp_dccp_udplite_names() {
        for (num, head) in [
            (132u8, "sctp     132 "),
            (33, "dccp     33 "),
            (136, "udplite  136 "),
        ] {
            let e = base(
                EventKind::Destroy,
                num,
                ports("10.0.0.1", "10.0.0.2", 1, 2),
                ports("10.0.0.2", "10.0.0.1", 2, 1),
            );
            assert_eq!(
                line(&e, TextOptions::default()),
                format!(
                    "[DESTROY] {head}src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 \
                     [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1\n"
                )
            );
        }
    }

    /// One entry of `tests/scenarios/19-protocols.sh` as the kernel reported
    /// it: protocol, both tuples, timeout, status; the rest set per line.
    fn observed(kind: EventKind, l4proto: u8, orig: Tuple, reply: Tuple, timeout: u32) -> Event {
        let mut e = base(kind, l4proto, orig, reply);
        e.timeout = Some(timeout);
        e
    }

    fn keys(src: &str, dst: &str, src_key: u16, dst_key: u16) -> Tuple {
        Tuple {
            src: v4(src),
            dst: v4(dst),
            l4: L4Ids::Gre { src_key, dst_key },
        }
    }

    fn no_ids(src: &str, dst: &str) -> Tuple {
        Tuple {
            src: v4(src),
            dst: v4(dst),
            l4: L4Ids::None,
        }
    }

    /// A DESTROY's counters and `delta-time` (whole seconds).
    fn destroyed(e: &mut Event, orig: (u64, u64), reply: (u64, u64), delta: u64) {
        e.counters = Some([
            Counters {
                packets: orig.0,
                bytes: orig.1,
            },
            Counters {
                packets: reply.0,
                bytes: reply.1,
            },
        ]);
        e.start_ns = Some(1_796_381_749_250_000_000);
        e.stop_ns = Some((1_796_381_749 + delta) * 1_000_000_000 + 100_000_000);
    }

    /// Lines conntrack 1.4.7 printed with `-E` on Linux 6.1 (conntrack's
    /// ` progname=conntrack` suffix left out), for the entries
    /// 19-protocols makes: SCTP and DCCP states after the timeout, GRE keys
    /// in hex, no identifiers for a protocol conntrack does not know.
    #[test]
    fn sctp_dccp_gre_udplite_unknown_as_conntrack_printed_them() {
        let opts = TextOptions::default();
        let fake = |sport, dport| {
            (
                ports("10.9.9.1", "10.9.9.2", sport, dport),
                ports("10.9.9.2", "10.9.9.1", dport, sport),
            )
        };
        let inserted = |l4proto, (orig, reply): (Tuple, Tuple), portid| {
            let mut e = observed(EventKind::New, l4proto, orig, reply, 60);
            e.mark_changed = true;
            e.portid = Some(portid);
            e
        };

        let mut e = inserted(132, fake(5505, 5506), 413);
        e.sctp_state = Some(7);
        assert_eq!(
            line(&e, opts),
            "    [NEW] sctp     132 60 SHUTDOWN_ACK_SENT src=10.9.9.1 dst=10.9.9.2 sport=5505 \
             dport=5506 [UNREPLIED] src=10.9.9.2 dst=10.9.9.1 sport=5506 dport=5505 mark=0 \
             [USERSPACE] portid=413\n"
        );
        let mut e = observed(
            EventKind::Destroy,
            132,
            ports("127.0.0.1", "127.0.0.1", 49782, 5500),
            ports("127.0.0.1", "127.0.0.1", 5500, 49782),
            94,
        );
        e.sctp_state = Some(1);
        e.status |= SEEN_REPLY | ASSURED;
        e.portid = Some(427);
        destroyed(&mut e, (6, 512), (5, 468), 26);
        assert_eq!(
            line(&e, opts),
            "[DESTROY] sctp     132 94 CLOSED src=127.0.0.1 dst=127.0.0.1 sport=49782 dport=5500 \
             packets=6 bytes=512 src=127.0.0.1 dst=127.0.0.1 sport=5500 dport=49782 packets=5 \
             bytes=468 [ASSURED] delta-time=26 [USERSPACE] portid=427\n"
        );

        let mut e = inserted(33, fake(5603, 5604), 417);
        e.dccp_state = Some(4);
        assert_eq!(
            line(&e, opts),
            "    [NEW] dccp     33 60 OPEN src=10.9.9.1 dst=10.9.9.2 sport=5603 dport=5604 \
             [UNREPLIED] src=10.9.9.2 dst=10.9.9.1 sport=5604 dport=5603 mark=0 \
             [USERSPACE] portid=417\n"
        );
        let mut e = observed(
            EventKind::Destroy,
            33,
            ports("127.0.0.1", "127.0.0.2", 5601, 5602),
            ports("127.0.0.2", "127.0.0.1", 5602, 5601),
            227,
        );
        e.dccp_state = Some(1);
        e.portid = Some(427);
        destroyed(&mut e, (1, 40), (0, 0), 12);
        assert_eq!(
            line(&e, opts),
            "[DESTROY] dccp     33 227 REQUEST src=127.0.0.1 dst=127.0.0.2 sport=5601 dport=5602 \
             packets=1 bytes=40 [UNREPLIED] src=127.0.0.2 dst=127.0.0.1 sport=5602 dport=5601 \
             packets=0 bytes=0 delta-time=12 [USERSPACE] portid=427\n"
        );

        let e = inserted(
            47,
            (
                keys("10.9.9.1", "10.9.9.2", 0x1234, 0xab),
                keys("10.9.9.2", "10.9.9.1", 0xab, 0x1234),
            ),
            422,
        );
        assert_eq!(
            line(&e, opts),
            "    [NEW] gre      47 60 src=10.9.9.1 dst=10.9.9.2 srckey=0x1234 dstkey=0xab \
             [UNREPLIED] src=10.9.9.2 dst=10.9.9.1 srckey=0xab dstkey=0x1234 mark=0 \
             [USERSPACE] portid=422\n"
        );
        let mut e = observed(
            EventKind::Destroy,
            47,
            keys("127.0.0.1", "127.0.0.3", 0, 0),
            keys("127.0.0.3", "127.0.0.1", 0, 0),
            172,
        );
        e.status |= SEEN_REPLY | ASSURED;
        e.portid = Some(427);
        destroyed(&mut e, (2, 48), (1, 24), 7);
        assert_eq!(
            line(&e, opts),
            "[DESTROY] gre      47 172 src=127.0.0.1 dst=127.0.0.3 srckey=0x0 dstkey=0x0 \
             packets=2 bytes=48 src=127.0.0.3 dst=127.0.0.1 srckey=0x0 dstkey=0x0 packets=1 \
             bytes=24 [ASSURED] delta-time=7 [USERSPACE] portid=427\n"
        );

        let e = observed(
            EventKind::New,
            136,
            ports("127.0.0.1", "127.0.0.1", 56745, 5700),
            ports("127.0.0.1", "127.0.0.1", 5700, 56745),
            120,
        );
        assert_eq!(
            line(&e, opts),
            "    [NEW] udplite  136 120 src=127.0.0.1 dst=127.0.0.1 sport=56745 dport=5700 \
             [UNREPLIED] src=127.0.0.1 dst=127.0.0.1 sport=5700 dport=56745\n"
        );

        let mut e = observed(
            EventKind::Destroy,
            253,
            no_ids("127.0.0.1", "127.0.0.4"),
            no_ids("127.0.0.4", "127.0.0.1"),
            599,
        );
        e.status |= SEEN_REPLY;
        e.portid = Some(427);
        destroyed(&mut e, (2, 64), (1, 32), 1);
        assert_eq!(
            line(&e, opts),
            "[DESTROY] unknown  253 599 src=127.0.0.1 dst=127.0.0.4 packets=2 bytes=64 \
             src=127.0.0.4 dst=127.0.0.1 packets=1 bytes=32 delta-time=1 [USERSPACE] portid=427\n"
        );
    }

    /// Linux 6.18 (as tested) has no DCCP tracker: conntrack -I's DCCP
    /// entry is generic, without state or ports, and conntrack 1.4.7 prints
    /// the ports as 0 all the same.
    #[test]
    fn dccp_without_its_tracker_as_conntrack_printed_it() {
        let mut e = observed(
            EventKind::New,
            33,
            ports("10.9.9.1", "10.9.9.2", 0, 0),
            ports("10.9.9.2", "10.9.9.1", 0, 0),
            60,
        );
        e.mark_changed = true;
        e.portid = Some(21188);
        assert_eq!(
            line(&e, TextOptions::default()),
            "    [NEW] dccp     33 60 src=10.9.9.1 dst=10.9.9.2 sport=0 dport=0 [UNREPLIED] \
             src=10.9.9.2 dst=10.9.9.1 sport=0 dport=0 mark=0 [USERSPACE] portid=21188\n"
        );
    }

    #[test]
    fn sctp_and_dccp_states_out_of_range_print_none() {
        let mut e = base(
            EventKind::New,
            132,
            ports("10.0.0.1", "10.0.0.2", 1, 2),
            ports("10.0.0.2", "10.0.0.1", 2, 1),
        );
        e.sctp_state = Some(10);
        assert!(line(&e, TextOptions::default()).starts_with("    [NEW] sctp     132 NONE src="));
        e.sctp_state = Some(9);
        assert!(
            line(&e, TextOptions::default())
                .starts_with("    [NEW] sctp     132 HEARTBEAT_ACKED src=")
        );
        e.sctp_state = None;
        e.l4proto = 33;
        e.dccp_state = Some(200);
        assert!(line(&e, TextOptions::default()).starts_with("    [NEW] dccp     33 NONE src="));
    }

    #[test]
    fn destroy_with_counters_assured_delta_time() {
        let mut e = base(
            EventKind::Destroy,
            6,
            ports("10.0.0.1", "10.0.0.2", 43210, 80),
            ports("10.0.0.2", "10.0.0.1", 80, 43210),
        );
        e.status |= SEEN_REPLY | ASSURED;
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
        // 100.9 s to 104.2 s: 104 - 100 = 4 (each side truncated first).
        e.start_ns = Some(1_700_000_100_900_000_000);
        e.stop_ns = Some(1_700_000_104_200_000_000);
        assert_eq!(
            line(&e, TextOptions::default()),
            "[DESTROY] tcp      6 src=10.0.0.1 dst=10.0.0.2 sport=43210 dport=80 packets=6 bytes=412 \
             src=10.0.0.2 dst=10.0.0.1 sport=80 dport=43210 packets=4 bytes=2316 [ASSURED] delta-time=4\n"
        );
    }

    #[test]
    fn destroy_5_15_with_timeout_and_state() {
        let mut e = base(
            EventKind::Destroy,
            6,
            ports("10.0.0.1", "10.0.0.2", 43210, 80),
            ports("10.0.0.2", "10.0.0.1", 80, 43210),
        );
        e.status |= SEEN_REPLY | ASSURED;
        e.timeout = Some(119);
        e.tcp_state = Some(7);
        assert_eq!(
            line(&e, TextOptions::default()),
            "[DESTROY] tcp      6 119 TIME_WAIT src=10.0.0.1 dst=10.0.0.2 sport=43210 dport=80 \
             src=10.0.0.2 dst=10.0.0.1 sport=80 dport=43210 [ASSURED]\n"
        );
    }

    #[test]
    fn offload_precedence() {
        let mut e = tcp_syn();
        e.status |= SEEN_REPLY | ASSURED | status::OFFLOAD | status::HW_OFFLOAD;
        assert!(line(&e, TextOptions::default()).ends_with(" dport=43210 [HW_OFFLOAD]\n"));
        e.status &= !status::HW_OFFLOAD;
        assert!(line(&e, TextOptions::default()).ends_with(" dport=43210 [OFFLOAD]\n"));
    }

    #[test]
    fn mark_and_zone() {
        let mut e = tcp_syn();
        e.mark = 16;
        e.zone = 7;
        assert_eq!(
            line(&e, TextOptions::default()),
            "    [NEW] tcp      6 120 SYN_SENT src=10.0.0.1 dst=10.0.0.2 sport=43210 dport=80 \
             [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=80 dport=43210 mark=16 zone=7\n"
        );
        // A mark change to 0 still prints the mark.
        let mut e = tcp_syn();
        e.kind = EventKind::Update;
        e.mark_changed = true;
        assert!(line(&e, TextOptions::default()).ends_with(" sport=80 dport=43210 mark=0\n"));
        e.mark_changed = false;
        assert!(line(&e, TextOptions::default()).ends_with(" sport=80 dport=43210\n"));
    }

    /// Lines of conntrack 1.4.7's `conntrack -E` for entries inserted with
    /// `conntrack -I -p udp -s 10.9.9.5 -d 10.9.9.6 --dport 2003 -t 60` and
    /// `--zone 4`, `--orig-zone 2`, `--reply-zone 3 -u SEEN_REPLY`
    /// (tests/scenarios/10-ctnetlink-ops.sh), then flushed; `progname=` and
    /// `delta-time=` (tstamp off here) left out.
    #[test]
    fn zone_directions() {
        let destroy = |sport: u16, zone: u16, dir: ZoneDir, replied: bool| {
            let mut e = base(
                EventKind::Destroy,
                17,
                ports("10.9.9.5", "10.9.9.6", sport, 2003),
                ports("10.9.9.6", "10.9.9.5", 2003, sport),
            );
            e.timeout = Some(58);
            e.zone = zone;
            e.zone_dir = dir;
            e.counters = Some([Counters::default(); 2]);
            e.portid = Some(30737);
            if replied {
                e.status |= status::SEEN_REPLY;
            }
            e
        };
        assert_eq!(
            line(
                &destroy(1003, 4, ZoneDir::Both, false),
                TextOptions::default()
            ),
            "[DESTROY] udp      17 58 src=10.9.9.5 dst=10.9.9.6 sport=1003 dport=2003 packets=0 \
             bytes=0 [UNREPLIED] src=10.9.9.6 dst=10.9.9.5 sport=2003 dport=1003 packets=0 \
             bytes=0 zone=4 [USERSPACE] portid=30737\n"
        );
        assert_eq!(
            line(
                &destroy(1004, 2, ZoneDir::Orig, false),
                TextOptions::default()
            ),
            "[DESTROY] udp      17 58 src=10.9.9.5 dst=10.9.9.6 sport=1004 dport=2003 zone-orig=2 \
             packets=0 bytes=0 [UNREPLIED] src=10.9.9.6 dst=10.9.9.5 sport=2003 dport=1004 \
             packets=0 bytes=0 [USERSPACE] portid=30737\n"
        );
        assert_eq!(
            line(
                &destroy(1005, 3, ZoneDir::Reply, true),
                TextOptions::default()
            ),
            "[DESTROY] udp      17 58 src=10.9.9.5 dst=10.9.9.6 sport=1005 dport=2003 packets=0 \
             bytes=0 src=10.9.9.6 dst=10.9.9.5 sport=2003 dport=1005 zone-reply=3 packets=0 \
             bytes=0 [USERSPACE] portid=30737\n"
        );
    }

    #[test]
    fn timestamp_prefix() {
        assert_eq!(
            line(
                &tcp_syn(),
                TextOptions {
                    extended: false,
                    timestamp: true,
                    ..TextOptions::default()
                }
            ),
            "[1700000000.012345]\t    [NEW] tcp      6 120 SYN_SENT src=10.0.0.1 dst=10.0.0.2 \
             sport=43210 dport=80 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=80 dport=43210\n"
        );
        let mut e = tcp_syn();
        e.time = UNIX_EPOCH + Duration::from_secs(1_700_000_001);
        assert!(
            line(
                &e,
                TextOptions {
                    extended: true,
                    timestamp: true,
                    ..TextOptions::default()
                }
            )
            .starts_with("[1700000001.000000]\t    [NEW] ipv4     2 tcp      6 120 ")
        );
    }

    #[test]
    fn userspace_portid_suffix() {
        let mut e = tcp_syn();
        e.kind = EventKind::Destroy;
        e.timeout = None;
        e.tcp_state = None;
        e.portid = Some(12345);
        assert_eq!(
            line(&e, TextOptions::default()),
            "[DESTROY] tcp      6 src=10.0.0.1 dst=10.0.0.2 sport=43210 dport=80 \
             [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=80 dport=43210 [USERSPACE] portid=12345\n"
        );
    }

    #[test]
    fn ipv6_like_glibc_inet_ntop() {
        // Expected strings are glibc 2.36 inet_ntop() output.
        for (input, want) in [
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            ("::1.2.3.4", "::1.2.3.4"),
            ("::1", "::1"),
            ("::", "::"),
            ("1::", "1::"),
            ("::ffff:0:1.2.3.4", "::ffff:0:102:304"),
            ("1:0:0:2::3", "1:0:0:2::3"),
            ("1:0:2:0:0:0:3:4", "1:0:2::3:4"),
            ("fe80::1:0:0:1", "fe80::1:0:0:1"),
            ("::0.1.0.0", "::0.1.0.0"),
            ("0:0:0:0:0:1:0:0", "::1:0:0"),
            ("::1:2:3:4:5:6", "::1:2:3:4:5:6"),
            ("1:0:1:1:1:1:1:1", "1:0:1:1:1:1:1:1"),
            ("2001:DB8::AB", "2001:db8::ab"),
        ] {
            let ip: IpAddr = input.parse().unwrap();
            assert_eq!(Addr(&ip).to_string(), want, "{input}");
        }
    }

    // The oracle is glibc's inet_ntop(); musl's differs for IPv4-compatible
    // addresses.
    #[cfg(target_env = "gnu")]
    #[test]
    fn ipv6_matches_libc_inet_ntop() {
        unsafe extern "C" {
            fn inet_ntop(
                af: libc::c_int,
                src: *const libc::c_void,
                dst: *mut libc::c_char,
                size: libc::socklen_t,
            ) -> *const libc::c_char;
        }
        let samples: Vec<Ipv6Addr> = (0u32..4096)
            .map(|i| {
                // Spread zero and non-zero groups over all positions.
                let mut seg = [0u16; 8];
                for (b, s) in seg.iter_mut().enumerate() {
                    if i & (1 << b) != 0 {
                        *s = if b == 5 && i & 256 != 0 {
                            0xffff
                        } else {
                            (i as u16) << 4 | b as u16
                        };
                    }
                }
                Ipv6Addr::from(seg)
            })
            .collect();
        for a in samples {
            let mut buf = [0 as libc::c_char; 64];
            let octets = a.octets();
            // SAFETY: valid in6_addr bytes and a buffer larger than INET6_ADDRSTRLEN.
            let p =
                unsafe { inet_ntop(libc::AF_INET6, octets.as_ptr().cast(), buf.as_mut_ptr(), 64) };
            assert!(!p.is_null());
            // SAFETY: inet_ntop wrote a NUL-terminated string.
            let want = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
                .to_str()
                .unwrap()
                .to_owned();
            assert_eq!(Addr(&IpAddr::V6(a)).to_string(), want);
        }
    }

    /// The entries of the captured lines below: `conntrack -I -p udp -s
    /// 1.1.1.x -d 2.2.2.2 --sport 1 --dport 2 -t 10` with a zone, then
    /// `conntrack -D` 1 s later, nf_conntrack_timestamp=1.
    fn captured(kind: EventKind, src: &str, zone_dir: ZoneDir) -> Event {
        let mut e = base(
            kind,
            17,
            ports(src, "2.2.2.2", 1, 2),
            ports("2.2.2.2", src, 2, 1),
        );
        e.zone = 5;
        e.zone_dir = zone_dir;
        e
    }

    /// Lines of conntrack 1.4.7 `-E -o id` and `-o id,ktimestamp` (Linux
    /// 6.18, TZ=UTC), byte for byte.
    #[test]
    fn id_and_ktimestamp_as_conntrack_prints_them() {
        let opts = TextOptions {
            id: true,
            ktimestamp: true,
            ..TextOptions::default()
        };
        let mut e = captured(EventKind::New, "1.1.1.1", ZoneDir::Orig);
        e.timeout = Some(10);
        e.mark_changed = true;
        e.ct_id = Some(1333464132);
        e.portid = Some(21836);
        assert_eq!(
            line(&e, opts),
            "    [NEW] udp      17 10 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 zone-orig=5 \
             [UNREPLIED] src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 mark=0 id=1333464132 \
             [USERSPACE] portid=21836\n"
        );
        // -o id only: no id when the source has none (never with -o id,
        // which needs the netlink source).
        e.ct_id = None;
        assert!(line(&e, opts).ends_with(" mark=0 [USERSPACE] portid=21836\n"));

        let mut e = captured(EventKind::Destroy, "1.1.1.3", ZoneDir::Reply);
        e.timeout = Some(8);
        e.start_ns = Some(1_796_381_749_123_456_789);
        e.stop_ns = Some(1_796_381_750_987_654_321);
        e.ct_id = Some(1198755803);
        e.portid = Some(3450001132);
        let without_times = "[DESTROY] udp      17 8 src=1.1.1.3 dst=2.2.2.2 sport=1 dport=2 \
             [UNREPLIED] src=2.2.2.2 dst=1.1.1.3 sport=2 dport=1 zone-reply=5 delta-time=1 \
             id=1198755803 [USERSPACE] portid=3450001132\n";
        assert_eq!(
            line(
                &e,
                TextOptions {
                    id: true,
                    ..TextOptions::default()
                }
            ),
            without_times
        );
        // ctime() is local time: compare byte for byte where it is UTC.
        if local_offset_at(1_796_381_749) == 0 {
            assert_eq!(
                line(&e, opts),
                "[DESTROY] udp      17 8 src=1.1.1.3 dst=2.2.2.2 sport=1 dport=2 [UNREPLIED] \
                 src=2.2.2.2 dst=1.1.1.3 sport=2 dport=1 zone-reply=5 delta-time=1 \
                 [start=Fri Dec  4 10:55:49 2026] [stop=Fri Dec  4 10:55:50 2026] \
                 id=1198755803 [USERSPACE] portid=3450001132\n"
            );
        }
        // A both-direction zone comes before delta-time and the times.
        let mut e = captured(EventKind::Destroy, "1.1.1.4", ZoneDir::Both);
        e.timeout = Some(8);
        e.start_ns = Some(1_796_381_749_000_000_000);
        e.stop_ns = Some(1_796_381_750_000_000_000);
        e.ct_id = Some(552540442);
        e.portid = Some(3450001132);
        let shown = line(&e, opts);
        assert!(
            shown.starts_with(
                "[DESTROY] udp      17 8 src=1.1.1.4 dst=2.2.2.2 sport=1 dport=2 [UNREPLIED] \
                 src=2.2.2.2 dst=1.1.1.4 sport=2 dport=1 zone=5 delta-time=1 [start="
            ) && shown.ends_with("] id=552540442 [USERSPACE] portid=3450001132\n"),
            "{shown}"
        );
    }

    fn local_offset_at(secs: i64) -> i64 {
        let t = secs as libc::time_t;
        // SAFETY: as in ctime().
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers.
        unsafe { libc::localtime_r(&t, &mut tm) };
        tm.tm_gmtoff
    }

    #[test]
    fn asctime_pads_the_day_with_a_space() {
        // SAFETY: an all-zero `tm` is valid.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        (tm.tm_wday, tm.tm_mon, tm.tm_mday, tm.tm_year) = (5, 11, 4, 126);
        (tm.tm_hour, tm.tm_min, tm.tm_sec) = (10, 55, 9);
        let mut s = String::new();
        asctime(&mut s, &tm);
        assert_eq!(s, "Fri Dec  4 10:55:09 2026");
        tm.tm_mday = 24;
        s.clear();
        asctime(&mut s, &tm);
        assert_eq!(s, "Fri Dec 24 10:55:09 2026");
    }
}
