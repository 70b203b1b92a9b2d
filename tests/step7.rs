//! Step 7 grading: cgroups. Each test proves a limit *takes effect*, reading
//! the container's own cgroup counters, not just that a file was written.
//!
//! The tests run one at a time (CPU and disk measurements would disturb each
//! other) and print which cgroup version they used.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use caixa::cgroup::{Hierarchy, detect};
use support::{Running, TinyRootfs, assert_one_line_error, likely_cause, run, stdout_of, text};

#[path = "step7/devices.rs"]
mod devices;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn rootfs() -> TinyRootfs {
    TinyRootfs::new().with_probe().owned_by(100000, 100000)
}

/// The directory of `pid`'s cgroup for `controller` (v1), or its unified
/// cgroup (v2), read from /proc/<pid>/cgroup. It must be one of caixa's:
/// otherwise the counters read there would be another group's (the test
/// runner's, or the host's), and a test would report them as the
/// container's.
fn cgroup_dir(pid: i32, controller: &str) -> PathBuf {
    let dir = any_cgroup_dir(pid, controller);
    assert!(
        dir.to_string_lossy().contains("/caixa/"),
        "step 7: expected the container (pid {pid}) in caixa's {controller} cgroup, it is in \
         {}; most likely cause: its pid was not written to that directory's cgroup.procs: \
         Cgroup::enter must write the container's pid into every directory (one per \
         controller on cgroup v1)",
        dir.display()
    );
    dir
}

/// [`cgroup_dir`], whoever's the group is.
fn any_cgroup_dir(pid: i32, controller: &str) -> PathBuf {
    let hierarchy = detect().expect("a cgroup hierarchy");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_else(|e| {
        panic!(
            "step 7: expected to read /proc/{pid}/cgroup, saw {e}; most likely cause: the \
                 container ended early (its stderr is in the test's failure, if any)"
        )
    });
    match hierarchy {
        Hierarchy::V2(root) => {
            eprintln!("(cgroup v2 at {})", root.display());
            let path = cgroups
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or_else(|| panic!("no 0:: line in /proc/{pid}/cgroup:\n{cgroups}"));
            root.join(path.trim_start_matches('/'))
        }
        Hierarchy::V1(trees) => {
            eprintln!("(cgroup v1)");
            let mount = &trees
                .iter()
                .find(|t| t.controller == controller)
                .unwrap_or_else(|| panic!("the {controller} controller is not mounted (cgroup v1)"))
                .mount;
            let path = cgroups
                .lines()
                .find_map(|l| {
                    let mut f = l.splitn(3, ':');
                    let (_, names, path) = (f.next()?, f.next()?, f.next()?);
                    names
                        .split(',')
                        .any(|n| n == controller)
                        .then(|| path.to_string())
                })
                .unwrap_or_else(|| {
                    panic!("no {controller} line in /proc/{pid}/cgroup:\n{cgroups}")
                });
            mount.join(path.trim_start_matches('/'))
        }
    }
}

/// CPU time used by the cgroup of `pid`, in microseconds.
fn cpu_usec(pid: i32) -> u64 {
    let dir = cgroup_dir(pid, "cpuacct");
    let v1 = dir.join("cpuacct.usage");
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    };
    if v1.exists() {
        let text = read(&v1);
        let nanos: u64 = text
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{} holds {text:?}: {e}", v1.display()));
        return nanos / 1000;
    }
    let stat = read(&dir.join("cpu.stat"));
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no usage_usec in {}/cpu.stat:\n{stat}", dir.display()))
}

/// Bytes written to block devices by the cgroup of `pid`.
fn written_bytes(pid: i32) -> u64 {
    let dir = cgroup_dir(pid, "blkio");
    let v1 = dir.join("blkio.throttle.io_service_bytes");
    let file = if v1.exists() { v1 } else { dir.join("io.stat") };
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [_, "Write", n] => n.parse().unwrap_or(0),
                _ => f
                    .iter()
                    .filter_map(|kv| kv.strip_prefix("wbytes=")?.parse::<u64>().ok())
                    .sum(),
            }
        })
        .sum()
}

