//! `bench-peers`: caixa beside runc and crun, timed in the same run.
//!
//! Each runner starts a container that runs `/bin/true` from the same busybox
//! rootfs, with matching isolation, and the runs are interleaved (caixa, runc,
//! crun, caixa, …) so a noisy moment hurts all of them alike. Two profiles:
//!
//! - `step5`: PID, network, IPC, mount and UTS namespaces (runc's default spec);
//! - `step6`: plus a user namespace (0:100000:65536), Docker's 14 capabilities,
//!   no_new_privs and the same seccomp deny list.
//!
//! runc and crun also create a cgroup for every container; caixa does that
//! from step 7, so caixa's step 7 against their step-6 bundle is the
//! like-for-like comparison (step 5 and 6 rows: the peers do a little more).
//! crun refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported"),
//! so on such a host everything runs in a private mount namespace where the
//! empty cgroup2 mount is unmounted (nothing changes for the rest of the host).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// One row of a bench's table: the fastest, the median and the slowest of
/// its runs, in milliseconds.
pub(crate) struct Spread {
    pub(crate) min: f64,
    pub(crate) median: f64,
    pub(crate) max: f64,
}

/// The spread of `times` (sorted in place; at least one).
pub(crate) fn spread(times: &mut [Duration]) -> Spread {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Spread {
        min: ms(times[0]),
        median: ms(times[times.len() / 2]),
        max: ms(times[times.len() - 1]),
    }
}

/// Builds the command for run number `i` of one runner.
type MakeCommand<'a> = Box<dyn Fn(usize) -> Command + 'a>;

const INNER: &str = "CAIXA_BENCH_PEERS_INNER";

/// Says how many memory cgroups the machine has, live and dying. A
/// memory cgroup may outlive its `rmdir` while page cache it was charged
/// for stays cached, and with thousands of dying ones caixa's starts took
/// nearly twice as long (Appendix C): times from two runs compare only at
/// similar counts. `sync; echo 3 > /proc/sys/vm/drop_caches` frees them,
/// with the cache. cgroup v1 counts them in `/proc/cgroups`; v2 counts
/// the dying ones (of every controller) in the root's `cgroup.stat`.
pub fn say_memory_cgroups() {
    let v1 = std::fs::read_to_string("/proc/cgroups")
        .ok()
        .and_then(|text| {
            let fields: Vec<&str> = text
                .lines()
                .find(|l| l.starts_with("memory\t"))?
                .split('\t')
                .collect();
            // subsys_name, hierarchy (0: not on v1), num_cgroups, enabled
            (fields.get(1)? != &"0").then(|| fields.get(2)?.parse::<u64>().ok())?
        });
    let v2 = || {
        std::fs::read_to_string("/sys/fs/cgroup/cgroup.stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("nr_dying_descendants "))?
            .trim()
            .parse::<u64>()
            .ok()
    };
    if let Some(n) = v1 {
        println!(
            "memory cgroups on this machine, live and dying: {n} (thousands slow every start; see Appendix C)"
        );
    } else if let Some(n) = v2() {
        println!("dying cgroups on this machine: {n} (thousands slow every start; see Appendix C)");
    }
}

/// Entry point: re-executes itself in a private mount namespace first.
pub fn run(root: &Path, runs: usize) -> Result<()> {
    if std::env::var_os(INNER).is_none() {
        for tool in ["runc", "crun", "unshare"] {
            if Command::new(tool).arg("--version").output().is_err() {
                bail!("{tool} is not installed: sudo apt-get install runc crun util-linux");
            }
        }
        crate::sh(root, "cargo", &["build", "--quiet", "--release", "--bins"])?;
        return again_in_a_private_mount_namespace("bench-peers", runs, INNER);
    }
    leave_hybrid_cgroup_mode()?;
    say_memory_cgroups();
    let bin = root.join("target/release");
    let work = root.join("target/bench-peers");
    std::fs::create_dir_all(&work)?;

    // The rootfs caixa builds, for both profiles (step 6's owned by 100000).
    for step in ["step5", "step6", "step7"] {
        quiet(Command::new(bin.join(step)).arg("true"))?;
    }
    let cache = caixa::rootfs::busybox::cache_dir();
    let rootfs5 = cache.join("busybox-rootfs");
    let rootfs6 = cache.join("busybox-rootfs-100000-100000");
    let bundle5 = bundle(&work.join("step5"), &rootfs5, false)?;
    let bundle6 = bundle(&work.join("step6"), &rootfs6, true)?;

    let runners: Vec<(&str, MakeCommand)> = vec![
        (
            "/bin/true (no container)",
            Box::new(|_| Command::new("/bin/true")),
        ),
        (
            "caixa step5",
            Box::new(|_| {
                let mut c = Command::new(bin.join("step5"));
                c.arg("true");
                c
            }),
        ),
        ("runc  step5", Box::new(|i| oci("runc", &bundle5, i))),
        ("crun  step5", Box::new(|i| oci("crun", &bundle5, i))),
        (
            "caixa step6",
            Box::new(|_| {
                let mut c = Command::new(bin.join("step6"));
                c.arg("true");
                c
            }),
        ),
        ("runc  step6", Box::new(|i| oci("runc", &bundle6, i))),
        ("crun  step6", Box::new(|i| oci("crun", &bundle6, i))),
        (
            "caixa step7",
            Box::new(|_| {
                let mut c = Command::new(bin.join("step7"));
                c.arg("true");
                c
            }),
        ),
    ];
    // Warm up every runner once (page cache, first-use work), then measure.
    for (_, make) in &runners {
        quiet(&mut make(usize::MAX))?;
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); runners.len()];
    for i in 0..runs {
        for (k, (_, make)) in runners.iter().enumerate() {
            let mut cmd = make(i);
            let start = Instant::now();
            quiet(&mut cmd)?;
            times[k].push(start.elapsed());
        }
    }

    println!("\n{runs} interleaved runs of /bin/true in a container, start to exit (ms)");
    println!("{:<26} {:>8} {:>8} {:>8}", "runner", "min", "median", "max");
    let mut medians = Vec::new();
    let mut rows = Vec::new();
    for ((name, _), t) in runners.iter().zip(&mut times) {
        let s = spread(t);
        medians.push(s.median);
        println!("{name:<26} {:>8.2} {:>8.2} {:>8.2}", s.min, s.median, s.max);
        rows.push(crate::cost_plot::Row::new(name, &s));
    }
    println!("\nratios of medians (below 1.0: caixa is faster)");
    // runc and crun create a cgroup for every container: caixa's step 7 is
    // the like-for-like match for their step-6 bundle.
    for (profile, c, r, k) in [
        ("step5", 1, 2, 3),
        ("step6", 4, 5, 6),
        ("step7 vs peers' step6 (all with a cgroup)", 7, 5, 6),
    ] {
        println!(
            "{profile}: caixa/runc = {:.2}   caixa/crun = {:.2}",
            medians[c] / medians[r],
            medians[c] / medians[k]
        );
    }
    let measure = crate::cost_plot::Measure {
        title: "/bin/true in a container, start to exit: caixa's steps, runc and crun".into(),
        date: crate::cost_plot::today(),
        runs,
        rows,
    };
    crate::cost_plot::record(root, "runtime", &measure)
}

