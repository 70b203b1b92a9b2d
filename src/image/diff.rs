//! A filesystem diff becomes a layer: the one place that writes layers.
//!
//! A container's changes live in its overlay's upper directory: new and
//! changed files as themselves, deleted ones as overlayfs whiteouts (a
//! character device 0/0 under the deleted name), a directory that replaced
//! a lower one as an *opaque* directory (`trusted.overlay.opaque=y`). A layer
//! says the same in the OCI image spec's words (`layer.md`): files as tar
//! entries, a deletion as an empty file `.wh.NAME`, an opaque directory as
//! the entry `.wh..wh..opq` inside it. [`write_layer`] walks the directory
//! in name order and writes that tar, gzipped, into the store: the layer's
//! `diff_id` is the sha256 of the tar, its digest the sha256 of the gzip.
//! `build` (RUN, COPY) and `commit` both call it.
//!
//! File owners are shifted back from the host ids the container's root
//! mapped to (step 6) into the container's own, so the layer says `0:0`
//! where the container saw root.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::store::Store;
use super::unpack::Shift;
use super::{ImageError, io_err};

/// The OCI media type of the layers written here.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A layer written into the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// `sha256:` of the gzip: the blob's name, what a manifest lists.
    pub digest: String,
    /// `sha256:` of the tar: what the config's `rootfs.diff_ids` lists.
    pub diff_id: String,
    /// The blob's size in bytes.
    pub size: u64,
    /// How many tar entries: 0 means nothing changed.
    pub entries: u64,
}

// ANCHOR: whiteout_name
/// The OCI name of an upper directory's entry `rel` when it is an overlayfs
/// whiteout (a character device 0/0): `dir/.wh.NAME`. `None` for any other
/// entry, which the layer holds as itself.
pub fn whiteout_name(rel: &Path, meta: &std::fs::Metadata) -> Option<PathBuf> {
    // EXERCISE(11): a character device with device number 0 is a whiteout: return rel's parent joined with ".wh." + rel's file name
    if !(meta.file_type().is_char_device() && meta.rdev() == 0) {
        return None;
    }
    let name = rel.file_name()?;
    let mut marker = std::ffi::OsString::from(".wh.");
    marker.push(name);
    Some(rel.parent().unwrap_or(Path::new("")).join(marker))
    // END EXERCISE
}
// ANCHOR_END: whiteout_name

/// Whether overlayfs marked `dir` opaque: it hides every lower layer's
/// directory of the same name, so the layer must say `.wh..wh..opq`.
fn is_opaque(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut value = [0u8; 1];
    // SAFETY: a NUL-terminated path, a name literal and a 1-byte buffer.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hashing<W: Write>(inner: W) -> HashingWriter<W> {
    HashingWriter {
        inner,
        hasher: Sha256::new(),
        count: 0,
    }
}

// ANCHOR: write_layer
/// Writes the changes in `upper` as a gzipped tar layer into `store`;
/// `shift` says which host ids the container's ids were (see module doc).
pub fn write_layer(store: &Store, upper: &Path, shift: &Shift) -> Result<Layer, ImageError> {
    let dir = store.root.join("blobs/sha256");
    let tmp = dir.join(format!(
        ".layer-{}-{}",
        std::process::id(),
        crate::ns::uts::short_random_id()
    ));
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let gzip = flate2::write::GzEncoder::new(hashing(file), flate2::Compression::fast());
        let mut tar = tar::Builder::new(hashing(gzip));
        tar.follow_symlinks(false);
        let mut walk = Walk {
            root: upper,
            shift,
            links: HashMap::new(),
            entries: 0,
        };
        walk.dir(&mut tar, Path::new("")).map_err(io_err(upper))?;
        let entries = walk.entries;
        let tar_hashed = tar.into_inner().map_err(io_err(&tmp))?;
        let diff_id = format!("sha256:{:x}", tar_hashed.hasher.finalize());
        let gz_hashed = tar_hashed.inner.finish().map_err(io_err(&tmp))?;
        let digest = format!("sha256:{:x}", gz_hashed.hasher.finalize());
        gz_hashed.inner.sync_all().map_err(io_err(&tmp))?;
        Ok(Layer {
            digest,
            diff_id,
            size: gz_hashed.count,
            entries,
        })
    })();
    let layer = match result {
        Ok(layer) => layer,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let path = store.blob_path(&layer.digest)?;
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(&path)(e)
    })?;
    Ok(layer)
}
// ANCHOR_END: write_layer

