//! The local image store: blobs by digest, layers unpacked once, names.
//!
//! ```text
//! <root>/blobs/sha256/<hex>          every blob, verified when written
//! <root>/layers/<owner>/<hex>        each layer unpacked once per diff_id,
//!                                    files owned by <owner> (the host ids the
//!                                    container's root maps to, e.g. 100000-100000)
//! <root>/layers/<owner>/l/<short>    short links, so many layers fit in one
//!                                    overlay mount's options (one page)
//! <root>/images/<name>               the manifest digest a name points to
//! <root>/containers/<id>/            a container's upper and work directories
//! ```
//!
//! Everything is written to a temporary name and renamed into place, so a
//! crash or a refused layer never leaves a half-written entry registered.

use std::io::Read;
use std::path::PathBuf;

use super::digest::{Hashing, hex_of};
use super::{ImageError, io_err};

/// The default store root.
pub const DEFAULT_ROOT: &str = "/var/lib/caixa";

// ANCHOR: unnamed
/// The store's name for an image that has none (`build` without `-t`, a
/// commit without a name): `@` and its manifest's digest, a name no image
/// reference can spell, so that the image stays listed (Docker's `<none>`)
/// and found by its id until it gets a name of its own ([`Store::tag`]).
pub fn unnamed(manifest: &str) -> String {
    format!("@{manifest}")
}

/// Whether `name`, pointing at `manifest`, is [`unnamed`]'s: no name to
/// show a client.
pub fn is_unnamed(name: &str, manifest: &str) -> bool {
    name.strip_prefix('@') == Some(manifest)
}
// ANCHOR_END: unnamed

/// The store a command uses unless told: [`DEFAULT_ROOT`] as root, the
/// user's own data directory (`$XDG_DATA_HOME/caixa`, else
/// `~/.local/share/caixa`) for a rootless start.
pub fn default_root() -> PathBuf {
    if crate::rootless::active() {
        crate::rootless::user_dir("data")
    } else {
        PathBuf::from(DEFAULT_ROOT)
    }
}

/// A store at a root directory.
#[derive(Debug, Clone)]
pub struct Store {
    /// The root directory.
    pub root: PathBuf,
}

