//! A tiny S3 endpoint on loopback, kept only for what neither moto nor s3s-fs can show: one listing
//! that mixes objects with and without ETags, and a log of every request served (which objects were
//! HEADed). Objects another tool uploaded in parts are tested on moto
//! (`frontend_moto::an_object_another_tool_uploaded_in_parts_is_judged_by_its_md5_metadata`); a server
//! that lists no ETag at all on s3s-fs (`frontend_moto::a_server_that_lists_no_etags_is_synced_by_content`,
//! tests/src/s3s_fs.rs). It answers
//! ListObjectsV2, HeadObject and PutObject for one bucket, path-style.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// An object as this server shows it.
#[derive(Debug, Clone, Default)]
pub struct FakeObject {
    pub size: u64,
    /// The ETag HeadObject and PutObject answer (without quotes).
    pub etag: String,
    /// Whether ListObjectsV2 shows the ETag.
    pub listed_etag: bool,
}

#[derive(Clone)]
pub struct FakeS3 {
    pub endpoint: String,
    objects: Arc<Mutex<BTreeMap<String, FakeObject>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeS3 {
    /// Serves `objects` as the content of any bucket.
    pub async fn start(objects: BTreeMap<String, FakeObject>) -> FakeS3 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s3 = FakeS3 {
            endpoint: format!("http://{}", listener.local_addr().unwrap()),
            objects: Arc::new(Mutex::new(objects)),
            requests: Arc::default(),
        };
        let server = s3.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    while let Some((method, target, body)) = read_request(&mut read).await {
                        let response = server.answer(&method, &target, &body);
                        if write.write_all(&response).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        s3
    }

    /// Every request served, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    pub fn object(&self, key: &str) -> Option<FakeObject> {
        self.objects.lock().unwrap().get(key).cloned()
    }

    fn answer(&self, method: &str, target: &str, body: &[u8]) -> Vec<u8> {
        self.requests
            .lock()
            .unwrap()
            .push(format!("{method} {target}"));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        // Path style: /bucket/key.
        let key = path
            .trim_start_matches('/')
            .split_once('/')
            .map(|(_, k)| decode(k))
            .unwrap_or_default();
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| decode(v))
        };
        let mut objects = self.objects.lock().unwrap();
        match method {
            "GET" if key.is_empty() && param("list-type").as_deref() == Some("2") => {
                let after = param("start-after").unwrap_or_default();
                let mut xml = String::from(
                    r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>"#,
                );
                for (k, o) in objects.iter().filter(|(k, _)| k.as_str() > after.as_str()) {
                    let etag = if o.listed_etag {
                        format!("<ETag>&quot;{}&quot;</ETag>", o.etag)
                    } else {
                        String::new()
                    };
                    xml.push_str(&format!(
                        "<Contents><Key>{k}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>{etag}<Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
                        o.size
                    ));
                }
                xml.push_str("</ListBucketResult>");
                response(
                    "200 OK",
                    &[("Content-Type", "application/xml")],
                    xml.as_bytes(),
                )
            }
            "HEAD" => match objects.get(&key) {
                Some(o) => {
                    let headers = [
                        ("ETag".to_owned(), format!("\"{}\"", o.etag)),
                        ("Content-Length".to_owned(), o.size.to_string()),
                    ];
                    let mut out = String::from("HTTP/1.1 200 OK\r\n");
                    for (k, v) in headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.into_bytes()
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
            },
            "PUT" if !key.is_empty() => {
                use md5::{Digest, Md5};
                let etag: String = Md5::digest(body)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                objects.insert(
                    key,
                    FakeObject {
                        size: body.len() as u64,
                        etag: etag.clone(),
                        listed_etag: false,
                    },
                );
                response("200 OK", &[("ETag", &format!("\"{etag}\""))], b"")
            }
            _ => response(
                "501 Not Implemented",
                &[("Content-Type", "application/xml")],
                b"<Error><Code>NotImplemented</Code><Message>not in the fake</Message></Error>",
            ),
        }
    }
}

fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Percent-decoding of a path or query value (the SDK encodes a space as `%20`; `+` is itself).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One HTTP/1.1 request: method, target and body (by Content-Length). `None` when the peer closed.
async fn read_request(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if read.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if read.read_line(&mut header).await.ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; length];
    read.read_exact(&mut body).await.ok()?;
    Some((method, target, body))
}
