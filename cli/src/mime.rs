//! Content types by file extension, for the dev server and for uploads to S3: `mime_guess`'s table,
//! with our few overrides in one place, and `charset=utf-8` on text (the frontend is UTF-8).

/// Where we answer differently from `mime_guess` (or it has no answer): JavaScript as the HTML
/// standard names it, whatever the extension; source maps as the JSON they are; the web manifest
/// and WebAssembly by their registered types, which browsers check.
const OVERRIDES: &[(&str, &str)] = &[
    ("js", "text/javascript"),
    ("mjs", "text/javascript"),
    ("cjs", "text/javascript"),
    ("map", "application/json"),
    ("webmanifest", "application/manifest+json"),
    ("wasm", "application/wasm"),
];

pub fn content_type(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some(ext) = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()) else {
        return "application/octet-stream".to_owned();
    };
    let found = OVERRIDES
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|(_, t)| *t)
        .or_else(|| mime_guess::from_ext(&ext).first_raw())
        .unwrap_or("application/octet-stream");
    if found.starts_with("text/") {
        format!("{found}; charset=utf-8")
    } else {
        found.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn each_override() {
        for (p, t) in [
            ("a/app.3f2a.js", "text/javascript; charset=utf-8"),
            ("m.mjs", "text/javascript; charset=utf-8"),
            ("c.cjs", "text/javascript; charset=utf-8"),
            ("x.js.map", "application/json"),
            ("site.webmanifest", "application/manifest+json"),
            ("w.wasm", "application/wasm"),
        ] {
            assert_eq!(content_type(p), t, "{p}");
        }
    }

    #[test]
    fn common_web_types_from_the_table() {
        for (p, t) in [
            ("index.html", "text/html; charset=utf-8"),
            ("s.CSS", "text/css; charset=utf-8"),
            ("notes.txt", "text/plain; charset=utf-8"),
            ("config.json", "application/json"),
            ("i.svg", "image/svg+xml"),
            ("p.png", "image/png"),
            ("f.woff2", "font/woff2"),
            ("d.pdf", "application/pdf"),
            ("LICENSE", "application/octet-stream"),
            ("dir.v2/file", "application/octet-stream"),
            ("x.unknownext", "application/octet-stream"),
        ] {
            assert_eq!(content_type(p), t, "{p}");
        }
    }
}
