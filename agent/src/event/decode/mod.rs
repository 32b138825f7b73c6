//! Ring buffer bytes -> [`Event`]. Pure and allocation-light; every way the
//! input can be wrong is a [`DecodeError`], never a panic. [`encode`] is the
//! exact inverse, used by the round-trip tests and the benchmarks.

use std::mem::size_of;

use agent_common::{
    ARGV_CAP, AccessEvent, AccessKind, CWD_CAP, Enforcement, EventHeader, EventKind, ExecEvent,
    ExitEvent, FILENAME_CAP, ForkEvent, TTY_LEN, access_flags, flags,
};
use thiserror::Error;

use super::model::{AccessInfo, EnvInfo, Event, ExeFile, ExecInfo, ExitInfo, ForkInfo};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event of {len} bytes is shorter than its {need}-byte fixed part")]
    Short { len: usize, need: usize },
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("unknown access kind {0}")]
    UnknownAccess(u32),
    #[error("unknown kernel decision {0}")]
    UnknownEnforcement(u32),
    #[error("exec event declares {declared} bytes of payload but carries {actual}")]
    PayloadLength { declared: usize, actual: usize },
    #[error(
        "exec event payload exceeds the kernel-side caps ({filename} path, {argv} argv, {cwd} cwd bytes)"
    )]
    OverCap {
        filename: usize,
        argv: usize,
        cwd: usize,
    },
}

/// Reads a plain-integer `#[repr(C)]` struct from the front of `bytes`.
fn read_pod<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Short {
            len: bytes.len(),
            need: size_of::<T>(),
        });
    }
    // SAFETY: length checked above; T is one of agent-common's wire types,
    // made of integers and byte arrays only, so every bit pattern is valid.
    Ok(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

fn as_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: wire types have no padding (pinned by size asserts in agent-common).
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(v).cast::<u8>(), size_of::<T>()) }
}

/// A fixed C string field: up to its NUL. The kernel always leaves room
/// for the NUL, so a field without one (only hostile or corrupt bytes) is
/// cut before its last byte, as the kernel would have; otherwise such an
/// event would re-encode differently (found by the `decode` fuzz target).
fn cstr_bytes(b: &[u8]) -> Vec<u8> {
    let end = b
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(b.len().saturating_sub(1));
    b[..end].to_vec()
}

/// Splits the kernel's NUL-separated argv area into arguments. A
/// `truncated` area ends inside its last argument, without a NUL: one
/// that ends with a NUL was cut where the next argument began, which is
/// then empty.
fn split_argv(area: &[u8], truncated: bool) -> Vec<Vec<u8>> {
    if area.is_empty() {
        return Vec::new();
    }
    let body = if truncated {
        area
    } else {
        area.strip_suffix(&[0]).unwrap_or(area)
    };
    body.split(|&c| c == 0).map(<[u8]>::to_vec).collect()
}

/// What `readlink` of a removed working directory appends.
const DELETED: &[u8] = b" (deleted)";

/// The absolute path named by the kernel's cwd area: NUL-terminated
/// names, innermost first. An empty name (one the kernel side could not
/// read) or a `/` inside a name (which no directory entry has) adds no
/// empty component: the path is what [`split_cwd`] turns back into the
/// same area, so a record reads back as it was written.
fn join_cwd(area: &[u8], deleted: bool) -> Vec<u8> {
    let body = area.strip_suffix(&[0]).unwrap_or(area);
    let mut path = Vec::with_capacity(area.len() + 1 + DELETED.len());
    for name in body.rsplit(|&c| c == 0) {
        for part in name.split(|&c| c == b'/').filter(|n| !n.is_empty()) {
            path.push(b'/');
            path.extend_from_slice(part);
        }
    }
    if path.is_empty() {
        path.push(b'/');
    }
    if deleted {
        path.extend_from_slice(DELETED);
    }
    path
}

