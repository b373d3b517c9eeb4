//! How long a call waits for an answer, for AWS (every SDK client, through the HTTP client set once
//! on the `SdkConfig`) and for the app client alike: 3 s to connect, 5 s from sending a request to
//! the first byte of its answer (plus time to send a request body at a slow 128 KiB/s), and at most
//! [`NO_ANSWER_ATTEMPTS`] attempts that get no answer — each retry said on stderr — before the call
//! fails with [`NoAnswer`]: "nothing answered at 127.0.0.1:4566". An endpoint that accepts
//! connections and never answers costs a call about 15 s, not minutes of silence.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};

/// Time to open a connection (TCP and TLS).
pub const CONNECT: Duration = Duration::from_secs(3);
/// Time from sending a request (connecting included) to the first byte of its answer.
pub const FIRST_BYTE: Duration = Duration::from_secs(5);
/// Attempts of one call that may go unanswered; the last one's silence fails the call.
pub const NO_ANSWER_ATTEMPTS: u32 = 3;
/// The slowest upload allowed for: a request body adds its size at this rate to [`FIRST_BYTE`].
const SLOW_UPLOAD_BYTES_PER_SEC: u64 = 128 * 1024;

static QUIET: AtomicBool = AtomicBool::new(false);

/// `-q`: no retry lines.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// The last line [`say`] wrote, and when.
static LAST: Mutex<Option<(String, Instant)>> = Mutex::new(None);

/// A progress line on stderr, unless `-q`. The same line again within a second is not repeated:
/// concurrent calls to one silent endpoint (`load` signs its users in sixteen at a time) retry
/// together, and one line says so for all of them.
pub fn say(line: &str) {
    if QUIET.load(Ordering::Relaxed) {
        return;
    }
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if last
        .as_ref()
        .is_some_and(|(l, at)| l == line && at.elapsed() < Duration::from_secs(1))
    {
        return;
    }
    *last = Some((line.to_owned(), Instant::now()));
    eprintln!("{line}");
}

/// How long a request with a body of `body_len` bytes (None: unknown) may wait for its answer's
/// first byte: [`FIRST_BYTE`], plus the body's time at a slow upload rate; no limit of its own for a
/// body of unknown length (the SDK's attempt timeout still holds).
pub fn first_byte_wait(body_len: Option<u64>) -> Option<Duration> {
    let len = body_len?;
    Some(FIRST_BYTE + Duration::from_secs_f64(len as f64 / SLOW_UPLOAD_BYTES_PER_SEC as f64))
}

/// A whole number of seconds, at least 1, as the messages show a wait.
fn secs(d: Duration) -> u64 {
    d.as_secs_f64().round().max(1.0) as u64
}

/// The line said before attempt `next` of `of`, after one that got no answer.
pub fn retry_line(address: &str, waited: Duration, next: u32, of: u32) -> String {
    format!(
        "no answer from {address} in {} s, retrying {next}/{of}",
        secs(waited)
    )
}

/// A call whose every attempt went unanswered: the endpoint accepted (or never completed) the
/// connection and sent nothing back.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "nothing answered at {address} ({})",
    if *attempts == 1 {
        format!("no answer in {} s", secs(*wait))
    } else {
        format!("{attempts} attempts, no answer in {} s each", secs(*wait))
    }
)]
pub struct NoAnswer {
    /// `host:port`.
    pub address: String,
    pub attempts: u32,
    pub wait: Duration,
}

/// The [`NoAnswer`] behind `err`, if that is how it failed.
pub fn no_answer_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a NoAnswer> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(n) = e.downcast_ref::<NoAnswer>() {
            return Some(n);
        }
        cur = e.source();
    }
    None
}

/// The [`NoAnswer`] anywhere in an error's chain, or behind an AWS call's.
pub fn no_answer(err: &anyhow::Error) -> Option<&NoAnswer> {
    err.chain().find_map(|e| {
        no_answer_in(e).or_else(|| {
            e.downcast_ref::<crate::aws::AwsError>()
                .and_then(|a| a.no_answer.as_ref())
        })
    })
}

/// `host:port` of a URL (the URL itself when it has no authority).
pub fn address_of(url: &str) -> String {
    let uri: Option<http::Uri> = url.parse().ok();
    let authority = uri
        .as_ref()
        .and_then(|u| u.authority().map(|a| a.to_string()));
    match (authority, uri.as_ref().and_then(http::Uri::scheme_str)) {
        (Some(a), _) if a.contains(':') => a,
        (Some(a), Some("https")) => format!("{a}:443"),
        (Some(a), _) => format!("{a}:80"),
        (None, _) => url.to_owned(),
    }
}

