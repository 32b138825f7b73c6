//! Resolves the kernel struct field offsets the programs read, from the
//! running kernel's BTF (/sys/kernel/btf/vmlinux). Nothing is hard-wired for
//! one kernel build: a field that moved is found where it is, a field the
//! kernel lacks (e.g. `loginuid` without CONFIG_AUDIT) becomes
//! `OFFSET_ABSENT` and the programs flag the events instead of reading junk.

use std::path::Path;

use agent_common::{KernelOffsets, OFFSET_ABSENT};
use btf_rs::{Btf, Type};
use thiserror::Error;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, Error)]
pub enum BtfError {
    #[error("reading kernel BTF from {path}")]
    Open {
        path: String,
        #[source]
        source: btf_rs::Error,
    },
    #[error("kernel BTF has no struct `{0}`")]
    NoStruct(String),
    #[error("kernel BTF: struct `{strukt}` has no member `{member}`, which debugmon requires")]
    NoMember { strukt: String, member: String },
    #[error("kernel BTF: `{strukt}.{member}` is a bitfield; debugmon cannot read it")]
    Bitfield { strukt: String, member: String },
    #[error("kernel BTF lookup of `{what}`")]
    Lookup {
        what: String,
        #[source]
        source: btf_rs::Error,
    },
}

