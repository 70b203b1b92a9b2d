//! Blob uploads: sessions the server names, bytes hashed as they arrive,
//! and a blob that enters the store only by a rename, once its digest is
//! proven.
//!
//! ```text
//! <root>/uploads/<id>          an upload under way (or a manifest, a
//!                              monolithic blob, on their way in)
//! <root>/blobs/sha256/<hex>    where it is renamed once its sha256 is <hex>
//! ```
//!
//! The uploads directory is inside the store's root, so the last step is
//! a `rename(2)` on one filesystem: atomic. A crash leaves a file in
//! `uploads/`, never half a blob under a digest it does not have. What a
//! session knows (its repository, the bytes so far, the running sha256)
//! lives in memory; its file is swept once the session is idle for
//! [`STALE`], and files no session owns are swept after the same time
//! (those a crash or a restart left).
//!
//! A session id is 16 random bytes in hex, made here; the path of a
//! session's file is built only from an id found in the table of open
//! sessions, which only this module fills.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::http::{Body, Reply};
use super::names::ID_HEX;
use crate::image::store::Store;

/// How long an upload may sit idle before it is swept: long enough for a
/// slow client between two chunks, short enough that abandoned uploads do
/// not fill the disk.
pub(super) const STALE: Duration = Duration::from_secs(60 * 60);
/// How many uploads may be open at once: each holds a file and a hasher.
const MAX_SESSIONS: usize = 256;
/// The largest blob accepted, the same bound as the daemon's bodies.
pub(super) const MAX_BLOB: u64 = crate::engine::server::MAX_BODY;

/// The uploads of one store.
#[derive(Debug)]
pub(super) struct Uploads {
    store: Store,
    dir: PathBuf,
    open: Mutex<HashMap<String, Arc<Mutex<Session>>>>,
}

/// One upload under way.
#[derive(Debug)]
struct Session {
    /// The repository it was started in: asked of every later request.
    name: String,
    /// The sha256 of the bytes so far: the digest is known the moment the
    /// last byte arrives, without reading the file again.
    hasher: Sha256,
    /// The bytes so far (the next chunk must start here).
    size: u64,
    touched: Instant,
    /// Finished or cancelled while a request waited for it.
    ended: bool,
}

impl Uploads {
    /// The uploads of `store`, in `<root>/uploads` (made), with the files
    /// a crash left swept once stale.
    pub(super) fn open(store: &Store) -> std::io::Result<Uploads> {
        let dir = store.root.join("uploads");
        std::fs::create_dir_all(&dir)?;
        let uploads = Uploads {
            store: store.clone(),
            dir,
            open: Mutex::new(HashMap::new()),
        };
        uploads.sweep();
        Ok(uploads)
    }

    // ANCHOR: upload_start
    /// Starts an upload in repository `name`; its id.
    pub(super) fn start(&self, name: &str) -> Result<String, Reply> {
        self.sweep();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= MAX_SESSIONS {
            return Err(Reply::error(
                429,
                "TOOMANYREQUESTS",
                &format!("{MAX_SESSIONS} uploads are under way, the limit: finish or cancel one"),
            ));
        }
        let id = new_id()?;
        File::options()
            .write(true)
            .create_new(true)
            .open(self.dir.join(&id))
            .map_err(|e| internal("start an upload", &e))?;
        let session = Session {
            name: name.to_string(),
            hasher: Sha256::new(),
            size: 0,
            touched: Instant::now(),
            ended: false,
        };
        open.insert(id.clone(), Arc::new(Mutex::new(session)));
        Ok(id)
    }
    // ANCHOR_END: upload_start

    /// The bytes upload `id` of `name` holds so far.
    pub(super) fn size(&self, name: &str, id: &str) -> Result<u64, Reply> {
        let session = self.session(name, id)?;
        let session = session.lock().unwrap_or_else(PoisonError::into_inner);
        if session.ended {
            return Err(unknown(id));
        }
        Ok(session.size)
    }

