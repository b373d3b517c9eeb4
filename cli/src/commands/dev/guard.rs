//! Who may talk to `dev`. Two rules:
//!
//! - **Host.** A request must name this server by a name it answers to: a loopback name
//!   (`localhost`, `*.localhost`), an IP address it listens on (any address when bound to all of
//!   them), or a name given with `--allowed-host`. A web page that points its own domain at
//!   127.0.0.1 (DNS rebinding) sends its domain as `Host` and is refused on every route.
//! - **Runbook token.** The AWS APIs that `--local` commands use (SQS, CloudWatch Logs) answer only
//!   requests signed, as AWS's SigV4, with this run's token as the secret key. The token is made fresh
//!   at each start and written to `<data dir>/runbook-token` (mode 0600); `--local` reads it there.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use aws_smithy_runtime_api::client::identity::Identity;
use axum::http::{HeaderMap, Method, Uri, header};
use notes_handlers::embedded::files::{Existing, write_private};

pub use crate::context::{DEV_ACCESS_KEY as ACCESS_KEY, DEV_TOKEN_FILE as TOKEN_FILE};
/// How far a request's `X-Amz-Date` may be from now, as on AWS.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Makes this run's token and writes it where `--local` finds it.
pub fn new_token(data_dir: &Path) -> std::io::Result<String> {
    let token = format!("{:032x}", rand::random::<u128>());
    write_private(
        &data_dir.join(TOKEN_FILE),
        token.as_bytes(),
        Existing::Replace,
    )?;
    Ok(token)
}

#[derive(Debug, Clone)]
pub struct Guard {
    /// The address `dev` listens on.
    bound: IpAddr,
    /// `--allowed-host` names, lower case; `.example.com` also allows its subdomains.
    allowed: Vec<String>,
    token: String,
}

/// Why the runbook API refused a request: an AWS error code and a message for the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// The host name of a `Host` header, without its port. A bracketed IPv6 address must be followed by
/// nothing or `:port`; anything else (`[::1]evil`) is returned whole, a name nothing answers to.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, "")) => ip,
            Some((ip, port))
                if port
                    .strip_prefix(':')
                    .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit())) =>
            {
                ip
            }
            _ => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

impl Guard {
    pub fn new(bound: IpAddr, allowed: &[String], token: String) -> Guard {
        Guard {
            bound,
            allowed: allowed
                .iter()
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            token,
        }
    }

    /// Whether a request that says `Host: host` may be served. A request without `Host` (HTTP/1.0
    /// from a local tool) is not a browser's and passes.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        let Some(host) = host else { return true };
        let name = host_name(host).trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = name.parse::<IpAddr>() {
            return ip.is_loopback() || ip == self.bound || self.bound.is_unspecified();
        }
        name == "localhost"
            || name.ends_with(".localhost")
            || self.allowed.iter().any(|a| {
                *a == name || (a.starts_with('.') && (name.ends_with(a.as_str()) || name == a[1..]))
            })
    }

    /// Checks a runbook API request's SigV4 signature against this run's token.
    pub fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), Refusal> {
        verify_sigv4(&self.token, method, uri, headers, body, SystemTime::now())
    }
}

/// Every route: a request that names another host is refused (403) before anything else reads it —
/// its body included, so it is the outermost layer.
pub async fn check_host(
    axum::extract::State(guard): axum::extract::State<std::sync::Arc<Guard>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let host = match req.headers().get(header::HOST) {
        Some(h) => Some(h.to_str().unwrap_or_default()),
        None => req.uri().authority().map(|a| a.as_str()),
    };
    if guard.host_allowed(host) {
        return next.run(req).await;
    }
    let name = host.map(host_name).unwrap_or_default();
    tracing::warn!(host = %host.unwrap_or_default(), path = %req.uri().path(), "refused a request for another host");
    let body = serde_json::json!({
        "message": format!(
            "This notesctl dev server does not answer to the host name {name:?}. If you meant to reach it by that name, restart it with --allowed-host {name}"
        ),
    });
    // Its body is never read: the connection is closed after this answer.
    (
        axum::http::StatusCode::FORBIDDEN,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CONNECTION, "close"),
        ],
        body.to_string(),
    )
        .into_response()
}

