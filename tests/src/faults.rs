//! A fault-injecting HTTP proxy between `notesctl` and moto. Per request kind (the AWS operation), it
//! answers as a struggling AWS would — throttling, 500/503, a connection reset before or after the
//! request reached moto, a slow answer, an expired token, a batch refused as a whole — chosen from a
//! seed, so a failing run can be replayed with the same faults in the same places.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to a request it picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// 400 ThrottlingException (JSON and query services), 503 SlowDown (S3).
    Throttle,
    /// 500 InternalError.
    ServerError,
    /// 503 ServiceUnavailable.
    Unavailable,
    /// The connection drops before the request reaches moto.
    ResetBefore,
    /// moto handles the request; the connection drops before its answer reaches the client.
    ResetAfter,
    /// The answer comes, late.
    Slow,
    /// 400 ExpiredToken: the credentials ran out in the middle of the command.
    ExpiredToken,
    /// The request is read and never answered (nor passed on): the connection stays open, silent.
    NoAnswer,
    /// 400 `AWS.SimpleQueueService.BatchRequestTooLong`, the sender's fault: SQS refuses a whole
    /// SendMessageBatch for what one message in it is (aim it with [`Plan::marked`]). Not passed on.
    BatchRefused,
}

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::Throttle,
        Fault::ServerError,
        Fault::Unavailable,
        Fault::ResetBefore,
        Fault::ResetAfter,
        Fault::Slow,
        Fault::ExpiredToken,
        Fault::NoAnswer,
        Fault::BatchRefused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Throttle => "throttling",
            Fault::ServerError => "500",
            Fault::Unavailable => "503",
            Fault::ResetBefore => "reset before",
            Fault::ResetAfter => "reset after",
            Fault::Slow => "slow answer",
            Fault::ExpiredToken => "expired token",
            Fault::NoAnswer => "no answer",
            Fault::BatchRefused => "batch refused",
        }
    }

    /// Whether a well-behaved client should get past it (by retrying), not stop.
    pub fn transient(self) -> bool {
        !matches!(self, Fault::ExpiredToken | Fault::BatchRefused)
    }
}

/// Which requests get the fault: after the first `after` requests, the first one whose operation
/// matches (and whose body carries `marked`, if set), then each further one with probability
/// `rate`, from the seed; at most `limit` of them (`None`: no limit).
#[derive(Debug, Clone)]
pub struct Plan {
    pub fault: Fault,
    pub rate: f64,
    pub seed: u64,
    /// Operations (`DescribeStacks`, `PutObject`, …) to pick from; empty: every operation.
    pub ops: Vec<String>,
    /// Operations never picked.
    pub spare: Vec<String>,
    pub limit: Option<usize>,
    pub after: usize,
    pub delay: Duration,
    /// Only requests whose body carries this text (a marked message, say) are picked; `None`: any.
    pub marked: Option<String>,
}

impl Plan {
    pub fn new(fault: Fault, seed: u64) -> Plan {
        Plan {
            fault,
            rate: 0.3,
            seed,
            ops: Vec::new(),
            spare: Vec::new(),
            limit: None,
            after: 0,
            delay: Duration::from_millis(1500),
            marked: None,
        }
    }
}

struct State {
    plan: Plan,
    rng: u64,
    injected: usize,
    requests: usize,
    /// Requests seen and faults injected, by operation.
    seen: BTreeMap<String, (usize, usize)>,
}

