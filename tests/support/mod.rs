//! Helpers for the graded tests: run a step binary as a grader would, from
//! outside, and observe it from both sides.
//!
//! Every test runs real namespaces as root. A missing prerequisite is a
//! failure that says what to install, never a silent skip.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How long any container in a test may run before the test fails.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

/// The path of step `n`'s binary, built by cargo for this test.
pub(crate) fn binary(n: u32) -> &'static str {
    match n {
        1 => env!("CARGO_BIN_EXE_step1"),
        2 => env!("CARGO_BIN_EXE_step2"),
        3 => env!("CARGO_BIN_EXE_step3"),
        4 => env!("CARGO_BIN_EXE_step4"),
        5 => env!("CARGO_BIN_EXE_step5"),
        6 => env!("CARGO_BIN_EXE_step6"),
        7 => env!("CARGO_BIN_EXE_step7"),
        8 => env!("CARGO_BIN_EXE_step8"),
        9 => env!("CARGO_BIN_EXE_step9"),
        10 => env!("CARGO_BIN_EXE_step10"),
        11 => env!("CARGO_BIN_EXE_step11"),
        12 => env!("CARGO_BIN_EXE_step12"),
        _ => panic!("no step {n} binary"),
    }
}

/// Fails the test, with what to do, unless we are root.
pub(crate) fn require_root() {
    warn_about_host_devices();
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "the graded tests create namespaces and need root: run `cargo test` with sudo \
         (the runner in .cargo/config.toml does that when sudo is installed)"
    );
}

/// The host's device nodes caixa binds into containers (step 6 on).
const BOUND_HOST_DEVICES: [&str; 6] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// Prints a warning (once per test binary, never a failure) when a host
/// device node caixa binds is not owned by root: every container's root
/// could change it then, and tests that write to `/dev/null` may fail for a
/// reason that is not theirs. A peer runtime given `/dev/null` as stdio
/// (crun 1.8.1) chowns it to a container's uid.
pub(crate) fn warn_about_host_devices() {
    use std::os::unix::fs::MetadataExt;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for path in BOUND_HOST_DEVICES {
            if let Ok(meta) = std::fs::metadata(path)
                && (meta.uid() != 0 || meta.gid() != 0)
            {
                // Straight to stderr: libtest captures `eprintln!` and
                // shows it only when a test fails.
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: host {path} is owned by {}:{}, not root; caixa binds it into \
                     containers: chown 0:0 {path}",
                    meta.uid(),
                    meta.gid()
                );
            }
        }
    });
}

/// A command for step `n` with a test-private cache for the default rootfs.
pub(crate) fn step(n: u32) -> Command {
    require_root();
    let mut cmd = Command::new(binary(n));
    cmd.env("CAIXA_CACHE_DIR", cache_dir());
    cmd
}

/// The rootfs cache the tests share (built once by the first test needing
/// it): `$CAIXA_TEST_CACHE_DIR`, else under the target directory. Steps 6-8
/// put each container's overlay beside it, so it must be on a filesystem an
/// overlay's upper directory may live on (the VM lane points it at its ext4
/// scratch disk: its root is itself an overlay).
pub(crate) fn cache_dir() -> PathBuf {
    std::env::var_os("CAIXA_TEST_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("caixa-cache"))
}

/// Runs step `n` with `args` to the end (at most [`TIMEOUT`]) and returns its output.
pub(crate) fn run(n: u32, args: &[&str]) -> Output {
    let child = step(n)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary(n)));
    wait_output(child)
}

/// Runs `cmd` with no input to the end (at most [`TIMEOUT`]), its output
/// captured.
pub(crate) fn output_of(mut cmd: Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    wait_output(child)
}

/// Waits for `child` at most [`TIMEOUT`], killing it after that. The pipes
/// are read while waiting (a thread), so a chatty child cannot block on a
/// full pipe.
pub(crate) fn wait_output(child: Child) -> Output {
    wait_output_or_explain(
        child,
        "a container that never ends is often one whose parent waits for something \
         that never comes: read the stderr above, and run the step with -v to see the \
         last thing each side did",
    )
}

