//! `vm-test`: the graded tests under a second kernel, on a pure cgroup v2
//! hierarchy, in a QEMU virtual machine.
//!
//! Most learners run pure cgroup v2; this project's CI machines are hybrid.
//! This lane boots Debian's stock kernel (fetched with `apt-get download`,
//! never installed on the host) under software emulation (`-accel tcg`: the
//! `/dev/kvm` here runs only special guest kernels), shares the host's `/`
//! read-only over 9p with a tmpfs overlay on top, mounts cgroup2 with every
//! controller enabled, and runs the chosen test binaries (built on the host)
//! inside. Results come back through a second, writable 9p share.
//!
//! Steps: fetch kernel → build tests and probe → scratch disk → initramfs →
//! boot → read results. See `../shared/VM-LANE.md` for the facts measured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Kernel modules the tests need, in an order that respects soft
/// dependencies (hard ones are resolved from each module's `depends=`).
const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "9pnet_virtio",
    "9p",
    "overlay",
    "crc32c_generic",
    "ext4",
    "veth",
    "bridge",
    // netfilter, as Debian's iptables (nft backend) uses it
    "nf_tables",
    "nft_compat",
    "nft_chain_nat",
    "xt_nat",
    "xt_MASQUERADE",
    "xt_addrtype",
    "xt_comment",
    "xt_tcpudp",
    // traffic control; and step 8's uploads shaped on the host: an ifb
    // device, fed by an ingress qdisc's u32 filter and mirred action
    "sch_tbf",
    "ifb",
    "sch_ingress",
    "cls_u32",
    "act_mirred",
    // the tap device pasta makes in a rootless container (step 8)
    "tun",
    // fuse-overlayfs, a rootless root's fallback (step 9)
    "fuse",
];

/// Tests the VM lane leaves to the host, and why. Each checks bytes in
/// user space (decompression, a tar's entries before anything is unpacked,
/// an HTTP client's deadlines, a daemon's memory while streaming, the
/// registry's and the daemon's HTTP answers when no container runs), which
/// behave the same under any kernel, and costs up to two minutes under
/// emulation (sha256 and inflate run 7-16× slower there). Every test that
/// mounts, clones, limits or wires something runs in both lanes. A name
/// here that no longer exists stops the lane (see [`check_host_only`]).
const HOST_ONLY: &[(&str, &str)] = &[
    ("step9", "a_decompression_bomb_is_refused"),
    ("step9", "a_gzip_stream_going_on_after_its_tar_is_refused"),
    ("step9", "a_zstd_stream_going_on_after_its_tar_is_refused"),
    ("step9", "a_whiteout_of_the_parent_directory_is_refused"),
    ("step9", "zstd_compressed_layers_load_and_run"),
    ("step10", "a_registry_that_drips_bytes_meets_a_deadline"),
    (
        "step10",
        "a_registry_cannot_make_a_pull_open_thousands_of_downloads",
    ),
    ("step10", "a_tampered_blob_is_refused_and_nothing_is_stored"),
    ("step11", "the_logs_of_a_huge_log_keep_the_daemon_small"),
    // The registry of your own, and the daemon's answers without a
    // container: HTTP on loopback.
    ("step11", "a_registry_of_your_own_serves_a_stores_images"),
    (
        "step11",
        "hostile_pushes_are_refused_with_the_specs_codes_and_leave_nothing_behind",
    ),
    (
        "step11",
        "skopeo_pushes_to_caixas_registry_and_pulls_back_the_same_manifest",
    ),
    ("step11", "the_docker_cli_gets_tokens_through_the_daemon"),
    (
        "step11",
        "the_registry_answers_a_blob_head_without_reading_the_blob",
    ),
    (
        "step11",
        "the_registry_asks_for_credentials_when_given_an_htpasswd_file",
    ),
    (
        "step11",
        "the_registry_caps_its_connections_and_lets_idle_ones_go",
    ),
    (
        "step11",
        "the_registry_checks_names_before_it_looks_anything_up",
    ),
    (
        "step11",
        "the_registry_grants_tokens_per_repository_and_action",
    ),
    ("step11", "the_daemon_survives_bad_clients"),
];

/// Test threads per binary in the VM: its two CPUs, as on the host. The
/// engine's tests spend most of their time waiting (on daemons, shims and
/// sleeps), so two at a time nearly halve step 11's time.
const VM_TEST_THREADS: u32 = 2;

