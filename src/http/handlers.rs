//! One function per route. Handlers validate everything before they change
//! anything, take what they need from the stores (which copy under their
//! locks), and serialize with no lock held.

use std::borrow::Cow;
use std::sync::Arc;

use hyper::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::ApiError;
use super::json::{JsonOut, NotificationJson};
use super::request::{ApiRequest, Query};
use super::{json_response, raw_json_response, Body, OPENAPI};
use crate::app::{now_secs, App};
use crate::model::{
    identifier_fields, parse_identifier, secs_to_cdtime, valid_plugin_name, Notification, Severity,
    MAX_MESSAGE_LEN, MAX_NAME_LEN,
};
use crate::store::{Filter, NotificationFilter};

type Result<T> = std::result::Result<T, ApiError>;

const FILTER_KEYS: [&str; 5] = ["host", "plugin", "plugin_instance", "type", "type_instance"];

fn value_filter(q: &Query) -> Filter {
    let get = |k: &str| q.get(k).map(String::from);
    Filter {
        host: get("host"),
        plugin: get("plugin"),
        plugin_instance: get("plugin_instance"),
        type_: get("type"),
        type_instance: get("type_instance"),
    }
}

pub fn health(app: &App, req: &ApiRequest) -> Result<Response<Body>> {
    req.query(&[])?;
    let stats = app.values.stats();
    let now = now_secs();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "uptime": app.uptime(),
            "version": env!("CARGO_PKG_VERSION"),
            "collectd_version": app.info.collectd_version,
            "hostname": app.info.hostname,
            "time": now,
            "values_received": stats.values_received,
            "last_value_time": stats.last_value_age.map(|age| now - age),
            "last_value_age": stats.last_value_age,
        }),
    ))
}

/// What this build can do, for clients that adapt to the agent.
pub const FEATURES: &[&str] = &[
    "values",
    "metrics",
    "history",
    "prometheus",
    "notifications",
    "notification_stream",
    "flush",
    "heartbeat",
    "time",
    "plugins",
    "thresholds",
    "blacklist",
];

pub async fn capabilities(app: &Arc<App>, req: &ApiRequest) -> Result<Response<Body>> {
    req.query(&[])?;
    let available = app.info.available_plugins();
    // The plugins that run (state enabled), as the plugin manager sees them
    // on the control thread.
    let a = app.clone();
    let loaded: Vec<String> = app
        .control
        .run(move |_| {
            a.plugins
                .list(Some(crate::plugins::PluginState::Enabled))
                .into_iter()
                .map(|p| p.name)
                .collect()
        })
        .await?;
    let c = &app.config;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "api_version": "v1",
            "version": env!("CARGO_PKG_VERSION"),
            "collectd_version": app.info.collectd_version,
            "hostname": app.info.hostname,
            "interval": app.info.interval,
            "plugin_dir": app.info.plugin_dir,
            "features": FEATURES,
            "plugins": {"available": available, "loaded": loaded},
            "limits": {
                "max_request_bytes": c.max_request_bytes,
                "history_size": c.history_size,
                "notification_buffer_size": c.notification_buffer_size,
                "timeout_factor": app.info.timeout_factor,
                "max_name_length": MAX_NAME_LEN,
                "max_message_length": MAX_MESSAGE_LEN,
            },
            "auth": app.auth.kinds(),
        }),
    ))
}

/// NTP-style exchange: the client sends its clock reading t0, we answer
/// with the time the request arrived (t1) and the time we answer (t2); with
/// its own receive time t3 the client computes
/// offset = ((t1 - t0) + (t2 - t3)) / 2 and delay = (t3 - t0) - (t2 - t1).
pub fn time(app: &App, req: &ApiRequest) -> Result<Response<Body>> {
    let t1 = req.received.unwrap_or_else(now_secs);
    let q = req.query(&["t0"])?;
    let t0 = match q.get("t0") {
        None => None,
        Some(s) => Some(
            s.parse::<f64>()
                .ok()
                .filter(|t| t.is_finite())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_parameter",
                        format!("t0 must be a number of seconds, got {s:?}"),
                    )
                })?,
        ),
    };
    let clock = (app.info.clock)();
    let t2 = now_secs();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "t0": t0,
            "t1": t1,
            "t2": t2,
            "clock": clock,
            "interval": app.info.interval,
        }),
    ))
}