impl State {
    /// xorshift64*: the same seed picks the same requests.
    fn roll(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick(&mut self, op: &str, body: &[u8]) -> bool {
        let entry = self.seen.entry(op.to_owned()).or_default();
        entry.0 += 1;
        self.requests += 1;
        let wanted =
            self.requests > self.plan.after
                && (self.plan.ops.is_empty() || self.plan.ops.iter().any(|o| o == op))
                && !self.plan.spare.iter().any(|o| o == op)
                && self.plan.marked.as_deref().is_none_or(|m| {
                    m.is_empty() || body.windows(m.len()).any(|w| w == m.as_bytes())
                });
        let under_limit = self.plan.limit.is_none_or(|l| self.injected < l);
        if wanted && under_limit && (self.injected == 0 || self.roll() < self.plan.rate) {
            self.injected += 1;
            self.seen.get_mut(op).unwrap().1 += 1;
            true
        } else {
            false
        }
    }
}

#[derive(Clone)]
pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

/// One HTTP request as read off the socket.
pub struct Request {
    pub head: String,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The AWS operation: `X-Amz-Target`'s, a query `Action=`, or the HTTP method and path for REST
    /// services (S3, CloudFront).
    fn operation(&self) -> String {
        if let Some(t) = self.header("x-amz-target") {
            return t.rsplit('.').next().unwrap_or(t).to_owned();
        }
        let body = String::from_utf8_lossy(&self.body);
        if let Some(action) = body.split('&').find_map(|p| p.strip_prefix("Action=")) {
            return action.to_owned();
        }
        let line = self.head.lines().next().unwrap_or_default();
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or_default();
        let path = parts.next().unwrap_or_default();
        if path.starts_with("/20") {
            return format!("CloudFront {method}");
        }
        let query = path.split_once('?').map_or("", |(_, q)| q);
        if method == "PUT" && query.contains("partNumber=") && query.contains("uploadId=") {
            return "UploadPart".to_owned();
        }
        format!("S3 {method}")
    }

