//! Kernel struct field offsets, resolved by the agent from the running
//! kernel's BTF at load time and handed to the programs as a read-only
//! global.

/// Sentinel for an offset the running kernel does not have (e.g. `loginuid` without CONFIG_AUDIT).
pub const OFFSET_ABSENT: u32 = u32::MAX;

/// Kernel layout facts resolved by the agent from the running kernel's BTF
/// (and the tracepoint format files) at load time, so no offset is
/// hard-wired for one kernel build. [`OFFSET_ABSENT`] marks a missing field.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_real_parent: u32,
    pub task_cred: u32,
    pub task_loginuid: u32,
    pub task_sessionid: u32,
    pub task_start_boottime: u32,
    pub task_mm: u32,
    pub task_signal: u32,
    pub task_exit_code: u32,
    pub task_comm: u32,
    pub cred_uid: u32,
    pub cred_gid: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub signal_live: u32,
    /// `task_struct.thread_pid` (struct pid *).
    pub task_thread_pid: u32,
    /// `struct pid.level` and `struct pid.numbers` (array of struct upid).
    pub pid_level: u32,
    pub pid_numbers: u32,
    /// `sizeof(struct upid)`, `upid.nr`, `upid.ns`.
    pub upid_size: u32,
    pub upid_nr: u32,
    pub upid_ns: u32,
    /// `pid_namespace.ns` + `ns_common.inum`, folded into one offset.
    pub pidns_inum: u32,
    /// `cred.user_ns`, and `user_namespace.ns` + `ns_common.inum` folded.
    pub cred_user_ns: u32,
    pub userns_inum: u32,
    /// `task_struct.nsproxy`, `nsproxy.mnt_ns`, `mnt_namespace.ns` + `inum` folded.
    pub task_nsproxy: u32,
    pub nsproxy_mnt_ns: u32,
    pub mntns_inum: u32,
    /// `signal_struct.tty` and `tty_struct.name`.
    pub signal_tty: u32,
    pub tty_name: u32,
    /// `task_struct.files`, `files_struct.fdt`, `fdtable.max_fds`, `fdtable.fd`,
    /// `file.private_data`: resolve a pidfd to its `struct pid`.
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub file_private_data: u32,
    /// Since 6.9 pidfds live on pidfs and keep their `struct pid` in the
    /// inode: 1 = read `file.f_inode->i_private`, 0 = `file.private_data`.
    pub pidfd_in_inode: u32,
    pub file_f_inode: u32,
    pub inode_i_private: u32,
    /// `task_struct.cgroups`, `css_set.dfl_cgrp`, `cgroup.kn`, `kernfs_node.id`:
    /// the cgroup v2 id of any task (not only the current one).
    pub task_cgroups: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    /// `linux_binprm.file`, `inode.i_ino`, `inode.i_sb`, `super_block.s_dev`.
    pub bprm_file: u32,
    pub inode_i_ino: u32,
    pub inode_i_sb: u32,
    pub sb_s_dev: u32,
    /// Offset of the first argument in a `syscalls/sys_enter_*` record, and
    /// of `ret` in a `syscalls/sys_exit_*` record.
    pub tp_sys_enter_args: u32,
    pub tp_sys_exit_ret: u32,
    /// Offsets in `struct pt_regs` of a syscall's six arguments, as the
    /// syscall functions (`__x64_sys_*`) the fentry programs hook get them.
    pub sys_args: [u32; 6],
    /// Offset of the `__data_loc char[] filename` field in the
    /// `sched/sched_process_exec` tracepoint record.
    pub tp_exec_filename: u32,
    /// Offset of `old_pid` in the same record.
    pub tp_exec_old_pid: u32,
    /// The working directory: `task_struct.fs`, `fs_struct.pwd` and
    /// `path.{mnt,dentry}`.
    pub task_fs: u32,
    pub fs_pwd: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    /// `dentry.d_parent`; `dentry.d_name` + `qstr.name` folded;
    /// `dentry.d_hash` + `hlist_bl_node.pprev` folded (null once unlinked).
    pub dentry_d_parent: u32,
    pub dentry_name: u32,
    pub dentry_hash_pprev: u32,
    /// `vfsmount.mnt_root`; `mount.mnt` (the embedded vfsmount),
    /// `mount.mnt_parent`, `mount.mnt_mountpoint`: crossing mount points.
    pub vfsmount_mnt_root: u32,
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    /// An opened file that is a process's memory or environment, however
    /// its path was spelled: `file.f_path` + `path.dentry` folded,
    /// `file.f_flags`, `dentry.d_name` + `qstr.len` folded, `dentry.d_sb`,
    /// `super_block.s_magic`; and from a procfs inode to its process:
    /// `proc_inode.vfs_inode`, `proc_inode.pid`, `pid.tasks` (its first
    /// list is PIDTYPE_PID's) and `task_struct.pid_links`.
    pub file_f_path_dentry: u32,
    pub file_f_flags: u32,
    pub dentry_name_len: u32,
    pub dentry_d_sb: u32,
    pub sb_s_magic: u32,
    pub proc_inode_vfs_inode: u32,
    pub proc_inode_pid: u32,
    pub pid_tasks: u32,
    pub task_pid_links: u32,
    /// io_uring opens: `io_kiocb.opcode`, `io_kiocb.cqe` + `io_cqe.res`
    /// folded (the result the completion posts), `io_kiocb.cmd` (the
    /// request's own data, a `struct io_open` for an open) and
    /// `io_open.file_slot` (non-zero: the file went to a fixed slot, no
    /// descriptor).
    pub io_kiocb_opcode: u32,
    pub io_kiocb_res: u32,
    pub io_kiocb_cmd: u32,
    pub io_open_file_slot: u32,
    /// Protection decided in the kernel: `mm_struct.exe_file` (the program
    /// a task runs), `kernfs_node.name` and `.parent` (a cgroup's directory
    /// name, for its systemd unit), `task_struct.ptrace` (flags: is it
    /// traced) and `task_struct.parent` (its tracer, while traced).
    pub mm_exe_file: u32,
    pub kernfs_node_name: u32,
    pub kernfs_node_parent: u32,
    pub task_ptrace: u32,
    pub task_parent: u32,
    /// `inode.i_uid` and `inode.i_mode`: who owns the executable a process
    /// runs, and who may write it.
    pub inode_i_uid: u32,
    pub inode_i_mode: u32,
    /// Nanoseconds per clock tick (`USER_HZ`): process start times in the
    /// protection maps are in ticks, as `/proc/PID/stat` gives them.
    pub tick_ns: u32,
    /// A foreign address space being locked (the last point before its
    /// memory is read or written): `task_struct.flags` (kernel and
    /// io_uring worker threads), `mm_struct.owner` (whose it is; absent
    /// without CONFIG_MEMCG, and then this check is off), the io_uring
    /// worker's request (`task_struct.worker_private` is its `io_worker`,
    /// `io_worker.cur_work` the `io_kiocb.work` it runs, `io_kiocb.file`
    /// the file), and the syscall the task is in (`pt_regs.orig_ax`).
    pub task_flags: u32,
    pub mm_owner: u32,
    pub task_worker_private: u32,
    pub io_worker_cur_work: u32,
    pub io_kiocb_work: u32,
    pub io_kiocb_file: u32,
    pub pt_regs_syscall_nr: u32,
    /// This architecture's numbers of the syscalls that read or write a
    /// descriptor (read, pread64, readv, ...), in which a lock of another
    /// process's address space is a read or write of its `mem` file: the
    /// readers at even indexes, each one's writing twin after it.
    pub sys_file_rw: [u32; 10],
    /// ptrace, process_vm_readv, process_vm_writev: judged by their own
    /// hooks, not at the lock.
    pub sys_own_hook: [u32; 3],
    /// `task_struct.ptraced` (the tracer's list of its tracees, newest
    /// first) and `task_struct.ptrace_entry` (a tracee's link in it): the
    /// task an attach just took.
    pub task_ptraced: u32,
    pub task_ptrace_entry: u32,
    /// `mm_struct.env_start` and `.env_end`: a new program's environment.
    pub mm_env_start: u32,
    pub mm_env_end: u32,
    /// A socket's local address: `sock_common.skc_family`, `.skc_num`
    /// (the port, host order), `.skc_rcv_saddr` and `.skc_v6_rcv_saddr`.
    pub sk_family: u32,
    pub sk_num: u32,
    pub sk_rcv_saddr: u32,
    pub sk_v6_rcv_saddr: u32,
    /// `inode.i_rdev`: which device a device file is (/dev/mem).
    pub inode_i_rdev: u32,
    /// This architecture's number of `pidfd_getfd`: BPF-LSM sees it only
    /// as a PTRACE_MODE_ATTACH check, and must know it takes a descriptor.
    pub sys_pidfd_getfd: u32,
    /// Which argument of the `mmap_lock_start_locking` tracepoint is its
    /// `bool write` (counting from 0, after the tracepoint's own data):
    /// 1 for `(mm, write)`, 2 for `(mm, memcg_path, write)` (older
    /// kernels, such as Debian 12's 6.1). Not an offset, but
    /// `OFFSET_ABSENT` alike when unknown. The loader chooses the
    /// address-space program by it; no program reads it.
    pub mmap_lock_write_arg: u32,
}