/// The SDK's default HTTPS client, each attempt held to [`first_byte_wait`]: an attempt without an
/// answer in time says so on stderr and is retried by the SDK (a timeout), up to
/// [`NO_ANSWER_ATTEMPTS`] or the client's own maximum; then the call fails with [`NoAnswer`], which the
/// SDK does not retry further. `None` if the SDK has no default client to wrap.
pub fn sdk_http_client() -> Option<SharedHttpClient> {
    let plugin = aws_smithy_runtime::client::defaults::default_http_client_plugin_v2(
        aws_config::BehaviorVersion::latest(),
    )?;
    let components =
        aws_smithy_runtime_api::client::runtime_plugin::RuntimePlugin::runtime_components(
            &plugin,
            &RuntimeComponentsBuilder::new("notesctl"),
        );
    let inner = components.http_client()?;
    Some(SharedHttpClient::new(Patient { inner }))
}

#[derive(Debug)]
struct Patient {
    inner: SharedHttpClient,
}

impl HttpClient for Patient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(PatientConnector {
            inner: self.inner.http_connector(settings, components),
        })
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[derive(Debug)]
struct PatientConnector {
    inner: SharedHttpConnector,
}

/// `attempt=2; max=6` from the `amz-sdk-request` header the SDK sends with every attempt.
fn attempt_of(request: &HttpRequest) -> (u32, u32) {
    let header = request.headers().get("amz-sdk-request").unwrap_or_default();
    let field = |name: &str| {
        header.split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.parse::<u32>().ok()).flatten()
        })
    };
    let attempt = field("attempt").unwrap_or(1);
    (attempt, field("max").unwrap_or(attempt))
}

impl HttpConnector for PatientConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let Some(wait) = first_byte_wait(request.body().content_length()) else {
            return self.inner.call(request);
        };
        let address = address_of(request.uri());
        let (attempt, max) = attempt_of(&request);
        let of = max.min(NO_ANSWER_ATTEMPTS);
        let started = Instant::now();
        let call = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            match tokio::time::timeout(wait, call).await {
                // No connection in time: the SDK retries it (up to its own maximum); say so.
                Ok(Err(e)) if e.is_timeout() && attempt < max => {
                    say(&format!(
                        "no connection to {address} in {} s, retrying {}/{max}",
                        secs(started.elapsed()),
                        attempt + 1
                    ));
                    Err(e)
                }
                Ok(answer) => answer,
                Err(_) if attempt < of => {
                    say(&retry_line(&address, started.elapsed(), attempt + 1, of));
                    Err(ConnectorError::timeout(Box::new(NoAnswer {
                        address,
                        attempts: attempt,
                        wait,
                    })))
                }
                // Not a timeout for the SDK: it would retry one.
                Err(_) => Err(ConnectorError::other(
                    Box::new(NoAnswer {
                        address,
                        attempts: attempt,
                        wait,
                    }),
                    None,
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_with_the_body_and_read_as_seconds() {
        assert_eq!(first_byte_wait(Some(0)), Some(FIRST_BYTE));
        assert_eq!(
            first_byte_wait(Some(10 * 128 * 1024)),
            Some(FIRST_BYTE + Duration::from_secs(10))
        );
        assert_eq!(first_byte_wait(None), None);
        assert_eq!(
            retry_line("127.0.0.1:9", Duration::from_millis(5004), 2, 3),
            "no answer from 127.0.0.1:9 in 5 s, retrying 2/3"
        );
        let n = NoAnswer {
            address: "127.0.0.1:9".into(),
            attempts: 3,
            wait: FIRST_BYTE,
        };
        assert_eq!(
            n.to_string(),
            "nothing answered at 127.0.0.1:9 (3 attempts, no answer in 5 s each)"
        );
        let one = NoAnswer { attempts: 1, ..n };
        assert_eq!(
            one.to_string(),
            "nothing answered at 127.0.0.1:9 (no answer in 5 s)"
        );
    }

    #[test]
    fn addresses_have_their_port() {
        assert_eq!(address_of("http://127.0.0.1:4566/x"), "127.0.0.1:4566");
        assert_eq!(
            address_of("https://sqs.eu-west-1.amazonaws.com/"),
            "sqs.eu-west-1.amazonaws.com:443"
        );
        assert_eq!(address_of("http://localhost"), "localhost:80");
    }
}