    fn protocol(&self) -> Protocol {
        let form = self
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        // CloudFront's REST paths start with its API version (/2020-05-31/…) and answer in XML.
        let cloudfront = self
            .head
            .split(' ')
            .nth(1)
            .is_some_and(|p| p.starts_with("/20"));
        if self.header("x-amz-target").is_some() {
            Protocol::Json
        } else if form || cloudfront {
            Protocol::Query
        } else {
            Protocol::S3
        }
    }
}

#[derive(Clone, Copy)]
enum Protocol {
    Json,
    Query,
    S3,
}

/// The error answer of `code` in the request's protocol.
fn error_answer(protocol: Protocol, status: u16, code: &str, message: &str) -> Vec<u8> {
    let (content_type, body, extra) = match protocol {
        Protocol::Json => (
            "application/x-amz-json-1.0",
            format!(r#"{{"__type":"{code}","message":"{message}"}}"#),
            format!("x-amzn-ErrorType: {code}\r\nx-amzn-query-error: {code};Sender\r\n"),
        ),
        Protocol::Query => (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
            ),
            String::new(),
        ),
        Protocol::S3 => (
            "application/xml",
            format!(
                "<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault</RequestId></Error>"
            ),
            String::new(),
        ),
    };
    let reason = match status {
        400 => "Bad Request",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n{extra}x-amzn-RequestId: fault\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// SQS refusing a whole SendMessageBatch for the sender's fault. In SQS's JSON protocol (which the
/// SDK speaks: `X-Amz-Target: AmazonSQS.SendMessageBatch`) the error's shape is in `__type` and its
/// query-compatible code, the one the SDK reports, in `x-amzn-query-error`; in the query protocol
/// the code is the XML's.
fn batch_refused(protocol: Protocol) -> Vec<u8> {
    const CODE: &str = "AWS.SimpleQueueService.BatchRequestTooLong";
    const MESSAGE: &str = "Batch requests cannot be longer than 262144 bytes.";
    match protocol {
        Protocol::Json => {
            let body = format!(
                r#"{{"__type":"com.amazonaws.sqs#BatchRequestTooLong","message":"{MESSAGE}"}}"#
            );
            format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-query-error: {CODE};Sender\r\nx-amzn-RequestId: fault\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
        _ => error_answer(protocol, 400, CODE, MESSAGE),
    }
}

pub async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut body = buf[head_end..].to_vec();
    let req = Request {
        head: head.clone(),
        body: Vec::new(),
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        while !body.ends_with(b"0\r\n\r\n") {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        let len: usize = req
            .header("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        while body.len() < len {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Some(Request { head, body })
}

/// The request as sent on: the same bytes (the signature stays valid), but one request per connection.
fn forwarded(req: &Request) -> Vec<u8> {
    let mut head: Vec<&str> = req
        .head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    head.push("Connection: close");
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&req.body);
    out
}

async fn exchange(target: SocketAddr, req: &Request) -> Option<Vec<u8>> {
    let mut upstream = TcpStream::connect(target).await.ok()?;
    upstream.write_all(&forwarded(req)).await.ok()?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer).await.ok()?;
    Some(answer)
}

impl FaultProxy {
    /// Proxies to `target` (`http://127.0.0.1:PORT`) with `plan`'s faults.
    pub async fn start(target: &str, plan: Plan) -> FaultProxy {
        let target: SocketAddr = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("a loopback address");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = FaultProxy {
            endpoint: format!("http://{}", listener.local_addr().unwrap()),
            state: Arc::new(Mutex::new(State {
                rng: plan.seed.max(1),
                plan,
                injected: 0,
                requests: 0,
                seen: BTreeMap::new(),
            })),
        };
        let state = proxy.state.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    // One request per connection: the answer says Connection: close.
                    let Some(req) = read_request(&mut client).await else {
                        return;
                    };
                    let (fault, delay) = {
                        let mut s = state.lock().unwrap();
                        let picked = s.pick(&req.operation(), &req.body);
                        (picked.then_some(s.plan.fault), s.plan.delay)
                    };
                    let protocol = req.protocol();
                    let answer = match fault {
                        None => exchange(target, &req).await,
                        Some(Fault::Throttle) => Some(match protocol {
                            Protocol::S3 => error_answer(
                                protocol,
                                503,
                                "SlowDown",
                                "Please reduce your request rate.",
                            ),
                            Protocol::Query => {
                                error_answer(protocol, 400, "Throttling", "Rate exceeded")
                            }
                            Protocol::Json => {
                                error_answer(protocol, 400, "ThrottlingException", "Rate exceeded")
                            }
                        }),
                        Some(Fault::ServerError) => Some(error_answer(
                            protocol,
                            500,
                            "InternalError",
                            "We encountered an internal error. Please try again.",
                        )),
                        Some(Fault::Unavailable) => Some(error_answer(
                            protocol,
                            503,
                            "ServiceUnavailable",
                            "Service is unavailable. Please try again.",
                        )),
                        Some(Fault::ExpiredToken) => Some(error_answer(
                            protocol,
                            400,
                            match protocol {
                                Protocol::Json => "ExpiredTokenException",
                                _ => "ExpiredToken",
                            },
                            "The security token included in the request is expired",
                        )),
                        Some(Fault::BatchRefused) => Some(batch_refused(protocol)),
                        Some(Fault::ResetBefore) => None,
                        Some(Fault::NoAnswer) => {
                            // Silent until the client gives up and closes its side.
                            let mut sink = [0u8; 4096];
                            while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
                            return;
                        }
                        Some(Fault::ResetAfter) => {
                            let _ = exchange(target, &req).await;
                            None
                        }
                        Some(Fault::Slow) => {
                            tokio::time::sleep(delay).await;
                            exchange(target, &req).await
                        }
                    };
                    match answer {
                        Some(bytes) => {
                            let _ = client.write_all(&bytes).await;
                            let _ = client.shutdown().await;
                        }
                        // Drop the connection without a word, mid-exchange.
                        None => {
                            // A zero linger resets the connection (RST) at once; it never blocks.
                            #[allow(deprecated)]
                            let _ = client.set_linger(Some(Duration::ZERO));
                            drop(client);
                        }
                    }
                });
            }
        });
        proxy
    }

    /// Changes the plan from the next request on (the counts go on): a test can let a command
    /// get going before the faults start.
    pub fn replan(&self, plan: Plan) {
        let mut state = self.state.lock().unwrap();
        state.rng = plan.seed.max(1);
        state.plan = plan;
    }

    /// How many requests came through.
    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }

    /// How many faults were injected.
    pub fn injected(&self) -> usize {
        self.state.lock().unwrap().injected
    }

    /// Requests seen and faults injected, by operation.
    pub fn seen(&self) -> BTreeMap<String, (usize, usize)> {
        self.state.lock().unwrap().seen.clone()
    }
}
