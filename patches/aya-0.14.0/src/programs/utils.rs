//! Common functions shared between multiple eBPF program types.
use std::{
    ffi::CStr,
    fs::File,
    io::{self, BufRead as _, BufReader},
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
    path::Path,
    sync::LazyLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{
    programs::{FdLink, Link, ProgramData, ProgramError},
    sys::{SyscallError, bpf_btf_get_fd_by_module_name, bpf_raw_tracepoint_open},
};

/// Returns the kernel BTF object of the loaded module `module`, which
/// fentry/fexit programs targeting the module's functions pass as
/// `attach_btf_obj_fd`.
pub(crate) fn module_btf_fd(module: &str) -> Result<crate::MockableFd, ProgramError> {
    bpf_btf_get_fd_by_module_name(module)?.ok_or_else(|| {
        ProgramError::IOError(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no kernel BTF object for module `{module}`: not loaded, or built without BTF"),
        ))
    })
}

/// Attaches the program to a raw tracepoint.
pub(crate) fn attach_raw_tracepoint<T: Link + From<FdLink>>(
    program_data: &mut ProgramData<T>,
    tp_name: Option<&CStr>,
) -> Result<T::Id, ProgramError> {
    let prog_fd = program_data.fd()?;
    let prog_fd = prog_fd.as_fd();
    let pfd = bpf_raw_tracepoint_open(tp_name, prog_fd).map_err(|io_error| SyscallError {
        call: "bpf_raw_tracepoint_open",
        io_error,
    })?;

    program_data.links.insert(FdLink::new(pfd).into())
}

/// Find tracefs filesystem path.
pub(crate) fn find_tracefs_path() -> Result<&'static Path, ProgramError> {
    static TRACE_FS: LazyLock<Option<&'static Path>> = LazyLock::new(|| {
        [
            Path::new("/sys/kernel/tracing"),
            Path::new("/sys/kernel/debug/tracing"),
        ]
        .into_iter()
        .find(|&mount| {
            // Check that the mount point exists and is not empty
            // Documented here: (https://www.kernel.org/doc/Documentation/trace/ftrace.txt)
            // In some cases, tracefs will only mount at /sys/kernel/debug/tracing
            // but, the kernel will still create the directory /sys/kernel/tracing.
            // The user may be expected to manually mount the directory in order for it to
            // exist in /sys/kernel/tracing according to the documentation.
            mount.exists()
                && match mount.read_dir() {
                    Ok(mut entries) => entries.next().is_some(),
                    Err(io::Error { .. }) => false,
                }
        })
    });

    TRACE_FS
        .as_deref()
        .ok_or_else(|| io::Error::other("tracefs not found"))
        .map_err(Into::into)
}

/// The time at which the system is booted.
pub(crate) fn boot_time() -> SystemTime {
    let get_time = |clock_id| {
        let mut time = unsafe { std::mem::zeroed::<libc::timespec>() };
        assert_eq!(
            unsafe { libc::clock_gettime(clock_id, &raw mut time) },
            0,
            "clock_gettime({clock_id}, _)"
        );
        let libc::timespec { tv_sec, tv_nsec } = time;

        Duration::new(tv_sec as u64, tv_nsec as u32)
    };
    let since_boot = get_time(libc::CLOCK_BOOTTIME);
    let since_epoch = get_time(libc::CLOCK_REALTIME);
    UNIX_EPOCH + since_epoch - since_boot
}