const HOW: &str = "`notesctl --local` signs with the token in the dev server's data directory \
(runbook-token): run it from the folder where `notesctl dev` runs, or set NOTESCTL_DEV_DATA_DIR to \
its --data-dir";

fn verify_sigv4(
    token: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), Refusal> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};

    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let auth = text(header::AUTHORIZATION.as_str()).ok_or_else(|| {
        refuse(
            "MissingAuthenticationToken",
            format!("this notesctl dev server's AWS APIs need a signed request. {HOW}"),
        )
    })?;
    let fields = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        refuse(
            "IncompleteSignature",
            "only AWS4-HMAC-SHA256 signatures are accepted",
        )
    })?;
    let field = |name: &str| {
        fields
            .split(',')
            .map(str::trim)
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
    };
    let (Some(credential), Some(signed), Some(signature)) = (
        field("Credential"),
        field("SignedHeaders"),
        field("Signature"),
    ) else {
        return Err(refuse(
            "IncompleteSignature",
            "the Authorization header lacks Credential, SignedHeaders or Signature",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, _date, region, service, "aws4_request"] = scope[..] else {
        return Err(refuse(
            "IncompleteSignature",
            format!("malformed credential scope {credential:?}"),
        ));
    };
    if access_key != ACCESS_KEY {
        return Err(refuse(
            "InvalidClientTokenId",
            format!("unknown access key {access_key:?}. {HOW}"),
        ));
    }
    let when = text("x-amz-date").and_then(parse_amz_date).ok_or_else(|| {
        refuse(
            "IncompleteSignature",
            "the request has no valid X-Amz-Date header",
        )
    })?;
    let skew = now
        .duration_since(when)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(refuse(
            "RequestExpired",
            "the request's X-Amz-Date is more than 15 minutes from this server's clock",
        ));
    }
    let names: Vec<&str> = signed.split(';').collect();
    if !names.contains(&"host") {
        return Err(refuse(
            "IncompleteSignature",
            "the signature must cover the Host header",
        ));
    }
    let mut pairs = Vec::new();
    for name in &names {
        for value in headers.get_all(*name) {
            let value = value
                .to_str()
                .map_err(|_| refuse("IncompleteSignature", "a signed header is not text"))?;
            pairs.push((*name, value));
        }
    }
    let host = text("host").unwrap_or_default();
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("http://{host}{path}");
    let identity: Identity =
        aws_credential_types::Credentials::new(ACCESS_KEY, token, None, None, "dev").into();
    let mut settings = SigningSettings::default();
    settings.excluded_headers = Some(Vec::new());
    let params: aws_sigv4::http_request::SigningParams =
        aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(when)
            .settings(settings)
            .build()
            .map_err(|e| refuse("IncompleteSignature", e.to_string()))?
            .into();
    let request = SignableRequest::new(
        method.as_str(),
        url,
        pairs.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| refuse("IncompleteSignature", e.to_string()))?;
    let (_, expected) = sign(request, &params)
        .map_err(|e| refuse("IncompleteSignature", e.to_string()))?
        .into_parts();
    // Compared without an early exit, so timing says nothing about how much matched.
    let same = expected.len() == signature.len()
        && expected
            .bytes()
            .zip(signature.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(refuse(
            "SignatureDoesNotMatch",
            format!("the request is not signed with this run's runbook token. {HOW}"),
        ))
    }
}

