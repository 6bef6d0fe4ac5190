//! Decoding hand-built ctnetlink messages. Messages are built either with
//! netlink-packet-netfilter's emitters or byte by byte from the uapi layout
//! (so a byte-order bug shared by its parser and emitter would still show);
//! expected values are written out by hand.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use netlink_packet_core::{
    DefaultNla, Emitable, NLA_F_NESTED, NLM_F_CREATE, NLM_F_EXCL, NLM_F_MULTIPART, NetlinkMessage,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple, Protocol,
    Status, Tuple as CtTuple,
};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use tracker_common::FlowTuple;

use super::attrs::*;
use super::decode::{Receipt, decode_event};
use super::events::decode_datagram;
use super::*;
use crate::counts::CountRow;
use crate::counts::dump::{self, DumpEntry, entry_from_payload};
use crate::event::{Counters, Event, EventKind, L4Ids, Tuple, ZoneDir};

const NETNS: u32 = 4026531840;

fn receipt() -> Receipt {
    Receipt {
        time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        netns: NETNS,
    }
}

/// Serializes a ctnetlink message with the crate's emitters.
fn emit(family: NetfilterProtoFamily, msg: ConntrackMessage, flags: u16, portid: u32) -> Vec<u8> {
    let mut nl = NetlinkMessage::from(NetfilterMessage::new(
        NetfilterHeader::new(family, 0, 0),
        msg,
    ));
    nl.header.flags = flags;
    nl.header.port_number = portid;
    nl.finalize();
    let mut buf = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut buf);
    buf
}

fn ip_tuple(src: IpAddr, dst: IpAddr, proto: Vec<ProtoTuple>) -> Vec<CtTuple> {
    vec![
        CtTuple::Ip(vec![
            IPTuple::SourceAddress(src),
            IPTuple::DestinationAddress(dst),
        ]),
        CtTuple::Proto(proto),
    ]
}

fn ports(proto: Protocol, sport: u16, dport: u16) -> Vec<ProtoTuple> {
    vec![
        ProtoTuple::Protocol(proto),
        ProtoTuple::SourcePort(sport),
        ProtoTuple::DestinationPort(dport),
    ]
}

/// An attribute the crate does not model, with its value bytes.
fn other(kind: u16, value: &[u8]) -> ConntrackAttribute {
    ConntrackAttribute::Other(DefaultNla::new(kind, value.to_vec()))
}

/// A nested attribute the crate does not model, from its children.
fn other_nested(kind: u16, children: &[DefaultNla]) -> ConntrackAttribute {
    let mut value = vec![0u8; children.buffer_len()];
    children.emit(&mut value);
    ConntrackAttribute::Other(DefaultNla::new(kind | NLA_F_NESTED, value))
}

