//! The fields caixa refuses, and the one helper that refuses them.
//!
//! A field is refused when it is set and caixa does not convert it. Set
//! means not null, not false, not an empty string, list or object: those
//! ask for nothing, and configs written by other tools often carry them.

use serde_json::Value;

use super::{BundleError, invalid};

// ANCHOR: refused
/// The fields caixa refuses, and why: the reason [`refuse`] gives for each.
/// A field not listed here and not converted is refused with a generic reason.
#[rustfmt::skip]
pub const REFUSED: &[(&str, &str)] = &[
    ("domainname", "caixa sets only the host name"),
    ("solaris", "caixa runs Linux containers only"),
    ("windows", "caixa runs Linux containers only"),
    ("vm", "caixa runs Linux containers only"),
    ("zos", "caixa runs Linux containers only"),
    ("uidMappings", "idmapped mounts are not supported; linux.uidMappings maps the user namespace"),
    ("gidMappings", "idmapped mounts are not supported; linux.gidMappings maps the user namespace"),
    ("process.consoleSize", "caixa's terminal starts at the kernel's default size"),
    ("process.commandLine", "commandLine is Windows'; use process.args"),
    ("process.apparmorProfile", "caixa applies no AppArmor profile"),
    ("process.selinuxLabel", "caixa applies no SELinux label"),
    ("process.oomScoreAdj", "caixa leaves the OOM score the container inherits"),
    ("process.ioPriority", "caixa leaves the I/O priority the container inherits"),
    ("process.scheduler", "caixa leaves the scheduling policy the container inherits"),
    ("process.execCPUAffinity", "use linux.resources.cpu.cpus to choose CPUs"),
    ("process.user.username", "username is Windows'; put a Linux user name in the org.caixa.process.user annotation"),
    ("process.capabilities", "caixa keeps one set: bounding = effective = permitted, inheritable and ambient empty (see src/caps.rs)"),
    ("linux.namespaces.path", "caixa enters a network, IPC or UTS namespace by path; a user, mount, PID or cgroup namespace by path would change the runtime's own process (see src/ns/enter.rs)"),
    ("linux.namespaces.time", "caixa creates no time namespace yet"),
    ("linux.netDevices", "caixa wires its own veth: use the org.caixa.network.* annotations"),
    ("linux.devices", "caixa creates the default devices itself (null, zero, full, random, urandom, tty)"),
    ("linux.seccomp", "caixa compiles a profile for its own architecture only (others are killed) and refuses SCMP_ACT_NOTIFY, errnoRet on actions other than ERRNO and TRACE, one argument compared twice in an entry, and filters past 4096 instructions (see src/seccomp/compile.rs)"),
    ("linux.seccomp.listenerPath", "caixa runs no seccomp agent: remove SCMP_ACT_NOTIFY and listenerPath"),
    ("linux.rootfsPropagation", "caixa makes / a recursive slave of the host's"),
    ("linux.mountLabel", "caixa applies no SELinux label"),
    ("linux.intelRdt", "caixa does not drive Intel RDT"),
    ("linux.memoryPolicy", "caixa sets no NUMA memory policy"),
    ("linux.personality", "caixa runs the host's personality"),
    ("linux.timeOffsets", "caixa creates no time namespace yet"),
    ("linux.resources.hugepageLimits", "caixa sets no hugetlb limit"),
    ("linux.resources.network", "caixa sets no net_cls/net_prio class; it shapes traffic with tc: use org.caixa.network.bandwidth"),
    ("linux.resources.rdma", "caixa sets no RDMA limit"),
    ("linux.resources.unified", "caixa reads only cpu.weight from unified"),
    ("linux.resources.memory.reservation", "caixa sets only a hard limit and swap"),
    ("linux.resources.memory.kernel", "the kernel has deprecated kernel memory limits"),
    ("linux.resources.memory.kernelTCP", "the kernel has deprecated kernel memory limits"),
    ("linux.resources.memory.swappiness", "caixa sets only a hard limit and swap"),
    ("linux.resources.memory.disableOOMKiller", "caixa keeps the OOM killer: it reports OOMKilled"),
    ("linux.resources.memory.useHierarchy", "caixa sets only a hard limit and swap"),
    ("linux.resources.memory.checkBeforeUpdate", "caixa does not update running containers"),
    ("linux.resources.cpu.idle", "caixa sets quota, shares or weight, and CPUs"),
    ("linux.resources.cpu.burst", "caixa sets quota, shares or weight, and CPUs"),
    ("linux.resources.cpu.realtimeRuntime", "caixa gives containers no real-time time"),
    ("linux.resources.cpu.realtimePeriod", "caixa gives containers no real-time time"),
    ("linux.resources.cpu.mems", "caixa chooses CPUs, not memory nodes"),
    ("linux.resources.cpu.period", "caixa's CFS period is 100000 µs: express the limit as a quota of it"),
    ("linux.resources.blockIO.leafWeight", "use blockIO.weight"),
    ("linux.resources.blockIO.weightDevice", "use blockIO.weight, or a throttle per device"),
];
// ANCHOR_END: refused

// ANCHOR: refuse
/// The error for a field caixa does not implement, named by its JSON path
/// (`linux.namespaces[2].path`), with its reason from [`REFUSED`].
pub fn refuse(field: &str) -> BundleError {
    BundleError::Unsupported {
        field: field.to_string(),
        why: reason(field).to_string(),
    }
}

/// The reason [`REFUSED`] gives for `field` (list indexes left out), or for
/// the nearest object holding it (`linux.namespaces[3].path` is refused as
/// `linux.namespaces.path`, `process.capabilities.ambient` as
/// `process.capabilities`).
pub(crate) fn reason(field: &str) -> &'static str {
    let mut key: String = field
        .split('[')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part
            } else {
                part.split_once(']').map_or("", |(_, rest)| rest)
            }
        })
        .collect();
    loop {
        if let Some((_, why)) = REFUSED.iter().find(|(f, _)| *f == key) {
            return why;
        }
        match key.rsplit_once('.') {
            Some((parent, _)) => key.truncate(parent.len()),
            None => return "caixa does not implement it yet; remove it",
        }
    }
}

/// Refuses every field of `object` (the OCI object found at `path`) that is
/// set and is not one of `converted`. Working on the object's JSON form means
/// a field a later oci-spec adds is refused too, never dropped.
pub(crate) fn refuse_unconverted<T: serde::Serialize>(
    path: &str,
    object: &T,
    converted: &[&str],
) -> Result<(), BundleError> {
    let Ok(Value::Object(fields)) = serde_json::to_value(object) else {
        return Err(invalid(path, "cannot be represented as JSON"));
    };
    match fields
        .iter()
        .find(|(key, value)| !converted.contains(&key.as_str()) && !is_unset(value))
    {
        Some((key, _)) if path.is_empty() => Err(refuse(key)),
        Some((key, _)) => Err(refuse(&format!("{path}.{key}"))),
        None => Ok(()),
    }
}
// ANCHOR_END: refuse

/// Whether a JSON value asks for nothing: absent, empty or false.
fn is_unset(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) | Value::Bool(true) => false,
    }
}
