//! `bench-podman`: the same podman, with caixa's runtime (step 12), crun or
//! runc under it, timed in the same run (issue 18's bench).
//!
//! Each run is `podman run --rm --network none IMAGE true`: podman, conmon
//! and the runtime's create, start, state and delete, end to end. Runs are
//! interleaved (caixa, crun, runc, caixa, …) so a noisy moment hurts all
//! alike; the table gives min, median and max, and the ratios of medians.
//! podman's own work is the same in every row, so the ratios understate
//! the runtimes' difference: that is the point, it is what a user sees.
//!
//! Like `bench-peers`, it re-executes itself in a private mount namespace
//! where the empty cgroup2 mount of a hybrid host is unmounted, so crun
//! runs here too (crun refuses hybrid hosts).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const INNER: &str = "CAIXA_BENCH_PODMAN_INNER";

/// Entry point: re-executes itself in a private mount namespace first.
pub fn run(root: &Path, runs: usize) -> Result<()> {
    if std::env::var_os(INNER).is_none() {
        for tool in ["podman", "runc", "crun", "skopeo", "umoci", "unshare"] {
            if Command::new(tool).arg("--version").output().is_err() {
                bail!(
                    "{tool} is not installed: sudo apt-get install podman runc crun skopeo umoci util-linux"
                );
            }
        }
        crate::sh(
            root,
            "cargo",
            &["build", "--quiet", "--release", "--bin", "step12"],
        )?;
        return crate::peers::again_in_a_private_mount_namespace("bench-podman", runs, INNER);
    }
    crate::peers::leave_hybrid_cgroup_mode()?;
    let work = root.join("target/bench-podman");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let archive = image(&work)?;

    // caixa through a wrapper that gives it a root of the bench's own (as
    // podman's clean-up calls the runtime again without runtime flags).
    let wrapper = work.join("caixa-runtime");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} --root {} \"$@\"\n",
            root.join("target/release/step12").display(),
            work.join("runtime").display()
        ),
    )?;
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let which = |tool: &str| -> Result<PathBuf> {
        let out = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()?;
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    };
    let runtimes = [
        ("caixa (step12)", wrapper.clone()),
        ("crun", which("crun")?),
        ("runc", which("runc")?),
    ];
    let podman = |runtime: &Path, args: &[&str]| {
        let mut cmd = podman_in(&work);
        cmd.arg("--runtime").arg(runtime).args(args);
        cmd
    };
    let load = podman(&runtimes[0].1, &["load", "-q", "-i"])
        .arg(&archive)
        .output()?;
    if !load.status.success() {
        bail!("podman load: {}", String::from_utf8_lossy(&load.stderr));
    }
    // Below a parent cgroup of the bench's own, removed at the end (podman
    // leaves its `conmon` group and the parent behind).
    let parent = format!("/caixa-bench-{}", std::process::id());
    let run_args = run_args(&parent, "none");
    let once = |runtime: &Path| -> Result<Duration> {
        let start = Instant::now();
        let out = podman(runtime, &[]).args(&run_args).output()?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "podman --runtime {} run failed: {}",
                runtime.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(took)
    };
    for (_, runtime) in &runtimes {
        once(runtime)?; // warm up
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); runtimes.len()];
    for _ in 0..runs {
        for (k, (_, runtime)) in runtimes.iter().enumerate() {
            times[k].push(once(runtime)?);
        }
    }
    println!("\n{runs} interleaved `podman run --rm --network none IMAGE true` per runtime (ms)");
    println!(
        "{:<16} {:>8} {:>8} {:>8}",
        "runtime", "min", "median", "max"
    );
    let mut medians = Vec::new();
    for ((name, _), t) in runtimes.iter().zip(&mut times) {
        let s = crate::peers::spread(t);
        medians.push(s.median);
        println!("{name:<16} {:>8.1} {:>8.1} {:>8.1}", s.min, s.median, s.max);
    }
    println!(
        "\nratios of medians (below 1.0: caixa is faster): caixa/crun = {:.2}   caixa/runc = {:.2}",
        medians[0] / medians[1],
        medians[0] / medians[2]
    );
    let _ = podman(&runtimes[0].1, &["system", "reset", "--force"]).output();
    remove_groups(parent.trim_start_matches('/'));
    Ok(())
}

/// podman with a store, a run root and an events log of the bench's own
/// under `work`, and cgroupfs (no systemd to ask).
pub(crate) fn podman_in(work: &Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.arg("--root")
        .arg(work.join("storage"))
        .arg("--runroot")
        .arg(work.join("run"))
        .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
        .stdin(Stdio::null());
    cmd
}

/// `podman run --rm IMAGE true`'s arguments, as the benches run it: on
/// `network`, below the cgroup `parent`, with limits this machine can give
/// (CAP_SYS_RESOURCE is missing on this machine kind: podman's default
/// nofile of 1048576 fails under every runtime).
pub(crate) fn run_args(parent: &str, network: &str) -> Vec<String> {
    [
        "run",
        "--rm",
        "--network",
        network,
        "--cgroup-parent",
        parent,
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
        "localhost/bb:1",
        "true",
    ]
    .map(String::from)
    .to_vec()
}

/// Removes the bench's cgroup `name` below every hierarchy, and every
/// group below it (podman leaves its `conmon` group there).
pub(crate) fn remove_groups(name: &str) {
    let mut dirs = vec![Path::new("/sys/fs/cgroup").join(name)];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        dirs.extend(entries.flatten().map(|e| e.path().join(name)));
    }
    for dir in dirs {
        let _ = caixa::cgroup::remove_tree(&dir);
    }
}

/// A busybox image as an OCI archive (umoci, skopeo), as the tests make it.
pub(crate) fn image(work: &Path) -> Result<PathBuf> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .context("a static busybox: sudo apt-get install busybox-static")?;
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::copy(busybox, rootfs.join("bin/busybox"))?;
    for applet in ["sh", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    let layout = work.join("layout");
    let script = format!(
        "set -e; umoci init --layout {l}; umoci new --image {l}:base; umoci unpack --image {l}:base {b}; \
         cp -a {r}/. {b}/rootfs/; umoci repack --image {l}:base {b}; \
         umoci config --image {l}:base --config.env PATH=/bin --config.cmd /bin/sh; \
         skopeo copy --quiet oci:{l}:base oci-archive:{a}:localhost/bb:1",
        l = layout.display(),
        b = work.join("bundle").display(),
        r = rootfs.display(),
        a = work.join("bb.tar").display()
    );
    let status = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("umoci/skopeo could not build the bench's image");
    }
    Ok(work.join("bb.tar"))
}
