//! Plain HTTP connections (TCP without TLS, and the Unix socket of
//! `SocketFile`) served each on a thread of its own that waits for the
//! next request in read(2), as collectd's unixsock plugin does, instead of
//! in the runtime's epoll loop.
//!
//! Why: a request/answer exchange on one connection is bounded by how fast
//! the server wakes for the next request. Measured on 2 vCPUs, a server that
//! does nothing but answer reaches about 0.9x the rate with epoll and a
//! non-blocking read that it reaches waiting in read(2): the extra system
//! call and epoll's wake-up cost more than all of hyper's parsing. Pollers
//! that read one value after another on one connection get unixsock's
//! latency this way.
//!
//! What stays the same: hyper serves the connection with the same service
//! (routes, auth, limits, panics answered with 500), timers and the tasks a
//! request starts run on the server's runtime (its handle is entered), and
//! the connection holds one of MaxConnections' slots. At most
//! `MAX_THREADS` connections are served this way; more go to the runtime,
//! as do TLS connections.
//!
//! A blocking read is only done while no answer is on its way: while a
//! response is being produced or streamed (`in_flight`), reads are
//! non-blocking and wait for readiness on the runtime's reactor, so that an
//! event stream keeps flowing. Between requests the read(2) waits at most
//! ClientTimeout (SO_RCVTIMEO), which closes idle and slow connections as
//! the header timeout does on the runtime's connections.
//!
//! Busy poll (`BusyPoll`, microseconds): a quick client (a poller asking
//! again and again) finds the thread still polling the socket with
//! non-blocking reads after an answer, for at most that long, instead of
//! asleep in read(2). Each exchange then wakes one thread instead of two;
//! on 2 vCPUs that raised the rate of one connection 1.4-2x. Which clients
//! are quick is learnt (`Pace`): one whose request came through read(2)
//! within twice the window of the answer before it; a poll that runs out
//! makes the thread wait in read(2) for the next 2, 4, ... 64 requests
//! before it tries again. Slow and idle clients cost no polling, and fewer
//! threads than CPUs poll at once, so pollers never take every CPU.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::Response;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

use super::Body;

/// Connections served on threads of their own at most (TCP and Unix
/// socket together); more are served by the runtime (epoll).
pub const MAX_THREADS: usize = 16;
/// The most one read takes from the socket (into the connection's scratch
/// buffer).
const READ_CHUNK: usize = 4096;
/// Stack of each connection thread: handlers that need more (full reads)
/// run on the runtime's blocking threads.
const STACK: usize = 512 * 1024;

/// How long a connection thread that has finished its connection waits for
/// the next one before it ends: a client that connects anew for each
/// request (`curl --unix-socket`) reuses threads instead of starting one
/// per request.
const LINGER: Duration = Duration::from_secs(5);

/// One connection for a thread to serve.
type Job = Box<dyn FnOnce() + Send>;

/// A connection's socket, blocking.
pub enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// The same socket registered on the runtime's reactor.
enum Ready {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Sock {
    fn try_clone(&self) -> std::io::Result<Sock> {
        Ok(match self {
            Sock::Tcp(s) => Sock::Tcp(s.try_clone()?),
            Sock::Unix(s) => Sock::Unix(s.try_clone()?),
        })
    }

    pub fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        match self {
            Sock::Tcp(s) => s.set_nonblocking(on),
            Sock::Unix(s) => s.set_nonblocking(on),
        }
    }

    fn set_timeouts(&self, t: Duration) -> std::io::Result<()> {
        match self {
            Sock::Tcp(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
            Sock::Unix(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
        }
    }

    fn shutdown(&self, how: Shutdown) -> std::io::Result<()> {
        match self {
            Sock::Tcp(s) => s.shutdown(how),
            Sock::Unix(s) => s.shutdown(how),
        }
    }

    fn read(&self, dst: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Sock::Tcp(s) => (&*s).read(dst),
            Sock::Unix(s) => (&*s).read(dst),
        }
    }

    /// A read that does not wait (WouldBlock when nothing is there).
    fn read_nowait(&self, dst: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Sock::Tcp(s) => crate::nowait::recv_nowait(s, dst),
            Sock::Unix(s) => crate::nowait::recv_nowait(s, dst),
        }
    }