/// [`wait_output`], whose failure when the child does not end says
/// `if_stuck`: what that most likely means in the test at hand.
pub(crate) fn wait_output_or_explain(child: Child, if_stuck: &str) -> Output {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.expect("wait_with_output"),
        Err(_) => {
            // SAFETY: kill(2) of our own child, which did not end in time.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let out = rx
                .recv()
                .expect("the waiting thread")
                .expect("wait_with_output");
            panic!(
                "the step binary did not end within {TIMEOUT:?} and was killed: {if_stuck}\n\
                 stdout: {}\nstderr: {}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
    }
}

/// Bytes as text, for assertions and messages.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the run succeeded, saying `what` the test ran and `if_failed`
/// (the most likely cause in the test at hand) when it did not, beside the
/// cause read from its stderr; returns its stdout.
pub(crate) fn expect_success(out: &Output, what: &str, if_failed: &str) -> String {
    let err = text(&out.stderr);
    assert!(
        out.status.success(),
        "expected {what} to succeed, it failed with {}; most likely cause: {if_failed} ({})\n\
         stdout: {}\nstderr: {err}",
        out.status,
        likely_cause(&err),
        text(&out.stdout)
    );
    text(&out.stdout)
}

/// Asserts the run succeeded and returns its stdout.
pub(crate) fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "expected the container to succeed, it failed with {}; most likely cause: {}\n\
         stdout: {}\nstderr: {}",
        out.status,
        likely_cause(&text(&out.stderr)),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The most likely cause of a failed start, read from the step's stderr:
/// a sentence for an assertion message.
pub(crate) fn likely_cause(stderr: &str) -> String {
    if let Some(line) = stderr.lines().find(|l| l.contains("not yet implemented")) {
        let todo = line
            .split_once("not yet implemented: ")
            .map_or(line, |(_, t)| t);
        return format!(
            "an exercise is still a todo!, so the container stopped there ({todo}); \
             write that region (a student copy made with `cargo xtask exercises --only N` \
             stubs only step N)"
        );
    }
    if stderr.contains("Cannot find device \"eth0\"") {
        return "the container's end of the veth pair is not in its network namespace: create \
                the pair with its peer already there, `peer name eth0 netns PID` (step 8)"
            .into();
    }
    if stderr.contains("ip -batch") && stderr.contains("Operation not supported") {
        return "ip refused a bridge port's setting (hairpin) on a link that is no port of a \
                bridge: make the host end a port first, `link set NAME master BRIDGE` (step 8)"
            .into();
    }
    if stderr.contains("whiteout") && stderr.contains("File exists") {
        return "a whiteout hides only the lower layers' NAME: when this layer has NAME already, \
                leave its file (and make its directory opaque); make the 0/0 device only where \
                nothing is (step 9)"
            .into();
    }
    if stderr.contains("panicked") {
        return "the step binary panicked: the stderr below says where".into();
    }
    if stderr.contains("pivot_root") && stderr.contains("EINVAL") {
        return "pivot_root(2) answers EINVAL when / or the rootfs is a shared mount: \
                stop_propagation_to_host must make / MS_SLAVE|MS_REC before anything else \
                (step 4)"
            .into();
    }
    if stderr.contains("pivot_root") && stderr.contains("EBUSY") {
        return "pivot_root(\".\", \".\") answers EBUSY unless it runs inside the rootfs and the \
                rootfs is a mount point: pivot_into must chdir into it first, and \
                bind_rootfs_onto_itself must bind it onto itself (step 4)"
            .into();
    }
    match stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(last) => format!("the step said \"{}\"", last.trim()),
        None => "the step printed nothing on stderr; run it with -v to see how far it got".into(),
    }
}

/// A container that stays alive until the test lets it go, so the test can
/// look at it from the host while it runs. Killed on drop (also on failure).
pub(crate) struct Running {
    /// The step binary's process.
    pub(crate) child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Its stderr so far, read by a thread (a full pipe would block it).
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Running {
    /// Starts step `n` running `script` in `sh -c`, which must print a line
    /// `ready` and then wait for a line on stdin (`read x`).
    pub(crate) fn start(n: u32, options: &[&str], script: &str) -> Running {
        Running::start_with(n, options, script, |_| {})
    }

    /// [`Running::start`], with `prepare` changing the command first (e.g. a
    /// `pre_exec` hook).
    pub(crate) fn start_with(
        n: u32,
        options: &[&str],
        script: &str,
        prepare: impl FnOnce(&mut Command),
    ) -> Running {
        let mut cmd = step(n);
        prepare(&mut cmd);
        Running::spawn(cmd, options, script)
    }

    /// [`Running::start`] from a prepared command (e.g. one that enters a
    /// test's network namespace first).
    pub(crate) fn spawn(mut cmd: Command, options: &[&str], script: &str) -> Running {
        let mut child = cmd
            .args(options)
            .args(["sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut pipe, &mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&buf[..n]);
            }
        });
        let mut running = Running {
            child,
            stdin,
            stdout,
            stderr,
        };
        let first = running.read_line();
        if first.trim() != "ready" {
            let status = running.wait_a_while();
            let err = running.stderr_text();
            panic!(
                "expected the container's script to print \"ready\" first; it printed {first:?} \
                 and the step binary {status}; most likely cause: {}\nstderr: {err}",
                likely_cause(&err)
            );
        }
        running
    }

