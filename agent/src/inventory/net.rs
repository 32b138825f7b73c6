//! Listening TCP sockets from `/proc/PID/net/tcp` and `tcp6` (each network
//! namespace is read once, through one of its processes), and which
//! process holds each socket, from the `socket:[INODE]` links under
//! `/proc/PID/fd`. Only the line parser is pure; the readers skip what
//! vanished.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

/// The `st` column of a listening socket (`TCP_LISTEN`).
const TCP_LISTEN: &str = "0A";

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
}

/// Parses one line of `/proc/net/tcp` or `tcp6`; `None` for the header, a
/// socket that is not listening, or a malformed line.
///
/// `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode`:
/// the address is the kernel's in-memory bytes printed as 32-bit words in
/// the host's byte order, the port a plain hex number.
pub fn parse_tcp_line(line: &str) -> Option<Listen> {
    let f: Vec<&str> = line.split_ascii_whitespace().collect();
    if f.len() < 10 || f.get(3) != Some(&TCP_LISTEN) {
        return None;
    }
    let (addr, port) = f[1].split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let addr = parse_addr(addr)?;
    let inode = f[9].parse().ok()?;
    Some(Listen { addr, port, inode })
}

fn parse_addr(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// Whether `addr` is every address of the host (`0.0.0.0`, `::`).
pub fn is_any(addr: &IpAddr) -> bool {
    addr.is_unspecified()
}

/// The listening sockets of the network namespace `pid` is in; `None`
/// when its `tcp` file could not be read (the process exited: another
/// process of the namespace is asked).
pub fn listening(proc_root: &Path, pid: u32) -> Option<Vec<Listen>> {
    let dir = proc_root.join(format!("{pid}/net"));
    let text = std::fs::read_to_string(dir.join("tcp")).ok()?;
    let mut out: Vec<Listen> = text.lines().filter_map(parse_tcp_line).collect();
    // No tcp6: a kernel or namespace without IPv6.
    if let Ok(text) = std::fs::read_to_string(dir.join("tcp6")) {
        out.extend(text.lines().filter_map(parse_tcp_line));
    }
    Some(out)
}

/// Socket inode -> the pid holding it, for the pids given. A socket
/// shared by several processes (a forked server) goes to the first.
pub fn socket_owners(proc_root: &Path, pids: &[u32], skipped: &mut u64) -> HashMap<u64, u32> {
    let mut owners = HashMap::new();
    for &pid in pids {
        let Ok(dir) = std::fs::read_dir(proc_root.join(format!("{pid}/fd"))) else {
            *skipped += 1;
            continue;
        };
        for entry in dir.flatten() {
            let Ok(link) = std::fs::read_link(entry.path()) else {
                continue;
            };
            if let Some(inode) = socket_inode(&link.to_string_lossy()) {
                owners.entry(inode).or_insert(pid);
            }
        }
    }
    owners
}

/// The inode of a `socket:[INODE]` link.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as a little-endian x86_64 kernel prints them.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:162E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 40112 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 40113 1 0000000000000000 100 0 0 10 0
   2: 0100007F:A2C4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 40114 1 0000000000000000 20 4 30 10 -1";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:2406 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 51000 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1389 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 51001 1 0000000000000000 100 0 0 10 0";

    #[cfg(target_endian = "little")]
    #[test]
    fn listening_sockets_with_address_port_and_inode() {
        let v4: Vec<Listen> = TCP.lines().filter_map(parse_tcp_line).collect();
        assert_eq!(
            v4,
            [
                Listen {
                    addr: "0.0.0.0".parse().unwrap(),
                    port: 5678,
                    inode: 40112
                },
                Listen {
                    addr: "127.0.0.1".parse().unwrap(),
                    port: 8080,
                    inode: 40113
                },
            ],
            "the header and the established connection are not listens"
        );
        let v6: Vec<Listen> = TCP6.lines().filter_map(parse_tcp_line).collect();
        assert_eq!(v6[0].addr, "::".parse::<IpAddr>().unwrap());
        assert_eq!(v6[0].port, 9222);
        assert_eq!(v6[1].addr, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(v6[1].port, 5001);
        assert!(is_any(&v4[0].addr) && is_any(&v6[0].addr));
        assert!(!is_any(&v4[1].addr) && !is_any(&v6[1].addr));
    }

    #[test]
    fn malformed_lines_are_no_listens() {
        for bad in [
            "",
            "0: zz:1 0:0 0A a b c d e 1",
            "0: 00000000:XYZ 0:0 0A a b c d e 1",
            "0: 00000000:0016 00000000:0000 0A 0 0 0",
            "0: 0000:0016 00000000:0000 0A a b c d e 77",
            "0: 00000000:0016 00000000:0000 0A a b c d e notanumber",
        ] {
            assert_eq!(parse_tcp_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[40112]"), Some(40112));
        assert_eq!(socket_inode("pipe:[40112]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
    }
}