/// The kernel's cwd area for `path` (the inverse of [`join_cwd`]).
fn split_cwd(path: &[u8], deleted: bool) -> Vec<u8> {
    let path = if deleted {
        path.strip_suffix(DELETED).unwrap_or(path)
    } else {
        path
    };
    let mut area = Vec::with_capacity(path.len());
    for name in path.rsplit(|&c| c == b'/').filter(|n| !n.is_empty()) {
        area.extend_from_slice(name);
        area.push(0);
    }
    area
}

pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let header: EventHeader = read_pod(bytes)?;
    match EventKind::from_u32(header.kind) {
        Some(EventKind::Exec) => decode_exec(bytes).map(Event::Exec),
        Some(EventKind::Fork) => {
            let f: ForkEvent = read_pod(bytes)?;
            Ok(Event::Fork(ForkInfo {
                ktime_ns: f.header.ktime_ns,
                flags: f.header.flags,
                pid: f.header.tgid,
                start_ns: f.header.start_ns,
                parent_tgid: f.parent_tgid,
                parent_start_ns: f.parent_start_ns,
                creds: f.creds,
                cgroup_id: f.cgroup_id,
                ns: f.ns,
                comm: cstr_bytes(&f.comm),
            }))
        }
        Some(EventKind::Exit) => {
            let x: ExitEvent = read_pod(bytes)?;
            Ok(Event::Exit(ExitInfo {
                ktime_ns: x.header.ktime_ns,
                pid: x.header.tgid,
                start_ns: x.header.start_ns,
                exit_code: x.exit_code,
            }))
        }
        Some(EventKind::Access) => decode_access(bytes).map(Event::Access),
        Some(EventKind::ExecEnv) => decode_env(bytes).map(Event::ExecEnv),
        None => Err(DecodeError::UnknownKind(header.kind)),
    }
}

/// The fixed part of an env event: header, `len`, `flags`.
const ENV_FIXED: usize = size_of::<EventHeader>() + 8;

fn decode_env(bytes: &[u8]) -> Result<EnvInfo, DecodeError> {
    let header: EventHeader = read_pod(bytes)?;
    let fixed: [u32; 2] = read_pod(bytes.get(size_of::<EventHeader>()..).unwrap_or(&[]))?;
    let [len, flags] = fixed;
    let need = ENV_FIXED + len as usize;
    let data = bytes.get(ENV_FIXED..need).ok_or(DecodeError::Short {
        len: bytes.len(),
        need,
    })?;
    Ok(EnvInfo {
        ktime_ns: header.ktime_ns,
        tgid: header.tgid,
        start_ns: header.start_ns,
        vars: data
            .split(|&b| b == 0)
            .filter(|v| !v.is_empty())
            .map(<[u8]>::to_vec)
            .collect(),
        flags,
    })
}

fn decode_access(bytes: &[u8]) -> Result<AccessInfo, DecodeError> {
    let a: AccessEvent = read_pod(bytes)?;
    let access = AccessKind::from_u32(a.access).ok_or(DecodeError::UnknownAccess(a.access))?;
    let enforcement = Enforcement::from_u32(a.enforcement)
        .ok_or(DecodeError::UnknownEnforcement(a.enforcement))?;
    Ok(AccessInfo {
        ktime_ns: a.header.ktime_ns,
        flags: a.header.flags,
        pid: a.header.pid,
        tgid: a.header.tgid,
        start_ns: a.header.start_ns,
        access,
        target_pid: a.target_pid,
        request: a.request,
        arg: a.arg,
        ret: (a.flags2 & access_flags::HAS_RET != 0).then_some(a.ret),
        count: u64::from(a.count),
        aggregate: a.flags2 & access_flags::AGGREGATE != 0,
        io_uring: a.flags2 & access_flags::IO_URING != 0,
        at_access: a.flags2 & access_flags::AT_ACCESS != 0,
        writes: a.flags2 & access_flags::WRITES != 0,
        refused: false,
        target_host_pid: (a.flags2 & access_flags::TARGET_RESOLVED != 0)
            .then_some(a.target_host_pid),
        ppid: a.ppid,
        creds: a.creds,
        ns: a.ns,
        cgroup_id: a.cgroup_id,
        comm: cstr_bytes(&a.comm),
        name: cstr_bytes(&a.name),
        enforcement,
        rule: (enforcement != Enforcement::None).then_some(a.rule),
    })
}

