//! Which web pages may call `dev`'s API from a browser (CORS): dev's own origin always, and by
//! default any port of `localhost` and `127.0.0.1` (the original web client served by another local
//! server); `--allowed-origin` names others instead — an exact origin, any port of a host
//! (`http://localhost:*`), or `*` (any site, said with a warning). The handlers answer with the
//! stage's `AllowedOrigin`, as on AWS; dev then answers each request for its own `Origin`: that
//! origin when it is allowed, none when it is not (the browser refuses the answer), and dev's own
//! origin to a request that names none.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The origins a browser may call dev's API from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigins {
    own: String,
    any: bool,
    exact: Vec<String>,
    /// `scheme://host` of origins allowed on any port.
    any_port: Vec<String>,
}

/// Defaults beside dev's own origin: a page served by another local server.
pub const DEFAULT: [&str; 2] = ["http://localhost:*", "http://127.0.0.1:*"];

impl AllowedOrigins {
    /// `own` is dev's origin (`http://127.0.0.1:3000`); `given` the `--allowed-origin` values, or
    /// none for [`DEFAULT`].
    pub fn new(own: &str, given: &[String]) -> Result<Self, String> {
        let mut out = AllowedOrigins {
            own: own.to_owned(),
            any: false,
            exact: vec![own.to_owned()],
            any_port: Vec::new(),
        };
        let defaults: Vec<String> = DEFAULT.iter().map(|s| s.to_string()).collect();
        for origin in if given.is_empty() { &defaults } else { given } {
            let origin = origin.trim().trim_end_matches('/');
            if origin == "*" {
                out.any = true;
                continue;
            }
            let (scheme, rest) = origin.split_once("://").ok_or_else(|| {
                format!("--allowed-origin {origin:?} is not an origin: write it as a browser sends it, e.g. http://localhost:8080 (or http://localhost:* for any port)")
            })?;
            if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
                return Err(format!(
                    "--allowed-origin {origin:?} is not an origin: scheme, host and port only, e.g. http://localhost:8080"
                ));
            }
            match rest.strip_suffix(":*") {
                Some(host) if !host.is_empty() => out.any_port.push(format!("{scheme}://{host}")),
                _ => out.exact.push(origin.to_owned()),
            }
        }
        Ok(out)
    }

    /// Whether any site may call the API (`--allowed-origin '*'`), which dev warns about.
    pub fn any(&self) -> bool {
        self.any
    }

    pub fn allows(&self, origin: &str) -> bool {
        if self.any || self.exact.iter().any(|o| o == origin) {
            return true;
        }
        // `http://localhost:5173` is `http://localhost` on port 5173; the port must be digits.
        origin.rsplit_once(':').is_some_and(|(base, port)| {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && self.any_port.iter().any(|p| p == base)
        })
    }

    /// The `Access-Control-Allow-Origin` for a request from `origin` (none: refused).
    pub fn answer(&self, origin: Option<&str>) -> Option<String> {
        match origin {
            _ if self.any => Some("*".to_owned()),
            Some(o) if self.allows(o) => Some(o.to_owned()),
            Some(_) => None,
            None => Some(self.own.clone()),
        }
    }
}

/// Rewrites the CORS answer of every API response (those that carry one) for the request's Origin.
pub async fn answer(
    State(allowed): State<Arc<AllowedOrigins>>,
    req: Request,
    next: Next,
) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        return resp;
    }
    match allowed
        .answer(origin.as_deref())
        .and_then(|o| HeaderValue::from_str(&o).ok())
    {
        Some(value) => {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
        None => {
            headers.remove(header::ACCESS_CONTROL_ALLOW_ORIGIN);
        }
    }
    if !allowed.any() {
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_dev_itself_and_any_local_port() {
        let a = AllowedOrigins::new("http://127.0.0.1:3000", &[]).unwrap();
        for ok in [
            "http://127.0.0.1:3000",
            "http://localhost:5173",
            "http://127.0.0.1:8080",
        ] {
            assert!(a.allows(ok), "{ok}");
            assert_eq!(a.answer(Some(ok)).as_deref(), Some(ok));
        }
        for refused in [
            "https://evil.example",
            "http://localhost.evil.example:80",
            "http://localhost:",
            "http://localhost:80x",
            "https://localhost:5173",
            "null",
        ] {
            assert!(!a.allows(refused), "{refused}");
            assert_eq!(a.answer(Some(refused)), None);
        }
        assert_eq!(a.answer(None).as_deref(), Some("http://127.0.0.1:3000"));
        assert!(!a.any());
    }

    #[test]
    fn the_flag_names_others_instead() {
        let given = vec![
            "http://localhost:8080/".to_owned(),
            "https://app.example.test:*".to_owned(),
        ];
        let a = AllowedOrigins::new("http://127.0.0.1:3000", &given).unwrap();
        assert!(a.allows("http://localhost:8080"));
        assert!(a.allows("https://app.example.test:8443"));
        assert!(a.allows("http://127.0.0.1:3000"), "dev's own page, always");
        assert!(
            !a.allows("http://localhost:5173"),
            "the default is replaced"
        );
        let any = AllowedOrigins::new("http://127.0.0.1:3000", &["*".to_owned()]).unwrap();
        assert!(any.any());
        assert_eq!(
            any.answer(Some("https://evil.example")).as_deref(),
            Some("*")
        );
        for bad in ["localhost:8080", "ftp://x", "http://x/path", "http://"] {
            assert!(
                AllowedOrigins::new("http://127.0.0.1:3000", &[bad.to_owned()]).is_err(),
                "{bad}"
            );
        }
    }
}