fn oci(runtime: &str, bundle: &Path, i: usize) -> Command {
    let mut c = Command::new(runtime);
    c.args(["run", "--bundle"])
        .arg(bundle)
        .arg(format!("caixa-bench-{}-{i}", std::process::id()));
    c
}

/// Gives a runner pipes for stdin, stdout and stderr, never the host's
/// `/dev/null`: crun 1.8.1 chowns a user-namespaced container's stdio to
/// the container's root, and with `/dev/null` that is the host's node, which
/// caixa binds into every container from step 6 on.
fn with_pipes(cmd: &mut Command) -> &mut Command {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
}

fn quiet(cmd: &mut Command) -> Result<()> {
    // `output` closes the stdin pipe at once (the child reads end of file)
    // and reads the other two.
    let out = with_pipes(cmd)
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs this xtask's `task --runs N` again in a private mount namespace,
/// with `inner` set so it knows it is there (where it may unmount what it
/// likes: nothing changes for the rest of the host).
pub(crate) fn again_in_a_private_mount_namespace(
    task: &str,
    runs: usize,
    inner: &str,
) -> Result<()> {
    let me = std::env::current_exe()?;
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(me)
        .args([task, "--runs", &runs.to_string()])
        .env(inner, "1")
        .status()
        .context("unshare --mount (are you root?)")?;
    if !status.success() {
        bail!("{task} failed ({status})");
    }
    Ok(())
}

/// On a hybrid host, unmount the empty cgroup2 mount in our private mount
/// namespace, so crun sees a plain cgroup v1 host.
pub(crate) fn leave_hybrid_cgroup_mode() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    let unified = mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/cgroup/unified"));
    if unified {
        let status = Command::new("umount")
            .arg("/sys/fs/cgroup/unified")
            .status()?;
        if !status.success() {
            bail!("cannot unmount /sys/fs/cgroup/unified in the private mount namespace");
        }
    }
    Ok(())
}

/// Writes an OCI bundle (config.json) for `rootfs`, starting from `runc spec`.
fn bundle(dir: &Path, rootfs: &Path, step6: bool) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let _ = std::fs::remove_file(dir.join("config.json"));
    let status = Command::new("runc").arg("spec").current_dir(dir).status()?;
    if !status.success() {
        bail!("runc spec failed in {}", dir.display());
    }
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
    config["root"] = json!({ "path": rootfs, "readonly": false });
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["/bin/true"]);
    config["linux"]["cgroupsPath"] = json!("/caixa-bench-peers");
    if step6 {
        let caps: Vec<String> = caixa::caps::DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .collect();
        for set in ["bounding", "effective", "permitted"] {
            config["process"]["capabilities"][set] = json!(caps);
        }
        config["process"]["capabilities"]["inheritable"] = json!([]);
        config["process"]["capabilities"]["ambient"] = json!([]);
        config["process"]["noNewPrivileges"] = json!(true);
        let namespaces = config["linux"]["namespaces"]
            .as_array_mut()
            .context("namespaces")?;
        namespaces.push(json!({ "type": "user" }));
        let map = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
        config["linux"]["uidMappings"] = map.clone();
        config["linux"]["gidMappings"] = map;
        // The same profile caixa's filter is built from (Docker's).
        let profile = caixa::seccomp::oci_profile(Some(&caixa::caps::DEFAULT_CAPABILITIES[..]));
        config["linux"]["seccomp"] = serde_json::to_value(&profile)?;
    }
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_runner_gets_pipes_not_dev_null() {
        let mut cmd = std::process::Command::new("sh");
        cmd.args([
            "-c",
            "readlink /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2 >&2",
        ]);
        let out = super::with_pipes(&mut cmd).output().unwrap();
        let links = String::from_utf8_lossy(&out.stderr);
        assert_eq!(links.lines().count(), 3, "{links}");
        assert!(links.lines().all(|l| l.starts_with("pipe:")), "{links}");
    }
}
