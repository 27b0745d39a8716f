//! `BlobStore` on the local filesystem: key `a/b/c.json` is the file `<root>/a/b/c.json`.
//!
//! Writes go to a temp file in the target directory and are then published atomically:
//! `rename` for plain puts, `link` (which fails if the name exists) for `if_none_match`, so
//! readers never see partial blobs and racing conditional puts have exactly one winner.
//!
//! Unlike S3, a key cannot also be a "directory" of other keys (`a` and `a/b` together);
//! such a put fails with `Backend`. Sightline's key layouts never do this.

use std::fs;
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use sightline_core::ports::{BlobStore, StoreError, StoreResult};

/// File names starting with this are in-flight writes: never valid keys, never listed.
const TMP_PREFIX: &str = ".sightline-tmp-";
/// A put retries when a concurrent delete removes its freshly created (empty) directory.
const PUT_ATTEMPTS: usize = 5;

/// `BlobStore` under a root directory.
pub struct FsBlobStore {
    root: Arc<PathBuf>,
}

impl FsBlobStore {
    /// Opens (creating if needed) the store rooted at `root`. Blocking; call at startup.
    pub fn open(root: &Path) -> StoreResult<Self> {
        fs::create_dir_all(root).map_err(|e| io_err("create blob root", root, &e))?;
        Ok(Self {
            root: Arc::new(root.to_path_buf()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    async fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> StoreResult<T> + Send + 'static,
    {
        let root = Arc::clone(&self.root);
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .map_err(|e| StoreError::Backend(format!("blob task failed: {e}")))?
    }
}

fn io_err(what: &str, path: &Path, e: &io::Error) -> StoreError {
    StoreError::Backend(format!("{what} {}: {e}", path.display()))
}

/// Checks a key is a safe relative path and returns its segments.
fn key_segments(key: &str) -> StoreResult<Vec<&str>> {
    let bad = |why: &str| StoreError::Backend(format!("invalid blob key {key:?}: {why}"));
    if key.is_empty() {
        return Err(bad("empty"));
    }
    if key.starts_with('/') {
        return Err(bad("absolute"));
    }
    if key.contains(['\\', '\0']) {
        return Err(bad("contains a backslash or NUL"));
    }
    let segments: Vec<&str> = key.split('/').collect();
    for seg in &segments {
        if seg.is_empty() {
            return Err(bad("empty path segment"));
        }
        if *seg == "." || *seg == ".." {
            return Err(bad("`.` or `..` segment"));
        }
        if seg.starts_with(TMP_PREFIX) {
            return Err(bad("reserved temp-file name"));
        }
    }
    Ok(segments)
}

fn key_path(root: &Path, key: &str) -> StoreResult<PathBuf> {
    let mut path = root.to_path_buf();
    path.extend(key_segments(key)?);
    Ok(path)
}

/// Errors meaning "there is no object at this key".
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory
    )
}

/// A temp file that is removed unless it was published.
struct TempFile(PathBuf);

impl TempFile {
    fn create(dir: &Path, bytes: &[u8]) -> io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{TMP_PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = Self(dir.join(name));
        let mut file = fs::File::create_new(&tmp.0)?;
        file.write_all(bytes)?;
        // Durable contents before the name becomes visible, so a crash never exposes a torn blob.
        file.sync_data()?;
        Ok(tmp)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.0) {
            if e.kind() != ErrorKind::NotFound {
                tracing::warn!(path = %self.0.display(), error = %e, "cannot remove temp blob");
            }
        }
    }
}

enum Attempt {
    Done(StoreResult<()>),
    /// The directory vanished under us (concurrent delete cleaned it up): try again.
    Retry,
}

fn put_once(path: &Path, dir: &Path, bytes: &[u8], if_none_match: bool) -> Attempt {
    let conflict = |e: &io::Error| {
        Attempt::Done(Err(StoreError::Backend(format!(
            "blob path {} conflicts with another key (a key cannot also be a prefix directory): {e}",
            path.display()
        ))))
    };
    if let Err(e) = fs::create_dir_all(dir) {
        return match e.kind() {
            ErrorKind::NotFound => Attempt::Retry,
            ErrorKind::AlreadyExists | ErrorKind::NotADirectory => conflict(&e),
            _ => Attempt::Done(Err(io_err("create blob dir", dir, &e))),
        };
    }
    let tmp = match TempFile::create(dir, bytes) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Attempt::Retry,
        Err(e) => return Attempt::Done(Err(io_err("write temp blob in", dir, &e))),
    };
    let published = if if_none_match {
        fs::hard_link(&tmp.0, path)
    } else {
        fs::rename(&tmp.0, path)
    };
    match published {
        Ok(()) => Attempt::Done(Ok(())),
        Err(e) if e.kind() == ErrorKind::NotFound => Attempt::Retry,
        Err(e) if e.kind() == ErrorKind::AlreadyExists && !path.is_dir() => {
            Attempt::Done(Err(StoreError::ConditionFailed))
        }
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::AlreadyExists
                    | ErrorKind::IsADirectory
                    | ErrorKind::DirectoryNotEmpty
                    | ErrorKind::NotADirectory
            ) =>
        {
            conflict(&e)
        }
        Err(e) => Attempt::Done(Err(io_err("publish blob", path, &e))),
    }
}

