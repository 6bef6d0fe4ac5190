//! Offsets of the kernel fields the eBPF programs read, taken from the
//! running kernel's BTF. Rust eBPF cannot emit CO-RE relocations, so this is
//! how the programs stay independent of kernel version and configuration.

use std::path::Path;

use btf_rs::{Btf, BtfType, Type};
use fallible_iterator::FallibleIterator as _;
use tracker_common::KernelOffsets;

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";
/// The module whose split BTF is read besides vmlinux's.
const MODULE: &str = "nf_conntrack";
/// Split BTF of the nf_conntrack module (6.1+ Debian); absent when the
/// module has none or conntrack is built in.
const NF_CONNTRACK: &str = "/sys/kernel/btf/nf_conntrack";

/// Where a kernel function's BTF lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FuncTarget {
    /// In vmlinux's BTF: trampolines attach by name.
    Vmlinux,
    /// In a module's split BTF, with the function's id there (ids continue
    /// after vmlinux's).
    Module { module: &'static str, btf_id: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "this kernel exposes no BTF at {VMLINUX}: the tracker needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (Linux 5.10+ distribution kernels have it); use --source netlink"
    )]
    NoVmlinux,
    #[error("cannot parse kernel BTF {path}: {message}")]
    Parse { path: String, message: String },
    #[error(
        "the kernel's BTF has no `{0}`: nf_conntrack is not loaded or not built with the \
         needed options (load it with `modprobe nf_conntrack`)"
    )]
    Missing(String),
    #[error(
        "this kernel's struct nf_conn spreads the fields the tracker reads over {0} bytes, more \
         than the {max} a record carries: use --source netlink",
        max = tracker_common::CONN_BYTES
    )]
    ConnTooLong(u32),
}

