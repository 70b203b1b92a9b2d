//! caixa's [`Spec`] written as an OCI runtime spec: what the engine puts in
//! a bundle.
//!
//! oci-spec's `Default` for `Spec`, `Process`, `Linux`, `Root` and
//! `LinuxCapabilities` is a ready-made container (youki's: a host name, a
//! terminal, rlimits, default mounts), not an empty object, so every field
//! of those is set here explicitly.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{
    Linux, LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, Process,
    Root, Spec as OciSpec,
};

use super::mounts::{mounts_to_oci, paths_to_oci};
use super::network::network_to_oci;
use super::process::{capabilities_to_oci, user_to_oci};
use super::resources::resources_to_oci;
use super::{
    ANNOTATION_IMAGE_KEEP, ANNOTATION_IMAGE_MANIFEST, ANNOTATION_IMAGE_STORE, ANNOTATION_INIT,
    BundleError, OCI_VERSION, invalid,
};
use crate::idmap::IdMap;
use crate::ns::Namespace;
use crate::seccomp::Confinement;
use crate::spec::Spec;

/// The OCI runtime spec for `spec`; `spec.verbose` does not travel.
pub fn to_oci(spec: &Spec) -> Result<OciSpec, BundleError> {
    // What only a bundle read by step 12 carries: the engine never sets
    // it, and a bundle must not silently lose it.
    for (field, set) in [
        ("process.user.umask", spec.process.umask.is_some()),
        (
            "process.user.additionalGids",
            !spec.process.additional_gids.is_empty(),
        ),
        ("linux.sysctl", !spec.sysctl.is_empty()),
        ("mounts", spec.mount_table.is_some()),
        (
            "linux.namespaces",
            spec.cgroup_ns || !spec.entered.is_empty(),
        ),
        ("hooks", spec.hooks.is_some()),
    ] {
        if set {
            return Err(invalid(
                field,
                "caixa writes bundles of its own defaults only; this came from a bundle it read",
            ));
        }
    }
    let mut annotations = HashMap::new();

    let mut process = Process::default();
    process
        .set_terminal(spec.terminal.then_some(true))
        .set_console_size(None)
        .set_user(user_to_oci(spec.process.user.as_deref(), &mut annotations))
        .set_args(Some(spec.process.args.clone()))
        .set_command_line(None)
        .set_env(Some(spec.process.env.clone()))
        .set_cwd(spec.process.cwd.clone())
        .set_capabilities(capabilities_to_oci(spec.capabilities.as_deref())?)
        .set_rlimits(rlimits_to_oci(&spec.process.rlimits)?)
        .set_no_new_privileges(Some(spec.no_new_privs))
        .set_apparmor_profile(None)
        .set_oom_score_adj(None)
        .set_selinux_label(None)
        .set_io_priority(None)
        .set_scheduler(None)
        .set_exec_cpu_affinity(None);

    // An overlay over a shared tree is made by caixa's parent, not by an
    // OCI runtime: a bundle would write the shared tree in place.
    if spec.root_overlay {
        return Err(invalid(
            "root",
            "the default rootfs's per-container overlay has no OCI form: pass --rootfs DIR or an image",
        ));
    }
    let root_path = match (&spec.image, &spec.root) {
        (Some(image), _) => {
            annotations.insert(ANNOTATION_IMAGE_MANIFEST.into(), image.manifest.clone());
            annotations.insert(
                ANNOTATION_IMAGE_STORE.into(),
                utf8("image store", &image.store)?,
            );
            annotations.insert(ANNOTATION_IMAGE_KEEP.into(), image.keep.to_string());
            Some(image.container_dir(&spec.id).join("merged"))
        }
        // OCI reads a relative root.path against the bundle, caixa's
        // command line against the working directory: make it absolute.
        (None, Some(root)) => Some(
            std::path::absolute(root)
                .map_err(|e| invalid("root.path", format!("{}: {e}", root.display())))?,
        ),
        (None, None) => None,
    };
    let root = root_path.map(|path| {
        let mut root = Root::default();
        root.set_path(path)
            .set_readonly(spec.readonly_root.then_some(true));
        root
    });
    let has_root = root.is_some();
    if !has_root && !spec.mounts.is_empty() {
        return Err(invalid(
            "mounts",
            "caixa binds host files only into a container with a root of its own",
        ));
    }
    if !has_root && (!spec.tmpfs.is_empty() || spec.readonly_root) {
        return Err(invalid(
            "mounts",
            "--tmpfs and --read-only need a container with a root of its own",
        ));
    }
    let mounts = mounts_to_oci(has_root, &spec.mounts, &spec.tmpfs);
    if spec.init {
        annotations.insert(ANNOTATION_INIT.into(), "true".into());
    }
    let (masked, readonly) = paths_to_oci(has_root);

    if let Some(net) = &spec.network {
        network_to_oci(net, &mut annotations)?;
    }
    if let Some(net) = &spec.user_network {
        super::network::user_network_to_oci(net, &mut annotations);
    }
    super::network::joined_to_oci(&spec.joined_networks, &mut annotations);

    let mut linux = Linux::default();
    linux
        .set_net_devices(None)
        .set_uid_mappings(id_mappings(&spec.uid_map)?)
        .set_gid_mappings(id_mappings(&spec.gid_map)?)
        .set_sysctl(None)
        .set_resources(spec.limits.as_ref().map(resources_to_oci).transpose()?)
        .set_cgroups_path(
            spec.limits
                .as_ref()
                .and_then(|l| l.group.as_ref())
                .map(|g| g.to_cgroups_path()),
        )
        .set_namespaces(Some(
            spec.namespaces.iter().map(|ns| namespace(*ns)).collect(),
        ))
        .set_devices(None)
        .set_seccomp(match &spec.seccomp {
            Confinement::Unconfined => None,
            Confinement::Builtin => Some(crate::seccomp::oci_profile(spec.capabilities.as_deref())),
            Confinement::Oci(profile) => Some((**profile).clone()),
        })
        .set_rootfs_propagation(None)
        .set_masked_paths(non_empty(masked))
        .set_readonly_paths(non_empty(readonly))
        .set_mount_label(None)
        .set_intel_rdt(None)
        .set_memory_policy(None)
        .set_personality(None)
        .set_time_offsets(None);

    let mut oci = OciSpec::default();
    oci.set_version(OCI_VERSION.into())
        .set_root(root)
        .set_mounts(non_empty(mounts))
        .set_process(Some(process))
        .set_hostname(spec.hostname.clone())
        .set_domainname(None)
        .set_hooks(None)
        .set_annotations((!annotations.is_empty()).then_some(annotations))
        .set_linux(Some(linux))
        .set_solaris(None)
        .set_windows(None)
        .set_vm(None)
        .set_zos(None)
        .set_uid_mappings(None)
        .set_gid_mappings(None);
    Ok(oci)
}