pub fn openapi(req: &ApiRequest) -> Result<Response<Body>> {
    req.query(&[])?;
    Ok(raw_json_response(
        StatusCode::OK,
        OPENAPI.as_bytes().to_vec(),
    ))
}

pub fn metrics(app: &App, req: &ApiRequest) -> Result<Response<Body>> {
    let q = req.query(&FILTER_KEYS)?;
    let snap = app.values.snapshot(&value_filter(&q), false);
    let mut o = JsonOut::with_capacity(snap.entries.len() * 224 + 16);
    o.raw("{\"metrics\":");
    o.entries(&snap, JsonOut::metric);
    o.raw("}");
    Ok(raw_json_response(StatusCode::OK, o.buf))
}

/// The latest values in the Prometheus text format (see `prometheus`).
pub fn prometheus(app: &App, req: &ApiRequest) -> Result<Response<Body>> {
    let q = req.query(&FILTER_KEYS)?;
    let snap = app.values.snapshot(&value_filter(&q), true);
    let text = super::prometheus::render(&snap, &app.info.hostname);
    let mut resp = raw_json_response(StatusCode::OK, text.into_bytes());
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(resp)
}

pub fn values(app: &App, req: &ApiRequest) -> Result<Response<Body>> {
    let q = req.query(&FILTER_KEYS)?;
    let filter = value_filter(&q);
    if let Some(p) = &filter.plugin {
        app.info.fault_check(p);
    }
    let snap = app.values.snapshot(&filter, true);
    let mut o = JsonOut::with_capacity(snap.entries.len() * 320 + 16);
    o.raw("{\"values\":");
    o.entries(&snap, |o, e| o.value_list(&snap, e));
    o.raw("}");
    Ok(raw_json_response(StatusCode::OK, o.buf))
}

/// A history cursor: decimal digits, empty meaning the start. A number
/// beyond u64 can only be from another run of collectd (or made up): it
/// saturates, and like every cursor ahead of the newest sample it reads
/// from the start.
fn parse_cursor(s: &str) -> Option<u64> {
    if s.is_empty() {
        return Some(0);
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

/// Samples one history read returns when no limit is given.
const DEFAULT_HISTORY_LIMIT: u64 = 10_000;

/// Every buffered sample after the cursor, in arrival order.
pub fn history(app: &App, req: &ApiRequest) -> Result<Response<Body>> {
    let mut keys = FILTER_KEYS.to_vec();
    keys.extend(["since", "limit"]);
    let q = req.query(&keys)?;
    let since = match q.get("since") {
        None => 0,
        Some(s) => parse_cursor(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                format!("since must be a cursor from a previous answer, got {s:?}"),
            )
        })?,
    };
    let limit = q
        .u64("limit", 1, 1_000_000)?
        .unwrap_or(DEFAULT_HISTORY_LIMIT);
    let (snap, cursor, lost) = app.values.history(since, limit as usize, &value_filter(&q));
    let mut o = JsonOut::with_capacity(snap.entries.len() * 320 + 64);
    o.raw("{\"cursor\":");
    o.str(&cursor.to_string());
    o.raw(",\"lost\":");
    o.u64(lost);
    o.raw(",\"values\":");
    o.entries(&snap, |o, e| o.value_list(&snap, e));
    o.raw("}");
    Ok(raw_json_response(StatusCode::OK, o.buf))
}

