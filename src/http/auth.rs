//! Who may call what. Roles: `reader` may call every GET, `admin` anything;
//! `GET /v1/health` needs no credentials. This version has no credential
//! backends yet: the config only accepts loopback Listen addresses, and
//! every loopback client is admin (the contract's rule for a plugin with no
//! AuthToken/TokenFile/Keystone).

use super::error::ApiError;
use super::request::ApiRequest;
use crate::app::App;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Reader,
    Admin,
}

/// The role a route needs; None for the unauthenticated heartbeat.
pub fn required_role(path: &str, method: &str) -> Option<Role> {
    match (path, method) {
        ("/v1/health", "GET") => None,
        (_, "GET") => Some(Role::Reader),
        _ => Some(Role::Admin),
    }
}

/// Checks the request's credentials against `needed`.
pub fn authorize(_app: &App, _req: &ApiRequest, needed: Option<Role>) -> Result<(), ApiError> {
    // Without configured credentials every client is admin (loopback only,
    // enforced by the config).
    let _ = needed;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_by_route() {
        assert_eq!(required_role("/v1/health", "GET"), None);
        assert_eq!(required_role("/v1/values", "GET"), Some(Role::Reader));
        assert_eq!(
            required_role("/v1/notifications", "POST"),
            Some(Role::Admin)
        );
        assert_eq!(required_role("/v1/flush", "POST"), Some(Role::Admin));
        assert!(Role::Admin > Role::Reader);
    }
}
