//! OpenStack Keystone (identity API v3) token validation.
//!
//! The plugin holds a service token of its own (password authentication,
//! scoped to a project) and validates a user's token with
//! `GET /v3/auth/tokens` (`X-Auth-Token`: ours, `X-Subject-Token`: theirs).
//! The token's Keystone roles map to ours (ReaderRole, AdminRole; admin
//! wins). Results are cached for CacheTTL seconds, never past the token's
//! expiry; a token Keystone rejects is remembered briefly, so that a flood
//! of bad tokens does not become a flood of Keystone requests. The service
//! token is renewed a minute before it expires, or when Keystone says it is
//! no longer valid. If Keystone cannot be reached, a token not in the cache
//! is refused (503): never a pass.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::json;

use crate::config::{KeystoneConfig, Role};

/// One request to Keystone may take this long, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The service token is renewed this long before it expires.
const RENEW_BEFORE_S: f64 = 60.0;
/// How long a rejected token is remembered.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Validations cached at most (older ones are dropped first).
const CACHE_MAX: usize = 10_000;
/// Keystone answers read at most.
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// Validations in flight to Keystone at once.
const IN_FLIGHT: usize = 16;

/// Where Keystone listens.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// The API's path, e.g. `/v3`, without a trailing `/`.
    pub path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url:?}: expected http:// or https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = if let Some(h) = authority.strip_prefix('[') {
            // [v6]:port
            let (h, p) = h
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: bad IPv6 host"))?;
            (h.to_string(), p.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("{url:?}: bad port {p:?}"))?,
            None if https => 443,
            None => 80,
        };
        Ok(Endpoint {
            https,
            host,
            port,
            path: path.trim_end_matches('/').to_string(),
        })
    }
}

/// What Keystone says of a token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Validation {
    Role(Role),
    /// Valid, but with neither the reader nor the admin role.
    NoRole,
    Invalid,
}

struct ServiceToken {
    token: String,
    expires_at: f64,
}

struct Cached {
    validation: Validation,
    until: Instant,
}

pub struct Client {
    endpoint: Endpoint,
    config: KeystoneConfig,
    tls: Option<tokio_rustls::TlsConnector>,
    service: tokio::sync::Mutex<Option<ServiceToken>>,
    cache: Mutex<HashMap<String, Cached>>,
    in_flight: tokio::sync::Semaphore,
}

/// "2026-11-24T23:59:59.000000Z" to UNIX seconds (Keystone's expires_at).
pub fn parse_time(s: &str) -> Option<f64> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (hh, mm) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let ss: f64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Days since 1970-01-01 (civil calendar, proleptic Gregorian).
    let (y, m) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m - 3) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss)
}

fn now_secs() -> f64 {
    crate::app::now_secs()
}

impl Client {
    pub fn new(config: KeystoneConfig) -> Result<Client, String> {
        let endpoint = Endpoint::parse(&config.url)?;
        let tls = if endpoint.https {
            let c = crate::tls::client_config(config.ca_cert_file.as_deref())?;
            Some(tokio_rustls::TlsConnector::from(c))
        } else {
            None
        };
        Ok(Client {
            endpoint,
            config,
            tls,
            service: tokio::sync::Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
            in_flight: tokio::sync::Semaphore::new(IN_FLIGHT),
        })
    }