/// The running kernel's BTF, with the nf_conntrack module's split BTF when
/// the kernel has one.
pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    pub fn load() -> Result<Self, BtfError> {
        Self::load_from(Path::new(VMLINUX), Path::new(NF_CONNTRACK))
    }

    pub fn load_from(vmlinux: &Path, module: &Path) -> Result<Self, BtfError> {
        if !vmlinux.exists() {
            return Err(BtfError::NoVmlinux);
        }
        let parse = |path: &Path, e: btf_rs::Error| BtfError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        // Read whole, then parsed from memory: btf-rs's file reader seeks
        // and reads in small steps, tens of thousands of syscalls for
        // vmlinux.
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| BtfError::Parse {
                path: path.display().to_string(),
                message: e.to_string(),
            })
        };
        let base = Btf::from_bytes(&read(vmlinux)?).map_err(|e| parse(vmlinux, e))?;
        let btf = if module.exists() {
            Btf::from_split_bytes(&read(module)?, &base).map_err(|e| parse(module, e))?
        } else {
            base
        };
        Ok(Self { btf })
    }

    /// Where the function's BTF lives, which decides how a trampoline
    /// program is loaded against it; `None` when no BTF describes it.
    pub fn func_target(&self, name: &str) -> Option<FuncTarget> {
        let ids = self.btf.resolve_ids_by_name(name).ok()?;
        // Split BTF ids continue after the base's last id.
        let split_start = self.btf.split().map(|s| s.type_id_range().0);
        let id = ids
            .into_iter()
            .find(|&id| matches!(self.btf.resolve_type_by_id(id), Ok(Type::Func(_))))?;
        Some(match split_start {
            Some(start) if id >= start => FuncTarget::Module {
                module: MODULE,
                btf_id: id,
            },
            _ => FuncTarget::Vmlinux,
        })
    }

    /// Whether the kernel can preempt a task running kernel code (built
    /// with CONFIG_PREEMPTION, which is what defines `preempt_schedule`).
    /// When the BTF does not even list `schedule`, it proves nothing either
    /// way: assume it can.
    pub fn preemptible(&self) -> bool {
        self.func_target("preempt_schedule").is_some() || self.func_target("schedule").is_none()
    }

    fn find_struct(&self, name: &str) -> Result<btf_rs::Struct, BtfError> {
        let types = self
            .btf
            .resolve_types_by_name(name)
            .map_err(|_| BtfError::Missing(format!("struct {name}")))?;
        types
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) if !s.members.is_empty() => Some(s),
                _ => None,
            })
            .ok_or_else(|| BtfError::Missing(format!("struct {name}")))
    }

    /// Strips typedefs and qualifiers.
    fn resolve(&self, mut t: Type) -> Option<Type> {
        for _ in 0..16 {
            match t {
                Type::Typedef(_)
                | Type::Volatile(_)
                | Type::Const(_)
                | Type::Restrict(_)
                | Type::TypeTag(_) => {
                    t = self.btf.resolve_chained_type(t.as_btf_type()?).ok()?;
                }
                _ => return Some(t),
            }
        }
        None
    }

    fn member_type(&self, m: &btf_rs::Member) -> Option<Type> {
        self.resolve(self.btf.resolve_chained_type(m as &dyn BtfType).ok()?)
    }

    /// Finds `name` among the members of `s`, looking through anonymous
    /// structs and unions. Returns its byte offset and type.
    fn member(&self, s: &btf_rs::Struct, name: &str) -> Option<(u32, Type)> {
        for m in &s.members {
            let m_name = self.btf.resolve_name(m).unwrap_or_default();
            if m_name == name {
                return Some((m.bit_offset() / 8, self.member_type(m)?));
            }
            if m_name.is_empty()
                && let Some(Type::Struct(inner) | Type::Union(inner)) = self.member_type(m)
                && let Some((off, t)) = self.member(&inner, name)
            {
                return Some((m.bit_offset() / 8 + off, t));
            }
        }
        None
    }

    /// Byte offset of a dotted path inside `struct root`, and the type at
    /// its end. Arrays are stepped into at element 0.
    fn path(&self, root: &str, path: &[&str]) -> Result<(u32, Type), BtfError> {
        let missing = || BtfError::Missing(format!("{root}.{}", path.join(".")));
        let mut s = self.find_struct(root)?;
        let mut offset = 0;
        let mut last = None;
        for (i, name) in path.iter().enumerate() {
            let (off, t) = self.member(&s, name).ok_or_else(missing)?;
            offset += off;
            let t = match t {
                Type::Array(a) if i + 1 < path.len() => self
                    .resolve(self.btf.resolve_chained_type(&a).map_err(|_| missing())?)
                    .ok_or_else(missing)?,
                t => t,
            };
            if i + 1 < path.len() {
                s = match t {
                    Type::Struct(s) | Type::Union(s) => s,
                    _ => return Err(missing()),
                };
            } else {
                last = Some(t);
            }
        }
        Ok((offset, last.ok_or_else(missing)?))
    }

    fn offset(&self, root: &str, path: &[&str]) -> Result<u32, BtfError> {
        self.path(root, path).map(|(off, _)| off)
    }

    /// Like `offset`, but a missing field (compiled out) is `ABSENT`.
    fn optional(&self, root: &str, path: &[&str]) -> u32 {
        self.offset(root, path).unwrap_or(KernelOffsets::ABSENT)
    }

    /// A field of an extension struct or of `struct nf_ct_event`. Kernels
    /// whose nf_conntrack is a module without module BTF (Debian 5.10)
    /// describe `struct nf_ct_ext` and the extension ids in vmlinux BTF, but
    /// not these structs; all are unchanged since Linux 3.x, so their layout
    /// is taken from [`fallback_layout`] then. The host test checks that the
    /// fallback equals what BTF says wherever BTF has them.
    fn extension_field(&self, root: &str, path: &[&str]) -> u32 {
        match self.offset(root, path) {
            Ok(off) => off,
            Err(_) if self.find_struct(root).is_err() => {
                log::info!("BTF lacks struct {root}: using its Linux 3.x+ layout");
                fallback_layout(root, path[0])
            }
            Err(_) => KernelOffsets::ABSENT,
        }
    }

    fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        Ok(self.find_struct(name)?.size() as u32)
    }

    /// Size of the elements of the array at `root.path`.
    fn element_size(&self, root: &str, path: &[&str]) -> Result<u32, BtfError> {
        let missing = || BtfError::Missing(format!("{root}.{}[]", path.join(".")));
        match self.path(root, path)?.1 {
            Type::Array(a) => {
                let elem = self
                    .resolve(self.btf.resolve_chained_type(&a).map_err(|_| missing())?)
                    .ok_or_else(missing)?;
                match elem {
                    Type::Int(i) => Ok(i.size() as u32),
                    Type::Struct(s) => Ok(s.size() as u32),
                    _ => Err(missing()),
                }
            }
            _ => Err(missing()),
        }
    }

    /// Value of an enumerator, e.g. `NF_CT_EXT_ACCT`.
    pub fn enum_value(&self, name: &str) -> Option<u32> {
        let mut types = self.btf.type_iter();
        while let Ok(Some(t)) = types.next() {
            if let Type::Enum(e) = t {
                for m in &e.members {
                    if self.btf.resolve_name(m).ok().as_deref() == Some(name) {
                        return Some(m.val());
                    }
                }
            }
        }
        None
    }

    /// Every offset the eBPF programs need. Required fields missing is an
    /// error; optional ones (mark, zones, extensions) degrade that field.
    pub fn offsets(&self) -> Result<KernelOffsets, BtfError> {
        let tuple = self.offset("nf_conn", &["tuplehash"])?
            + self.offset("nf_conntrack_tuple_hash", &["tuple"])?;
        let ext_ids = [
            self.enum_value("NF_CT_EXT_ACCT"),
            self.enum_value("NF_CT_EXT_TSTAMP"),
        ];
        let mut o = KernelOffsets {
            conn_start: KernelOffsets::ABSENT,
            conn_len: KernelOffsets::ABSENT,
            skb_nfct: self.offset("sk_buff", &["_nfct"])?,
            ct_status: self.offset("nf_conn", &["status"])?,
            ct_timeout: self.offset("nf_conn", &["timeout"])?,
            ct_mark: self.optional("nf_conn", &["mark"]),
            ct_zone: self.optional("nf_conn", &["zone", "id"]),
            ct_zone_dir: self.optional("nf_conn", &["zone", "dir"]),
            ct_net: self.offset("nf_conn", &["ct_net", "net"])?,
            ct_ext: self.optional("nf_conn", &["ext"]),
            ct_tcp_state: self.optional("nf_conn", &["proto", "tcp", "state"]),
            ct_tuple: tuple,
            tuplehash_size: self.struct_size("nf_conntrack_tuple_hash")?,
            tuple_src_u3: self.offset("nf_conntrack_tuple", &["src", "u3"])?,
            tuple_src_u: self.offset("nf_conntrack_tuple", &["src", "u"])?,
            tuple_dst_u3: self.offset("nf_conntrack_tuple", &["dst", "u3"])?,
            tuple_dst_u: self.offset("nf_conntrack_tuple", &["dst", "u"])?,
            tuple_l3num: self.offset("nf_conntrack_tuple", &["src", "l3num"])?,
            tuple_protonum: self.offset("nf_conntrack_tuple", &["dst", "protonum"])?,
            net_ns_inum: self.offset("net", &["ns", "inum"])?,
            ext_offset: self.optional("nf_ct_ext", &["offset"]),
            ext_offset_size: self
                .element_size("nf_ct_ext", &["offset"])
                .unwrap_or(KernelOffsets::ABSENT),
            ext_id_acct: ext_ids[0].unwrap_or(KernelOffsets::ABSENT),
            ext_id_tstamp: ext_ids[1].unwrap_or(KernelOffsets::ABSENT),
            acct_counter: self.extension_field("nf_conn_acct", &["counter"]),
            counter_size: self
                .struct_size("nf_conn_counter")
                .unwrap_or(FALLBACK_COUNTER_SIZE),
            counter_packets: self.extension_field("nf_conn_counter", &["packets"]),
            counter_bytes: self.extension_field("nf_conn_counter", &["bytes"]),
            tstamp_start: self.extension_field("nf_conn_tstamp", &["start"]),
            tstamp_stop: self.extension_field("nf_conn_tstamp", &["stop"]),
            // uapi (nf_conntrack_common.h), fixed by ABI, where BTF lacks it
            // (Debian 5.10: no module BTF, and vmlinux never uses the enum).
            ipct_mark: self.enum_value("IPCT_MARK").unwrap_or(UAPI_IPCT_MARK),
            ct_event_ct: self.extension_field("nf_ct_event", &["ct"]),
            ct_event_portid: self.extension_field("nf_ct_event", &["portid"]),
            // Absent where the kernel has no tracker for the protocol (built
            // without its CONFIG_NF_CT_PROTO_*): its entries are then generic,
            // stateless.
            ct_sctp_state: self.optional("nf_conn", &["proto", "sctp", "state"]),
            ct_dccp_state: self.optional("nf_conn", &["proto", "dccp", "state"]),
        };
        let (start, len) = conn_span(&o)?;
        o.conn_start = start;
        o.conn_len = len;
        Ok(o)
    }
}