pub fn value(app: &App, req: &ApiRequest, params: &[Cow<'_, str>]) -> Result<Response<Body>> {
    req.query(&[])?;
    let joined;
    let id = if params.iter().all(|p| matches!(p, Cow::Borrowed(_))) {
        // Not %-escaped: the parameters are the path's last segments as
        // they are, so the identifier is that end of the path.
        let path = req.path();
        let len = params
            .iter()
            .map(|p| p.len() + 1)
            .sum::<usize>()
            .saturating_sub(1);
        &path[path.len() - len..]
    } else {
        joined = params.join("/");
        &joined[..]
    };
    debug_assert_eq!(id, params.join("/"));
    if identifier_fields(id).is_none() {
        return Err(ApiError::bad_request(
            "invalid_identifier",
            format!("{id:?} is not an identifier host/plugin[-instance]/type[-instance]"),
        ));
    }
    let one = app
        .values
        .get_one(id)
        .ok_or_else(|| ApiError::not_found(format!("no live value for {id}")))?;
    let mut o = JsonOut::one(512);
    o.one_value_list(&one);
    Ok(raw_json_response(StatusCode::OK, o.buf))
}

/// The `severity` and `plugin` query parameters of the notification routes.
pub fn notification_filter(q: &Query) -> Result<NotificationFilter> {
    let severity = match q.get("severity") {
        None => None,
        Some(s) => Some(Severity::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                format!("severity must be failure, warning or okay, got {s:?}"),
            )
        })?),
    };
    Ok(NotificationFilter {
        severity,
        plugin: q.get("plugin").map(String::from),
    })
}

/// Notifications returned by one poll when no limit is given.
const DEFAULT_NOTIFICATION_LIMIT: u64 = 1000;

pub fn notifications(app: &App, req: &ApiRequest) -> Result<Response<Body>> {
    let q = req.query(&["since", "severity", "plugin", "limit"])?;
    let since = q.u64("since", 0, u64::MAX - 1)?.unwrap_or(0);
    let limit = q
        .u64("limit", 1, 1_000_000)?
        .unwrap_or(DEFAULT_NOTIFICATION_LIMIT);
    let filter = notification_filter(&q)?;
    let page = app.notifications.read(since, &filter, limit as usize);
    #[derive(Serialize)]
    struct Out<'a> {
        cursor: u64,
        lost: u64,
        notifications: Vec<NotificationJson<'a>>,
    }
    let notifications = page.items.iter().map(|s| (&**s).into()).collect();
    Ok(json_response(
        StatusCode::OK,
        &Out {
            cursor: page.cursor,
            lost: page.lost,
            notifications,
        },
    ))
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct NewNotification {
    severity: String,
    message: String,
    host: Option<String>,
    plugin: Option<String>,
    plugin_instance: Option<String>,
    #[serde(rename = "type")]
    type_: Option<String>,
    type_instance: Option<String>,
}

fn check_field(name: &str, v: &str, max: usize) -> Result<()> {
    if v.len() > max {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("{name} is longer than {max} bytes"),
        ));
    }
    if v.contains('\0') {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("{name} contains a NUL character"),
        ));
    }
    Ok(())
}