fn decode_exec(bytes: &[u8]) -> Result<ExecInfo, DecodeError> {
    let e: ExecEvent = read_pod(bytes)?;
    let fixed = size_of::<ExecEvent>();
    let fl = e.filename_len as usize;
    let al = e.argv_len as usize;
    let cl = e.cwd_len as usize;
    if fl >= FILENAME_CAP || al > ARGV_CAP || cl > CWD_CAP {
        return Err(DecodeError::OverCap {
            filename: fl,
            argv: al,
            cwd: cl,
        });
    }
    let payload = &bytes[fixed..];
    if payload.len() < fl + al + cl {
        return Err(DecodeError::PayloadLength {
            declared: fl + al + cl,
            actual: payload.len(),
        });
    }
    let cwd = (e.header.flags & flags::CWD_RESOLVED != 0).then(|| {
        join_cwd(
            &payload[fl + al..fl + al + cl],
            e.header.flags & flags::CWD_DELETED != 0,
        )
    });
    Ok(ExecInfo {
        ktime_ns: e.header.ktime_ns,
        flags: e.header.flags,
        pid: e.header.pid,
        tgid: e.header.tgid,
        start_ns: e.header.start_ns,
        ppid: e.ppid,
        old_pid: e.old_pid,
        creds: e.creds,
        cgroup_id: e.cgroup_id,
        ns: e.ns,
        comm: cstr_bytes(&e.comm),
        tty: cstr_bytes(&e.tty),
        filename: payload[..fl].to_vec(),
        argv: split_argv(
            &payload[fl..fl + al],
            e.header.flags & flags::ARGV_TRUNCATED != 0,
        ),
        argv_truncated: e.header.flags & flags::ARGV_TRUNCATED != 0,
        argv_total_len: e.argv_total_len,
        exe_file: ExeFile {
            ino: e.exe_ino,
            dev: e.exe_dev,
            uid: e.exe_uid,
            mode: e.exe_mode,
        },
        cwd,
    })
}

fn comm_array(comm: &[u8]) -> [u8; agent_common::COMM_LEN] {
    fixed(comm)
}

/// NUL-padded fixed array holding at most N-1 bytes of `b`.
fn fixed<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = b.len().min(N - 1);
    out[..n].copy_from_slice(&b[..n]);
    out
}

