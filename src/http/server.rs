//! The embedded HTTP server: a small tokio runtime on threads of our own,
//! started from collectd's init callback and stopped (and joined) from its
//! shutdown callback. Also runs the plugin's periodic chores: purging expired
//! values and the heartbeat notification.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::oneshot;

use super::error::ApiError;
use super::{router, ApiRequest, Body};
use crate::app::{now_secs, App};
use crate::model::{secs_to_cdtime, Notification, Severity};

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for requests in flight.
const GRACE: Duration = Duration::from_secs(2);
/// How often expired values are dropped from memory.
const PURGE_EVERY: Duration = Duration::from_secs(10);

pub struct Server {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub addrs: Vec<SocketAddr>,
}

/// Binds every address now, so that a bad or busy address fails init with
/// a clear error instead of a silent background failure.
pub fn bind(addrs: &[SocketAddr]) -> Result<Vec<std::net::TcpListener>, String> {
    addrs
        .iter()
        .map(|a| {
            let l = std::net::TcpListener::bind(a).map_err(|e| format!("Listen {a}: {e}"))?;
            l.set_nonblocking(true)
                .map_err(|e| format!("Listen {a}: {e}"))?;
            Ok(l)
        })
        .collect()
}

impl Server {
    /// `on_thread_start` runs first in every thread the server starts.
    pub fn start(
        app: Arc<App>,
        listeners: Vec<std::net::TcpListener>,
        on_thread_start: fn(),
    ) -> std::io::Result<Server> {
        let addrs = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rest-http")
            .on_thread_start(on_thread_start)
            .enable_all()
            .build()?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("rest-server".into())
            .spawn(move || {
                on_thread_start();
                rt.block_on(serve(app, listeners, stop_rx));
                rt.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Server {
            stop: Some(stop_tx),
            thread: Some(thread),
            addrs,
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
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn serve(
    app: Arc<App>,
    listeners: Vec<std::net::TcpListener>,
    mut stop: oneshot::Receiver<()>,
) {
    let graceful = GracefulShutdown::new();
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel(64);
    let mut tasks = Vec::new();
    for l in listeners {
        match tokio::net::TcpListener::from_std(l) {
            Ok(l) => tasks.push(tokio::spawn(accept_loop(l, conn_tx.clone()))),
            Err(e) => log::error!("cannot serve a listener: {e}"),
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
                Some(stream) => serve_connection(&app, &graceful, stream),
                None => break,
            },
        }
    }
    for t in &tasks {
        t.abort();
    }
    // Streams end now; other requests get the grace period.
    let _ = app.closing.send(true);
    if tokio::time::timeout(GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        log::info!("requests still in flight at shutdown were cut off");
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    conns: tokio::sync::mpsc::Sender<tokio::net::TcpStream>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
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

fn serve_connection(app: &Arc<App>, graceful: &GracefulShutdown, stream: tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let app = app.clone();
    let svc = service_fn(move |req| {
        // Each request runs as a task of its own, so that a panic in a
        // handler is answered with a 500 instead of a dropped connection.
        let task = tokio::spawn(serve_request(app.clone(), req));
        async move {
            Ok::<_, Infallible>(task.await.unwrap_or_else(|_| {
                ApiError::internal("the request failed inside the plugin; see collectd's log")
                    .into_response()
            }))
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        // Errors here are the client's (reset, timeout): nothing to do.
        let _ = conn.await;
    });
}

/// Reads the body (bounded by MaxRequestBytes) and hands the request to the
/// router.
async fn serve_request(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let received = now_secs();
    let max = app.config.max_request_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return ApiError::payload_too_large(max).into_response();
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return ApiError::payload_too_large(max).into_response()
        }
        Err(e) => {
            return ApiError::bad_request("bad_body", format!("cannot read the body: {e}"))
                .into_response()
        }
    };
    let api_req = ApiRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(String::from),
        headers: parts.headers,
        body,
        received: Some(received),
    };
    router::handle(&app, api_req).await
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
