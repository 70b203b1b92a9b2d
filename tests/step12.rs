//! Step 12 grading: caixa as an OCI runtime. The tests drive `step12` as an
//! orchestrator does (create, state, start, kill, delete), then let real
//! orchestrators drive it: podman (through conmon) and containerd (through
//! its runc shim), each with state of the test's own.

mod support;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{TinyRootfs, assert_one_line_error, binary, text, wait_output};

/// A bundle of the test's own: a busybox root and a config.json written by
/// `step12 spec`, then changed by `edit`.
struct Bundle {
    dir: tempfile::TempDir,
    _rootfs: TinyRootfs,
    /// The runtime's `--root`, and caixa's state directory.
    state: tempfile::TempDir,
}

impl Bundle {
    fn new(args: &[&str], edit: impl FnOnce(&mut Value)) -> Bundle {
        support::require_root();
        let rootfs = TinyRootfs::new();
        for applet in ["sleep", "cat", "ls", "echo", "id", "readlink"] {
            std::os::unix::fs::symlink("busybox", rootfs.dir.path().join("bin").join(applet))
                .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(binary(12))
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "step 12: expected `spec --bundle DIR` to write an example config.json, it ended \
             with {}; most likely cause: {}\nstderr: {}",
            out.status,
            support::likely_cause(&text(&out.stderr)),
            text(&out.stderr)
        );
        let path = dir.path().join("config.json");
        let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["root"]["path"] = json!(rootfs.path());
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        edit(&mut config);
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        Bundle {
            dir,
            _rootfs: rootfs,
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn rootfs(&self) -> &Path {
        self._rootfs.dir.path()
    }

    /// `step12 --root STATE ARGS…` as a command.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary(12));
        cmd.env("CAIXA_STATE_DIR", self.state.path().join("caixa"))
            .arg("--root")
            .arg(self.state.path().join("runtime"))
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `step12 ARGS…` to its end. Its output goes to files, not
    /// pipes: a created container keeps the stdio `create` had (that is
    /// how conmon and containerd's shim get its output), so a pipe would
    /// not see its end until the container's.
    fn run(&self, args: &[&str]) -> Output {
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let out = self.state.path().join(format!("stdout-{n}"));
        let err = self.state.path().join(format!("stderr-{n}"));
        let mut child = self
            .command(args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("start step12");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > support::TIMEOUT {
                let _ = child.kill();
                panic!(
                    "step 12: expected `step12 {}` to end, it did not end within {:?}; most \
                     likely cause: the command waits for the container (only `run` without \
                     --detach may): create must not wait at the start gate itself, and \
                     start must return once the child took the gate's byte",
                    args.join(" "),
                    support::TIMEOUT
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Output {
            status,
            stdout: std::fs::read(&out).unwrap_or_default(),
            stderr: std::fs::read(&err).unwrap_or_default(),
        }
    }

    fn create(&self, id: &str) -> Output {
        let bundle = self.dir.path().to_str().unwrap().to_string();
        self.run(&["create", "--bundle", &bundle, id])
    }

    /// `state ID` as JSON.
    fn state(&self, id: &str) -> Value {
        let out = self.run(&["state", id]);
        assert!(
            out.status.success(),
            "step 12: expected `state {id}` to print the state of a container that exists, it \
             ended with {}; most likely cause: {}\nstderr: {}",
            out.status,
            support::likely_cause(&text(&out.stderr)),
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "step 12: expected `state` to print JSON, it printed {:?} ({e}); most likely \
                 cause: state prints something beside the Reported JSON on stdout",
                text(&out.stdout)
            )
        })
    }
}

impl Drop for Bundle {
    /// Whatever a failed test left: its containers go (`delete --force`);
    /// if `delete` itself failed (a stubbed step 12 panics there), what
    /// each container's record names is killed and removed here.
    fn drop(&mut self) {
        let runtime = self.state.path().join("runtime");
        let ids: Vec<String> = std::fs::read_dir(&runtime)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for id in &ids {
            let _ = self.run(&["delete", "--force", id]);
            let made = std::fs::read_to_string(runtime.join(id).join("made")).unwrap_or_default();
            let groups: Vec<PathBuf> = made
                .lines()
                .filter_map(|l| l.strip_prefix("cgroup "))
                .map(PathBuf::from)
                .collect();
            remove_groups(&groups);
        }
    }
}

/// Asserts that a `step12` command succeeded; if not, says what was
/// expected, how it ended, its most likely cause and its stderr.
fn assert_succeeded(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "step 12: expected {what} to succeed, it ended with {}; most likely cause: {}\nstderr: {}",
        out.status,
        support::likely_cause(&text(&out.stderr)),
        text(&out.stderr)
    );
}

/// Waits up to 10 s for `check`.
fn eventually(check: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Directories named `id` under the host's cgroup hierarchies (two deep
/// below each controller's `caixa` or the cgroupsPath parent).
fn cgroups_named(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.file_name() == id {
                found.push(path);
            } else if depth < 3 {
                stack.push((path, depth + 1));
            }
        }
    }
    found
}

#[test]
fn create_start_kill_delete_follow_the_runtime_spec() {
    let bundle = Bundle::new(&["sh", "-c", "echo ran > /ran; exec sleep 100"], |c| {
        c["linux"]["resources"] = json!({"pids": {"limit": 64}});
    });
    let out = bundle.create("life");
    assert_succeeded(&out, "`create` of a valid bundle");

    // created: the process exists, everything is made, the command has not run.
    let state = bundle.state("life");
    assert_eq!(
        state["status"], "created",
        "step 12: expected the status \"created\" after create, state says {state}; most \
         likely cause: Saved::status does not answer Created while the start gate's FIFO is \
         in the container's directory (and the process alive)"
    );
    assert_eq!(
        state["id"], "life",
        "step 12: expected state to name the container's id life, it says {state}; most \
         likely cause: the saved record keeps another id than create's argument"
    );
    assert_eq!(
        state["bundle"],
        json!(bundle.dir.path()),
        "step 12: expected state to name the bundle {}, it says {state}; most likely cause: \
         create saves the bundle's path relative, or not at all",
        bundle.dir.path().display()
    );
    let pid = state["pid"].as_i64().unwrap_or(0) as i32;
    assert!(
        pid > 0 && Path::new(&format!("/proc/{pid}")).exists(),
        "step 12: expected a created container to have a live pid 1, state says {state}; \
         most likely cause: the child does not wait at the start gate (StartGate::wait must \
         block in open(2) of the FIFO for writing until start reads), so it ran and ended"
    );
    assert!(
        !bundle.rootfs().join("ran").exists(),
        "step 12: expected create to stop before the user's command, /ran exists already; \
         most likely cause: the child did not wait at the start gate: StartGate::wait must \
         open the FIFO through /proc/self/fd/N for writing (O_WRONLY blocks until start opens \
         it for reading), not O_PATH or O_NONBLOCK"
    );
    assert!(
        !cgroups_named("life").is_empty(),
        "step 12: expected create to make the container's cgroup (its pids limit), no group \
         named life exists; most likely cause: create applies linux.resources at start, or \
         not at all"
    );
    let ns = |p: i32| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    assert_ne!(
        ns(pid),
        ns(std::process::id() as i32),
        "step 12: expected the created process in its own PID namespace, it is in the \
         test's; most likely cause: the bundle's linux.namespaces are not turned into the \
         spec's namespaces"
    );

    // A second create of the same id is refused.
    let again = bundle.create("life");
    assert_one_line_error(&again, 12, 1, "exists already");

    // start: the command runs.
    let out = bundle.run(&["start", "life"]);
    assert_succeeded(&out, "`start` of a created container");
    assert!(
        eventually(|| bundle.rootfs().join("ran").exists()),
        "step 12: expected the command to run after start (it writes /ran), /ran did not \
         appear within 10 s; most likely cause: StartGate::wait does not write its byte after \
         the open, or the child goes back to waiting instead of exec'ing the command"
    );
    let state = bundle.state("life");
    assert_eq!(
        state["status"], "running",
        "step 12: expected the status \"running\" after start, state says {state}; most \
         likely cause: Saved::status answers Created while the FIFO is gone: it must check \
         the FIFO only for a live process, and answer Running when it is gone"
    );
    let out = bundle.run(&["start", "life"]);
    assert_one_line_error(&out, 12, 1, "running");

    // delete without --force refuses a running container.
    let out = bundle.run(&["delete", "life"]);
    assert_one_line_error(&out, 12, 1, "running");

    // kill: the process ends; the status follows the kernel.
    let out = bundle.run(&["kill", "life", "KILL"]);
    assert!(
        out.status.success(),
        "step 12: expected `kill ID KILL` to succeed, it ended with {}; most likely cause: \
         {}\nstderr: {}",
        out.status,
        support::likely_cause(&text(&out.stderr)),
        text(&out.stderr)
    );
    assert!(
        eventually(|| bundle.state("life")["status"] == "stopped"),
        "step 12: expected the status \"stopped\" after kill, state still says {}; most \
         likely cause: Saved::status does not answer Stopped when the saved process is gone \
         or a zombie (Saved::alive must say so)",
        bundle.state("life")
    );
    let state = bundle.state("life");
    assert_eq!(
        state["pid"], 0,
        "step 12: expected a stopped container to report pid 0, state says {state}; most \
         likely cause: report gives the saved pid whatever the status"
    );

    // delete: the cgroup and the state go.
    let out = bundle.run(&["delete", "life"]);
    assert_succeeded(&out, "`delete` of a stopped container");
    let left = cgroups_named("life");
    assert_eq!(
        left,
        Vec::<PathBuf>::new(),
        "step 12: expected delete to remove the container's cgroup, these are left: \
         {left:?}; most likely cause: delete removes the record before the groups it names"
    );
    let out = bundle.run(&["state", "life"]);
    assert_one_line_error(&out, 12, 1, "does not exist");
}

#[test]
fn a_created_container_can_be_deleted_and_run_ends_with_the_commands_code() {
    let bundle = Bundle::new(&["sh", "-c", "echo ran > /ran; exit 7"], |_| {});
    let created = bundle.create("early");
    assert_succeeded(&created, "`create` of a valid bundle");
    let pid = bundle.state("early")["pid"].as_i64().unwrap() as i32;
    let out = bundle.run(&["delete", "early"]);
    assert!(
        out.status.success(),
        "step 12: expected delete of a created container to succeed (its process is killed), \
         it ended with {}; most likely cause: delete refuses anything but Stopped, and \
         Saved::status does not answer Created for a process at the gate\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    assert!(
        support::wait_gone(pid) || !Path::new(&format!("/proc/{pid}/ns")).exists(),
        "step 12: expected delete to kill the process {pid} waiting at the gate, it lives on; \
         most likely cause: delete of a created container removes its record without \
         killing its process"
    );
    assert!(
        !bundle.rootfs().join("ran").exists(),
        "step 12: expected a deleted created container never to run its command, /ran \
         exists; most likely cause: delete opens the start gate (as start does) before the \
         kill, or the child did not wait at it"
    );

    // run: create, start, wait, delete; the exit code is the command's.
    let bundle_dir = bundle.dir.path().to_str().unwrap().to_string();
    let out = bundle.run(&["run", "--bundle", &bundle_dir, "once"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "step 12: expected `run` to end with the command's exit code (7), it ended with {}; \
         most likely cause: run does not wait for the container and exit with its code after \
         the start ({})\nstderr: {}",
        out.status,
        support::likely_cause(&text(&out.stderr)),
        text(&out.stderr)
    );
    assert!(
        bundle.rootfs().join("ran").exists(),
        "step 12: expected `run` to run the command (it writes /ran), /ran is missing; most \
         likely cause: run does not open the start gate after its create"
    );
    assert_one_line_error(&bundle.run(&["state", "once"]), 12, 1, "does not exist");
}

#[test]
fn exec_joins_the_container_with_the_processs_own_privileges() {
    let bundle = Bundle::new(&["sleep", "100"], |c| {
        c["linux"]["resources"] = json!({"pids": {"limit": 64}});
    });
    for applet in ["grep", "pwd", "sh"] {
        let _ = std::os::unix::fs::symlink("busybox", bundle.rootfs().join("bin").join(applet));
    }
    let created = bundle.create("joined");
    assert_succeeded(&created, "`create` of a valid bundle");
    let started = bundle.run(&["start", "joined"]);
    assert_succeeded(&started, "`start` of a created container");
    let pid1 = bundle.state("joined")["pid"].as_i64().unwrap_or(0) as i32;

    // Every namespace and the cgroup are pid 1's; the exit code is the
    // command's.
    let probe = "for ns in pid mnt net uts ipc cgroup; do \
                   a=$(readlink /proc/1/ns/$ns); \
                   [ -n \"$a\" ] && [ \"$a\" = \"$(readlink /proc/self/ns/$ns)\" ] || echo \"other $ns\"; \
                 done; \
                 [ \"$(cat /proc/1/cgroup)\" = \"$(cat /proc/self/cgroup)\" ] || echo 'other cgroup'; \
                 echo \"$FOO in $(pwd)\"; exit 7";
    let out = bundle.run(&[
        "exec", "--env", "FOO=bar", "--cwd", "/tmp", "joined", "sh", "-c", probe,
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "step 12: expected `exec ID sh -c '…; exit 7'` to end with the command's code 7, it \
         ended with {}; most likely cause: exec does not wait for the process it forked, or \
         cannot join the container\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "bar in /tmp",
        "step 12: expected the exec'd process in every namespace and the cgroup of pid 1 \
         (no \"other …\" line), with --env and --cwd applied; most likely cause: a namespace \
         left out of the setns flags, or the cgroup not entered before setns"
    );

    // A process of its own: capabilities from --process, not pid 1's.
    let process = bundle.state.path().join("process.json");
    let only_kill = json!(["CAP_KILL"]);
    std::fs::write(
        &process,
        json!({
            "args": ["sh", "-c", "grep CapEff /proc/self/status"],
            "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0},
            "capabilities": {"bounding": only_kill, "effective": only_kill,
                             "permitted": only_kill},
            "noNewPrivileges": true,
        })
        .to_string(),
    )
    .unwrap();
    let out = bundle.run(&["exec", "--process", process.to_str().unwrap(), "joined"]);
    assert_eq!(
        text(&out.stdout).split_whitespace().last(),
        Some("0000000000000020"),
        "step 12: expected `exec --process` with only CAP_KILL to run with CapEff \
         0000000000000020; most likely cause: the process's capabilities are not dropped \
         (or pid 1's are used)\nstderr: {}",
        text(&out.stderr)
    );

    // Detached: exec returns once the process runs; the pid file names
    // it, as the host sees it, in the container's PID namespace.
    let pid_file = bundle.state.path().join("exec.pid");
    let out = bundle.run(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "joined",
        "sleep",
        "100",
    ]);
    assert!(
        out.status.success(),
        "step 12: expected `exec --detach --pid-file P` to succeed, it ended with {}; most \
         likely cause: exec waits for the command with --detach (After::Detach must return \
         once it has execve'd), or cannot join the container ({})\nstderr: {}",
        out.status,
        support::likely_cause(&text(&out.stderr)),
        text(&out.stderr)
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    let ns = |p: i32| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    assert!(
        pid > 0 && ns(pid).is_some() && ns(pid) == ns(pid1),
        "step 12: expected --pid-file to name a live process in the container's PID namespace, \
         it holds {pid}; most likely cause: the pid file is written with the pid as the \
         container sees it, or before the fork"
    );

    // A command that is not there: one line and exit 127, as in `run`.
    let out = bundle.run(&["exec", "joined", "no-such-program"]);
    assert_eq!(
        out.status.code(),
        Some(127),
        "step 12: expected exec of a missing program to end with 127, as run does, it ended \
         with {}; most likely cause: the joining child's failed execve is reported as a \
         set-up failure instead of \"not found\" (127)\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("no-such-program"),
        "step 12: expected the error to name the missing program no-such-program, it said \
         {:?}; most likely cause: the command's lookup in the container's PATH fails without \
         saying which program",
        text(&out.stderr)
    );

    // delete --force ends every process of the container, the exec'd too.
    let deleted = bundle.run(&["delete", "--force", "joined"]);
    assert!(
        deleted.status.success(),
        "step 12: expected `delete --force` of a running container to succeed, it ended with \
         {}; most likely cause: {}\nstderr: {}",
        deleted.status,
        support::likely_cause(&text(&deleted.stderr)),
        text(&deleted.stderr)
    );
    assert!(
        support::wait_gone(pid),
        "step 12: expected delete --force to end the exec'd process {pid} too, it lives on; \
         most likely cause: the exec'd process is not in the container's cgroup (it must \
         enter it before setns), or delete kills pid 1 only instead of every process of the \
         cgroup"
    );
    let out = bundle.run(&["exec", "joined", "true"]);
    assert_one_line_error(&out, 12, 1, "does not exist");
}

/// A process of the test's own in a new network namespace (`unshare
/// --net sleep`), killed and reaped on drop: a namespace to name by path.
struct NetnsHolder(std::process::Child);

impl NetnsHolder {
    fn new() -> NetnsHolder {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "100"])
            .spawn()
            .expect("unshare (util-linux)");
        let holder = NetnsHolder(child);
        let own = std::fs::read_link("/proc/self/ns/net").ok();
        assert!(
            eventually(|| std::fs::read_link(holder.path()).ok() != own),
            "step 12: expected `unshare --net sleep` to make the test's network namespace \
             within 10 s, it did not; most likely cause: util-linux's unshare is missing or \
             the test is not root"
        );
        holder
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }
}

impl Drop for NetnsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An edit of config.json: the namespace of `kind` is entered by `path`.
fn naming<'a>(kind: &'a str, path: &'a str) -> impl FnOnce(&mut Value) + 'a {
    move |c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == kind {
                ns["path"] = json!(path);
            }
        }
    }
}

