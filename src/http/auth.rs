//! Who may call what: the route's required role against the role of the
//! request's credentials (`crate::auth`). Role `reader` may call every GET,
//! `admin` anything; `GET /v1/health` needs no credentials.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use parking_lot::Mutex;

use super::error::ApiError;
use super::request::ApiRequest;
use crate::app::App;
use crate::auth::{AuthError, Check};
pub use crate::config::Role;

/// The role a route needs; None for the unauthenticated heartbeat.
pub fn required_role(path: &str, method: &str) -> Option<Role> {
    match (path, method) {
        ("/v1/health", "GET") => None,
        (_, "GET") => Some(Role::Reader),
        _ => Some(Role::Admin),
    }
}

/// Logs why a token could not be validated: the first time, then at most
/// every 10 s with the number of failures not logged, so that an outage
/// under load does not flood collectd's log.
fn log_unavailable(why: &str) {
    static LAST: Mutex<(Option<Instant>, u64)> = Mutex::new((None, 0));
    let mut last = LAST.lock();
    let now = Instant::now();
    match last.0 {
        Some(t) if now.duration_since(t) < Duration::from_secs(10) => last.1 += 1,
        _ => {
            let quiet = std::mem::take(&mut last.1);
            if quiet > 0 {
                log::warn!("cannot validate a token: {why} ({quiet} more since the last report)");
            } else {
                log::warn!("cannot validate a token: {why}");
            }
            last.0 = Some(now);
        }
    }
}

/// Checks the request's credentials against `needed`.
pub async fn authorize(app: &App, req: &ApiRequest, needed: Option<Role>) -> Result<(), ApiError> {
    let Some(needed) = needed else {
        return Ok(());
    };
    let role = app.auth.role(&req.headers).await.map_err(refusal)?;
    enough(role, needed)
}

/// `authorize` when it can be answered without waiting (no Keystone
/// round trip); None when Keystone must be asked.
pub fn authorize_now(
    app: &App,
    req: &ApiRequest,
    needed: Option<Role>,
) -> Option<Result<(), ApiError>> {
    let Some(needed) = needed else {
        return Some(Ok(()));
    };
    match app.auth.check(&req.headers) {
        Check::Done(role) => Some(role.map_err(refusal).and_then(|r| enough(r, needed))),
        Check::Keystone(_) => None,
    }
}

fn enough(role: Role, needed: Role) -> Result<(), ApiError> {
    if role < needed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs the {} role", needed.as_str()),
        ));
    }
    Ok(())
}

fn refusal(e: AuthError) -> ApiError {
    match e {
        AuthError::Missing => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "credentials required: Authorization: Bearer TOKEN or X-Auth-Token: TOKEN",
        ),
        AuthError::Invalid => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid credentials",
        ),
        AuthError::Forbidden => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token has neither the reader nor the admin role",
        ),
        AuthError::Unavailable(why) => {
            log_unavailable(&why);
            ApiError::unavailable("the identity service cannot be reached; try again later")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_by_route() {
        assert_eq!(required_role("/v1/health", "GET"), None);
        assert_eq!(required_role("/v1/values", "GET"), Some(Role::Reader));
        assert_eq!(required_role("/metrics", "GET"), Some(Role::Reader));
        assert_eq!(
            required_role("/v1/notifications", "POST"),
            Some(Role::Admin)
        );
        assert_eq!(required_role("/v1/flush", "POST"), Some(Role::Admin));
        assert!(Role::Admin > Role::Reader);
    }
}
