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
}
