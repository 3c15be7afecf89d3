//! Who may call what. Credentials: `Authorization: Bearer TOKEN` (a static
//! role token or a Keystone token) or `X-Auth-Token: TOKEN` (Keystone).
//! Role `reader` may call every GET, `admin` everything; `GET /v1/health`
//! needs no credentials. With no credential backend configured, the config
//! only accepts loopback Listen addresses and every client is admin.
//!
//! Static tokens are compared in constant time (in the presented token's
//! content); tokens never reach a log line or an error body.

pub mod keystone;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;

use crate::config::{check_token, Config, Role};

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthError {
    /// 401: no credentials.
    Missing,
    /// 401: credentials nobody knows.
    Invalid,
    /// 403: a valid credential whose role is too low (or has no role).
    Forbidden,
    /// 503: the credential backend (Keystone) could not answer.
    Unavailable(String),
}

pub struct Authenticator {
    tokens: Vec<(Role, Vec<u8>)>,
    keystone: Option<keystone::Client>,
}

/// Reads a TokenFile: `ROLE TOKEN` per line, `#` comments. A file other
/// users can read or write is refused.
pub fn read_token_file(path: &Path) -> Result<Vec<(Role, String)>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o006 != 0 {
        return Err(format!(
            "{} is readable or writable by every user (mode {:o}); chmod o-rw it",
            path.display(),
            mode & 0o777
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut tokens = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |m: String| format!("{} line {}: {m}", path.display(), n + 1);
        let mut parts = line.split_whitespace();
        let (Some(role), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(at("expected ROLE TOKEN".into()));
        };
        let role = Role::parse(role)
            .ok_or_else(|| at(format!("role must be reader or admin, got {role:?}")))?;
        check_token(token).map_err(at)?;
        tokens.push((role, token.to_string()));
    }
    Ok(tokens)
}

/// Equal in time that depends only on `known`'s length, not on where the
/// bytes differ.
fn constant_time_eq(known: &[u8], given: &[u8]) -> bool {
    let mut diff = known.len() ^ given.len();
    for (i, k) in known.iter().enumerate() {
        diff |= usize::from(k ^ given.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// The token a request presents, if any. An `Authorization` header, when
/// present, is the credential: one that is not a Bearer token is no token
/// (401), even beside an `X-Auth-Token`, so that a request never passes on
/// one credential while presenting another that is invalid.
fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v, ""));
        if scheme.eq_ignore_ascii_case("Bearer") && !rest.trim().is_empty() {
            return Some(rest.trim());
        }
        return None;
    }
    headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

impl Authenticator {
    /// Builds the backends the config names (reading TokenFile, building
    /// the Keystone client). Errors name the config key.
    pub fn new(config: &Config) -> Result<Authenticator, (&'static str, String)> {
        let mut tokens: Vec<(Role, Vec<u8>)> = config
            .tokens
            .0
            .iter()
            .map(|(r, t)| (*r, t.as_bytes().to_vec()))
            .collect();
        if let Some(path) = &config.token_file {
            for (r, t) in read_token_file(path).map_err(|e| ("TokenFile", e))? {
                tokens.push((r, t.into_bytes()));
            }
        }
        let keystone = match &config.keystone {
            Some(k) => Some(keystone::Client::new(k.clone()).map_err(|e| ("Keystone", e))?),
            None => None,
        };
        Ok(Authenticator { tokens, keystone })
    }

    /// No backend: every client is admin (the config allows loopback only).
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty() && self.keystone.is_none()
    }

    /// The configured credential kinds, for /v1/capabilities.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut k = Vec::new();
        if !self.tokens.is_empty() {
            k.push("token");
        }
        if self.keystone.is_some() {
            k.push("keystone");
        }
        k
    }

    /// The role of the request's credentials.
    pub async fn role(&self, headers: &HeaderMap) -> Result<Role, AuthError> {
        match self.check(headers) {
            Check::Done(r) => r,
            Check::Keystone(token) => match &self.keystone {
                Some(k) => match k.validate(token).await {
                    Ok(keystone::Validation::Role(r)) => Ok(r),
                    Ok(keystone::Validation::NoRole) => Err(AuthError::Forbidden),
                    Ok(keystone::Validation::Invalid) => Err(AuthError::Invalid),
                    Err(e) => Err(AuthError::Unavailable(e)),
                },
                None => Err(AuthError::Invalid),
            },
        }
    }

    /// What can be told without waiting: the role (or the refusal) when
    /// there is no backend or a static token decides; otherwise the token
    /// Keystone must validate.
    pub fn check<'h>(&self, headers: &'h HeaderMap) -> Check<'h> {
        if self.is_open() {
            return Check::Done(Ok(Role::Admin));
        }
        let Some(token) = presented(headers) else {
            return Check::Done(Err(AuthError::Missing));
        };
        // Every static token is compared, so the time taken does not say
        // which one (or whether one) matched.
        let mut role = None;
        for (r, known) in &self.tokens {
            if constant_time_eq(known, token.as_bytes()) {
                role = role.max(Some(*r));
            }
        }
        match role {
            Some(r) => Check::Done(Ok(r)),
            None if self.keystone.is_some() => Check::Keystone(token),
            None => Check::Done(Err(AuthError::Invalid)),
        }
    }
}