/// The span of `struct nf_conn` a record copies: from the first field the
/// programs or the decoder read (rounded down to 8, so copied fields keep
/// their alignment) to the end of the last one.
pub fn conn_span(o: &KernelOffsets) -> Result<(u32, u32), BtfError> {
    // (offset, size) of every field read out of the copy; both tuples are
    // 40 bytes (`struct nf_conntrack_tuple`), `status` an unsigned long.
    let fields = [
        (o.ct_timeout, 4),
        (o.ct_zone, 4),
        (o.ct_tuple, o.tuplehash_size.saturating_add(40)),
        (o.ct_status, 8),
        (o.ct_net, 8),
        (o.ct_mark, 4),
        (o.ct_ext, 8),
        (o.ct_tcp_state, 1),
        // An enum (4 bytes) for SCTP, a u8 for DCCP: the decoder reads the
        // low byte, which holds every state.
        (o.ct_sctp_state, 1),
        (o.ct_dccp_state, 1),
    ];
    let present = fields
        .iter()
        .filter(|(off, _)| *off != KernelOffsets::ABSENT);
    let start = present.clone().map(|(off, _)| *off).min().unwrap_or(0) & !7;
    let end = present
        .map(|(off, size)| off.saturating_add(*size))
        .max()
        .unwrap_or(0);
    let len = end - start;
    if len as usize > tracker_common::CONN_BYTES {
        return Err(BtfError::ConnTooLong(len));
    }
    Ok((start, len))
}