/// The share of one CPU the cgroup of `pid` used over `window`.
fn cpu_share(pid: i32, window: Duration) -> f64 {
    let (u0, t0) = (cpu_usec(pid), Instant::now());
    std::thread::sleep(window);
    let (u1, t1) = (cpu_usec(pid), Instant::now());
    (u1 - u0) as f64 / (t1 - t0).as_micros() as f64
}

#[test]
fn past_the_memory_limit_the_container_is_oom_killed_and_told_so() {
    let _one = serial();
    let rootfs = rootfs();
    let out = run(
        7,
        &[
            "--rootfs",
            rootfs.path(),
            "--memory",
            "32m",
            "/probe",
            "alloc",
            "100",
        ],
    );
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(137),
        "step 7: expected exit code 137 (killed) for 100 MiB allocated under --memory 32m, it \
         ended with {}; most likely cause: the limit did not apply to the container: \
         Cgroup::enter does not write its pid into the memory cgroup's cgroup.procs ({})\n\
         stderr: {err}",
        out.status,
        support::likely_cause(&err)
    );
    assert!(
        err.contains("OOM"),
        "step 7: expected the step to say the OOM killer ended the container, it said:\n\
         {err}\nmost likely cause: Cgroup::oom_killed reads no kill in the memory group (the \
         container was not in it: Cgroup::enter and cgroup.procs)"
    );
}

#[test]
fn within_the_memory_limit_all_is_well() {
    let _one = serial();
    let rootfs = rootfs();
    let out = run(
        7,
        &[
            "--rootfs",
            rootfs.path(),
            "--memory",
            "64m",
            "/probe",
            "alloc",
            "16",
        ],
    );
    let seen = stdout_of(&out);
    assert_eq!(
        seen.trim(),
        "done 16",
        "step 7: expected 16 MiB to fit under --memory 64m (\"done 16\"), saw {:?}; \
         most likely cause: the memory limit written is smaller than asked (units::parse_size, \
         memory.limit_in_bytes or memory.max)",
        seen.trim()
    );
}

#[test]
fn a_fork_loop_stops_at_the_pids_limit() {
    let _one = serial();
    let rootfs = rootfs();
    let out = run(
        7,
        &[
            "--rootfs",
            rootfs.path(),
            "--pids-limit",
            "5",
            "/probe",
            "forks",
            "20",
        ],
    );
    let text = stdout_of(&out);
    let started: u32 = text
        .trim()
        .strip_prefix("started ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "step 7: expected \"started N\" from the probe, it printed {text:?}; \
                 most likely cause: the probe was killed before it counted (a pids limit too low \
                 for the probe itself)"
            )
        });
    assert!(
        started <= 4,
        "step 7: expected at most 4 children to start under --pids-limit 5 (the probe itself is \
         one), {started} did; most likely cause: the limit does not apply to the container: \
         Cgroup::enter does not write its pid into the pids cgroup's cgroup.procs (every \
         directory, one per controller on v1)"
    );
}

/// Docker accepts `--pids-limit 1`: the container's first process alone.
/// It must still be born (whoever helps it into its group must not take
/// that one place), and then fork nothing.
#[test]
fn a_pids_limit_of_one_is_the_first_process_alone() {
    let _one = serial();
    let rootfs = rootfs();
    let out = run(
        7,
        &[
            "--rootfs",
            rootfs.path(),
            "--pids-limit",
            "1",
            "/probe",
            "forks",
            "3",
        ],
    );
    let text = stdout_of(&out);
    assert_eq!(
        text.trim(),
        "started 0",
        "step 7: expected the probe alone under --pids-limit 1 to start no child; most likely \
         cause: the parent's thread, visiting the group for the clone, still counted in \
         pids.max when the probe forked (Visit::leave puts the limit back before the child runs)"
    );
}

