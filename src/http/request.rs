//! A request once its body has been read: method, path, query, headers and
//! body bytes. Query strings, path segments and JSON bodies are parsed here,
//! strictly: unknown parameters, repeated parameters, bad percent-escapes,
//! non-UTF-8 and unknown JSON fields are errors, not guesses.

use bytes::Bytes;
use hyper::header::CONTENT_TYPE;
use hyper::{HeaderMap, Method, Uri};
use serde::de::DeserializeOwned;
use std::borrow::Cow;

use super::error::ApiError;

#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    /// The request target, origin-form (path and query, still
    /// percent-encoded): hyper's own, not copied.
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the request arrived (UNIX seconds), if known.
    pub received: Option<f64>,
}

impl ApiRequest {
    /// A request for `uri` (a path and query); panics if it is not a
    /// valid request target (tests and fuzz harnesses only).
    pub fn new(method: Method, uri: &str) -> Self {
        ApiRequest {
            method,
            uri: Uri::try_from(uri).expect("a valid request target"),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            received: None,
        }
    }

    /// The raw (still percent-encoded) path.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The raw query string, if any.
    pub fn raw_query(&self) -> Option<&str> {
        self.uri.query()
    }

    /// Parses the query string, allowing only the `allowed` keys.
    pub fn query(&self, allowed: &[&str]) -> Result<Query, ApiError> {
        Query::parse(self.raw_query().unwrap_or(""), allowed)
    }

    /// Parses a JSON body into `T`. An empty body is `{}` when `empty_ok`.
    pub fn json<T: DeserializeOwned>(&self, empty_ok: bool) -> Result<T, ApiError> {
        if self.body.is_empty() {
            if empty_ok {
                return serde_json::from_str("{}")
                    .map_err(|e| ApiError::bad_request("invalid_body", e.to_string()));
            }
            return Err(ApiError::bad_request(
                "invalid_body",
                "a JSON request body is required",
            ));
        }
        let ct = self
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::unsupported_media_type());
        }
        let text = std::str::from_utf8(&self.body)
            .map_err(|_| ApiError::bad_request("invalid_utf8", "the request body is not UTF-8"))?;
        serde_json::from_str(text).map_err(|e| {
            use serde_json::error::Category;
            let code = match e.classify() {
                Category::Data => "invalid_body",
                _ => "malformed_json",
            };
            ApiError::bad_request(code, format!("request body: {e}"))
        })
    }
}

/// Decodes %XX escapes (and `+` as space when `plus` is set) into UTF-8.
pub fn percent_decode(s: &str, plus: bool) -> Result<String, ApiError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                // Two hex digits: from_str_radix alone would take "+f".
                let hex = b
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request("invalid_encoding", "bad percent-escape in the URL")
                    })?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| ApiError::bad_request("invalid_encoding", "the URL is not UTF-8"))
}

/// `percent_decode` without `+` as space (a path segment), borrowing `s`
/// when it has no escape.
pub fn decode_segment(s: &str) -> Result<Cow<'_, str>, ApiError> {
    if s.contains('%') {
        percent_decode(s, false).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(s))
    }
}

