//! `features` and `spec`: what the runtime can do, and a config to start from.
//!
//! `features` (runtime-spec `features.md`) lets an orchestrator ask before
//! it writes a `config.json`: which namespaces, capabilities, mount options,
//! cgroup versions and seccomp actions this runtime honours. It must say
//! only what [`crate::bundle::from_oci`] really converts, so this file lists
//! caixa's own tables rather than copying them.

use serde_json::{Value, json};

use crate::bundle::BundleError;
use crate::ns::Namespace;
use crate::spec::Spec;

/// The `features` document.
pub fn features() -> Value {
    let mut namespaces: Vec<&str> = Namespace::ALL
        .iter()
        .map(|ns| match ns {
            Namespace::Net => "network",
            Namespace::Mount => "mount",
            other => other.proc_name(),
        })
        .collect();
    // Made by the init itself, once in its group (Spec::cgroup_ns).
    namespaces.push("cgroup");
    let mut capabilities: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    capabilities.sort();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        // Hooks are refused for now (see crate::bundle::REFUSED).
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["bind", "rbind", "ro", "rw", "private", "rprivate",
                         "nosuid", "noexec", "nodev", "strictatime"],
        "linux": {
            "namespaces": namespaces,
            "capabilities": capabilities,
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false },
            "seccomp": { "enabled": true },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
        },
        "annotations": {
            "org.caixa.runtime.version": env!("CARGO_PKG_VERSION"),
        },
    })
}

/// The `config.json` that `spec` writes: a shell in a root of its own
/// (`rootfs` beside the file), isolated as `docker run` would, with a
/// terminal — runc's example, in caixa's defaults.
pub fn example_config() -> Result<oci_spec::runtime::Spec, BundleError> {
    let mut spec = Spec::new(vec!["sh".into()]);
    spec.id = "example".into();
    spec.namespaces = vec![
        Namespace::Pid,
        Namespace::Net,
        Namespace::Ipc,
        Namespace::Uts,
        Namespace::Mount,
    ];
    spec.root = Some("rootfs".into());
    spec.hostname = Some("caixa".into());
    spec.terminal = true;
    spec.capabilities = Some(crate::caps::DEFAULT_CAPABILITIES.to_vec());
    spec.no_new_privs = true;
    spec.seccomp = crate::seccomp::Confinement::Builtin;
    crate::bundle::to_oci(&spec)
}
