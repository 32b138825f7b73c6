#!/usr/bin/env python3
"""Debug operations on another process, done the raw way (ctypes), so the
privileged tests exercise each kernel vector directly:

  debug_ops.py peek PID N        ptrace ATTACH, N x PEEKDATA, one POKEDATA (same value), DETACH
  debug_ops.py vm PID            process_vm_readv and process_vm_writev (same bytes back)
  debug_ops.py procmem PID       open /proc/PID/mem for reading, then for writing
  debug_ops.py environ PID       read /proc/PID/environ
  debug_ops.py procmem_via PID HOW DIR
                                 open PID's mem or environ without the path
                                 /proc/PID/mem: HOW is task (/proc/PID/task/PID/mem),
                                 link (DIR/link -> /proc/PID, for writing), rel
                                 ("mem" in /proc/PID), dirfd (environ through a
                                 dirfd), path (mem with O_PATH: no access), self
                                 (/proc/self/mem)
  debug_ops.py pidfd PID         pidfd_open + pidfd_getfd(fd 0)
  debug_ops.py bpf NAME          load a trivial socket filter named NAME
  debug_ops.py traceme           PTRACE_TRACEME (anti-debug self-trace)
"""
import ctypes
import os
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.syscall.restype = ctypes.c_long

PTRACE_TRACEME, PTRACE_PEEKDATA, PTRACE_POKEDATA, PTRACE_ATTACH, PTRACE_DETACH = 0, 2, 5, 16, 17
SYS_PROCESS_VM_READV, SYS_PROCESS_VM_WRITEV, SYS_BPF, SYS_PIDFD_GETFD = 310, 311, 321, 438


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def first_writable(pid):
    for line in open(f"/proc/{pid}/maps"):
        fields = line.split()
        if "rw" in fields[1]:
            return int(fields[0].split("-")[0], 16)
    raise SystemExit("no writable mapping")


def peek(pid, n):
    if libc.ptrace(PTRACE_ATTACH, pid, None, None) != 0:
        raise SystemExit(f"attach failed: errno {ctypes.get_errno()}")
    os.waitpid(pid, 0)
    addr = first_writable(pid)
    word = 0
    for _ in range(n):
        word = libc.ptrace(PTRACE_PEEKDATA, pid, ctypes.c_void_p(addr), None)
    libc.ptrace(PTRACE_POKEDATA, pid, ctypes.c_void_p(addr), ctypes.c_void_p(word & 0xFFFFFFFFFFFFFFFF))
    libc.ptrace(PTRACE_DETACH, pid, None, None)


def vm(pid):
    addr = first_writable(pid)
    buf = ctypes.create_string_buffer(8)
    local = Iovec(ctypes.cast(buf, ctypes.c_void_p), 8)
    remote = Iovec(addr, 8)
    n = libc.syscall(SYS_PROCESS_VM_READV, pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if n != 8:
        raise SystemExit(f"process_vm_readv: {n} errno {ctypes.get_errno()}")
    libc.syscall(SYS_PROCESS_VM_WRITEV, pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)


def procmem(pid):
    open(f"/proc/{pid}/mem", "rb").close()
    open(f"/proc/{pid}/mem", "r+b").close()


def procmem_via(pid, how, tmp):
    if how == "task":
        os.open(f"/proc/{pid}/task/{pid}/mem", os.O_RDONLY)
    elif how == "link":
        link = os.path.join(tmp, "link")
        os.symlink(f"/proc/{pid}", link)
        os.open(os.path.join(link, "mem"), os.O_RDWR)
    elif how == "rel":
        os.chdir(f"/proc/{pid}")
        os.open("mem", os.O_RDONLY)
    elif how == "dirfd":
        d = os.open(f"/proc/{pid}", os.O_PATH | os.O_DIRECTORY)
        os.open("environ", os.O_RDONLY, dir_fd=d)
    elif how == "path":
        os.chdir(f"/proc/{pid}")
        os.open("mem", os.O_PATH)
    elif how == "self":
        os.chdir("/proc/self")
        os.open("mem", os.O_RDONLY)
    else:
        raise SystemExit(f"unknown way {how}")


def environ(pid):
    open(f"/proc/{pid}/environ", "rb").read()


def pidfd(pid):
    fd = os.pidfd_open(pid)
    got = libc.syscall(SYS_PIDFD_GETFD, fd, 0, 0)
    if got < 0:
        raise SystemExit(f"pidfd_getfd errno {ctypes.get_errno()}")
    os.close(got)
    os.close(fd)


def bpf(name):
    insns = ctypes.create_string_buffer(bytes.fromhex("b700000000000000" "9500000000000000"))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(128)
    # union bpf_attr for BPF_PROG_LOAD (UAPI): type, insn_cnt, insns, license, ..., prog_name at 48
    struct.pack_into("IIQQ", attr, 0, 1, 2, ctypes.addressof(insns), ctypes.addressof(lic))
    struct.pack_into("16s", attr, 48, name.encode()[:15])
    fd = libc.syscall(SYS_BPF, 5, attr, 128)
    if fd < 0:
        raise SystemExit(f"bpf prog load errno {ctypes.get_errno()}")
    os.close(fd)


def traceme():
    libc.ptrace(PTRACE_TRACEME, 0, None, None)


if __name__ == "__main__":
    op, args = sys.argv[1], sys.argv[2:]
    if op == "peek":
        peek(int(args[0]), int(args[1]))
    elif op == "vm":
        vm(int(args[0]))
    elif op == "procmem":
        procmem(int(args[0]))
    elif op == "procmem_via":
        procmem_via(int(args[0]), args[1], args[2])
    elif op == "environ":
        environ(int(args[0]))
    elif op == "pidfd":
        pidfd(int(args[0]))
    elif op == "bpf":
        bpf(args[0])
    elif op == "traceme":
        traceme()
    else:
        raise SystemExit(f"unknown op {op}")