fn u64_nla(kind: u16, v: u64) -> DefaultNla {
    DefaultNla::new(kind, v.to_be_bytes().to_vec())
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn decode_one(bytes: &[u8]) -> Event {
    decode_event(bytes, &receipt())
        .expect("decodes")
        .expect("is an event")
}

#[test]
fn tcp_new_with_every_optional_field() {
    let (a, b) = (v4([10, 0, 0, 1]), v4([10, 0, 0, 2]));
    let msg = ConntrackMessage::New(vec![
        ConntrackAttribute::CtaTupleOrig(ip_tuple(a, b, ports(Protocol::Tcp, 40000, 80))),
        ConntrackAttribute::CtaTupleReply(ip_tuple(b, a, ports(Protocol::Tcp, 80, 40000))),
        ConntrackAttribute::CtaStatus(Status::from_bits_retain(0x8)),
        ConntrackAttribute::CtaTimeout(120),
        ConntrackAttribute::CtaProtoInfo(vec![ProtoInfo::TCP(vec![
            ProtoInfoTCP::State(1),
            ProtoInfoTCP::OriginalWindowScale(7),
        ])]),
        ConntrackAttribute::CtaMark(7),
        other(CTA_ZONE, &[0x00, 0x05]),
        other(CTA_ID, &[0xde, 0xad, 0xbe, 0xef]),
    ]);
    let bytes = emit(
        NetfilterProtoFamily::IPv4,
        msg,
        NLM_F_CREATE | NLM_F_EXCL,
        0,
    );
    let expected = Event {
        kind: EventKind::New,
        time: receipt().time,
        l3proto: 2,
        l4proto: 6,
        orig: Tuple {
            src: a,
            dst: b,
            l4: L4Ids::Ports {
                sport: 40000,
                dport: 80,
            },
        },
        reply: Tuple {
            src: b,
            dst: a,
            l4: L4Ids::Ports {
                sport: 80,
                dport: 40000,
            },
        },
        status: 0x8,
        tcp_state: Some(1),
        sctp_state: None,
        dccp_state: None,
        timeout: Some(120),
        mark: 7,
        mark_changed: false,
        zone: 5,
        zone_dir: ZoneDir::Both,
        netns: NETNS,
        counters: None,
        start_ns: None,
        stop_ns: None,
        portid: None,
        changes: None,
        conn_id: 0xdead_beef,
        ct_id: Some(0xdead_beef),
    };
    assert_eq!(decode_one(&bytes), expected);
}

#[test]
fn new_without_creation_flags_is_an_update_and_zero_mark_is_a_mark_change() {
    let (a, b) = (v4([192, 168, 1, 1]), v4([192, 168, 1, 2]));
    let msg = ConntrackMessage::New(vec![
        ConntrackAttribute::CtaTupleOrig(ip_tuple(a, b, ports(Protocol::Udp, 5000, 53))),
        ConntrackAttribute::CtaTupleReply(ip_tuple(b, a, ports(Protocol::Udp, 53, 5000))),
        ConntrackAttribute::CtaStatus(Status::from_bits_retain(0xa)),
        ConntrackAttribute::CtaTimeout(30),
        ConntrackAttribute::CtaMark(0),
    ]);
    let e = decode_one(&emit(NetfilterProtoFamily::IPv4, msg, 0, 0));
    assert_eq!(e.kind, EventKind::Update);
    assert_eq!((e.mark, e.mark_changed), (0, true));
    assert_eq!((e.tcp_state, e.timeout, e.status), (None, Some(30), 0xa));

    // Without CTA_MARK: mark 0, not a change.
    let msg = ConntrackMessage::New(vec![
        ConntrackAttribute::CtaTupleOrig(ip_tuple(a, b, ports(Protocol::Udp, 5000, 53))),
        ConntrackAttribute::CtaTupleReply(ip_tuple(b, a, ports(Protocol::Udp, 53, 5000))),
    ]);
    let e = decode_one(&emit(NetfilterProtoFamily::IPv4, msg, 0, 0));
    assert_eq!((e.mark, e.mark_changed, e.timeout), (0, false, None));
}

#[test]
fn udp6_destroy_with_counters_timestamps_and_portid() {
    let a: IpAddr = "2001:db8::1".parse().unwrap();
    let b: IpAddr = "2001:db8::2".parse().unwrap();
    let msg = ConntrackMessage::Delete(vec![
        ConntrackAttribute::CtaTupleOrig(ip_tuple(a, b, ports(Protocol::Udp, 1234, 4321))),
        ConntrackAttribute::CtaTupleReply(ip_tuple(b, a, ports(Protocol::Udp, 4321, 1234))),
        ConntrackAttribute::CtaStatus(Status::from_bits_retain(0xe)),
        other_nested(
            CTA_COUNTERS_ORIG,
            &[
                u64_nla(CTA_COUNTERS_PACKETS, 3),
                u64_nla(CTA_COUNTERS_BYTES, 180),
            ],
        ),
        other_nested(
            CTA_COUNTERS_REPLY,
            &[
                u64_nla(CTA_COUNTERS_PACKETS, 2),
                u64_nla(CTA_COUNTERS_BYTES, 1 << 33),
            ],
        ),
        other_nested(
            CTA_TIMESTAMP,
            &[
                u64_nla(CTA_TIMESTAMP_START, 1_700_000_000_123_456_789),
                u64_nla(CTA_TIMESTAMP_STOP, 1_700_000_030_000_000_001),
            ],
        ),
        other(CTA_ID, &[0, 0, 0, 42]),
    ]);
    let e = decode_one(&emit(NetfilterProtoFamily::IPv6, msg, 0, 4242));
    assert_eq!(e.kind, EventKind::Destroy);
    assert_eq!((e.l3proto, e.l4proto), (10, 17));
    assert_eq!(e.orig.src, a);
    assert_eq!(
        e.reply.l4,
        L4Ids::Ports {
            sport: 4321,
            dport: 1234
        }
    );
    assert_eq!(
        e.counters,
        Some([
            Counters {
                packets: 3,
                bytes: 180
            },
            Counters {
                packets: 2,
                bytes: 1 << 33
            },
        ])
    );
    assert_eq!(e.start_ns, Some(1_700_000_000_123_456_789));
    assert_eq!(e.stop_ns, Some(1_700_000_030_000_000_001));
    assert_eq!(e.portid, Some(4242));
    assert_eq!(e.conn_id, 42);
    assert_eq!((e.timeout, e.tcp_state, e.zone), (None, None, 0));
}

#[test]
fn counters_32bit_and_start_only_timestamp() {
    let (a, b) = (v4([1, 1, 1, 1]), v4([2, 2, 2, 2]));
    let msg = ConntrackMessage::Delete(vec![
        ConntrackAttribute::CtaTupleOrig(ip_tuple(a, b, ports(Protocol::Tcp, 1, 2))),
        ConntrackAttribute::CtaTupleReply(ip_tuple(b, a, ports(Protocol::Tcp, 2, 1))),
        other_nested(
            CTA_COUNTERS_REPLY,
            &[
                DefaultNla::new(CTA_COUNTERS32_PACKETS, 9u32.to_be_bytes().to_vec()),
                DefaultNla::new(CTA_COUNTERS32_BYTES, 900u32.to_be_bytes().to_vec()),
            ],
        ),
        other_nested(CTA_TIMESTAMP, &[u64_nla(CTA_TIMESTAMP_START, 77)]),
    ]);
    let e = decode_one(&emit(NetfilterProtoFamily::IPv4, msg, 0, 0));
    assert_eq!(
        e.counters,
        Some([
            Counters::default(),
            Counters {
                packets: 9,
                bytes: 900
            }
        ])
    );
    assert_eq!((e.start_ns, e.stop_ns), (Some(77), None));
}

// --- byte-by-byte messages from the uapi layout -------------------------

fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut v = Vec::new();
    v.extend_from_slice(&(len as u16).to_ne_bytes());
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(value);
    v.resize(len.div_ceil(4) * 4, 0);
    v
}

