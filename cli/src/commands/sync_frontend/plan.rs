//! What to upload and delete, and how each object is cached. Pure: the decisions, tested on their own.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::local::{Filter, LocalFile, Source};
use crate::aws::s3::{RemoteObject, hex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Why {
    New,
    Changed,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub upload: Vec<(String, Why)>,
    pub delete: Vec<String>,
    pub unchanged: usize,
}

/// Names that differ only by case: fine for S3, trouble for anyone who checks the site out on macOS
/// or Windows, and a sign of a broken build.
pub fn case_collisions(local: &[LocalFile]) -> Vec<(String, String)> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    let mut out = Vec::new();
    for f in local {
        if let Some(other) = seen.insert(f.key.to_lowercase(), &f.key) {
            out.push((other.to_owned(), f.key.clone()));
        }
    }
    out
}

/// What to upload and delete.
pub fn plan(
    local: &[LocalFile],
    remote: &[RemoteObject],
    delete: bool,
    force: bool,
    excluded: &Filter,
) -> anyhow::Result<Plan> {
    if local.iter().all(|f| matches!(f.source, Source::Bytes(_))) && !force {
        anyhow::bail!(
            "the folder has no files to publish; refusing (with --delete this would empty the bucket). Build the frontend first, or pass --force"
        );
    }
    let collisions = case_collisions(local);
    if !collisions.is_empty() && !force {
        let (a, b) = &collisions[0];
        anyhow::bail!(
            "{a} and {b} differ only by case ({} such pairs): rename one, or pass --force",
            collisions.len()
        );
    }
    let remote_by_key: HashMap<&str, &RemoteObject> =
        remote.iter().map(|r| (r.key.as_str(), r)).collect();
    let mut p = Plan::default();
    for f in local {
        match remote_by_key.get(f.key.as_str()) {
            None => p.upload.push((f.key.clone(), Why::New)),
            Some(r) => {
                let etag = r.etag.trim_matches('"');
                let same = r.size == f.size
                    && (etag == f.etag || r.md5_meta.as_deref() == Some(hex(&f.md5).as_str()));
                if same {
                    p.unchanged += 1;
                } else {
                    p.upload.push((f.key.clone(), Why::Changed));
                }
            }
        }
    }
    if delete {
        let keep: HashSet<&str> = local.iter().map(|f| f.key.as_str()).collect();
        p.delete = remote
            .iter()
            .filter(|r| !keep.contains(r.key.as_str()) && !excluded.is_excluded(&r.key))
            .map(|r| r.key.clone())
            .collect();
        if !force && !remote.is_empty() && p.delete.len() * 2 > remote.len() {
            anyhow::bail!(
                "--delete would remove {} of the bucket's {} objects (more than half): check DIR and --exclude, or pass --force",
                p.delete.len(),
                remote.len()
            );
        }
    }
    Ok(p)
}

/// `index.html`, other HTML and `config.json` are revalidated on every load; content-hashed assets are
/// cached for a year; everything else for five minutes.
pub fn cache_control(key: &str) -> &'static str {
    let name = key.rsplit('/').next().unwrap_or(key);
    if name == "config.json" || name.ends_with(".html") || name.ends_with(".htm") {
        "no-cache"
    } else if is_content_hashed(name) {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    }
}

