//! The HTTP API's routes, as API Gateway matches them: method + path → handler and path parameters.
//! The routes are the handlers' declared HTTP triggers; `notesctl dev` routes with them, and
//! `notesctl validate` holds the templates' routes to them.

use http::Method;

use crate::dispatch::HandlerName;
use crate::domain::AppError;
use crate::spec::Trigger;

/// `(method, path pattern, handler)` of every HTTP handler; `{name}` matches one non-empty path
/// segment.
pub fn routes() -> impl Iterator<Item = (&'static str, &'static str, HandlerName)> {
    HandlerName::ALL
        .iter()
        .filter_map(|&h| match h.spec().trigger {
            Trigger::Http { method, path } => Some((method, path, h)),
            _ => None,
        })
}

/// A matched route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub handler: HandlerName,
    /// API Gateway's `routeKey`, e.g. `PUT /notes/{noteId}`.
    pub route_key: String,
    pub path_parameters: Vec<(String, String)>,
}

fn match_pattern(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
    let pat: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let got: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if pat.len() != got.len() {
        return None;
    }
    let mut params = Vec::new();
    for (p, g) in pat.iter().zip(&got) {
        if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if g.is_empty() {
                return None;
            }
            params.push((name.to_owned(), (*g).to_owned()));
        } else if p != g {
            return None;
        }
    }
    Some(params)
}

/// The route for a request. Like API Gateway, anything unmatched is a 404 — with a message that says
/// what does exist. Literal routes win over parameter routes.
pub fn route(method: &Method, path: &str) -> Result<Matched, AppError> {
    let mut path_known = false;
    let mut best: Option<Matched> = None;
    for (m, pattern, handler) in routes() {
        let Some(params) = match_pattern(pattern, path) else {
            continue;
        };
        path_known = true;
        if m != method.as_str() {
            continue;
        }
        let literal = params.is_empty();
        if best.is_none() || literal {
            best = Some(Matched {
                handler,
                route_key: format!("{m} {pattern}"),
                path_parameters: params,
            });
        }
    }
    if let Some(found) = best {
        return Ok(found);
    }
    if path_known {
        let allowed: Vec<&str> = routes()
            .filter(|(_, p, _)| match_pattern(p, path).is_some())
            .map(|(m, _, _)| m)
            .collect();
        return Err(AppError::NotFound(format!(
            "No route for {method} {path}; {path} takes {}",
            allowed.join(" or ")
        )));
    }
    Err(AppError::NotFound(format!(
        "No route for {method} {path}; see the API's routes under /auth and /notes"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_like_api_gateway() {
        let m = route(&Method::PUT, "/notes/1700000000000-abc").unwrap();
        assert_eq!(m.handler, HandlerName::NotesUpdate);
        assert_eq!(m.route_key, "PUT /notes/{noteId}");
        assert_eq!(
            m.path_parameters,
            vec![("noteId".into(), "1700000000000-abc".into())]
        );
        assert_eq!(
            route(&Method::GET, "/notes/public").unwrap().handler,
            HandlerName::NotesGetPublic
        );
        assert_eq!(
            route(&Method::GET, "/notes").unwrap().handler,
            HandlerName::NotesGet
        );
        assert_eq!(route(&Method::GET, "/nope").unwrap_err().status(), 404);
        assert_eq!(route(&Method::PATCH, "/notes").unwrap_err().status(), 404);
        assert_eq!(
            route(&Method::GET, "/notes/").unwrap_err().status(),
            404,
            "no trailing-slash leniency"
        );
        assert_eq!(route(&Method::GET, "/notes/x/y").unwrap_err().status(), 404);
    }
}