layout!(
    KernelOffsets,
    484;
    task_pid: u32,
    task_tgid: u32,
    task_real_parent: u32,
    task_cred: u32,
    task_loginuid: u32,
    task_sessionid: u32,
    task_start_boottime: u32,
    task_mm: u32,
    task_signal: u32,
    task_exit_code: u32,
    task_comm: u32,
    cred_uid: u32,
    cred_gid: u32,
    cred_euid: u32,
    cred_egid: u32,
    mm_arg_start: u32,
    mm_arg_end: u32,
    signal_live: u32,
    task_thread_pid: u32,
    pid_level: u32,
    pid_numbers: u32,
    upid_size: u32,
    upid_nr: u32,
    upid_ns: u32,
    pidns_inum: u32,
    cred_user_ns: u32,
    userns_inum: u32,
    task_nsproxy: u32,
    nsproxy_mnt_ns: u32,
    mntns_inum: u32,
    signal_tty: u32,
    tty_name: u32,
    task_files: u32,
    files_fdt: u32,
    fdt_max_fds: u32,
    fdt_fd: u32,
    file_private_data: u32,
    pidfd_in_inode: u32,
    file_f_inode: u32,
    inode_i_private: u32,
    task_cgroups: u32,
    css_set_dfl_cgrp: u32,
    cgroup_kn: u32,
    kernfs_node_id: u32,
    bprm_file: u32,
    inode_i_ino: u32,
    inode_i_sb: u32,
    sb_s_dev: u32,
    tp_sys_enter_args: u32,
    tp_sys_exit_ret: u32,
    sys_args: [u32; 6],
    tp_exec_filename: u32,
    tp_exec_old_pid: u32,
    task_fs: u32,
    fs_pwd: u32,
    path_mnt: u32,
    path_dentry: u32,
    dentry_d_parent: u32,
    dentry_name: u32,
    dentry_hash_pprev: u32,
    vfsmount_mnt_root: u32,
    mount_mnt: u32,
    mount_mnt_parent: u32,
    mount_mnt_mountpoint: u32,
    file_f_path_dentry: u32,
    file_f_flags: u32,
    dentry_name_len: u32,
    dentry_d_sb: u32,
    sb_s_magic: u32,
    proc_inode_vfs_inode: u32,
    proc_inode_pid: u32,
    pid_tasks: u32,
    task_pid_links: u32,
    io_kiocb_opcode: u32,
    io_kiocb_res: u32,
    io_kiocb_cmd: u32,
    io_open_file_slot: u32,
    mm_exe_file: u32,
    kernfs_node_name: u32,
    kernfs_node_parent: u32,
    task_ptrace: u32,
    task_parent: u32,
    inode_i_uid: u32,
    inode_i_mode: u32,
    tick_ns: u32,
    task_flags: u32,
    mm_owner: u32,
    task_worker_private: u32,
    io_worker_cur_work: u32,
    io_kiocb_work: u32,
    io_kiocb_file: u32,
    pt_regs_syscall_nr: u32,
    sys_file_rw: [u32; 10],
    sys_own_hook: [u32; 3],
    task_ptraced: u32,
    task_ptrace_entry: u32,
    mm_env_start: u32,
    mm_env_end: u32,
    sk_family: u32,
    sk_num: u32,
    sk_rcv_saddr: u32,
    sk_v6_rcv_saddr: u32,
    inode_i_rdev: u32,
    sys_pidfd_getfd: u32,
    mmap_lock_write_arg: u32,
);