#[test]
fn a_namespace_named_by_path_is_entered_and_only_the_child_stays_in_it() {
    let holder = NetnsHolder::new();
    let netns = holder.path();
    let bundle = Bundle::new(
        &["sh", "-c", "readlink /proc/self/ns/net > /netns"],
        naming("network", &netns),
    );
    let bundle_dir = bundle.dir.path().to_str().unwrap().to_string();
    let out = bundle.run(&["run", "--bundle", &bundle_dir, "pod"]);
    assert!(
        out.status.success(),
        "step 12: expected a bundle whose network namespace has a path to run, it ended with \
         {}; most likely cause: the parent cannot setns(2) into the named namespace before \
         clone3, or cannot go back to its own after ({})\nstderr: {}",
        out.status,
        support::likely_cause(&text(&out.stderr)),
        text(&out.stderr)
    );
    let inside = std::fs::read_to_string(bundle.rootfs().join("netns")).unwrap_or_default();
    let wanted = std::fs::read_link(&netns).unwrap();
    assert_eq!(
        inside.trim(),
        wanted.to_string_lossy(),
        "step 12: expected the container in the network namespace at {netns}; most likely \
         cause: the parent does not setns(2) into it before clone3, or clones with \
         CLONE_NEWNET anyway"
    );

    // A file that is no namespace: one line, nothing left.
    let bundle = Bundle::new(&["true"], naming("network", "/proc/self/status"));
    let out = bundle.create("notans");
    assert_one_line_error(
        &out,
        12,
        1,
        "cannot enter the net namespace at /proc/self/status",
    );
    let listed = listed_ids(&bundle.state.path().join("runtime"));
    assert_eq!(
        listed.trim(),
        "",
        "step 12: expected a refused create to leave no container, list shows {listed:?}; \
         most likely cause: the record is saved before the named namespace is opened and \
         checked"
    );

    // The runtime's own namespace is not the container's to change.
    let bundle = Bundle::new(&["true"], naming("network", "/proc/self/ns/net"));
    let out = bundle.create("hostns");
    assert_one_line_error(&out, 12, 1, "it is the runtime's own");

    // A PID namespace by path would move the runtime's own children.
    let bundle = Bundle::new(&["true"], naming("pid", "/proc/1/ns/pid"));
    let out = bundle.create("pidpath");
    assert_one_line_error(&out, 12, 1, "linux.namespaces[");
}