/// A parsed query string: each key at most once.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(q: &str, allowed: &[&str]) -> Result<Query, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let k = percent_decode(k, true)?;
            let v = percent_decode(v, true)?;
            if !allowed.contains(&k.as_str()) {
                let allowed = if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                };
                return Err(ApiError::bad_request(
                    "unknown_parameter",
                    format!("unknown query parameter {k:?} (allowed: {allowed})"),
                ));
            }
            if pairs.iter().any(|(pk, _)| *pk == k) {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("query parameter {k:?} given more than once"),
                ));
            }
            pairs.push((k, v));
        }
        Ok(Query(pairs))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A non-negative integer parameter within `[min, max]`.
    pub fn u64(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::bad_request(
                "invalid_parameter",
                format!(
                    "query parameter {key:?} must be an integer from {min} to {max}, got {v:?}"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb+c", true).unwrap(), "a/b c");
        assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
        assert_eq!(percent_decode("%C3%A9", false).unwrap(), "é");
        assert_eq!(
            percent_decode("%ff", false).unwrap_err().code,
            "invalid_encoding"
        );
        assert!(percent_decode("%4", false).is_err());
        assert!(percent_decode("%zz", false).is_err());
        assert!(percent_decode("%", false).is_err());
        // A sign is not a hex digit (found by the query_string fuzzer).
        for bad in ["%+1", "%+f", "a%+F", "%-1", "%+", "+%+9"] {
            assert!(percent_decode(bad, false).is_err(), "{bad}");
            assert!(percent_decode(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn segments_borrow_unless_escaped() {
        assert!(matches!(
            decode_segment("a+b").unwrap(),
            Cow::Borrowed("a+b")
        ));
        assert!(matches!(decode_segment("").unwrap(), Cow::Borrowed("")));
        assert_eq!(decode_segment("a%2Fb").unwrap(), "a/b");
        for s in ["%ff", "%4", "a%+1", "%"] {
            assert_eq!(
                decode_segment(s).unwrap_err(),
                percent_decode(s, false).unwrap_err()
            );
        }
        let r = ApiRequest::new(Method::GET, "/v1/values?a=b%20");
        assert_eq!((r.path(), r.raw_query()), ("/v1/values", Some("a=b%20")));
        let r = ApiRequest::new(Method::GET, "/v1/values");
        assert_eq!((r.path(), r.raw_query()), ("/v1/values", None));
    }

    #[test]
    fn query_is_strict() {
        let q = Query::parse("host=a&plugin=cpu", &["host", "plugin"]).unwrap();
        assert_eq!(q.get("host"), Some("a"));
        assert_eq!(q.get("type"), None);
        let e = Query::parse("hots=a", &["host"]).unwrap_err();
        assert_eq!(e.code, "unknown_parameter");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = Query::parse("host=a&host=b", &["host"]).unwrap_err();
        assert_eq!(e.code, "invalid_parameter");
        let q = Query::parse("limit=10", &["limit"]).unwrap();
        assert_eq!(q.u64("limit", 1, 100).unwrap(), Some(10));
        let q = Query::parse("limit=0", &["limit"]).unwrap();
        assert!(q.u64("limit", 1, 100).is_err());
        let q = Query::parse("limit=-1", &["limit"]).unwrap();
        assert!(q.u64("limit", 1, 100).is_err());
        assert!(Query::parse("", &[]).unwrap().0.is_empty());
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct T {
        #[allow(dead_code)]
        a: Option<u32>,
    }

    fn with_body(ct: Option<&str>, body: &'static [u8]) -> ApiRequest {
        let mut r = ApiRequest::new(Method::POST, "/x");
        if let Some(ct) = ct {
            r.headers.insert(CONTENT_TYPE, ct.parse().unwrap());
        }
        r.body = Bytes::from_static(body);
        r
    }

    #[test]
    fn json_bodies() {
        let j = Some("application/json");
        assert!(with_body(j, b"{\"a\":1}").json::<T>(false).is_ok());
        assert!(with_body(Some("application/json; charset=utf-8"), b"{}")
            .json::<T>(false)
            .is_ok());
        assert!(with_body(None, b"").json::<T>(true).is_ok());
        assert_eq!(
            with_body(None, b"").json::<T>(false).unwrap_err().code,
            "invalid_body"
        );
        let e = with_body(Some("text/plain"), b"{}")
            .json::<T>(false)
            .unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let e = with_body(None, b"{}").json::<T>(false).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(
            with_body(j, b"{\"a\":").json::<T>(false).unwrap_err().code,
            "malformed_json"
        );
        assert_eq!(
            with_body(j, b"{\"a\":\"x\"}")
                .json::<T>(false)
                .unwrap_err()
                .code,
            "invalid_body"
        );
        let e = with_body(j, b"{\"b\":1}").json::<T>(false).unwrap_err();
        assert!(e.message.contains("unknown field"), "{}", e.message);
        assert_eq!(
            with_body(j, b"{\"a\":\xff}")
                .json::<T>(false)
                .unwrap_err()
                .code,
            "invalid_utf8"
        );
    }
}
