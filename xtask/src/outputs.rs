//! `outputs`: the book shows real output of real runs, regenerated here so it
//! never rots. `--check` regenerates into memory and compares with the files,
//! with every number masked (pids and timings differ from run to run).

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// (file name, step binary, arguments) of every output the book includes.
pub const OUTPUTS: &[(&str, &str, &[&str])] = &[
    (
        "step1",
        "step1",
        &["-v", "sh", "-c", "echo \"inside, my pid is $$\""],
    ),
    (
        "step1-proc",
        "step1",
        &[
            "sh",
            "-c",
            "echo \"my pid: $$\"; echo \"but /proc/self says: $(readlink /proc/self)\"",
        ],
    ),
    ("step2", "step2", &["ip", "link"]),
    ("step3", "step3", &["cat", "/proc/sysvipc/shm"]),
    ("step4", "step4", &["-v", "sh", "-c", "ps; ls /"]),
    ("step4-mounts", "step4", &["cat", "/proc/self/mounts"]),
    ("step5", "step5", &["--hostname", "caixa", "-v", "hostname"]),
    (
        "step6",
        "step6",
        &[
            "--hostname",
            "caixa",
            "-v",
            "sh",
            "-c",
            "id; cat /proc/self/uid_map; grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status",
        ],
    ),
    (
        "step7",
        "step7",
        &[
            "-v",
            "--hostname",
            "caixa",
            "--memory",
            "32m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "20",
            "sh",
            "-c",
            "grep caixa /proc/self/cgroup",
        ],
    ),
    (
        "step7-oom",
        "step7",
        &[
            "--memory",
            "32m",
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=100M",
            "count=1",
        ],
    ),
    (
        "step8",
        "step8",
        &[
            "-v",
            "--hostname",
            "caixa",
            "-p",
            "8080:80",
            "sh",
            "-c",
            "ip -4 -o addr show eth0; ip route; cat /etc/hosts",
        ],
    ),
    (
        "step9-load",
        "step9",
        &[
            "--root",
            "{store}",
            "load",
            "{layout}",
            "--name",
            "busybox:1",
        ],
    ),
    ("step9-images", "step9", &["--root", "{store}", "images"]),
    (
        "step9-run",
        "step9",
        &[
            "--root",
            "{store}",
            "run",
            "-v",
            "--hostname",
            "caixa",
            "busybox:1",
            "sh",
            "-c",
            "echo hello from an image; ls /",
        ],
    ),
    (
        "step6-denied",
        "step6",
        &[
            "sh",
            "-c",
            "mount -t tmpfs none /mnt; unshare -U true; echo exit=$?",
        ],
    ),
    ("step12-features", "step12", &["features"]),
];

/// (file name, step binary, arguments) of the outputs run as an ordinary
/// user: rootless starts (book: step 6), by uid [`ROOTLESS_UID`] when this
/// runs as root, else by whoever runs it.
pub const ROOTLESS_OUTPUTS: &[(&str, &str, &[&str])] = &[(
    "step6-rootless",
    "step6",
    &["-v", "sh", "-c", "id; cat /proc/self/uid_map"],
)];

/// The ordinary user of [`ROOTLESS_OUTPUTS`] when this runs as root: a uid
/// no account uses (the graded tests' rootless user too).
const ROOTLESS_UID: u32 = 54_321;

