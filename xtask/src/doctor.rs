//! `doctor`: can this machine run each step? One screen, with the exact fix
//! for every missing piece.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};
use caixa::Namespace;

/// How much a missing piece matters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    /// Needed only by later steps or optional tools.
    Warn,
    /// Steps 1–7 cannot run.
    Fail,
}

struct Check {
    level: Level,
    what: String,
    detail: String,
    fix: String,
}

fn check(level: Level, what: &str, detail: impl Into<String>, fix: &str) -> Check {
    Check {
        level,
        what: what.to_string(),
        detail: detail.into(),
        fix: fix.to_string(),
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn checks() -> Vec<Check> {
    let mut out = Vec::new();

    let uid = read("/proc/self/status")
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    out.push(match (uid, on_path("sudo")) {
        (true, _) => check(Level::Ok, "privileges", "running as root", ""),
        (false, true) => check(
            Level::Ok,
            "privileges",
            "sudo is installed: cargo run/test use it (.cargo/as-root)",
            "",
        ),
        (false, false) => check(
            Level::Fail,
            "privileges",
            "not root and no sudo",
            "run as root, or install sudo and add yourself to the sudo group",
        ),
    });

    let release = read("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    out.push(if version >= (5, 3) {
        check(Level::Ok, "kernel", format!("Linux {release}"), "")
    } else {
        check(
            Level::Fail,
            "kernel",
            format!("Linux {release} has no clone3(2)"),
            "use Linux 5.3 or newer (e.g. a current Debian or Ubuntu)",
        )
    });

    for ns in Namespace::ALL {
        let present = Path::new("/proc/self/ns").join(ns.proc_name()).exists();
        out.push(if present {
            check(Level::Ok, &format!("{ns} namespace"), "available", "")
        } else {
            check(
                Level::Fail,
                &format!("{ns} namespace"),
                format!("/proc/self/ns/{} missing", ns.proc_name()),
                &format!("use a kernel built with {}", ns.kernel_option()),
            )
        });
    }

    let max_userns = read("/proc/sys/user/max_user_namespaces").and_then(|s| s.parse::<u64>().ok());
    let debian_knob = read("/proc/sys/kernel/unprivileged_userns_clone");
    let apparmor = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    out.push(if max_userns == Some(0) {
        check(
            Level::Warn,
            "unprivileged user namespaces",
            "user.max_user_namespaces = 0",
            "sudo sysctl -w user.max_user_namespaces=15000 (rootless containers, not built yet)",
        )
    } else if debian_knob.as_deref() == Some("0") {
        check(
            Level::Warn,
            "unprivileged user namespaces",
            "kernel.unprivileged_userns_clone = 0",
            "sudo sysctl -w kernel.unprivileged_userns_clone=1 (rootless containers, not built yet)",
        )
    } else if apparmor.as_deref() == Some("1") {
        check(
            Level::Warn,
            "unprivileged user namespaces",
            "restricted by AppArmor (Ubuntu 23.10+)",
            "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (rootless containers, not built yet)",
        )
    } else {
        check(Level::Ok, "unprivileged user namespaces", "allowed", "")
    });

    let status = read("/proc/self/status").unwrap_or_default();
    out.push(if status.lines().any(|l| l.starts_with("Seccomp:")) {
        check(Level::Ok, "seccomp", "available", "")
    } else {
        check(
            Level::Fail,
            "seccomp",
            "no Seccomp line in /proc/self/status",
            "use a kernel built with CONFIG_SECCOMP_FILTER (step 6)",
        )
    });

    // The same detection the runtime uses (src/cgroup/mod.rs).
    out.push(match caixa::cgroup::detect() {
        Ok(caixa::cgroup::Hierarchy::V2(root)) => check(
            Level::Ok,
            "cgroups",
            format!("cgroup v2 at {}", root.display()),
            "",
        ),
        Ok(caixa::cgroup::Hierarchy::V1(mounts)) => {
            let names: Vec<&str> = mounts.iter().map(|(c, _)| c.as_str()).collect();
            let hybrid = read("/proc/self/mounts")
                .unwrap_or_default()
                .contains(" cgroup2 ");
            let kind = if hybrid {
                "hybrid: caixa uses the v1 controllers"
            } else {
                "cgroup v1"
            };
            check(
                Level::Ok,
                "cgroups",
                format!("{kind} ({})", names.join(", ")),
                "",
            )
        }
        Err(e) => check(
            Level::Fail,
            "cgroups",
            e.to_string(),
            "mount cgroup2 on /sys/fs/cgroup (step 7)",
        ),
    });

    let filesystems = read("/proc/filesystems").unwrap_or_default();
    out.push(if filesystems.contains("overlay") {
        check(Level::Ok, "overlayfs", "available", "")
    } else {
        check(
            Level::Warn,
            "overlayfs",
            "not in /proc/filesystems",
            "sudo modprobe overlay (step 9)",
        )
    });

    out.push(match Command::new("iptables").arg("--version").output() {
        Ok(o) if o.status.success() => check(
            Level::Ok,
            "iptables",
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
            "",
        ),
        _ => check(
            Level::Warn,
            "iptables",
            "not installed",
            "sudo apt-get install iptables (step 8)",
        ),
    });

    out.push(match caixa::rootfs::busybox::find_static_busybox() {
        Ok(path) => check(
            Level::Ok,
            "busybox-static",
            format!("{} (static)", path.display()),
            "",
        ),
        Err(e) => check(
            Level::Fail,
            "busybox-static",
            e.to_string(),
            "sudo apt-get install busybox-static",
        ),
    });
    out.push(if on_path("ip") {
        check(Level::Ok, "iproute2", "ip found", "")
    } else {
        check(
            Level::Fail,
            "iproute2",
            "ip not found (the step 2 tests use it)",
            "sudo apt-get install iproute2",
        )
    });
    let static_libc = [
        "/usr/lib/x86_64-linux-gnu/libc.a",
        "/usr/lib/aarch64-linux-gnu/libc.a",
        "/usr/lib/libc.a",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    out.push(if static_libc {
        check(
            Level::Ok,
            "libc6-dev",
            "static glibc found (the step 6-7 test probe)",
            "",
        )
    } else {
        check(
            Level::Fail,
            "libc6-dev",
            "no static glibc: the tests' probe cannot be built",
            "sudo apt-get install libc6-dev",
        )
    });
    let not_root = caixa::rootfs::dev::host_nodes_not_owned_by_root(Path::new("/dev"));
    out.push(if not_root.is_empty() {
        check(Level::Ok, "/dev nodes", "owned by root", "")
    } else {
        let list: Vec<String> = not_root
            .iter()
            .map(|(path, uid, gid)| format!("{} is {uid}:{gid}", path.display()))
            .collect();
        check(
            Level::Warn,
            "/dev nodes",
            format!(
                "{}: caixa binds them into containers, whose root could then change them",
                list.join(", ")
            ),
            "chown 0:0 /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty \
             (a peer runtime given /dev/null as stdio may have chowned it)",
        )
    });
    out.push(if on_path("mdbook") {
        check(Level::Ok, "mdbook", "found", "")
    } else {
        check(
            Level::Warn,
            "mdbook",
            "not found (the book)",
            "cargo install mdbook --locked --version 0.5.4",
        )
    });
    for (tool, package, why) in [
        ("runc", "runc", "benchmark peer"),
        ("crun", "crun", "benchmark peer"),
        ("skopeo", "skopeo", "step 10 peer"),
        ("umoci", "umoci", "step 9 peer"),
        ("docker-registry", "docker-registry", "step 10/11 registry"),
    ] {
        out.push(if on_path(tool) {
            check(Level::Ok, tool, "found", "")
        } else {
            check(
                Level::Warn,
                tool,
                format!("not found ({why})"),
                &format!("sudo apt-get install {package}"),
            )
        });
    }
    out
}

/// Prints the checks; fails when steps 1–7 cannot run here.
pub fn run() -> Result<()> {
    let all = checks();
    let width = all.iter().map(|c| c.what.len()).max().unwrap_or(0);
    for c in &all {
        let tag = match c.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        let fix = if c.fix.is_empty() {
            String::new()
        } else {
            format!("  -> {}", c.fix)
        };
        println!("{tag}  {:<width$}  {}{fix}", c.what, c.detail);
    }
    let failed = all.iter().filter(|c| c.level == Level::Fail).count();
    if failed > 0 {
        bail!("{failed} checks failed: steps 1-7 cannot run here until they are fixed");
    }
    let warned = all.iter().filter(|c| c.level == Level::Warn).count();
    if warned == 0 {
        println!("\nevery check passed: this machine can run every step");
    } else {
        println!(
            "\nthis machine can run steps 1-7; the {warned} `warn` lines above name what \
             later steps or the comparisons with other runtimes still need"
        );
    }
    Ok(())
}