    /// What the step binary printed on stderr so far.
    pub(crate) fn stderr_text(&self) -> String {
        text(&self.stderr.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits at most [`TIMEOUT`] for the step binary to end (it failed, its
    /// stderr says why: give its reader thread the whole of it), and says
    /// how it ended.
    fn wait_a_while(&mut self) -> String {
        match self.ended_within_timeout() {
            Some(status) => format!("ended with {status}"),
            None => "did not end".into(),
        }
    }

    /// How the step binary ended, if it did within [`TIMEOUT`]; its stderr
    /// is then whole (the reader thread sees end of file right after).
    fn ended_within_timeout(&mut self) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < TIMEOUT {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Waits for the step binary to end, which the test has made it do (a
    /// signal to it or to its container). A step binary that never ends
    /// fails the test after [`TIMEOUT`], saying `if_stuck` (what that most
    /// likely means in the test at hand), instead of hanging it.
    pub(crate) fn wait_for_end(&mut self, if_stuck: &str) -> ExitStatus {
        if let Some(status) = self.ended_within_timeout() {
            return status;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "the step binary did not end within {TIMEOUT:?} and was killed: {if_stuck}\n\
             stderr: {}",
            self.stderr_text()
        );
    }

    /// The next line the container prints.
    pub(crate) fn read_line(&mut self) -> String {
        let mut line = String::new();
        if let Err(e) = self.stdout.read_line(&mut line) {
            panic!(
                "cannot read the container's stdout: {e}\nstderr: {}",
                self.stderr_text()
            );
        }
        line
    }

    /// The container's pid 1, as the host sees it: the step binary's only child.
    pub(crate) fn container_pid(&self) -> i32 {
        let pid = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_else(|e| {
                panic!(
                    "cannot list the children of the step binary (pid {pid}): {e}; \
                     did it end already?\nstderr: {}",
                    self.stderr_text()
                )
            });
        let pids: Vec<i32> = children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        assert_eq!(
            pids.len(),
            1,
            "expected the step binary to have one child, the container's pid 1; it has {pids:?}: \
             the container runs as the step binary's child, created by clone_child (step 1)\n\
             stderr: {}",
            self.stderr_text()
        );
        pids[0]
    }

    /// Lets the container go on (sends a line to its stdin) and waits for it.
    pub(crate) fn finish(mut self) -> (ExitStatus, String) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"go\n");
        }
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stdout, &mut rest);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status, rest);
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "expected the container to end once its script read a line; it ran on for \
                 {TIMEOUT:?}: the step binary may not be reaping it (SIGCHLD, step 1)\nstderr: {}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Running {
    /// [`Running::finish`], asserting that the step binary ended well: the
    /// failure says how it ended, the likely cause, and its stderr.
    pub(crate) fn finish_well(self) -> String {
        let stderr = self.stderr.clone();
        let (status, rest) = self.finish();
        let err = text(&stderr.lock().unwrap_or_else(|e| e.into_inner()));
        assert!(
            status.success(),
            "expected the container to end well once its script read a line, it ended with \
             {status}; most likely cause: {}\nstderr: {err}",
            likely_cause(&err)
        );
        rest
    }
}

/// A process of the test's own (not a container) that is killed and
/// reaped when dropped, so a failing assert leaves nothing running.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    /// Ends the container the way a user would: its pid 1 is killed (which
    /// ends its whole PID namespace), and the step binary, seeing it end,
    /// cleans up its cgroup, veth and rules. Only a step binary that does not
    /// end by itself within the timeout is killed too.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id();
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            for child in children
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill(2) of the container's pid 1.
                unsafe { libc::kill(child, libc::SIGKILL) };
            }
            let start = Instant::now();
            while start.elapsed() < TIMEOUT {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The host's network interfaces, by name, as this test's process sees them.
pub(crate) fn host_links() -> Vec<String> {
    let mut links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("read /sys/class/net")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    links.sort();
    links
}

/// The host's host name.
pub(crate) fn host_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read hostname")
        .trim()
        .to_string()
}