/// Kernel type information, read once at load.
pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    pub fn open(path: &Path) -> Result<Self, BtfError> {
        let btf = Btf::from_file(path).map_err(|source| BtfError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self { btf })
    }

    fn find_struct(&self, name: &str) -> Result<btf_rs::Struct, BtfError> {
        let types = self
            .btf
            .resolve_types_by_name(name)
            .map_err(|source| BtfError::Lookup {
                what: name.to_owned(),
                source,
            })?;
        types
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) => Some(s),
                _ => None,
            })
            .ok_or_else(|| BtfError::NoStruct(name.to_owned()))
    }

    /// Byte offset of `member` in struct `strukt`, looking through anonymous
    /// structs and unions (mm_struct keeps its fields in one). `None` when
    /// the kernel does not have the member.
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<Option<u32>, BtfError> {
        let s = self.find_struct(strukt)?;
        self.search(&s, member, 0).map_err(|e| match e {
            SearchError::Bitfield => BtfError::Bitfield {
                strukt: strukt.to_owned(),
                member: member.to_owned(),
            },
            SearchError::Btf(source) => BtfError::Lookup {
                what: format!("{strukt}.{member}"),
                source,
            },
        })
    }

    /// Like [`Self::member_offset`], but the member must exist.
    pub fn required(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        self.member_offset(strukt, member)?
            .ok_or_else(|| BtfError::NoMember {
                strukt: strukt.to_owned(),
                member: member.to_owned(),
            })
    }

    fn search(
        &self,
        s: &btf_rs::Struct,
        member: &str,
        base_bits: u32,
    ) -> Result<Option<u32>, SearchError> {
        for m in &s.members {
            let bits = base_bits + m.bit_offset();
            let name = self.btf.resolve_name(m).map_err(SearchError::Btf)?;
            if name == member {
                if m.bitfield_size().is_some_and(|n| n != 0) || !bits.is_multiple_of(8) {
                    return Err(SearchError::Bitfield);
                }
                return Ok(Some(bits / 8));
            }
            if name.is_empty() {
                let inner = match self.btf.resolve_chained_type(m).map_err(SearchError::Btf)? {
                    Type::Struct(inner) | Type::Union(inner) => inner,
                    _ => continue,
                };
                if let Some(off) = self.search(&inner, member, bits)? {
                    return Ok(Some(off));
                }
            }
        }
        Ok(None)
    }

    /// The offset of the first of `members` the struct has (a member the
    /// kernel renamed); one must exist.
    pub fn first_of(&self, strukt: &str, members: &[&str]) -> Result<u32, BtfError> {
        for m in members {
            if let Some(off) = self.member_offset(strukt, m)? {
                return Ok(off);
            }
        }
        Err(BtfError::NoMember {
            strukt: strukt.to_owned(),
            member: members.join(" or "),
        })
    }

    /// Size in bytes of struct `name`.
    pub fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        let s = self.find_struct(name)?;
        u32::try_from(s.size()).map_err(|_| BtfError::NoStruct(name.to_owned()))
    }

    /// True when the kernel has a BTF type called `name` (e.g. a tracepoint's
    /// `btf_trace_<name>` typedef, which tp_btf programs need).
    pub fn has_type(&self, name: &str) -> bool {
        self.btf
            .resolve_ids_by_name(name)
            .is_ok_and(|ids| !ids.is_empty())
    }

    /// Where `struct pt_regs` keeps the six syscall arguments.
    #[cfg(target_arch = "x86_64")]
    fn syscall_args(&self) -> Result<[u32; 6], BtfError> {
        let mut out = [0; 6];
        for (o, reg) in out.iter_mut().zip(["di", "si", "dx", "r10", "r8", "r9"]) {
            *o = self.required("pt_regs", reg)?;
        }
        Ok(out)
    }

    /// Where `struct pt_regs` keeps the six syscall arguments (`regs[0..6]`).
    #[cfg(target_arch = "aarch64")]
    fn syscall_args(&self) -> Result<[u32; 6], BtfError> {
        let base = self.required("pt_regs", "regs")?;
        Ok([0, 1, 2, 3, 4, 5].map(|i| base + 8 * i))
    }

    /// Where `struct pt_regs` keeps the number of the syscall in progress.
    #[cfg(target_arch = "x86_64")]
    fn syscall_nr(&self) -> Result<u32, BtfError> {
        self.required("pt_regs", "orig_ax")
    }

    #[cfg(target_arch = "aarch64")]
    fn syscall_nr(&self) -> Result<u32, BtfError> {
        self.required("pt_regs", "syscallno")
    }

    /// All struct offsets the programs need. Tracepoint offsets are filled
    /// in separately from tracefs.
    pub fn kernel_offsets(&self) -> Result<KernelOffsets, BtfError> {
        // An optional member: absent with its struct, too.
        let maybe = |s: &str, m: &str| -> Result<Option<u32>, BtfError> {
            match self.member_offset(s, m) {
                Err(BtfError::NoStruct(_)) => Ok(None),
                other => other,
            }
        };
        let opt = |s: &str, m: &str| -> Result<u32, BtfError> {
            Ok(maybe(s, m)?.unwrap_or(OFFSET_ABSENT))
        };
        // A member of a member; absent when either is.
        let nested = |s: &str, m: &str, inner: &str, im: &str| -> Result<u32, BtfError> {
            Ok(match (maybe(s, m)?, maybe(inner, im)?) {
                (Some(a), Some(b)) => a + b,
                _ => OFFSET_ABSENT,
            })
        };
        Ok(KernelOffsets {
            task_pid: self.required("task_struct", "pid")?,
            task_tgid: self.required("task_struct", "tgid")?,
            task_real_parent: self.required("task_struct", "real_parent")?,
            task_cred: self.required("task_struct", "cred")?,
            // Present only with CONFIG_AUDIT (audit login uid and session).
            task_loginuid: opt("task_struct", "loginuid")?,
            task_sessionid: opt("task_struct", "sessionid")?,
            // Named `real_start_time` before 5.5; we target 5.15+.
            task_start_boottime: self.required("task_struct", "start_boottime")?,
            task_mm: self.required("task_struct", "mm")?,
            task_signal: self.required("task_struct", "signal")?,
            task_exit_code: self.required("task_struct", "exit_code")?,
            task_comm: self.required("task_struct", "comm")?,
            cred_uid: self.required("cred", "uid")?,
            cred_gid: self.required("cred", "gid")?,
            cred_euid: self.required("cred", "euid")?,
            cred_egid: self.required("cred", "egid")?,
            mm_arg_start: self.required("mm_struct", "arg_start")?,
            mm_arg_end: self.required("mm_struct", "arg_end")?,
            signal_live: self.required("signal_struct", "live")?,
            task_thread_pid: self.required("task_struct", "thread_pid")?,
            pid_level: self.required("pid", "level")?,
            pid_numbers: self.required("pid", "numbers")?,
            upid_size: self.struct_size("upid")?,
            upid_nr: self.required("upid", "nr")?,
            upid_ns: self.required("upid", "ns")?,
            pidns_inum: self.required("pid_namespace", "ns")?
                + self.required("ns_common", "inum")?,
            cred_user_ns: self.required("cred", "user_ns")?,
            userns_inum: self.required("user_namespace", "ns")?
                + self.required("ns_common", "inum")?,
            task_nsproxy: self.required("task_struct", "nsproxy")?,
            nsproxy_mnt_ns: self.required("nsproxy", "mnt_ns")?,
            mntns_inum: self.required("mnt_namespace", "ns")?
                + self.required("ns_common", "inum")?,
            signal_tty: opt("signal_struct", "tty")?,
            tty_name: opt("tty_struct", "name")?,
            task_files: self.required("task_struct", "files")?,
            files_fdt: self.required("files_struct", "fdt")?,
            fdt_max_fds: self.required("fdtable", "max_fds")?,
            fdt_fd: self.required("fdtable", "fd")?,
            file_private_data: self.required("file", "private_data")?,
            // pidfs (6.9+) is recognisable by its allocator function.
            pidfd_in_inode: u32::from(self.has_type("pidfs_alloc_file")),
            file_f_inode: self.required("file", "f_inode")?,
            inode_i_private: self.required("inode", "i_private")?,
            task_cgroups: self.required("task_struct", "cgroups")?,
            css_set_dfl_cgrp: self.required("css_set", "dfl_cgrp")?,
            cgroup_kn: self.required("cgroup", "kn")?,
            kernfs_node_id: self.required("kernfs_node", "id")?,
            bprm_file: self.required("linux_binprm", "file")?,
            inode_i_ino: self.required("inode", "i_ino")?,
            inode_i_sb: self.required("inode", "i_sb")?,
            sb_s_dev: self.required("super_block", "s_dev")?,
            tp_sys_enter_args: OFFSET_ABSENT,
            tp_sys_exit_ret: OFFSET_ABSENT,
            sys_args: self.syscall_args()?,
            tp_exec_filename: OFFSET_ABSENT,
            tp_exec_old_pid: OFFSET_ABSENT,
            // The cwd walk is optional: without one of these the agent
            // reads the cwd from /proc, as it does for a walk that fails.
            task_fs: opt("task_struct", "fs")?,
            fs_pwd: opt("fs_struct", "pwd")?,
            path_mnt: opt("path", "mnt")?,
            path_dentry: opt("path", "dentry")?,
            dentry_d_parent: opt("dentry", "d_parent")?,
            dentry_name: nested("dentry", "d_name", "qstr", "name")?,
            dentry_hash_pprev: nested("dentry", "d_hash", "hlist_bl_node", "pprev")?,
            vfsmount_mnt_root: opt("vfsmount", "mnt_root")?,
            mount_mnt: opt("mount", "mnt")?,
            mount_mnt_parent: opt("mount", "mnt_parent")?,
            mount_mnt_mountpoint: opt("mount", "mnt_mountpoint")?,
            // Without these, opens of /proc/PID/mem are seen by path only.
            file_f_path_dentry: nested("file", "f_path", "path", "dentry")?,
            file_f_flags: opt("file", "f_flags")?,
            dentry_name_len: nested("dentry", "d_name", "qstr", "len")?,
            dentry_d_sb: opt("dentry", "d_sb")?,
            sb_s_magic: opt("super_block", "s_magic")?,
            proc_inode_vfs_inode: opt("proc_inode", "vfs_inode")?,
            proc_inode_pid: opt("proc_inode", "pid")?,
            pid_tasks: opt("pid", "tasks")?,
            task_pid_links: opt("task_struct", "pid_links")?,
            // Without these, opens through io_uring are not seen.
            io_kiocb_opcode: opt("io_kiocb", "opcode")?,
            io_kiocb_res: nested("io_kiocb", "cqe", "io_cqe", "res")?,
            io_kiocb_cmd: opt("io_kiocb", "cmd")?,
            io_open_file_slot: opt("io_open", "file_slot")?,
            // Protection decided in the kernel at fork, exec and exit.
            mm_exe_file: self.required("mm_struct", "exe_file")?,
            // Renamed `__name` and `__parent` in 6.15 (read under RCU since).
            kernfs_node_name: self.first_of("kernfs_node", &["name", "__name"])?,
            kernfs_node_parent: self.first_of("kernfs_node", &["parent", "__parent"])?,
            task_ptrace: self.required("task_struct", "ptrace")?,
            task_parent: self.required("task_struct", "parent")?,
            inode_i_uid: self.required("inode", "i_uid")?,
            inode_i_mode: self.required("inode", "i_mode")?,
            // Set by the loader from the running system (sysconf).
            tick_ns: 0,
            task_flags: self.required("task_struct", "flags")?,
            // CONFIG_MEMCG: without it, accesses are judged at the open only.
            mm_owner: opt("mm_struct", "owner")?,
            task_worker_private: opt("task_struct", "worker_private")?,
            io_worker_cur_work: opt("io_worker", "cur_work")?,
            io_kiocb_work: opt("io_kiocb", "work")?,
            io_kiocb_file: opt("io_kiocb", "file")?,
            pt_regs_syscall_nr: self.syscall_nr()?,
            sys_file_rw: [
                libc::SYS_read,
                libc::SYS_write,
                libc::SYS_readv,
                libc::SYS_writev,
                libc::SYS_pread64,
                libc::SYS_pwrite64,
                libc::SYS_preadv,
                libc::SYS_pwritev,
                libc::SYS_preadv2,
                libc::SYS_pwritev2,
            ]
            .map(|n| n as u32),
            sys_own_hook: [
                libc::SYS_ptrace,
                libc::SYS_process_vm_readv,
                libc::SYS_process_vm_writev,
            ]
            .map(|n| n as u32),
            task_ptraced: self.required("task_struct", "ptraced")?,
            task_ptrace_entry: self.required("task_struct", "ptrace_entry")?,
            mm_env_start: self.required("mm_struct", "env_start")?,
            mm_env_end: self.required("mm_struct", "env_end")?,
            // struct sock starts with its sock_common.
            sk_family: opt("sock_common", "skc_family")?,
            sk_num: opt("sock_common", "skc_num")?,
            sk_rcv_saddr: opt("sock_common", "skc_rcv_saddr")?,
            sk_v6_rcv_saddr: opt("sock_common", "skc_v6_rcv_saddr")?,
            inode_i_rdev: self.required("inode", "i_rdev")?,
            sys_pidfd_getfd: libc::SYS_pidfd_getfd as u32,
            mmap_lock_write_arg: self.bool_arg("btf_trace_mmap_lock_start_locking"),
        })
    }

    /// Whether `t` is `_Bool`, through typedefs (the kernel's `bool`) and
    /// qualifiers.
    fn is_bool(&self, mut t: btf_rs::Result<Type>) -> bool {
        for _ in 0..8 {
            t = match t {
                Ok(Type::Int(i)) => return i.is_bool(),
                Ok(Type::Typedef(d)) => self.btf.resolve_chained_type(&d),
                Ok(Type::Const(c)) => self.btf.resolve_chained_type(&c),
                Ok(Type::Volatile(v)) => self.btf.resolve_chained_type(&v),
                _ => return false,
            };
        }
        false
    }

    /// The index of the one `bool` argument of BTF tracepoint `typedef`
    /// (`btf_trace_<name>`, whose first parameter is the tracepoint's own
    /// data, not an argument a program sees), or `OFFSET_ABSENT`.
    fn bool_arg(&self, typedef: &str) -> u32 {
        let Ok(types) = self.btf.resolve_types_by_name(typedef) else {
            return OFFSET_ABSENT;
        };
        for t in types {
            let Type::Typedef(td) = t else { continue };
            let Ok(Type::Ptr(ptr)) = self.btf.resolve_chained_type(&td) else {
                continue;
            };
            let Ok(Type::FuncProto(proto)) = self.btf.resolve_chained_type(&ptr) else {
                continue;
            };
            let bools: Vec<usize> = proto
                .parameters
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, p)| self.is_bool(self.btf.resolve_chained_type(*p)))
                .map(|(i, _)| i - 1)
                .collect();
            if let [one] = bools[..] {
                return u32::try_from(one).unwrap_or(OFFSET_ABSENT);
            }
        }
        OFFSET_ABSENT
    }
}

