//! The build context: the directory `docker build` sends, as a tar.
//!
//! The client tars the context directory, leaving out what `.dockerignore`
//! names ([`tar_context`]); the daemon unpacks it into a private directory
//! with the same hostile-input rules as an image layer
//! ([`crate::image::unpack`]: no absolute names, no `..`, nothing written
//! through a symlink, no devices, bounded sizes). A symlink inside the
//! context stays a symlink; COPY reads it inside the context only
//! ([`super::scope`]).

use std::io::Read;
use std::path::Path;

use super::BuildError;
use super::ignore::Ignore;
use crate::image::unpack::{Bounds, Shift, unpack};

/// Unpacks the context archive `reader` (at most `size` bytes) into `dest`.
pub fn unpack_context(reader: impl Read, size: u64, dest: &Path) -> Result<(), BuildError> {
    unpack(
        reader,
        dest,
        "context",
        &Shift::IDENTITY,
        Bounds::for_compressed(size),
    )
    .map_err(|e| {
        BuildError::Context(match e {
            crate::image::ImageError::Hostile { why, .. } => why,
            other => other.to_string(),
        })
    })
}

/// Whether `path` is a tar archive (plain or gzipped): ADD unpacks those.
pub fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    (n >= 2 && head[0] == 0x1f && head[1] == 0x8b) || (n >= 262 && &head[257..262] == b"ustar")
}

/// Unpacks the archive at `src` (tar or tar+gzip) into `dest`.
pub fn unpack_archive(src: &Path, dest: &Path) -> Result<(), BuildError> {
    let file = std::fs::File::open(src).map_err(BuildError::io(src))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut magic = [0u8; 2];
    let gz = std::fs::File::open(src)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == [0x1f, 0x8b];
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    unpack(
        reader,
        dest,
        &src.display().to_string(),
        &Shift::IDENTITY,
        Bounds::for_compressed(size),
    )
    .map_err(|e| BuildError::Other(format!("ADD {}: {e}", src.display())))
}

// ANCHOR: tar_context
/// The context directory `dir` as a tar, without what its `.dockerignore`
/// excludes (the Dockerfile and `.dockerignore` always go: the daemon
/// needs them). Owners become root, as Docker's client makes them.
pub fn tar_context(dir: &Path, dockerfile: &str) -> std::io::Result<Vec<u8>> {
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => Ignore::parse(&text),
        Err(_) => Ignore::default(),
    };
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(&rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        names.reverse();
        for name in names {
            let rel = rel.join(name);
            let text = rel.to_string_lossy();
            let always = text == dockerfile || text == ".dockerignore";
            if !always && ignore.excludes(&text) {
                continue;
            }
            let path = dir.join(&rel);
            let meta = std::fs::symlink_metadata(&path)?;
            let mut header = tar::Header::new_gnu();
            header.set_metadata(&meta);
            header.set_uid(0);
            header.set_gid(0);
            if meta.is_dir() {
                tar.append_data(&mut header, &rel, std::io::empty())?;
                stack.push(rel);
            } else if meta.file_type().is_symlink() {
                tar.append_link(&mut header, &rel, std::fs::read_link(&path)?)?;
            } else if meta.is_file() {
                tar.append_data(&mut header, &rel, std::fs::File::open(&path)?)?;
            }
        }
    }
    tar.into_inner()
}
// ANCHOR_END: tar_context