    // ANCHOR: upload_append
    /// Appends a request's body to upload `id`. With a `Content-Range`
    /// (`START-END`), the chunk must start where the upload ends (`416`
    /// otherwise, and nothing is written) and be as long as it says. A
    /// chunk that fails half-way is cut off again: the upload is as it was.
    pub(super) fn append(
        &self,
        name: &str,
        id: &str,
        range: Option<&str>,
        body: &mut Body,
    ) -> Result<u64, Reply> {
        let session = self.session(name, id)?;
        // Held for the whole chunk: two chunks of one upload never interleave.
        let mut session = session.lock().unwrap_or_else(PoisonError::into_inner);
        if session.ended {
            return Err(unknown(id));
        }
        let expected = match range {
            None => None,
            Some(range) => Some(check_range(range, session.size, id)?),
        };
        let path = self.dir.join(id);
        let mut file = File::options()
            .append(true)
            .open(&path)
            .map_err(|e| internal("open the upload", &e))?;
        let mut hasher = session.hasher.clone();
        let written = copy_hashed(body, &mut file, &mut hasher, MAX_BLOB - session.size).and_then(
            |written| match expected {
                Some(len) if len != written => Err(Reply::error_with(
                    416,
                    "BLOB_UPLOAD_INVALID",
                    &format!("the chunk has {written} bytes, not the {len} its Content-Range says"),
                    json!({ "id": id }),
                )),
                _ => Ok(written),
            },
        );
        match written {
            Ok(written) => {
                session.hasher = hasher;
                session.size += written;
                session.touched = Instant::now();
                Ok(session.size)
            }
            Err(reply) => {
                // Cut back to what was proven; the client may resend.
                if file.set_len(session.size).is_err() {
                    drop(file);
                    session.ended = true;
                    self.forget(id);
                }
                Err(reply)
            }
        }
    }
    // ANCHOR_END: upload_append

    // ANCHOR: upload_finish
    /// Ends upload `id` with its last bytes (the body, often empty):
    /// the whole must hash to `digest`, then it is renamed into the store.
    /// Whatever the outcome, the upload is over and its file gone.
    pub(super) fn finish(
        &self,
        name: &str,
        id: &str,
        digest: Option<&str>,
        body: &mut Body,
    ) -> Result<(), Reply> {
        let Some(digest) = digest.filter(|d| super::names::check_digest(d).is_ok()) else {
            self.cancel(name, id)?;
            return Err(Reply::error(
                400,
                "DIGEST_INVALID",
                "close an upload with ?digest=sha256:<64 hex digits>; the upload is cancelled",
            ));
        };
        self.append(name, id, None, body)?;
        let actual = format!("sha256:{:x}", self.end(name, id)?.finalize());
        self.commit(&self.dir.join(id), digest, &actual)
    }
    // ANCHOR_END: upload_finish

    /// Cancels upload `id`: its file goes.
    pub(super) fn cancel(&self, name: &str, id: &str) -> Result<(), Reply> {
        self.end(name, id)?;
        let _ = std::fs::remove_file(self.dir.join(id));
        Ok(())
    }

    /// Ends upload `id` of `name`, once (a second end finds it unknown),
    /// and forgets it; returns what its bytes hashed to so far.
    fn end(&self, name: &str, id: &str) -> Result<Sha256, Reply> {
        let session = self.session(name, id)?;
        let mut session = session.lock().unwrap_or_else(PoisonError::into_inner);
        if session.ended {
            return Err(unknown(id));
        }
        session.ended = true;
        self.forget(id);
        Ok(session.hasher.clone())
    }

    /// A whole blob in one request (`POST ?digest=`): hashed as it is
    /// written to a file of its own, renamed in if it is `digest`.
    pub(super) fn monolithic(&self, digest: &str, body: &mut Body) -> Result<(), Reply> {
        let id = new_id()?;
        let path = self.dir.join(&id);
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| internal("start an upload", &e))?;
        let mut hasher = Sha256::new();
        if let Err(reply) = copy_hashed(body, &mut file, &mut hasher, MAX_BLOB) {
            let _ = std::fs::remove_file(&path);
            return Err(reply);
        }
        self.commit(&path, digest, &format!("sha256:{:x}", hasher.finalize()))
    }

    /// Writes `bytes` (a manifest), whose digest is `digest`, into the
    /// store the same way: a file of its own, then a rename.
    pub(super) fn put_bytes(&self, digest: &str, bytes: &[u8]) -> Result<(), Reply> {
        let path = self.dir.join(new_id()?);
        let written = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| f.write_all(bytes));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            return Err(internal("write the manifest", &e));
        }
        self.commit(&path, digest, digest)
    }

    /// Renames `path` to blob `expected` if its content is `actual`;
    /// removes it otherwise (a wrong digest leaves nothing behind).
    fn commit(&self, path: &Path, expected: &str, actual: &str) -> Result<(), Reply> {
        if actual != expected {
            let _ = std::fs::remove_file(path);
            return Err(Reply::error_with(
                400,
                "DIGEST_INVALID",
                &format!("the content's digest is {actual}, not {expected}: nothing was stored"),
                json!({ "expected": expected, "actual": actual }),
            ));
        }
        let stored = self
            .store
            .blob_path(expected)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))
            // On disk before it has a name: a crash after the rename must
            // not leave a named blob with lost bytes.
            .and_then(|blob| File::open(path)?.sync_all().map(|()| blob))
            .and_then(|blob| std::fs::rename(path, blob));
        stored.map_err(|e| {
            let _ = std::fs::remove_file(path);
            internal("store the blob", &e)
        })
    }

    /// The open session `id`, if it was started in repository `name`.
    fn session(&self, name: &str, id: &str) -> Result<Arc<Mutex<Session>>, Reply> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let session = open.get(id).ok_or_else(|| unknown(id))?.clone();
        drop(open);
        let same = session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .name
            .as_str()
            == name;
        if !same {
            return Err(unknown(id));
        }
        Ok(session)
    }

    fn forget(&self, id: &str) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.remove(id);
    }

    // ANCHOR: upload_sweep
    /// Removes the uploads idle for [`STALE`], and the files of the
    /// uploads directory that no session owns and nobody has written to
    /// for as long (a crash's, a restart's). A session busy with a chunk
    /// is not idle.
    fn sweep(&self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|id, session| {
            let Ok(mut session) = session.try_lock() else {
                return true;
            };
            if session.touched.elapsed() < STALE {
                return true;
            }
            session.ended = true;
            let _ = std::fs::remove_file(self.dir.join(id));
            false
        });
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let owned = entry
                .file_name()
                .to_str()
                .is_some_and(|f| open.contains_key(f));
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age >= STALE);
            if !owned && old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    // ANCHOR_END: upload_sweep
}