enum SearchError {
    Bitfield,
    Btf(btf_rs::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel() -> Option<KernelBtf> {
        let p = Path::new(VMLINUX_BTF);
        if !p.exists() {
            eprintln!("skipping: {VMLINUX_BTF} not present on this machine");
            return None;
        }
        Some(KernelBtf::open(p).expect("vmlinux BTF parses"))
    }

    #[test]
    fn resolves_every_required_offset_on_this_kernel() {
        let Some(k) = kernel() else { return };
        let off = k.kernel_offsets().expect("all required members present");
        // pid and tgid are adjacent pid_t fields in every kernel since 2.6.
        assert_eq!(off.task_tgid, off.task_pid + 4);
        // arg_end follows arg_start in mm_struct, inside an anonymous struct.
        assert_eq!(off.mm_arg_end, off.mm_arg_start + 8);
        // kuid_t uid is the first credential after the usage counter.
        assert!(off.cred_uid < off.cred_euid);
        assert_ne!(off.task_real_parent, OFFSET_ABSENT);
        // struct upid is { int nr; struct pid_namespace *ns; } on 64-bit.
        assert_eq!(off.upid_size, 16);
        assert_eq!(off.upid_nr, 0);
        assert_eq!(off.upid_ns, 8);
        // The kernels we test on: 6.18 here has pidfs, Debian 12's 6.1 does not.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let (major, minor) = release.trim().split_once('.').unwrap();
        let minor: u32 = minor
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let pidfs = major.parse::<u32>().unwrap() > 6 || minor >= 9;
        assert_eq!(off.pidfd_in_inode, u32::from(pidfs), "kernel {release}");
        // mmap_lock_start_locking(mm, memcg_path, write) on 6.1, (mm,
        // write) on 6.18: the address-space hook reads `write` there.
        let write_arg = off.mmap_lock_write_arg;
        match (major.parse::<u32>().unwrap(), minor) {
            (6, 1) => assert_eq!(write_arg, 2, "kernel {release}"),
            (6, m) if m >= 18 => assert_eq!(write_arg, 1, "kernel {release}"),
            _ => assert!(matches!(write_arg, 1 | 2), "kernel {release}"),
        }
        // Every kernel we target can walk the cwd; struct path is { mnt, dentry }.
        for (name, v) in [
            ("task_fs", off.task_fs),
            ("fs_pwd", off.fs_pwd),
            ("dentry_d_parent", off.dentry_d_parent),
            ("dentry_name", off.dentry_name),
            ("dentry_hash_pprev", off.dentry_hash_pprev),
            ("vfsmount_mnt_root", off.vfsmount_mnt_root),
            ("mount_mnt", off.mount_mnt),
            ("mount_mnt_parent", off.mount_mnt_parent),
            ("mount_mnt_mountpoint", off.mount_mnt_mountpoint),
            ("file_f_path_dentry", off.file_f_path_dentry),
            ("file_f_flags", off.file_f_flags),
            ("dentry_name_len", off.dentry_name_len),
            ("dentry_d_sb", off.dentry_d_sb),
            ("sb_s_magic", off.sb_s_magic),
            ("proc_inode_vfs_inode", off.proc_inode_vfs_inode),
            ("proc_inode_pid", off.proc_inode_pid),
            ("pid_tasks", off.pid_tasks),
            ("task_pid_links", off.task_pid_links),
            ("io_kiocb_opcode", off.io_kiocb_opcode),
            ("io_kiocb_res", off.io_kiocb_res),
            ("io_kiocb_cmd", off.io_kiocb_cmd),
            ("io_open_file_slot", off.io_open_file_slot),
            ("mm_owner", off.mm_owner),
            ("task_worker_private", off.task_worker_private),
            ("io_worker_cur_work", off.io_worker_cur_work),
            ("io_kiocb_work", off.io_kiocb_work),
            ("io_kiocb_file", off.io_kiocb_file),
        ] {
            assert_ne!(v, OFFSET_ABSENT, "{name} on {release}");
        }
        assert_eq!((off.path_mnt, off.path_dentry), (0, 8));
        // qstr is { u32 hash; u32 len; } (little endian) then the name.
        assert_eq!(off.dentry_name_len + 4, off.dentry_name);
    }

    #[test]
    fn unknown_member_is_none_and_unknown_struct_is_error() {
        let Some(k) = kernel() else { return };
        assert_eq!(
            k.member_offset("task_struct", "no_such_field").unwrap(),
            None
        );
        assert!(matches!(
            k.member_offset("no_such_struct_debugmon", "x"),
            Err(BtfError::NoStruct(_))
        ));
        assert!(matches!(
            k.required("task_struct", "no_such_field"),
            Err(BtfError::NoMember { .. })
        ));
    }
}
