//! `doctor`: can this machine run each step? One screen, with the exact fix
//! for every missing piece.
//!
//! Each missing piece names the first step that needs it, so the last line
//! can say which steps run here ("steps 1-7") from the checks themselves;
//! the last step is read from the code ([`Course`]), never typed here.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};
use caixa::Namespace;

use crate::course::Course;

/// How much a missing piece matters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    /// Needed by no step: the book, the benchmarks, the VM lane.
    Warn,
    /// This step, and every later one, cannot run (a later step runs the
    /// code of the earlier ones).
    Fail(u32),
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
            Level::Fail(1),
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
            Level::Fail(1),
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
                Level::Fail(first_step_of(ns)),
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
            "sudo sysctl -w user.max_user_namespaces=15000 (rootless steps 1-6)",
        )
    } else if debian_knob.as_deref() == Some("0") {
        check(
            Level::Warn,
            "unprivileged user namespaces",
            "kernel.unprivileged_userns_clone = 0",
            "sudo sysctl -w kernel.unprivileged_userns_clone=1 (rootless steps 1-6)",
        )
    } else if apparmor.as_deref() == Some("1") {
        check(
            Level::Warn,
            "unprivileged user namespaces",
            "restricted by AppArmor (Ubuntu 23.10+)",
            "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (rootless steps 1-6)",
        )
    } else {
        check(Level::Ok, "unprivileged user namespaces", "allowed", "")
    });

    let status = read("/proc/self/status").unwrap_or_default();
    out.push(if status.lines().any(|l| l.starts_with("Seccomp:")) {
        check(Level::Ok, "seccomp", "available", "")
    } else {
        check(
            Level::Fail(6),
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
        Ok(caixa::cgroup::Hierarchy::V1(trees)) => {
            let names: Vec<&str> = trees.iter().map(|t| t.controller.as_str()).collect();
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
            Level::Fail(7),
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
            Level::Fail(9),
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
            Level::Fail(8),
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
            Level::Fail(1),
            "busybox-static",
            e.to_string(),
            "sudo apt-get install busybox-static",
        ),
    });
    out.push(if on_path("ip") {
        check(Level::Ok, "iproute2", "ip found", "")
    } else {
        check(
            Level::Fail(2),
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
            Level::Fail(6),
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
    for (program, why, fix) in [
        (
            "mdbook-gettext",
            "not found (the book's Portuguese edition; book.toml runs it on every build)",
            "cargo install mdbook-i18n-helpers --locked --version 0.4.0",
        ),
        (
            "msgmerge",
            "not found (`cargo xtask book` merges the Portuguese catalog)",
            "sudo apt-get install gettext",
        ),
    ] {
        out.push(if on_path(program) {
            check(Level::Ok, program, "found", "")
        } else {
            check(Level::Warn, program, why, fix)
        });
    }
    for tool in TOOLS {
        let Tool {
            program: tool,
            package,
            step,
            why,
        } = *tool;
        out.push(
            if on_path(tool) || Path::new("/usr/libexec/podman").join(tool).is_file() {
                check(Level::Ok, tool, "found", "")
            } else {
                check(
                    step.map_or(Level::Warn, Level::Fail),
                    tool,
                    format!("not found ({why})"),
                    &format!("sudo apt-get install {package}"),
                )
            },
        );
    }
    let docker = std::env::var_os("CAIXA_DOCKER_CLI")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/opt/caixa-peers/docker".into());
    out.push(if docker.is_file() {
        check(Level::Ok, "docker CLI", docker.display().to_string(), "")
    } else {
        check(
            Level::Fail(11),
            "docker CLI",
            format!(
                "{} not found (the step 11 tests drive the daemon with it)",
                docker.display()
            ),
            "sudo .ci/install-packages takes it from Debian's docker.io (the client binary only), \
             or set CAIXA_DOCKER_CLI",
        )
    });
    out
}

/// A program the graded tests (or the tooling) run, and its package.
#[derive(Clone, Copy)]
pub struct Tool {
    /// What doctor looks for on the `PATH`.
    pub program: &'static str,
    /// The Debian/Ubuntu package that has it.
    pub package: &'static str,
    /// The first step whose graded tests run it (`None`: no graded test).
    pub step: Option<u32>,
    /// Why it is needed, as doctor says it.
    pub why: &'static str,
}

const fn tool(
    program: &'static str,
    package: &'static str,
    step: Option<u32>,
    why: &'static str,
) -> Tool {
    Tool {
        program,
        package,
        step,
        why,
    }
}

/// The tools doctor looks for beyond the kernel's features. `check-lab`
/// requires every package of a tool a step needs to be in
/// `.ci/packages.txt`, so a lab machine made from that list passes doctor.
pub const TOOLS: &[Tool] = &[
    tool(
        "nsenter",
        "util-linux",
        Some(8),
        "the step 8 tests enter containers",
    ),
    tool(
        "script",
        "bsdutils",
        Some(4),
        "the tests give a shell a terminal",
    ),
    tool("umoci", "umoci", Some(9), "the tests make images"),
    tool("skopeo", "skopeo", Some(9), "the tests convert images"),
    tool("zstd", "zstd", Some(9), "the tests compress layers"),
    tool(
        "chattr",
        "e2fsprogs",
        Some(11),
        "the tests make a file undeletable",
    ),
    tool(
        "docker-registry",
        "docker-registry",
        Some(10),
        "the registry the tests pull from",
    ),
    tool(
        "htpasswd",
        "apache2-utils",
        Some(10),
        "the registry's passwords",
    ),
    tool(
        "podman",
        "podman",
        Some(12),
        "drives the runtime in the tests",
    ),
    tool("conmon", "conmon", Some(12), "podman's monitor"),
    tool(
        "ctr",
        "containerd",
        Some(12),
        "drives the runtime in the tests",
    ),
    tool(
        crate::browser::PROGRAM,
        crate::browser::PACKAGE,
        None,
        "cargo xtask check-book-browser opens the book in it",
    ),
    tool("runc", "runc", None, "benchmark peer"),
    tool("crun", "crun", None, "benchmark peer"),
    tool(
        "qemu-system-x86_64",
        "qemu-system-x86",
        None,
        "cargo xtask vm-test",
    ),
];

/// The step that adds a namespace, and so the first one that needs it.
fn first_step_of(ns: Namespace) -> u32 {
    match ns {
        Namespace::Pid => 1,
        Namespace::Net => 2,
        Namespace::Ipc => 3,
        Namespace::Mount => 4,
        Namespace::Uts => 5,
        Namespace::User => 6,
    }
}

/// The last line: which steps can run, from the first step a failed check
/// blocks (`None`: nothing failed) and the course's last step.
fn verdict(blocked: Option<u32>, last: u32) -> String {
    match blocked {
        None => format!("this machine can run every step (1-{last})"),
        Some(1) => "no step can run here until the FAIL lines above are fixed".to_string(),
        Some(n) if n == last => format!(
            "this machine can run steps 1-{}; step {last} needs the FAIL lines above fixed",
            n - 1
        ),
        Some(n) => format!(
            "this machine can run steps 1-{}; steps {n}-{last} need the FAIL lines above fixed",
            n - 1
        ),
    }
}

/// Prints the checks; fails when some step cannot run here.
pub fn run(root: &Path) -> Result<()> {
    let last = Course::read(root)?.last_step();
    let all = checks();
    let width = all.iter().map(|c| c.what.len()).max().unwrap_or(0);
    for c in &all {
        let tag = match c.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail(_) => "FAIL",
        };
        let fix = match (c.fix.is_empty(), c.level) {
            (true, _) => String::new(),
            (false, Level::Fail(step)) => format!("  -> {} (step {step} needs it)", c.fix),
            (false, _) => format!("  -> {}", c.fix),
        };
        println!("{tag}  {:<width$}  {}{fix}", c.what, c.detail);
    }
    let blocked = all
        .iter()
        .filter_map(|c| match c.level {
            Level::Fail(step) => Some(step),
            _ => None,
        })
        .min();
    if blocked.is_some() {
        bail!("{}", verdict(blocked, last));
    }
    let warned = all.iter().filter(|c| c.level == Level::Warn).count();
    if warned == 0 {
        println!("\n{}", verdict(None, last));
    } else {
        println!(
            "\n{}; the {warned} `warn` lines above name what the book, the benchmarks \
             or the VM lane still need",
            verdict(None, last)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::verdict;

    #[test]
    fn the_verdict_names_the_steps_that_run() {
        assert_eq!(verdict(None, 12), "this machine can run every step (1-12)");
        assert_eq!(
            verdict(Some(8), 12),
            "this machine can run steps 1-7; steps 8-12 need the FAIL lines above fixed"
        );
        assert_eq!(
            verdict(Some(12), 12),
            "this machine can run steps 1-11; step 12 needs the FAIL lines above fixed"
        );
        assert!(verdict(Some(1), 12).starts_with("no step can run"));
    }
}
