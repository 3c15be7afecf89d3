//! Handlers of the blacklist and threshold routes: the rules are ours (no
//! call into collectd), so they change here, under the rule set's own lock,
//! and are saved in StateDir before the answer.

use hyper::{Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use super::error::ApiError;
use super::request::ApiRequest;
use super::{json_response, raw_json_response, Body};
use crate::app::App;
use crate::rules::blacklist::{valid_id, Rule};
use crate::rules::set::{Compile, PutError, RuleSet};
use crate::rules::thresholds::Threshold;

type Result<T> = std::result::Result<T, ApiError>;

pub fn check_id(id: &str) -> Result<()> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_id",
            format!("{id:?} is not an id (1-64 letters, digits, _, - and .)"),
        ))
    }
}

/// A body's `id`, if any, must be the one in the path.
fn check_body_id(path_id: &str, body_id: Option<&str>) -> Result<()> {
    match body_id {
        Some(b) if b != path_id => Err(ApiError::bad_request(
            "invalid_body",
            format!("the body's id {b:?} is not the path's {path_id:?}"),
        )),
        _ => Ok(()),
    }
}

pub fn no_content() -> Response<Body> {
    let mut resp = raw_json_response(StatusCode::NO_CONTENT, Vec::new());
    resp.headers_mut().remove(hyper::header::CONTENT_TYPE);
    resp
}

fn put_error(e: PutError) -> ApiError {
    match e {
        PutError::Invalid(m) => ApiError::bad_request("invalid_rule", m),
        PutError::Persist(m) => ApiError::internal(m),
    }
}

/// A rule of the API: its id lives in the path and in answers, not in the
/// stored set.
pub trait Named: Compile + Serialize + DeserializeOwned {
    fn id_mut(&mut self) -> &mut Option<String>;
}

impl Named for Rule {
    fn id_mut(&mut self) -> &mut Option<String> {
        &mut self.id
    }
}

impl Named for Threshold {
    fn id_mut(&mut self) -> &mut Option<String> {
        &mut self.id
    }
}

fn with_id<T: Named>(id: String, mut rule: T) -> T {
    *rule.id_mut() = Some(id);
    rule
}

/// GET: `{"<key>": [rules with their ids]}`.
pub fn list<T: Named>(set: &RuleSet<T>, key: &str, req: &ApiRequest) -> Result<Response<Body>> {
    req.query(&[])?;
    let rules: Vec<T> = set
        .list()
        .into_iter()
        .map(|(id, r)| with_id(id, r))
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ key: rules })))
}

/// PUT: 201 for a new rule, 200 for a replaced one; saved in StateDir first.
pub fn put<T: Named>(
    app: &App,
    set: &RuleSet<T>,
    file: &str,
    req: &ApiRequest,
    id: &str,
) -> Result<Response<Body>> {
    req.query(&[])?;
    check_id(id)?;
    let mut rule: T = req.json(false)?;
    check_body_id(id, rule.id_mut().take().as_deref())?;
    let path = app.state_path(file);
    let created = set
        .put(id, rule.clone(), |rules| {
            crate::state::save_map(&path, rules)
        })
        .map_err(put_error)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(status, &with_id(id.to_string(), rule)))
}

/// DELETE: 204, or 404 for an unknown id.
pub fn delete<T: Named>(
    app: &App,
    set: &RuleSet<T>,
    file: &str,
    req: &ApiRequest,
    id: &str,
) -> Result<Response<Body>> {
    req.query(&[])?;
    check_id(id)?;
    let path = app.state_path(file);
    let existed = set
        .delete(id, |rules| crate::state::save_map(&path, rules))
        .map_err(put_error)?;
    if !existed {
        return Err(ApiError::not_found(format!("no rule {id}")));
    }
    Ok(no_content())
}