    fn write(&self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sock::Tcp(s) => (&*s).write(buf),
            Sock::Unix(s) => (&*s).write(buf),
        }
    }

    fn write_vectored(&self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        match self {
            Sock::Tcp(s) => (&*s).write_vectored(bufs),
            Sock::Unix(s) => (&*s).write_vectored(bufs),
        }
    }

    /// A second handle on the socket, registered on the runtime's reactor.
    fn ready(&self) -> std::io::Result<Ready> {
        Ok(match self.try_clone()? {
            Sock::Tcp(s) => Ready::Tcp(tokio::net::TcpStream::from_std(s)?),
            Sock::Unix(s) => Ready::Unix(tokio::net::UnixStream::from_std(s)?),
        })
    }
}

impl Ready {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self {
            Ready::Tcp(s) => s.poll_read_ready(cx),
            Ready::Unix(s) => s.poll_read_ready(cx),
        }
    }

    fn try_read(&self, dst: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Ready::Tcp(s) => s.try_read(dst),
            Ready::Unix(s) => s.try_read(dst),
        }
    }
}

/// The busy poll between requests (`BusyPoll`), shared by the threads.
pub struct BusyPoll {
    /// How long a thread polls for the next request; zero: never.
    window: Duration,
    /// Threads polling now.
    polling: AtomicUsize,
    /// Threads that may poll at once: one fewer than the CPUs (at least
    /// one).
    most: usize,
}

impl BusyPoll {
    pub fn new(window: Duration) -> BusyPoll {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        BusyPoll {
            window,
            polling: AtomicUsize::new(0),
            most: cpus.saturating_sub(1).max(1),
        }
    }

    /// A polling turn, if fewer than `most` threads poll now.
    fn enter(&self) -> Option<PollTurn<'_>> {
        self.polling
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n < self.most).then_some(n + 1)
            })
            .ok()
            .map(|_| PollTurn(self))
    }
}

/// One thread's turn to poll; ends when dropped.
struct PollTurn<'a>(&'a BusyPoll);

impl Drop for PollTurn<'_> {
    fn drop(&mut self) {
        self.0.polling.fetch_sub(1, Ordering::Release);
    }
}

/// The threads serving connections (serving or idle), a handle on each
/// connection's socket to end it at shutdown, and the idle threads'
/// hand-off channels.
pub struct Threads {
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Sock>>,
    threads: Mutex<HashMap<u64, std::thread::JoinHandle<()>>>,
    idle: Mutex<Vec<(u64, std::sync::mpsc::SyncSender<Job>)>>,
    closed: AtomicBool,
    busy_poll: Arc<BusyPoll>,
}

impl Threads {
    /// `busy_poll`: BusyPoll (zero: off).
    pub fn new(busy_poll: Duration) -> Threads {
        Threads {
            next_id: AtomicU64::new(0),
            conns: Mutex::default(),
            threads: Mutex::default(),
            idle: Mutex::default(),
            closed: AtomicBool::new(false),
            busy_poll: Arc::new(BusyPoll::new(busy_poll)),
        }
    }