/// `20261201T101500Z`.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let at = time::PrimitiveDateTime::parse(text, format)
        .ok()?
        .assume_utc();
    let secs = u64::try_from(at.unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn guard(bound: IpAddr, allowed: &[&str]) -> Guard {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        Guard::new(bound, &allowed, "token".into())
    }

    #[test]
    fn loopback_names_and_the_bound_address_pass_other_names_do_not() {
        let g = guard(IpAddr::V4(Ipv4Addr::LOCALHOST), &["notes.test", ".lan"]);
        for ok in [
            "127.0.0.1:3000",
            "localhost",
            "LOCALHOST:80",
            "app.localhost:3000",
            "[::1]:3000",
            "[::1]",
            "[::1]:",
            "127.0.0.2",
            "notes.test",
            "box.lan:3000",
            "lan",
            "localhost.",
        ] {
            assert!(g.host_allowed(Some(ok)), "{ok} should pass");
        }
        for bad in [
            "evil.example:3000",
            "localhost.evil.example",
            "10.0.0.5:3000",
            "notes.test.evil",
            "xlan",
            "",
            "[::1]evil",
            "[::1]evil.example:3000",
            "[::1].evil.example",
            "[::1]:3000x",
            "[::1]:3000:80",
            "[::1",
        ] {
            assert!(!g.host_allowed(Some(bad)), "{bad} should be refused");
        }
        assert!(g.host_allowed(None));
        let all = guard(IpAddr::V4(Ipv4Addr::UNSPECIFIED), &[]);
        assert!(
            all.host_allowed(Some("192.168.1.7:3000")),
            "any address when bound to all"
        );
        assert!(!all.host_allowed(Some("rebind.example:3000")));
        let lan = guard("192.168.1.7".parse().unwrap(), &[]);
        assert!(lan.host_allowed(Some("192.168.1.7:3000")));
        assert!(!lan.host_allowed(Some("192.168.1.8:3000")));
    }

    fn signed(secret: &str, when: SystemTime) -> (Method, Uri, HeaderMap, Vec<u8>) {
        let body = br#"{"QueueUrl":"x"}"#.to_vec();
        let unsigned = [
            ("host", "127.0.0.1:3000"),
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", "AmazonSQS.GetQueueAttributes"),
        ];
        let mut headers = HeaderMap::new();
        for (name, value) in unsigned {
            headers.insert(name, value.parse().unwrap());
        }
        let signature = crate::app_client::dev_signature(
            secret,
            "sqs",
            "http://127.0.0.1:3000/",
            &unsigned,
            &body,
            when,
        )
        .unwrap();
        for (name, value) in signature {
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        (Method::POST, Uri::from_static("/"), headers, body)
    }

    #[test]
    fn only_requests_signed_with_the_token_pass() {
        let now = SystemTime::now();
        let (m, u, h, b) = signed("token", now);
        assert_eq!(verify_sigv4("token", &m, &u, &h, &b, now), Ok(()));
        let wrong = verify_sigv4("other", &m, &u, &h, &b, now).unwrap_err();
        assert_eq!(wrong.code, "SignatureDoesNotMatch");
        assert!(
            wrong.message.contains("NOTESCTL_DEV_DATA_DIR"),
            "{}",
            wrong.message
        );
        let mut tampered = b.clone();
        tampered[2] = b'X';
        assert_eq!(
            verify_sigv4("token", &m, &u, &h, &tampered, now)
                .unwrap_err()
                .code,
            "SignatureDoesNotMatch",
            "the body is covered"
        );
        let mut retargeted = h.clone();
        retargeted.insert("x-amz-target", "AmazonSQS.SendMessage".parse().unwrap());
        assert_eq!(
            verify_sigv4("token", &m, &u, &retargeted, &b, now)
                .unwrap_err()
                .code,
            "SignatureDoesNotMatch",
            "the operation is covered"
        );
        let late = now + Duration::from_secs(16 * 60);
        assert_eq!(
            verify_sigv4("token", &m, &u, &h, &b, late)
                .unwrap_err()
                .code,
            "RequestExpired"
        );
        let mut unsigned = h.clone();
        unsigned.remove(header::AUTHORIZATION);
        assert_eq!(
            verify_sigv4("token", &m, &u, &unsigned, &b, now)
                .unwrap_err()
                .code,
            "MissingAuthenticationToken"
        );
    }
}