/// Regenerates every output (or, with `check`, compares them).
pub fn run(root: &Path, check: bool) -> Result<()> {
    let dir = root.join("book/src/outputs");
    std::fs::create_dir_all(&dir)?;
    // The spine's pictures come from a source file, not a run: exact.
    let mut stale = Vec::new();
    for (name, fresh) in crate::spine::pictures(root)? {
        let path = dir.join(&name);
        if !check {
            std::fs::write(&path, &fresh)?;
        } else if std::fs::read_to_string(&path).unwrap_or_default() != fresh {
            stale.push(format!(
                "{} differs from what {} gives",
                path.display(),
                crate::spine::SOURCE
            ));
        }
    }
    crate::sh(root, "cargo", &["build", "--quiet", "--bins"])?;
    let scratch = std::env::temp_dir().join(format!("caixa-outputs-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    // Build the default rootfs first, so no output shows the one-time
    // "building the default root filesystem" line.
    capture(
        &root.join("target/debug/step4"),
        &["true"],
        &scratch.join("warm-up"),
    )?;
    capture(
        &root.join("target/debug/step6"),
        &["true"],
        &scratch.join("warm-up"),
    )?;
    // Step 9 needs an image: made from the default rootfs with umoci, the
    // way the chapter shows, into a store of this run's own.
    let (store, layout) = (scratch.join("store"), scratch.join("image"));
    make_image(&layout)?;
    for (name, step, args) in OUTPUTS {
        let fresh = scratch.join(format!("{name}.txt"));
        let store_s = store.to_string_lossy();
        let layout_s = layout.to_string_lossy();
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("{store}", &store_s)
                    .replace("{layout}", &layout_s)
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        capture(&root.join("target/debug").join(step), &args, &fresh)?;
        compare_or_copy(&fresh, &dir.join(format!("{name}.txt")), check, &mut stale)?;
    }
    // Rootless: the same binaries, started by an ordinary user.
    let user = Rootless::new(root, &scratch.join("rootless"))?;
    for (_, step, _) in ROOTLESS_OUTPUTS {
        // The user's own default rootfs first, as above.
        user.capture(step, &["true"], &scratch.join("warm-up"))?;
    }
    for (name, step, args) in ROOTLESS_OUTPUTS {
        let fresh = scratch.join(format!("{name}.txt"));
        user.capture(step, args, &fresh)?;
        compare_or_copy(&fresh, &dir.join(format!("{name}.txt")), check, &mut stale)?;
    }
    // Steps 10 and 11: sessions of many commands, each part a file.
    // (Outside /tmp: the sessions mount a fresh /tmp of their own.)
    let sessions = root.join("target/outputs-sessions");
    let _ = std::fs::remove_dir_all(&sessions);
    std::fs::create_dir_all(&sessions)?;
    for parts in [
        crate::transcripts::STEP9,
        crate::transcripts::STEP10,
        crate::transcripts::STEP11,
    ] {
        crate::transcripts::run(root, parts, &sessions, is_root())?;
        for part in parts {
            let name = format!("{}.txt", part.file);
            compare_or_copy(&sessions.join(&name), &dir.join(&name), check, &mut stale)?;
        }
    }
    // A file no run writes is output nobody can make again.
    if check {
        let mut written: Vec<String> = OUTPUTS
            .iter()
            .chain(ROOTLESS_OUTPUTS)
            .map(|(name, ..)| format!("{name}.txt"))
            .collect();
        for parts in [
            crate::transcripts::STEP9,
            crate::transcripts::STEP10,
            crate::transcripts::STEP11,
        ] {
            written.extend(parts.iter().map(|part| format!("{}.txt", part.file)));
        }
        written.extend(
            crate::spine::pictures(root)?
                .into_iter()
                .map(|(name, _)| name),
        );
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if !written.contains(&name) {
                stale.push(format!(
                    "{}: no run of `cargo xtask outputs` writes it: make it a run there, or remove it",
                    dir.join(&name).display()
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let _ = std::fs::remove_dir_all(&sessions);
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("caixa-outputs-state-{}", std::process::id())),
    );
    if !stale.is_empty() {
        bail!(
            "the book's outputs are stale: run `cargo xtask outputs` and commit\n{}",
            stale.join("\n")
        );
    }
    println!(
        "outputs: {} files, {} transcripts and {} spine pictures {}",
        OUTPUTS.len() + ROOTLESS_OUTPUTS.len(),
        crate::transcripts::STEP9.len()
            + crate::transcripts::STEP10.len()
            + crate::transcripts::STEP11.len(),
        crate::spine::LAST,
        if check { "match the code" } else { "written" }
    );
    Ok(())
}

/// With `check`, notes in `stale` when `path` no longer matches `fresh`
/// (numbers masked, lines in any order); without, copies `fresh` there.
fn compare_or_copy(fresh: &Path, path: &Path, check: bool, stale: &mut Vec<String>) -> Result<()> {
    if !check {
        std::fs::copy(fresh, path)?;
        return Ok(());
    }
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = std::fs::read_to_string(fresh)?;
    if comparable(&old) != comparable(&new) {
        stale.push(format!(
            "{}:\n--- committed\n{old}--- now\n{new}",
            path.display()
        ));
    }
    Ok(())
}

/// Runs the step binary (through sudo when we are not root) with stdout and
/// stderr into one file, interleaved as a terminal would show them.
fn capture(binary: &Path, args: &[&str], out: &Path) -> Result<()> {
    let mut cmd = if is_root() {
        Command::new(binary)
    } else {
        let mut c = Command::new("sudo");
        c.arg("-E").arg(binary);
        c
    };
    // Step 8 and 9 make a bridge and rules: in a network namespace of
    // their own, never on the machine's own network.
    if binary.ends_with("step8") || binary.ends_with("step9") {
        let state =
            std::env::temp_dir().join(format!("caixa-outputs-state-{}", std::process::id()));
        cmd = if is_root() {
            Command::new("unshare")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-E", "unshare"]);
            c
        };
        cmd.arg("--net").arg("--").arg(binary);
        cmd.env("CAIXA_STATE_DIR", state);
    }
    let status = run_into(cmd.args(args), out)
        .with_context(|| format!("cannot run {}", binary.display()))?;
    // The OOM example ends with 137 on purpose.
    if !status.success() && status.code() != Some(137) {
        bail!("{} {} failed: {status}", binary.display(), args.join(" "));
    }
    Ok(())
}

/// Runs `cmd` with no input, its stdout and stderr into the file `out`,
/// interleaved as a terminal would show them.
fn run_into(cmd: &mut Command, out: &Path) -> Result<std::process::ExitStatus> {
    let file = File::create(out)?;
    Ok(cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()?)
}

/// An ordinary user for [`ROOTLESS_OUTPUTS`]: as root, uid [`ROOTLESS_UID`]
/// with a home and a runtime directory in `dir` and copies of the step
/// binaries it may run (the checkout may be private to root); else the
/// user running this, as they are.
struct Rootless {
    /// `target/debug` of the checkout.
    binaries: std::path::PathBuf,
    /// The user's directory (`home`, `run`, `bin`), when we are root.
    dir: Option<std::path::PathBuf>,
}

impl Rootless {
    fn new(root: &Path, dir: &Path) -> Result<Rootless> {
        let binaries = root.join("target/debug");
        if !is_root() {
            return Ok(Rootless {
                binaries,
                dir: None,
            });
        }
        for sub in ["", "home", "run", "bin"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path)?;
            std::os::unix::fs::chown(&path, Some(ROOTLESS_UID), Some(ROOTLESS_UID))?;
        }
        Ok(Rootless {
            binaries,
            dir: Some(dir.to_path_buf()),
        })
    }

    /// Runs `step` with `args` as the user, its stdout and stderr into `out`.
    fn capture(&self, step: &str, args: &[&str], out: &Path) -> Result<()> {
        let binary = self.binaries.join(step);
        let mut cmd = match &self.dir {
            None => Command::new(&binary),
            Some(dir) => {
                let copy = dir.join("bin").join(step);
                if !copy.exists() {
                    std::fs::copy(&binary, &copy)?;
                }
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={ROOTLESS_UID}"))
                    .arg(format!("--regid={ROOTLESS_UID}"))
                    .args(["--clear-groups", "env", "-i"])
                    .arg("PATH=/usr/local/bin:/usr/bin:/bin")
                    .arg(format!("HOME={}", dir.join("home").display()))
                    .arg(format!("XDG_RUNTIME_DIR={}", dir.join("run").display()))
                    .arg(copy);
                c
            }
        };
        let status = run_into(cmd.args(args), out)
            .with_context(|| format!("cannot run {step} as an ordinary user (setpriv)"))?;
        if !status.success() {
            bail!(
                "{step} {} as an ordinary user failed: {status}",
                args.join(" ")
            );
        }
        Ok(())
    }
}

/// An OCI layout of the default busybox rootfs, made with umoci.
fn make_image(layout: &Path) -> Result<()> {
    let rootfs = std::env::var_os("CAIXA_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/cache/caixa".into())
        .join("busybox-rootfs");
    let bundle = layout.with_extension("bundle");
    let image = format!("{}:base", layout.display());
    let script = format!(
        "set -e; umoci init --layout {l}; umoci new --image {i}; umoci unpack --image {i} {b}; \
         cp -a {r}/. {b}/rootfs/; umoci repack --image {i} {b}",
        l = layout.display(),
        i = image,
        b = bundle.display(),
        r = rootfs.display()
    );
    let mut cmd = if is_root() {
        Command::new("sh")
    } else {
        let mut c = Command::new("sudo");
        c.arg("sh");
        c
    };
    let status = cmd
        .args(["-c", &script])
        .stdout(Stdio::null())
        .status()
        .context("cannot run umoci: sudo apt-get install umoci")?;
    if !status.success() {
        bail!("making the step 9 example image with umoci failed (sudo apt-get install umoci)");
    }
    Ok(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// The lines of an output, numbers and dates masked, sorted: the parent's
/// and the container's lines may interleave differently from run to run.
/// Each line is trimmed too: a column of numbers is padded on the left to
/// its widest value, so `ps` starts a line with a space when the pids have
/// four digits and without one when they have five.
fn comparable(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(|line| mask_numbers(&mask_calendar(line)).trim().to_string())
        .collect();
    lines.sort();
    lines
}

/// The line with the names of months and weekdays (`ls -l`, `date`,
/// HTTP's `Date:`) as `#`: they change from run to run like the numbers.
fn mask_calendar(line: &str) -> String {
    const NAMES: &[&str] = &[
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Mon",
        "Tue", "Wed", "Thu", "Fri", "Sat", "Sun",
    ];
    let mut out = String::with_capacity(line.len());
    let mut word = String::new();
    for c in line.chars().chain(std::iter::once('\n')) {
        if c.is_ascii_alphabetic() {
            word.push(c);
            continue;
        }
        out.push_str(if NAMES.contains(&word.as_str()) {
            "#"
        } else {
            &word
        });
        word.clear();
        out.push(c);
    }
    out.pop();
    out
}

/// The text with every run of digits replaced by `#`, every run of spaces by
/// one space (numbers are padded to a width), and every run of 8 or more hex
/// digits (a container's random id, a veth named after it) by `#`.
fn mask_numbers(text: &str) -> String {
    let mut unmasked = String::with_capacity(text.len());
    let mut word = String::new();
    for c in text.chars().chain(std::iter::once('\n')) {
        if c.is_ascii_hexdigit() && !c.is_ascii_uppercase() {
            word.push(c);
            continue;
        }
        if word.len() >= 8 {
            unmasked.push('0');
        } else {
            unmasked.push_str(&word);
        }
        word.clear();
        unmasked.push(c);
    }
    unmasked.pop();
    let mut out = String::with_capacity(text.len());
    for c in unmasked.chars() {
        let c = if c.is_ascii_digit() { '#' } else { c };
        if (c == '#' || c == ' ') && out.ends_with(c) {
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn months_and_weekdays_are_masked_as_words() {
        assert_eq!(
            super::mask_calendar("Thu Dec  3 root Decimal"),
            "# #  3 root Decimal"
        );
    }

    #[test]
    fn a_column_padded_to_the_widest_pid_compares_equal() {
        let five = "11891 11786 11891  \\_ sh\n";
        let four = " 4566  4459  4566  \\_ sh\n";
        assert_eq!(super::comparable(five), super::comparable(four));
    }

    #[test]
    fn numbers_are_masked() {
        assert_eq!(
            super::mask_numbers("pid 1234 at   0.5 ms"),
            "pid # at #.# ms"
        );
    }
}
