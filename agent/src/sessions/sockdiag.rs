//! The TCP connections on given local ports, from the kernel's `sock_diag` netlink
//! interface (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY`), in the agent's own network
//! namespace.
//!
//! Why not `/proc/PID/net/tcp`: the kernel prints every socket of the namespace into that
//! file, walking its whole connection hash table, so one read costs what the host holds
//! (milliseconds idle, over 100 ms on a bastion during a storm of logins), not what changed.
//! A `sock_diag` dump carries a filter (local port equal to sshd's) that the kernel runs
//! before formatting anything, and its answer is binary: the cost is the sshd connections,
//! and a handful of system calls. `BENCHMARKS.md` has the figures.
//!
//! The messages are built and read by hand (a few fixed C structures, see
//! `linux/inet_diag.h`), so no `unsafe` and no netlink crate is needed.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd as _;

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

/// `SOCK_DIAG_BY_FAMILY` (`linux/sock_diag.h`).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLM_F_REQUEST | NLM_F_DUMP`.
const DUMP_REQUEST: u16 = 0x1 | 0x300;
/// `NLMSG_ERROR`, `NLMSG_DONE`.
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `INET_DIAG_REQ_BYTECODE`: the request's filter attribute.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// `INET_DIAG_BC_S_EQ`: local port equal to the port in the next op (Linux 4.17 on).
const INET_DIAG_BC_S_EQ: u8 = 11;
/// `INET_DIAG_BC_S_GE`, `INET_DIAG_BC_S_LE`: what older kernels have; both together are
/// equality.
const INET_DIAG_BC_S_GE: u8 = 2;
const INET_DIAG_BC_S_LE: u8 = 3;
/// Every TCP state but `TCP_LISTEN` (10): connections, however far along.
const STATES: u32 = 0xFFE & !(1 << 10);
/// `struct nlmsghdr`, `struct inet_diag_req_v2`, `struct inet_diag_msg`.
const NLMSG_HDR: usize = 16;
const REQ_V2: usize = 56;
const DIAG_MSG: usize = 72;

/// A connection socket: its inode (as `/proc/PID/fd` shows it) and its two ends.
pub type Connections = HashMap<u64, (SocketAddr, SocketAddr)>;

/// Every TCP connection (IPv4 and IPv6) in the agent's network namespace whose local port
/// is one of `ports`, by socket inode, as (local, remote).
pub fn connections_on(ports: &[u16]) -> io::Result<Connections> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(io::Error::from)?;
    let kernel = NetlinkAddr::new(0, 0);
    let mut out = HashMap::new();
    let mut seq = 0;
    for &port in ports {
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            seq += 1;
            // Equality in one op where the kernel has it; else `>=` and `<=`.
            let mut result = Err(io::Error::from(io::ErrorKind::InvalidInput));
            for filter in [Filter::Equal, Filter::Range] {
                let request = dump_request(family, port, filter, seq);
                sendto(fd.as_raw_fd(), &request, &kernel, MsgFlags::empty())
                    .map_err(io::Error::from)?;
                result = read_dump(fd.as_raw_fd(), &mut out);
                match &result {
                    // An unknown filter op: the older form.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => continue,
                    _ => break,
                }
            }
            match result {
                Ok(()) => {}
                // No IPv6 in this kernel.
                Err(e) if family == libc::AF_INET6 as u8 && is_unsupported(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT)
    )
}

#[derive(Debug, Clone, Copy)]
enum Filter {
    Equal,
    Range,
}

/// A dump request for TCP sockets of `family` with local port `port`.
fn dump_request(family: u8, port: u16, filter: Filter, seq: u32) -> Vec<u8> {
    // Each op is `struct inet_diag_bc_op { u8 code; u8 yes; u16 no; }`; a port comparison
    // takes a second op whose `no` holds the port. `yes` jumps to the next test (or past
    // the end: accept), `no` past the end plus 4: reject.
    let bytecode: Vec<u8> = match filter {
        Filter::Equal => op(INET_DIAG_BC_S_EQ, 8, 12)
            .into_iter()
            .chain(op(0, 0, port))
            .collect(),
        Filter::Range => [
            op(INET_DIAG_BC_S_GE, 8, 20),
            op(0, 0, port),
            op(INET_DIAG_BC_S_LE, 8, 12),
            op(0, 0, port),
        ]
        .concat(),
    };
    let attr_len = 4 + bytecode.len();
    let len = NLMSG_HDR + REQ_V2 + attr_len;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&DUMP_REQUEST.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, extensions, padding, states, then a zero
    // inet_diag_sockid (48 bytes).
    m.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    m.extend_from_slice(&STATES.to_ne_bytes());
    m.extend_from_slice(&[0u8; 48]);
    m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    m.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
    m.extend_from_slice(&bytecode);
    m
}

