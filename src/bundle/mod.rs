//! The OCI bundle: the contract between caixa's engine and its runtime.
//!
//! Docker does not start containers itself. dockerd asks containerd, which
//! writes a *bundle* (a directory holding `config.json`, an OCI runtime spec,
//! and the root filesystem it names) and hands it to runc. Each layer can be
//! replaced because the bundle is all they share. caixa keeps that seam: the
//! engine writes a bundle in the container's directory ([`to_oci`], [`write()`])
//! and the container's shim reads it back ([`read`], [`from_oci`]) into the
//! [`Spec`] that [`crate::parent::start`] carries out.
//!
//! The runtime spec (github.com/opencontainers/runtime-spec, `config.md` and
//! `config-linux.md`) can ask for far more than caixa implements. Every field
//! is either converted or refused with [`BundleError::Unsupported`], naming
//! the field as a JSON path and saying what caixa does instead: a runtime that
//! quietly drops `linux.seccomp` or `process.rlimits` runs a container less
//! confined than its author asked for. [`REFUSED`] is the list.
//!
//! What OCI cannot say, caixa says in annotations under `org.caixa.`: a user
//! *name* (OCI has numeric ids only), the image whose overlay is the root, and
//! the network plan. OCI runtimes leave networks to their caller (CNI plugins
//! run by containerd or podman); caixa's runtime wires its own bridge, so the
//! plan travels with the bundle. The spec says unknown annotations MUST be
//! ignored, and other keys are; an unknown `org.caixa.*` key is refused, as a
//! guard against typos.
//!
//! One field of [`Spec`] does not travel: `verbose` is how the runtime
//! reports, not what it runs; the shim decides it.

mod config_file;
mod from_oci;
mod mounts;
mod network;
mod process;
mod refused;
mod resources;
mod to_oci;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use config_file::{read, write};
pub use from_oci::from_oci;
pub use refused::{REFUSED, refuse};
pub(crate) use refused::{reason, refuse_unconverted};
pub use to_oci::to_oci;

/// Rewrites, in `config`, the networks a container joined after it was
/// made: `docker network connect` and `disconnect` change the bundle, and
/// every start of the container (its shim's, a restart's) reads it there.
pub fn set_joined_networks(
    config: &mut oci_spec::runtime::Spec,
    joined: &[crate::net::NetworkSpec],
) {
    let mut annotations = config.annotations().clone().unwrap_or_default();
    network::joined_to_oci(joined, &mut annotations);
    config.set_annotations(Some(annotations));
}

#[cfg(doc)]
use crate::Spec;

/// The name of the runtime spec inside a bundle.
pub const CONFIG_FILE: &str = "config.json";

/// The largest `config.json` [`read`] accepts: a real one is a few KiB.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The runtime spec version [`to_oci`] writes.
pub const OCI_VERSION: &str = "1.0.2";

/// Annotation: a user name or `NAME:GROUP`, resolved in the container's
/// `/etc/passwd` and `/etc/group` by caixa's init.
pub const ANNOTATION_USER: &str = "org.caixa.process.user";
/// Annotation: the manifest digest of the image whose overlay is the root.
pub const ANNOTATION_IMAGE_MANIFEST: &str = "org.caixa.image.manifest";
/// Annotation: the image store holding that image's layers.
pub const ANNOTATION_IMAGE_STORE: &str = "org.caixa.image.store";
/// Annotation: `true` keeps the container's upper directory after it ends.
pub const ANNOTATION_IMAGE_KEEP: &str = "org.caixa.image.keep";
/// Annotation: the host bridge the container plugs into.
pub const ANNOTATION_BRIDGE: &str = "org.caixa.network.bridge";
/// Annotation: the bridge's subnet (`10.89.0.0/24`).
pub const ANNOTATION_SUBNET: &str = "org.caixa.network.subnet";
/// Annotation: the names the container answers to on its network, comma-separated.
pub const ANNOTATION_NAMES: &str = "org.caixa.network.names";
/// Annotation: published ports, comma-separated, each as `-p` takes it.
pub const ANNOTATION_PUBLISH: &str = "org.caixa.network.publish";
/// Annotation: the bandwidth limit in tc's syntax (`10mbit`).
pub const ANNOTATION_BANDWIDTH: &str = "org.caixa.network.bandwidth";
/// Annotation: where the network's leases and per-container files live.
pub const ANNOTATION_STATE_DIR: &str = "org.caixa.network.state-dir";
/// Annotation: the networks joined later (`docker network connect`), in
/// order (`eth1`, `eth2`…): `BRIDGE=SUBNET=NAMES`, separated by `;`.
pub const ANNOTATION_JOINED: &str = "org.caixa.network.joined";
/// Annotation: `pasta`, a user-mode network instead of a bridge (its
/// ports in [`ANNOTATION_PUBLISH`]; see [`crate::net::usermode`]).
pub const ANNOTATION_NETWORK_MODE: &str = "org.caixa.network.mode";

