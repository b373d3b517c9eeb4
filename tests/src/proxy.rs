//! A TCP proxy on loopback that can be broken on demand: it drops every open connection and refuses
//! new ones for a while. For fault tests of commands in the middle of their work.

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
        let target: SocketAddr = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("a loopback address");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
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
        let target: SocketAddr = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("a loopback address");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let watch = DenialWatch {
            endpoint: format!("http://{}", listener.local_addr().unwrap()),
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