/// Wire encoding of `ev`, as the kernel programs produce it.
pub fn encode(ev: &Event) -> Vec<u8> {
    match ev {
        Event::ExecEnv(e) => {
            let mut data = Vec::new();
            for v in &e.vars {
                data.extend_from_slice(v);
                data.push(0);
            }
            let header = EventHeader {
                kind: EventKind::ExecEnv as u32,
                flags: 0,
                ktime_ns: e.ktime_ns,
                pid: e.tgid,
                tgid: e.tgid,
                start_ns: e.start_ns,
            };
            let mut out = as_bytes(&header).to_vec();
            out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(&e.flags.to_le_bytes());
            out.extend_from_slice(&data);
            out
        }
        Event::Exec(e) => {
            let mut argv: Vec<u8> = Vec::new();
            for a in &e.argv {
                argv.extend_from_slice(a);
                argv.push(0);
            }
            if e.argv_truncated {
                // The kernel copies exactly ARGV_CAP bytes and the cut
                // argument has no terminating NUL.
                argv.pop();
            }
            let cwd = e.cwd.as_deref().map_or_else(Vec::new, |c| {
                split_cwd(c, e.flags & flags::CWD_DELETED != 0)
            });
            let fixed = ExecEvent {
                header: EventHeader {
                    kind: EventKind::Exec as u32,
                    flags: e.flags,
                    ktime_ns: e.ktime_ns,
                    pid: e.pid,
                    tgid: e.tgid,
                    start_ns: e.start_ns,
                },
                ppid: e.ppid,
                old_pid: e.old_pid,
                creds: e.creds,
                cgroup_id: e.cgroup_id,
                filename_len: u32::try_from(e.filename.len()).unwrap_or(u32::MAX),
                argv_len: u32::try_from(argv.len()).unwrap_or(u32::MAX),
                argv_total_len: e.argv_total_len,
                cwd_len: u32::try_from(cwd.len()).unwrap_or(u32::MAX),
                ns: e.ns,
                comm: comm_array(&e.comm),
                tty: fixed::<TTY_LEN>(&e.tty),
                exe_ino: e.exe_file.ino,
                exe_dev: e.exe_file.dev,
                exe_uid: e.exe_file.uid,
                exe_mode: e.exe_file.mode,
                _pad: 0,
            };
            let mut out = as_bytes(&fixed).to_vec();
            out.extend_from_slice(&e.filename);
            out.extend_from_slice(&argv);
            out.extend_from_slice(&cwd);
            out
        }
        Event::Fork(f) => as_bytes(&ForkEvent {
            header: EventHeader {
                kind: EventKind::Fork as u32,
                flags: f.flags,
                ktime_ns: f.ktime_ns,
                pid: f.pid,
                tgid: f.pid,
                start_ns: f.start_ns,
            },
            parent_tgid: f.parent_tgid,
            _pad: 0,
            parent_start_ns: f.parent_start_ns,
            creds: f.creds,
            cgroup_id: f.cgroup_id,
            ns: f.ns,
            comm: comm_array(&f.comm),
        })
        .to_vec(),
        Event::Access(a) => {
            let mut flags2 = 0;
            if a.ret.is_some() {
                flags2 |= access_flags::HAS_RET;
            }
            if a.aggregate {
                flags2 |= access_flags::AGGREGATE;
            }
            if a.io_uring {
                flags2 |= access_flags::IO_URING;
            }
            if a.target_host_pid.is_some() {
                flags2 |= access_flags::TARGET_RESOLVED;
            }
            if a.at_access {
                flags2 |= access_flags::AT_ACCESS;
            }
            if a.writes {
                flags2 |= access_flags::WRITES;
            }
            as_bytes(&AccessEvent {
                header: EventHeader {
                    kind: EventKind::Access as u32,
                    flags: a.flags,
                    ktime_ns: a.ktime_ns,
                    pid: a.pid,
                    tgid: a.tgid,
                    start_ns: a.start_ns,
                },
                access: a.access as u32,
                target_pid: a.target_pid,
                request: a.request,
                arg: a.arg,
                ret: a.ret.unwrap_or(0),
                count: u32::try_from(a.count).unwrap_or(u32::MAX),
                target_host_pid: a.target_host_pid.unwrap_or(0),
                flags2,
                ppid: a.ppid,
                creds: a.creds,
                ns: a.ns,
                cgroup_id: a.cgroup_id,
                comm: comm_array(&a.comm),
                name: comm_array(&a.name),
                rule: a.rule.unwrap_or(0),
                enforcement: a.enforcement as u32,
            })
            .to_vec()
        }
        Event::Exit(x) => as_bytes(&ExitEvent {
            header: EventHeader {
                kind: EventKind::Exit as u32,
                flags: 0,
                ktime_ns: x.ktime_ns,
                pid: x.pid,
                tgid: x.pid,
                start_ns: x.start_ns,
            },
            exit_code: x.exit_code,
            _pad: 0,
        })
        .to_vec(),
    }
}

#[cfg(test)]
mod tests;
