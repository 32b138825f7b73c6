//! Round trips of every event through encode and decode, and every way
//! the wire bytes can be wrong.

use agent_common::{Creds, NsIds};

use super::*;

fn creds() -> Creds {
    Creds {
        uid: 1001,
        gid: 1002,
        euid: 0,
        egid: 0,
        auid: 1001,
        sessionid: 7,
    }
}

fn exec() -> ExecInfo {
    ExecInfo {
        ktime_ns: 123_456_789,
        flags: 0,
        pid: 42,
        tgid: 42,
        start_ns: 99,
        ppid: 1,
        old_pid: 42,
        creds: creds(),
        cgroup_id: 0xdead_beef,
        ns: NsIds {
            pid_ns: 4_026_531_836,
            user_ns: 4_026_531_837,
            mnt_ns: 4_026_531_841,
            ns_pid: 42,
        },
        comm: b"echo".to_vec(),
        tty: b"pts/3".to_vec(),
        filename: b"/bin/echo".to_vec(),
        argv: vec![b"/bin/echo".to_vec(), b"hi".to_vec(), b"".to_vec()],
        argv_truncated: false,
        argv_total_len: 14,
        exe_file: ExeFile {
            ino: 42,
            dev: 8 << 20 | 1,
            uid: 0,
            mode: 0o100755,
        },
        cwd: None,
    }
}

#[test]
fn exec_round_trip() {
    let ev = Event::Exec(exec());
    assert_eq!(decode(&encode(&ev)).unwrap(), ev);
}

#[test]
fn exec_round_trip_non_utf8_and_truncated() {
    let mut e = exec();
    e.filename = b"/tmp/\xff\xfe/bin".to_vec();
    e.argv = vec![b"\xc3\x28".to_vec(), vec![b'x'; 100]];
    e.argv_truncated = true;
    e.flags = flags::ARGV_TRUNCATED;
    e.argv_total_len = 1 << 20;
    let ev = Event::Exec(e);
    assert_eq!(decode(&encode(&ev)).unwrap(), ev);
}

/// An exec event whose cwd area holds `area`, with `fl` set.
fn exec_with_cwd_area(area: &[u8], fl: u32) -> Vec<u8> {
    let mut bytes = encode(&Event::Exec(exec()));
    bytes.extend_from_slice(area);
    let at = std::mem::offset_of!(ExecEvent, cwd_len);
    bytes[at..at + 4].copy_from_slice(&u32::try_from(area.len()).unwrap().to_ne_bytes());
    bytes[4..8].copy_from_slice(&fl.to_ne_bytes());
    bytes
}

fn cwd_of(bytes: &[u8]) -> Option<Vec<u8>> {
    match decode(bytes).unwrap() {
        Event::Exec(e) => e.cwd,
        other => panic!("{other:?}"),
    }
}

#[test]
fn cwd_names_innermost_first_make_the_absolute_path() {
    let ok = flags::CWD_RESOLVED;
    assert_eq!(
        cwd_of(&exec_with_cwd_area(b"app\0srv\0", ok)).unwrap(),
        b"/srv/app"
    );
    // The walk started at the root: no names.
    assert_eq!(cwd_of(&exec_with_cwd_area(b"", ok)).unwrap(), b"/");
    assert_eq!(
        cwd_of(&exec_with_cwd_area(b"d\0tmp\0", ok | flags::CWD_DELETED)).unwrap(),
        b"/tmp/d (deleted)"
    );
    assert_eq!(
        cwd_of(&exec_with_cwd_area(b"\xff\xfe\0home\0", ok)).unwrap(),
        b"/home/\xff\xfe"
    );
    // An unfinished walk is no cwd: the agent reads /proc instead.
    assert_eq!(cwd_of(&exec_with_cwd_area(b"app\0srv\0", 0)), None);
}

#[test]
fn exec_round_trip_with_cwd() {
    for (cwd, fl) in [
        (&b"/"[..], flags::CWD_RESOLVED),
        (b"/srv/a b/\xff", flags::CWD_RESOLVED),
        (
            b"/tmp/gone (deleted)",
            flags::CWD_RESOLVED | flags::CWD_DELETED,
        ),
    ] {
        let mut e = exec();
        e.flags = fl;
        e.cwd = Some(cwd.to_vec());
        let ev = Event::Exec(e);
        assert_eq!(decode(&encode(&ev)).unwrap(), ev, "{cwd:?}");
    }
}

