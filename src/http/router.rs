//! The route table and the one `match` that dispatches a request to its
//! handler. The table is also what the OpenAPI test checks against the
//! document in docs/openapi.json.

use std::borrow::Cow;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;

use hyper::Response;
use once_cell::sync::Lazy;

use super::error::ApiError;
use super::request::{decode_segment, ApiRequest};
use super::{auth, handlers, plugins, rules, Body};
use crate::app::{App, BLACKLIST_FILE, THRESHOLDS_FILE};

/// A route: a path template (`{name}` matches one non-empty segment) and the
/// methods it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub path: &'static str,
    pub methods: &'static [&'static str],
}

const fn r(path: &'static str, methods: &'static [&'static str]) -> RouteSpec {
    RouteSpec { path, methods }
}

/// Every route the API serves.
pub const ROUTES: &[RouteSpec] = &[
    r("/metrics", &["GET"]),
    r("/v1/health", &["GET"]),
    r("/v1/capabilities", &["GET"]),
    r("/v1/openapi.json", &["GET"]),
    r("/v1/time", &["GET"]),
    r("/v1/metrics", &["GET"]),
    r("/v1/values", &["GET"]),
    r("/v1/values/{host}/{plugin}/{type}", &["GET"]),
    r("/v1/history", &["GET"]),
    r("/v1/notifications", &["GET", "POST"]),
    r("/v1/notifications/stream", &["GET"]),
    r("/v1/flush", &["POST"]),
    r("/v1/blacklist", &["GET"]),
    r("/v1/blacklist/{id}", &["PUT", "DELETE"]),
    r("/v1/thresholds", &["GET"]),
    r("/v1/thresholds/{id}", &["PUT", "DELETE"]),
    r("/v1/plugins", &["GET"]),
    r("/v1/plugins/{name}", &["GET", "PUT", "DELETE"]),
    r("/v1/plugins/{name}/enable", &["POST"]),
    r("/v1/plugins/{name}/disable", &["POST"]),
    r("/v1/plugins/{name}/restart", &["POST"]),
];

/// The segments of each route's path, split once.
static TEMPLATES: Lazy<Vec<Vec<&'static str>>> =
    Lazy::new(|| ROUTES.iter().map(|r| r.path.split('/').collect()).collect());

/// The most segments a route has (`/v1/values/{host}/{plugin}/{type}`:
/// six, counting the empty one before the first slash).
const MAX_SEGMENTS: usize = 6;

/// The most `{params}` a route has.
const MAX_PARAMS: usize = 3;

/// The decoded values of a route's `{params}`, on the stack: each borrows
/// the path unless it had a %-escape.
#[derive(Debug)]
pub struct Params<'a> {
    values: [Cow<'a, str>; MAX_PARAMS],
    n: usize,
}

impl<'a> Deref for Params<'a> {
    type Target = [Cow<'a, str>];

    fn deref(&self) -> &[Cow<'a, str>] {
        &self.values[..self.n]
    }
}

/// Finds the route for `path` and the decoded values of its `{params}`: the
/// path is split once, onto the stack; only parameters with a %-escape are
/// allocated.
fn find(path: &str) -> Result<(&'static RouteSpec, Params<'_>), ApiError> {
    let mut segs = [""; MAX_SEGMENTS];
    let mut n = 0;
    let mut start = 0;
    // `path.split('/')`, as a byte loop (cheaper on a path this short).
    for (i, b) in path.bytes().enumerate().chain([(path.len(), b'/')]) {
        if b != b'/' {
            continue;
        }
        if n == MAX_SEGMENTS {
            return Err(ApiError::not_found(format!("no route {path}")));
        }
        segs[n] = &path[start..i];
        n += 1;
        start = i + 1;
    }
    let segs = &segs[..n];
    for (spec, tpl) in ROUTES.iter().zip(TEMPLATES.iter()) {
        let matches = tpl.len() == n
            && tpl.iter().zip(segs).all(|(t, s)| {
                if t.starts_with('{') {
                    !s.is_empty()
                } else {
                    t == s
                }
            });
        if !matches {
            continue;
        }
        let mut params = Params {
            values: [Cow::Borrowed(""), Cow::Borrowed(""), Cow::Borrowed("")],
            n: 0,
        };
        for (t, s) in tpl.iter().zip(segs) {
            if t.starts_with('{') {
                params.values[params.n] = decode_segment(s)?;
                params.n += 1;
            }
        }
        return Ok((spec, params));
    }
    Err(ApiError::not_found(format!("no route {path}")))
}

/// Runs a handler that reads every value (a full read at 100k metrics takes
/// tens of milliseconds of CPU) on tokio's blocking threads, so that the two
/// server threads stay free for every other request meanwhile. A panic in
/// it is answered with a 500.
async fn bulk(
    app: &Arc<App>,
    req: ApiRequest,
    handler: fn(&App, &ApiRequest) -> Result<Response<Body>, ApiError>,
) -> Result<Response<Body>, ApiError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || handler(&app, &req))
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::internal(
                "the request failed inside the plugin; see collectd's log",
            ))
        })
}

