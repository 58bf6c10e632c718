//! Transparent listeners of `mpbridge local`: where the firewall diverts the
//! clients' TCP (TPROXY or REDIRECT), and how each diverted connection's
//! original destination is learned.

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

use crate::config::InterceptionMode;

/// Listen backlog for diverted connections: a burst of page loads opens many.
const BACKLOG: i32 = 1024;

/// Why a diverted connection's original destination is unknown.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// REDIRECT mode, but conntrack has no NAT entry: the client reached the
    /// listener directly instead of being diverted to it.
    #[error(
        "the connection was not diverted by a REDIRECT rule (no NAT entry); \
         check the firewall rule that sends client TCP to this port"
    )]
    NotRedirected,
    /// The kernel refused the lookup.
    #[error("cannot read the original destination: {0}")]
    Io(#[from] io::Error),
    /// The destination is this listener itself: serving it would loop.
    #[error("the original destination {0} is the listener itself (a loop); refused")]
    Loop(SocketAddr),
}

/// Binds a listener for diverted connections. TPROXY needs `IP_TRANSPARENT`
/// (and so CAP_NET_ADMIN) to accept connections addressed to other hosts.
pub fn bind(addr: SocketAddr, mode: InterceptionMode) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        None,
    )?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if mode == InterceptionMode::Tproxy {
        match addr {
            SocketAddr::V4(_) => socket.set_ip_transparent_v4(true),
            SocketAddr::V6(_) => socket.set_ip_transparent_v6(true),
        }
        .map_err(|e| {
            let hint = match e.raw_os_error() {
                // qemu-user passes no IP_TRANSPARENT through to the kernel.
                Some(libc::ENOPROTOOPT) => {
                    "this system does not know IP_TRANSPARENT (an emulator such as qemu-user?); \
                     use intercept = \"redirect\""
                }
                _ => "needs CAP_NET_ADMIN",
            };
            io::Error::new(
                e.kind(),
                format!("cannot make {addr} a transparent (TPROXY) listener: {e} ({hint})"),
            )
        })?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// The address the client meant to reach.
pub fn original_destination(
    stream: &TcpStream,
    mode: InterceptionMode,
) -> Result<SocketAddr, DestinationError> {
    let local = stream.local_addr()?;
    match mode {
        // TPROXY keeps the original destination as the socket's own address.
        InterceptionMode::Tproxy => Ok(canonical(local)),
        InterceptionMode::Redirect => {
            let found = match local {
                SocketAddr::V4(_) => {
                    rustix::net::sockopt::ip_original_dst(stream).map(SocketAddr::V4)
                }
                SocketAddr::V6(_) => {
                    rustix::net::sockopt::ipv6_original_dst(stream).map(SocketAddr::V6)
                }
            };
            match found {
                Ok(addr) => Ok(canonical(addr)),
                Err(rustix::io::Errno::NOENT) => Err(DestinationError::NotRedirected),
                Err(e) => Err(DestinationError::Io(e.into())),
            }
        }
    }
}

/// Checks that serving a connection to `dest` would not come straight back
/// to one of our listeners.
pub fn check_loop(
    dest: SocketAddr,
    listeners: &[SocketAddr],
    own: &[IpAddr],
) -> Result<(), DestinationError> {
    let hits_listener = listeners.iter().any(|l| {
        l.port() == dest.port()
            && (l.ip() == dest.ip() || (l.ip().is_unspecified() && own.contains(&dest.ip())))
    });
    if hits_listener || dest.ip().is_unspecified() {
        return Err(DestinationError::Loop(dest));
    }
    Ok(())
}

/// IPv4-mapped IPv6 addresses are IPv4 destinations.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_destination_that_is_the_listener_is_a_loop() {
        let listeners = [sa("0.0.0.0:12345"), sa("[::]:12345")];
        let own: Vec<IpAddr> = vec!["10.10.0.1".parse().unwrap(), "fd00:10::1".parse().unwrap()];
        assert!(check_loop(sa("10.10.0.1:12345"), &listeners, &own).is_err());
        assert!(check_loop(sa("[fd00:10::1]:12345"), &listeners, &own).is_err());
        assert!(check_loop(sa("0.0.0.0:80"), &listeners, &own).is_err());
        // Same port on another host, or another port here: fine.
        assert!(check_loop(sa("10.30.0.2:12345"), &listeners, &own).is_ok());
        assert!(check_loop(sa("10.10.0.1:80"), &listeners, &own).is_ok());
    }

    #[test]
    fn a_listener_bound_to_one_address_loops_only_on_that_address() {
        let listeners = [sa("10.10.0.1:12345")];
        assert!(check_loop(sa("10.10.0.1:12345"), &listeners, &[]).is_err());
        assert!(check_loop(sa("10.10.0.9:12345"), &listeners, &[]).is_ok());
    }

    #[test]
    fn mapped_addresses_become_ipv4() {
        assert_eq!(canonical(sa("[::ffff:10.0.0.1]:80")), sa("10.0.0.1:80"));
        assert_eq!(canonical(sa("[fd00::1]:80")), sa("[fd00::1]:80"));
    }

    #[tokio::test]
    async fn redirect_mode_without_a_nat_entry_says_not_redirected() {
        let listener = bind(sa("127.0.0.1:0"), InterceptionMode::Redirect).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        match original_destination(&accepted, InterceptionMode::Redirect) {
            // Without conntrack loaded the kernel answers ENOENT.
            Err(DestinationError::NotRedirected) => {}
            // With conntrack tracking loopback, the "original" is the listener.
            Ok(dest) => assert!(check_loop(dest, &[addr], &[]).is_err()),
            Err(e) => panic!("unexpected: {e}"),
        }
    }
}