/// A hook that appends "POINT <its PID namespace> <the state it read>" to
/// `log` (a path in the namespaces it runs in).
fn logging_hook(point: &str, log: &str) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("echo \"$0 $(readlink /proc/self/ns/pid) $(cat)\" >> {log}"), point],
        "env": ["PATH=/bin:/usr/bin"],
    })
}

#[test]
fn hooks_run_where_and_when_the_runtime_spec_says() {
    let outer = std::cell::RefCell::new(String::new());
    let bundle = Bundle::new(&["sh", "-c", "echo ran >> /hooks.log"], |c| {
        let root = c["root"]["path"].as_str().unwrap().to_string();
        let log = format!("{root}/hooks.log");
        *outer.borrow_mut() = log.clone();
        c["hooks"] = json!({
            "createRuntime": [logging_hook("createRuntime", &log)],
            "createContainer": [logging_hook("createContainer", &log)],
            "startContainer": [logging_hook("startContainer", "/hooks.log")],
            "poststart": [logging_hook("poststart", &log)],
            // A failing poststop hook is reported; the next still runs.
            "poststop": [{"path": "/bin/false"}, logging_hook("poststop", &log)],
        });
    });
    let log = outer.into_inner();
    let lines = || -> Vec<(String, String, Value)> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut parts = l.splitn(3, ' ');
                let point = parts.next().unwrap_or("").to_string();
                let ns = parts.next().unwrap_or("").to_string();
                let state = serde_json::from_str(parts.next().unwrap_or("")).unwrap_or(Value::Null);
                (point, ns, state)
            })
            .collect()
    };
    let out = bundle.create("hooked");
    assert!(
        out.status.success(),
        "step 12: expected create with hooks to succeed, it ended with {}; most likely cause: \
         a hook failed or could not read its state on stdin ({})\nstderr: {}",
        out.status,
        support::likely_cause(&text(&out.stderr)),
        text(&out.stderr)
    );
    let pid = bundle.state("hooked")["pid"].as_i64().unwrap_or(0);
    let host_ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let container_ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    let seen = lines();
    let points: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        points,
        ["createRuntime", "createContainer"],
        "step 12: expected create to run createRuntime then createContainer, and nothing of \
         start; most likely cause: the child does not ask for RunCreateHooks before \
         pivot_root, or runs its hooks after it"
    );
    for (point, ns, state) in &seen {
        assert_eq!(
            (
                state["id"].as_str(),
                state["pid"].as_i64(),
                state["status"].as_str()
            ),
            (Some("hooked"), Some(pid), Some("creating")),
            "step 12: expected the {point} hook to read the state (id, host pid, \
             \"creating\") on stdin, it read {state}; most likely cause: the hook's stdin is \
             not the state JSON, or gives the pid as the container sees it"
        );
        let wanted = if point == "createRuntime" {
            &host_ns
        } else {
            &container_ns
        };
        assert_eq!(
            ns,
            &wanted.to_string_lossy(),
            "step 12: expected {point} in the {} PID namespace, it ran in {ns}; most likely \
             cause: createRuntime runs in the child (it belongs to the runtime, before \
             pivot_root) or createContainer in the parent (it belongs to the container's \
             namespaces)",
            if point == "createRuntime" {
                "runtime's"
            } else {
                "container's"
            }
        );
    }

    let out = bundle.run(&["start", "hooked"]);
    assert!(
        out.status.success(),
        "step 12: expected start of a container with hooks to succeed, it ended with {}; most \
         likely cause: the startContainer or poststart hook failed ({})\nstderr: {}",
        out.status,
        support::likely_cause(&text(&out.stderr)),
        text(&out.stderr)
    );
    assert!(
        eventually(|| lines().iter().filter(|(p, _, _)| p == "ran").count() == 1),
        "step 12: expected the command to run once after start, the hooks' log holds {:?}; \
         most likely cause: the startContainer hook blocks the command, or the command never \
         passes the start gate",
        lines()
    );
    assert!(
        eventually(|| lines().len() == 5),
        "step 12: expected five lines in the hooks' log after start (createRuntime, \
         createContainer, startContainer, ran, poststart), it holds {:?}; most likely cause: \
         a hook point is run twice or not at all",
        lines()
    );
    let seen = lines();
    let points: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
    // poststart runs beside the command (start returns while it runs), so
    // only startContainer's place before the command is fixed.
    let after_create: Vec<&str> = points[2..]
        .iter()
        .copied()
        .filter(|p| *p != "poststart")
        .collect();
    assert_eq!(
        after_create,
        ["startContainer", "ran"],
        "step 12: expected startContainer just before the command, the log holds {points:?}; \
         most likely cause: the hooks run before the start gate, or after execve"
    );
    assert!(
        points.contains(&"poststart"),
        "step 12: expected start to run the poststart hooks, the log holds {points:?}; most \
         likely cause: start returns once the gate is open without running poststart"
    );
    let start_ns = seen
        .iter()
        .find(|(p, _, _)| p == "startContainer")
        .map(|(_, ns, _)| ns.clone())
        .unwrap_or_default();
    assert_eq!(
        start_ns,
        container_ns.to_string_lossy(),
        "step 12: expected startContainer in the container's PID namespace; most likely \
         cause: startContainer is run by start (the runtime) instead of by the container's \
         init"
    );

    assert!(
        eventually(|| bundle.state("hooked")["status"] == "stopped"),
        "step 12: expected the container to stop once its command ended, state says {}; most \
         likely cause: Saved::status does not answer Stopped when the process is gone or a \
         zombie",
        bundle.state("hooked")
    );
    let deleted = bundle.run(&["delete", "hooked"]);
    assert!(
        deleted.status.success(),
        "step 12: expected delete of the stopped container to succeed, it ended with {}; most \
         likely cause: a failing poststop hook fails delete (its failure must be reported, \
         and delete go on)\nstderr: {}",
        deleted.status,
        text(&deleted.stderr)
    );
    let seen = lines();
    let last = seen.last().cloned().unwrap_or_default();
    assert_eq!(
        (last.0.as_str(), last.2["status"].as_str()),
        ("poststop", Some("stopped")),
        "step 12: expected delete to end with the poststop hooks, reading the state \
         \"stopped\", the log ends with {last:?}; most likely cause: delete runs poststop \
         before the container is gone, or stops at the failing poststop hook before it \
         (the remaining hooks must run)"
    );
    assert!(
        text(&deleted.stderr).contains("warning: the poststop hook /bin/false failed"),
        "step 12: expected delete to report the failed poststop hook as a warning, its stderr \
         is {:?}; most likely cause: run_each's failures are not returned to be reported",
        text(&deleted.stderr)
    );

    // A failing createRuntime hook fails create, naming it; nothing stays.
    let failing = Bundle::new(&["true"], |c| {
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    });
    let out = failing.create("refused");
    assert_one_line_error(&out, 12, 1, "the createRuntime hook /bin/false failed");
    let listed = listed_ids(&failing.state.path().join("runtime"));
    assert_eq!(
        listed.trim(),
        "",
        "step 12: expected a create whose createRuntime hook failed to leave no container, \
         list shows {listed:?}; most likely cause: the failed hook's create does not undo the \
         record"
    );
    let left = cgroups_named("refused");
    assert_eq!(
        left,
        Vec::<PathBuf>::new(),
        "step 12: expected a create whose createRuntime hook failed to leave no cgroup, these \
         are left: {left:?}; most likely cause: the failed create kills the child but does \
         not remove its groups"
    );

    // One that never ends is killed at its timeout.
    let slow = Bundle::new(&["true"], |c| {
        c["hooks"] = json!({"createContainer": [
            {"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}
        ]});
    });
    let out = slow.create("slow");
    assert_one_line_error(&out, 12, 1, "did not end within its timeout of 1 s");
}

