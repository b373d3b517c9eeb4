//! API Gateway HTTP API (payload format 2.0) in and out: body limits, JSON parsing, bearer tokens,
//! CORS and the `{"message"}` error bodies of the contract.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, Method};
use serde::Serialize;

use crate::deps::Deps;
use crate::domain::AppError;
use crate::domain::token::Claims;

/// The largest request body accepted, in bytes (after base64 decoding).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub type HttpRequest = ApiGatewayV2httpRequest;
pub type HttpResponse = ApiGatewayV2httpResponse;

pub fn method(req: &HttpRequest) -> Method {
    req.request_context.http.method.clone()
}

/// The request body as bytes: decoded from base64 when API Gateway encoded it, refused when larger
/// than [`MAX_BODY_BYTES`].
pub fn body_bytes(req: &HttpRequest) -> Result<Vec<u8>, AppError> {
    let too_large = || {
        AppError::PayloadTooLarge(format!(
            "Request body is larger than the {} KiB limit",
            MAX_BODY_BYTES / 1024
        ))
    };
    let Some(body) = req.body.as_deref() else {
        return Ok(Vec::new());
    };
    if req.is_base64_encoded {
        if body.len() > MAX_BODY_BYTES / 3 * 4 + 4 {
            return Err(too_large());
        }
        let bytes = STANDARD
            .decode(body)
            .map_err(|_| AppError::bad_request("Request body is not valid base64"))?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        Ok(bytes)
    } else if body.len() > MAX_BODY_BYTES {
        Err(too_large())
    } else {
        Ok(body.as_bytes().to_vec())
    }
}

/// The body parsed as JSON. It must say it is (`Content-Type: application/json`, any charset):
/// anything else is 415, so a cross-origin form or `text/plain` post, which a browser sends without
/// a preflight, never reaches a route. An empty or malformed body is a 400 that says so.
pub fn json_body(req: &HttpRequest) -> Result<serde_json::Value, AppError> {
    let bytes = body_bytes(req)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::bad_request("Request body is required (JSON)"));
    }
    let media_type = header(&req.headers, "content-type")
        .map(|v| v.split(';').next().unwrap_or_default().trim())
        .unwrap_or_default();
    if !media_type.eq_ignore_ascii_case("application/json") {
        let sent = if media_type.is_empty() {
            "no Content-Type".to_owned()
        } else {
            format!("Content-Type {media_type}")
        };
        return Err(AppError::UnsupportedMediaType(format!(
            "Request body must be JSON sent as Content-Type: application/json (got {sent})"
        )));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| AppError::bad_request(format!("Request body is not valid JSON: {e}")))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

const AUTH_REQUIRED: &str =
    "Authorization header is required: send 'Authorization: Bearer <token>'";

/// `GET /auth/user` answers a missing header with 400 (the contract); the notes routes with 401.
pub fn require_authorization_header(req: &HttpRequest) -> Result<(), AppError> {
    match header(&req.headers, "authorization") {
        Some(_) => Ok(()),
        None => Err(AppError::bad_request(AUTH_REQUIRED)),
    }
}

/// The token of `Authorization: Bearer <jwt>`: 401 if the header is missing or malformed.
pub fn bearer_token(req: &HttpRequest) -> Result<&str, AppError> {
    let value = header(&req.headers, "authorization")
        .ok_or_else(|| AppError::Unauthorized(AUTH_REQUIRED.to_owned()))?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AppError::Unauthorized(
            "Authorization header must be 'Bearer <token>'".to_owned(),
        ));
    }
    Ok(token.trim())
}

/// Verifies the bearer token (signature, algorithm, expiry, issuer, audience).
pub async fn authenticate(deps: &Deps, req: &HttpRequest) -> Result<Claims, AppError> {
    let token = bearer_token(req)?;
    deps.token_keys().await?.verify(token)
}

pub fn query<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.query_string_parameters.first(name)
}

pub fn path_param<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.path_parameters.get(name).map(String::as_str)
}

fn cors_headers(origin: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert("access-control-allow-origin", v);
    }
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("Content-Type,Authorization"),
    );
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("GET,POST,PUT,DELETE,OPTIONS"),
    );
    if origin != "*" {
        h.insert("vary", HeaderValue::from_static("Origin"));
    }
    h
}

pub fn json_response(deps: &Deps, status: u16, body: &impl Serialize) -> HttpResponse {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
    let mut resp = HttpResponse::default();
    resp.status_code = i64::from(status);
    resp.headers = cors_headers(&deps.settings.allowed_origin);
    resp.body = Some(Body::Text(text));
    resp.is_base64_encoded = false;
    resp
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [crate::domain::FieldError],
}

pub fn error_response(deps: &Deps, err: &AppError) -> HttpResponse {
    if err.status() >= 500 {
        tracing::error!(error = %err, status = err.status(), "request failed");
    } else {
        tracing::info!(error = %err, status = err.status(), "request refused");
    }
    json_response(
        deps,
        err.status(),
        &ErrorBody {
            message: err.public_message(),
            errors: err.field_errors(),
        },
    )
}

/// `OPTIONS` preflight: 204 with the CORS headers.
pub fn preflight(deps: &Deps) -> HttpResponse {
    let mut resp = json_response(deps, 204, &());
    resp.body = None;
    resp.headers.remove("content-type");
    resp
}

/// Runs a route's logic and turns its outcome into the response: preflight, errors with their
/// status, and the success body.
pub async fn respond<F, Fut>(deps: &Deps, req: &HttpRequest, logic: F) -> HttpResponse
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<HttpResponse, AppError>>,
{
    if method(req) == Method::OPTIONS {
        return preflight(deps);
    }
    match logic().await {
        Ok(resp) => resp,
        Err(err) => error_response(deps, &err),
    }
}
