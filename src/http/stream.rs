//! `GET /v1/notifications/stream`: notifications as Server-Sent Events.
//!
//! Each subscriber is a task that reads the notification ring from its own
//! cursor and feeds a small channel that the response body drains. collectd
//! never waits for a subscriber: the notification callback only appends to
//! the ring and wakes the tasks. A subscriber that reads too slowly falls
//! behind in the ring; what was evicted before it got there is announced as
//! an `event: lost` with the count, and the stream goes on from the oldest
//! notification still buffered.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use tokio::sync::{mpsc, watch};

use super::error::ApiError;
use super::json::NotificationJson;
use super::request::ApiRequest;
use super::Body;
use crate::app::App;
use crate::store::NotificationFilter;

/// Events buffered per subscriber between its task and its socket.
const CHANNEL_EVENTS: usize = 64;
/// A comment line this often keeps proxies from closing an idle stream and
/// tells us when the client has gone.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Notifications read from the ring per pass.
const BATCH: usize = 256;

/// The response body: frames from the subscriber's task.
struct SseBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Where a stream starts: `Last-Event-ID` (a reconnecting EventSource) or
/// `since`, else at the newest notification (only what comes next).
fn start_cursor(app: &App, req: &ApiRequest, since: Option<u64>) -> Result<u64, ApiError> {
    if let Some(v) = req.headers.get("last-event-id") {
        return v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::bad_request("invalid_header", "Last-Event-ID must be a sequence number")
            });
    }
    Ok(since.unwrap_or_else(|| app.notifications.last_seq()))
}

pub fn subscribe(
    app: &Arc<App>,
    req: &ApiRequest,
    closing: watch::Receiver<bool>,
) -> Result<Response<Body>, ApiError> {
    let q = req.query(&["since", "severity", "plugin"])?;
    let since = q.u64("since", 0, u64::MAX - 1)?;
    let filter = super::handlers::notification_filter(&q)?;
    let cursor = start_cursor(app, req, since)?;
    let (tx, rx) = mpsc::channel(CHANNEL_EVENTS);
    tokio::spawn(feed(app.clone(), filter, cursor, tx, closing));
    let mut resp = Response::new(SseBody(rx).boxed());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// One subscriber: from `cursor` on, every notification matching `filter`.
async fn feed(
    app: Arc<App>,
    filter: NotificationFilter,
    mut cursor: u64,
    tx: mpsc::Sender<Bytes>,
    mut closing: watch::Receiver<bool>,
) {
    // A first comment so the client sees the stream is open at once.
    if tx
        .send(Bytes::from_static(b": collectd-rest notifications\n\n"))
        .await
        .is_err()
    {
        return;
    }
    loop {
        // Register for the wake-up before reading, so nothing slips between.
        let arrived = app.notifications.arrived.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        loop {
            let page = app.notifications.read(cursor, &filter, BATCH);
            if page.lost > 0 {
                let ev = format!("event: lost\ndata: {{\"lost\":{}}}\n\n", page.lost);
                if tx.send(Bytes::from(ev)).await.is_err() {
                    return;
                }
            }
            for n in &page.items {
                let json = match serde_json::to_string(&NotificationJson::from(&**n)) {
                    Ok(j) => j,
                    Err(_) => continue,
                };
                let ev = format!("id: {}\nevent: notification\ndata: {json}\n\n", n.seq);
                if tx.send(Bytes::from(ev)).await.is_err() {
                    return;
                }
            }
            let more = page.cursor > cursor && page.items.len() == BATCH;
            cursor = page.cursor;
            if !more {
                break;
            }
        }
        tokio::select! {
            _ = &mut arrived => {}
            _ = tokio::time::sleep(KEEPALIVE) => {
                if tx.send(Bytes::from_static(b": keepalive\n\n")).await.is_err() {
                    return;
                }
            }
            _ = closing.changed() => return,
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::AgentInfo;
    use crate::config::Config;
    use crate::control::Control;
    use crate::model::{Notification, Severity};

    fn app(buffer: usize) -> Arc<App> {
        let dir = std::env::temp_dir().join(format!("rest-stream-{}-{buffer}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = Config {
            notification_buffer_size: buffer,
            state_dir: Some(dir),
            ..Config::default()
        };
        let info = AgentInfo {
            hostname: "h".into(),
            interval: 10.0,
            timeout_factor: 2,
            plugin_dir: None,
            collectd_version: "5.12.0".into(),
            fault_plugin: None,
            clock: || None,
        };
        let auth = crate::auth::Authenticator::new(&config).unwrap();
        Arc::new(App::new(config, info, Control::new().0, auth))
    }

    fn notification(i: usize) -> Notification {
        Notification {
            severity: Severity::Okay,
            time: 1 << 30,
            message: format!("n{i}"),
            host: "h".into(),
            plugin: "p".into(),
            plugin_instance: String::new(),
            type_: String::new(),
            type_instance: String::new(),
            meta: vec![],
        }
    }

    async fn next(rx: &mut mpsc::Receiver<Bytes>) -> String {
        let b = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an event")
            .expect("stream open");
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn events_in_order_then_lost_count_for_a_slow_reader() {
        let app = app(4);
        let (tx, mut rx) = mpsc::channel(1);
        let (_closing_tx, closing) = watch::channel(false);
        tokio::spawn(feed(
            app.clone(),
            NotificationFilter::default(),
            0,
            tx,
            closing,
        ));
        assert!(next(&mut rx).await.starts_with(": collectd-rest"));
        app.notifications.push(notification(1));
        let ev = next(&mut rx).await;
        assert!(
            ev.starts_with("id: 1\nevent: notification\ndata: {"),
            "{ev}"
        );
        assert!(ev.contains("\"message\":\"n1\""), "{ev}");
        assert!(ev.ends_with("\n\n"));
        // The reader stalls while 20 more arrive; the ring keeps 4. The task
        // blocks on the full channel with at most one event in hand.
        for i in 2..=21 {
            app.notifications.push(notification(i));
        }
        let mut seen = Vec::new();
        let mut lost = 0;
        while seen.last() != Some(&21) {
            let ev = next(&mut rx).await;
            if let Some(rest) = ev.strip_prefix("event: lost\ndata: {\"lost\":") {
                lost += rest.trim_end_matches("}\n\n").parse::<u64>().unwrap();
            } else {
                let id = ev.lines().next().unwrap().strip_prefix("id: ").unwrap();
                seen.push(id.parse::<u64>().unwrap());
            }
        }
        assert!(lost > 0, "the slow reader is told what it missed");
        assert_eq!(
            seen.len() as u64 + lost,
            20,
            "every notification seen or counted lost: {seen:?}"
        );
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    }

    #[tokio::test]
    async fn filters_and_closing() {
        let app = app(100);
        let (tx, mut rx) = mpsc::channel(8);
        let (closing_tx, closing) = watch::channel(false);
        let filter = NotificationFilter {
            severity: Some(Severity::Failure),
            plugin: None,
        };
        let task = tokio::spawn(feed(app.clone(), filter, 0, tx, closing));
        next(&mut rx).await;
        app.notifications.push(notification(1));
        let mut failure = notification(2);
        failure.severity = Severity::Failure;
        app.notifications.push(failure);
        let ev = next(&mut rx).await;
        assert!(ev.starts_with("id: 2\n"), "only the failure: {ev}");
        closing_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert!(rx.recv().await.is_none(), "the stream ends");
    }
}