pub async fn post_notification(app: &Arc<App>, req: &ApiRequest) -> Result<Response<Body>> {
    req.query(&[])?;
    let b: NewNotification = req.json(false)?;
    let severity = Severity::parse(&b.severity).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_body",
            format!(
                "severity must be failure, warning or okay, got {:?}",
                b.severity
            ),
        )
    })?;
    if b.message.is_empty() {
        return Err(ApiError::bad_request("invalid_body", "message is empty"));
    }
    check_field("message", &b.message, MAX_MESSAGE_LEN)?;
    let host = b.host.unwrap_or_else(|| app.info.hostname.clone());
    if host.is_empty() {
        return Err(ApiError::bad_request("invalid_body", "host is empty"));
    }
    let n = Notification {
        severity,
        time: secs_to_cdtime(now_secs()),
        message: b.message,
        host,
        plugin: b.plugin.unwrap_or_default(),
        plugin_instance: b.plugin_instance.unwrap_or_default(),
        type_: b.type_.unwrap_or_default(),
        type_instance: b.type_instance.unwrap_or_default(),
        meta: Vec::new(),
    };
    for (name, v) in [
        ("host", &n.host),
        ("plugin", &n.plugin),
        ("plugin_instance", &n.plugin_instance),
        ("type", &n.type_),
        ("type_instance", &n.type_instance),
    ] {
        check_field(name, v, MAX_NAME_LEN)?;
    }
    let n2 = n.clone();
    app.control
        .run(move |c| c.dispatch_notification(&n2))
        .await?
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "dispatch_failed",
                format!("collectd did not accept the notification: {e}"),
            )
        })?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({"notification": NotificationJson { seq: None, n: &n }}),
    ))
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FlushRequest {
    plugins: Option<Vec<String>>,
    identifiers: Option<Vec<String>>,
    timeout: Option<f64>,
}

/// At most this many plugin_flush calls per request.
const MAX_FLUSH_CALLS: usize = 10_000;

pub async fn flush(app: &Arc<App>, req: &ApiRequest) -> Result<Response<Body>> {
    req.query(&[])?;
    let b: FlushRequest = req.json(true)?;
    let timeout = b.timeout.unwrap_or(0.0);
    if !(0.0..=86_400.0).contains(&timeout) {
        return Err(ApiError::bad_request(
            "invalid_body",
            "timeout must be a number of seconds from 0 to 86400",
        ));
    }
    let plugins: Vec<Option<String>> = match b.plugins {
        None => vec![None],
        Some(ps) => {
            if let Some(bad) = ps.iter().find(|p| !valid_plugin_name(p)) {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    format!("{bad:?} is not a valid plugin name"),
                ));
            }
            ps.into_iter().map(Some).collect()
        }
    };
    let identifiers: Vec<Option<String>> = match b.identifiers {
        None => vec![None],
        Some(ids) => {
            if let Some(bad) = ids.iter().find(|i| parse_identifier(i).is_none()) {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    format!("{bad:?} is not an identifier host/plugin[-instance]/type[-instance]"),
                ));
            }
            ids.into_iter().map(Some).collect()
        }
    };
    if plugins.len() * identifiers.len() > MAX_FLUSH_CALLS {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("at most {MAX_FLUSH_CALLS} plugin x identifier pairs per request"),
        ));
    }
    let timeout = secs_to_cdtime(timeout);
    let results = app
        .control
        .run(move |c| {
            let mut out = Vec::new();
            for p in &plugins {
                // A plain plugin name (no '.', which script plugins use
                // for their callbacks) must name a loaded plugin.
                if let Some(name) = p.as_deref().filter(|n| !n.contains('.')) {
                    if !c.is_loaded(name) {
                        out.push(json!({"plugin": name, "status": -1,
                                        "error": "plugin is not loaded"}));
                        continue;
                    }
                }
                for id in &identifiers {
                    let status = c.flush(p.as_deref(), timeout, id.as_deref());
                    let mut r = json!({"plugin": p, "status": status});
                    if let Some(id) = id {
                        r["identifier"] = json!(id);
                    }
                    out.push(r);
                }
            }
            out
        })
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "flushed": results }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_cursors() {
        assert_eq!(parse_cursor(""), Some(0));
        assert_eq!(parse_cursor("0"), Some(0));
        assert_eq!(parse_cursor("0042"), Some(42));
        assert_eq!(parse_cursor("18446744073709551615"), Some(u64::MAX));
        // Digits only, of any length: too large for this run reads from the start.
        assert_eq!(parse_cursor("99999999999999999999999"), Some(u64::MAX));
        for bad in ["-1", "+1", " 1", "1.0", "1e3", "x", "\u{663}"] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }
}
