//! Images (step 9): read-only layers, stacked with overlayfs.
//!
//! The source document: an image is a read-only template, always built on
//! another image, with our changes layered on top; a container is an
//! instance of it whose unpersisted changes vanish when it is removed. Here
//! that is literal: an image is a list of layers (tar archives, each the
//! difference from the one below), plus a config (Env, Cmd, WorkingDir…);
//! a container's root is an overlay of those layers, read-only, under a
//! fresh upper directory of its own that is deleted with the container.
//!
//! Formats follow the OCI image spec (types from the `oci-spec` crate):
//! content-addressed blobs (`sha256:…`), a manifest listing a config and
//! layers, an index listing manifests. Tar with the `tar` crate, gzip with
//! `flate2` and zstd with `ruzstd`: pure Rust, no C library, so easy to
//! build static (see [`compression`]).

pub mod bounded;
pub mod compression;
pub mod config;
pub mod diff;
pub mod digest;
pub mod draft;
pub mod fuse_overlay;
pub mod load;
pub mod overlay;
pub mod store;
pub mod unpack;
pub mod validate;

use std::path::PathBuf;

use validate::printable;

/// An image problem, one line with what to do.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A rootless start cannot prepare this root (see `crate::rootless`).
    #[error("{0}")]
    Rootless(String),
    /// Reading or writing the store or an input failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The input is not a valid image; what is wrong, in words (the archive
    /// readers of `load`, which find many kinds of wrong).
    #[error("malformed image: {}", printable(.0))]
    Malformed(String),
    /// A manifest or config that is not what the OCI image spec describes.
    #[error("malformed image: the {} does not parse: {source}; load or pull the image again", printable(.what))]
    Json {
        /// Which document (`manifest of busybox:latest`, `config of …`).
        what: String,
        /// What the parser said.
        source: oci_spec::OciSpecError,
    },
    /// A digest that is not `sha256:` and 64 hexadecimal digits.
    #[error("malformed image: {} is not a sha256 digest (sha256:<64 hex digits>)", printable(.digest))]
    BadDigest {
        /// The text given as a digest.
        digest: String,
    },
    /// A blob whose size is not the one its descriptor gives.
    #[error(
        "malformed image: blob {digest} is {actual} bytes, not {expected} as its descriptor says"
    )]
    SizeMismatch {
        /// The blob.
        digest: String,
        /// The descriptor's size.
        expected: u64,
        /// The content's size.
        actual: u64,
    },
    /// A name the store cannot hold.
    #[error("invalid image name {}: use 1 to 255 letters, digits and ._-:/@", printable(.name))]
    BadName {
        /// The name given.
        name: String,
    },
    /// An image without a layer: overlayfs needs at least one lower layer.
    #[error("malformed image: it has no layers, and overlayfs needs at least one")]
    NoLayers,
    /// Nothing to run: neither the image nor the command line gives a command.
    #[error("the image has no Entrypoint or Cmd: give a command")]
    NoCommand,
    /// Content does not match its digest.
    #[error(
        "digest mismatch for {}: expected {}, got {actual}; the image is corrupt or was tampered with",
        printable(.what),
        printable(.expected)
    )]
    DigestMismatch {
        /// Which blob or layer.
        what: String,
        /// What the manifest or config says.
        expected: String,
        /// What the content hashes to.
        actual: String,
    },
    /// A media type caixa does not handle.
    #[error(
        "unsupported media type {}: caixa reads tar, tar+gzip and tar+zstd layers",
        printable(.0)
    )]
    MediaType(String),
    /// A layer tries to escape its directory, or breaks a bound.
    #[error("refusing layer {}: {}", printable(.layer), printable(.why))]
    Hostile {
        /// The layer's digest.
        layer: String,
        /// What the entry tried.
        why: String,
    },
    /// Decompressing a layer broke a bound of [`bounded`] (bytes or time).
    #[error(
        "refusing layer {}: {hit}; a layer an image builder wrote does not do that: rebuild the image, or split the layer",
        printable(.layer)
    )]
    LayerBound {
        /// The layer's digest.
        layer: String,
        /// Which bound.
        hit: bounded::Hit,
    },
    /// An index without a manifest for the platform wanted.
    #[error(
        "no manifest for {wanted} in the index; it offers {offered}: use an image built for {wanted}"
    )]
    Platform {
        /// `os/arch` asked for.
        wanted: String,
        /// The platforms the index lists, already made printable.
        offered: String,
    },
    /// No such image in the store.
    #[error("no image {0:?} in the store: load it first (step9 load PATH), or see step9 images")]
    NotFound(String),
    /// mount(2) of the container's overlay failed.
    #[error("mount overlay on {target}: {source} (options: {options})")]
    Mount {
        /// The mount point (`merged/`).
        target: PathBuf,
        /// The overlay's options (lower, upper and work directories).
        options: String,
        /// What mount(2) said.
        source: nix::errno::Errno,
    },
    /// umount2(2) of the container's overlay failed.
    #[error("umount {target}: {source}")]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// What umount2(2) said.
        source: nix::errno::Errno,
    },
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.into();
    move |source| ImageError::Io { path, source }
}