/// `process.rlimits`: each limit with its OCI type.
fn rlimits_to_oci(
    limits: &[crate::rlimit::Rlimit],
) -> Result<Option<Vec<oci_spec::runtime::PosixRlimit>>, BundleError> {
    let list = limits
        .iter()
        .map(|l| {
            let typ = crate::rlimit::type_of(l.resource).ok_or_else(|| {
                invalid(
                    "process.rlimits",
                    format!("{:?} has no OCI name", l.resource),
                )
            })?;
            oci_spec::runtime::PosixRlimitBuilder::default()
                .typ(typ)
                .soft(l.soft)
                .hard(l.hard)
                .build()
                .map_err(|e| invalid("process.rlimits", e.to_string()))
        })
        .collect::<Result<Vec<_>, BundleError>>()?;
    Ok(non_empty(list))
}

fn non_empty<T>(list: Vec<T>) -> Option<Vec<T>> {
    (!list.is_empty()).then_some(list)
}

pub(super) fn utf8(what: &str, path: &Path) -> Result<String, BundleError> {
    path.to_str().map(String::from).ok_or_else(|| {
        invalid(
            "annotations",
            format!("the {what} {} is not UTF-8", path.display()),
        )
    })
}

/// The OCI namespace type of one of caixa's namespaces.
pub(super) fn namespace_type(ns: Namespace) -> LinuxNamespaceType {
    match ns {
        Namespace::Pid => LinuxNamespaceType::Pid,
        Namespace::Net => LinuxNamespaceType::Network,
        Namespace::Ipc => LinuxNamespaceType::Ipc,
        Namespace::Mount => LinuxNamespaceType::Mount,
        Namespace::Uts => LinuxNamespaceType::Uts,
        Namespace::User => LinuxNamespaceType::User,
    }
}

fn namespace(ns: Namespace) -> LinuxNamespace {
    let mut oci = LinuxNamespace::default();
    oci.set_typ(namespace_type(ns)).set_path(None);
    oci
}

fn id_mappings(maps: &[IdMap]) -> Result<Option<Vec<LinuxIdMapping>>, BundleError> {
    let list = maps
        .iter()
        .map(|m| {
            LinuxIdMappingBuilder::default()
                .container_id(m.container)
                .host_id(m.host)
                .size(m.count)
                .build()
                .map_err(|e| invalid("linux.uidMappings", e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(non_empty(list))
}