    /// One HTTP request to Keystone on a fresh connection.
    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), String> {
        let e = &self.endpoint;
        let work = async {
            let tcp = tokio::net::TcpStream::connect((e.host.as_str(), e.port))
                .await
                .map_err(|err| {
                    format!("cannot connect to Keystone at {}:{}: {err}", e.host, e.port)
                })?;
            let mut req = Request::builder()
                .method(method)
                .uri(format!("{}{path}", e.path))
                .header(HOST, format!("{}:{}", e.host, e.port))
                .header("accept", "application/json");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if body.is_some() {
                req = req.header(CONTENT_TYPE, "application/json");
            }
            let req = req
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|err| err.to_string())?;
            match &self.tls {
                Some(tls) => {
                    let name = rustls::pki_types::ServerName::try_from(e.host.clone())
                        .map_err(|err| format!("Keystone host {:?}: {err}", e.host))?;
                    let stream = tls
                        .connect(name, tcp)
                        .await
                        .map_err(|err| format!("TLS to Keystone: {err}"))?;
                    send(stream, req).await
                }
                None => send(tcp, req).await,
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, work)
            .await
            .map_err(|_| {
                format!(
                    "Keystone did not answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                )
            })?
    }

    /// The plugin's own token, renewed when it nears its expiry (or when
    /// `renew`).
    async fn service_token(&self, renew: bool) -> Result<String, String> {
        let mut held = self.service.lock().await;
        if let Some(t) = held.as_ref() {
            if !renew && t.expires_at - now_secs() > RENEW_BEFORE_S {
                return Ok(t.token.clone());
            }
        }
        let c = &self.config;
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": c.username, "domain": {"name": c.user_domain_name},
                "password": c.password}}},
            "scope": {"project": {"name": c.project_name,
                                  "domain": {"name": c.project_domain_name}}}
        }});
        let (status, headers, answer) = self
            .call(Method::POST, "/auth/tokens", &[], Some(body.to_string()))
            .await?;
        if status != StatusCode::CREATED {
            return Err(format!(
                "Keystone refused the plugin's own credentials (user {:?}, project {:?}): {status}",
                c.username, c.project_name
            ));
        }
        let token = headers
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .ok_or("Keystone sent no X-Subject-Token")?
            .to_string();
        let expires_at = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v["token"]["expires_at"].as_str().and_then(parse_time))
            .unwrap_or_else(|| now_secs() + 3600.0);
        log::info!(
            "Keystone: new service token for user {:?} in project {:?}, valid for {:.0} s",
            c.username,
            c.project_name,
            expires_at - now_secs()
        );
        *held = Some(ServiceToken {
            token: token.clone(),
            expires_at,
        });
        Ok(token)
    }

    fn cached(&self, token: &str) -> Option<Validation> {
        let cache = self.cache.lock();
        cache
            .get(token)
            .filter(|c| c.until > Instant::now())
            .map(|c| c.validation)
    }

    fn remember(&self, token: &str, validation: Validation, ttl: Duration) {
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_MAX {
            let now = Instant::now();
            cache.retain(|_, c| c.until > now);
            if cache.len() >= CACHE_MAX {
                // Still full of live entries: drop the ones closest to expiry.
                let mut untils: Vec<Instant> = cache.values().map(|c| c.until).collect();
                untils.sort_unstable();
                let cut = untils[CACHE_MAX / 10];
                cache.retain(|_, c| c.until > cut);
            }
        }
        cache.insert(
            token.to_string(),
            Cached {
                validation,
                until: Instant::now() + ttl,
            },
        );
    }

    /// What Keystone says of `token` (cached). Err: Keystone could not be
    /// asked, and the token is not in the cache.
    pub async fn validate(&self, token: &str) -> Result<Validation, String> {
        if let Some(v) = self.cached(token) {
            return Ok(v);
        }
        let _permit = self.in_flight.acquire().await.map_err(|e| e.to_string())?;
        if let Some(v) = self.cached(token) {
            return Ok(v);
        }
        let mut renew = false;
        for _ in 0..2 {
            let service = self.service_token(renew).await?;
            let (status, _, answer) = self
                .call(
                    Method::GET,
                    "/auth/tokens",
                    &[("x-auth-token", &service), ("x-subject-token", token)],
                    None,
                )
                .await?;
            match status {
                StatusCode::OK => {
                    let body: serde_json::Value = serde_json::from_slice(&answer)
                        .map_err(|e| format!("Keystone sent a token body that is not JSON: {e}"))?;
                    let roles: Vec<&str> = body["token"]["roles"]
                        .as_array()
                        .map(|rs| rs.iter().filter_map(|r| r["name"].as_str()).collect())
                        .unwrap_or_default();
                    let has = |r: &str| roles.contains(&r);
                    let validation = if has(&self.config.admin_role) {
                        Validation::Role(Role::Admin)
                    } else if has(&self.config.reader_role) {
                        Validation::Role(Role::Reader)
                    } else {
                        Validation::NoRole
                    };
                    let expires_in = body["token"]["expires_at"]
                        .as_str()
                        .and_then(parse_time)
                        .map_or(self.config.cache_ttl, |t| t - now_secs());
                    let ttl = self.config.cache_ttl.min(expires_in).max(0.0);
                    self.remember(token, validation, Duration::from_secs_f64(ttl));
                    return Ok(validation);
                }
                StatusCode::NOT_FOUND => {
                    self.remember(token, Validation::Invalid, NEGATIVE_TTL);
                    return Ok(Validation::Invalid);
                }
                // Our own token is no longer accepted: renew it, once.
                StatusCode::UNAUTHORIZED if !renew => {
                    log::warn!(
                        "Keystone no longer accepts the plugin's service token (user {:?}); renewing it",
                        self.config.username
                    );
                    renew = true;
                }
                s => return Err(format!("Keystone answered {s} to a token validation")),
            }
        }
        Err("Keystone refused the plugin's renewed service token".into())
    }
}

async fn send<I>(io: I, req: Request<Full<Bytes>>) -> Result<(StatusCode, HeaderMap, Bytes), String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP to Keystone: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP to Keystone: {e}"))?;
    let (parts, body) = resp.into_parts();
    let bytes = Limited::new(body, MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading Keystone's answer: {e}"))?
        .to_bytes();
    Ok((parts.status, parts.headers, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:5000/v3").unwrap();
        assert_eq!(
            (e.https, e.host.as_str(), e.port, e.path.as_str()),
            (false, "127.0.0.1", 5000, "/v3")
        );
        let e = Endpoint::parse("https://keystone.example/identity/v3/").unwrap();
        assert_eq!(
            (e.https, e.port, e.path.as_str()),
            (true, 443, "/identity/v3")
        );
        let e = Endpoint::parse("http://[::1]:35357/v3").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 35357));
        for bad in [
            "ftp://x/v3",
            "http:///v3",
            "http://h:port/v3",
            "keystone:5000",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keystone_times() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_time("2000-03-01T00:00:00.000000Z"),
            Some(951_868_800.0)
        );
        assert_eq!(
            parse_time("2026-11-24T23:59:59.500000Z"),
            Some(1_795_564_799.5)
        );
        assert_eq!(parse_time("nonsense"), None);
    }
}