/// A minimal rootfs of our own in a temporary directory: a static busybox as
/// `/bin/busybox` and `/bin/sh`. Removed on drop.
pub(crate) struct TinyRootfs {
    /// The temporary directory; its path is the rootfs.
    pub(crate) dir: tempfile::TempDir,
}

impl TinyRootfs {
    /// Builds it from the host's busybox (`busybox-static` must be installed).
    pub(crate) fn new() -> TinyRootfs {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("the tests need a static busybox: sudo apt-get install busybox-static");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::copy(busybox, dir.path().join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", dir.path().join("bin/sh")).unwrap();
        for mount_point in ["proc", "dev", "sys", "tmp"] {
            std::fs::create_dir(dir.path().join(mount_point)).unwrap();
        }
        std::fs::set_permissions(
            dir.path().join("tmp"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .unwrap();
        TinyRootfs { dir }
    }

    /// Gives every file to host `uid`:`gid`, as the rootfs of a user
    /// namespace whose root maps there must be (step 6).
    pub(crate) fn owned_by(self, uid: u32, gid: u32) -> TinyRootfs {
        fn chown_tree(path: &Path, uid: u32, gid: u32) {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid)).expect("lchown");
            if std::fs::symlink_metadata(path).unwrap().is_dir() {
                for entry in std::fs::read_dir(path).unwrap() {
                    chown_tree(&entry.unwrap().path(), uid, gid);
                }
            }
        }
        chown_tree(self.dir.path(), uid, gid);
        self
    }

    /// Adds the static probe (see tests/probe) as `/probe`.
    pub(crate) fn with_probe(self) -> TinyRootfs {
        std::fs::copy(probe(), self.dir.path().join("probe")).expect("copy the probe");
        self
    }

    /// The rootfs path, as an argument.
    pub(crate) fn path(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp path")
    }
}

/// The mount points in this (the host's) mount namespace.
pub(crate) fn host_mount_points() -> Vec<String> {
    mount_points_of("self")
}

/// The mount points of process `pid`'s mount namespace, sorted (a copied
/// namespace lists the same mounts in another order).
pub(crate) fn mount_points_of(pid: &str) -> Vec<String> {
    let mut points: Vec<String> = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .expect("read mountinfo")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect();
    points.sort();
    points
}

/// Makes `cmd` start in a mount namespace of its own whose mounts are all
/// shared, as `/` is on a systemd host. Then a container that forgets to
/// stop propagation leaks its mounts into that namespace, where a test can
/// see them, without touching the real host's mount table.
pub(crate) fn in_shared_mount_namespace(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only unshare(2) and mount(2) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let root = c"/";
            // Private first: the copied mounts are still peers of the host's,
            // and a leak must stop at this namespace. Then shared, as on a
            // systemd host, within this namespace only.
            let private = libc::MS_PRIVATE | libc::MS_REC;
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                private,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            let flags = libc::MS_SHARED | libc::MS_REC;
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Asserts the step failed before running anything: the exit code, and one
/// line on stderr that starts with `stepN:` and contains `needle`.
pub(crate) fn assert_one_line_error(out: &Output, step: u32, code: i32, needle: &str) {
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "step {step}: expected the step to refuse this input with exit code {code} and a line \
         saying {needle:?}, it ended with {}; most likely cause: {}\nstderr: {err}",
        out.status,
        likely_cause(&err)
    );
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("caixa: building"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "step {step}: expected one line of error on stderr, got {}; most likely cause: the \
         error is printed where it happens and again where it is handled: return it with `?` \
         and let the binary's main print it once\nstderr: {err}",
        lines.len()
    );
    assert!(
        lines[0].starts_with(&format!("step{step}: ")),
        "step {step}: expected the error line to start with \"step{step}: \", the binary's \
         name, it is {:?}; most likely cause: something below the binary's main prints the \
         error itself instead of returning it\nstderr: {err}",
        lines[0]
    );
    assert!(
        lines[0].contains(needle),
        "step {step}: expected the error to say {needle:?}, it said {:?}; most likely cause: \
         the input was refused for another reason than the one this test gives it, or later \
         than where it is checked\nstderr: {err}",
        lines[0]
    );
    assert!(
        !err.contains("panicked"),
        "step {step}: expected a plain error, the step panicked; most likely cause: {}\n\
         stderr: {err}",
        likely_cause(&err)
    );
}

/// The probe binary (tests/probe), built statically once per test binary so
/// it runs in any rootfs without shared libraries. `CAIXA_PROBE` names a
/// prebuilt one (the VM lane builds it on the host: cargo is slow emulated).
pub(crate) fn probe() -> PathBuf {
    static PROBE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PROBE
        .get_or_init(|| {
            if let Some(prebuilt) = std::env::var_os("CAIXA_PROBE") {
                return PathBuf::from(prebuilt);
            }
            let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("probe-target");
            let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "--release", "-p", "caixa-probe", "--target", &triple])
                .env("CARGO_TARGET_DIR", &target_dir)
                .env("RUSTFLAGS", "-C target-feature=+crt-static")
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo to build the probe");
            assert!(
                status.success(),
                "building the static probe failed: static glibc comes with libc6-dev (sudo apt-get install libc6-dev)"
            );
            target_dir.join(triple).join("release/caixa-probe")
        })
        .clone()
}