/// `Authenticator::check`'s answer.
pub enum Check<'h> {
    Done(Result<Role, AuthError>),
    /// A token only Keystone can judge.
    Keystone(&'h str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Tokens;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn auth(tokens: &[(Role, &str)]) -> Authenticator {
        let config = Config {
            tokens: Tokens(tokens.iter().map(|(r, t)| (*r, t.to_string())).collect()),
            ..Config::default()
        };
        Authenticator::new(&config).unwrap()
    }

    #[tokio::test]
    async fn static_tokens() {
        let a = auth(&[(Role::Admin, "s3cret-admin"), (Role::Reader, "s3cret-read")]);
        assert!(!a.is_open());
        assert_eq!(a.kinds(), ["token"]);
        type Case<'a> = (&'a [(&'a str, &'a str)], Result<Role, AuthError>);
        let cases: [Case; 9] = [
            (&[("authorization", "Bearer s3cret-admin")], Ok(Role::Admin)),
            (
                &[("authorization", "bearer  s3cret-read ")],
                Ok(Role::Reader),
            ),
            (&[("x-auth-token", "s3cret-read")], Ok(Role::Reader)),
            (&[], Err(AuthError::Missing)),
            (&[("authorization", "Basic eDp5")], Err(AuthError::Missing)),
            (
                &[("authorization", "Bearer s3cret-admi")],
                Err(AuthError::Invalid),
            ),
            (
                &[("authorization", "Bearer s3cret-adminX")],
                Err(AuthError::Invalid),
            ),
            (&[("authorization", "Bearer ")], Err(AuthError::Missing)),
            (
                &[
                    ("authorization", "Basic eDp5"),
                    ("x-auth-token", "s3cret-admin"),
                ],
                Err(AuthError::Missing),
            ),
        ];
        for (h, expected) in cases {
            assert_eq!(a.role(&headers(h)).await, expected, "{h:?}");
        }
        // no backend: everyone is admin
        let open = auth(&[]);
        assert!(open.is_open());
        assert_eq!(open.role(&headers(&[])).await, Ok(Role::Admin));
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abcdefgh", b"abcdefgh"));
        assert!(!constant_time_eq(b"abcdefgh", b"abcdefgX"));
        assert!(!constant_time_eq(b"abcdefgh", b"abcdefg"));
        assert!(!constant_time_eq(b"abcdefgh", b"abcdefghi"));
        assert!(!constant_time_eq(b"abcdefgh", b""));
    }

    #[test]
    fn token_files() {
        let dir = std::env::temp_dir().join(format!("rest-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("tokens");
        std::fs::write(&p, "# ops\nadmin s3cret-admin\n\nreader   s3cret-read  \n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_token_file(&p).unwrap(),
            [
                (Role::Admin, "s3cret-admin".to_string()),
                (Role::Reader, "s3cret-read".to_string())
            ]
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_token_file(&p)
            .unwrap_err()
            .contains("readable or writable by every user"));
        std::fs::write(&p, "admin\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_token_file(&p)
            .unwrap_err()
            .contains("line 1: expected ROLE TOKEN"));
        std::fs::write(&p, "root s3cret-admin\n").unwrap();
        assert!(read_token_file(&p).unwrap_err().contains("reader or admin"));
        assert!(read_token_file(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