/// Removes now-empty directories from `dir` up to (not including) `root`.
fn prune_empty_dirs(root: &Path, dir: &Path) {
    let mut cur = dir;
    while cur != root && cur.starts_with(root) {
        if fs::remove_dir(cur).is_err() {
            break; // not empty (or already gone): stop climbing
        }
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
}

/// Adds to `out` every key in `dir` (whose key prefix is `key_dir`, ending in '/' unless
/// empty) whose name starts with `name_prefix`, recursing into subdirectories.
fn walk(dir: &Path, key_dir: &str, name_prefix: &str, out: &mut Vec<String>) -> StoreResult<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if is_absent(&e) => return Ok(()),
        Err(e) => return Err(io_err("list blob dir", dir, &e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err("list blob dir", dir, &e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue; // not written by us
        };
        if name.starts_with(TMP_PREFIX) || !name.starts_with(name_prefix) {
            continue;
        }
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) if is_absent(&e) => continue, // deleted while listing
            Err(e) => return Err(io_err("stat blob", &entry.path(), &e)),
        };
        let key = format!("{key_dir}{name}");
        if file_type.is_dir() {
            walk(&entry.path(), &format!("{key}/"), "", out)?;
        } else if file_type.is_file() {
            out.push(key);
        }
    }
    Ok(())
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, key: &str, bytes: Vec<u8>, if_none_match: bool) -> StoreResult<()> {
        let key = key.to_owned();
        self.blocking(move |root| {
            let path = key_path(root, &key)?;
            let dir = path.parent().unwrap_or(root).to_path_buf();
            for _ in 0..PUT_ATTEMPTS {
                if let Attempt::Done(r) = put_once(&path, &dir, &bytes, if_none_match) {
                    return r;
                }
            }
            Err(StoreError::Unavailable(format!(
                "blob directory {} kept disappearing",
                dir.display()
            )))
        })
        .await
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.blocking(move |root| {
            let path = key_path(root, &key)?;
            match fs::read(&path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if is_absent(&e) => Ok(None),
                Err(e) => Err(io_err("read blob", &path, &e)),
            }
        })
        .await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let prefix = prefix.to_owned();
        let start_after = start_after.map(str::to_owned);
        self.blocking(move |root| {
            if limit == 0 {
                return Ok(Vec::new());
            }
            // Walk only the directory the prefix names; filter its entries by the rest.
            let (key_dir, name_prefix) = match prefix.rfind('/') {
                Some(i) => prefix.split_at(i + 1),
                None => ("", prefix.as_str()),
            };
            let dir = if key_dir.is_empty() {
                root.to_path_buf()
            } else {
                match key_path(root, &key_dir[..key_dir.len() - 1]) {
                    Ok(p) => p,
                    // No valid key can start with this prefix.
                    Err(_) => return Ok(Vec::new()),
                }
            };
            let mut keys = Vec::new();
            walk(&dir, key_dir, name_prefix, &mut keys)?;
            // Directory order is not key order ('-' < '/' < '0'), so sort the keys themselves.
            keys.sort_unstable();
            Ok(keys
                .into_iter()
                .filter(|k| start_after.as_ref().is_none_or(|a| k > a))
                .take(limit)
                .collect())
        })
        .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let key = key.to_owned();
        self.blocking(move |root| {
            let path = key_path(root, &key)?;
            match fs::remove_file(&path) {
                Ok(()) => {
                    if let Some(dir) = path.parent() {
                        prune_empty_dirs(root, dir);
                    }
                    Ok(())
                }
                Err(e) if is_absent(&e) => Ok(()),
                Err(e) => Err(io_err("delete blob", &path, &e)),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unsafe_keys() {
        for key in [
            "",
            "/abs",
            "a//b",
            "a/",
            "../x",
            "a/../b",
            "a/./b",
            ".",
            "a\\b",
            "a\0b",
            ".sightline-tmp-1-2",
        ] {
            assert!(
                matches!(key_segments(key), Err(StoreError::Backend(_))),
                "{key:?} accepted"
            );
        }
        for key in ["a", "a/b.json", ".hidden", "a/..b", "é/🚀"] {
            assert!(key_segments(key).is_ok(), "{key:?} rejected");
        }
    }
}
