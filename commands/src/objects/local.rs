//! Photos as files under `<data dir>/photos`.
//!
//! A key `<company>/<photo>` is the file `<root>/<company>/<photo>`. Writes go
//! to a hidden temp file next to the target and are renamed into place, so a
//! reader (or a crash) never sees half an object.
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{ObjectInfo, ObjectStore, ObjectStoreError};

/// Names starting with this are in-flight writes, never objects.
const TMP_PREFIX: &str = ".tmp-";

#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Uses (and creates, if needed) `root` as the store's directory.
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file for `key`, refusing anything that could escape `root` or
    /// collide with our temp files.
    fn path_for(&self, key: &str) -> Result<PathBuf, ObjectStoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

fn validate_key(key: &str) -> Result<(), ObjectStoreError> {
    let bad = |why: &str| {
        Err(ObjectStoreError::Other(format!(
            "invalid object key {key:?}: {why}"
        )))
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.starts_with('/') {
        return bad("leading '/'");
    }
    if key.contains('\\') {
        return bad("backslash");
    }
    if key.contains("..") {
        return bad("'..'");
    }
    if key.contains('\0') {
        return bad("NUL byte");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return bad("empty path segment");
        }
        // Dot names are reserved: temp files are hidden and `list` skips them.
        if segment.starts_with('.') {
            return bad("segment starts with '.'");
        }
    }
    Ok(())
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> ObjectStoreError {
    ObjectStoreError::Other(format!("{what} {}: {e}", path.display()))
}

fn join_err(e: tokio::task::JoinError) -> ObjectStoreError {
    ObjectStoreError::Other(format!("blocking task failed: {e}"))
}

/// Makes a directory's entries (a rename, a new child) durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Windows cannot open directories as files; renames there are as durable as
/// the filesystem makes them.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Creates `dir` and its missing ancestors below `root`, fsyncing each parent
/// whose entries changed so the new directories survive a crash.
fn create_dirs_durably(root: &Path, dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    // Deepest first, so we know which ones did not exist before.
    let mut missing = Vec::new();
    let mut cur = dir;
    while cur != root && !cur.is_dir() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    std::fs::create_dir_all(dir)?;
    for d in &missing {
        if let Some(parent) = d.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// The blocking body of `put`: temp file, fsync, rename, fsync the directory.
fn put_blocking(root: &Path, path: &Path, bytes: &[u8]) -> Result<(), ObjectStoreError> {
    let dir = path
        .parent()
        .ok_or_else(|| ObjectStoreError::Other(format!("no parent for {}", path.display())))?;
    create_dirs_durably(root, dir).map_err(|e| io_err("creating", dir, e))?;

    let tmp = dir.join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4()));
    let write = || -> std::io::Result<()> {
        // create_new: a unique name we own; never clobber someone else's file.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err("writing", &tmp, e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err("renaming into", path, e));
    }
    // Without this the rename may be lost on power failure even though put
    // returned Ok.
    sync_dir(dir).map_err(|e| io_err("syncing", dir, e))
}

/// Walks `dir` collecting regular files whose key starts with `prefix`.
fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    out: &mut Vec<ObjectInfo>,
) -> Result<(), ObjectStoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // Removed while we walked (or the root is gone): nothing there.
        Err(e) if e.kind() == ErrorKind::NotFound && dir != root => return Ok(()),
        Err(e) => return Err(io_err("listing", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err("listing", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            // Not a key we could have written.
            continue;
        };
        if name.starts_with('.') {
            // In-flight temp files (and anything else hidden) are not objects.
            continue;
        }
        let path = entry.path();
        // file_type does not follow symlinks; we never create any, so skip them.
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("inspecting", &path, e)),
        };
        let Some(key) = key_of(root, &path) else {
            continue;
        };
        if file_type.is_dir() {
            // Descend only where a matching key could live.
            let as_dir = format!("{key}/");
            if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                walk(root, &path, prefix, out)?;
            }
        } else if file_type.is_file() && key.starts_with(prefix) {
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Deleted between read_dir and stat.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("inspecting", &path, e)),
            };
            out.push(ObjectInfo {
                key,
                size: meta.len(),
                last_modified: meta.modified().ok().map(DateTime::<Utc>::from),
            });
        }
    }
    Ok(())
}

/// `path` relative to `root`, with '/' separators whatever the platform.
fn key_of(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put(
        &self,
        key: &str,
        _content_type: &str,
        bytes: Bytes,
    ) -> Result<(), ObjectStoreError> {
        let path = self.path_for(key)?;
        let root = self.root.clone();
        // One blocking task for the whole sequence: the fsyncs block anyway.
        tokio::task::spawn_blocking(move || put_blocking(&root, &path, &bytes))
            .await
            .map_err(join_err)?
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, ObjectStoreError> {
        let path = self.path_for(key)?;
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Some(Bytes::from(data))),
            // A directory or a file in place of a directory is "no such
            // object" too: the key names nothing we stored.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotFound | ErrorKind::IsADirectory | ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(io_err("reading", &path, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectStoreError> {
        let path = self.path_for(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(()),
            Err(e) => Err(io_err("deleting", &path, e)),
        }
        // Empty directories are left behind on purpose: removing them would
        // race with a concurrent put into the same directory.
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectStoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        let mut out = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&root, &root, &prefix, &mut out).map(|()| out)
        })
        .await
        .map_err(join_err)??;
        // Same order as S3 (lexicographic by key), so callers can rely on it.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn ping(&self) -> Result<(), ObjectStoreError> {
        match tokio::fs::metadata(&self.root).await {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(ObjectStoreError::Unavailable(format!(
                "{} is not a directory",
                self.root.display()
            ))),
            Err(e) => Err(ObjectStoreError::Unavailable(format!(
                "{}: {e}",
                self.root.display()
            ))),
        }
    }
}