fn nest(kind: u16, children: &[Vec<u8>]) -> Vec<u8> {
    nla(kind | NLA_F_NESTED, &children.concat())
}

/// nlmsghdr + nfgenmsg + attributes.
fn ct_msg(msg_type: u8, flags: u16, portid: u32, family: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
    let body = attrs.concat();
    let len = 16 + 4 + body.len();
    let mut v = Vec::new();
    v.extend_from_slice(&(len as u32).to_ne_bytes());
    v.extend_from_slice(&((1u16 << 8) | u16::from(msg_type)).to_ne_bytes());
    v.extend_from_slice(&flags.to_ne_bytes());
    v.extend_from_slice(&7u32.to_ne_bytes()); // seq
    v.extend_from_slice(&portid.to_ne_bytes());
    v.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg: family, version, res_id
    v.extend_from_slice(&body);
    v
}

fn icmp_tuple(src: [u8; 4], dst: [u8; 4], id: u16, kind: u8, code: u8) -> Vec<u8> {
    nest(
        0, // replaced by the caller's kind
        &[
            nest(
                CTA_TUPLE_IP,
                &[nla(CTA_IP_V4_SRC, &src), nla(CTA_IP_V4_DST, &dst)],
            ),
            nest(
                CTA_TUPLE_PROTO,
                &[
                    nla(CTA_PROTO_NUM, &[1]),
                    nla(CTA_PROTO_ICMP_ID, &id.to_be_bytes()),
                    nla(CTA_PROTO_ICMP_TYPE, &[kind]),
                    nla(CTA_PROTO_ICMP_CODE, &[code]),
                ],
            ),
        ],
    )
}

fn with_kind(mut attr: Vec<u8>, kind: u16) -> Vec<u8> {
    attr[2..4].copy_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    attr
}

