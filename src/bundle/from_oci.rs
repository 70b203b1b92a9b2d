//! An OCI runtime spec read back into caixa's [`Spec`]: what the shim runs.
//!
//! Each object is converted field by field; whatever is set and not
//! converted is refused by [`refuse_unconverted`], so nothing is dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespace, LinuxNamespaceType, Root};

use super::mounts::{check_paths, mounts_from_oci};
use super::network::network_from_oci;
use super::process::{capabilities_from_oci, user_from_oci};
use super::resources::limits_from_oci;
use super::to_oci::namespace_type;
use super::{
    ANNOTATION_IMAGE_KEEP, ANNOTATION_IMAGE_MANIFEST, ANNOTATION_IMAGE_STORE, ANNOTATIONS,
    BundleError, check_version, invalid, invalid_annotation, reason, refuse, refuse_unconverted,
};
use crate::idmap::IdMap;
use crate::image::overlay::ImageRoot;
use crate::ns::Namespace;
use crate::spec::{Process, Spec};

/// The top-level fields caixa converts (the rest are refused when set).
const TOP_LEVEL: [&str; 7] = [
    "ociVersion",
    "root",
    "mounts",
    "process",
    "hostname",
    "annotations",
    "linux",
];
/// The fields of `process` caixa converts.
const PROCESS: [&str; 7] = [
    "terminal",
    "user",
    "args",
    "env",
    "cwd",
    "capabilities",
    "noNewPrivileges",
];
/// The fields of `linux` caixa converts.
const LINUX: [&str; 8] = [
    "cgroupsPath",
    "uidMappings",
    "gidMappings",
    "resources",
    "namespaces",
    "seccomp",
    "maskedPaths",
    "readonlyPaths",
];

// ANCHOR: from_oci
/// The [`Spec`] of container `id` for the runtime spec `config` of the
/// bundle directory `bundle` (a relative `root.path` is relative to it).
/// Refuses, naming the field, everything caixa does not implement.
pub fn from_oci(
    config: &oci_spec::runtime::Spec,
    bundle: &Path,
    id: &str,
) -> Result<Spec, BundleError> {
    check_version(config.version())?;
    check_id(id)?;
    refuse_unconverted("", config, &TOP_LEVEL)?;
    let annotations = config.annotations().clone().unwrap_or_default();
    check_annotations(&annotations)?;

    let process = config.process().as_ref().ok_or_else(|| {
        invalid(
            "process",
            "caixa runs the process config.json describes: add one",
        )
    })?;
    refuse_unconverted("process", process, &PROCESS)?;
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(invalid("process.args", "give the command to run"));
    }

    let no_linux;
    let linux = match config.linux() {
        Some(linux) => linux,
        None => {
            no_linux = empty_linux()?;
            &no_linux
        }
    };
    refuse_unconverted("linux", linux, &LINUX)?;

    let (root, image) = root_from_oci(config.root().as_ref(), &annotations, bundle, id)?;
    let has_root = root.is_some() || image.is_some();
    let mounts = mounts_from_oci(config.mounts().as_deref().unwrap_or_default(), has_root)?;
    check_paths(
        linux.masked_paths().as_deref().unwrap_or_default(),
        linux.readonly_paths().as_deref().unwrap_or_default(),
        has_root,
    )?;
    let capabilities = capabilities_from_oci(process.capabilities().as_ref())?;
    // The filter depends on the capabilities kept (Docker's groups).
    let seccomp = match linux.seccomp() {
        None => false,
        Some(profile) if *profile == crate::seccomp::oci_profile(capabilities.as_deref()) => true,
        Some(_) => return Err(refuse("linux.seccomp")),
    };

    Ok(Spec {
        stdio: None,
        terminal: process.terminal().unwrap_or(false),
        id: id.to_string(),
        namespaces: namespaces_from_oci(linux.namespaces().as_deref().unwrap_or_default())?,
        process: Process {
            args,
            env: process.env().clone().unwrap_or_default(),
            cwd: process.cwd().clone(),
            user: user_from_oci(process.user(), &annotations)?,
        },
        root,
        root_overlay: false,
        hostname: config.hostname().clone(),
        uid_map: id_maps(linux.uid_mappings()),
        gid_map: id_maps(linux.gid_mappings()),
        capabilities,
        no_new_privs: process.no_new_privileges().unwrap_or(false),
        seccomp,
        limits: limits_from_oci(linux, id)?,
        network: network_from_oci(&annotations)?,
        mounts,
        image,
        verbose: false,
    })
}
// ANCHOR_END: from_oci

