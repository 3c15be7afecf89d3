//! A read that does not wait, on a socket that otherwise blocks (for the
//! connection threads' busy poll, see http::conn_thread). Compiled into
//! unit-test builds too (it calls nothing of collectd's), from lib.rs; it
//! lives under src/host with the other unsafe code.

use std::os::fd::AsFd;
use std::os::fd::AsRawFd;

/// recv(2) with MSG_DONTWAIT: the bytes that are there now, Ok(0) at the
/// end of the stream, or an error of kind WouldBlock when none are there.
/// The socket's own blocking mode (O_NONBLOCK, shared with every handle on
/// it) is left as it is.
pub fn recv_nowait(sock: &impl AsFd, dst: &mut [u8]) -> std::io::Result<usize> {
    let fd = sock.as_fd();
    // SAFETY: `dst` is valid for writes of dst.len() bytes for the whole
    // call, and `fd` is an open descriptor borrowed from `sock` for it.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            dst.as_mut_ptr().cast::<libc::c_void>(),
            dst.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn reads_what_is_there_and_never_waits() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut buf = [0u8; 16];
        let e = recv_nowait(&a, &mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        b.write_all(b"abc").unwrap();
        assert_eq!(recv_nowait(&a, &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
        drop(b);
        assert_eq!(recv_nowait(&a, &mut buf).unwrap(), 0);
    }
}
