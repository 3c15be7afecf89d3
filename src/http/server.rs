//! The embedded HTTP server: a small tokio runtime on threads of our own,
//! started from collectd's init callback and stopped (and joined) from its
//! shutdown callback. Also runs the plugin's periodic chores: purging expired
//! values and the heartbeat notification.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::CONTENT_LENGTH;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use super::router::{self, Answer, Pending};
use super::{conn_thread, ApiRequest, Body};
use crate::app::{now_secs, App};
use crate::model::{secs_to_cdtime, Notification, Severity};

/// The most a request's head (line and headers) may take: 16 KiB, or 431.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The longest request target: longer gets 414.
const MAX_URI_BYTES: usize = 8 * 1024;
/// How long shutdown waits for requests in flight.
const GRACE: Duration = Duration::from_secs(2);
/// How often expired values are dropped from memory.
const PURGE_EVERY: Duration = Duration::from_secs(10);

pub struct Server {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub addrs: Vec<SocketAddr>,
    /// The Unix socket's path and inode, removed at shutdown if still ours.
    pub socket: Option<(PathBuf, u64)>,
}

/// A bound Unix domain socket (`SocketFile`).
pub struct UnixSocket {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    ino: u64,
}

/// Binds `SocketFile`: a socket file left by a collectd that died is
/// replaced; one that a live process serves, or any other kind of file, is
/// an error (nothing is deleted). The mode and group are set before the
/// first connection is accepted.
pub fn bind_unix(path: &Path, perms: u32, gid: Option<u32>) -> Result<UnixSocket, String> {
    let e = |what: &str, e: std::io::Error| format!("SocketFile {}: {what}: {e}", path.display());
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(format!(
                        "SocketFile {}: another process serves this socket",
                        path.display()
                    ))
                }
                // Nobody listens: a stale socket of an earlier run.
                Err(c) if c.kind() == std::io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)
                        .map_err(|x| e("cannot remove the stale socket", x))?
                }
                Err(c) => return Err(e("cannot probe the existing socket", c)),
            }
        }
        Ok(_) => {
            return Err(format!(
                "SocketFile {}: exists and is not a socket (not removing it)",
                path.display()
            ))
        }
        Err(x) if x.kind() == std::io::ErrorKind::NotFound => {}
        Err(x) => return Err(e("cannot stat", x)),
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(|x| e("bind", x))?;
    let cleanup = |msg: String| {
        let _ = std::fs::remove_file(path);
        msg
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(perms))
        .map_err(|x| cleanup(e("chmod", x)))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|x| cleanup(e("chown", x)))?;
    }
    listener
        .set_nonblocking(true)
        .map_err(|x| cleanup(e("set_nonblocking", x)))?;
    let ino = std::fs::symlink_metadata(path)
        .map_err(|x| cleanup(e("cannot stat", x)))?
        .ino();
    Ok(UnixSocket {
        listener,
        path: path.to_path_buf(),
        ino,
    })
}

/// Binds every address now, so that a bad or busy address fails init with
/// a clear error instead of a silent background failure. An IPv6 address
/// serves IPv6 only (IPV6_V6ONLY, as nginx does), so that `Listen "::"` and
/// `Listen "0.0.0.0"` on one port can both be given.
pub fn bind(addrs: &[SocketAddr]) -> Result<Vec<std::net::TcpListener>, String> {
    use socket2::{Domain, Socket, Type};
    addrs
        .iter()
        .map(|a| {
            let e = |e: std::io::Error| format!("Listen {a}: {e}");
            let s = Socket::new(Domain::for_address(*a), Type::STREAM, None).map_err(e)?;
            if a.is_ipv6() {
                s.set_only_v6(true).map_err(e)?;
            }
            s.set_reuse_address(true).map_err(e)?;
            s.bind(&(*a).into()).map_err(e)?;
            s.listen(1024).map_err(e)?;
            s.set_nonblocking(true).map_err(e)?;
            Ok(s.into())
        })
        .collect()
}