/// A network namespace of the test's own (`ip netns add`), deleted on drop
/// with everything in it: bridges, veths, iptables rules. Step 8 tests run
/// the step binary and their clients inside it, so the host's network is
/// never touched.
pub(crate) struct TestNetns {
    /// Its name under /run/netns.
    pub(crate) name: String,
    /// caixa's state (leases) for this test.
    pub(crate) state: tempfile::TempDir,
}

impl TestNetns {
    /// Creates the namespace and brings its `lo` up.
    pub(crate) fn new() -> TestNetns {
        require_root();
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("cxt-{}-{n}", std::process::id());
        let ok = |args: &[&str]| {
            let status = Command::new("ip")
                .args(args)
                .status()
                .expect("run ip (sudo apt-get install iproute2)");
            assert!(status.success(), "ip {args:?} failed");
        };
        ok(&["netns", "add", &name]);
        let netns = TestNetns {
            name,
            state: tempfile::tempdir().unwrap(),
        };
        ok(&["-n", &netns.name, "link", "set", "lo", "up"]);
        netns
    }

    /// `program` run inside the namespace (network only: `nsenter --net`,
    /// which keeps the host's mounts, cgroups included).
    pub(crate) fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Step `n` inside the namespace, with this test's state directory.
    pub(crate) fn step(&self, n: u32) -> Command {
        let mut cmd = self.command(binary(n));
        cmd.env("CAIXA_CACHE_DIR", cache_dir())
            .env("CAIXA_STATE_DIR", self.state.path());
        cmd
    }

    /// Runs step `n` to the end inside the namespace.
    pub(crate) fn run(&self, n: u32, args: &[&str]) -> Output {
        let mut cmd = self.step(n);
        cmd.args(args);
        output_of(cmd)
    }

    /// A shell command run inside the namespace; returns its stdout.
    pub(crate) fn sh(&self, script: &str) -> String {
        let out = self
            .command("sh")
            .args(["-c", script])
            .output()
            .expect("run sh");
        text(&out.stdout)
    }

    /// The namespace's iptables rules and caixa chains (not the empty
    /// built-in tables, which iptables creates on first use).
    pub(crate) fn rules(&self) -> Vec<String> {
        let mut rules: Vec<String> = self
            .sh("iptables-save")
            .lines()
            .filter(|l| l.starts_with("-A") || l.starts_with(":CX"))
            .map(String::from)
            .collect();
        rules.sort();
        rules
    }

    /// A TCP listener on 127.0.0.1 (a free port) inside the namespace, for
    /// a server the test itself runs (a fake peer): a short-lived thread
    /// enters the namespace (setns(2) moves only that thread) and binds;
    /// the socket stays in the namespace, and so does every connection it
    /// accepts.
    pub(crate) fn listen_loopback(&self) -> std::net::TcpListener {
        use std::os::fd::AsRawFd;
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open the test's netns");
            // SAFETY: setns(2) on this thread only, with a namespace fd we hold.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind in the test's netns")
        })
        .join()
        .expect("the thread that binds in the netns")
    }

    /// A second namespace of the test's, "the internet" (10.201.0.2), that
    /// this one reaches through a veth (`cx-up`, 10.201.0.1/24) holding its
    /// default route: what a user-mode network (pasta) copies and leads out
    /// through. Deleted on drop, with the veth.
    pub(crate) fn add_internet(&self) -> TestNetns {
        let internet = TestNetns::new();
        self.sh(&format!(
            "ip link add cx-up type veth peer name cx-out netns {} && \
             ip addr add 10.201.0.1/24 dev cx-up && ip link set cx-up up && \
             ip route add default via 10.201.0.2",
            internet.name
        ));
        internet.sh("ip addr add 10.201.0.2/24 dev cx-out && ip link set cx-out up");
        internet
    }

    /// The namespace's network interfaces.
    pub(crate) fn links(&self) -> Vec<String> {
        let mut links: Vec<String> = self
            .sh("ip -o link show")
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|s| s.trim().split('@').next().unwrap_or("").to_string())
            .collect();
        links.sort();
        links
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The cgroup directories of caixa listed in a `/proc/<pid>/cgroup` text.
#[allow(dead_code)]
pub(crate) fn caixa_cgroups(listing: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for line in listing.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if !path.contains("/caixa/") {
            continue;
        }
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            dirs.push(Path::new("/sys/fs/cgroup").join(path));
        }
        for c in controllers
            .split(',')
            .filter(|c| !c.is_empty() && !c.starts_with("name="))
        {
            dirs.push(Path::new("/sys/fs/cgroup").join(c).join(path));
        }
    }
    dirs
}

