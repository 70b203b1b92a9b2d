//! An OCI runtime spec read back into caixa's [`Spec`]: what the shim runs.
//!
//! Each object is converted field by field; whatever is set and not
//! converted is refused by [`refuse_unconverted`], so nothing is dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Linux, LinuxIdMapping, LinuxNamespace, LinuxNamespaceType, LinuxSeccomp, Root,
};

use super::mounts::{check_paths, mounts_from_oci, table_from_oci};
use super::network::network_from_oci;
use super::process::{capabilities_from_oci, user_from_oci};
use super::resources::limits_from_oci;
use super::to_oci::namespace_type;
use super::{
    ANNOTATION_IMAGE_KEEP, ANNOTATION_IMAGE_MANIFEST, ANNOTATION_IMAGE_STORE, ANNOTATION_INIT,
    ANNOTATIONS, BundleError, check_version, invalid, invalid_annotation, reason, refuse,
    refuse_unconverted,
};
use crate::idmap::IdMap;
use crate::image::overlay::ImageRoot;
use crate::ns::Namespace;
use crate::seccomp::Confinement;
use crate::seccomp::compile::CompileError;
use crate::spec::{Process, Spec};

/// The top-level fields caixa converts (the rest are refused when set).
const TOP_LEVEL: [&str; 8] = [
    "ociVersion",
    "hooks",
    "root",
    "mounts",
    "process",
    "hostname",
    "annotations",
    "linux",
];
/// The fields of `process` caixa converts.
const PROCESS: [&str; 8] = [
    "terminal",
    "rlimits",
    "user",
    "args",
    "env",
    "cwd",
    "capabilities",
    "noNewPrivileges",
];
/// The fields of `linux` caixa converts.
const LINUX: [&str; 9] = [
    "cgroupsPath",
    "uidMappings",
    "sysctl",
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
    let oci_mounts = config.mounts().as_deref().unwrap_or_default();
    let masked = linux.masked_paths().as_deref().unwrap_or_default();
    let readonly = linux.readonly_paths().as_deref().unwrap_or_default();
    // caixa's own defaults (what the engine writes), or the bundle's own
    // table (podman's, containerd's: step 12).
    let (mounts, tmpfs, mount_table) = match (
        mounts_from_oci(oci_mounts, has_root),
        check_paths(masked, readonly, has_root),
    ) {
        (Ok((binds, tmpfs)), Ok(())) => (binds, tmpfs, None),
        _ if has_root => (
            Vec::new(),
            Vec::new(),
            Some(table_from_oci(oci_mounts, masked, readonly)?),
        ),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let capabilities = capabilities_from_oci(process.capabilities().as_ref())?;
    let seccomp = seccomp_from_oci(linux.seccomp().as_ref(), capabilities.as_deref())?;

    let (namespaces, cgroup_ns, entered) =
        namespaces_from_oci(linux.namespaces().as_deref().unwrap_or_default())?;
    let sysctl: Vec<(String, String)> = linux
        .sysctl()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let network = network_from_oci(&annotations)?;
    let joined_networks = super::network::joined_from_oci(&annotations, network.as_ref())?;
    let spec = Spec {
        stdio: None,
        terminal: process.terminal().unwrap_or(false),
        id: id.to_string(),
        namespaces,
        process: Process {
            args,
            env: process.env().clone().unwrap_or_default(),
            cwd: process.cwd().clone(),
            user: user_from_oci(process.user(), &annotations)?,
            umask: process.user().umask(),
            additional_gids: process.user().additional_gids().clone().unwrap_or_default(),
            rlimits: rlimits_from_oci(process.rlimits().as_deref().unwrap_or_default())?,
        },
        root,
        root_overlay: false,
        root_overlay_in_child: None,
        hostname: config.hostname().clone(),
        uid_map: id_maps(linux.uid_mappings()),
        gid_map: id_maps(linux.gid_mappings()),
        capabilities,
        no_new_privs: process.no_new_privileges().unwrap_or(false),
        seccomp,
        limits: limits_from_oci(linux, id)?,
        network,
        joined_networks,
        user_network: super::network::user_network_from_oci(&annotations)?,
        mounts,
        image,
        verbose: false,
        sysctl,
        mount_table,
        cgroup_ns,
        entered,
        hooks: hooks_from_oci(config.hooks().as_ref(), bundle, &annotations)?,
        tmpfs,
        readonly_root: config.root().as_ref().and_then(|r| r.readonly()) == Some(true),
        init: flag_annotation(&annotations, ANNOTATION_INIT)?,
        sweep_leftovers: true,
    };
    for (key, _) in &spec.sysctl {
        if let Some(why) = crate::sysctl::refusal(key, &spec.own_namespaces()) {
            return Err(BundleError::Unsupported {
                field: format!("linux.sysctl.{key}"),
                why,
            });
        }
    }
    Ok(spec)
}

/// `hooks`: every point of the runtime spec, each path absolute, each
/// timeout above zero. `prestart` (deprecated) runs first, with
/// createRuntime.
fn hooks_from_oci(
    hooks: Option<&oci_spec::runtime::Hooks>,
    bundle: &Path,
    annotations: &HashMap<String, String>,
) -> Result<Option<crate::hooks::Hooks>, BundleError> {
    let Some(hooks) = hooks else {
        return Ok(None);
    };
    let convert = |point: &str, list: &Option<Vec<oci_spec::runtime::Hook>>| {
        list.iter()
            .flatten()
            .enumerate()
            .map(|(i, hook)| {
                let field = format!("hooks.{point}[{i}]");
                if !hook.path().is_absolute() {
                    return Err(invalid(
                        &format!("{field}.path"),
                        "a hook's path must be absolute",
                    ));
                }
                let timeout = match hook.timeout() {
                    None => None,
                    Some(seconds) if seconds > 0 => {
                        Some(std::time::Duration::from_secs(seconds as u64))
                    }
                    Some(_) => {
                        return Err(invalid(
                            &format!("{field}.timeout"),
                            "a timeout is a number of seconds above zero",
                        ));
                    }
                };
                Ok(crate::hooks::Hook {
                    path: hook.path().clone(),
                    args: hook.args().clone().unwrap_or_default(),
                    env: hook.env().clone().unwrap_or_default(),
                    timeout,
                })
            })
            .collect::<Result<Vec<_>, BundleError>>()
    };
    let mut create_runtime = convert("prestart", hooks.prestart())?;
    create_runtime.extend(convert("createRuntime", hooks.create_runtime())?);
    Ok(Some(crate::hooks::Hooks {
        create_runtime,
        create_container: convert("createContainer", hooks.create_container())?,
        start_container: convert("startContainer", hooks.start_container())?,
        poststart: convert("poststart", hooks.poststart())?,
        poststop: convert("poststop", hooks.poststop())?,
        bundle: bundle.to_path_buf(),
        annotations: annotations.clone(),
    }))
}

/// `process.rlimits`, each type once.
fn rlimits_from_oci(
    list: &[oci_spec::runtime::PosixRlimit],
) -> Result<Vec<crate::rlimit::Rlimit>, BundleError> {
    let mut limits: Vec<crate::rlimit::Rlimit> = Vec::new();
    for (i, oci) in list.iter().enumerate() {
        let resource = crate::rlimit::resource_of(oci.typ());
        if limits.iter().any(|l| l.resource == resource) {
            return Err(invalid(
                &format!("process.rlimits[{i}]"),
                format!("{:?} is listed twice", oci.typ()),
            ));
        }
        if oci.soft() > oci.hard() {
            return Err(invalid(
                &format!("process.rlimits[{i}]"),
                "soft is above hard: the kernel refuses it",
            ));
        }
        limits.push(crate::rlimit::Rlimit {
            resource,
            soft: oci.soft(),
            hard: oci.hard(),
        });
    }
    Ok(limits)
}
// ANCHOR_END: from_oci

// ANCHOR: seccomp_from_oci
/// caixa's own default profile (for these capabilities: Docker's groups)
/// reads back as the default filter, so a bundle caixa wrote runs the same
/// program; any other profile is compiled now, so a field caixa cannot
/// honour is refused before anything starts.
fn seccomp_from_oci(
    profile: Option<&LinuxSeccomp>,
    kept: Option<&[caps::Capability]>,
) -> Result<Confinement, BundleError> {
    let Some(profile) = profile else {
        return Ok(Confinement::Unconfined);
    };
    if *profile == crate::seccomp::oci_profile(kept) {
        return Ok(Confinement::Builtin);
    }
    match crate::seccomp::compile::compile(profile) {
        Ok(_) => Ok(Confinement::Oci(Box::new(profile.clone()))),
        Err(CompileError::Unsupported { field, why }) => {
            Err(BundleError::Unsupported { field, why })
        }
        Err(CompileError::Invalid { field, why }) => Err(invalid(&field, why)),
    }
}
// ANCHOR_END: seccomp_from_oci

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

/// The namespaces to create, and whether a cgroup namespace is among them
/// (the init makes that one itself, once it is in its cgroup).
/// The namespaces to make, whether a cgroup namespace is among them, and
/// those to enter by path.
type Namespaces = (Vec<Namespace>, bool, Vec<(Namespace, PathBuf)>);

fn namespaces_from_oci(list: &[LinuxNamespace]) -> Result<Namespaces, BundleError> {
    let mut namespaces = Vec::new();
    let mut cgroup_ns = false;
    let mut entered: Vec<(Namespace, PathBuf)> = Vec::new();
    for (i, oci) in list.iter().enumerate() {
        if let Some(path) = oci.path() {
            let field = format!("linux.namespaces[{i}].path");
            let Some(ns) = crate::ns::enter::ENTERABLE
                .into_iter()
                .find(|ns| namespace_type(*ns) == oci.typ())
            else {
                return Err(refuse(&field));
            };
            if !path.is_absolute() {
                return Err(invalid(&field, "give an absolute path"));
            }
            if entered.iter().any(|(kind, _)| *kind == ns) {
                return Err(invalid(
                    &field,
                    format!("the {} namespace is listed twice", ns.proc_name()),
                ));
            }
            entered.push((ns, path.clone()));
            continue;
        }
        if oci.typ() == LinuxNamespaceType::Cgroup {
            if std::mem::replace(&mut cgroup_ns, true) {
                return Err(invalid(
                    &format!("linux.namespaces[{i}]"),
                    "the cgroup namespace is listed twice",
                ));
            }
            continue;
        }
        let Some(ns) = Namespace::ALL
            .into_iter()
            .find(|ns| namespace_type(*ns) == oci.typ())
        else {
            return Err(BundleError::Unsupported {
                field: format!("linux.namespaces[{i}]"),
                why: reason("linux.namespaces.time").to_string(),
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
    if let Some((ns, _)) = entered.iter().find(|(ns, _)| namespaces.contains(ns)) {
        return Err(invalid(
            "linux.namespaces",
            format!(
                "the {} namespace is listed twice (once with a path)",
                ns.proc_name()
            ),
        ));
    }
    Ok((namespaces, cgroup_ns, entered))
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
    refuse_unconverted("root", root, &["path", "readonly"])?;
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
    let keep = flag_annotation(annotations, ANNOTATION_IMAGE_KEEP)?;
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

/// An annotation that is `true` or `false` (absent: false).
fn flag_annotation(annotations: &HashMap<String, String>, key: &str) -> Result<bool, BundleError> {
    match annotations.get(key).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(invalid_annotation(
            key,
            format!("{other:?}: use true or false"),
        )),
    }
}