/// Get the specified information from a file descriptor's fdinfo.
pub(crate) fn get_fdinfo(fd: BorrowedFd<'_>, key: &str) -> Result<u32, ProgramError> {
    let info = File::open(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    let reader = BufReader::new(info);
    for line in reader.lines() {
        let line = line?;
        if !line.contains(key) {
            continue;
        }

        let (_key, val) = line.rsplit_once('\t').unwrap();

        return Ok(val.parse().unwrap());
    }

    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, io};

    use assert_matches::assert_matches;
    use aya_obj::{
        ProgramSection,
        btf::{FuncSecInfo, LineSecInfo},
        generated::{
            bpf_attach_type::{BPF_TRACE_FENTRY, BPF_TRACE_FEXIT, BPF_TRACE_ITER},
            bpf_btf_info, bpf_cmd,
            bpf_prog_type::BPF_PROG_TYPE_TRACING,
        },
    };
    use libc::{EBADF, EINVAL, ENOENT};

    use crate::{
        MockableFd, VerifierLogLevel,
        programs::{FEntry, FExit, Iter, ProgramData, ProgramError, load_program_with_attach_type},
        sys::{SysResult, Syscall, override_syscall},
    };

    // Id of the target function in the module's split BTF.
    const FUNC_BTF_ID: u32 = 123_456;
    // The kernel's BTF objects: (id, name, kernel_btf). Object 7 is a
    // program's BTF that happens to have the module's name.
    const BTF_OBJECTS: [(u32, &[u8], u32); 3] = [
        (1, b"vmlinux", 1),
        (7, b"nf_conntrack", 0),
        (42, b"nf_conntrack", 1),
    ];
    const MODULE_OBJ_ID: u32 = 42;

    // (prog_fd, target_fd, attach_type, iter_info_len, map_fd read through
    // iter_info) of a BPF_LINK_CREATE.
    type LinkCreate = (u32, u32, u32, u32, u32);

    thread_local! {
        // (prog_type, expected_attach_type, attach_btf_id, attach_btf_obj_fd)
        // of the last BPF_PROG_LOAD.
        static PROG_LOAD: Cell<Option<(u32, u32, u32, u32)>> = const { Cell::new(None) };
        // The last BPF_LINK_CREATE.
        static LINK_CREATE: Cell<Option<LinkCreate>> = const { Cell::new(None) };
    }

    // The fd of BTF object N is the mock fd + N (mock fds are never closed).
    fn sys_bpf(call: Syscall<'_>) -> SysResult {
        let Syscall::Ebpf { cmd, attr } = call else {
            return Err((-1, io::Error::from_raw_os_error(EINVAL)));
        };
        match cmd {
            bpf_cmd::BPF_BTF_GET_NEXT_ID => {
                let u = unsafe { &mut attr.__bindgen_anon_6 };
                let start = unsafe { u.__bindgen_anon_1.start_id };
                match BTF_OBJECTS.iter().find(|(id, _, _)| *id > start) {
                    Some((id, _, _)) => {
                        u.next_id = *id;
                        Ok(0)
                    }
                    None => Err((-1, io::Error::from_raw_os_error(ENOENT))),
                }
            }
            bpf_cmd::BPF_BTF_GET_FD_BY_ID => Ok(i64::from(MockableFd::mock_signed_fd())
                + i64::from(unsafe { attr.__bindgen_anon_6.__bindgen_anon_1.btf_id })),
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD => {
                let id = unsafe { attr.info.bpf_fd } - MockableFd::mock_unsigned_fd();
                let Some((_, name, kernel_btf)) = BTF_OBJECTS.iter().find(|(i, _, _)| *i == id)
                else {
                    return Err((-1, io::Error::from_raw_os_error(EBADF)));
                };
                let info = unsafe { &mut *(attr.info.info as *mut bpf_btf_info) };
                let buf = unsafe {
                    std::slice::from_raw_parts_mut(info.name as *mut u8, info.name_len as usize)
                };
                buf[..name.len()].copy_from_slice(name);
                info.id = id;
                info.kernel_btf = *kernel_btf;
                Ok(0)
            }
            bpf_cmd::BPF_PROG_LOAD => {
                let u = unsafe { &attr.__bindgen_anon_3 };
                PROG_LOAD.set(Some((
                    u.prog_type,
                    u.expected_attach_type,
                    u.attach_btf_id,
                    unsafe { u.__bindgen_anon_1.attach_btf_obj_fd },
                )));
                Ok(i64::from(MockableFd::mock_signed_fd()))
            }
            bpf_cmd::BPF_LINK_CREATE => {
                let l = unsafe { &attr.link_create };
                let iter = unsafe { l.__bindgen_anon_3.__bindgen_anon_1 };
                let map_fd = match iter.iter_info {
                    0 => u32::MAX,
                    p => unsafe { *(p as *const u32) },
                };
                LINK_CREATE.set(Some((
                    unsafe { l.__bindgen_anon_1.prog_fd },
                    unsafe { l.__bindgen_anon_2.target_fd },
                    l.attach_type,
                    iter.iter_info_len,
                    map_fd,
                )));
                Ok(i64::from(MockableFd::mock_signed_fd()))
            }
            _ => Err((-1, io::Error::from_raw_os_error(EINVAL))),
        }
    }

    fn program_data<T: crate::programs::Link>(section: ProgramSection) -> ProgramData<T> {
        let program = aya_obj::Program {
            license: c"GPL".into(),
            kernel_version: Some(0),
            section,
            section_index: 0,
            address: 0,
        };
        let function = aya_obj::Function {
            address: 0,
            name: "prog".into(),
            section_index: object::SectionIndex(0),
            section_offset: 0,
            instructions: Vec::new(),
            func_info: FuncSecInfo::default(),
            line_info: LineSecInfo::default(),
            func_info_rec_size: 0,
            line_info_rec_size: 0,
        };
        ProgramData::new(None, (program, function), None, VerifierLogLevel::default())
    }

    #[test]
    fn test_load_from_module() {
        override_syscall(sys_bpf);
        let expected = |attach_type| {
            Some((
                BPF_PROG_TYPE_TRACING as u32,
                attach_type as u32,
                FUNC_BTF_ID,
                MockableFd::mock_unsigned_fd() + MODULE_OBJ_ID,
            ))
        };

        let mut fentry = FEntry {
            data: program_data(ProgramSection::FEntry { sleepable: false }),
        };
        fentry
            .load_from_module("nf_conntrack", FUNC_BTF_ID)
            .unwrap();
        assert_eq!(PROG_LOAD.take(), expected(BPF_TRACE_FENTRY));

        let mut fexit = FExit {
            data: program_data(ProgramSection::FExit { sleepable: false }),
        };
        fexit.load_from_module("nf_conntrack", FUNC_BTF_ID).unwrap();
        assert_eq!(PROG_LOAD.take(), expected(BPF_TRACE_FEXIT));

        // No kernel BTF object of that name (a prefix of a name is not the
        // name): nothing is loaded.
        for module in ["xt_connmark", "nf_conn"] {
            let mut fexit = FExit {
                data: program_data(ProgramSection::FExit { sleepable: false }),
            };
            assert_matches!(
                fexit.load_from_module(module, FUNC_BTF_ID),
                Err(ProgramError::IOError(e)) if e.kind() == io::ErrorKind::NotFound
            );
            assert_eq!(PROG_LOAD.take(), None);
        }
    }

    #[test]
    fn test_iter_attach_to_map() {
        use std::os::fd::{AsFd as _, BorrowedFd};

        override_syscall(sys_bpf);
        let mut iter = Iter {
            data: program_data(ProgramSection::Iter { sleepable: false }),
        };
        load_program_with_attach_type(BPF_PROG_TYPE_TRACING, BPF_TRACE_ITER, &mut iter.data)
            .unwrap();
        let prog_fd = MockableFd::mock_unsigned_fd();
        // Any fd number stands for the map: the mock never opens it.
        let map = unsafe { BorrowedFd::borrow_raw(1234) };

        let link = iter.attach_to_map(map.as_fd()).unwrap();
        // The mock hands out one link fd: free it for the next attach.
        let _link = iter.take_link(link).unwrap();
        // No target fd (the kernel refuses one for iterators); the map goes
        // in `bpf_iter_link_info.map.map_fd`, 4 bytes of it.
        assert_eq!(
            LINK_CREATE.take(),
            Some((prog_fd, 0, BPF_TRACE_ITER as u32, 4, 1234))
        );

        // A plain `attach` still passes no iterator info.
        iter.attach().unwrap();
        assert_eq!(
            LINK_CREATE.take(),
            Some((prog_fd, 0, BPF_TRACE_ITER as u32, 0, u32::MAX))
        );
    }
}