    /// Serves `stream` on a thread of its own with `serve` (hyper over the
    /// given IO): an idle one, or a new one while there are fewer than
    /// MAX_THREADS. Ok(Some(stream)) gives the stream back when there is
    /// no room (the runtime serves it then).
    pub fn serve<F, Fut>(
        self: &Arc<Self>,
        stream: Sock,
        timeout: Duration,
        slot: OwnedSemaphorePermit,
        on_thread_start: fn(),
        serve: F,
    ) -> std::io::Result<Option<(Sock, OwnedSemaphorePermit)>>
    where
        F: FnOnce(ThreadIo, Arc<Requests>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let has_idle = !self.idle.lock().is_empty();
        if !has_idle && self.threads.lock().len() >= MAX_THREADS {
            return Ok(Some((stream, slot)));
        }
        stream.set_nonblocking(false)?;
        stream.set_timeouts(timeout)?;
        let conn_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().insert(conn_id, stream.try_clone()?);
        let threads = self.clone();
        let busy_poll = self.busy_poll.clone();
        let mut job: Job = Box::new(move || {
            let _slot = slot;
            let requests = Arc::new(Requests::default());
            let io = ThreadIo {
                stream,
                requests: requests.clone(),
                ready: None,
                timeout,
                head_since: None,
                scratch: vec![0; READ_CHUNK].into_boxed_slice(),
                busy_poll,
                answered: None,
                pace: Pace::default(),
            };
            // The connection is forgotten however serving it ends (a
            // panic too): the handle kept for shutdown would keep it open.
            let _forget = Forget(&threads, conn_id);
            block_on(serve(io, requests));
        });
        // An idle thread first; one that has just given up takes no job
        // (the send fails and gives the job back).
        loop {
            let next = self.idle.lock().pop();
            let Some((_, tx)) = next else { break };
            match tx.send(job) {
                Ok(()) => return Ok(None),
                Err(std::sync::mpsc::SendError(j)) => job = j,
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let handle = tokio::runtime::Handle::current();
        let threads = self.clone();
        // Held while the entry is made, so that the thread's own removal
        // cannot come first.
        let mut all = self.threads.lock();
        let spawned = std::thread::Builder::new()
            .name("rest-conn".into())
            .stack_size(STACK)
            .spawn(move || {
                on_thread_start();
                let _rt = handle.enter();
                let mut job = Some(job);
                while let Some(j) = job.take() {
                    // A panic ends the connection (dropped while unwinding),
                    // not the thread: it stays one of the pool's.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(j)).is_err() {
                        log::error!("serving a connection panicked; the connection is closed");
                    }
                    job = threads.next_job(id);
                }
                // Detach: the JoinHandle is dropped here unless shutdown
                // took it to join.
                threads.threads.lock().remove(&id);
            });
        match spawned {
            Ok(t) => {
                all.insert(id, t);
                Ok(None)
            }
            Err(e) => {
                drop(all);
                // The job (and the connection in it) is gone with the
                // closure: forget the connection.
                self.conns.lock().remove(&conn_id);
                Err(e)
            }
        }
    }

    /// Waits up to LINGER, idle, for another connection; None: end.
    fn next_job(&self, id: u64) -> Option<Job> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        {
            let mut idle = self.idle.lock();
            // Shutdown sets `closed` before it empties the list under this
            // lock: an entry pushed after that would wait out LINGER.
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            idle.push((id, tx));
        }
        match rx.recv_timeout(LINGER) {
            Ok(job) => Some(job),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let mut idle = self.idle.lock();
                match idle.iter().position(|(i, _)| *i == id) {
                    // Nobody took this thread: it ends.
                    Some(k) => {
                        idle.swap_remove(k);
                        None
                    }
                    // A connection is being handed over right now: wait
                    // for it (or for the sender to be dropped).
                    None => {
                        drop(idle);
                        rx.recv().ok()
                    }
                }
            }
        }
    }

    /// Ends reading on every connection (an idle one sees the end at
    /// once; a busy one after its answer), and tells idle threads to end.
    pub fn stop_reading(&self) {
        self.closed.store(true, Ordering::Release);
        self.idle.lock().clear();
        for s in self.conns.lock().values() {
            let _ = s.shutdown(Shutdown::Read);
        }
    }

    /// Cuts every connection still open and joins the threads.
    pub fn join_all(&self) {
        self.closed.store(true, Ordering::Release);
        self.idle.lock().clear();
        for s in self.conns.lock().values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let all: Vec<_> = self.threads.lock().drain().map(|(_, t)| t).collect();
        for t in all {
            if t.join().is_err() {
                log::error!("a connection thread panicked");
            }
        }
    }
}

/// Forgets a connection's shutdown handle when dropped.
struct Forget<'a>(&'a Threads, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.conns.lock().remove(&self.1);
    }
}

/// Runs a future to completion on this thread: parks while it is pending;
/// its waker unparks the thread.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// The connection as hyper reads and writes it (through TokioIo).
pub struct ThreadIo {
    stream: Sock,
    /// Whether an answer is on its way, and how many heads arrived.
    requests: Arc<Requests>,
    /// The same socket registered on the runtime's reactor, made the first
    /// time a read must not block.
    ready: Option<Ready>,
    /// ClientTimeout.
    timeout: Duration,
    /// When this connection began to wait for the head that has not
    /// arrived yet, and how many heads had arrived then.
    head_since: Option<(Instant, u64)>,
    /// Where reads land before they are copied to hyper's buffer (which
    /// would have to be zeroed on every read to be read into safely).
    scratch: Box<[u8]>,
    busy_poll: Arc<BusyPoll>,
    /// When the last bytes of an answer were written, until the next read
    /// (only when busy polling is on).
    answered: Option<Instant>,
    /// Whether the next request is polled for.
    pace: Pace,
}