impl Server {
    /// `on_thread_start` runs first in every thread the server starts.
    /// With `tls`, every TCP listener serves HTTPS only; the Unix socket
    /// serves plain HTTP (its traffic does not leave the machine).
    pub fn start(
        app: Arc<App>,
        listeners: Vec<std::net::TcpListener>,
        unix: Option<UnixSocket>,
        tls: Option<Arc<rustls::ServerConfig>>,
        on_thread_start: fn(),
    ) -> std::io::Result<Server> {
        let addrs = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let socket = unix.as_ref().map(|u| (u.path.clone(), u.ino));
        let unix = unix.map(|u| u.listener);
        // Full reads run on the blocking threads (router::bulk): at most
        // 4 at a time, each holding its copy of the values; more wait.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(4)
            .thread_name("rest-http")
            .on_thread_start(on_thread_start)
            .enable_all()
            .build()?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("rest-server".into())
            .spawn(move || {
                on_thread_start();
                rt.block_on(serve(app, listeners, unix, tls, stop_rx, on_thread_start));
                rt.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Server {
            stop: Some(stop_tx),
            thread: Some(thread),
            addrs,
            socket,
        })
    }

    /// Stops accepting, lets requests in flight finish (up to a grace
    /// period), and joins the server threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("the HTTP server thread panicked");
            }
        }
        if let Some((path, ino)) = self.socket.take() {
            // Only the socket we bound: not one a newer process put there.
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.ino() == ino) {
                if let Err(e) = std::fs::remove_file(&path) {
                    log::warn!("cannot remove SocketFile {}: {e}", path.display());
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// An accepted connection.
enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn serve(
    app: Arc<App>,
    listeners: Vec<std::net::TcpListener>,
    unix: Option<std::os::unix::net::UnixListener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: oneshot::Receiver<()>,
    on_thread_start: fn(),
) {
    let graceful = GracefulShutdown::new();
    let threads = Arc::new(conn_thread::Threads::new(Duration::from_micros(
        app.config.busy_poll_us,
    )));
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(app.config.max_connections));
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel(64);
    let mut tasks = Vec::new();
    for l in listeners {
        match tokio::net::TcpListener::from_std(l) {
            Ok(l) => tasks.push(tokio::spawn(accept_loop(Listener::Tcp(l), conn_tx.clone()))),
            Err(e) => log::error!("cannot serve a listener: {e}"),
        }
    }
    if let Some(l) = unix {
        match tokio::net::UnixListener::from_std(l) {
            Ok(l) => tasks.push(tokio::spawn(accept_loop(
                Listener::Unix(l),
                conn_tx.clone(),
            ))),
            Err(e) => log::error!("cannot serve SocketFile: {e}"),
        }
    }
    drop(conn_tx);
    tasks.push(tokio::spawn(purge_loop(app.clone())));
    if app.config.heartbeat_interval > 0.0 {
        tasks.push(tokio::spawn(heartbeat_loop(app.clone())));
    }
    loop {
        tokio::select! {
            // The stop signal, or the Server being dropped.
            _ = &mut stop => break,
            conn = conn_rx.recv() => match conn {
                Some(stream) => match slots.clone().try_acquire_owned() {
                    // Plain HTTP on a thread of its own while there are
                    // threads to spare; TLS on the runtime.
                    Ok(slot) => match (stream, &tls) {
                        (Conn::Tcp(s), None) => {
                            serve_on_thread(&app, &graceful, &threads, Conn::Tcp(s), slot, on_thread_start)
                        }
                        (Conn::Unix(s), _) => {
                            serve_on_thread(&app, &graceful, &threads, Conn::Unix(s), slot, on_thread_start)
                        }
                        (stream, _) => serve_connection(&app, &graceful, stream, tls.clone(), slot),
                    },
                    // MaxConnections reached: close at once.
                    Err(_) => drop(stream),
                },
                None => break,
            },
        }
    }
    for t in &tasks {
        t.abort();
    }
    // Streams end now; other requests get the grace period. Connections
    // waiting in read(2) for their next request see its end.
    let _ = app.closing.send(true);
    threads.stop_reading();
    if tokio::time::timeout(GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        log::info!("requests still in flight at shutdown were cut off");
    }
    // The connection threads use this runtime (timers, tasks): they are
    // joined before it stops.
    let t = threads.clone();
    if tokio::task::spawn_blocking(move || t.join_all())
        .await
        .is_err()
    {
        log::error!("joining the connection threads failed");
    }
}

/// A plain HTTP connection (TCP without TLS, or the Unix socket) on a
/// thread of its own (see `conn_thread`), or on the runtime when no thread
/// is free.
fn serve_on_thread(
    app: &Arc<App>,
    graceful: &GracefulShutdown,
    threads: &Arc<conn_thread::Threads>,
    stream: Conn,
    slot: OwnedSemaphorePermit,
    on_thread_start: fn(),
) {
    let what = match &stream {
        Conn::Tcp(_) => "TCP",
        Conn::Unix(_) => "SocketFile",
    };
    let sock = match stream {
        Conn::Tcp(s) => {
            let _ = s.set_nodelay(true);
            s.into_std().map(conn_thread::Sock::Tcp)
        }
        Conn::Unix(s) => s.into_std().map(conn_thread::Sock::Unix),
    };
    let sock = match sock {
        Ok(s) => s,
        Err(e) => {
            log::warn!("{what}: cannot take over a connection: {e}");
            return;
        }
    };
    let a = app.clone();
    let watcher = graceful.watcher();
    let timeout = Duration::from_secs_f64(app.config.client_timeout);
    let served = threads.serve(sock, timeout, slot, on_thread_start, move |io, requests| {
        let svc = service(a.clone());
        let tracked = service_fn(move |req| {
            requests.begin();
            let answer = hyper::service::Service::call(&svc, req);
            let requests = requests.clone();
            async move {
                let r = answer.await;
                r.map(|r| conn_thread::Tracked::wrap(r, &requests))
            }
        });
        // Half-close: no read to look for the client's end while an
        // answer is on its way (a read there could not block); a client
        // gone is seen when writing fails. The header timeout is the
        // connection's own (see conn_thread).
        let conn = builder(&a)
            .half_close(true)
            .header_read_timeout(None)
            .serve_connection(TokioIo::new(io), tracked);
        async move {
            let _ = watcher.watch(conn).await;
        }
    });
    match served {
        Ok(None) => {}
        // No thread free: the runtime serves it.
        Ok(Some((sock, slot))) => {
            let conn = sock.set_nonblocking(true).and_then(|()| {
                Ok(match sock {
                    conn_thread::Sock::Tcp(s) => Conn::Tcp(tokio::net::TcpStream::from_std(s)?),
                    conn_thread::Sock::Unix(s) => Conn::Unix(tokio::net::UnixStream::from_std(s)?),
                })
            });
            match conn {
                Ok(c) => serve_connection(app, graceful, c, None, slot),
                Err(e) => log::warn!("{what}: cannot serve a connection: {e}"),
            }
        }
        Err(e) => log::warn!("{what}: cannot start a connection thread: {e}"),
    }
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Conn> {
        match self {
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| Conn::Tcp(s)),
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
        }
    }
}