/// ICMP echo 10.1.2.3 → 10.1.2.4, id 0x1234, in zone 9 with mark 0x01020304.
fn raw_icmp_new() -> Vec<u8> {
    ct_msg(
        0,
        NLM_F_CREATE | NLM_F_EXCL,
        0,
        2,
        &[
            with_kind(
                icmp_tuple([10, 1, 2, 3], [10, 1, 2, 4], 0x1234, 8, 0),
                CTA_TUPLE_ORIG,
            ),
            with_kind(icmp_tuple([10, 1, 2, 4], [10, 1, 2, 3], 0x1234, 0, 0), 2),
            nla(3, &0x8u32.to_be_bytes()), // CTA_STATUS
            nla(7, &30u32.to_be_bytes()),  // CTA_TIMEOUT
            nla(CTA_MARK, &[1, 2, 3, 4]),
            nla(CTA_ID, &[0, 0, 1, 0]),
            nla(CTA_ZONE, &[0, 9]),
        ],
    )
}

#[test]
fn icmp_from_raw_bytes() {
    let e = decode_one(&raw_icmp_new());
    assert_eq!(e.kind, EventKind::New);
    assert_eq!((e.l3proto, e.l4proto), (2, 1));
    assert_eq!(
        e.orig,
        Tuple {
            src: v4([10, 1, 2, 3]),
            dst: v4([10, 1, 2, 4]),
            l4: L4Ids::Icmp {
                kind: 8,
                code: 0,
                id: 0x1234
            },
        }
    );
    assert_eq!(
        e.reply.l4,
        L4Ids::Icmp {
            kind: 0,
            code: 0,
            id: 0x1234
        }
    );
    assert_eq!(
        (e.status, e.timeout, e.mark, e.zone, e.conn_id),
        (8, Some(30), 0x0102_0304, 9, 256)
    );
}

#[test]
fn dump_entry_from_raw_bytes_keeps_kernel_tuple_layout() {
    let bytes = raw_icmp_new();
    let e = entry_from_payload(&bytes[16..], NETNS).expect("parses");
    let mut orig = FlowTuple::default();
    orig.src[..4].copy_from_slice(&[10, 1, 2, 3]);
    orig.dst[..4].copy_from_slice(&[10, 1, 2, 4]);
    orig.src_id = [0x12, 0x34]; // ICMP id, network order
    orig.dst_id = [8, 0]; // type, code
    assert_eq!(
        e,
        DumpEntry {
            orig,
            l3proto: 2,
            l4proto: 1,
            zone: 9,
            mark: 0x0102_0304,
            netns: NETNS,
            id: 256,
        }
    );
    assert_eq!(
        e.tuple_hash(),
        tracker_common::tuple_hash(&orig, 2, 1, 9, NETNS)
    );
}

#[test]
fn directional_zone_inside_the_tuple() {
    let tuple = |kind| {
        nest(
            kind,
            &[
                nest(
                    CTA_TUPLE_IP,
                    &[
                        nla(CTA_IP_V4_SRC, &[1, 0, 0, 1]),
                        nla(CTA_IP_V4_DST, &[1, 0, 0, 2]),
                    ],
                ),
                nest(
                    CTA_TUPLE_PROTO,
                    &[
                        nla(CTA_PROTO_NUM, &[17]),
                        nla(CTA_PROTO_SRC_PORT, &[0, 53]),
                        nla(CTA_PROTO_DST_PORT, &[0, 54]),
                    ],
                ),
                nla(CTA_TUPLE_ZONE, &[0, 3]),
            ],
        )
    };
    let bytes = ct_msg(2, 0, 0, 2, &[tuple(CTA_TUPLE_ORIG), tuple(2)]);
    assert_eq!(decode_one(&bytes).zone, 3);
    let e = entry_from_payload(&bytes[16..], NETNS).unwrap();
    assert_eq!(
        (e.zone, e.orig.src_id, e.orig.dst_id),
        (3, [0, 53], [0, 54])
    );
}