/// Whether a connection's thread polls for the client's next request (see
/// BusyPoll), learnt from how the last ones came.
#[derive(Default, Debug)]
struct Pace {
    /// Poll for the next request.
    poll: bool,
    /// Polls in a row that ran out before their request came.
    misses: u32,
    /// Requests still to wait for in read(2) before polling again.
    backoff: u32,
}

impl Pace {
    /// Requests to wait for in read(2) after the most misses in a row.
    const MOST_BACKOFF: u32 = 64;

    /// A request came through read(2), `gap` after the last answer. The
    /// client is taken to be quick if that is within twice the window: the
    /// gap measured so includes this thread's own wake-up, so a client
    /// that would be caught by a poll can look slower than the window.
    fn slept(&mut self, gap: Duration, window: Duration) {
        self.backoff = self.backoff.saturating_sub(1);
        self.poll = self.backoff == 0 && gap <= window * 2;
    }

    /// A poll found the request: keep polling.
    fn caught(&mut self) {
        self.misses = 0;
    }

    /// A poll ran out: wait in read(2) for the next 2, 4, ... up to 64
    /// requests (this one included) before polling again, so that a
    /// client just slower than the window costs little polling.
    fn missed(&mut self) {
        self.misses = self.misses.saturating_add(1);
        self.backoff = 1 << self.misses.min(Self::MOST_BACKOFF.ilog2());
        self.poll = false;
    }
}

impl ThreadIo {
    /// A read that must not block: waits for readiness on the reactor.
    /// O_NONBLOCK belongs to the socket (shared with the handle registered
    /// on the reactor), so it is set only for this read.
    fn poll_read_ready(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        self.stream.set_nonblocking(true)?;
        let r = self.poll_read_nonblocking(cx, dst);
        self.stream.set_nonblocking(false)?;
        r
    }

    fn poll_read_nonblocking(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let ready = match &mut self.ready {
            Some(r) => r,
            None => self.ready.insert(self.stream.ready()?),
        };
        loop {
            match ready.poll_read_ready(cx) {
                Poll::Ready(r) => r?,
                Poll::Pending => return Poll::Pending,
            }
            match ready.try_read(dst) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                r => return Poll::Ready(r),
            }
        }
    }

    /// One read into `dst`: blocking between requests, waiting on the
    /// reactor while an answer is on its way.
    fn read_into(&mut self, cx: &mut Context<'_>, dst: &mut [u8]) -> Poll<std::io::Result<usize>> {
        let r = if self.requests.in_flight.load(Ordering::Acquire) {
            match self.poll_read_ready(cx, dst) {
                Poll::Ready(r) => r,
                Poll::Pending => return Poll::Pending,
            }
        } else {
            // Between requests: wait in read(2), at most ClientTimeout each
            // time (SO_RCVTIMEO). The whole head must arrive within
            // ClientTimeout of the moment the connection began to wait for
            // it (as with hyper's header timer, which is off on these
            // connections: it costs a timer per request), checked when
            // each read returns, so a trickling head is cut within twice
            // ClientTimeout.
            let now = Instant::now();
            let heads = self.requests.heads.load(Ordering::Relaxed);
            match self.head_since {
                Some((t, h)) if h == heads => {
                    if now.duration_since(t) > self.timeout {
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the request head did not arrive within ClientTimeout",
                        )));
                    }
                }
                _ => self.head_since = Some((now, heads)),
            }
            match self.poll_next(dst) {
                Some(r) => r,
                None => {
                    let r = retry_eintr(|| self.stream.read(dst));
                    // How long the client took this time decides whether
                    // the next request is polled for.
                    if let Some(t) = self.answered.take() {
                        self.pace.slept(t.elapsed(), self.busy_poll.window);
                    }
                    r
                }
            }
        };
        match r {
            Ok(n) => Poll::Ready(Ok(n)),
            // SO_RCVTIMEO ran out: the client was idle or slow too long.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Poll::Ready(Err(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "ClientTimeout"),
            )),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// The busy poll: for a quick client, non-blocking reads for at most
    /// the window after the last answer. None: nothing came (or no poll),
    /// so read(2) waits.
    fn poll_next(&mut self, dst: &mut [u8]) -> Option<std::io::Result<usize>> {
        let since = match self.answered {
            Some(t) if self.pace.poll => t,
            _ => return None,
        };
        let _turn = self.busy_poll.enter()?;
        let until = since + self.busy_poll.window;
        loop {
            match self.stream.read_nowait(dst) {
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::Interrupted => {}
                r => {
                    self.answered = None;
                    self.pace.caught();
                    return Some(r);
                }
            }
            if Instant::now() >= until {
                self.pace.missed();
                return None;
            }
            std::hint::spin_loop();
        }
    }

    /// An answer's bytes were written: the busy poll window starts.
    fn wrote(&mut self) {
        if !self.busy_poll.window.is_zero() {
            self.answered = Some(Instant::now());
        }
    }
}

