//! s3s-fs — the s3s project's S3 server over a folder — on loopback, in-process. Its listings carry no
//! ETag at all (as some S3-compatible stores' do), which moto never shows: a sync against it must read
//! each object's ETag with HeadObject before it can call the object unchanged.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The access key and secret the server checks (SigV4).
pub const KEY: &str = "testing";

pub struct S3sFs {
    pub endpoint: String,
    root: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl S3sFs {
    /// Serves a fresh empty folder on a free loopback port.
    pub async fn start() -> S3sFs {
        let root = tempfile::tempdir().unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs over a temporary folder");
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(KEY, KEY));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        S3sFs {
            endpoint,
            root,
            server,
        }
    }

    /// Creates a bucket (a folder under the server's root).
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir(self.root.path().join(name)).unwrap();
    }

    /// Where the server keeps `key` of `bucket`.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.path().join(bucket).join(key)
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        self.server.abort();
    }
}
