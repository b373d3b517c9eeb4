//! Content types by file extension, for the dev server and for uploads to S3.

pub fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit('/')
        .next()
        .unwrap_or(path)
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref().unwrap_or_default() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" | "cjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn common_web_types() {
        for (p, t) in [
            ("index.html", "text/html; charset=utf-8"),
            ("a/app.3f2a.js", "text/javascript; charset=utf-8"),
            ("m.mjs", "text/javascript; charset=utf-8"),
            ("s.CSS", "text/css; charset=utf-8"),
            ("config.json", "application/json"),
            ("x.js.map", "application/json"),
            ("i.svg", "image/svg+xml"),
            ("f.woff2", "font/woff2"),
            ("w.wasm", "application/wasm"),
            ("LICENSE", "application/octet-stream"),
            ("dir.v2/file", "application/octet-stream"),
        ] {
            assert_eq!(content_type(p), t, "{p}");
        }
    }
}
