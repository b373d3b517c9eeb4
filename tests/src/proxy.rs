//! TCP proxies on loopback: one that can be broken on demand (it drops every open connection and
//! refuses new ones for a while), for fault tests of commands in the middle of their work; one that
//! reads the answers for IAM refusals; one that keeps the requests a command sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

#[derive(Clone)]
pub struct FlakyProxy {
    pub endpoint: String,
    broken_until: Arc<Mutex<Option<Instant>>>,
    open: Arc<Mutex<Vec<AbortHandle>>>,
}

impl FlakyProxy {
    /// Proxies to `target` (`http://127.0.0.1:PORT`).
    pub async fn start(target: &str) -> FlakyProxy {
        let (target, listener, endpoint) = listen_for(target).await;
        let proxy = FlakyProxy {
            endpoint,
            broken_until: Arc::default(),
            open: Arc::default(),
        };
        let p = proxy.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if p.is_broken() {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                p.open.lock().unwrap().push(task.abort_handle());
            }
        });
        proxy
    }

    fn is_broken(&self) -> bool {
        self.broken_until
            .lock()
            .unwrap()
            .is_some_and(|t| Instant::now() < t)
    }

    /// Drops every open connection now and refuses connections for `d`.
    pub fn break_for(&self, d: Duration) {
        *self.broken_until.lock().unwrap() = Some(Instant::now() + d);
        for h in self.open.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    /// Ends a break now: connections are accepted again.
    pub fn heal(&self) {
        *self.broken_until.lock().unwrap() = None;
    }
}

/// A proxy's two ends: `target` (`http://127.0.0.1:PORT`) as an address, and a listener on a free
/// loopback port with its `http://` endpoint.
async fn listen_for(target: &str) -> (SocketAddr, TcpListener, String) {
    let target: SocketAddr = target
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("a loopback address");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    (target, listener, endpoint)
}

/// A loopback TCP proxy that reads the answers passing through it for IAM refusals: each "is not
/// authorized to perform: ACTION" moto (or AWS) sends back is kept, so a test sees exactly which
/// action was denied whatever the client makes of the error.
#[derive(Clone)]
pub struct DenialWatch {
    pub endpoint: String,
    denied: Arc<Mutex<Vec<String>>>,
}

const REFUSAL: &str = "is not authorized to perform: ";

fn refused_actions(text: &str) -> Vec<String> {
    text.match_indices(REFUSAL)
        .map(|(i, _)| {
            text[i + REFUSAL.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_'))
                .collect()
        })
        .collect()
}

impl DenialWatch {
    /// Proxies to `target` (`http://127.0.0.1:PORT`).
    pub async fn start(target: &str) -> DenialWatch {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (target, listener, endpoint) = listen_for(target).await;
        let watch = DenialWatch {
            endpoint,
            denied: Arc::default(),
        };
        let denied = watch.denied.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let denied = denied.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut in_read, mut in_write) = inbound.into_split();
                    let (mut out_read, mut out_write) = outbound.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut in_read, &mut out_write).await;
                        let _ = out_write.shutdown().await;
                    });
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut tail = String::new();
                    loop {
                        let n = match out_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if in_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        // Scan what came with the end of what came before, so a refusal split across
                        // reads is seen once.
                        tail.push_str(&String::from_utf8_lossy(&buf[..n]));
                        let found = refused_actions(&tail);
                        let last = tail.rfind(REFUSAL);
                        denied.lock().unwrap().extend(found);
                        tail = match last {
                            Some(i) => tail[i + REFUSAL.len()..].to_owned(),
                            None => {
                                let from = tail.len().saturating_sub(REFUSAL.len());
                                let from = (from..=tail.len())
                                    .find(|i| tail.is_char_boundary(*i))
                                    .unwrap_or(tail.len());
                                tail[from..].to_owned()
                            }
                        };
                    }
                    up.abort();
                });
            }
        });
        watch
    }

    /// The actions refused since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.denied.lock().unwrap())
    }
}

/// A loopback TCP proxy that keeps every byte the client sends, per connection: a test reads the
/// requests a command made (moto keeps no request log), e.g. which parameters a CreateChangeSet
/// carried.
#[derive(Clone)]
pub struct RequestLog {
    pub endpoint: String,
    connections: Arc<Mutex<Vec<Sent>>>,
}

/// What the client sent on one connection.
type Sent = Arc<Mutex<Vec<u8>>>;

/// One HTTP request as sent: its request line, headers (lowercase names) and body.
#[derive(Debug, Clone)]
pub struct Request {
    pub line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The form-encoded body's parameters (query-protocol APIs: CloudFormation, SQS, STS).
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    pub fn param(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// The requests in one connection's bytes (bodies by Content-Length or chunked encoding).
fn requests_in(mut bytes: &[u8]) -> Vec<Request> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        bytes = &bytes[end + 4..];
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
            let len = len.min(bytes.len());
            body.extend_from_slice(&bytes[..len]);
            bytes = &bytes[len..];
        } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            while let Some(eol) = bytes.windows(2).position(|w| w == b"\r\n") {
                let size_text = String::from_utf8_lossy(&bytes[..eol]).into_owned();
                let size_text = size_text
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                let size = usize::from_str_radix(&size_text, 16).unwrap_or(0);
                bytes = &bytes[eol + 2..];
                if size == 0 {
                    // Trailers end with an empty line.
                    let end = bytes
                        .windows(2)
                        .position(|w| w == b"\r\n")
                        .map_or(bytes.len(), |p| p + 2);
                    bytes = &bytes[end.min(bytes.len())..];
                    break;
                }
                let size = size.min(bytes.len());
                body.extend_from_slice(&bytes[..size]);
                bytes = &bytes[(size + 2).min(bytes.len())..];
            }
        }
        out.push(Request {
            line,
            headers,
            body,
        });
    }
    out
}

impl RequestLog {
    /// Proxies to `target` (`http://127.0.0.1:PORT`).
    pub async fn start(target: &str) -> RequestLog {
        let (target, listener, endpoint) = listen_for(target).await;
        let log = RequestLog {
            endpoint,
            connections: Arc::default(),
        };
        let connections = log.connections.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let sent: Sent = Arc::default();
                connections.lock().unwrap().push(sent.clone());
                tokio::spawn(relay(inbound, target, sent));
            }
        });
        log
    }

    /// Every request sent so far, connection by connection.
    pub fn requests(&self) -> Vec<Request> {
        self.connections
            .lock()
            .unwrap()
            .iter()
            .flat_map(|c| requests_in(&c.lock().unwrap()))
            .collect()
    }

    /// The query-protocol requests for `action` (`CreateChangeSet`).
    pub fn actions(&self, action: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.param("Action").as_deref() == Some(action))
            .collect()
    }
}

async fn relay(inbound: TcpStream, target: SocketAddr, sent: Sent) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let (mut in_read, mut in_write) = inbound.into_split();
    let (mut out_read, mut out_write) = outbound.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
        let _ = in_write.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match in_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        sent.lock().unwrap().extend_from_slice(&buf[..n]);
        if out_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = out_write.shutdown().await;
    let _ = down.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_back_by_length_and_by_chunks() {
        let bytes = b"POST / HTTP/1.1\r\nContent-Length: 28\r\n\r\nAction=CreateChangeSet&A=%2FPUT /b/k HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let r = requests_in(bytes);
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(r[0].param("Action").as_deref(), Some("CreateChangeSet"));
        assert_eq!(r[0].param("A").as_deref(), Some("/"));
        assert_eq!(r[1].body, b"abc");
        assert_eq!(r[2].line, "GET / HTTP/1.1");
    }
}
