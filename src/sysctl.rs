//! Kernel parameters of the container's own namespaces (`linux.sysctl`,
//! step 12): files under `/proc/sys`, written before `/proc/sys` is made
//! read-only.
//!
//! Most of `/proc/sys` is the whole machine's: `vm.swappiness` written in a
//! container would change the host. Only the parameters that belong to a
//! namespace the container has of its own are its to set, so only those
//! are accepted: `net.*` with a network namespace, the System V IPC and
//! POSIX message queue limits with an IPC namespace, the host and domain
//! names with a UTS namespace. That is the list runc and Docker accept too.

use std::path::PathBuf;

use crate::ns::Namespace;

/// The IPC namespace's parameters.
const IPC: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Why a parameter is refused, or `None` when the container may set it:
/// it must belong to one of `namespaces`.
pub fn refusal(key: &str, namespaces: &[Namespace]) -> Option<String> {
    let plain = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        });
    if !plain {
        return Some(format!(
            "{key:?} is not a parameter name (dots between words)"
        ));
    }
    let needs = if key.starts_with("net.") {
        Namespace::Net
    } else if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Namespace::Ipc
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Namespace::Uts
    } else {
        return Some(format!(
            "{key} is the whole machine's, not the container's: only net.*, IPC and UTS parameters belong to a container's namespaces"
        ));
    };
    (!namespaces.contains(&needs)).then(|| {
        format!(
            "{key} belongs to the {} namespace, which this container shares with the host",
            needs.proc_name()
        )
    })
}

/// The file of parameter `key` (`net.ipv4.ip_forward` is
/// `/proc/sys/net/ipv4/ip_forward`).
pub fn path_of(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_containers_own_namespaces_parameters() {
        let all = Namespace::ALL;
        assert_eq!(refusal("net.ipv4.ping_group_range", &all), None);
        assert_eq!(refusal("kernel.shmmax", &all), None);
        assert_eq!(refusal("fs.mqueue.msg_max", &all), None);
        assert!(refusal("vm.swappiness", &all).is_some());
        assert!(refusal("kernel.panic", &all).is_some());
        assert!(refusal("net.ipv4.ip_forward", &[Namespace::Pid]).is_some());
        assert!(refusal("net/ipv4/../../vm/swappiness", &all).is_some());
        assert!(refusal("net..x", &all).is_some());
        assert_eq!(
            path_of("net.ipv4.ip_forward"),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
    }
}