struct Walk<'a> {
    root: &'a Path,
    shift: &'a Shift,
    /// (device, inode) → the first name of a file with several links.
    links: HashMap<(u64, u64), PathBuf>,
    entries: u64,
}

impl Walk<'_> {
    /// Writes the entries of directory `rel`, in name order (the same tree
    /// gives the same tar, so the same diff_id).
    fn dir<W: Write>(&mut self, tar: &mut tar::Builder<W>, rel: &Path) -> std::io::Result<()> {
        let abs = self.root.join(rel);
        if !rel.as_os_str().is_empty() && is_opaque(&abs) {
            self.marker(tar, &rel.join(".wh..wh..opq"))?;
        }
        let mut names: Vec<_> = std::fs::read_dir(&abs)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            let rel = rel.join(&name);
            let path = self.root.join(&rel);
            let meta = std::fs::symlink_metadata(&path)?;
            if let Some(marker) = whiteout_name(&rel, &meta) {
                self.marker(tar, &marker)?;
                continue;
            }
            let mut header = self.header(&meta);
            let kind = meta.file_type();
            if kind.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, &rel, std::io::empty())?;
                self.entries += 1;
                self.dir(tar, &rel)?;
            } else if kind.is_symlink() {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                let target = std::fs::read_link(&path)?;
                tar.append_link(&mut header, &rel, &target)?;
                self.entries += 1;
            } else if kind.is_file() {
                if meta.nlink() > 1 {
                    if let Some(first) = self.links.get(&(meta.dev(), meta.ino())) {
                        header.set_entry_type(tar::EntryType::Link);
                        header.set_size(0);
                        tar.append_link(&mut header, &rel, first)?;
                        self.entries += 1;
                        continue;
                    }
                    self.links.insert((meta.dev(), meta.ino()), rel.clone());
                }
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(meta.len());
                let file = std::fs::File::open(&path)?;
                tar.append_data(&mut header, &rel, file)?;
                self.entries += 1;
            } else if kind.is_fifo() {
                header.set_entry_type(tar::EntryType::Fifo);
                header.set_size(0);
                tar.append_data(&mut header, &rel, std::io::empty())?;
                self.entries += 1;
            }
            // Sockets and device nodes: a layer carries neither (a container
            // in a user namespace cannot make devices anyway).
        }
        Ok(())
    }

    fn header(&self, meta: &std::fs::Metadata) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_mtime(meta.mtime().max(0) as u64);
        header.set_uid(u64::from(unshift(
            meta.uid(),
            self.shift.uid_base,
            self.shift.count,
        )));
        header.set_gid(u64::from(unshift(
            meta.gid(),
            self.shift.gid_base,
            self.shift.count,
        )));
        header
    }

    fn marker<W: Write>(&mut self, tar: &mut tar::Builder<W>, rel: &Path) -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(0);
        tar.append_data(&mut header, rel, std::io::empty())?;
        self.entries += 1;
        Ok(())
    }
}

/// The container's id for host id `id` (the overflow id 65534 when it was
/// not one of the container's).
fn unshift(id: u32, base: u32, count: u32) -> u32 {
    match id.checked_sub(base) {
        Some(inner) if inner < count => inner,
        _ => 65534,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_and_opaque_dirs_become_oci_markers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(upper.join("etc/opaque")).unwrap();
        std::fs::write(upper.join("etc/new"), "hi").unwrap();
        nix::sys::stat::mknod(
            &upper.join("etc/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        let c = CString::new(upper.join("etc/opaque").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid strings and a 1-byte value.
        unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        let shift = Shift::IDENTITY;
        let layer = write_layer(&store, &upper, &shift).unwrap();
        let blob = std::fs::File::open(store.blob_path(&layer.digest).unwrap()).unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(blob));
        let names: Vec<String> = tar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.contains(&"etc/.wh.gone".to_string()), "{names:?}");
        assert!(names.contains(&"etc/new".to_string()), "{names:?}");
        assert!(
            names.contains(&"etc/opaque/.wh..wh..opq".to_string()),
            "{names:?}"
        );
        assert_eq!(layer.entries, 5);
    }

    #[test]
    fn host_ids_shift_back() {
        assert_eq!(unshift(100_000, 100_000, 65536), 0);
        assert_eq!(unshift(101_000, 100_000, 65536), 1000);
        assert_eq!(unshift(5, 100_000, 65536), 65534);
    }
}