#[test]
fn gre_keys_and_protocols_without_ids() {
    let (a, b) = (v4([1, 2, 3, 4]), v4([5, 6, 7, 8]));
    let gre = ConntrackMessage::New(vec![
        ConntrackAttribute::CtaTupleOrig(ip_tuple(a, b, ports(Protocol::Gre, 0x10, 0x20))),
        ConntrackAttribute::CtaTupleReply(ip_tuple(b, a, ports(Protocol::Gre, 0x20, 0x10))),
    ]);
    let e = decode_one(&emit(NetfilterProtoFamily::IPv4, gre, NLM_F_CREATE, 0));
    assert_eq!(
        e.orig.l4,
        L4Ids::Gre {
            src_key: 0x10,
            dst_key: 0x20
        }
    );

    let ipip = ConntrackMessage::New(vec![
        ConntrackAttribute::CtaTupleOrig(ip_tuple(
            a,
            b,
            vec![ProtoTuple::Protocol(Protocol::IpIp)],
        )),
        ConntrackAttribute::CtaTupleReply(ip_tuple(
            b,
            a,
            vec![ProtoTuple::Protocol(Protocol::IpIp)],
        )),
    ]);
    let e = decode_one(&emit(NetfilterProtoFamily::IPv4, ipip, NLM_F_CREATE, 0));
    assert_eq!((e.l4proto, e.orig.l4), (94, L4Ids::None));
}

#[test]
fn icmpv6_via_gap_attributes() {
    let a = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let icmp6 = |kind: u8| {
        vec![
            ProtoTuple::Protocol(Protocol::Ipv6Icmp),
            ProtoTuple::Other(DefaultNla::new(
                CTA_PROTO_ICMPV6_ID,
                0xbeefu16.to_be_bytes().to_vec(),
            )),
            ProtoTuple::Other(DefaultNla::new(CTA_PROTO_ICMPV6_TYPE, vec![kind])),
            ProtoTuple::Other(DefaultNla::new(CTA_PROTO_ICMPV6_CODE, vec![0])),
        ]
    };
    let msg = ConntrackMessage::New(vec![
        ConntrackAttribute::CtaTupleOrig(ip_tuple(a, a, icmp6(128))),
        ConntrackAttribute::CtaTupleReply(ip_tuple(a, a, icmp6(129))),
    ]);
    let bytes = emit(
        NetfilterProtoFamily::IPv6,
        msg,
        NLM_F_CREATE | NLM_F_EXCL,
        0,
    );
    let e = decode_one(&bytes);
    assert_eq!(
        e.orig.l4,
        L4Ids::Icmp {
            kind: 128,
            code: 0,
            id: 0xbeef
        }
    );
    assert_eq!(
        e.reply.l4,
        L4Ids::Icmp {
            kind: 129,
            code: 0,
            id: 0xbeef
        }
    );
    let d = entry_from_payload(&bytes[16..], NETNS).unwrap();
    assert_eq!(
        (
            d.l3proto,
            d.l4proto,
            d.orig.src[15],
            d.orig.src_id,
            d.orig.dst_id
        ),
        (10, 58, 1, [0xbe, 0xef], [128, 0])
    );
}

