//! Handlers of the plugin routes: validation here, the operations in
//! `crate::plugins`, run on the control thread.

use std::sync::Arc;

use hyper::{Response, StatusCode};
use serde_json::json;

use super::error::ApiError;
use super::request::ApiRequest;
use super::{json_response, raw_json_response, Body};
use crate::app::App;
use crate::plugins::{valid_name, PluginState, PutRequest};

type Result<T> = std::result::Result<T, ApiError>;

fn check_name(name: &str) -> Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_name",
            format!("{name:?} is not a plugin name (letters, digits, _ and -, at most 64)"),
        ))
    }
}

/// Reads go through the control queue too: they see every operation that
/// answered before, and the state StateDir restored at start.
pub async fn list(app: &Arc<App>, req: &ApiRequest) -> Result<Response<Body>> {
    let q = req.query(&["state"])?;
    let state = match q.get("state") {
        None => None,
        Some(s) => Some(PluginState::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                format!("state must be available, enabled, disabled or failed, got {s:?}"),
            )
        })?),
    };
    let a = app.clone();
    let plugins = app.control.run(move |_| a.plugins.list(state)).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "plugins": plugins }),
    ))
}

pub async fn get(app: &Arc<App>, req: &ApiRequest, name: &str) -> Result<Response<Body>> {
    req.query(&[])?;
    check_name(name)?;
    let (a, n) = (app.clone(), name.to_string());
    let view = app.control.run(move |_| a.plugins.get(&n)).await??;
    Ok(json_response(StatusCode::OK, &view))
}

pub async fn put(app: &Arc<App>, req: &ApiRequest, name: &str) -> Result<Response<Body>> {
    req.query(&[])?;
    check_name(name)?;
    let body: PutRequest = req.json(true)?;
    let observed = app.values.plugin_interval(name);
    let (a, n) = (app.clone(), name.to_string());
    let view = app
        .control
        .run(move |c| a.plugins.put(c, &n, body, observed))
        .await??;
    Ok(json_response(StatusCode::OK, &view))
}

pub async fn delete(app: &Arc<App>, req: &ApiRequest, name: &str) -> Result<Response<Body>> {
    req.query(&[])?;
    check_name(name)?;
    let (a, n) = (app.clone(), name.to_string());
    app.control.run(move |c| a.plugins.delete(c, &n)).await??;
    let mut resp = raw_json_response(StatusCode::NO_CONTENT, Vec::new());
    resp.headers_mut().remove(hyper::header::CONTENT_TYPE);
    Ok(resp)
}

#[derive(Clone, Copy, Debug)]
pub enum Action {
    Enable,
    Disable,
    Restart,
}

pub async fn action(
    app: &Arc<App>,
    req: &ApiRequest,
    name: &str,
    action: Action,
) -> Result<Response<Body>> {
    req.query(&[])?;
    check_name(name)?;
    let observed = app.values.plugin_interval(name);
    let (a, n) = (app.clone(), name.to_string());
    let view = app
        .control
        .run(move |c| match action {
            Action::Enable => a.plugins.enable(c, &n, observed),
            Action::Disable => a.plugins.disable(c, &n),
            Action::Restart => a.plugins.restart(c, &n, observed),
        })
        .await??;
    Ok(json_response(StatusCode::OK, &view))
}