#[test]
fn cpus_half_gets_about_half_a_cpu() {
    let _one = serial();
    let rootfs = rootfs();
    let running = Running::start(
        7,
        &["--rootfs", rootfs.path(), "--cpus", "0.5"],
        "echo ready; exec /probe spin 3",
    );
    let pid = running.container_pid();
    std::thread::sleep(Duration::from_millis(300));
    let share = cpu_share(pid, Duration::from_millis(1500));
    drop(running);
    eprintln!("share of one CPU under --cpus 0.5: {share:.2}");
    assert!(
        (0.3..=0.7).contains(&share),
        "step 7: expected --cpus 0.5 to give about half a CPU (0.3 to 0.7), the container's \
         cpu cgroup measured {share:.2}; most likely cause: Cgroup::enter does not write its \
         pid into the cpu group's cgroup.procs (the quota then limits nobody), or the quota \
         is not 50000 per 100000 µs (Limits::cpu_quota_us)"
    );
}

#[test]
fn cpu_shares_split_one_cpu_in_proportion() {
    let _one = serial();
    let rootfs = rootfs();
    let start = |shares: &str| {
        Running::start(
            7,
            &[
                "--rootfs",
                rootfs.path(),
                "--cpuset-cpus",
                "0",
                "--cpu-shares",
                shares,
            ],
            "echo ready; exec /probe spin 4",
        )
    };
    let high = start("1024");
    let low = start("256");
    let (hp, lp) = (high.container_pid(), low.container_pid());
    std::thread::sleep(Duration::from_millis(300));
    let (h0, l0) = (cpu_usec(hp), cpu_usec(lp));
    std::thread::sleep(Duration::from_millis(1500));
    let (h1, l1) = (cpu_usec(hp), cpu_usec(lp));
    drop((high, low));
    let ratio = (h1 - h0) as f64 / (l1 - l0).max(1) as f64;
    eprintln!("CPU split 1024:256 on one CPU = {ratio:.2}:1");
    assert!(
        ratio > 2.0,
        "step 7: expected --cpu-shares 1024 against 256 to split one CPU about 4:1 (more than \
         2:1), the containers' cpu cgroups measured {ratio:.2}:1; most likely cause: \
         Cgroup::enter does not write their pids into the cpu groups' cgroup.procs, or the \
         shares are not written (cpu.shares, cpu.weight on v2: shares_to_weight)"
    );
}

#[test]
fn a_write_throttle_bounds_direct_writes() {
    let _one = serial();
    let rootfs = rootfs();
    // Throttle the device the rootfs lives on: 1 MiB/s of writes.
    let dev = nix::sys::stat::stat(rootfs.dir.path())
        .expect("stat the rootfs")
        .st_dev;
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    assert!(
        major != 0,
        "step 7: expected the test's rootfs on a block device, it is on {major}:{minor}; \
         most likely cause: TMPDIR is a tmpfs: set TMPDIR to a disk-backed directory"
    );
    let limit = format!("{major}:{minor}:1mb");
    let running = Running::start(
        7,
        &["--rootfs", rootfs.path(), "--device-write-bps", &limit],
        "echo ready; /probe write-direct /tmp/data 4; read x",
    );
    let pid = running.container_pid();
    std::thread::sleep(Duration::from_millis(1000));
    let after_a_second = written_bytes(pid);
    let mut running = running;
    let done = running.read_line();
    assert_eq!(
        done.trim(),
        "done",
        "step 7: expected the probe to say done after its writes, it printed {:?}; \
         most likely cause: a direct write failed in the container (the device rule or the \
         throttle file refused: {})\nstderr: {}",
        done.trim(),
        likely_cause(&running.stderr_text()),
        running.stderr_text()
    );
    let total = written_bytes(pid);
    running.finish_well();
    eprintln!("written after 1 s: {after_a_second} bytes; in all: {total}");
    assert!(
        total >= 4 << 20,
        "step 7: expected the container's blkio/io cgroup to count its 4 MiB of direct writes, \
         it counted {total} bytes; most likely cause: Cgroup::enter does not write its pid \
         into the blkio (v1) or io (v2) group's cgroup.procs"
    );
    // Unthrottled, 4 MiB of direct writes take milliseconds; at 1 MiB/s the
    // first second sees about 2 (one burst, one second's worth).
    assert!(
        after_a_second <= 3 << 20,
        "step 7: expected at most 3 MiB written in the first second under \
         --device-write-bps {limit}, the container's cgroup counted {after_a_second} bytes; \
         most likely cause: the throttle does not apply: Cgroup::enter does not write its \
         pid into the blkio (v1) or io (v2) group's cgroup.procs, or the rate is not written \
         (blkio.throttle.write_bps_device, io.max)"
    );
}