async fn accept_loop(listener: Listener, conns: tokio::sync::mpsc::Sender<Conn>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if conns.send(stream).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                log::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One connection, in a task of its own: on TCP, the TLS handshake if any
/// (within ClientTimeout); then HTTP/1.1. `slot` is held while it lives.
fn serve_connection(
    app: &Arc<App>,
    graceful: &GracefulShutdown,
    conn: Conn,
    tls: Option<tokio_rustls::TlsAcceptor>,
    slot: OwnedSemaphorePermit,
) {
    let app = app.clone();
    let watcher = graceful.watcher();
    let timeout = Duration::from_secs_f64(app.config.client_timeout);
    tokio::spawn(async move {
        let _slot = slot;
        match (conn, tls) {
            (Conn::Tcp(stream), Some(acceptor)) => {
                let _ = stream.set_nodelay(true);
                let Ok(Ok(stream)) = tokio::time::timeout(timeout, acceptor.accept(stream)).await
                else {
                    return;
                };
                let _ = watcher.watch(http(app, stream)).await;
            }
            (Conn::Tcp(stream), None) => {
                let _ = stream.set_nodelay(true);
                let _ = watcher.watch(http(app, stream)).await;
            }
            (Conn::Unix(stream), _) => {
                let _ = watcher.watch(http(app, stream)).await;
            }
        }
    });
}

/// A per-connection token bucket: RateLimit requests per second, bursts of
/// one second's worth (at least one request).
struct Bucket {
    rate: f64,
    tokens: f64,
    last: std::time::Instant,
}

impl Bucket {
    fn new(rate: f64, now: std::time::Instant) -> Bucket {
        Bucket {
            rate,
            tokens: rate.max(1.0),
            last: now,
        }
    }

    /// Ok: the request may run. Err: whole seconds until one may
    /// (Retry-After).
    fn take(&mut self, now: std::time::Instant) -> Result<(), u64> {
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate)
            .min(self.rate.max(1.0));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// HTTP/1.1 on one connection (plain or TLS).
fn http<I>(
    app: Arc<App>,
    io: I,
) -> http1::Connection<
    TokioIo<I>,
    impl hyper::service::Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future = impl Send,
    >,
>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    builder(&app).serve_connection(TokioIo::new(io), service(app))
}

/// The HTTP/1.1 settings of every connection.
fn builder(app: &App) -> http1::Builder {
    let timeout = Duration::from_secs_f64(app.config.client_timeout);
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    b
}

/// The API as a hyper service, for one connection (RateLimit counts per
/// connection).
fn service(
    app: Arc<App>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = Reply,
> {
    let bucket = (app.config.rate_limit > 0.0).then(|| {
        Arc::new(parking_lot::Mutex::new(Bucket::new(
            app.config.rate_limit,
            std::time::Instant::now(),
        )))
    });
    service_fn(move |req| {
        let limited = match &bucket {
            Some(b) => b.lock().take(std::time::Instant::now()).err(),
            None => None,
        };
        if let Some(secs) = limited {
            let mut r = ApiError::new(
                hyper::StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "this connection sends more requests per second than RateLimit allows",
            )
            .into_response();
            r.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from(secs),
            );
            return Reply::Now(Some(r));
        }
        // A panic in a handler is answered with a 500 instead of a dropped
        // connection (without a task of its own per request: that costs a
        // hand-off between threads on every request). Most requests are
        // answered here and then, without a future of their own.
        match std::panic::catch_unwind(AssertUnwindSafe(|| serve_request(&app, req))) {
            Ok(Answer::Now(r)) => Reply::Now(Some(r)),
            Ok(Answer::Later(f)) => Reply::Later(CatchPanic(f)),
            Err(_) => Reply::Now(Some(panicked())),
        }
    })
}

/// What a request was answered with (a panic: `panicked`).
fn panicked() -> Response<Body> {
    ApiError::internal("the request failed inside the plugin; see collectd's log").into_response()
}

/// The service's future: the answer at hand, or the request still running.
enum Reply {
    Now(Option<Response<Body>>),
    Later(CatchPanic),
}

impl Future for Reply {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Reply::Now(r) => Poll::Ready(Ok(r.take().unwrap_or_else(panicked))),
            Reply::Later(f) => Pin::new(f)
                .poll(cx)
                .map(|r| Ok(r.unwrap_or_else(|()| panicked()))),
        }
    }
}