impl Store {
    /// Opens (creating) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, ImageError> {
        let root = root.into();
        // Absolute: the overlay mount runs from another working directory.
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir().map_err(io_err("."))?.join(root)
        };
        for dir in ["blobs/sha256", "layers", "images", "containers"] {
            std::fs::create_dir_all(root.join(dir)).map_err(io_err(root.join(dir)))?;
        }
        Ok(Store { root })
    }

    /// Where a blob lives.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let hex = hex_of(digest).ok_or_else(|| ImageError::BadDigest {
            digest: digest.to_string(),
        })?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    /// Copies a blob in, verifying it hashes to `digest` (and is `size`
    /// bytes). Already-present blobs are not copied again.
    pub fn put_blob(
        &self,
        digest: &str,
        size: Option<u64>,
        reader: impl Read,
    ) -> Result<PathBuf, ImageError> {
        let path = self.blob_path(digest)?;
        if path.exists() {
            return Ok(path);
        }
        let tmp = path.with_extension(unique_suffix("tmp"));
        let mut hashing = Hashing::new(reader);
        let mut file = create_new(&tmp)?;
        let copied = copy_in(&mut hashing, &mut file).map_err(io_err(&tmp));
        let actual = copied.and_then(|_| hashing.finish().map_err(io_err(&tmp)));
        let check = actual.and_then(|actual| {
            if actual != digest {
                return Err(ImageError::DigestMismatch {
                    what: "blob".into(),
                    expected: digest.into(),
                    actual,
                });
            }
            Ok(())
        });
        let check = check.and_then(|()| {
            let Some(expected) = size else {
                return Ok(());
            };
            let actual = std::fs::metadata(&tmp).map_err(io_err(&tmp))?.len();
            if actual != expected {
                return Err(ImageError::SizeMismatch {
                    digest: digest.to_string(),
                    expected,
                    actual,
                });
            }
            Ok(())
        });
        if let Err(e) = check {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err(&path)(e)
        })?;
        Ok(path)
    }

    /// Copies in a blob whose digest is not known yet (a `docker save`
    /// layer), naming it by the sha256 of what was read.
    pub fn put_blob_hashed(&self, reader: impl Read) -> Result<String, ImageError> {
        let tmp = self
            .root
            .join("blobs/sha256")
            .join(format!(".{}", unique_suffix("incoming")));
        let mut hashing = Hashing::new(reader);
        let mut file = create_new(&tmp)?;
        let result = copy_in(&mut hashing, &mut file)
            .and_then(|_| hashing.finish())
            .map_err(io_err(&tmp));
        let digest = match result {
            Ok(d) => d,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let path = self.blob_path(&digest)?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err(&path)(e)
        })?;
        Ok(digest)
    }

    /// Reads a blob whole (manifests, configs: small JSON).
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest)?;
        std::fs::read(&path).map_err(io_err(&path))
    }

    /// The directory for layers owned by `owner` (`"100000-100000"`).
    pub fn layers_dir(&self, owner: &str) -> PathBuf {
        self.root.join("layers").join(owner)
    }

    /// Points `name` at a manifest digest. A name takes the place of the
    /// image's [`unnamed`] one, if it had that.
    pub fn tag(&self, name: &str, manifest: &str) -> Result<(), ImageError> {
        // `@` begins only the name of an image of no name, its own.
        if name.starts_with('@') && name != unnamed(manifest) {
            return Err(ImageError::BadName {
                name: name.to_string(),
            });
        }
        let path = self.image_path(name)?;
        // A temporary name of its own: two tags written at once (`v1.0`
        // and `v1.1`, whose `with_extension` would be one `v1.tmp`) must
        // never share one. Hidden: `images` passes over a `.` name.
        let tmp = self
            .root
            .join("images")
            .join(format!(".{}", unique_suffix("tag")));
        std::fs::write(&tmp, manifest).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        if name != unnamed(manifest) {
            self.forget_unnamed(manifest)?;
        }
        Ok(())
    }

    /// Keeps an image made without a name (`build` without `-t`) under its
    /// [`unnamed`] one, unless a name has it already: without any, nothing
    /// would list it or find it by its id.
    pub fn keep_unnamed(&self, manifest: &str) -> Result<(), ImageError> {
        if self.images()?.iter().any(|(_, d)| d == manifest) {
            return Ok(());
        }
        self.tag(&unnamed(manifest), manifest)
    }

    /// The manifest digest of `name`.
    pub fn resolve(&self, name: &str) -> Result<String, ImageError> {
        let path = self.image_path(name)?;
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_string())
            .map_err(|_| ImageError::NotFound(name.to_string()))
    }

    /// Every (name, manifest digest).
    pub fn images(&self) -> Result<Vec<(String, String)>, ImageError> {
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            // A tag being written (no name of an image starts with `.`).
            if file.starts_with('.') {
                continue;
            }
            let digest = std::fs::read_to_string(entry.path()).unwrap_or_default();
            out.push((unescape(&file), digest.trim().to_string()));
        }
        out.sort();
        Ok(out)
    }

    /// Forgets `name` (blobs and layers stay for other images).
    pub fn untag(&self, name: &str) -> Result<(), ImageError> {
        let path = self.image_path(name)?;
        std::fs::remove_file(&path).map_err(|_| ImageError::NotFound(name.to_string()))
    }

    /// Whether `name` can be an image's name here: checked before anything
    /// is written for it (a registry's manifest, before its bytes go in).
    pub fn check_name(&self, name: &str) -> Result<(), ImageError> {
        self.image_path(name).map(drop)
    }

    fn image_path(&self, name: &str) -> Result<PathBuf, ImageError> {
        let file = name.replace('/', "%2F");
        // The file's name, each `/` spelled `%2F`, must fit in one name of
        // the filesystem (255 bytes), and never start with `.`.
        let ok = !name.is_empty()
            && file.len() <= 255
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-:/@".contains(&b));
        if !ok {
            return Err(ImageError::BadName {
                name: name.to_string(),
            });
        }
        Ok(self.root.join("images").join(file))
    }

    /// Forgets the [`unnamed`] name of `manifest`, if it has one.
    pub fn forget_unnamed(&self, manifest: &str) -> Result<(), ImageError> {
        match self.untag(&unnamed(manifest)) {
            Ok(()) | Err(ImageError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A container's own directory.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }
}

/// `WHAT-PID-N`: a name no other writer uses, in this process (N counts
/// up: a daemon writes blobs from many threads at once) or in another.
/// Two writers of one temporary file would interleave their bytes, and
/// the rename would put a blob under a digest it does not have.
pub(crate) fn unique_suffix(what: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{what}-{}-{n}", std::process::id())
}

/// The most a blob's copy reads and writes at once.
const COPY_PIECE: usize = 256 << 10;

/// Copies `reader` into a new blob's file in pieces of up to
/// [`COPY_PIECE`]: one `write` per piece. `std::io::copy` would write
/// every 8 KiB, and a 40 MiB layer would cost some 5,000 system calls.
fn copy_in(reader: &mut impl Read, file: &mut std::fs::File) -> std::io::Result<u64> {
    use std::io::Write;
    let mut piece = vec![0; COPY_PIECE];
    let mut copied = 0;
    loop {
        let mut filled = 0;
        while filled < COPY_PIECE {
            match reader.read(&mut piece[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(copied);
        }
        file.write_all(&piece[..filled])?;
        copied += filled as u64;
    }
}

/// Creates `path`, which must not exist yet (a leftover of a crashed
/// writer with the same name is an error, not something to write into).
fn create_new(path: &std::path::Path) -> Result<std::fs::File, ImageError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))
}

fn unescape(file: &str) -> String {
    file.replace("%2F", "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_of_no_name_is_kept_until_it_gets_one() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let (x, y) = (
            format!("sha256:{}", "c".repeat(64)),
            format!("sha256:{}", "d".repeat(64)),
        );
        store.keep_unnamed(&x).unwrap();
        assert_eq!(store.images().unwrap(), vec![(unnamed(&x), x.clone())]);
        assert!(is_unnamed(&unnamed(&x), &x) && !is_unnamed(&unnamed(&x), &y));
        // Only an image's own: no other name may begin with `@`.
        for bad in [unnamed(&y), "@web:1".to_string()] {
            assert!(matches!(
                store.tag(&bad, &x),
                Err(ImageError::BadName { .. })
            ));
        }
        // A name takes its place; an image with a name gets none.
        store.tag("web:1", &x).unwrap();
        assert_eq!(
            store.images().unwrap(),
            vec![("web:1".to_string(), x.clone())]
        );
        store.keep_unnamed(&x).unwrap();
        assert_eq!(store.images().unwrap().len(), 1);
        store.forget_unnamed(&y).unwrap();
    }

    #[test]
    fn tags_written_side_by_side_never_share_a_temporary_file() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let (a, b) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        std::thread::scope(|s| {
            for n in 0..20 {
                let (store, a, b) = (&store, &a, &b);
                s.spawn(move || store.tag(&format!("bb:v{n}.0"), a).unwrap());
                s.spawn(move || store.tag(&format!("bb:v{n}.1"), b).unwrap());
            }
        });
        for n in 0..20 {
            assert_eq!(store.resolve(&format!("bb:v{n}.0")).unwrap(), a);
            assert_eq!(store.resolve(&format!("bb:v{n}.1")).unwrap(), b);
        }
        // A tag that ends in `.tmp` is a tag like any other.
        store.tag("bb:1.tmp", &a).unwrap();
        assert_eq!(store.images().unwrap().len(), 41);
        // Too long once each `/` is `%2F`, or hidden: no name.
        let long = format!("{}:1", "a/".repeat(100));
        assert!(store.check_name(&long).is_err());
        assert!(store.check_name(".hidden:1").is_err());
        assert!(store.check_name("bb:1").is_ok());
    }

    #[test]
    fn what_is_wrong_is_a_variant_with_its_value() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = store.tag("bad name:latest", "sha256:00").unwrap_err();
        assert!(matches!(&err, ImageError::BadName { name } if name == "bad name:latest"));
        let err = store.put_blob("md5:abc", None, &b""[..]).unwrap_err();
        assert!(matches!(&err, ImageError::BadDigest { digest } if digest == "md5:abc"));
        // sha256 of "hello", given with the wrong size.
        let hello = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let err = store.put_blob(hello, Some(4), &b"hello"[..]).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::SizeMismatch {
                    expected: 4,
                    actual: 5,
                    ..
                }
            ),
            "{err}"
        );
        assert!(store.put_blob(hello, Some(5), &b"hello"[..]).is_ok());
    }

    /// Hands out `data` a few bytes at a time, interrupted now and then,
    /// then fails if `fail_at_end`: what a network body does.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        calls: usize,
        fail_at_end: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls % 7 == 0 {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            if self.at == self.data.len() && self.fail_at_end {
                return Err(std::io::Error::other("cut"));
            }
            let n = buf
                .len()
                .min(self.data.len() - self.at)
                .min(1000 + self.calls % 5000);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn a_trickling_blob_is_copied_whole_and_a_cut_is_an_error() {
        let data: Vec<u8> = (0..COPY_PIECE * 2 + 12345)
            .map(|i| (i % 251) as u8)
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let mut file = std::fs::File::create(&path).unwrap();
        let mut body = Trickle {
            data: data.clone(),
            at: 0,
            calls: 0,
            fail_at_end: false,
        };
        assert_eq!(copy_in(&mut body, &mut file).unwrap(), data.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), data);

        let mut cut = Trickle {
            data,
            at: 0,
            calls: 0,
            fail_at_end: true,
        };
        let err = copy_in(&mut cut, &mut file).unwrap_err();
        assert_eq!(err.to_string(), "cut");
    }
}
