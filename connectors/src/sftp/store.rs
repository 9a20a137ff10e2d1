//! An `object_store::ObjectStore` over SFTP, rooted at a remote directory:
//! object `a/b/c` is the file `ROOT/a/b/c`.
//!
//! Durability and atomicity: a put writes a temporary file
//! (`.kloset-tmp-*`, hidden from listings) in the target's directory,
//! fsyncs it when the server offers `fsync@openssh.com`, then renames it
//! into place, so readers never see a partial object. `PutMode::Create`
//! uses plain SFTP rename, which never overwrites (OpenSSH links the new
//! name, failing if it exists), and reports `AlreadyExists`;
//! `PutMode::Overwrite` removes an existing target first, so it is not
//! atomic (the engine only ever creates fresh names). After the rename, the
//! directory is fsynced too, where the server can ([`super::durable`]).
//!
//! Not implemented (the engine never calls them): multipart uploads,
//! `copy`, conditional `PutMode::Update`. Reads load the requested range
//! into memory (the engine asks for at most one pack at a time).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path as FsPath;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    RenameTargetMode,
};
use ssh2::{OpenFlags, OpenType, RenameFlags};

use super::conn::{Conn, Pool, unsupported};
use super::{SftpConfig, SftpError, SftpErrorKind};
use kloset::{Error, Result};

/// The store name in `object_store` errors.
pub(crate) const STORE_NAME: &str = "SFTP";
/// Prefix of temporary files; never listed.
pub(crate) const TMP_PREFIX: &str = ".kloset-tmp-";

/// A Kloset store backend on an SFTP server.
#[derive(Debug)]
pub struct SftpStore {
    pool: Arc<Pool>,
    root: String,
    url: String,
}

impl std::fmt::Display for SftpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SftpStore({})", self.url)
    }
}

impl SftpStore {
    /// What the server has made durable so far: file contents
    /// (`fsync@openssh.com`) and directory entries; `None` until a put
    /// tried it.
    pub fn durability(&self) -> (Option<bool>, Option<bool>) {
        let d = self.pool.durability();
        (d.files(), d.dirs())
    }

    /// Connects (verifying the host key and credentials) and checks the
    /// root directory: made when `create_dir`, else it must exist
    /// (`NotAStore` otherwise).
    pub fn open(config: SftpConfig, create_dir: bool) -> Result<SftpStore> {
        let url = config.url();
        let root = config.path.clone();
        let pool =
            Pool::connect(config).map_err(|e| e.into_engine(format!("connecting to {url}")))?;
        let conn = pool
            .get()
            .map_err(|e| e.into_engine(format!("connecting to {url}")))?;
        match conn.sftp.stat(FsPath::new(&root)) {
            Ok(st) if st.is_dir() => {}
            Ok(_) => {
                return Err(Error::NotAStore {
                    location: url,
                    found: Some("a file, not a directory".into()),
                });
            }
            Err(e) => {
                let e = conn.err("stat", &root, e);
                if e.kind() != SftpErrorKind::NotFound {
                    return Err(e.into_engine(format!("opening {url}")));
                }
                if !create_dir {
                    return Err(Error::NotAStore {
                        location: url,
                        found: None,
                    });
                }
                mkdir_p(&conn, &root).map_err(|e| e.into_engine(format!("creating {url}")))?;
            }
        }
        drop(conn);
        Ok(SftpStore {
            pool: Arc::new(pool),
            root,
            url,
        })
    }

    fn full(&self, location: &Path) -> String {
        join(&self.root, location.as_ref())
    }

    async fn blocking<T, F>(&self, f: F) -> object_store::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Pool) -> object_store::Result<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || f(&pool))
            .await
            .map_err(|e| object_store::Error::Generic {
                store: STORE_NAME,
                source: Box::new(e),
            })?
    }
}

/// `dir/rel`, for a remote root and a relative path.
pub(crate) fn join(root: &str, rel: &str) -> String {
    if rel.is_empty() {
        root.to_string()
    } else if root == "/" {
        format!("/{rel}")
    } else {
        format!("{root}/{rel}")
    }
}

fn split(full: &str) -> (&str, &str) {
    match full.rfind('/') {
        Some(0) => ("/", &full[1..]),
        Some(i) => (&full[..i], &full[i + 1..]),
        None => (".", full),
    }
}

/// A fresh temporary name next to `full`.
pub(crate) fn temp_name(full: &str) -> String {
    let (dir, name) = split(full);
    let tmp = format!("{TMP_PREFIX}{name}-{:016x}", rand::random::<u64>());
    join(dir, &tmp)
}