/// Annotation: `true` keeps caixa's init as pid 1, reaping, with the
/// command as its child (`--init`; see [`crate::reaper`]).
pub const ANNOTATION_INIT: &str = "org.caixa.process.init";

/// Every `org.caixa.*` annotation caixa reads; any other one is a typo.
pub const ANNOTATIONS: [&str; 13] = [
    ANNOTATION_USER,
    ANNOTATION_INIT,
    ANNOTATION_IMAGE_MANIFEST,
    ANNOTATION_IMAGE_STORE,
    ANNOTATION_IMAGE_KEEP,
    ANNOTATION_BRIDGE,
    ANNOTATION_SUBNET,
    ANNOTATION_PUBLISH,
    ANNOTATION_BANDWIDTH,
    ANNOTATION_STATE_DIR,
    ANNOTATION_NAMES,
    ANNOTATION_JOINED,
    ANNOTATION_NETWORK_MODE,
];

/// A bundle caixa cannot run, or cannot read or write.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A field caixa does not implement: refused, never ignored.
    #[error("config.json: {field} is not supported by caixa: {why}")]
    Unsupported {
        /// The field, as a JSON path (`linux.sysctl`).
        field: String,
        /// What caixa does instead, or what to do.
        why: String,
    },
    /// A field whose value is wrong.
    #[error("config.json: invalid {field}: {why}")]
    Invalid {
        /// The field, as a JSON path.
        field: String,
        /// What is wrong and what to do.
        why: String,
    },
    /// Reading or writing the bundle failed.
    #[error("bundle: cannot {action} {path}: {source}")]
    Io {
        /// What we tried.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `config.json` is not JSON of the runtime spec's shape.
    #[error("bundle: {path} is not an OCI runtime spec: {source}; check it with `jq . {path}`")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },
}

impl BundleError {
    /// The JSON path of the field this error is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            BundleError::Unsupported { field, .. } | BundleError::Invalid { field, .. } => {
                Some(field)
            }
            _ => None,
        }
    }
}

/// An [`BundleError::Invalid`] for `field`.
pub(crate) fn invalid(field: &str, why: impl Into<String>) -> BundleError {
    BundleError::Invalid {
        field: field.to_string(),
        why: why.into(),
    }
}

/// An [`BundleError::Invalid`] for the annotation `key`.
pub(crate) fn invalid_annotation(key: &str, why: impl Into<String>) -> BundleError {
    invalid(&format!("annotations.{key}"), why)
}

/// `1.0.x`, `1.1.x` and `1.2.x`: the versions whose fields caixa knows.
fn check_version(version: &str) -> Result<(), BundleError> {
    let mut parts = version.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("1"), Some("0" | "1" | "2"), Some(patch)) if !patch.is_empty() => Ok(()),
        _ => Err(BundleError::Unsupported {
            field: "ociVersion".into(),
            why: format!("caixa reads runtime spec 1.0, 1.1 and 1.2, not {version:?}"),
        }),
    }
}