/// `IPCT_MARK` of the uapi `enum ip_conntrack_events`.
const UAPI_IPCT_MARK: u32 = 7;

/// `struct nf_conn_counter { atomic64_t packets, bytes; }` (16 bytes).
const FALLBACK_COUNTER_SIZE: u32 = 16;

/// Layout of the extension structs for kernels whose BTF lacks them:
/// `nf_conn_acct { nf_conn_counter counter[2]; }`,
/// `nf_conn_counter { atomic64_t packets; atomic64_t bytes; }`,
/// `nf_conn_tstamp { u64 start; u64 stop; }`.
fn fallback_layout(root: &str, field: &str) -> u32 {
    match (root, field) {
        ("nf_conn_acct", "counter") => 0,
        ("nf_conn_counter", "packets") => 0,
        ("nf_conn_counter", "bytes") => 8,
        ("nf_conn_tstamp", "start") => 0,
        ("nf_conn_tstamp", "stop") => 8,
        // { struct nf_conn *ct; u32 portid; int report; } since 3.7.
        ("nf_ct_event", "ct") => 0,
        ("nf_ct_event", "portid") => 8,
        _ => KernelOffsets::ABSENT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's BTF. Every kernel the tracker supports has it,
    /// and reading it needs no privilege: a host without it fails these
    /// tests rather than passing them unchecked.
    fn host() -> KernelBtf {
        KernelBtf::load().unwrap_or_else(|e| panic!("the running kernel's BTF: {e}"))
    }

    /// Checks the offsets against the host kernel's BTF: the values are not
    /// known in advance, but the layout invariants of these structs are.
    #[test]
    fn host_offsets_are_consistent() {
        let btf = host();
        let o = btf.offsets().expect("offsets from host BTF");
        // struct nf_conntrack_tuple: src {u3 (16), u (2), l3num (2)}, then dst.
        assert_eq!(o.tuple_src_u3, 0);
        assert_eq!(o.tuple_src_u, 16);
        assert_eq!(o.tuple_l3num, 18);
        assert_eq!(o.tuple_dst_u3, 20);
        assert_eq!(o.tuple_dst_u, 36);
        assert_eq!(o.tuple_protonum, 38);
        // The field order of struct nf_conn (include/net/netfilter/
        // nf_conntrack.h) has been the same since 5.4.
        assert!(o.ct_timeout < o.ct_tuple);
        // The reply tuple (40 bytes) ends before `status`.
        assert!(o.ct_tuple + o.tuplehash_size + 40 <= o.ct_status);
        assert!(o.ct_status < o.ct_net);
        assert!(o.ct_net < o.ct_mark || o.ct_mark == KernelOffsets::ABSENT);
        assert_eq!(o.tuplehash_size % 8, 0);
        // What BTF says must equal the fallback used where BTF lacks these.
        let btf_says = |root: &str, field: &str| btf.offset(root, &[field]).unwrap();
        for (root, field) in [
            ("nf_conn_acct", "counter"),
            ("nf_conn_counter", "packets"),
            ("nf_conn_counter", "bytes"),
            ("nf_conn_tstamp", "start"),
            ("nf_conn_tstamp", "stop"),
            ("nf_ct_event", "ct"),
            ("nf_ct_event", "portid"),
        ] {
            assert_eq!(
                btf_says(root, field),
                fallback_layout(root, field),
                "{root}.{field}"
            );
        }
        assert_eq!(
            btf.struct_size("nf_conn_counter").unwrap(),
            FALLBACK_COUNTER_SIZE
        );
        assert_eq!(o.ext_offset_size, 1);
        // Every field read out of a record's copy lies inside it.
        assert_eq!(o.conn_start % 8, 0);
        assert!(o.conn_len as usize <= tracker_common::CONN_BYTES);
        for (name, off) in [
            ("timeout", o.ct_timeout),
            ("zone", o.ct_zone),
            ("zone.dir", o.ct_zone_dir),
            ("tuple", o.ct_tuple),
            ("status", o.ct_status),
            ("net", o.ct_net),
            ("mark", o.ct_mark),
            ("ext", o.ct_ext),
            ("tcp state", o.ct_tcp_state),
        ] {
            assert!(
                off >= o.conn_start && off < o.conn_start + o.conn_len,
                "{name} at {off} outside {}+{}",
                o.conn_start,
                o.conn_len
            );
        }
        // SCTP and DCCP share the `proto` union with TCP, whose state ends
        // the span: their states lie inside it where the kernel has them.
        for (name, off) in [
            ("sctp state", o.ct_sctp_state),
            ("dccp state", o.ct_dccp_state),
        ] {
            assert!(
                off == KernelOffsets::ABSENT || (off >= o.conn_start && off < o.ct_tcp_state),
                "{name} at {off} outside {}..{}",
                o.conn_start,
                o.ct_tcp_state
            );
        }
        assert_ne!(o.ext_id_acct, o.ext_id_tstamp);
        assert!(o.skb_nfct > 0 && o.skb_nfct < 256);
    }

    /// A kernel whose fields of interest lie further apart than a record
    /// carries (a debug layout, say) is refused with a sentence, not copied
    /// short.
    #[test]
    fn conn_span_covers_the_fields_or_refuses() {
        let mut o = KernelOffsets {
            ct_timeout: 12,
            ct_zone: 16,
            ct_tuple: 24,
            tuplehash_size: 56,
            ct_status: 136,
            ct_net: 144,
            ct_mark: 176,
            ct_ext: 184,
            ct_tcp_state: 232,
            ..KernelOffsets::absent()
        };
        assert_eq!(conn_span(&o).unwrap(), (8, 225));
        o.ct_mark = KernelOffsets::ABSENT;
        assert_eq!(conn_span(&o).unwrap(), (8, 225));
        o.ct_tcp_state = 8 + tracker_common::CONN_BYTES as u32;
        let err = conn_span(&o).unwrap_err().to_string();
        assert!(err.contains("--source netlink"), "{err}");
    }

    #[test]
    fn missing_struct_is_a_clear_error() {
        let btf = host();
        let err = btf.offset("no_such_struct_here", &["x"]).unwrap_err();
        assert!(err.to_string().contains("no_such_struct_here"), "{err}");
    }

    #[test]
    fn enum_values_come_from_btf() {
        let btf = host();
        // uapi enum ip_conntrack_events: IPCT_NEW is 0, IPCT_MARK 7 since 2.6.
        assert_eq!(btf.enum_value("IPCT_NEW"), Some(0));
        assert_eq!(btf.enum_value("IPCT_MARK"), Some(UAPI_IPCT_MARK));
    }

    /// The UPDATE records carry raw event bits; their names in
    /// `tracker_common::ipct` must be the kernel's.
    #[test]
    fn ipct_bits_match_the_kernel() {
        use tracker_common::ipct;
        let btf = host();
        for (name, bit) in [
            ("IPCT_NEW", ipct::NEW),
            ("IPCT_RELATED", ipct::RELATED),
            ("IPCT_DESTROY", ipct::DESTROY),
            ("IPCT_REPLY", ipct::REPLY),
            ("IPCT_ASSURED", ipct::ASSURED),
            ("IPCT_PROTOINFO", ipct::PROTOINFO),
            ("IPCT_HELPER", ipct::HELPER),
            ("IPCT_MARK", ipct::MARK),
            ("IPCT_SEQADJ", ipct::SEQADJ),
            ("IPCT_SECMARK", ipct::SECMARK),
            ("IPCT_LABEL", ipct::LABEL),
            ("IPCT_SYNPROXY", ipct::SYNPROXY),
        ] {
            assert_eq!(btf.enum_value(name).map(|v| 1u16 << v), Some(bit), "{name}");
        }
    }
}