/// Those of [`caixa_cgroups`] that still exist.
#[allow(dead_code)]
pub(crate) fn cgroups_left(listing: &str) -> Vec<PathBuf> {
    caixa_cgroups(listing)
        .into_iter()
        .filter(|d| d.exists())
        .collect()
}

/// Removes the (empty) cgroups of a `/proc/<pid>/cgroup` text: the safety
/// net of a test that killed a step binary.
#[allow(dead_code)]
pub(crate) fn remove_cgroups(listing: &str) {
    for dir in caixa_cgroups(listing) {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Waits (at most 2 s) until process `pid` is gone; whether it is.
#[allow(dead_code)]
pub(crate) fn wait_gone(pid: i32) -> bool {
    (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        !Path::new(&format!("/proc/{pid}")).exists()
    })
}

/// An OCI image layout at `layout` (tag `base`) whose one layer is
/// `rootfs`, made with umoci as a user would; `config` are extra
/// `umoci config` arguments (`--config.cmd …`).
#[allow(dead_code)]
pub(crate) fn umoci_image(layout: &Path, rootfs: &Path, config: &str) {
    let bundle = layout.with_extension("bundle");
    let script = format!(
        "set -e; umoci init --layout {l}; umoci new --image {l}:base; umoci unpack --image {l}:base {b}; \
         cp -a {r}/. {b}/rootfs/; umoci repack --image {l}:base {b}; \
         umoci config --image {l}:base {config}",
        l = layout.display(),
        b = bundle.display(),
        r = rootfs.display()
    );
    let status = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .status()
        .expect("umoci (sudo apt-get install umoci)");
    assert!(status.success(), "umoci failed");
}

/// An ordinary user for rootless starts: a uid no account uses, with a home
/// and a runtime directory of its own (removed on drop). The tests run as
/// root; [`Rootless::step`] runs a step binary as this user, its
/// supplementary groups dropped, with only the environment a login gives.
pub(crate) struct Rootless {
    /// The user's directory (`home` and `run` inside).
    pub(crate) dir: tempfile::TempDir,
}

impl Rootless {
    /// A uid and gid far from Debian's accounts (1000…) and subordinate
    /// ranges (100000…).
    pub(crate) const UID: u32 = 54_321;

    /// The one name server of the resolv.conf [`Self::in_netns`] gives: a
    /// loopback address, as systemd-resolved's 127.0.0.53, which a test
    /// serves inside its own namespace.
    pub(crate) const RESOLVER: &str = "127.0.0.53";

    /// Makes the user's directories in the system's temporary directory
    /// (the checkout may be private to root), or beside the tests' rootfs
    /// cache when `CAIXA_TEST_CACHE_DIR` names one (the VM lane: its `/tmp`
    /// is an overlay, where an overlay's upper directory cannot live).
    pub(crate) fn new() -> Rootless {
        let dir = match std::env::var_os("CAIXA_TEST_CACHE_DIR") {
            Some(parent) => {
                std::fs::create_dir_all(&parent).expect("the tests' cache directory");
                tempfile::tempdir_in(&parent)
            }
            None => tempfile::tempdir(),
        }
        .expect("a directory for the rootless user");
        for sub in ["", "home", "run", "bin"] {
            let path = dir.path().join(sub);
            std::fs::create_dir_all(&path).expect("the rootless user's directories");
            std::os::unix::fs::chown(&path, Some(Self::UID), Some(Self::UID)).expect("chown");
        }
        Rootless { dir }
    }

    /// Step `n`'s binary, copied where the user can run it.
    ///
    /// `cp` writes the copy, not this process: a file open for writing in
    /// the test process is inherited by every child another test thread
    /// forks meanwhile, and exec(2) of it fails with ETXTBSY until those
    /// children have exec'd in turn.
    fn binary(&self, n: u32) -> PathBuf {
        let copy = self.dir.path().join("bin").join(format!("step{n}"));
        if !copy.exists() {
            let status = Command::new("cp")
                .arg(binary(n))
                .arg(&copy)
                .status()
                .expect("run cp");
            assert!(status.success(), "cp {} {copy:?} failed", binary(n));
        }
        copy
    }

    /// Step `n` as the user.
    pub(crate) fn step(&self, n: u32) -> Command {
        use std::os::unix::process::CommandExt;
        require_root();
        let mut cmd = Command::new(self.binary(n));
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", self.dir.path().join("home"))
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .uid(Self::UID)
            .gid(Self::UID);
        cmd
    }

    /// Step `n` as the user, now named `caixa-rootless`, with `subids`
    /// (start, count) as its range in `/etc/subuid` and `/etc/subgid`, or
    /// none. The files are the test's own, bind-mounted over the host's in
    /// a mount namespace of the test's (the setuid `newuidmap` and
    /// `newgidmap` read them there); the host's are never touched.
    pub(crate) fn step_with_subids(&self, n: u32, subids: Option<(u32, u32)>) -> Command {
        require_root();
        let etc = self.dir.path().join("etc");
        std::fs::create_dir_all(&etc).expect("the test's /etc files");
        let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
        let home = self.dir.path().join("home");
        let line = format!(
            "caixa-rootless:x:{0}:{0}::{1}:/bin/sh\n",
            Self::UID,
            home.display()
        );
        std::fs::write(etc.join("passwd"), passwd + &line).expect("passwd");
        let range = subids
            .map(|(start, count)| format!("caixa-rootless:{start}:{count}\n"))
            .unwrap_or_default();
        for file in ["subuid", "subgid"] {
            std::fs::write(etc.join(file), &range).expect("subuid");
        }
        let script = format!(
            "mount --make-rprivate / && for f in passwd subuid subgid; do mount --bind {}/$f /etc/$f || exit 125; done; \
             exec setpriv --reuid={uid} --regid={uid} --clear-groups env -i PATH=/usr/bin:/bin HOME={} XDG_RUNTIME_DIR={} \"$0\" \"$@\"",
            etc.display(),
            home.display(),
            self.dir.path().join("run").display(),
            uid = Self::UID,
        );
        let mut cmd = Command::new("unshare");
        cmd.arg("-m")
            .arg("sh")
            .arg("-c")
            .arg(&script)
            .arg(self.binary(n));
        cmd
    }

    /// Step `n` as the user inside `netns`, for a user-mode network
    /// (`--network pasta`), whose `/dev/net/tun` has mode `tun_mode`: the
    /// test's own node, bind-mounted in a mount namespace of the test's
    /// (this machine kind's is 0600, root's only; udev makes it 0666). Its
    /// `/etc/resolv.conf` is the test's too: [`Self::RESOLVER`] alone, the
    /// way a host with systemd-resolved has it, so pasta forwards DNS into
    /// the test's namespace. The host's network, `/dev` and `/etc` are
    /// never touched.
    pub(crate) fn in_netns(&self, n: u32, netns: &TestNetns, tun_mode: u32) -> Command {
        let dev = self.dir.path().join("dev");
        std::fs::create_dir_all(&dev).expect("the test's /dev/net/tun directory");
        let script = format!(
            "mount --make-rprivate / && mount -t tmpfs -o mode=0755 caixa-test-dev {dev} && \
             mknod -m {tun_mode:o} {dev}/tun c 10 200 && mount --bind {dev}/tun /dev/net/tun && \
             printf 'nameserver {resolver}\\nsearch caixa.test\\n' > {dev}/resolv.conf && \
             mount --bind {dev}/resolv.conf /etc/resolv.conf || exit 125; \
             exec setpriv --reuid={uid} --regid={uid} --clear-groups env -i \
             PATH=/usr/local/bin:/usr/bin:/bin HOME={home} XDG_RUNTIME_DIR={run} \"$0\" \"$@\"",
            dev = dev.display(),
            resolver = Self::RESOLVER,
            uid = Self::UID,
            home = self.dir.path().join("home").display(),
            run = self.dir.path().join("run").display(),
        );
        let mut cmd = netns.command("unshare");
        cmd.args(["-m", "sh", "-c", &script]).arg(self.binary(n));
        cmd
    }

    /// Runs step `n` with `args` as the user, to the end.
    pub(crate) fn run(&self, n: u32, args: &[&str]) -> Output {
        let mut cmd = self.step(n);
        cmd.args(args);
        output_of(cmd)
    }

    /// What is left in a directory of the user's (empty when missing; its
    /// `.lock`, which caixa keeps, aside).
    pub(crate) fn left_in(&self, relative: &str) -> Vec<String> {
        std::fs::read_dir(self.dir.path().join(relative))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name != ".lock")
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A cgroup v2 group delegated to the rootless user by hand, as an
/// administrator (or systemd, for `Delegate=yes`) does: the directory and
/// its `cgroup.procs`, `cgroup.subtree_control` and `cgroup.threads`
/// chowned to the user. Removed on drop with everything below it (any
/// process left inside is killed first).
pub(crate) struct Delegated(pub(crate) PathBuf);

impl Delegated {
    /// A group of this test's (`tag` and the test process's pid in its
    /// name) below the unified hierarchy's `root`.
    pub(crate) fn new(root: &Path, tag: &str) -> Delegated {
        let dir = root.join(format!("caixa-test-delegated-{tag}-{}", std::process::id()));
        std::fs::create_dir(&dir).expect("a cgroup for the rootless user");
        let group = Delegated(dir);
        let uid = Some(Rootless::UID);
        for name in [
            "",
            "cgroup.procs",
            "cgroup.subtree_control",
            "cgroup.threads",
        ] {
            std::os::unix::fs::chown(group.0.join(name), uid, uid).expect("chown a cgroup file");
        }
        group
    }

    /// Step `n` as the rootless user, started inside this group: root
    /// moves the shell in, then drops to the user (as a login into a
    /// delegated scope would have it). Once caixa has moved the group's
    /// processes into its `caixa-init` leaf (the group itself may then
    /// hold none), the shell starts there, where the user's processes are.
    pub(crate) fn step(&self, user: &Rootless, n: u32) -> Command {
        let leaf = self.0.join("caixa-init");
        let start_in = if leaf.exists() { &leaf } else { &self.0 };
        let script = format!(
            "echo $$ > {procs} || exit 126; exec setpriv --reuid={uid} --regid={uid} --clear-groups \
             env -i PATH=/usr/local/bin:/usr/bin:/bin HOME={home} XDG_RUNTIME_DIR={run} \"$0\" \"$@\"",
            procs = start_in.join("cgroup.procs").display(),
            uid = Rootless::UID,
            home = user.dir.path().join("home").display(),
            run = user.dir.path().join("run").display(),
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script]).arg(user.binary(n));
        cmd
    }

    /// The groups below it (`relative` to it), by name, sorted.
    pub(crate) fn below(&self, relative: &str) -> Vec<String> {
        subdirs(&self.0.join(relative))
    }
}

/// The directories in `dir` (groups, in a cgroup), by name, sorted.
pub(crate) fn subdirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

impl Drop for Delegated {
    fn drop(&mut self) {
        if let Err(e) = caixa::cgroup::remove_tree(&self.0) {
            eprintln!("warning: the test's delegated cgroup: {e}");
        }
    }
}

/// The pasta processes of the rootless user that serve from `netns`
/// (pasta stays in the namespace it was started in: its sockets are the
/// host side), as pids. The processes pasta clones to act inside the
/// container's namespace, and other tests' pastas, are not counted.
pub(crate) fn pastas_in(netns: &TestNetns) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let wanted = std::fs::metadata(format!("/run/netns/{}", netns.name))
        .expect("the test's netns")
        .ino();
    let uid = format!("Uid:\t{}", Rootless::UID);
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        // Debian's pasta runs as `passt.avx2` once it has re-executed
        // the build for the CPU's instructions.
        let named = ["pasta", "passt"]
            .iter()
            .any(|n| comm.trim().starts_with(n));
        let in_netns = std::fs::metadata(path.join("ns/net")).is_ok_and(|m| m.ino() == wanted);
        if named && in_netns && status.lines().any(|l| l.starts_with(&uid)) {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

/// Kills on drop the pastas [`pastas_in`] finds, so a test that fails
/// while caixa left one running leaves nothing behind either.
pub(crate) struct PastaSweep<'a>(pub(crate) &'a TestNetns);

impl Drop for PastaSweep<'_> {
    fn drop(&mut self) {
        for pid in pastas_in(self.0) {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) of a pasta of the test user's, in the test's netns.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}