pub async fn handle(app: &Arc<App>, req: ApiRequest) -> Response<Body> {
    match dispatch(app, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

/// A request future, boxed: only requests that must wait have one.
pub type Pending = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// The answer to a request: at once, or after waiting.
pub enum Answer {
    Now(Response<Body>),
    Later(Pending),
}

/// `handle`, without a future when the request can be answered at once
/// (most can: a synchronous handler and no Keystone round trip), so that
/// the common request carries no async state machine of every handler.
pub fn handle_now(app: &Arc<App>, req: ApiRequest) -> Answer {
    match dispatch_now(app, &req) {
        Some(r) => Answer::Now(r.unwrap_or_else(ApiError::into_response)),
        None => {
            let app = app.clone();
            Answer::Later(Box::pin(async move { handle(&app, req).await }))
        }
    }
}

/// The route of `path` and `method` (404, or 405 with the allowed ones),
/// and the route's parameters.
fn route<'p>(path: &'p str, method: &str) -> Result<(&'static RouteSpec, Params<'p>), ApiError> {
    let (spec, params) = find(path)?;
    if !spec.methods.contains(&method) {
        return Err(ApiError::method_not_allowed(spec.methods.join(", ")));
    }
    Ok((spec, params))
}

/// `dispatch` when nothing need be awaited; None when something must.
fn dispatch_now(app: &Arc<App>, req: &ApiRequest) -> Option<Result<Response<Body>, ApiError>> {
    let method = req.method.as_str();
    let (spec, params) = match route(req.path(), method) {
        Ok(found) => found,
        Err(e) => return Some(Err(e)),
    };
    if let Err(e) = auth::authorize_now(app, req, auth::required_role(spec.path, method))? {
        return Some(Err(e));
    }
    dispatch_sync(app, req, spec.path, method, &params)
}

async fn dispatch(app: &Arc<App>, req: ApiRequest) -> Result<Response<Body>, ApiError> {
    // A copy of the target (reference counted, not copied) for the params
    // to borrow, as `req` itself moves into some handlers.
    let uri = req.uri.clone();
    let method = req.method.as_str();
    let (spec, params) = route(uri.path(), method)?;
    auth::authorize(app, &req, auth::required_role(spec.path, method)).await?;
    if let Some(r) = dispatch_sync(app, &req, spec.path, method, &params) {
        return r;
    }
    match (spec.path, method) {
        ("/metrics", "GET") => bulk(app, req, handlers::prometheus).await,
        ("/v1/capabilities", "GET") => handlers::capabilities(app, &req).await,
        ("/v1/metrics", "GET") => bulk(app, req, handlers::metrics).await,
        ("/v1/values", "GET") => bulk(app, req, handlers::values).await,
        ("/v1/history", "GET") => bulk(app, req, handlers::history).await,
        ("/v1/notifications", "POST") => handlers::post_notification(app, &req).await,
        ("/v1/flush", "POST") => handlers::flush(app, &req).await,
        ("/v1/plugins", "GET") => plugins::list(app, &req).await,
        ("/v1/plugins/{name}", "GET") => plugins::get(app, &req, &params[0]).await,
        ("/v1/plugins/{name}", "PUT") => plugins::put(app, &req, &params[0]).await,
        ("/v1/plugins/{name}", "DELETE") => plugins::delete(app, &req, &params[0]).await,
        ("/v1/plugins/{name}/enable", "POST") => {
            plugins::action(app, &req, &params[0], plugins::Action::Enable).await
        }
        ("/v1/plugins/{name}/disable", "POST") => {
            plugins::action(app, &req, &params[0], plugins::Action::Disable).await
        }
        ("/v1/plugins/{name}/restart", "POST") => {
            plugins::action(app, &req, &params[0], plugins::Action::Restart).await
        }
        _ => Err(ApiError::internal(format!(
            "route {} {} has no handler",
            method, spec.path
        ))),
    }
}

/// The routes whose handlers do not wait; None for the others.
fn dispatch_sync(
    app: &Arc<App>,
    req: &ApiRequest,
    route: &'static str,
    method: &str,
    params: &[Cow<'_, str>],
) -> Option<Result<Response<Body>, ApiError>> {
    Some(match (route, method) {
        ("/v1/health", "GET") => handlers::health(app, req),
        ("/v1/openapi.json", "GET") => handlers::openapi(req),
        ("/v1/time", "GET") => handlers::time(app, req),
        ("/v1/values/{host}/{plugin}/{type}", "GET") => handlers::value(app, req, params),
        ("/v1/notifications", "GET") => handlers::notifications(app, req),
        ("/v1/notifications/stream", "GET") => {
            super::stream::subscribe(app, req, app.closing.subscribe())
        }
        ("/v1/blacklist", "GET") => rules::list(&app.blacklist, "blacklist", req),
        ("/v1/blacklist/{id}", "PUT") => {
            rules::put(app, &app.blacklist, BLACKLIST_FILE, req, &params[0])
        }
        ("/v1/blacklist/{id}", "DELETE") => {
            rules::delete(app, &app.blacklist, BLACKLIST_FILE, req, &params[0])
        }
        ("/v1/thresholds", "GET") => rules::list(&app.values.thresholds, "thresholds", req),
        ("/v1/thresholds/{id}", "PUT") => rules::put(
            app,
            &app.values.thresholds,
            THRESHOLDS_FILE,
            req,
            &params[0],
        ),
        ("/v1/thresholds/{id}", "DELETE") => rules::delete(
            app,
            &app.values.thresholds,
            THRESHOLDS_FILE,
            req,
            &params[0],
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_routes_and_params() {
        let (s, p) = find("/v1/values/h/cpu-0/cpu-idle").unwrap();
        assert_eq!(s.path, "/v1/values/{host}/{plugin}/{type}");
        assert_eq!(*p, ["h", "cpu-0", "cpu-idle"]);
        let (_, p) = find("/v1/values/a%20b/p/t").unwrap();
        assert_eq!(p[0], "a b");
        assert!(find("/v1/values/h//t").is_err());
        assert!(find("/v1/health/").is_err());
        assert!(find("/v1/nope").is_err());
        assert_eq!(
            find("/v1/values/%ff/p/t").unwrap_err().code,
            "invalid_encoding"
        );
        // Longer than any route: not found (the path is split onto a
        // stack array of MAX_SEGMENTS).
        assert!(TEMPLATES.iter().all(|t| t.len() <= MAX_SEGMENTS));
        assert!(TEMPLATES
            .iter()
            .all(|t| t.iter().filter(|s| s.starts_with('{')).count() <= MAX_PARAMS));
        // Unescaped parameters borrow the path.
        let (_, p) = find("/v1/values/h/p-i/t").unwrap();
        assert!(p.iter().all(|p| matches!(p, Cow::Borrowed(_))));
        assert_eq!(find("/v1/values/h/p/t/x").unwrap_err().code, "not_found");
        assert_eq!(find("/a/b/c/d/e/f/g/h").unwrap_err().code, "not_found");
    }

    /// Every route the router knows is in the OpenAPI document with each of
    /// its methods, and the document promises no route the router lacks.
    #[test]
    fn openapi_documents_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::super::OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        for spec in ROUTES {
            let item = paths
                .get(spec.path)
                .unwrap_or_else(|| panic!("{} is not in docs/openapi.json", spec.path));
            for m in spec.methods {
                assert!(
                    item.get(m.to_lowercase()).is_some(),
                    "{m} {} is not in docs/openapi.json",
                    spec.path
                );
            }
            for (k, _) in item.as_object().unwrap() {
                if ["get", "put", "post", "delete", "patch"].contains(&k.as_str()) {
                    assert!(
                        spec.methods.contains(&k.to_uppercase().as_str()),
                        "docs/openapi.json documents {k} {} which the router lacks",
                        spec.path
                    );
                }
            }
        }
        for p in paths.keys() {
            assert!(
                ROUTES.iter().any(|s| s.path == p),
                "docs/openapi.json documents {p}, which the router lacks"
            );
        }
    }
}