#[test]
fn no_cgroup_directory_is_left_after_exit() {
    let _one = serial();
    let running = Running::start(
        7,
        &["--memory", "32m", "--pids-limit", "10"],
        "echo ready; read x",
    );
    let pid = running.container_pid();
    let dirs: Vec<PathBuf> = ["memory", "pids", "cpu"]
        .iter()
        .map(|c| cgroup_dir(pid, c))
        .collect();
    for d in &dirs {
        assert!(
            d.exists(),
            "step 7: expected the container's cgroup {} to exist while it runs, it does not; \
             most likely cause: Cgroup::create does not make one directory per controller \
             (hierarchy::planned_dirs)",
            d.display()
        );
    }
    running.finish_well();
    for d in &dirs {
        assert!(
            !d.exists(),
            "step 7: expected the container's cgroup {} removed after it ended, it is left \
             behind; most likely cause: Cgroup::destroy does not run after the container is \
             reaped, or rmdir fails while a process is still in it (fs::remove_dir)",
            d.display()
        );
    }
}

fn caixa_groups() -> Vec<String> {
    let parent = match detect().expect("a cgroup hierarchy") {
        Hierarchy::V2(root) => root.join("caixa"),
        Hierarchy::V1(trees) => trees
            .iter()
            .find(|t| t.controller == "memory")
            .expect("the memory controller mounted (cgroup v1)")
            .mount
            .join("caixa"),
    };
    support::subdirs(&parent)
}

#[test]
fn a_malformed_size_is_one_clear_line() {
    let _one = serial();
    let out = run(7, &["--memory", "12q", "true"]);
    assert_eq!(
        out.status.code(),
        Some(125),
        "step 7: expected --memory 12q refused with exit code 125, it ended with {}; \
         most likely cause: units::parse_size accepts an unknown unit\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("invalid size"),
        "step 7: expected the error to say \"invalid size\", it did not; most likely cause: \
         the refusal is not units' SizeError (refused elsewhere, or its message changed)\n\
         stderr: {}",
        text(&out.stderr)
    );
}

#[test]
fn a_limit_below_the_minimum_is_one_clear_line() {
    let _one = serial();
    let out = run(7, &["--memory", "1k", "true"]);
    assert_one_line_error(&out, 7, 125, "below the minimum");
}

#[test]
fn a_value_the_kernel_refuses_is_one_clear_line_and_leaves_nothing() {
    let _one = serial();
    let before = caixa_groups();
    let out = run(7, &["--cpuset-cpus", "999", "true"]);
    assert_one_line_error(&out, 7, 125, "the kernel refused cpuset.cpus");
    assert_eq!(
        caixa_groups(),
        before,
        "step 7: expected no cgroup left after a refused start, saw {:?} (before: {before:?}); \
         most likely cause: Cgroup::create does not remove the directories it made when a \
         setting is refused (fs::remove_tree)",
        caixa_groups()
    );
}