fn op(code: u8, yes: u8, no: u16) -> [u8; 4] {
    let no = no.to_ne_bytes();
    [code, yes, no[0], no[1]]
}

/// Reads the dump's answers until `NLMSG_DONE`.
fn read_dump(fd: std::os::fd::RawFd, out: &mut Connections) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(fd, &mut buf, MsgFlags::empty()).map_err(io::Error::from)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "sock_diag: no answer",
            ));
        }
        let mut rest = &buf[..n];
        while rest.len() >= NLMSG_HDR {
            let len = u32::from_ne_bytes(field(rest, 0)) as usize;
            let kind = u16::from_ne_bytes(field(rest, 4));
            if len < NLMSG_HDR || len > rest.len() {
                return Err(invalid("sock_diag: a truncated message"));
            }
            let body = &rest[NLMSG_HDR..len];
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let code = i32::from_ne_bytes(field(body, 0));
                    return Err(io::Error::from_raw_os_error(-code));
                }
                SOCK_DIAG_BY_FAMILY => {
                    if let Some((inode, local, remote)) = parse_diag_msg(body) {
                        out.insert(inode, (local, remote));
                    }
                }
                _ => {}
            }
            // Messages are 4-byte aligned.
            let next = (len + 3) & !3;
            rest = rest.get(next..).unwrap_or_default();
        }
    }
}

/// `N` bytes at `at`, zeros where the input is short (callers check lengths first).
fn field<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(b) = bytes.get(at..at + N) {
        out.copy_from_slice(b);
    }
    out
}

/// `struct inet_diag_msg`: the socket's family, its ends (ports big-endian, addresses in
/// network order) and its inode.
fn parse_diag_msg(b: &[u8]) -> Option<(u64, SocketAddr, SocketAddr)> {
    if b.len() < DIAG_MSG {
        return None;
    }
    let family = b[0];
    let sport = u16::from_be_bytes(field(b, 4));
    let dport = u16::from_be_bytes(field(b, 6));
    let src: [u8; 16] = field(b, 8);
    let dst: [u8; 16] = field(b, 24);
    let inode = u32::from_ne_bytes(field(b, 68));
    let ip = |a: [u8; 16]| -> Option<IpAddr> {
        if family == libc::AF_INET as u8 {
            Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])))
        } else if family == libc::AF_INET6 as u8 {
            // An IPv4 client of an IPv6 listener shows as ::ffff:a.b.c.d, as in the log.
            Some(IpAddr::V6(Ipv6Addr::from(a)).to_canonical())
        } else {
            None
        }
    };
    Some((
        u64::from(inode),
        SocketAddr::new(ip(src)?, sport),
        SocketAddr::new(ip(dst)?, dport),
    ))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::procfs::Procfs;

    #[test]
    fn finds_the_connections_on_a_port_and_no_others() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _unrelated = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();

        let found = connections_on(&[port]).unwrap();
        let inodes = Procfs::default().socket_inodes(std::process::id()).unwrap();
        let ours: Vec<_> = found
            .iter()
            .filter(|(inode, _)| inodes.contains(inode))
            .map(|(_, ends)| *ends)
            .collect();
        assert_eq!(
            ours,
            [(server.local_addr().unwrap(), peer)],
            "only the accepted end has local port {port}: {found:?}"
        );
        assert_eq!(peer, client.local_addr().unwrap());
        // The text table agrees.
        let text = Procfs::default().tcp_sockets(std::process::id()).unwrap();
        for (inode, (local, remote)) in &found {
            assert!(
                text.iter()
                    .any(|s| s.inode == *inode && s.local == *local && s.remote == *remote),
                "{inode} {local} {remote}"
            );
        }
    }

    #[test]
    fn both_filter_forms_are_well_formed() {
        for filter in [Filter::Equal, Filter::Range] {
            let m = dump_request(libc::AF_INET as u8, 22, filter, 1);
            assert_eq!(u32::from_ne_bytes(field(&m, 0)) as usize, m.len());
            assert_eq!(m.len() % 4, 0);
        }
    }

    #[test]
    fn short_or_foreign_messages_are_skipped() {
        assert!(parse_diag_msg(&[0u8; 10]).is_none());
        let mut b = [0u8; DIAG_MSG];
        b[0] = 99;
        assert!(parse_diag_msg(&b).is_none());
    }
}