/// The allocation-free dump walk and the crate-based event decoder agree on
/// every message built above.
#[test]
fn dump_walk_matches_crate_decoder() {
    let (a, b) = (v4([10, 0, 0, 1]), v4([10, 0, 0, 2]));
    let six: IpAddr = "fe80::1:2".parse().unwrap();
    let messages = [
        raw_icmp_new(),
        emit(
            NetfilterProtoFamily::IPv4,
            ConntrackMessage::New(vec![
                ConntrackAttribute::CtaTupleOrig(ip_tuple(a, b, ports(Protocol::Tcp, 65535, 1))),
                ConntrackAttribute::CtaTupleReply(ip_tuple(b, a, ports(Protocol::Tcp, 1, 65535))),
                ConntrackAttribute::CtaMark(0xffff_fff0),
            ]),
            NLM_F_MULTIPART,
            0,
        ),
        emit(
            NetfilterProtoFamily::IPv6,
            ConntrackMessage::New(vec![
                ConntrackAttribute::CtaTupleOrig(ip_tuple(
                    six,
                    a.to_canonical(),
                    ports(Protocol::Sctp, 9, 10),
                )),
                ConntrackAttribute::CtaTupleReply(ip_tuple(six, six, ports(Protocol::Sctp, 10, 9))),
                other(CTA_ZONE, &[1, 0]),
            ]),
            NLM_F_MULTIPART,
            0,
        ),
    ];
    for bytes in messages {
        let e = decode_one(&bytes);
        let d = entry_from_payload(&bytes[16..], NETNS).unwrap();
        let mut t = FlowTuple::default();
        for (dst, addr) in [(&mut t.src, e.orig.src), (&mut t.dst, e.orig.dst)] {
            match addr {
                IpAddr::V4(x) => dst[..4].copy_from_slice(&x.octets()),
                IpAddr::V6(x) => dst.copy_from_slice(&x.octets()),
            }
        }
        match e.orig.l4 {
            L4Ids::Ports { sport, dport } => {
                (t.src_id, t.dst_id) = (sport.to_be_bytes(), dport.to_be_bytes())
            }
            L4Ids::Icmp { kind, code, id } => {
                (t.src_id, t.dst_id) = (id.to_be_bytes(), [kind, code])
            }
            L4Ids::Gre { src_key, dst_key } => {
                (t.src_id, t.dst_id) = (src_key.to_be_bytes(), dst_key.to_be_bytes())
            }
            L4Ids::None => {}
        }
        assert_eq!(d.orig, t);
        assert_eq!(
            (d.l3proto, d.l4proto, d.zone, d.mark),
            (e.l3proto, e.l4proto, e.zone, e.mark)
        );
    }
}

#[test]
fn datagram_with_several_messages_and_garbage() {
    let mut datagram = raw_icmp_new();
    datagram.extend(raw_icmp_new());
    let mut out = Vec::new();
    assert_eq!(decode_datagram(&datagram, &receipt(), &mut out), 0);
    assert_eq!(out.len(), 2);

    // A message without a reply tuple is counted, not pushed.
    let bad = ct_msg(
        0,
        NLM_F_CREATE,
        0,
        2,
        &[with_kind(
            icmp_tuple([1; 4], [2; 4], 1, 8, 0),
            CTA_TUPLE_ORIG,
        )],
    );
    assert!(matches!(
        decode_event(&bad, &receipt()),
        Err(NetlinkError::Malformed(_))
    ));
    let mut tail = bad.clone();
    tail.extend_from_slice(&[1, 2, 3]); // a truncated header after it
    assert_eq!(decode_datagram(&tail, &receipt(), &mut out), 2);
    assert_eq!(out.len(), 2);

    // A ctnetlink GET (a request, not an event) is ignored.
    let get = emit(
        NetfilterProtoFamily::Unspec,
        ConntrackMessage::Get(vec![]),
        0,
        0,
    );
    assert!(decode_event(&get, &receipt()).unwrap().is_none());
}

#[test]
fn kind_sets_map_to_groups() {
    assert_eq!(groups(EventKinds::ALL).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        groups(EventKinds {
            new: true,
            update: false,
            destroy: true
        })
        .collect::<Vec<_>>(),
        [1, 3]
    );
    assert!(EventKinds::NONE.is_empty());
    assert!(matches!(
        NetlinkSource::open(EventKinds::NONE, 0),
        Err(NetlinkError::NoKinds)
    ));
}

#[test]
fn dump_rows_group_by_mark_and_protocols_in_one_netns() {
    let entry = |mark, l4proto, netns| DumpEntry {
        mark,
        l4proto,
        l3proto: 2,
        netns,
        ..DumpEntry::default()
    };
    let entries = [
        entry(1, 6, NETNS),
        entry(1, 6, NETNS),
        entry(1, 17, NETNS),
        entry(2, 6, NETNS),
        entry(2, 6, NETNS + 1),
    ];
    let row = |mark, l4proto, connections| CountRow {
        mark,
        l3proto: 2,
        l4proto,
        connections,
    };
    assert_eq!(
        dump::rows(&entries, Some(NETNS)),
        [row(1, 6, 2), row(1, 17, 1), row(2, 6, 1)]
    );
    assert_eq!(
        dump::rows(&entries, None),
        [row(1, 6, 2), row(1, 17, 1), row(2, 6, 2)]
    );
}

