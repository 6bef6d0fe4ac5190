//! One ctnetlink event message → one [`Event`].
//!
//! netlink-packet-netfilter parses the message; [`super::attrs`] reads the
//! attributes it leaves as `Other`.

use std::time::SystemTime;

use netlink_packet_core::{
    NLA_TYPE_MASK, NLM_F_CREATE, NLM_F_EXCL, NetlinkMessage, NetlinkPayload, Nla,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple,
    Tuple as CtTuple,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner};

use super::NetlinkError;
use super::attrs::{self, GapValue};
use crate::event::vocabulary::l4_ids;
use crate::event::{Counters, Event, EventKind, Tuple, ZoneDir};

/// What the receiver knows about a message besides its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Receipt {
    pub time: SystemTime,
    /// Inode of the socket's netns: ctnetlink only reports its own netns.
    pub netns: u32,
}

/// Parses one netlink message (header included). `Ok(None)` for messages
/// that are not conntrack events (other subsystems, acks, `Get`).
pub fn decode_event(raw: &[u8], rx: &Receipt) -> Result<Option<Event>, NetlinkError> {
    let msg = NetlinkMessage::<NetfilterMessage>::deserialize(raw)
        .map_err(|e| NetlinkError::Malformed(e.to_string()))?;
    event_from_message(&msg, rx)
}