#[test]
fn cwd_area_over_its_cap_or_past_the_end_is_an_error() {
    let bytes = exec_with_cwd_area(&vec![b'a'; CWD_CAP + 1], flags::CWD_RESOLVED);
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::OverCap { cwd, .. }) if cwd == CWD_CAP + 1
    ));
    let bytes = exec_with_cwd_area(b"app\0srv\0", flags::CWD_RESOLVED);
    assert!(matches!(
        decode(&bytes[..bytes.len() - 1]),
        Err(DecodeError::PayloadLength { .. })
    ));
}

#[test]
fn fork_round_trip() {
    let ev = Event::Fork(ForkInfo {
        ktime_ns: 5,
        flags: 0,
        pid: 100,
        start_ns: 6,
        parent_tgid: 50,
        parent_start_ns: 4,
        creds: creds(),
        cgroup_id: 9,
        ns: NsIds::default(),
        comm: b"bash".to_vec(),
    });
    assert_eq!(decode(&encode(&ev)).unwrap(), ev);
}

#[test]
fn exit_round_trip() {
    let ev = Event::Exit(ExitInfo {
        ktime_ns: 7,
        pid: 100,
        start_ns: 6,
        exit_code: 42 << 8,
    });
    assert_eq!(decode(&encode(&ev)).unwrap(), ev);
}

#[test]
fn access_round_trip_every_kind() {
    for kind in [
        AccessKind::Ptrace,
        AccessKind::VmReadv,
        AccessKind::VmWritev,
        AccessKind::ProcMem,
        AccessKind::ProcEnviron,
        AccessKind::PerfOpen,
        AccessKind::BpfProgLoad,
        AccessKind::PidfdGetfd,
        AccessKind::LsmAccess,
        AccessKind::LsmTraceme,
        AccessKind::LsmExec,
        AccessKind::LsmKill,
        AccessKind::LsmPerf,
        AccessKind::LsmBpf,
    ] {
        let ev = Event::Access(AccessInfo {
            ktime_ns: 11,
            flags: 0,
            pid: 8,
            tgid: 7,
            start_ns: 3,
            access: kind,
            target_pid: 99,
            request: 0x4206,
            arg: 5,
            ret: Some(-1),
            count: 1,
            aggregate: false,
            io_uring: true,
            // Every flag the kernel sets survives the round trip (the
            // decode fuzz target found these two dropped by `encode`).
            at_access: kind == AccessKind::ProcMem,
            writes: matches!(kind, AccessKind::ProcMem | AccessKind::VmWritev),
            refused: false,
            target_host_pid: Some(1099),
            ppid: 2,
            creds: creds(),
            ns: NsIds {
                pid_ns: 1,
                user_ns: 2,
                mnt_ns: 3,
                ns_pid: 4,
            },
            cgroup_id: 12,
            comm: b"gdb".to_vec(),
            name: b"prog".to_vec(),
            enforcement: if kind == AccessKind::Ptrace {
                Enforcement::Killed
            } else {
                Enforcement::None
            },
            rule: (kind == AccessKind::Ptrace).then_some(3),
        });
        assert_eq!(decode(&encode(&ev)).unwrap(), ev);
    }
}

#[test]
fn unknown_access_kind_is_an_error() {
    let mut bytes = encode(&Event::Exit(ExitInfo {
        ktime_ns: 1,
        pid: 1,
        start_ns: 1,
        exit_code: 0,
    }));
    bytes.resize(size_of::<AccessEvent>(), 0);
    bytes[0] = EventKind::Access as u8;
    let at = std::mem::offset_of!(AccessEvent, access);
    bytes[at] = 200;
    assert_eq!(decode(&bytes), Err(DecodeError::UnknownAccess(200)));
}

#[test]
fn empty_argv_decodes_to_no_arguments() {
    let mut e = exec();
    e.argv = Vec::new();
    let ev = Event::Exec(e);
    assert_eq!(decode(&encode(&ev)).unwrap(), ev);
}