#[test]
fn a_missing_controller_feature_is_one_clear_line_and_leaves_nothing() {
    let _one = serial();
    // Disk weights need the BFQ scheduler; on hosts without it the weight
    // file is missing and the step must say so. Where it exists, it must work.
    // Weight files exist only in non-root groups: look in caixa's own parent.
    let has = |dir: &Path, files: &[&str]| {
        let _ = std::fs::create_dir_all(dir);
        files.iter().any(|f| dir.join(f).exists())
    };
    let has_weight = match detect().expect("a cgroup hierarchy") {
        Hierarchy::V2(root) => has(&root.join("caixa"), &["io.weight", "io.bfq.weight"]),
        Hierarchy::V1(trees) => trees.iter().any(|t| {
            t.controller == "blkio"
                && has(
                    &t.mount.join("caixa"),
                    &["blkio.weight", "blkio.bfq.weight"],
                )
        }),
    };
    eprintln!("disk weights on this host: {has_weight}");
    let before = caixa_groups();
    let out = run(7, &["--blkio-weight", "500", "true"]);
    if has_weight {
        stdout_of(&out);
    } else {
        assert_one_line_error(&out, 7, 125, "not available on this host");
    }
    assert_eq!(
        caixa_groups(),
        before,
        "step 7: expected no cgroup left after the start, saw {:?} (before: {before:?}); \
         most likely cause: Cgroup::create does not remove the directories it made when a \
         controller file is missing, or Cgroup::destroy does not run after the container \
         ends",
        caixa_groups()
    );
}

/// Step 7's harder exercise (optional, its own points): the container's
/// first process is *born* in its cgroup, never moved there. Seen from
/// outside with strace: no process opens a `cgroup.procs` to move it, and
/// on cgroup v2 the clone3 that makes it carries `CLONE_INTO_CGROUP`; on v1
/// (or hybrid) the parent's thread opens the group's `tasks` files to
/// visit the group for the clone.
#[test]
fn harder_the_container_is_born_in_its_cgroup() {
    let _one = serial();
    support::require_root();
    let v1 = matches!(detect().expect("a cgroup hierarchy"), Hierarchy::V1(_));
    let log = tempfile::NamedTempFile::new().expect("a temporary file");
    let log_path = log.path().to_str().expect("a UTF-8 temporary path");
    let out = Command::new("strace")
        .env("CAIXA_CACHE_DIR", support::cache_dir())
        .args(["-f", "-qq", "-s", "256", "-o", log_path])
        .args(["-e", "trace=clone3,openat", "-e", "signal=none"])
        .args([support::binary(7), "--memory", "64m", "true"])
        .stdin(Stdio::null())
        .output()
        .expect("strace to start (apt-get install strace)");
    assert!(
        out.status.success(),
        "step 7: expected `step7 --memory 64m true` under strace to succeed, saw {}:\n{}",
        out.status,
        text(&out.stderr)
    );
    let calls = std::fs::read_to_string(log.path()).expect("strace's log");
    let clone = calls
        .lines()
        .find(|l| l.contains("clone3(") && l.contains("CLONE_NEWPID") && !l.contains("= -1"))
        .unwrap_or_else(|| {
            panic!("no successful clone3 with CLONE_NEWPID in strace's log:\n{calls}")
        });
    let opened_for_writing = |file: &str| -> Vec<&str> {
        calls
            .lines()
            .filter(|l| l.contains("/caixa/") && l.contains(file) && l.contains("O_WRONLY"))
            .collect()
    };
    if v1 {
        assert!(
            !opened_for_writing("/tasks").is_empty(),
            "step 7, harder exercise (cgroup v1): expected the parent to open its container's \
             tasks files to visit the group for the clone, saw no such open in:\n{calls}\n\
             most likely cause: Visit::enter still returns its stand-in (None), so the parent \
             cloned plainly and moved the child by a write to cgroup.procs"
        );
    } else {
        assert!(
            clone.contains("CLONE_INTO_CGROUP"),
            "step 7, harder exercise: expected the clone3 that made the container to carry \
             CLONE_INTO_CGROUP, saw:\n{clone}\nmost likely cause: clone_child_into still returns \
             its stand-in (ENOSYS), so the parent cloned plainly and moved the child by a write"
        );
    }
    let moves = opened_for_writing("cgroup.procs");
    assert!(
        moves.is_empty(),
        "step 7, harder exercise: expected no cgroup.procs to be opened for writing once the \
         container is born in its cgroup, saw:\n{}\nmost likely cause: the child still asks \
         to be moved (sync::requests_for must leave EnterCgroup out for a child born there)",
        moves.join("\n")
    );
}

