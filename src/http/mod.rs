//! The REST API: an embedded hyper server on threads of its own, a router,
//! handlers and JSON errors. Nothing here touches collectd directly: calls
//! into the daemon go through the control thread (`crate::control`).
#![forbid(unsafe_code)]

pub mod auth;
pub mod conn_thread;
pub mod error;
pub mod handlers;
pub mod json;
pub mod plugins;
pub mod prometheus;
pub mod request;
pub mod router;
pub mod rules;
pub mod server;
pub mod stream;

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{HeaderMap, Response, StatusCode};
use once_cell::sync::Lazy;
use serde::Serialize;

pub use request::ApiRequest;
pub use router::{handle, ROUTES};
pub use server::Server;

/// The OpenAPI 3 document, served as is by `GET /v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// Response bodies: whole buffers now, streams (SSE) later.
pub type Body = BoxBody<Bytes, Infallible>;

pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// The headers of every JSON response, built once: a copy of a built map
/// costs less than inserting (hashing) each header again.
static JSON_HEADERS: Lazy<HeaderMap> = Lazy::new(|| {
    let mut h = HeaderMap::with_capacity(2);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h
});

/// A response with an already serialized JSON body.
pub fn raw_json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(full_body(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = JSON_HEADERS.clone();
    resp
}

pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => raw_json_response(status, body),
        Err(e) => {
            log::error!("cannot serialize a response: {e}");
            raw_json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"error":{"code":"internal_error","message":"the response could not be serialized"}}"#.to_vec(),
            )
        }
    }
}
