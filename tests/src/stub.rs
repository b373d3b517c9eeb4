//! A loopback HTTP server that gives every request the answer a function makes of it, and keeps
//! the requests: a server that is not AWS at all, or one service's endpoint on its own.

use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::faults::{Request, read_request};

/// What the stub answers: status, content type, extra headers and body.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// What a web server or a proxy's error page says to a path it does not know.
    pub fn html_404() -> Answer {
        Answer {
            status: 404,
            content_type: "text/html; charset=utf-8",
            headers: Vec::new(),
            body: b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1><p>The requested URL was not found on this server.</p></body></html>".to_vec(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

#[derive(Clone)]
pub struct Stub {
    pub endpoint: String,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Stub {
    pub async fn start(answer: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stub = Stub {
            endpoint: format!("http://{}", listener.local_addr().unwrap()),
            seen: Arc::default(),
        };
        let (seen, answer) = (stub.seen.clone(), Arc::new(answer));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (seen, answer) = (seen.clone(), answer.clone());
                tokio::spawn(async move {
                    if let Some(req) = read_request(&mut client).await {
                        let bytes = answer(&req).bytes();
                        seen.lock().unwrap().push(req);
                        let _ = client.write_all(&bytes).await;
                        let _ = client.shutdown().await;
                    }
                });
            }
        });
        stub
    }

    /// Each request's first line and headers, and its body, in arrival order.
    pub fn requests(&self) -> Vec<(String, Vec<u8>)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.head.clone(), r.body.clone()))
            .collect()
    }

    /// Each request's first line and headers, in arrival order.
    pub fn heads(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.head.clone())
            .collect()
    }
}