#[test]
fn short_input_is_an_error() {
    assert!(matches!(decode(&[]), Err(DecodeError::Short { .. })));
    let bytes = encode(&Event::Exec(exec()));
    assert!(matches!(
        decode(&bytes[..50]),
        Err(DecodeError::Short { .. })
    ));
    // Fixed part intact, payload cut.
    let cut = &bytes[..bytes.len() - 3];
    assert!(matches!(
        decode(cut),
        Err(DecodeError::PayloadLength { .. })
    ));
}

#[test]
fn unknown_kind_is_an_error() {
    let mut bytes = encode(&Event::Exit(ExitInfo {
        ktime_ns: 1,
        pid: 1,
        start_ns: 1,
        exit_code: 0,
    }));
    bytes[0] = 77;
    assert_eq!(decode(&bytes), Err(DecodeError::UnknownKind(77)));
}

#[test]
fn lengths_over_the_caps_are_rejected() {
    let mut bytes = encode(&Event::Exec(exec()));
    let at = std::mem::offset_of!(ExecEvent, argv_len);
    bytes[at..at + 4].copy_from_slice(&(u32::MAX).to_ne_bytes());
    assert!(matches!(decode(&bytes), Err(DecodeError::OverCap { .. })));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap deterministic fuzz: every prefix and several corruptions.
    let base = encode(&Event::Exec(exec()));
    for n in 0..=base.len() {
        let _ = decode(&base[..n]);
    }
    let mut x = 0x1234_5678u32;
    for _ in 0..2000 {
        let mut b = base.clone();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let i = x as usize % b.len();
            b[i] = (x >> 8) as u8;
        }
        let _ = decode(&b);
    }
}

/// Fuzz finding (seed `fuzz/corpus/decode/regression-comm-without-nul`): a
/// comm filling all 16 bytes with no NUL decoded to 16 bytes, which
/// encode cannot carry; it is now cut at 15 as the kernel's comm is.
#[test]
fn a_fixed_string_without_its_nul_is_cut_before_the_last_byte() {
    let seed = include_bytes!("../../../../fuzz/corpus/decode/regression-comm-without-nul");
    let ev = decode(seed).unwrap();
    let Event::Fork(f) = &ev else {
        panic!("the seed is a fork event: {ev:?}")
    };
    assert_eq!(f.comm.len(), agent_common::COMM_LEN - 1);
    assert_eq!(decode(&encode(&ev)).unwrap(), ev);
}

/// Fuzzing found cwd areas with empty names (`a\0\0`, `\0\0`) or a `/`
/// in a name: they read as `//a`, which encodes back as `/a`. Neither adds
/// an empty component now, so what is recorded reads back the same.
#[test]
fn empty_cwd_names_add_no_component_and_round_trip() {
    let ok = flags::CWD_RESOLVED;
    for (area, path) in [
        (&b"a\0\0"[..], &b"/a"[..]),
        (b"\0\0", b"/"),
        (b"\0app\0\0srv\0", b"/srv/app"),
        (b"/echo\0hi\0", b"/hi/echo"),
        (b"echo/\0hi\0", b"/hi/echo"),
    ] {
        let bytes = exec_with_cwd_area(area, ok);
        assert_eq!(cwd_of(&bytes).unwrap(), path, "{area:?}");
        let ev = decode(&bytes).unwrap();
        assert_eq!(decode(&encode(&ev)).unwrap(), ev, "{area:?}");
    }
}

/// The inputs the decode fuzz target crashed on (kept as its seeds) now
/// decode, or not, and read back as they were decoded.
#[test]
fn the_decode_fuzz_findings_round_trip() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/decode");
    let mut crashes = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("crash-")
        {
            continue;
        }
        crashes += 1;
        let bytes = std::fs::read(&path).unwrap();
        if let Ok(ev) = decode(&bytes) {
            assert_eq!(decode(&encode(&ev)).unwrap(), ev, "{}", path.display());
        }
    }
    assert!(crashes >= 2, "the crash seeds are in {dir}");
}

/// Fuzzing found a truncated argv area that ends with a NUL: the cap fell
/// where the next argument began, so that argument is empty, and it must
/// survive being written back.
#[test]
fn a_truncated_argv_cut_at_an_argument_boundary_round_trips() {
    let mut e = exec();
    e.argv = vec![b"a".to_vec(), Vec::new()];
    e.argv_truncated = true;
    e.flags = flags::ARGV_TRUNCATED;
    let ev = Event::Exec(e);
    assert_eq!(decode(&encode(&ev)).unwrap(), ev);
}