/// Makes `dir` and its missing parents.
pub(crate) fn mkdir_p(conn: &Conn, dir: &str) -> Result<(), SftpError> {
    match conn.sftp.stat(FsPath::new(dir)) {
        Ok(st) if st.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(SftpError::new(
                SftpErrorKind::AlreadyExists,
                format!("SFTP mkdir {dir}: a file is in the way"),
            ));
        }
        Err(e) => {
            let e = conn.err("stat", dir, e);
            if e.kind() != SftpErrorKind::NotFound {
                return Err(e);
            }
        }
    }
    let (parent, _) = split(dir);
    if parent != dir && parent != "." {
        mkdir_p(conn, parent)?;
    }
    match conn.sftp.mkdir(FsPath::new(dir), 0o755) {
        Ok(()) => Ok(()),
        Err(e) => {
            // Someone else may have made it meanwhile.
            match conn.sftp.stat(FsPath::new(dir)) {
                Ok(st) if st.is_dir() => Ok(()),
                _ => Err(conn.err("mkdir", dir, e)),
            }
        }
    }
}

/// Whether anything (a file, directory or link) is at `path`.
pub(crate) fn exists(conn: &Conn, path: &str) -> Result<bool, SftpError> {
    match conn.sftp.lstat(FsPath::new(path)) {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = conn.err("lstat", path, e);
            if e.kind() == SftpErrorKind::NotFound {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// Opens a fresh temporary file next to `full` (making its directory when
/// missing); returns it, its name, and whether a directory was made.
pub(crate) fn create_temp(
    conn: &Conn,
    full: &str,
    mode: i32,
) -> Result<(ssh2::File, String, bool), SftpError> {
    let tmp = temp_name(full);
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE | OpenFlags::TRUNCATE;
    let open = || {
        conn.sftp
            .open_mode(FsPath::new(&tmp), flags, mode, OpenType::File)
    };
    match open() {
        Ok(f) => Ok((f, tmp, false)),
        Err(e) => {
            let e = conn.err("create", &tmp, e);
            if e.kind() != SftpErrorKind::NotFound {
                return Err(e);
            }
            mkdir_p(conn, split(full).0)?;
            let f = open().map_err(|e| conn.err("create", &tmp, e))?;
            Ok((f, tmp, true))
        }
    }
}

/// Flushes a written file to the server's disk when the server can;
/// `false` when the server has no `fsync@openssh.com`.
pub(crate) fn fsync(conn: &Conn, file: &mut ssh2::File, path: &str) -> Result<bool, SftpError> {
    match file.fsync() {
        Ok(()) => Ok(true),
        Err(e) if unsupported(&e) => Ok(false),
        Err(e) => Err(conn.err("fsync", path, e)),
    }
}

/// Renames `tmp` to `full`; removes `tmp` on failure. Without `overwrite`
/// an existing `full` gives `AlreadyExists`; with it, `full` is replaced.
pub(crate) fn rename_into_place(
    conn: &Conn,
    tmp: &str,
    full: &str,
    overwrite: bool,
) -> Result<(), SftpError> {
    let result = rename(conn, tmp, full, overwrite);
    if result.is_err() {
        let _ = conn.sftp.unlink(FsPath::new(tmp));
    }
    result
}

fn rename(conn: &Conn, from: &str, to: &str, overwrite: bool) -> Result<(), SftpError> {
    let flags = Some(RenameFlags::ATOMIC | RenameFlags::NATIVE);
    let Err(e) = conn.sftp.rename(FsPath::new(from), FsPath::new(to), flags) else {
        return Ok(());
    };
    let e = conn.err("rename", &format!("{from} to {to}"), e);
    if !exists(conn, to)? {
        return Err(e);
    }
    if !overwrite {
        return Err(SftpError::new(
            SftpErrorKind::AlreadyExists,
            format!("SFTP rename to {to}: the name exists already"),
        ));
    }
    conn.sftp
        .unlink(FsPath::new(to))
        .map_err(|e| conn.err("unlink", to, e))?;
    conn.sftp
        .rename(FsPath::new(from), FsPath::new(to), flags)
        .map_err(|e| conn.err("rename", &format!("{from} to {to}"), e))
}

fn put_blocking(
    pool: &Pool,
    full: &str,
    payload: &PutPayload,
    overwrite: bool,
) -> Result<(), SftpError> {
    let conn = pool.get()?;
    if !overwrite && exists(&conn, full)? {
        return Err(SftpError::new(
            SftpErrorKind::AlreadyExists,
            format!("SFTP put {full}: the name exists already"),
        ));
    }
    let (mut file, tmp, made_dir) = create_temp(&conn, full, 0o644)?;
    let durability = pool.durability();
    let written = (|| {
        for chunk in payload {
            file.write_all(chunk)
                .map_err(|e| conn.io_err("write", &tmp, e))?;
        }
        durability.fsync_file(&conn, &mut file, &tmp)
    })();
    drop(file);
    if let Err(e) = written {
        let _ = conn.sftp.unlink(FsPath::new(&tmp));
        return Err(e);
    }
    rename_into_place(&conn, &tmp, full, overwrite)?;
    // The new name reaches the disk before the put is reported done, and so
    // do the directories made for it (objects are at most two levels below
    // the store's root).
    let dir = split(full).0;
    durability.fsync_dir(&conn, dir)?;
    if made_dir {
        let parent = split(dir).0;
        durability.fsync_dir(&conn, parent)?;
        durability.fsync_dir(&conn, split(parent).0)?;
    }
    Ok(())
}

fn meta_of(location: &Path, st: &ssh2::FileStat) -> ObjectMeta {
    let mtime = st.mtime.unwrap_or(0);
    let size = st.size.unwrap_or(0);
    ObjectMeta {
        location: location.clone(),
        last_modified: DateTime::<Utc>::from_timestamp(i64::try_from(mtime).unwrap_or(0), 0)
            .unwrap_or_default(),
        size,
        e_tag: Some(format!("{mtime:x}-{size:x}")),
        version: None,
    }
}

fn get_blocking(
    pool: &Pool,
    full: &str,
    location: &Path,
    options: GetOptions,
) -> object_store::Result<GetResult> {
    let os = |e: SftpError| e.into_object_store(location.as_ref());
    let conn = pool.get().map_err(os)?;
    let st = conn
        .sftp
        .stat(FsPath::new(full))
        .map_err(|e| os(conn.err("stat", full, e)))?;
    if st.is_dir() {
        return Err(os(SftpError::new(
            SftpErrorKind::NotFound,
            format!("SFTP get {full}: a directory, not an object"),
        )));
    }
    let meta = meta_of(location, &st);
    options.check_preconditions(&meta)?;
    let mut range = match &options.range {
        Some(r) => r
            .as_range(meta.size)
            .map_err(|e| object_store::Error::Generic {
                store: STORE_NAME,
                source: Box::new(e),
            })?,
        None => 0..meta.size,
    };
    let data = if options.head {
        Bytes::new()
    } else {
        let want = usize::try_from(range.end - range.start).unwrap_or(usize::MAX);
        let mut file = conn
            .sftp
            .open(FsPath::new(full))
            .map_err(|e| os(conn.err("open", full, e)))?;
        file.seek(SeekFrom::Start(range.start))
            .map_err(|e| os(conn.io_err("seek", full, e)))?;
        let mut buf = Vec::with_capacity(want);
        (&mut file)
            .take(want as u64)
            .read_to_end(&mut buf)
            .map_err(|e| os(conn.io_err("read", full, e)))?;
        // A file that shrank since the stat: report what is there.
        range.end = range.start + buf.len() as u64;
        Bytes::from(buf)
    };
    Ok(GetResult {
        payload: GetResultPayload::Stream(futures::stream::once(async move { Ok(data) }).boxed()),
        meta,
        range,
        attributes: Default::default(),
        extensions: Default::default(),
    })
}

/// Lists `dir` (relative `rel`): files as objects, directories as prefixes.
fn list_dir(
    conn: &Conn,
    root: &str,
    rel: &str,
) -> Result<(Vec<ObjectMeta>, Vec<String>), SftpError> {
    let full = join(root, rel);
    let entries = match conn.sftp.readdir(FsPath::new(&full)) {
        Ok(v) => v,
        Err(e) => {
            let e = conn.err("readdir", &full, e);
            // A missing prefix, or one naming a file, holds no objects.
            let is_file = || matches!(conn.sftp.stat(FsPath::new(&full)), Ok(st) if !st.is_dir());
            return if e.kind() == SftpErrorKind::NotFound || is_file() {
                Ok((Vec::new(), Vec::new()))
            } else {
                Err(e)
            };
        }
    };
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for (path, st) in entries {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue; // not UTF-8: not an object of ours
        };
        if name.starts_with(TMP_PREFIX) {
            continue;
        }
        let child = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let Ok(location) = Path::parse(&child) else {
            continue; // not a valid object path
        };
        if st.is_dir() {
            dirs.push(child);
        } else if st.is_file() {
            files.push(meta_of(&location, &st));
        }
    }
    Ok((files, dirs))
}

fn list_blocking(pool: &Pool, root: &str, prefix: &str) -> Result<Vec<ObjectMeta>, SftpError> {
    let conn = pool.get()?;
    let mut out = Vec::new();
    let mut stack = vec![prefix.to_string()];
    while let Some(rel) = stack.pop() {
        let (files, dirs) = list_dir(&conn, root, &rel)?;
        out.extend(files);
        stack.extend(dirs);
    }
    Ok(out)
}

#[async_trait]
impl ObjectStore for SftpStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let overwrite = match opts.mode {
            PutMode::Overwrite => true,
            PutMode::Create => false,
            PutMode::Update(_) => {
                return Err(object_store::Error::NotImplemented {
                    operation: "put with PutMode::Update".into(),
                    implementer: "SftpStore".into(),
                });
            }
        };
        let full = self.full(location);
        let loc = location.to_string();
        self.blocking(move |pool| {
            put_blocking(pool, &full, &payload, overwrite).map_err(|e| e.into_object_store(&loc))
        })
        .await?;
        Ok(PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    async fn put_multipart_opts(
        &self,
        _location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(object_store::Error::NotImplemented {
            operation: "put_multipart".into(),
            implementer: "SftpStore".into(),
        })
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let full = self.full(location);
        let location = location.clone();
        self.blocking(move |pool| get_blocking(pool, &full, &location, options))
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let pool = self.pool.clone();
        let root = self.root.clone();
        locations
            .and_then(move |location| {
                let pool = pool.clone();
                let full = join(&root, location.as_ref());
                async move {
                    tokio::task::spawn_blocking(move || {
                        let conn = pool
                            .get()
                            .map_err(|e| e.into_object_store(location.as_ref()))?;
                        conn.sftp
                            .unlink(FsPath::new(&full))
                            .map_err(|e| conn.err("unlink", &full, e))
                            .map_err(|e| e.into_object_store(location.as_ref()))?;
                        Ok(location)
                    })
                    .await
                    .map_err(|e| object_store::Error::Generic {
                        store: STORE_NAME,
                        source: Box::new(e),
                    })?
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let pool = self.pool.clone();
        let root = self.root.clone();
        let prefix = prefix.map(|p| p.to_string()).unwrap_or_default();
        futures::stream::once(async move {
            tokio::task::spawn_blocking(move || {
                list_blocking(&pool, &root, &prefix).map_err(|e| e.into_object_store(&prefix))
            })
            .await
            .map_err(|e| object_store::Error::Generic {
                store: STORE_NAME,
                source: Box::new(e),
            })?
        })
        .map_ok(|v| futures::stream::iter(v.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let root = self.root.clone();
        let prefix = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.blocking(move |pool| {
            let os = |e: SftpError| e.into_object_store(&prefix);
            let conn = pool.get().map_err(os)?;
            let (objects, dirs) = list_dir(&conn, &root, &prefix).map_err(os)?;
            Ok(ListResult {
                common_prefixes: dirs.iter().map(|d| Path::from(d.as_str())).collect(),
                objects,
                extensions: Default::default(),
            })
        })
        .await
    }

    async fn copy_opts(
        &self,
        _from: &Path,
        _to: &Path,
        _options: CopyOptions,
    ) -> object_store::Result<()> {
        Err(object_store::Error::NotImplemented {
            operation: "copy".into(),
            implementer: "SftpStore".into(),
        })
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let overwrite = options.target_mode == RenameTargetMode::Overwrite;
        let (src, dst) = (self.full(from), self.full(to));
        let loc = to.to_string();
        self.blocking(move |pool| {
            let os = |e: SftpError| e.into_object_store(&loc);
            let conn = pool.get().map_err(os)?;
            mkdir_p(&conn, split(&dst).0).map_err(os)?;
            rename(&conn, &src, &dst, overwrite).map_err(os)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths() {
        assert_eq!(join("/srv", "a/b"), "/srv/a/b");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/srv", ""), "/srv");
        assert_eq!(split("/srv/a/b"), ("/srv/a", "b"));
        assert_eq!(split("/a"), ("/", "a"));
        let t = temp_name("/srv/packs/ab/cd");
        assert!(t.starts_with("/srv/packs/ab/.kloset-tmp-cd-"), "{t}");
    }
}