/// Copies `body` into `file`, hashing it, at most `max` bytes: `413` past
/// that, `400` when the client's body breaks off or stalls.
fn copy_hashed(
    body: &mut Body,
    file: &mut File,
    hasher: &mut Sha256,
    max: u64,
) -> Result<u64, Reply> {
    let too_large = || {
        Reply::error(
            413,
            "SIZE_INVALID",
            &format!(
                "a blob of this registry is at most {} MiB: send less",
                MAX_BLOB >> 20
            ),
        )
    };
    if body.declared().is_some_and(|d| d > max) {
        return Err(too_large());
    }
    let mut buf = vec![0; 64 << 10];
    let mut written = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(written),
            Ok(n) => n,
            Err(e) => {
                return Err(Reply::error(
                    400,
                    "BLOB_UPLOAD_INVALID",
                    &format!("the body broke off: {e}"),
                ));
            }
        };
        written += n as u64;
        if written > max {
            return Err(too_large());
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| internal("write the upload", &e))?;
    }
}

/// Checks a chunk's `Content-Range: START-END` against an upload of
/// `size` bytes; the chunk's length.
fn check_range(range: &str, size: u64, id: &str) -> Result<u64, Reply> {
    let parsed = range
        .trim()
        .trim_start_matches("bytes ")
        .split_once('-')
        .and_then(|(start, end)| Some((start.parse::<u64>().ok()?, end.parse::<u64>().ok()?)));
    match parsed {
        Some((start, end)) if start == size && end >= start => Ok(end - start + 1),
        _ => Err(Reply::error_with(
            416,
            "BLOB_UPLOAD_INVALID",
            &format!(
                "the chunk must start at byte {size}, where the upload ends (Content-Range {:?})",
                range.chars().take(40).collect::<String>()
            ),
            json!({ "id": id, "size": size }),
        )
        .header("range", range_header(size))),
    }
}

/// The `Range` header of an upload of `size` bytes: `0-LAST` (`0-0` when
/// empty, as Docker's registry answers).
pub(super) fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// A fresh session id: [`ID_HEX`] hex digits of the kernel's randomness.
fn new_id() -> Result<String, Reply> {
    let mut bytes = [0u8; ID_HEX / 2];
    getrandom::fill(&mut bytes).map_err(|e| {
        Reply::error(
            500,
            "UNKNOWN",
            &format!("no randomness for an upload id: {e}"),
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn unknown(id: &str) -> Reply {
    Reply::error_with(
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "no such upload in this repository: start one with POST",
        json!({ "id": id }),
    )
}

fn internal(what: &str, e: &std::io::Error) -> Reply {
    Reply::error(500, "UNKNOWN", &format!("cannot {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_must_start_where_the_upload_ends() {
        assert_eq!(check_range("0-9", 0, "x").ok(), Some(10));
        assert_eq!(check_range("10-10", 10, "x").ok(), Some(1));
        for bad in ["5-9", "0-9", "10-9", "a-b", "", "10", "-1-3"] {
            let reply = check_range(bad, 10, "x").err();
            assert_eq!(reply.map(|r| r.status()), Some(416), "{bad:?}");
        }
        assert_eq!(range_header(0), "0-0");
        assert_eq!(range_header(10), "0-9");
    }

    #[test]
    fn ids_are_random_hex_of_their_length() {
        let (a, b) = (new_id().unwrap(), new_id().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), ID_HEX);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