#[test]
fn error_messages_say_what_to_do() {
    assert_eq!(
        NetlinkError::PermissionDenied.to_string(),
        "opening a ctnetlink socket needs CAP_NET_ADMIN (run as root)"
    );
    assert_eq!(
        NetlinkError::Unavailable.to_string(),
        "ctnetlink is not available: load nf_conntrack_netlink (modprobe nf_conntrack_netlink)"
    );
    let e = super::socket::classify(
        "socket",
        std::io::Error::from_raw_os_error(libc::EPROTONOSUPPORT),
    );
    assert!(matches!(e, NetlinkError::Unavailable));
    let e = super::socket::classify("bind", std::io::Error::from_raw_os_error(libc::EPERM));
    assert!(matches!(e, NetlinkError::PermissionDenied));
}

// --- SCTP and DCCP protocol info, as the kernel nests it -----------------

/// `CTA_TUPLE_ORIG`/`REPLY` of a port protocol between two IPv4 addresses.
fn port_tuple(kind: u16, src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    nest(
        kind,
        &[
            nest(
                CTA_TUPLE_IP,
                &[nla(CTA_IP_V4_SRC, &src), nla(CTA_IP_V4_DST, &dst)],
            ),
            nest(
                CTA_TUPLE_PROTO,
                &[
                    nla(CTA_PROTO_NUM, &[proto]),
                    nla(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()),
                    nla(CTA_PROTO_DST_PORT, &dport.to_be_bytes()),
                ],
            ),
        ],
    )
}

/// `CTA_PROTOINFO` (4) around one protocol's nest.
fn protoinfo(kind: u16, children: &[Vec<u8>]) -> Vec<u8> {
    nest(4, &[nest(kind, children)])
}

fn line_of(bytes: &[u8]) -> String {
    use crate::output::conntrack_text::{TextOptions, format_event};
    let mut s = String::new();
    format_event(&mut s, &decode_one(bytes), TextOptions::default());
    s
}

/// `conntrack -I -p sctp ... --state ESTABLISHED --orig-vtag 1 --reply-vtag 2`:
/// sctp_to_nlattr() nests the state and both tags; conntrack 1.4.7 printed
/// the line below on Linux 6.18 (without its ` progname=conntrack`).
#[test]
fn sctp_state_from_its_protoinfo_nest() {
    let (a, b) = ([10, 9, 9, 1], [10, 9, 9, 2]);
    let bytes = ct_msg(
        0,
        NLM_F_CREATE | NLM_F_EXCL,
        29905,
        2,
        &[
            port_tuple(CTA_TUPLE_ORIG, a, b, 132, 5503, 5504),
            port_tuple(2, b, a, 132, 5504, 5503),
            nla(3, &0x8u32.to_be_bytes()), // CTA_STATUS
            nla(7, &60u32.to_be_bytes()),  // CTA_TIMEOUT
            protoinfo(
                CTA_PROTOINFO_SCTP,
                &[
                    nla(CTA_PROTOINFO_SCTP_STATE, &[4]),
                    nla(2, &1u32.to_be_bytes()), // CTA_PROTOINFO_SCTP_VTAG_ORIGINAL
                    nla(3, &2u32.to_be_bytes()), // CTA_PROTOINFO_SCTP_VTAG_REPLY
                ],
            ),
            nla(CTA_MARK, &[0, 0, 0, 0]),
        ],
    );
    let e = decode_one(&bytes);
    assert_eq!(
        (e.tcp_state, e.sctp_state, e.dccp_state),
        (None, Some(4), None)
    );
    assert_eq!(
        line_of(&bytes),
        "    [NEW] sctp     132 60 ESTABLISHED src=10.9.9.1 dst=10.9.9.2 sport=5503 dport=5504 \
         [UNREPLIED] src=10.9.9.2 dst=10.9.9.1 sport=5504 dport=5503 mark=0 \
         [USERSPACE] portid=29905\n"
    );
}