pub fn event_from_message(
    msg: &NetlinkMessage<NetfilterMessage>,
    rx: &Receipt,
) -> Result<Option<Event>, NetlinkError> {
    let NetlinkPayload::InnerMessage(nf) = &msg.payload else {
        return Ok(None);
    };
    let NetfilterMessageInner::Conntrack(ct) = &nf.inner else {
        return Ok(None);
    };
    // Same rule as libnetfilter_conntrack: a CT_NEW with either creation flag
    // is NEW, any other CT_NEW is an UPDATE.
    let (kind, attributes) = match ct {
        ConntrackMessage::New(a) if msg.header.flags & (NLM_F_CREATE | NLM_F_EXCL) != 0 => {
            (EventKind::New, a)
        }
        ConntrackMessage::New(a) => (EventKind::Update, a),
        ConntrackMessage::Delete(a) => (EventKind::Destroy, a),
        _ => return Ok(None),
    };

    let mut orig = None;
    let mut reply = None;
    let mut status = 0;
    let mut tcp_state = None;
    let mut sctp_state = None;
    let mut dccp_state = None;
    let mut timeout = None;
    let mut mark = None;
    let mut zone = None;
    let mut tuple_zone = None;
    let mut counters: Option<[Counters; 2]> = None;
    let mut start_ns = None;
    let mut stop_ns = None;
    let mut ct_id = None;

    for attr in attributes {
        match attr {
            ConntrackAttribute::CtaTupleOrig(t) => {
                let d = decode_tuple(t, "original")?;
                tuple_zone = tuple_zone.or(d.zone.map(|z| (z, ZoneDir::Orig)));
                orig = Some(d);
            }
            ConntrackAttribute::CtaTupleReply(t) => {
                let d = decode_tuple(t, "reply")?;
                tuple_zone = tuple_zone.or(d.zone.map(|z| (z, ZoneDir::Reply)));
                reply = Some(d);
            }
            ConntrackAttribute::CtaStatus(s) => status = s.bits(),
            ConntrackAttribute::CtaTimeout(t) => timeout = Some(*t),
            ConntrackAttribute::CtaMark(m) => mark = Some(*m),
            ConntrackAttribute::CtaProtoInfo(infos) => {
                for info in infos {
                    match info {
                        ProtoInfo::TCP(tcp) => {
                            for t in tcp {
                                if let ProtoInfoTCP::State(s) = t {
                                    tcp_state = Some(*s);
                                }
                            }
                        }
                        // The crate models TCP's protocol info only.
                        ProtoInfo::Other(nla) => match nla.kind() & NLA_TYPE_MASK {
                            attrs::CTA_PROTOINFO_SCTP => {
                                sctp_state =
                                    attrs::proto_state(nla, attrs::CTA_PROTOINFO_SCTP_STATE)
                            }
                            attrs::CTA_PROTOINFO_DCCP => {
                                dccp_state =
                                    attrs::proto_state(nla, attrs::CTA_PROTOINFO_DCCP_STATE)
                            }
                            _ => {}
                        },
                        _ => {}
                    }
                }
            }
            ConntrackAttribute::Other(nla) => {
                let v = GapValue::of(nla).ok_or_else(|| malformed("oversized attribute"))?;
                match v.kind {
                    attrs::CTA_ZONE => {
                        zone = Some(v.u16_be().ok_or_else(|| malformed("CTA_ZONE"))?)
                    }
                    attrs::CTA_ID => ct_id = Some(v.u32_be().ok_or_else(|| malformed("CTA_ID"))?),
                    attrs::CTA_COUNTERS_ORIG | attrs::CTA_COUNTERS_REPLY => {
                        let c = attrs::parse_counters(v.bytes())
                            .ok_or_else(|| malformed("CTA_COUNTERS"))?;
                        let slot = counters.get_or_insert_with(Default::default);
                        slot[usize::from(v.kind == attrs::CTA_COUNTERS_REPLY)] = c;
                    }
                    attrs::CTA_TIMESTAMP => {
                        (start_ns, stop_ns) = attrs::parse_timestamp(v.bytes())
                            .ok_or_else(|| malformed("CTA_TIMESTAMP"))?;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    let orig = orig.ok_or_else(|| malformed("no original tuple"))?;
    let reply = reply.ok_or_else(|| malformed("no reply tuple"))?;
    let (zone, zone_dir) = match (zone, tuple_zone) {
        (Some(id), _) => (id, ZoneDir::Both),
        (None, Some(directional)) => directional,
        (None, None) => (0, ZoneDir::Both),
    };
    let port = msg.header.port_number;
    Ok(Some(Event {
        kind,
        time: rx.time,
        l3proto: u8::from(nf.header.family),
        l4proto: orig.l4proto,
        orig: orig.tuple,
        reply: reply.tuple,
        status,
        tcp_state,
        sctp_state,
        dccp_state,
        timeout,
        mark: mark.unwrap_or(0),
        // ctnetlink sends CTA_MARK when the mark is non-zero or the event is
        // a mark change; a present zero mark can only be the latter. A change
        // to a non-zero mark looks like any other event carrying the mark.
        mark_changed: mark == Some(0),
        // CTA_ZONE covers both directions; a one-direction zone comes inside
        // that direction's tuple. Either way the id is `ct->zone.id`.
        zone,
        zone_dir,
        netns: rx.netns,
        counters,
        start_ns,
        stop_ns,
        portid: (port != 0).then_some(port),
        changes: None,
        conn_id: ct_id.unwrap_or(0).into(),
        ct_id,
    }))
}

struct DecodedTuple {
    tuple: Tuple,
    l4proto: u8,
    zone: Option<u16>,
}

fn decode_tuple(parts: &[CtTuple], which: &str) -> Result<DecodedTuple, NetlinkError> {
    let (mut src, mut dst) = (None, None);
    let mut l4proto = None;
    let (mut sport, mut dport) = (0u16, 0u16);
    let (mut icmp_id, mut icmp_type, mut icmp_code) = (0u16, 0u8, 0u8);
    let mut zone = None;
    for part in parts {
        match part {
            CtTuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            CtTuple::Proto(protos) => {
                for p in protos {
                    match p {
                        ProtoTuple::Protocol(n) => l4proto = Some(u8::from(*n)),
                        ProtoTuple::SourcePort(n) => sport = *n,
                        ProtoTuple::DestinationPort(n) => dport = *n,
                        ProtoTuple::Other(nla) => {
                            let Some(v) = GapValue::of(nla) else { continue };
                            match v.kind {
                                attrs::CTA_PROTO_ICMP_ID | attrs::CTA_PROTO_ICMPV6_ID => {
                                    icmp_id = v.u16_be().ok_or_else(|| malformed("ICMP id"))?;
                                }
                                attrs::CTA_PROTO_ICMP_TYPE | attrs::CTA_PROTO_ICMPV6_TYPE => {
                                    icmp_type = v.u8().ok_or_else(|| malformed("ICMP type"))?;
                                }
                                attrs::CTA_PROTO_ICMP_CODE | attrs::CTA_PROTO_ICMPV6_CODE => {
                                    icmp_code = v.u8().ok_or_else(|| malformed("ICMP code"))?;
                                }
                                _ => {}
                            }
                        }
                        _ => {}
                    }
                }
            }
            CtTuple::Other(nla) => {
                if let Some(v) = GapValue::of(nla).filter(|v| v.kind == attrs::CTA_TUPLE_ZONE) {
                    zone = v.u16_be();
                }
            }
            _ => {}
        }
    }
    let (Some(src), Some(dst)) = (src, dst) else {
        return Err(NetlinkError::Malformed(format!(
            "{which} tuple without addresses"
        )));
    };
    let l4proto = l4proto
        .ok_or_else(|| NetlinkError::Malformed(format!("{which} tuple without protocol")))?;
    let l4 = l4_ids(l4proto, sport, dport, icmp_id, icmp_type, icmp_code);
    Ok(DecodedTuple {
        tuple: Tuple { src, dst, l4 },
        l4proto,
        zone,
    })
}

fn malformed(what: &str) -> NetlinkError {
    NetlinkError::Malformed(what.to_owned())
}