#[test]
fn create_refuses_what_caixa_does_not_do_and_leaves_nothing() {
    let bundle = Bundle::new(&["true"], |c| {
        c["process"]["apparmorProfile"] = json!("caixa-test");
    });
    let log = bundle.state.path().join("log.json");
    let bundle_dir = bundle.dir.path().to_str().unwrap().to_string();
    let out = bundle.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        &bundle_dir,
        "confined",
    ]);
    assert_one_line_error(&out, 12, 1, "process.apparmorProfile");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let line: Value =
        serde_json::from_str(logged.lines().last().unwrap_or("")).unwrap_or(Value::Null);
    assert_eq!(
        line["level"], "error",
        "step 12: expected --log-format json to write the error as a JSON line with level \
         error (containerd reads it), the log holds {logged:?}; most likely cause: the error \
         goes to stderr only, or the log's line is not {{\"level\":\"error\",\"msg\":…}}"
    );
    assert!(
        line["msg"]
            .as_str()
            .unwrap_or("")
            .contains("process.apparmorProfile"),
        "step 12: expected the JSON log line's msg to name the refused field \
         process.apparmorProfile, it is {line}; most likely cause: the log gets another \
         message than stderr's line"
    );
    let listed = text(&bundle.run(&["list", "--quiet"]).stdout);
    assert_eq!(
        listed, "",
        "step 12: expected a refused create to leave no container, list shows {listed:?}; \
         most likely cause: create saves the container's record before the bundle is checked"
    );

    for (args, needle) in [
        (vec!["--systemd-cgroup", "list"], "--systemd-cgroup"),
        (
            vec!["create", "--no-pivot", "--bundle", &bundle_dir, "x"],
            "--no-pivot",
        ),
        (vec!["pause", "x"], "pause"),
        (
            vec!["create", "--bundle", &bundle_dir, "../escape"],
            "not valid",
        ),
    ] {
        assert_one_line_error(&bundle.run(&args), 12, 1, needle);
    }
}