/// `app.3f2a1b9c.js`, `index-BdK3x9Qa.js`, `chunk.5e2f8a1d7c.css`: a name part of 8+ letters and
/// digits, with a digit in it, besides the stem and the extension.
pub fn is_content_hashed(name: &str) -> bool {
    let Some((stem, _ext)) = name.rsplit_once('.') else {
        return false;
    };
    let parts: Vec<&str> = stem.split(['.', '-', '_']).collect();
    parts.len() > 1
        && parts[1..].iter().any(|p| {
            p.len() >= 8
                && p.chars().all(|c| c.is_ascii_alphanumeric())
                && p.chars().any(|c| c.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::sync_frontend::local::{PART_SIZE, digest, generated, globs};
    use std::path::PathBuf;

    fn file(key: &str, content: &[u8]) -> LocalFile {
        let mut f = generated(key, content.to_vec());
        f.source = Source::Path(PathBuf::from(key));
        f
    }

    fn remote(f: &LocalFile) -> RemoteObject {
        RemoteObject {
            key: f.key.clone(),
            size: f.size,
            etag: format!("\"{}\"", f.etag),
            md5_meta: None,
        }
    }

    fn none() -> Filter {
        globs(&[], false).unwrap()
    }

    #[test]
    fn unchanged_files_are_not_sent_and_same_size_edits_are() {
        let a = file("index.html", b"<h1>v1</h1>");
        let b = file("app.js", b"console.log(1)");
        let remote_objs = vec![remote(&a), remote(&b)];
        let p = plan(&[a.clone(), b.clone()], &remote_objs, false, false, &none()).unwrap();
        assert_eq!((p.upload.len(), p.unchanged), (0, 2));
        let edited = file("index.html", b"<h1>v2</h1>");
        assert_eq!(edited.size, a.size, "same size");
        let p = plan(&[edited, b], &remote_objs, false, false, &none()).unwrap();
        assert_eq!(p.upload, vec![("index.html".to_owned(), Why::Changed)]);
    }

    #[test]
    fn multipart_objects_compare_by_stored_md5_or_computed_etag() {
        let big = vec![7u8; (PART_SIZE + 10) as usize];
        let (md5, etag) = digest(big.as_slice(), big.len() as u64).unwrap();
        assert!(etag.ends_with("-2"), "{etag}");
        let f = LocalFile {
            key: "big.bin".into(),
            source: Source::Path("big.bin".into()),
            size: big.len() as u64,
            md5,
            etag: etag.clone(),
        };
        let same_parts = RemoteObject {
            key: "big.bin".into(),
            size: f.size,
            etag: etag.clone(),
            md5_meta: None,
        };
        assert_eq!(
            plan(
                std::slice::from_ref(&f),
                &[same_parts],
                false,
                false,
                &none()
            )
            .unwrap()
            .unchanged,
            1
        );
        let other_parts = RemoteObject {
            key: "big.bin".into(),
            size: f.size,
            etag: "abc-3".into(),
            md5_meta: Some(hex(&md5)),
        };
        assert_eq!(
            plan(
                std::slice::from_ref(&f),
                &[other_parts],
                false,
                false,
                &none()
            )
            .unwrap()
            .unchanged,
            1
        );
        let changed = RemoteObject {
            key: "big.bin".into(),
            size: f.size,
            etag: "abc-3".into(),
            md5_meta: Some("0".repeat(32)),
        };
        assert_eq!(
            plan(&[f], &[changed], false, false, &none())
                .unwrap()
                .upload
                .len(),
            1
        );
    }

    #[test]
    fn delete_only_what_the_plan_says_and_never_half_the_bucket() {
        let keep: Vec<LocalFile> = (0..4).map(|i| file(&format!("f{i}.js"), b"x")).collect();
        let mut remote_objs: Vec<RemoteObject> = keep.iter().map(remote).collect();
        remote_objs.push(RemoteObject {
            key: "old.js".into(),
            size: 1,
            etag: "e".into(),
            md5_meta: None,
        });
        remote_objs.push(RemoteObject {
            key: "uploads/keep.png".into(),
            size: 1,
            etag: "e".into(),
            md5_meta: None,
        });
        let excluded = globs(&["uploads/**".into()], false).unwrap();
        let p = plan(&keep, &remote_objs, true, false, &excluded).unwrap();
        assert_eq!(
            p.delete,
            vec!["old.js".to_owned()],
            "excluded keys are kept"
        );
        assert!(
            plan(&keep, &remote_objs, false, false, &excluded)
                .unwrap()
                .delete
                .is_empty(),
            "no --delete, no deletes"
        );
        let few = &keep[..1];
        let err = plan(few, &remote_objs, true, false, &excluded)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than half"), "{err}");
        assert_eq!(
            plan(few, &remote_objs, true, true, &excluded)
                .unwrap()
                .delete
                .len(),
            4
        );
    }

    #[test]
    fn refuses_empty_folders_and_case_collisions() {
        let only_config = vec![generated("config.json", b"{}".to_vec())];
        assert!(
            plan(&only_config, &[], true, false, &none())
                .unwrap_err()
                .to_string()
                .contains("no files")
        );
        let clash = vec![file("Logo.png", b"a"), file("logo.png", b"b")];
        assert!(
            plan(&clash, &[], false, false, &none())
                .unwrap_err()
                .to_string()
                .contains("differ only by case")
        );
        assert_eq!(
            plan(&clash, &[], false, true, &none())
                .unwrap()
                .upload
                .len(),
            2
        );
    }

    #[test]
    fn cache_control_by_kind() {
        assert_eq!(cache_control("index.html"), "no-cache");
        assert_eq!(cache_control("config.json"), "no-cache");
        assert_eq!(
            cache_control("assets/app.3f2a1b9c.js"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(
            cache_control("assets/index-BdK3x9Q1.css"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(cache_control("app.js"), "public, max-age=300");
        assert_eq!(
            cache_control("jquery-3.7.1.min.js"),
            "public, max-age=300",
            "a version is not a hash"
        );
        assert_eq!(cache_control("favicon.ico"), "public, max-age=300");
    }
}