impl KernelOffsets {
    /// All fields absent: the programs then read nothing and flag the event.
    pub const ABSENT: Self = Self {
        task_pid: OFFSET_ABSENT,
        task_tgid: OFFSET_ABSENT,
        task_real_parent: OFFSET_ABSENT,
        task_cred: OFFSET_ABSENT,
        task_loginuid: OFFSET_ABSENT,
        task_sessionid: OFFSET_ABSENT,
        task_start_boottime: OFFSET_ABSENT,
        task_mm: OFFSET_ABSENT,
        task_signal: OFFSET_ABSENT,
        task_exit_code: OFFSET_ABSENT,
        task_comm: OFFSET_ABSENT,
        cred_uid: OFFSET_ABSENT,
        cred_gid: OFFSET_ABSENT,
        cred_euid: OFFSET_ABSENT,
        cred_egid: OFFSET_ABSENT,
        mm_arg_start: OFFSET_ABSENT,
        mm_arg_end: OFFSET_ABSENT,
        signal_live: OFFSET_ABSENT,
        task_thread_pid: OFFSET_ABSENT,
        pid_level: OFFSET_ABSENT,
        pid_numbers: OFFSET_ABSENT,
        upid_size: OFFSET_ABSENT,
        upid_nr: OFFSET_ABSENT,
        upid_ns: OFFSET_ABSENT,
        pidns_inum: OFFSET_ABSENT,
        cred_user_ns: OFFSET_ABSENT,
        userns_inum: OFFSET_ABSENT,
        task_nsproxy: OFFSET_ABSENT,
        nsproxy_mnt_ns: OFFSET_ABSENT,
        mntns_inum: OFFSET_ABSENT,
        signal_tty: OFFSET_ABSENT,
        tty_name: OFFSET_ABSENT,
        task_files: OFFSET_ABSENT,
        files_fdt: OFFSET_ABSENT,
        fdt_max_fds: OFFSET_ABSENT,
        fdt_fd: OFFSET_ABSENT,
        file_private_data: OFFSET_ABSENT,
        pidfd_in_inode: 0,
        file_f_inode: OFFSET_ABSENT,
        inode_i_private: OFFSET_ABSENT,
        task_cgroups: OFFSET_ABSENT,
        css_set_dfl_cgrp: OFFSET_ABSENT,
        cgroup_kn: OFFSET_ABSENT,
        kernfs_node_id: OFFSET_ABSENT,
        bprm_file: OFFSET_ABSENT,
        inode_i_ino: OFFSET_ABSENT,
        inode_i_sb: OFFSET_ABSENT,
        sb_s_dev: OFFSET_ABSENT,
        tp_sys_enter_args: OFFSET_ABSENT,
        tp_sys_exit_ret: OFFSET_ABSENT,
        sys_args: [OFFSET_ABSENT; 6],
        tp_exec_filename: OFFSET_ABSENT,
        tp_exec_old_pid: OFFSET_ABSENT,
        task_fs: OFFSET_ABSENT,
        fs_pwd: OFFSET_ABSENT,
        path_mnt: OFFSET_ABSENT,
        path_dentry: OFFSET_ABSENT,
        dentry_d_parent: OFFSET_ABSENT,
        dentry_name: OFFSET_ABSENT,
        dentry_hash_pprev: OFFSET_ABSENT,
        vfsmount_mnt_root: OFFSET_ABSENT,
        mount_mnt: OFFSET_ABSENT,
        mount_mnt_parent: OFFSET_ABSENT,
        mount_mnt_mountpoint: OFFSET_ABSENT,
        file_f_path_dentry: OFFSET_ABSENT,
        file_f_flags: OFFSET_ABSENT,
        dentry_name_len: OFFSET_ABSENT,
        dentry_d_sb: OFFSET_ABSENT,
        sb_s_magic: OFFSET_ABSENT,
        proc_inode_vfs_inode: OFFSET_ABSENT,
        proc_inode_pid: OFFSET_ABSENT,
        pid_tasks: OFFSET_ABSENT,
        task_pid_links: OFFSET_ABSENT,
        io_kiocb_opcode: OFFSET_ABSENT,
        io_kiocb_res: OFFSET_ABSENT,
        io_kiocb_cmd: OFFSET_ABSENT,
        io_open_file_slot: OFFSET_ABSENT,
        mm_exe_file: OFFSET_ABSENT,
        kernfs_node_name: OFFSET_ABSENT,
        kernfs_node_parent: OFFSET_ABSENT,
        task_ptrace: OFFSET_ABSENT,
        task_parent: OFFSET_ABSENT,
        inode_i_uid: OFFSET_ABSENT,
        inode_i_mode: OFFSET_ABSENT,
        tick_ns: 10_000_000,
        task_flags: OFFSET_ABSENT,
        mm_owner: OFFSET_ABSENT,
        task_worker_private: OFFSET_ABSENT,
        io_worker_cur_work: OFFSET_ABSENT,
        io_kiocb_work: OFFSET_ABSENT,
        io_kiocb_file: OFFSET_ABSENT,
        pt_regs_syscall_nr: OFFSET_ABSENT,
        sys_file_rw: [OFFSET_ABSENT; 10],
        sys_own_hook: [OFFSET_ABSENT; 3],
        task_ptraced: OFFSET_ABSENT,
        task_ptrace_entry: OFFSET_ABSENT,
        mm_env_start: OFFSET_ABSENT,
        mm_env_end: OFFSET_ABSENT,
        sk_family: OFFSET_ABSENT,
        sk_num: OFFSET_ABSENT,
        sk_rcv_saddr: OFFSET_ABSENT,
        sk_v6_rcv_saddr: OFFSET_ABSENT,
        inode_i_rdev: OFFSET_ABSENT,
        sys_pidfd_getfd: OFFSET_ABSENT,
        mmap_lock_write_arg: OFFSET_ABSENT,
    };
}
