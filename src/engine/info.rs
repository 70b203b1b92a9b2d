//! `docker info`: the engine and the host it runs on, as the daemon sees
//! them now.
//!
//! Every number is read when asked, from the engine's records and the
//! kernel's files, never remembered: containers from their state files
//! (which the shims write), the cgroup version from the mount table
//! ([`crate::cgroup::detect`]: a hybrid host, v1 controllers beside an
//! empty cgroup2 mount, is version 1, because v1 is what caixa uses there),
//! memory from `/proc/meminfo`, the kernel from `uname(2)`.

use std::path::Path;

use serde_json::{Value, json};

use super::EngineError;
use super::state::{Containers, Status};
use crate::image::store::Store;

// ANCHOR: info
/// `GET /info`: the fields the Docker CLI prints.
pub fn info(root: &Path) -> Result<Value, EngineError> {
    let containers = Containers::open(root)?.list()?;
    let count = |status: Status| {
        containers
            .iter()
            .filter(|(_, s)| s.status == status)
            .count()
    };
    let mut images: Vec<String> = Store::open(root)?
        .images()?
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    images.sort();
    images.dedup();
    let cgroup_version = match crate::cgroup::detect() {
        Ok(crate::cgroup::Hierarchy::V2(_)) => "2",
        _ => "1",
    };
    let uname = nix::sys::utsname::uname().ok();
    let text = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uname
            .as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into());
    let arch = crate::registry::pull::this_platform()
        .trim_start_matches("linux/")
        .to_string();
    let mut engine = json!({
        "ID": engine_id(root)?,
        "Containers": containers.len(),
        "ContainersRunning": count(Status::Running),
        "ContainersPaused": 0,
        "ContainersStopped": containers.len() - count(Status::Running),
        "Images": images.len(),
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "overlayfs"], ["Supports d_type", "true"]],
        "Plugins": { "Volume": ["local"], "Network": ["bridge"], "Log": ["json-file"] },
        "MemoryLimit": true, "CpuCfsPeriod": true, "CpuCfsQuota": true,
        "CPUShares": true, "CPUSet": true, "PidsLimit": true, "IPv4Forwarding": true,
        // What the kernel says, so `docker info`'s warnings are this host's.
        "SwapLimit": swap_limit(cgroup_version),
        "BridgeNfIptables": sysctl_on("net/bridge/bridge-nf-call-iptables"),
        "BridgeNfIp6tables": sysctl_on("net/bridge/bridge-nf-call-ip6tables"),
        "Debug": false, "NFd": 0, "NGoroutines": 0, "OomKillDisable": false,
        "SystemTime": humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        "LoggingDriver": "json-file",
    });
    // Two halves: one `json!` this long passes the macro's recursion limit.
    let host = json!({
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version,
        "KernelVersion": text(|u| u.release()),
        "OperatingSystem": os,
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": text(|u| u.machine()),
        "NCPU": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "MemTotal": mem_total(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": { "IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": [] },
        "DockerRootDir": root,
        "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
        "Name": text(|u| u.nodename()),
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": { "caixa": { "path": "caixa (in-process, run by each container's shim)" } },
        "DefaultRuntime": "caixa",
        "Swarm": { "LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "",
                   "ControlAvailable": false, "Error": "", "RemoteManagers": null },
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": { "ID": "", "Expected": "" },
        "RuncCommit": { "ID": "", "Expected": "" },
        "InitCommit": { "ID": "", "Expected": "" },
        "SecurityOptions": ["name=seccomp,profile=default", "name=userns"],
        "Warnings": [],
        "Platform": arch,
    });
    if let (Some(all), Value::Object(more)) = (engine.as_object_mut(), host) {
        all.extend(more);
    }
    Ok(engine)
}
// ANCHOR_END: info

/// The engine's own id: made once, kept in `ROOT/engine/id`, so two
/// daemons (or one, restarted) can be told apart or recognised.
fn engine_id(root: &Path) -> Result<String, EngineError> {
    let path = root.join("engine/id");
    if let Ok(id) = super::state::read_json::<String>(&path) {
        return Ok(id);
    }
    let id = crate::ids::random_hex(32);
    super::state::write_json(&path, &id)?;
    // Of two first calls, the rename that came last wins: read it back.
    Ok(super::state::read_json::<String>(&path).unwrap_or(id))
}

/// The machine's memory in bytes (`MemTotal`, given in kB).
fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Whether a sysctl (under `/proc/sys`) is `1`.
fn sysctl_on(name: &str) -> bool {
    std::fs::read_to_string(Path::new("/proc/sys").join(name)).is_ok_and(|v| v.trim() == "1")
}

/// Whether memory+swap can be limited here (`--memory-swap`): v1 needs
/// the kernel's swap accounting (`memory.memsw.*`); v2 has `memory.swap.max`.
fn swap_limit(cgroup_version: &str) -> bool {
    cgroup_version == "2" || Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
}