/// A future that turns a panic while it is polled into `Err(())`; it is
/// not polled again after that.
struct CatchPanic(Pending);

impl Future for CatchPanic {
    type Output = Result<Response<Body>, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

/// Checks the request's size and hands it to the router: at once when it
/// has no body, else once its body (bounded by MaxRequestBytes) is read.
fn serve_request(app: &Arc<App>, req: Request<Incoming>) -> Answer {
    let received = now_secs();
    if uri_len(req.uri()) > MAX_URI_BYTES {
        return Answer::Now(
            ApiError::new(
                hyper::StatusCode::URI_TOO_LONG,
                "uri_too_long",
                format!("the request target is longer than {MAX_URI_BYTES} bytes"),
            )
            .into_response(),
        );
    }
    let max = app.config.max_request_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Answer::Now(ApiError::payload_too_large(max).into_response());
    }
    let (parts, body) = req.into_parts();
    let request = move |body| ApiRequest {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body,
        received: Some(received),
    };
    // No body (a GET, say): nothing to wait for, so no timer to arm.
    if body.is_end_stream() {
        return router::handle_now(app, request(Bytes::new()));
    }
    let app = app.clone();
    Answer::Later(Box::pin(async move {
        match read_body(&app, body).await {
            Ok(b) => router::handle(&app, request(b)).await,
            Err(resp) => *resp,
        }
    }))
}