/// `cargo xtask vm-test [--steps 4,6,7] [--kernel DIR] [--timeout-min N]`
pub fn run(root: &Path, steps: &[u32], kernel: Option<PathBuf>, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let qemu = "qemu-system-x86_64";
    if Command::new(qemu).arg("--version").output().is_err() {
        bail!("{qemu} is not installed: sudo apt-get install qemu-system-x86");
    }
    if std::env::consts::ARCH != "x86_64" {
        bail!(
            "vm-test boots an x86_64 kernel; this machine is {}",
            std::env::consts::ARCH
        );
    }
    let work = root.join("target/vm");
    std::fs::create_dir_all(&work)?;
    let kernel = match kernel {
        Some(dir) => dir,
        None => fetch_kernel(&work.join("kernel"))?,
    };

    // The test binaries and the static probe, built on the host.
    let tests = build_tests(root, steps)?;
    check_host_only(&tests)?;
    let probe = build_probe(root)?;

    let Booted {
        out,
        timed_out,
        console: console_text,
    } = run_in_vm(root, &work, &kernel, &tests, &probe, true, timeout)?;
    // Every log first, also those of a step cut short: which tests ended
    // tells which one hung.
    let mut failed = Vec::new();
    for (name, _) in &tests {
        let Ok(log) = std::fs::read_to_string(out.join(format!("{name}.log"))) else {
            failed.push(format!("{name} (did not start)"));
            continue;
        };
        let rc = std::fs::read_to_string(out.join(format!("{name}.rc"))).ok();
        println!("\n==> [vm, cgroup v2] {name}\n{}", log.trim_end());
        match rc.as_deref().map(str::trim) {
            Some("0") => {}
            Some(code) => failed.push(format!("{name} (exit {code})")),
            None => failed.push(format!("{name} (did not finish: the VM ended during it)")),
        }
    }
    if timed_out {
        bail!(
            "the VM did not finish within {timeout:?} and was killed; its console ended with:\n{}",
            console_story(&console_text)
        );
    }
    let hierarchy = std::fs::read_to_string(out.join("cgroup.txt")).unwrap_or_default();
    println!("\nvm-test: guest cgroup root offered: {}", hierarchy.trim());
    if !failed.is_empty() {
        bail!(
            "in the VM, failed: {}\nconsole (last lines):\n{}",
            failed.join(", "),
            console_story(&console_text)
        );
    }
    println!(
        "vm-test: every test passed in the VM ({:.0} s in all)",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What one lane run left: the directory of each binary's `NAME.log` and
/// `NAME.rc`, whether the deadline killed the VM, and its console.
pub struct Booted {
    pub out: PathBuf,
    pub timed_out: bool,
    pub console: String,
}

/// Boots the kernel in `kernel` with `tests` (built on the host, run with
/// `root` as their working directory) until they have all run or `timeout`
/// passed, using `work` for the VM's files. With `skip_host_only`, the
/// [`HOST_ONLY`] tests are skipped (the lane); without, every test runs
/// (grading, where a skipped test would count as failed).
pub fn run_in_vm(
    root: &Path,
    work: &Path,
    kernel: &Path,
    tests: &[(String, PathBuf)],
    probe: &Path,
    skip_host_only: bool,
    timeout: Duration,
) -> Result<Booted> {
    let qemu = "qemu-system-x86_64";
    let vmlinux = kernel.join("vmlinux");
    let modules = modules_dir(kernel)?;
    std::fs::create_dir_all(work)?;
    let disk = work.join("scratch.img");
    let out = work.join("out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let stage2 = work.join("stage2.sh");
    std::fs::write(
        &stage2,
        stage2_script(root, &out, tests, probe, skip_host_only),
    )?;
    let initrd = work.join("initrd.cpio");
    write_initramfs(&initrd, &modules, &stage2)?;

    // One boot runs every step that has no exit code yet. A guest kernel
    // that panics (a soft lockup panics, see `boot`) ends the VM at once;
    // the steps from the one it cut on then run again in a fresh VM, once,
    // and the lane says so with the kernel's own words: a kernel fault
    // under emulation is not a test result, but it is never hidden.
    let deadline = Instant::now() + timeout;
    let mut boots = 0;
    let (timed_out, console) = loop {
        boots += 1;
        scratch_disk(work, &disk)?;
        println!(
            "\n==> booting {} under QEMU (TCG), running {} test binaries from {}",
            vmlinux.display(),
            tests.len(),
            root.display()
        );
        let (end, console_text) = boot(qemu, work, &vmlinux, &initrd, &out, &disk, deadline)?;
        let timed_out = end == BootEnd::Deadline;
        let cut = tests
            .iter()
            .find(|(name, _)| !out.join(format!("{name}.rc")).exists());
        match cut {
            Some(_) if end == BootEnd::Stalled && boots < 2 => {
                println!(
                    "vm-test: the guest did not reach its tests within {BOOT_LIMIT:?} of booting (a boot takes seconds): QEMU was killed, and one fresh VM boots again. What it printed:\n{}",
                    console_story(&console_text)
                );
            }
            Some((name, _)) if !timed_out && boots < 2 && console_text.contains("Kernel panic") => {
                println!(
                    "vm-test: the guest kernel panicked before {name} finished; the steps from {name} on run again in a fresh VM (once). The guest's console:\n{}",
                    console_story(&console_text)
                );
                let log = out.join(format!("{name}.log"));
                if let Ok(text) = std::fs::read_to_string(&log) {
                    println!(
                        "\n==> [vm, cgroup v2] {name}, cut short by the panic\n{}",
                        text.trim_end()
                    );
                    let _ = std::fs::remove_file(&log);
                }
            }
            _ => break (timed_out, console_text),
        }
    };
    Ok(Booted {
        out,
        timed_out,
        console,
    })
}

/// A fresh scratch disk: the I/O-throttle test needs a real block device.
fn scratch_disk(work: &Path, disk: &Path) -> Result<()> {
    let _ = std::fs::remove_file(disk);
    std::fs::File::create(disk)?.set_len(512 << 20)?;
    crate::sh(
        work,
        "mkfs.ext4",
        &["-q", "-F", disk.to_str().context("utf-8 path")?],
    )
}

/// How long a boot may take to reach the first test. Under emulation the
/// guest reaches it in seconds; a guest still silent after this long is
/// stuck (a CI run once waited out the whole 45-minute deadline on a guest
/// that never printed a line), and one fresh boot is cheaper than the wait.
const BOOT_LIMIT: Duration = Duration::from_secs(600);

/// The line the guest's second stage prints on its console once it runs on
/// the shared root: past it, the boot is over and only tests run.
const STAGE2_MARK: &str = "caixa-vm: stage 2 on the shared root";

/// How one boot ended.
#[derive(Debug, PartialEq, Eq)]
enum BootEnd {
    /// The guest powered off (or QEMU exited).
    PoweredOff,
    /// The overall deadline passed; QEMU was killed.
    Deadline,
    /// The guest did not reach its second stage within [`BOOT_LIMIT`];
    /// QEMU was killed.
    Stalled,
}

/// Boots the VM once, until it powers off, stalls before its tests, or
/// `deadline`; says how it ended, and what its console printed, followed
/// by anything QEMU itself said on stderr.
fn boot(
    qemu: &str,
    work: &Path,
    vmlinux: &Path,
    initrd: &Path,
    out: &Path,
    disk: &Path,
    deadline: Instant,
) -> Result<(BootEnd, String)> {
    let console = work.join("console.log");
    let qemu_err = work.join("qemu.stderr");
    let bios = Path::new("/usr/share/qemu/qboot.rom");
    let mut cmd = Command::new(qemu);
    cmd.args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2G"])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-nic",
            "none",
        ]);
    if bios.exists() {
        cmd.arg("-bios").arg(bios);
    }
    cmd.arg("-kernel")
        .arg(vmlinux)
        .arg("-initrd")
        .arg(initrd)
        // A kernel stuck in a loop (a soft lockup) panics, and `panic=-1`
        // ends the VM at once: the lane fails in a minute with the stack
        // on the console instead of waiting out its whole timeout.
        .args([
            "-append",
            "console=ttyS0 panic=-1 softlockup_panic=1 quiet",
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-virtfs")
        .arg("local,path=/,mount_tag=host0,security_model=passthrough,readonly=on,multidevs=remap,id=host0")
        .arg("-virtfs")
        .arg(format!("local,path={},mount_tag=out0,security_model=passthrough,id=out0", out.display()))
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw", disk.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // A file, not a pipe: nobody reads a pipe while QEMU runs, and a
        // full one would stop QEMU at its next warning.
        .stderr(std::fs::File::create(&qemu_err)?);
    let booted = Instant::now();
    let mut child = cmd.spawn().context("cannot start QEMU")?;
    let mut reached_stage2 = false;
    let end = loop {
        if child.try_wait()?.is_some() {
            break BootEnd::PoweredOff;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break BootEnd::Deadline;
        }
        if !reached_stage2 && booted.elapsed() > BOOT_LIMIT {
            reached_stage2 =
                std::fs::read_to_string(&console).is_ok_and(|text| text.contains(STAGE2_MARK));
            if !reached_stage2 {
                let _ = child.kill();
                let _ = child.wait();
                break BootEnd::Stalled;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut console_text = std::fs::read_to_string(&console).unwrap_or_default();
    if end == BootEnd::Stalled {
        console_text.push_str(&format!(
            "\n[xtask] no '{STAGE2_MARK}' within {BOOT_LIMIT:?} of booting: QEMU was killed"
        ));
    }
    let said = std::fs::read_to_string(&qemu_err).unwrap_or_default();
    if !said.trim().is_empty() {
        console_text.push_str("\n[QEMU's stderr]\n");
        console_text.push_str(said.trim_end());
    }
    Ok((end, console_text))
}

/// What a reader of a failed lane needs from the guest's console: the first
/// kernel complaint (a soft lockup, an oops, a panic) with the stack under
/// it, then the last lines.
fn console_story(console: &str) -> String {
    let lines: Vec<&str> = console.lines().collect();
    let last = lines[lines.len().saturating_sub(30)..].join("\n");
    let complaint = lines.iter().position(|l| {
        ["BUG:", "Oops", "Kernel panic", "WARNING:", "INFO: task"]
            .iter()
            .any(|mark| l.contains(mark))
    });
    match complaint {
        Some(first) if first + 60 < lines.len().saturating_sub(30) => {
            format!("{}\n[…]\n{last}", lines[first..first + 60].join("\n"))
        }
        Some(first) => lines[first.min(lines.len().saturating_sub(30))..].join("\n"),
        None => last,
    }
}

/// Downloads Debian's amd64 kernel package into `dir` (once) and extracts
/// an uncompressed `vmlinux` (decompressing at each boot costs ~3 s in TCG).
pub(crate) fn fetch_kernel(dir: &Path) -> Result<PathBuf> {
    if dir.join("vmlinux").exists() && dir.join("lib/modules").exists() {
        return Ok(dir.to_path_buf());
    }
    std::fs::create_dir_all(dir)?;
    let depends = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()?;
    let text = String::from_utf8_lossy(&depends.stdout);
    let package = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .map(str::trim)
        .filter(|p| p.starts_with("linux-image-"))
        .context("apt-cache depends linux-image-amd64 named no kernel package: run apt-get update")?
        .to_string();
    println!(
        "==> fetching {package} (not installed: unpacked into {})",
        dir.display()
    );
    crate::sh(dir, "apt-get", &["download", "-q", &package])?;
    let deb = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    crate::sh(
        dir,
        "dpkg-deb",
        &["-x", deb.to_str().context("utf-8")?, "."],
    )?;
    let vmlinuz = std::fs::read_dir(dir.join("boot"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .context("no boot/vmlinuz-* in the package")?;
    let image = std::fs::read(&vmlinuz)?;
    let magic = b"\xfd7zXZ\x00";
    let offset = image
        .windows(magic.len())
        .position(|w| w == magic)
        .context("no XZ stream in the kernel image")?;
    let mut xz = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(dir.join("vmlinux"))?)
        .spawn()
        .context("cannot run xz: sudo apt-get install xz-utils")?;
    // xz stops reading at the end of the stream (the image goes on after
    // it): a broken pipe here is expected.
    let _ = std::io::Write::write_all(xz.stdin.as_mut().context("xz stdin")?, &image[offset..]);
    drop(xz.stdin.take());
    if !xz.wait()?.success() {
        bail!("xz could not decompress {}", vmlinuz.display());
    }
    let _ = std::fs::remove_file(deb);
    Ok(dir.to_path_buf())
}

fn modules_dir(kernel: &Path) -> Result<PathBuf> {
    let base = kernel.join("lib/modules");
    let version = std::fs::read_dir(&base)
        .with_context(|| format!("no {}", base.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .context("no kernel version under lib/modules")?;
    Ok(version)
}

/// Builds the test binaries of `steps` and returns (name, executable).
fn build_tests(root: &Path, steps: &[u32]) -> Result<Vec<(String, PathBuf)>> {
    let names: Vec<String> = steps.iter().map(|s| format!("step{s}")).collect();
    build_test_binaries(root, &names, false)
}

/// Builds the test binaries `names` (`step1`, …, `errors`) of the checkout
/// in `dir` and returns (name, executable). With `own_target`, in `dir`'s
/// own `target/` whatever `CARGO_TARGET_DIR` says: a test binary names the
/// step binaries it runs by absolute path, so two checkouts built into one
/// target directory would run each other's.
pub(crate) fn build_test_binaries(
    dir: &Path,
    names: &[String],
    own_target: bool,
) -> Result<Vec<(String, PathBuf)>> {
    let mut args = vec![
        "test".to_string(),
        "--no-run".into(),
        "--message-format=json".into(),
    ];
    for name in names {
        args.push("--test".into());
        args.push(name.clone());
    }
    let mut cargo = Command::new("cargo");
    cargo.args(&args).current_dir(dir).stderr(Stdio::inherit());
    if own_target {
        cargo.env_remove("CARGO_TARGET_DIR");
    }
    let out = cargo.output()?;
    if !out.status.success() {
        bail!("cargo test --no-run failed in {}", dir.display());
    }
    let mut tests = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] == "compiler-artifact"
            && v["target"]["kind"][0] == "test"
            && let (Some(name), Some(exe)) =
                (v["target"]["name"].as_str(), v["executable"].as_str())
        {
            tests.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    tests.sort();
    Ok(tests)
}

/// Stops the lane when a [`HOST_ONLY`] name is not a test of its binary
/// any more (renamed or gone): `--skip` would skip nothing, silently.
pub(crate) fn check_host_only(tests: &[(String, PathBuf)]) -> Result<()> {
    for (name, exe) in tests {
        let listed = Command::new(exe)
            .args(["--list", "--format", "terse"])
            .output()
            .with_context(|| format!("cannot list the tests of {}", exe.display()))?;
        let listed = String::from_utf8_lossy(&listed.stdout);
        for (_, test) in HOST_ONLY.iter().filter(|(binary, _)| binary == name) {
            if !listed.lines().any(|l| l == format!("{test}: test")) {
                bail!(
                    "xtask/src/vm.rs: HOST_ONLY names {name}'s test {test}, which does not exist: rename it there too, or remove it"
                );
            }
        }
    }
    Ok(())
}

/// The static probe the step 6/7 tests copy into their rootfs; built here so
/// the tests in the VM need not run cargo (slow under emulation).
pub(crate) fn build_probe(root: &Path) -> Result<PathBuf> {
    let target_dir = root.join("target/tmp/probe-target");
    let triple = "x86_64-unknown-linux-gnu";
    let status = Command::new("cargo")
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "caixa-probe",
            "--target",
            triple,
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(root)
        .status()?;
    if !status.success() {
        bail!("building the static probe failed (sudo apt-get install libc6-dev)");
    }
    Ok(target_dir.join(triple).join("release/caixa-probe"))
}

/// The second stage, run by the guest from the shared host filesystem after
/// `switch_root` into the overlay: pseudo filesystems, cgroup2 with every
/// controller handed down, the scratch disk, then each test binary.
fn stage2_script(
    root: &Path,
    out: &Path,
    tests: &[(String, PathBuf)],
    probe: &Path,
    skip_host_only: bool,
) -> String {
    let mut s = format!(
        r#"#!/bin/sh
# Written by `cargo xtask vm-test`; runs as pid 1 inside the VM.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
echo '{STAGE2_MARK}' > /dev/console
mount -t cgroup2 none /sys/fs/cgroup
cat /sys/fs/cgroup/cgroup.controllers > {out}/cgroup.txt
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control; done
ip link set lo up 2>/dev/null
mkdir -p /var/tmp/caixa-vm
mount -t ext4 /dev/vda /var/tmp/caixa-vm && chmod 1777 /var/tmp/caixa-vm
export TMPDIR=/var/tmp/caixa-vm CAIXA_TEST_CACHE_DIR=/var/tmp/caixa-vm/caixa-cache CAIXA_PROBE={probe} RUST_BACKTRACE=1
cd {root}
"#,
        out = out.display(),
        probe = probe.display(),
        root = root.display()
    );
    for (name, exe) in tests {
        let skips: String = HOST_ONLY
            .iter()
            .filter(|(binary, _)| skip_host_only && binary == name)
            .map(|(_, test)| format!(" --skip {test}"))
            .collect();
        // A step with an exit code already ran in an earlier boot (one
        // that panicked later): it is not run again.
        // `--report-time` prints each test's time, so the lane's cost can be
        // read off its log; libtest allows it when RUSTC_BOOTSTRAP is set.
        // `--include-ignored`: the harder exercises' tests, `#[ignore]`d so
        // a plain `cargo test` leaves them out, run here (pure cgroup v2).
        s.push_str(&format!(
            "if [ ! -e {out}/{name}.rc ]; then\necho '== {name}' > /dev/console\n{exe} --list --format terse > {out}/{name}.list 2>/dev/null\nRUSTC_BOOTSTRAP=1 {exe} --test-threads {VM_TEST_THREADS} --include-ignored --exact{skips} -Z unstable-options --report-time > {out}/{name}.log 2>&1\necho $? > {out}/{name}.rc\ngrep -E '^(MemAvailable|Shmem):' /proc/meminfo | tr -s ' ' > /dev/console\nfi\n",
            exe = exe.display(),
            out = out.display(),
        ));
    }
    s.push_str("sync\necho o > /proc/sysrq-trigger\nsleep 10\n");
    s
}

/// Each needed module and its dependencies, dependencies first.
fn module_load_order(modules: &Path) -> Result<Vec<PathBuf>> {
    let mut by_name = BTreeMap::new();
    let mut stack = vec![modules.join("kernel")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ko"))
            {
                by_name.insert(name.replace('-', "_"), path);
            }
        }
    }
    fn visit(
        name: &str,
        by_name: &BTreeMap<String, PathBuf>,
        order: &mut Vec<PathBuf>,
    ) -> Result<()> {
        let key = name.replace('-', "_");
        let Some(path) = by_name.get(&key) else {
            return Ok(()); // built into this kernel
        };
        if order.contains(path) {
            return Ok(());
        }
        let bytes = std::fs::read(path)?;
        let marker = b"depends=";
        if let Some(at) = bytes.windows(marker.len()).position(|w| w == marker) {
            let rest = &bytes[at + marker.len()..];
            let end = rest.iter().position(|b| *b == 0).unwrap_or(0);
            for dep in String::from_utf8_lossy(&rest[..end])
                .split(',')
                .filter(|d| !d.is_empty())
            {
                visit(dep, by_name, order)?;
            }
        }
        order.push(path.clone());
        Ok(())
    }
    let mut order = Vec::new();
    for m in MODULES {
        visit(m, &by_name, &mut order)?;
    }
    Ok(order)
}

/// The initramfs: a static busybox, the modules, and an `/init` that mounts
/// the host's `/` (9p, read-only) under a tmpfs overlay and switches into it.
fn write_initramfs(path: &Path, modules: &Path, stage2: &Path) -> Result<()> {
    let busybox = caixa::rootfs::busybox::find_static_busybox()?;
    let mut cpio = Cpio::default();
    for dir in [
        "bin", "dev", "proc", "sys", "lower", "upper", "newroot", "modules",
    ] {
        cpio.dir(dir);
    }
    cpio.file("bin/busybox", &std::fs::read(busybox)?, 0o755);
    cpio.symlink("bin/sh", "busybox");
    let order = module_load_order(modules)?;
    for (i, module) in order.iter().enumerate() {
        let name = module
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("m.ko");
        cpio.file(
            &format!("modules/{i:02}-{name}"),
            &std::fs::read(module)?,
            0o644,
        );
    }
    let init = format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# Its output goes to the console the kernel opened for init (the node in
# its own initramfs, not this devtmpfs, which must come off again below).
echo "caixa-vm: init: loading modules"
for m in /modules/*.ko; do insmod "$m" 2>/dev/null || echo "insmod $m failed"; done
echo "caixa-vm: init: mounting the host's root"
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose host0 /lower || echo "9p mount failed"
mount -t tmpfs tmpfs /upper
mkdir -p /upper/upper /upper/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/upper,workdir=/upper/work /newroot || echo "overlay failed"
OUT=$(dirname {stage2})/out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out0 /newroot$OUT || echo "out share failed"
echo "caixa-vm: init: switching root"
umount /proc /sys /dev
exec switch_root /newroot /bin/sh {stage2}
"#,
        stage2 = stage2.display()
    );
    cpio.file("init", init.as_bytes(), 0o755);
    std::fs::write(path, cpio.finish())?;
    Ok(())
}

/// A minimal writer of the "newc" cpio format the kernel unpacks.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[]);
    }

    fn file(&mut self, name: &str, data: &[u8], perm: u32) {
        self.entry(name, 0o100000 | perm, data);
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120777, target.as_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.out
    }
}
