//! API errors: a status, a stable snake_case code and a sentence, sent as
//! `{"error": {"code": ..., "message": ...}}`. Internals are logged, never
//! sent.

use hyper::header::{HeaderValue, ALLOW, WWW_AUTHENTICATE};
use hyper::StatusCode;
use serde_json::json;

use super::{json_response, Body};
use hyper::Response;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// For 405: the methods the route allows.
    pub allow: Option<String>,
    /// For 422: the collectd log lines the failed attempt produced.
    pub log: Option<Vec<String>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            allow: None,
            log: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn method_not_allowed(allow: String) -> Self {
        ApiError {
            allow: Some(allow.clone()),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("this route allows {allow}"),
            )
        }
    }

    pub fn payload_too_large(max: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than MaxRequestBytes ({max} bytes)"),
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request body must be JSON (Content-Type: application/json)",
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    pub fn into_response(self) -> Response<Body> {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if let Some(log) = self.log {
            body["error"]["log"] = json!(log);
        }
        let mut resp = json_response(self.status, &body);
        if let Some(allow) = self.allow {
            if let Ok(v) = HeaderValue::from_str(&allow) {
                resp.headers_mut().insert(ALLOW, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<crate::plugins::OpError> for ApiError {
    fn from(e: crate::plugins::OpError) -> Self {
        use crate::plugins::OpError;
        match e {
            OpError::Invalid(code, m) => ApiError::bad_request(code, m),
            OpError::NotFound(m) => ApiError::not_found(m),
            OpError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            OpError::Failed(err) => ApiError {
                log: Some(err.log),
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "plugin_failed",
                    err.message,
                )
            },
            OpError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<crate::control::ControlError> for ApiError {
    fn from(e: crate::control::ControlError) -> Self {
        match e {
            crate::control::ControlError::ShuttingDown => {
                ApiError::unavailable("collectd is shutting down")
            }
            crate::control::ControlError::Panicked => {
                ApiError::internal("the operation failed inside the plugin; see collectd's log")
            }
        }
    }
}