/// The length of the request target as the client sent it (without
/// formatting it into a new string).
fn uri_len(uri: &hyper::Uri) -> usize {
    uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len())
}

/// Reads a request body, bounded by MaxRequestBytes and ClientTimeout; the
/// error is the answer to send.
async fn read_body(app: &App, body: Incoming) -> Result<Bytes, Box<Response<Body>>> {
    let max = app.config.max_request_bytes;
    let timeout = Duration::from_secs_f64(app.config.client_timeout);
    let Ok(read) = tokio::time::timeout(timeout, Limited::new(body, max).collect()).await else {
        return Err(ApiError::new(
            hyper::StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive within ClientTimeout",
        )
        .into_response()
        .into());
    };
    match read {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::payload_too_large(max).into_response().into())
        }
        Err(e) => Err(
            ApiError::bad_request("bad_body", format!("cannot read the body: {e}"))
                .into_response()
                .into(),
        ),
    }
}

async fn purge_loop(app: Arc<App>) {
    let mut tick = tokio::time::interval(PURGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        app.values.purge_expired();
    }
}

/// Dispatches an `okay` notification (plugin rest, type_instance heartbeat)
/// every HeartbeatInterval seconds, so notification consumers see that
/// collectd and the plugin are alive.
async fn heartbeat_loop(app: Arc<App>) {
    let period = Duration::from_secs_f64(app.config.heartbeat_interval);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let stats = app.values.stats();
        let n = Notification {
            severity: Severity::Okay,
            time: secs_to_cdtime(now_secs()),
            message: format!(
                "rest heartbeat: collectd alive, uptime {:.0} s, {} values received",
                app.uptime(),
                stats.values_received
            ),
            host: app.info.hostname.clone(),
            plugin: "rest".into(),
            plugin_instance: String::new(),
            type_: String::new(),
            type_instance: "heartbeat".into(),
            meta: Vec::new(),
        };
        match app.control.run(move |c| c.dispatch_notification(&n)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::warn!("heartbeat notification: {e}"),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bucket;
    use std::time::{Duration, Instant};

    #[test]
    fn rate_limit_bucket() {
        let t0 = Instant::now();
        // 2 per second: a burst of 2, then one every 0.5 s.
        let mut b = Bucket::new(2.0, t0);
        assert_eq!(b.take(t0), Ok(()));
        assert_eq!(b.take(t0), Ok(()));
        assert_eq!(b.take(t0), Err(1));
        assert_eq!(b.take(t0 + Duration::from_millis(500)), Ok(()));
        // Idle time does not bank more than one second's worth.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(b.take(later), Ok(()));
        assert_eq!(b.take(later), Ok(()));
        assert!(b.take(later).is_err());
        // Below one per second: one request, then Retry-After says when.
        let mut slow = Bucket::new(0.25, t0);
        assert_eq!(slow.take(t0), Ok(()));
        assert_eq!(slow.take(t0), Err(4));
        assert_eq!(slow.take(t0 + Duration::from_secs(4)), Ok(()));
    }
}