/// Rootless (an ordinary user): a cgroup needs root or a delegated
/// subtree, so limits are refused in one line, never silently dropped.
#[test]
fn rootless_limits_are_refused_in_one_line() {
    let user = support::Rootless::new();
    let out = user.run(7, &["--memory", "32m", "true"]);
    assert_one_line_error(
        &out,
        7,
        125,
        "limits without root need a cgroup v2 subtree the system delegates to you",
    );
    let records = user.left_in("run/caixa/running");
    assert!(
        records.is_empty(),
        "step 7 run rootless: a refused start left records: {records:?}"
    );
}

/// Step 7 as the rootless user in `group`, with `args`.
fn step7_in(
    group: &support::Delegated,
    user: &support::Rootless,
    args: &[&str],
) -> std::process::Output {
    let mut cmd = group.step(user, 7);
    cmd.args(args);
    support::output_of(cmd)
}

/// Rootless, with a cgroup v2 group delegated to the user: the limits
/// apply (100 MB kept by a shell under `--memory 32m` is OOM-killed, and
/// said so) in a group caixa made below the delegated one, after moving
/// the user's own processes into a leaf (the no-internal-processes rule).
/// On a v1 or hybrid host nothing can be delegated, and one line says so.
#[test]
fn rootless_limits_apply_in_a_delegated_cgroup() {
    let _one = serial();
    let user = support::Rootless::new();
    let Hierarchy::V2(root) = detect().expect("a cgroup hierarchy") else {
        let out = user.run(7, &["--memory", "32m", "true"]);
        assert_one_line_error(
            &out,
            7,
            125,
            "cgroup v1 (or hybrid), which cannot be delegated",
        );
        return;
    };
    let delegated = support::Delegated::new(&root, "step7");
    let hog = "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo kept ${#x} bytes";
    let out = step7_in(
        &delegated,
        &user,
        &["--memory", "32m", "--pids-limit", "20", "sh", "-c", hog],
    );
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(137),
        "step 7 rootless: expected exit code 137 (OOM-killed) for 100 MB kept under --memory \
         32m in a delegated cgroup, it ended with {}; most likely cause: the container's group \
         was not made below the delegated one (cgroup::delegation::prepare and \
         parent's block 4a), or the limit did not apply ({})\nstdout: {}\nstderr: {err}",
        out.status,
        support::likely_cause(&err),
        text(&out.stdout)
    );
    assert!(
        err.contains("OOM"),
        "step 7 rootless: expected the step to say the OOM killer ended the container, it \
         said:\n{err}"
    );
    assert_eq!(
        delegated.below(""),
        ["caixa", "caixa-init"],
        "step 7 rootless: expected the delegated group to hold caixa's parent and the leaf its \
         own processes were moved to; most likely cause: cgroup::delegation::prepare"
    );
    assert!(
        delegated.below("caixa").is_empty(),
        "step 7 rootless: expected the container's group removed after it ended, saw {:?}",
        delegated.below("caixa")
    );
    // A second start, from the leaf, finds the delegated group (the leaf's
    // parent) ready, and runs within its limits.
    let out = step7_in(
        &delegated,
        &user,
        &["--memory", "32m", "sh", "-c", "echo within"],
    );
    assert_eq!(
        stdout_of(&out).trim(),
        "within",
        "step 7 rootless: a second start in the prepared delegated group"
    );
}
