//! Names for the numbers the kernel hands over: ptrace requests, errno
//! values, perf event types, bpf program types. Unknown values keep their
//! number, so nothing is hidden behind a generic label.

use std::borrow::Cow;

pub fn ptrace_request(req: u64) -> Cow<'static, str> {
    let name = match req {
        0 => "PTRACE_TRACEME",
        1 => "PTRACE_PEEKTEXT",
        2 => "PTRACE_PEEKDATA",
        3 => "PTRACE_PEEKUSER",
        4 => "PTRACE_POKETEXT",
        5 => "PTRACE_POKEDATA",
        6 => "PTRACE_POKEUSER",
        7 => "PTRACE_CONT",
        8 => "PTRACE_KILL",
        9 => "PTRACE_SINGLESTEP",
        12 => "PTRACE_GETREGS",
        13 => "PTRACE_SETREGS",
        14 => "PTRACE_GETFPREGS",
        15 => "PTRACE_SETFPREGS",
        16 => "PTRACE_ATTACH",
        17 => "PTRACE_DETACH",
        18 => "PTRACE_GETFPXREGS",
        19 => "PTRACE_SETFPXREGS",
        24 => "PTRACE_SYSCALL",
        25 => "PTRACE_GET_THREAD_AREA",
        26 => "PTRACE_SET_THREAD_AREA",
        30 => "PTRACE_ARCH_PRCTL",
        31 => "PTRACE_SYSEMU",
        32 => "PTRACE_SYSEMU_SINGLESTEP",
        33 => "PTRACE_SINGLEBLOCK",
        0x4200 => "PTRACE_SETOPTIONS",
        0x4201 => "PTRACE_GETEVENTMSG",
        0x4202 => "PTRACE_GETSIGINFO",
        0x4203 => "PTRACE_SETSIGINFO",
        0x4204 => "PTRACE_GETREGSET",
        0x4205 => "PTRACE_SETREGSET",
        0x4206 => "PTRACE_SEIZE",
        0x4207 => "PTRACE_INTERRUPT",
        0x4208 => "PTRACE_LISTEN",
        0x4209 => "PTRACE_PEEKSIGINFO",
        0x420a => "PTRACE_GETSIGMASK",
        0x420b => "PTRACE_SETSIGMASK",
        0x420c => "PTRACE_SECCOMP_GET_FILTER",
        0x420d => "PTRACE_SECCOMP_GET_METADATA",
        0x420e => "PTRACE_GET_SYSCALL_INFO",
        0x420f => "PTRACE_GET_RSEQ_CONFIGURATION",
        0x4210 => "PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG",
        0x4211 => "PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG",
        _ => return Cow::Owned(format!("PTRACE_{req:#x}")),
    };
    Cow::Borrowed(name)
}

pub fn errno(e: i64) -> Cow<'static, str> {
    let name = match e {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        22 => "EINVAL",
        38 => "ENOSYS",
        95 => "EOPNOTSUPP",
        _ => return Cow::Owned(format!("E{e}")),
    };
    Cow::Borrowed(name)
}

pub fn perf_type(t: u64) -> Cow<'static, str> {
    let name = match t {
        0 => "hardware",
        1 => "software",
        2 => "tracepoint",
        3 => "hw_cache",
        4 => "raw",
        5 => "breakpoint",
        _ => return Cow::Owned(format!("pmu_{t}")),
    };
    Cow::Borrowed(name)
}

pub fn bpf_prog_type(t: u64) -> Cow<'static, str> {
    let name = match t {
        0 => "unspec",
        1 => "socket_filter",
        2 => "kprobe",
        3 => "sched_cls",
        4 => "sched_act",
        5 => "tracepoint",
        6 => "xdp",
        7 => "perf_event",
        8 => "cgroup_skb",
        9 => "cgroup_sock",
        10 => "lwt_in",
        11 => "lwt_out",
        12 => "lwt_xmit",
        13 => "sock_ops",
        14 => "sk_skb",
        15 => "cgroup_device",
        16 => "sk_msg",
        17 => "raw_tracepoint",
        18 => "cgroup_sock_addr",
        19 => "lwt_seg6local",
        20 => "lirc_mode2",
        21 => "sk_reuseport",
        22 => "flow_dissector",
        23 => "cgroup_sysctl",
        24 => "raw_tracepoint_writable",
        25 => "cgroup_sockopt",
        26 => "tracing",
        27 => "struct_ops",
        28 => "ext",
        29 => "lsm",
        30 => "sk_lookup",
        31 => "syscall",
        32 => "netfilter",
        _ => return Cow::Owned(format!("type_{t}")),
    };
    Cow::Borrowed(name)
}

/// `bpf(2)` commands by name (`BPF_MAP_GET_FD_BY_ID`).
pub fn bpf_cmd(c: u64) -> Cow<'static, str> {
    let name = match c {
        0 => "BPF_MAP_CREATE",
        1 => "BPF_MAP_LOOKUP_ELEM",
        2 => "BPF_MAP_UPDATE_ELEM",
        3 => "BPF_MAP_DELETE_ELEM",
        5 => "BPF_PROG_LOAD",
        7 => "BPF_OBJ_GET",
        8 => "BPF_PROG_ATTACH",
        9 => "BPF_PROG_DETACH",
        13 => "BPF_PROG_GET_FD_BY_ID",
        14 => "BPF_MAP_GET_FD_BY_ID",
        28 => "BPF_LINK_CREATE",
        30 => "BPF_LINK_GET_FD_BY_ID",
        34 => "BPF_LINK_DETACH",
        _ => return Cow::Owned(format!("BPF_CMD_{c}")),
    };
    Cow::Borrowed(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_values() {
        assert_eq!(ptrace_request(16), "PTRACE_ATTACH");
        assert_eq!(ptrace_request(0x4206), "PTRACE_SEIZE");
        assert_eq!(ptrace_request(0x9999), "PTRACE_0x9999");
        assert_eq!(errno(1), "EPERM");
        assert_eq!(errno(1234), "E1234");
        assert_eq!(perf_type(1), "software");
        assert_eq!(perf_type(9), "pmu_9");
        assert_eq!(bpf_prog_type(29), "lsm");
        assert_eq!(bpf_prog_type(99), "type_99");
    }
}