/// An id names directories (the cgroup, the overlay): one path component.
fn check_id(id: &str) -> Result<(), BundleError> {
    if id.is_empty() || id == "." || id == ".." || id.contains(['/', '\0']) {
        return Err(invalid("id", format!("{id:?} cannot name a directory")));
    }
    Ok(())
}

/// `linux` absent: no namespaces, no limits (`Linux::default()` is not empty).
fn empty_linux() -> Result<Linux, BundleError> {
    serde_json::from_value(serde_json::json!({})).map_err(|e| invalid("linux", e.to_string()))
}

fn check_annotations(annotations: &HashMap<String, String>) -> Result<(), BundleError> {
    match annotations
        .keys()
        .find(|k| k.starts_with("org.caixa.") && !ANNOTATIONS.contains(&k.as_str()))
    {
        Some(key) => Err(invalid(
            &format!("annotations.{key}"),
            format!(
                "not an annotation caixa reads (a typo?): it reads {}",
                ANNOTATIONS.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn namespaces_from_oci(list: &[LinuxNamespace]) -> Result<Vec<Namespace>, BundleError> {
    let mut namespaces = Vec::new();
    for (i, oci) in list.iter().enumerate() {
        if oci.path().is_some() {
            return Err(refuse(&format!("linux.namespaces[{i}].path")));
        }
        let Some(ns) = Namespace::ALL
            .into_iter()
            .find(|ns| namespace_type(*ns) == oci.typ())
        else {
            let kind = match oci.typ() {
                LinuxNamespaceType::Cgroup => "cgroup",
                _ => "time",
            };
            return Err(BundleError::Unsupported {
                field: format!("linux.namespaces[{i}]"),
                why: reason(&format!("linux.namespaces.{kind}")).to_string(),
            });
        };
        if namespaces.contains(&ns) {
            return Err(invalid(
                &format!("linux.namespaces[{i}]"),
                format!("the {} namespace is listed twice", ns.proc_name()),
            ));
        }
        namespaces.push(ns);
    }
    Ok(namespaces)
}

fn id_maps(list: &Option<Vec<LinuxIdMapping>>) -> Vec<IdMap> {
    list.iter()
        .flatten()
        .map(|m| IdMap {
            container: m.container_id(),
            host: m.host_id(),
            count: m.size(),
        })
        .collect()
}

/// The root directory, or the image whose overlay caixa mounts as the root.
fn root_from_oci(
    root: Option<&Root>,
    annotations: &HashMap<String, String>,
    bundle: &Path,
    id: &str,
) -> Result<(Option<PathBuf>, Option<ImageRoot>), BundleError> {
    let image = image_from_oci(annotations)?;
    let Some(root) = root else {
        return match image {
            Some(_) => Err(invalid("root", "an image's root needs root.path")),
            None => Ok((None, None)),
        };
    };
    refuse_unconverted("root", root, &["path"])?;
    if root.path().as_os_str().is_empty() {
        return Err(invalid("root.path", "give the root filesystem's directory"));
    }
    let path = std::path::absolute(bundle.join(root.path()))
        .map_err(|e| invalid("root.path", format!("{}: {e}", root.path().display())))?;
    let Some(image) = image else {
        return Ok((Some(path), None));
    };
    let merged = image.container_dir(id).join("merged");
    if path != merged {
        return Err(invalid(
            "root.path",
            format!(
                "caixa mounts an image's root at {}: set root.path to it",
                merged.display()
            ),
        ));
    }
    Ok((None, Some(image)))
}

fn image_from_oci(annotations: &HashMap<String, String>) -> Result<Option<ImageRoot>, BundleError> {
    let manifest = annotations.get(ANNOTATION_IMAGE_MANIFEST);
    let store = annotations.get(ANNOTATION_IMAGE_STORE);
    let keep = match annotations.get(ANNOTATION_IMAGE_KEEP).map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(invalid_annotation(
                ANNOTATION_IMAGE_KEEP,
                format!("{other:?}: use true or false"),
            ));
        }
    };
    match (manifest, store) {
        (Some(manifest), Some(store)) if Path::new(store).is_absolute() => Ok(Some(ImageRoot {
            store: PathBuf::from(store),
            manifest: manifest.clone(),
            keep,
        })),
        (None, None) => Ok(None),
        _ => Err(invalid_annotation(
            ANNOTATION_IMAGE_STORE,
            format!(
                "an image root needs {ANNOTATION_IMAGE_MANIFEST} and an absolute {ANNOTATION_IMAGE_STORE}"
            ),
        )),
    }
}