/// The DESTROY of a raw INIT's entry on Linux 6.18: from 5.15 the kernel
/// adds the state alone (sctp_to_nlattr() with `destroy`).
#[test]
fn sctp_destroy_with_state_only() {
    let (a, b) = ([127, 0, 0, 1], [127, 0, 0, 2]);
    let bytes = ct_msg(
        2,
        0,
        29922,
        2,
        &[
            port_tuple(CTA_TUPLE_ORIG, a, b, 132, 5501, 5502),
            port_tuple(2, b, a, 132, 5502, 5501),
            nla(3, &0x8u32.to_be_bytes()), // CTA_STATUS
            nla(7, &119u32.to_be_bytes()), // CTA_TIMEOUT
            protoinfo(CTA_PROTOINFO_SCTP, &[nla(CTA_PROTOINFO_SCTP_STATE, &[1])]),
            nest(
                CTA_COUNTERS_ORIG,
                &[
                    nla(CTA_COUNTERS_PACKETS, &1u64.to_be_bytes()),
                    nla(CTA_COUNTERS_BYTES, &52u64.to_be_bytes()),
                ],
            ),
            nest(
                CTA_COUNTERS_REPLY,
                &[
                    nla(CTA_COUNTERS_PACKETS, &0u64.to_be_bytes()),
                    nla(CTA_COUNTERS_BYTES, &0u64.to_be_bytes()),
                ],
            ),
            nest(
                CTA_TIMESTAMP,
                &[
                    nla(
                        CTA_TIMESTAMP_START,
                        &1_796_381_749_800_000_000u64.to_be_bytes(),
                    ),
                    nla(
                        CTA_TIMESTAMP_STOP,
                        &1_796_381_750_300_000_000u64.to_be_bytes(),
                    ),
                ],
            ),
        ],
    );
    assert_eq!(
        line_of(&bytes),
        "[DESTROY] sctp     132 119 CLOSED src=127.0.0.1 dst=127.0.0.2 sport=5501 dport=5502 \
         packets=1 bytes=52 [UNREPLIED] src=127.0.0.2 dst=127.0.0.1 sport=5502 dport=5501 \
         packets=0 bytes=0 delta-time=1 [USERSPACE] portid=29922\n"
    );
}

/// `conntrack -I -p dccp ... --state OPEN --role client` on Linux 6.1:
/// dccp_to_nlattr() nests the state, the role and the handshake sequence.
#[test]
fn dccp_state_from_its_protoinfo_nest() {
    let (a, b) = ([10, 9, 9, 1], [10, 9, 9, 2]);
    let bytes = ct_msg(
        0,
        NLM_F_CREATE | NLM_F_EXCL,
        417,
        2,
        &[
            port_tuple(CTA_TUPLE_ORIG, a, b, 33, 5603, 5604),
            port_tuple(2, b, a, 33, 5604, 5603),
            nla(3, &0x8u32.to_be_bytes()), // CTA_STATUS
            nla(7, &60u32.to_be_bytes()),  // CTA_TIMEOUT
            protoinfo(
                CTA_PROTOINFO_DCCP,
                &[
                    nla(CTA_PROTOINFO_DCCP_STATE, &[4]),
                    nla(2, &[0]),                // CTA_PROTOINFO_DCCP_ROLE
                    nla(3, &0u64.to_be_bytes()), // CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ
                ],
            ),
            nla(CTA_MARK, &[0, 0, 0, 0]),
        ],
    );
    let e = decode_one(&bytes);
    assert_eq!(
        (e.tcp_state, e.sctp_state, e.dccp_state),
        (None, None, Some(4))
    );
    assert_eq!(
        line_of(&bytes),
        "    [NEW] dccp     33 60 OPEN src=10.9.9.1 dst=10.9.9.2 sport=5603 dport=5604 \
         [UNREPLIED] src=10.9.9.2 dst=10.9.9.1 sport=5604 dport=5603 mark=0 \
         [USERSPACE] portid=417\n"
    );
    // A nest without the state (or a malformed one) leaves the state unknown.
    let bytes = ct_msg(
        0,
        NLM_F_CREATE | NLM_F_EXCL,
        0,
        2,
        &[
            port_tuple(CTA_TUPLE_ORIG, a, b, 33, 5603, 5604),
            port_tuple(2, b, a, 33, 5604, 5603),
            protoinfo(CTA_PROTOINFO_DCCP, &[nla(2, &[0])]),
        ],
    );
    assert_eq!(decode_one(&bytes).dccp_state, None);
}