#[test]
fn proc_on_a_symlink_fails_create() {
    // podman's and containerd's own mount lists (not caixa's defaults) go
    // through the bundle's mount table; /proc must be a real directory.
    let bundle = Bundle::new(&["true"], |c| {
        c["mounts"] = json!([
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755", "size=65536k"]}
        ]);
    });
    std::fs::remove_dir(bundle.rootfs().join("proc")).unwrap();
    std::fs::create_dir(bundle.rootfs().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink("/elsewhere", bundle.rootfs().join("proc")).unwrap();
    let out = bundle.create("linked");
    assert_one_line_error(&out, 12, 1, "symbolic link");
    let listed = text(&bundle.run(&["list", "--quiet"]).stdout);
    assert_eq!(
        listed, "",
        "step 12: expected a failed create to leave no container, list shows {listed:?}; most \
         likely cause: a create that fails after the hand-over does not undo its record"
    );
}

#[test]
fn a_bundles_own_mounts_limits_and_sysctls_are_applied() {
    let bundle = Bundle::new(
        &[
            "sh",
            "-c",
            "cat /proc/sys/net/ipv4/ping_group_range; umask; ulimit -n; cat /proc/mounts; ls /sys/fs/cgroup; cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null; echo cgroup-ns $(cut -d: -f3 /proc/self/cgroup | sort -u); ls /dev; cat /proc/kcore | wc -c",
        ],
        |c| {
            c["mounts"] = json!([
                {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=1024k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=512k"]}
            ]);
            let namespaces = c["linux"]["namespaces"].as_array_mut().unwrap();
            namespaces.push(json!({"type": "cgroup"}));
            c["linux"]["maskedPaths"] = json!(["/proc/kcore"]);
            c["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
            c["linux"]["sysctl"] = json!({"net.ipv4.ping_group_range": "0 0"});
            c["linux"]["resources"] = json!({"pids": {"limit": 64}});
            c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]);
            c["process"]["user"]["umask"] = json!(63);
        },
    );
    let bundle_dir = bundle.dir.path().to_str().unwrap().to_string();
    let out = bundle.run(&["run", "--bundle", &bundle_dir, "table"]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "step 12: expected a bundle with its own mounts to run, it ended with {}; most likely \
         cause: {}\nstderr: {}",
        out.status,
        support::likely_cause(&text(&out.stderr)),
        text(&out.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("0\t0"),
        "step 12: expected linux.sysctl's ping_group_range \"0 0\" in the container's \
         /proc/sys; most likely cause: from_oci drops linux.sysctl, or it is written before \
         the container's /proc is mounted\n{stdout}"
    );
    assert_eq!(
        lines.next(),
        Some("0077"),
        "step 12: expected process.user.umask (63) to be the command's umask 0077; most \
         likely cause: from_oci drops process.user.umask, or the child sets it after exec's \
         preparation\n{stdout}"
    );
    assert_eq!(
        lines.next(),
        Some("256"),
        "step 12: expected process.rlimits to set RLIMIT_NOFILE's soft limit 256; most likely \
         cause: rlimits_from_oci drops it or swaps soft and hard\n{stdout}"
    );
    assert!(
        stdout.contains("tmpfs /data tmpfs rw,nosuid") && stdout.contains("size=512k"),
        "step 12: expected the bundle's own tmpfs at /data with its options (nosuid, \
         size=512k); most likely cause: the bundle's mounts do not become the mount table \
         (mount_all), or their data options are dropped\n{stdout}"
    );
    assert!(
        stdout.contains("pids"),
        "step 12: expected the cgroup mount to show the container's own hierarchies (pids); \
         most likely cause: the bundle's cgroup mount is not made (mount_cgroup)\n{stdout}"
    );
    assert!(
        stdout.contains("cgroup-ns /\n"),
        "step 12: expected the container's groups to read / in /proc/self/cgroup, in its own \
         cgroup namespace; most likely cause: the namespace \"cgroup\" of the bundle is \
         dropped, or it is made before the child joins its groups\n{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l == "64"),
        "step 12: expected the cgroup mount to show the container's own group (pids.max \
         64), not the host's root; most likely cause: mount_cgroup mounts the hierarchy's \
         root instead of binding the container's group\n{stdout}"
    );
    assert!(
        stdout.contains("null") && stdout.contains("ptmx"),
        "step 12: expected the default devices (null, ptmx…) in the bundle's own /dev tmpfs; \
         most likely cause: create_devices runs before the bundle's /dev is mounted, so the \
         tmpfs hides them\n{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with('0'),
        "step 12: expected linux.maskedPaths to hide /proc/kcore (it reads 0 bytes); most \
         likely cause: from_oci drops maskedPaths, or mask runs before the bundle's /proc is \
         mounted\n{stdout}"
    );
}

#[test]
fn only_the_preserved_descriptors_reach_the_container() {
    // The shell lists its own descriptors (an `ls` of /proc/self/fd would
    // list the directory it opened, too; `; true` keeps busybox's sh from
    // exec'ing its last command in its own place).
    let bundle = Bundle::new(&["sh", "-c", "ls /proc/$$/fd; true"], |_| {});
    let bundle_dir = bundle.dir.path().to_str().unwrap().to_string();
    let listed = |preserve: &str, id: &str| {
        // Two descriptors leaked on purpose as 3 and 4 (not close-on-exec).
        let mut cmd = bundle.command(&[
            "run",
            "--preserve-fds",
            preserve,
            "--bundle",
            &bundle_dir,
            id,
        ]);
        let file = std::fs::File::open("/etc/hostname").unwrap();
        let raw = file.as_raw_fd();
        // SAFETY: dup2 onto 3 and 4 in the child only, before exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                for target in [3, 4] {
                    if libc::dup2(raw, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let out = wait_output(
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        drop(file);
        assert!(
            out.status.success(),
            "step 12: expected `run --preserve-fds {preserve}` to succeed, it ended with {}; \
             most likely cause: {}\nstderr: {}",
            out.status,
            support::likely_cause(&text(&out.stderr)),
            text(&out.stderr)
        );
        text(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let none = listed("0", "fds0");
    assert!(
        !none.contains(&"3".to_string()) && !none.contains(&"4".to_string()),
        "step 12: expected no descriptor the runtime inherited (3, 4) in the container, it \
         holds {none:?}; most likely cause: the child does not mark every descriptor above \
         2 + --preserve-fds close-on-exec before execve (CVE-2024-21626)"
    );
    let one = listed("1", "fds1");
    assert!(
        one.contains(&"3".to_string()),
        "step 12: expected --preserve-fds 1 to keep descriptor 3 open in the container, it \
         holds {one:?}; most likely cause: --preserve-fds does not reach the child's \
         close-on-exec sweep (the first kept descriptor is 3 + N)"
    );
    assert!(
        !one.contains(&"4".to_string()),
        "step 12: expected --preserve-fds 1 to keep only descriptor 3, it holds {one:?}; \
         most likely cause: the close-on-exec sweep starts past 3 + N (an off by one)"
    );
}

#[test]
fn a_terminal_goes_to_the_console_socket() {
    let bundle = Bundle::new(&["sh", "-c", "readlink /proc/self/fd/0; exit 0"], |c| {
        c["process"]["terminal"] = json!(true);
    });
    let socket = bundle.state.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let bundle_dir = bundle.dir.path().to_str().unwrap().to_string();
    let out = bundle.run(&["create", "--bundle", &bundle_dir, "tty"]);
    assert_one_line_error(&out, 12, 1, "--console-socket");
    let out = bundle.run(&[
        "create",
        "--console-socket",
        socket.to_str().unwrap(),
        "--bundle",
        &bundle_dir,
        "tty",
    ]);
    assert!(
        out.status.success(),
        "step 12: expected create with a terminal and --console-socket to succeed, it ended \
         with {}; most likely cause: {}\nstderr: {}",
        out.status,
        support::likely_cause(&text(&out.stderr)),
        text(&out.stderr)
    );
    let (stream, _) = listener.accept().unwrap();
    let mut buf = [0u8; 64];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    let master = msg
        .cmsgs()
        .unwrap()
        .find_map(|c| match c {
            nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        })
        .expect(
            "step 12: expected create to send the terminal's master end over the console \
             socket, no descriptor came; most likely cause: the master is sent as data, not \
             as an SCM_RIGHTS control message",
        );
    // SAFETY: the descriptor just arrived with the message; we own it.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let started = bundle.run(&["start", "tty"]);
    assert!(
        started.status.success(),
        "step 12: expected start of the container with a terminal to succeed, it ended with \
         {}; most likely cause: {}\nstderr: {}",
        started.status,
        support::likely_cause(&text(&started.stderr)),
        text(&started.stderr)
    );
    let mut seen = Vec::new();
    let mut file = std::fs::File::from(master);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) && !text(&seen).contains("/dev/pts/0") {
        let mut chunk = [0u8; 256];
        match std::io::Read::read(&mut file, &mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
    assert!(
        text(&seen).contains("/dev/pts/0"),
        "step 12: expected the command's stdin to be the pty whose master came over the \
         socket (/dev/pts/0), the master read {:?}; most likely cause: the child does not \
         make the pty's slave its controlling terminal and stdio (use_as_terminal) before \
         exec",
        text(&seen)
    );
}

/// The ids `step12 --root ROOT list --quiet` prints.
fn listed_ids(root: &Path) -> String {
    let out = Command::new(binary(12))
        .arg("--root")
        .arg(root)
        .args(["list", "--quiet"])
        .output()
        .unwrap();
    text(&out.stdout)
}

/// An OCI archive of a busybox image, for podman and containerd.
fn image_archive(dir: &Path) -> PathBuf {
    let rootfs = TinyRootfs::new();
    for applet in ["true", "cat", "sleep", "echo", "readlink"] {
        std::os::unix::fs::symlink("busybox", rootfs.dir.path().join("bin").join(applet)).unwrap();
    }
    let layout = dir.join("layout");
    support::umoci_image(
        &layout,
        rootfs.dir.path(),
        "--config.env PATH=/bin --config.cmd /bin/sh",
    );
    let archive = dir.join("bb.tar");
    let status = Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:base", layout.display()))
        .arg(format!("oci-archive:{}:localhost/bb:1", archive.display()))
        .status()
        .expect("skopeo (sudo apt-get install skopeo)");
    assert!(
        status.success(),
        "step 12: expected skopeo to make the test's image archive, it ended with {status}; \
         most likely cause: skopeo is missing or too old (its stderr is above)"
    );
    archive
}

/// Unmounts whatever is still mounted below `dir` (podman's and
/// containerd's overlays after a failed test), deepest first.
fn unmount_below(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A wrapper script that runs step12 with this test's `--root` and state:
/// how a user registers a runtime with options under podman, whose
/// clean-up after a container's end calls the runtime again without its
/// `--runtime-flag`s (and without the environment).
fn runtime_wrapper(work: &Path) -> PathBuf {
    let wrapper = work.join("caixa-runtime");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nCAIXA_STATE_DIR={state} exec {bin} --root {root} \"$@\"\n",
            state = work.join("caixa").display(),
            bin = binary(12),
            root = work.join("runtime").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    wrapper
}

/// The parent cgroup one test's containers go below (cgroupsPath), removed
/// at the end: never the shared `libpod_parent` or `default`, and one per
/// test, so two tests running at once never remove each other's.
fn test_cgroup_parent(test: &str) -> String {
    format!("/caixa-test-{}-{test}", std::process::id())
}

/// Removes the test's empty parent cgroups made for `test_cgroup_parent`.
fn remove_test_cgroup_parent(test: &str) {
    let name = test_cgroup_parent(test);
    let name = name.trim_start_matches('/');
    let mut dirs = vec![Path::new("/sys/fs/cgroup").join(name)];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        dirs.extend(entries.flatten().map(|e| e.path().join(name)));
    }
    // The test's own parent: whatever is still inside is the test's.
    remove_groups(&dirs);
}

/// Kills what is left in the groups `dirs` and below them (a container
/// still waiting at the gate because a stubbed `delete` panicked), then
/// removes them, children first (podman leaves an empty `conmon` group
/// below its parent). Only ever given groups this test made.
fn remove_groups(dirs: &[PathBuf]) {
    for dir in dirs {
        let _ = caixa::cgroup::remove_tree(dir);
    }
}

#[test]
fn podman_runs_containers_through_caixa() {
    support::require_root();
    let work = tempfile::tempdir().unwrap();
    let wrapper = runtime_wrapper(work.path());
    let runtime_root = work.path().join("runtime");
    let base: Vec<String> = vec![
        "--root".into(),
        work.path().join("storage").display().to_string(),
        "--runroot".into(),
        work.path().join("run").display().to_string(),
        "--cgroup-manager".into(),
        "cgroupfs".into(),
        "--events-backend".into(),
        "file".into(),
        "--runtime".into(),
        wrapper.display().to_string(),
    ];
    let podman = |args: &[&str]| {
        let mut cmd = Command::new("podman");
        cmd.args(&base)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        wait_output(cmd.spawn().expect("podman (sudo apt-get install podman)"))
    };
    /// Whatever a failed test left: podman's containers (through caixa),
    /// their mounts, and the test's parent cgroups.
    struct Cleanup(Vec<String>, PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("podman")
                .args(&self.0)
                .args(["rm", "-af", "-t", "0"])
                .output();
            let _ = Command::new("podman")
                .args(&self.0)
                .args(["system", "reset", "--force"])
                .output();
            unmount_below(&self.1);
            remove_test_cgroup_parent("podman");
        }
    }
    let _cleanup = Cleanup(base.clone(), work.path().to_path_buf());
    let archive = image_archive(work.path());
    let out = podman(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "step 12: expected podman to load the test's image, it ended with {}; most likely \
         cause: podman's storage under the test's directory cannot be made (the host's \
         podman setup)\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    // This machine lacks CAP_SYS_RESOURCE: podman's default rlimits
    // (nofile 1048576) fail under runc as under caixa.
    let parent = test_cgroup_parent("podman");
    let limits = [
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
        "--network",
        "none",
        "--cgroup-parent",
        &parent,
    ];
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(&limits);
        args.extend_from_slice(extra);
        podman(&args)
    };
    let out = run(&["localhost/bb:1", "true"]);
    assert!(
        out.status.success(),
        "step 12: expected `podman --runtime step12 run --rm IMAGE true` to succeed, it ended \
         with {}; most likely cause: a runtime command conmon calls (create, start, state, \
         delete) fails or answers otherwise than runc: podman's stderr quotes step12's \
         line\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    let out = run(&["localhost/bb:1", "sh", "-c", "echo from caixa; exit 4"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "step 12: expected podman to report the command's exit code 4 through caixa, it ended \
         with {}; most likely cause: the container's process is not create's child as conmon \
         expects (conmon reaps it and reads its code), or create does not leave it at the \
         gate with create's stdio\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "from caixa",
        "step 12: expected the command's output (from caixa) through podman, it printed {:?}; \
         most likely cause: the container does not keep the stdio create was given (conmon's \
         pipes)",
        text(&out.stdout)
    );

    // Detached: state, kill and delete through caixa; the container shows in step12 list.
    let mut args = vec!["run", "-d", "--name", "sleeper"];
    args.extend_from_slice(&limits);
    args.extend_from_slice(&["localhost/bb:1", "sleep", "100"]);
    let out = podman(&args);
    assert!(
        out.status.success(),
        "step 12: expected `podman run -d` to start the container through caixa, it ended \
         with {}; most likely cause: start or state fails for a detached container (podman's \
         stderr quotes step12's line)\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    let id = text(&out.stdout).trim().to_string();
    let listed = listed_ids(&runtime_root);
    assert!(
        listed.contains(&id),
        "step 12: expected podman's container {id} in caixa's list (step12 --root … list), \
         list shows {:?}; most likely cause: create saves its record elsewhere than under \
         --root",
        listed
    );
    let out = podman(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        text(&out.stdout).contains("sleeper Up"),
        "step 12: expected podman to see sleeper running (Up) through `state`, podman ps \
         says {:?}; most likely cause: Saved::status does not answer Running for a live \
         process whose start gate is gone",
        text(&out.stdout)
    );
    let out = podman(&[
        "exec",
        "sleeper",
        "sh",
        "-c",
        "a=$(readlink /proc/1/ns/pid); [ -n \"$a\" ] && [ \"$a\" = \"$(readlink /proc/self/ns/pid)\" ] && echo joined; exit 6",
    ]);
    assert_eq!(
        (out.status.code(), text(&out.stdout).trim().to_string()),
        (Some(6), "joined".to_string()),
        "step 12: expected `podman exec` through caixa's exec to run in the container's PID \
         namespace and report its code 6; most likely cause: `exec --process F --detach \
         --pid-file P` (what conmon runs) does not write the pid file\nstderr: {}",
        text(&out.stderr)
    );
    // A network namespace of the test's own, named by path (a pod's way).
    let holder = NetnsHolder::new();
    let network = format!("ns:{}", holder.path());
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(&limits[..4]);
    args.extend_from_slice(&["--cgroup-parent", &parent, "--network", &network]);
    args.extend_from_slice(&["localhost/bb:1", "readlink", "/proc/self/ns/net"]);
    let out = podman(&args);
    assert_eq!(
        text(&out.stdout).trim(),
        std::fs::read_link(holder.path()).unwrap().to_string_lossy(),
        "step 12: expected `podman run --network ns:PATH` to put the container in that \
         namespace (linux.namespaces[].path); most likely cause: from_oci drops the network \
         namespace's path, or the parent clones with CLONE_NEWNET anyway\nstderr: {}",
        text(&out.stderr)
    );
    let out = podman(&["kill", "sleeper"]);
    assert!(
        out.status.success(),
        "step 12: expected podman kill to work through caixa's kill, it ended with {}; most \
         likely cause: kill refuses a signal named as podman names it, or a running \
         container\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    let out = podman(&["rm", "-f", "sleeper"]);
    assert!(
        out.status.success(),
        "step 12: expected podman rm -f to work through caixa's delete, it ended with {}; \
         most likely cause: delete refuses a container that is stopped, or state does not \
         answer Stopped once the process is gone\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    let listed = listed_ids(&runtime_root);
    assert_eq!(
        listed.trim(),
        "",
        "step 12: expected caixa to keep nothing of the container after podman rm, list \
         shows {listed:?}; most likely cause: delete leaves the container's record under \
         --root"
    );

    // Interactive: podman -it, through a pty of `script`'s. The command
    // waits a second before it writes: podman attaches to conmon after the
    // start, and output written before that can be missed (1 run in 3 here).
    let command = format!(
        "podman {base} run --rm -it {limits} localhost/bb:1 sh -c 'sleep 1; tty; exit 5'",
        base = base.join(" "),
        limits = limits.join(" ")
    );
    let child = Command::new("script")
        .args(["-eqc", &command, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    let out = wait_output(child);
    assert!(
        text(&out.stdout).contains("/dev/pts/0"),
        "step 12: expected `podman run -it` to give the command caixa's terminal \
         (/dev/pts/0), it printed {:?}; most likely cause: create does not send the pty's \
         master over --console-socket, or the child does not make the slave its stdio\n\
         stderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "step 12: expected podman -it to report the exit code 5, it ended with {}; most \
         likely cause: the exit code is lost when the container has a terminal (conmon reaps \
         create's child either way)\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
}

#[test]
fn containerd_runs_containers_through_caixa() {
    support::require_root();
    let work = tempfile::tempdir().unwrap();
    let archive = image_archive(work.path());
    let w = work.path();
    std::fs::write(
        w.join("config.toml"),
        format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{0}/containerd.sock\"\n[ttrpc]\n  address = \"{0}/containerd.sock.ttrpc\"\n",
            w.display()
        ),
    )
    .unwrap();
    /// containerd, and whatever a failed test left: its tasks (killed and
    /// deleted through caixa), their mounts, the test's parent cgroups.
    struct Daemon(std::process::Child, PathBuf);
    impl Drop for Daemon {
        fn drop(&mut self) {
            let ctr = |args: &[&str]| {
                Command::new("ctr")
                    .arg("--address")
                    .arg(self.1.join("containerd.sock"))
                    .args(args)
                    .output()
            };
            if let Ok(out) = ctr(&["task", "ls", "-q"]) {
                for id in text(&out.stdout).lines() {
                    let _ = ctr(&["task", "kill", "-s", "SIGKILL", id]);
                    let _ = ctr(&["task", "rm", "-f", id]);
                    let _ = ctr(&["container", "rm", id]);
                }
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
            // A shim whose task could not be removed (a stubbed `delete`
            // panics) outlives containerd: it names the test's socket.
            let socket = self.1.join("containerd.sock");
            let socket = socket.to_string_lossy();
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                if text(&cmdline).contains("containerd-shim") && text(&cmdline).contains(&*socket) {
                    // SAFETY: kill(2) of the test's own shim.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            unmount_below(&self.1);
            remove_test_cgroup_parent("containerd");
        }
    }
    let log = std::fs::File::create(w.join("containerd.log")).unwrap();
    let _daemon = Daemon(
        Command::new("containerd")
            .env("CAIXA_STATE_DIR", w.join("caixa"))
            .arg("--config")
            .arg(w.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd (sudo apt-get install containerd)"),
        w.to_path_buf(),
    );
    let runtime_root = w.join("runtime");
    // containerd's shim adds the namespace to the root it passes.
    let listed_root = runtime_root.join("default");
    let ctr = |args: &[&str]| {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(w.join("containerd.sock"))
            .env("CAIXA_STATE_DIR", w.join("caixa"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        wait_output(cmd.spawn().expect("ctr (sudo apt-get install containerd)"))
    };
    assert!(
        eventually(|| w.join("containerd.sock").exists()),
        "step 12: expected the test's containerd to make its socket within 10 s, it did not; \
         most likely cause: containerd is missing or its config under the test's directory \
         is refused (its log follows)\n{}",
        std::fs::read_to_string(w.join("containerd.log")).unwrap_or_default()
    );
    let out = ctr(&[
        "images",
        "import",
        "--base-name",
        "localhost/bb",
        "--digests",
        archive.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "step 12: expected ctr to import the test's image, it ended with {}; most likely \
         cause: the test's containerd is not answering on its socket\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    let image = text(&ctr(&["images", "ls", "-q"]).stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let runtime = |id: &str, extra: &[&str], cmd: &[&str]| {
        let mut args = vec![
            "run",
            "--runc-binary",
            binary(12),
            "--runc-root",
            runtime_root.to_str().unwrap(),
        ];
        // Below a parent of the test's own, not containerd's `/default`.
        let group = format!("{}/{id}", test_cgroup_parent("containerd"));
        args.extend_from_slice(&["--cgroup", &group]);
        args.extend_from_slice(extra);
        args.push(&image);
        args.push(id);
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(cmd.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        ctr(&refs)
    };
    let out = runtime("once", &["--rm"], &["sh", "-c", "echo from caixa; exit 3"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "step 12: expected `ctr run --runc-binary step12` to end with the command's code 3, \
         it ended with {}; most likely cause: a runtime command containerd's shim calls \
         fails: --log-format json's lines in the shim's log say which\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "from caixa",
        "step 12: expected the command's output (from caixa) through ctr, it printed {:?}; \
         most likely cause: the container does not keep the stdio create was given (the \
         shim's pipes)",
        text(&out.stdout)
    );

    let out = runtime("sleeper", &["-d"], &["sleep", "100"]);
    assert!(
        out.status.success(),
        "step 12: expected `ctr run -d` to start the container through caixa, it ended with \
         {}; most likely cause: start or state fails for a detached container\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    let tasks = text(&ctr(&["task", "ls"]).stdout);
    assert!(
        tasks.contains("sleeper") && tasks.contains("RUNNING"),
        "step 12: expected containerd's shim to read caixa's state as RUNNING for sleeper, \
         ctr task ls says {tasks:?}; most likely cause: Saved::status does not answer \
         Running for a live process whose start gate is gone"
    );
    let listed = listed_ids(&listed_root);
    assert!(
        listed.contains("sleeper"),
        "step 12: expected containerd's container sleeper in caixa's list, list shows {:?}; \
         most likely cause: create saves its record elsewhere than under --runc-root",
        listed
    );
    let out = ctr(&[
        "task",
        "exec",
        "--exec-id",
        "probe",
        "sleeper",
        "sh",
        "-c",
        "echo joined; exit 6",
    ]);
    assert_eq!(
        (out.status.code(), text(&out.stdout).trim().to_string()),
        (Some(6), "joined".to_string()),
        "step 12: expected `ctr task exec` through caixa's exec to report the code 6; most \
         likely cause: `exec --process F --detach --pid-file P` (what the shim runs) does not \
         write the pid file\nstderr: {}",
        text(&out.stderr)
    );
    let killed = ctr(&["task", "kill", "-s", "SIGKILL", "sleeper"]);
    assert!(
        killed.status.success(),
        "step 12: expected `ctr task kill -s SIGKILL` to work through caixa's kill, it ended \
         with {}; most likely cause: kill refuses the signal as SIGKILL (with its SIG \
         prefix) or a running container\nstderr: {}",
        killed.status,
        text(&killed.stderr)
    );
    assert!(
        eventually(|| text(&ctr(&["task", "ls"]).stdout).contains("STOPPED")),
        "step 12: expected the task to stop after kill, ctr task ls says {:?}; most likely \
         cause: Saved::status does not answer Stopped when the process is gone or a zombie",
        text(&ctr(&["task", "ls"]).stdout)
    );
    let removed = ctr(&["task", "rm", "sleeper"]);
    assert!(
        removed.status.success(),
        "step 12: expected `ctr task rm` to work through caixa's delete, it ended with {}; \
         most likely cause: delete refuses a stopped container\nstderr: {}",
        removed.status,
        text(&removed.stderr)
    );
    let container_rm = ctr(&["container", "rm", "sleeper"]);
    assert!(
        container_rm.status.success(),
        "step 12: expected `ctr container rm` to remove the container once its task is gone, \
         it ended with {}; most likely cause: the task was not removed for containerd\n\
         stderr: {}",
        container_rm.status,
        text(&container_rm.stderr)
    );
    let listed = listed_ids(&listed_root);
    assert_eq!(
        listed.trim(),
        "",
        "step 12: expected caixa to keep nothing of the container after task rm, list shows \
         {listed:?}; most likely cause: delete leaves the container's record under \
         --runc-root"
    );
}