impl AsyncRead for ThreadIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let want = buf.remaining().min(READ_CHUNK);
        let mut scratch = std::mem::take(&mut this.scratch);
        let r = this.read_into(cx, &mut scratch[..want]);
        if let Poll::Ready(Ok(n)) = r {
            buf.put_slice(&scratch[..n]);
        }
        this.scratch = scratch;
        r.map_ok(|_| ())
    }
}

impl AsyncWrite for ThreadIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // Blocking, at most ClientTimeout (SO_SNDTIMEO): only this
        // connection waits for its client.
        let this = self.get_mut();
        let r = retry_eintr(|| this.stream.write(buf));
        this.wrote();
        Poll::Ready(r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = retry_eintr(|| this.stream.write_vectored(bufs));
        this.wrote();
        Poll::Ready(r)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.stream.shutdown(Shutdown::Write))
    }
}

/// A blocking socket call, again while a signal interrupts it.
fn retry_eintr(mut call: impl FnMut() -> std::io::Result<usize>) -> std::io::Result<usize> {
    loop {
        match call() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// What the service tells the connection's reads.
#[derive(Default)]
pub struct Requests {
    /// An answer is being produced or sent: reads must not block.
    in_flight: AtomicBool,
    /// Request heads received so far.
    heads: AtomicU64,
}

impl Requests {
    /// A request head arrived; its answer is on its way.
    pub fn begin(&self) {
        self.heads.fetch_add(1, Ordering::Relaxed);
        self.in_flight.store(true, Ordering::Release);
    }
}

/// A response body that clears `in_flight` when hyper is done with it
/// (sent, or dropped with the connection).
pub struct Tracked {
    inner: Body,
    requests: Arc<Requests>,
}

impl Tracked {
    pub fn wrap(r: Response<Body>, requests: &Arc<Requests>) -> Response<Tracked> {
        r.map(|inner| Tracked {
            inner,
            requests: requests.clone(),
        })
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.requests.in_flight.store(false, Ordering::Release);
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_polls_for_quick_clients_and_backs_off_after_misses() {
        let w = Duration::from_micros(50);
        let us = Duration::from_micros;
        let mut p = Pace::default();
        assert!(!p.poll, "not before a client has shown its pace");
        p.slept(us(5000), w);
        assert!(!p.poll, "a slow client");
        p.slept(us(80), w);
        assert!(p.poll, "within twice the window: its own wake-up is in it");
        p.caught();
        assert!(p.poll);
        // A miss: read(2) for this request and the next; then, if the
        // client was quick, polling again.
        p.missed();
        assert!(!p.poll);
        p.slept(us(60), w);
        assert!(!p.poll, "backing off");
        p.slept(us(60), w);
        assert!(p.poll);
        // Misses in a row back off longer, up to 64 requests.
        let mut waited = Vec::new();
        for _ in 0..8 {
            p.missed();
            let mut n = 0;
            loop {
                p.slept(us(60), w);
                n += 1;
                if p.poll {
                    break;
                }
            }
            waited.push(n);
        }
        assert_eq!(waited, [4, 8, 16, 32, 64, 64, 64, 64]);
        p.caught();
        p.missed();
        p.slept(us(60), w);
        p.slept(us(60), w);
        assert!(p.poll, "a catch starts the backoff over");
    }

    #[test]
    fn fewer_threads_than_cpus_poll_at_once() {
        let p = BusyPoll::new(Duration::from_micros(50));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(p.most, cpus.saturating_sub(1).max(1));
        let turns: Vec<_> = (0..p.most).map(|_| p.enter().unwrap()).collect();
        assert!(p.enter().is_none(), "one turn too many");
        drop(turns);
        assert_eq!(p.polling.load(Ordering::Relaxed), 0);
        assert!(p.enter().is_some(), "turns come back when they end");
    }
}
