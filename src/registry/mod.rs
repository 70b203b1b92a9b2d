//! The registry client (step 10): pull and push over the OCI distribution API.
//!
//! A registry is an HTTP server that stores images by name: `GET
//! /v2/<name>/manifests/<tag or digest>` answers a manifest (or an index of
//! manifests, one per platform), `GET /v2/<name>/blobs/<digest>` a config or
//! a layer. Pushing is the same in reverse: blobs first (`POST` an upload,
//! `PUT` it with its digest), the manifest last. Every byte is verified
//! against its digest here, whatever the server's headers claim. See the
//! OCI distribution spec.
//!
//! The server is not trusted: its answers are bounded in time
//! ([`deadline`]), size and disk ([`disk`]), checked as documents before
//! use (`image::validate`), and any text of its own that reaches a message
//! goes through `printable`, so it cannot write to the terminal.

use crate::image::validate::printable;

pub mod answer;
pub mod auth;
pub mod client;
pub mod deadline;
pub mod disk;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;

/// A registry problem, one line with what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A reference that does not parse.
    #[error(
        "invalid image reference {0:?}: use [REGISTRY/]NAME[:TAG|@sha256:DIGEST], e.g. busybox:1.36"
    )]
    Reference(String),
    /// The server could not be reached, stalled or cut an answer short.
    #[error("talking to the registry at {}: {}", printable(.url), printable(.why))]
    Transport {
        /// What we asked for.
        url: String,
        /// What happened.
        why: String,
    },
    /// The server answered with an error status.
    #[error("{}: the registry answered {status}{}", printable(.url), printable(.hint))]
    Status {
        /// What we asked for.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What to do, when we know.
        hint: String,
    },
    /// The server sent something that is not what the protocol says.
    #[error("the registry sent a bad answer for {}: {}", printable(.what), printable(.why))]
    Protocol {
        /// Which request.
        what: String,
        /// What is wrong.
        why: String,
    },
    /// Plain HTTP to a host that is not loopback nor listed insecure.
    #[error(
        "refusing plain HTTP to {0}: add it with --insecure-registry {0} if you trust the network"
    )]
    Insecure(String),
    /// The store refused what came (digest mismatch, …).
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The image is larger than a pull may be.
    #[error(
        "the image needs {needs} to be downloaded, more than --max-pull-size {max}: raise --max-pull-size if you trust this image"
    )]
    TooBig {
        /// What its descriptors add up to.
        needs: String,
        /// The bound.
        max: String,
    },
    /// The store's filesystem has no room for the pull.
    #[error("{dir}: {why}")]
    Disk {
        /// The store's root.
        dir: String,
        /// How much is needed and free.
        why: String,
    },
    /// Credentials could not be read or written.
    #[error("credentials {path}: {why}")]
    Credentials {
        /// The file.
        path: String,
        /// What happened.
        why: String,
    },
}
