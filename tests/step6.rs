//! Step 6 grading: the user namespace, capabilities, no_new_privs, seccomp
//! and file descriptors.

mod support;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;

use support::{
    Running, TinyRootfs, assert_one_line_error, likely_cause, run, step, text, wait_output,
};

/// The step's stdout, once it is known to have succeeded; otherwise a
/// failure that names step 6's likely mistake, read from its stderr.
fn stdout_of(out: &std::process::Output) -> String {
    let err = text(&out.stderr);
    let cause = if err.contains("uid_map") || err.contains("gid_map") || err.contains("setgroups") {
        "writing the id maps failed: write_maps runs in the parent and writes the child's \
         files, /proc/<child>/gid_map then uid_map (the parent's own, /proc/self, cannot be \
         written)"
            .to_string()
    } else if err.contains("setresgid") || err.contains("setgroups(") {
        "the container's root has no group id: an id that is not in the maps is refused \
         (EINVAL); write_maps must write /proc/<child>/gid_map as well as uid_map"
            .to_string()
    } else if err.contains("permitted set") || err.contains("effective set") {
        "setting a capability set failed: set the effective set first, then the permitted \
         set (effective must stay within permitted, or the kernel answers EPERM)"
            .to_string()
    } else if err.contains("bounding set") {
        "dropping from the bounding set failed: do it first, while CAP_SETPCAP is still \
         effective, and only for capabilities this kernel knows"
            .to_string()
    } else {
        likely_cause(&err)
    };
    assert!(
        out.status.success(),
        "step 6: expected the container to succeed, it failed with {}; most likely cause: \
         {cause}\nstdout: {}\nstderr: {err}",
        out.status,
        text(&out.stdout)
    );
    text(&out.stdout)
}

/// `Key:\tvalue` lines of a /proc/<pid>/status dump.
fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
        .unwrap_or_else(|| {
            panic!(
                "step 6: expected a {key}: line in /proc/self/status, it printed:\n{status}\n\
                 most likely cause: the command's stdout did not reach the test (only fds 0, \
                 1 and 2 cross into the command: init::run block 6)"
            )
        })
}

#[test]
fn root_inside_is_uid_0() {
    let out = run(6, &["sh", "-c", "id -u; id -g; cat /proc/self/uid_map"]);
    let text = stdout_of(&out);
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        ["0", "0", "0 100000 65536"],
        "step 6: expected root inside (uid 0, gid 0) mapped from 100000 (\"0 100000 65536\"), \
         saw {lines:?}; most likely cause: write_maps does not write both \
         /proc/<child>/gid_map and /proc/<child>/uid_map (an unmapped id shows as 65534)"
    );
}

#[test]
fn root_inside_is_an_unprivileged_uid_outside() {
    let running = Running::start(6, &[], "echo ready; read x");
    let pid = running.container_pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| {
        panic!(
            "step 6: expected to read /proc/{pid}/status of the container, saw {e}; \
                 most likely cause: the container ended early\nstderr: {}",
            running.stderr_text()
        )
    });
    let uids: Vec<&str> = field(&status, "Uid").split_whitespace().collect();
    assert_eq!(
        uids, ["100000"; 4],
        "step 6: expected the host to see the container's root as uid 100000 (real, effective, \
         saved, fs), saw {uids:?}; most likely cause: write_maps does not write \
         /proc/<child>/uid_map with `uid` (\"0 100000 65536\"), or writes it to another \
         process than the child"
    );
    running.finish_well();
}

#[test]
fn a_file_created_inside_belongs_to_the_mapped_uid_outside() {
    let rootfs = TinyRootfs::new().owned_by(100000, 100000);
    let out = run(
        6,
        &[
            "--rootfs",
            rootfs.path(),
            "/bin/sh",
            "-c",
            "echo x > /tmp/made-inside",
        ],
    );
    stdout_of(&out);
    let made = rootfs.dir.path().join("tmp/made-inside");
    let meta = std::fs::metadata(&made).unwrap_or_else(|e| {
        panic!(
            "step 6: expected the container to write {made:?}, it is not there ({e}); \
                 most likely cause: the container's root cannot write its rootfs (owned by \
                 100000:100000): write_maps must map 0 to 100000 in both maps"
        )
    });
    assert_eq!(
        (meta.uid(), meta.gid()),
        (100000, 100000),
        "step 6: expected a file made by the container's root to belong to 100000:100000 on \
         the host, it belongs to {}:{}; most likely cause: write_maps does not write both \
         /proc/<child>/gid_map and uid_map",
        meta.uid(),
        meta.gid()
    );
}

#[test]
fn custom_maps_are_honoured() {
    let out = run(
        6,
        &[
            "--uid-map",
            "0:200000:1000",
            "--gid-map",
            "0:300000:1000",
            "cat",
            "/proc/self/uid_map",
            "/proc/self/gid_map",
        ],
    );
    let text = stdout_of(&out);
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        ["0 200000 1000", "0 300000 1000"],
        "step 6: expected --uid-map and --gid-map in the maps, saw {lines:?}; \
         most likely cause: write_maps writes gid_map from `uid` or uid_map from `gid` (gid_map from \
         `gid`, uid_map from `uid`, each with format_map)"
    );
}

#[test]
fn capabilities_are_dockers_default_and_no_new_privs_and_seccomp_are_on() {
    let out = run(6, &["cat", "/proc/self/status"]);
    let status = stdout_of(&out);
    for (set, key, want, cause) in [
        (
            "effective",
            "CapEff",
            "00000000a80425fb",
            "set it to `keep`",
        ),
        (
            "permitted",
            "CapPrm",
            "00000000a80425fb",
            "set it to `keep`, after effective",
        ),
        (
            "bounding",
            "CapBnd",
            "00000000a80425fb",
            "drop every capability not in `keep` from it, first",
        ),
        (
            "inheritable",
            "CapInh",
            "0000000000000000",
            "clear it (a capability left there survives execve: CVE-2022-24769)",
        ),
        ("ambient", "CapAmb", "0000000000000000", "clear it"),
    ] {
        let seen = field(&status, key);
        assert_eq!(
            seen, want,
            "step 6: expected the {set} set ({key}) to be {want}, it is {seen}; \
             most likely cause: drop_capabilities does not {cause}"
        );
    }
    assert_eq!(
        field(&status, "NoNewPrivs"),
        "1",
        "step 6: expected no_new_privs set (NoNewPrivs: 1), saw NoNewPrivs: {}; \
         most likely cause: init::run no longer sets PR_SET_NO_NEW_PRIVS before seccomp (block 8b)",
        field(&status, "NoNewPrivs")
    );
    assert_eq!(
        field(&status, "Seccomp"),
        "2",
        "step 6: expected a seccomp filter installed (Seccomp: 2), saw Seccomp: {}; \
         most likely cause: init::run no longer installs the filter (seccomp::Prepared::install, block 11) \
         before execve",
        field(&status, "Seccomp")
    );
}

#[test]
fn cap_add_and_cap_drop_change_the_set() {
    let out = run(
        6,
        &[
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "CHOWN",
            "cat",
            "/proc/self/status",
        ],
    );
    let status = stdout_of(&out);
    // a80425fb - CHOWN (bit 0) + NET_ADMIN (bit 12)
    assert_eq!(
        field(&status, "CapEff"),
        "00000000a80435fa",
        "step 6: expected --cap-add NET_ADMIN --cap-drop CHOWN to make the effective set \
         a80435fa (a80425fb, less bit 0, plus bit 12), saw {}; most likely cause: \
         drop_capabilities keeps a fixed set instead of `keep` (caps::resolve adds and drops)",
        field(&status, "CapEff")
    );
}

#[test]
fn seccomp_unconfined_turns_the_filter_off() {
    let out = run(
        6,
        &[
            "--security-opt",
            "seccomp=unconfined",
            "cat",
            "/proc/self/status",
        ],
    );
    let status = stdout_of(&out);
    assert_eq!(
        field(&status, "Seccomp"),
        "0",
        "step 6: expected --security-opt seccomp=unconfined to leave no filter (Seccomp: 0), \
         saw Seccomp: {}; most likely cause: init::run installs a filter although the spec \
         has none (seccomp=unconfined)",
        field(&status, "Seccomp")
    );
}

#[test]
fn denied_system_calls_fail_with_eperm() {
    let rootfs = TinyRootfs::new().with_probe().owned_by(100000, 100000);
    let out = run(6, &["--rootfs", rootfs.path(), "/probe", "syscalls"]);
    let text = stdout_of(&out);
    for line in text.lines() {
        let (name, answer) = line.rsplit_once(' ').unwrap_or_else(|| {
            panic!(
                "step 6: expected \"CALL ANSWER\" lines from the probe, it printed:\n\
                     {text}\nmost likely cause: the probe's stdout did not reach the test"
            )
        });
        let expected = if name == "clone3" { "ENOSYS" } else { "EPERM" };
        assert_eq!(
            answer, expected,
            "step 6: expected {name} refused by the seccomp filter with {expected}, it got \
             {answer}; most likely cause: the filter is not installed (init::run block 11) or \
             was changed (seccomp::default_filter)\n{text}"
        );
    }
    assert!(
        text.lines().count() >= 29,
        "step 6: expected the probe to try at least 29 calls, it printed {}:\n{text}\n\
         most likely cause: the probe died part of the way (a call the filter kills instead \
         of refusing)",
        text.lines().count()
    );
}

#[test]
fn the_filter_is_what_refuses_them() {
    // Without seccomp, several of the same calls get another answer from the
    // kernel: the EPERMs above come from the filter, not from capabilities.
    let rootfs = TinyRootfs::new().with_probe().owned_by(100000, 100000);
    let out = run(
        6,
        &[
            "--rootfs",
            rootfs.path(),
            "--security-opt",
            "seccomp=unconfined",
            "/probe",
            "syscalls",
        ],
    );
    let text = stdout_of(&out);
    let not_eperm = text.lines().filter(|l| !l.ends_with(" EPERM")).count();
    assert!(
        not_eperm >= 5,
        "step 6: expected the kernel's own answers without the filter (at least 5 not EPERM), \
         saw {not_eperm}:\n{text}\nmost likely cause: a filter is installed although the \
         spec has none (seccomp=unconfined), or the EPERMs come from capabilities: \
         drop_capabilities keeps too few"
    );
}

#[test]
fn a_shell_a_server_and_a_package_manager_still_work() {
    let rootfs = TinyRootfs::new().with_probe().owned_by(100000, 100000);
    let out = run(6, &["--rootfs", rootfs.path(), "/probe", "works"]);
    let text = stdout_of(&out);
    assert_eq!(
        text, "fork ok\nexec ok\nfiles ok\nsockets ok\nallowed-arguments ok\nthreads ok\n",
        "step 6: expected fork, exec, files, sockets, allowed arguments and threads to work \
         in the container, the probe printed:\n{text}\nmost likely cause: the filter \
         (seccomp::default_filter) or drop_capabilities took too much away"
    );
}

#[test]
fn busybox_sh_ls_cat_and_ps_run_under_the_allow_list() {
    let out = run(
        6,
        &[
            "sh",
            "-c",
            "ls / >/dev/null && cat /proc/self/status >/dev/null && ps >/dev/null && echo fine",
        ],
    );
    let seen = stdout_of(&out);
    assert_eq!(
        seen,
        "fine\n",
        "step 6: expected sh, ls, cat and ps to work under the allow list, saw {seen:?}; \
         most likely cause: the filter (seccomp::default_filter) refuses a call busybox needs\n\
         stderr: {}",
        text(&out.stderr)
    );
}

/// Makes descriptor `raw` of the test fd 7 of the step binary, without
/// CLOEXEC: a descriptor leaked in by a careless caller.
fn leak_as_fd_7(cmd: &mut std::process::Command, raw: i32) {
    // SAFETY: only dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 7) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn only_fds_0_1_2_reach_the_command() {
    let rootfs = TinyRootfs::new().with_probe().owned_by(100000, 100000);
    let leaked = std::fs::File::open("/etc/hostname").expect("open /etc/hostname");
    let mut cmd = step(6);
    cmd.args(["--rootfs", rootfs.path(), "/probe", "fds"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let raw = std::os::fd::AsRawFd::as_raw_fd(&leaked);
    leak_as_fd_7(&mut cmd, raw);
    let out = wait_output(cmd.spawn().expect("start step6"));
    let seen = stdout_of(&out);
    assert_eq!(
        seen.trim(),
        "0 1 2",
        "step 6: expected only descriptors 0, 1 and 2 in the command, it has {:?} (descriptor \
         7 was left open by the test); most likely cause: init::run (block 6) no longer \
         marks every other descriptor close-on-exec (mark_fds_close_on_exec)",
        seen.trim()
    );
}

#[test]
fn cve_2024_21626_a_leaked_directory_as_workdir_is_refused() {
    // runc leaked a descriptor of a host directory into the container; a
    // workdir of /proc/self/fd/N then started the process outside its root.
    let host_dir = tempfile::tempdir().expect("a temporary directory");
    let dir = std::fs::File::open(host_dir.path()).expect("open it");
    let raw = std::os::fd::AsRawFd::as_raw_fd(&dir);
    let mut cmd = step(6);
    cmd.args(["-w", "/proc/self/fd/7", "pwd"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    leak_as_fd_7(&mut cmd, raw);
    let out = wait_output(cmd.spawn().expect("start step6"));
    assert_one_line_error(&out, 6, 125, "outside the container's root");
}

#[test]
fn a_rootfs_the_mapped_root_cannot_enter_is_one_clear_line() {
    // Owned by the host's root with mode 0700: uid 100000 cannot go in.
    let rootfs = TinyRootfs::new();
    std::fs::set_permissions(
        rootfs.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod 0700 the rootfs");
    let out = run(6, &["--rootfs", rootfs.path(), "/bin/sh", "-c", "true"]);
    assert_one_line_error(&out, 6, 125, "chown -R 100000:100000");
}

#[test]
fn a_malformed_map_is_one_clear_line() {
    let out = run(6, &["--uid-map", "0:100000", "true"]);
    assert_eq!(
        out.status.code(),
        Some(125),
        "step 6: expected a malformed --uid-map refused with exit code 125, it ended with {}; \
         most likely cause: idmap's parser accepts CONTAINER:HOST without a COUNT\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("CONTAINER:HOST:COUNT"),
        "step 6: expected the error to show the form CONTAINER:HOST:COUNT, it did not; \
         most likely cause: the refusal is not IdMapError's (the map is refused elsewhere, or \
         its message was changed)\nstderr: {}",
        text(&out.stderr)
    );
}

#[test]
fn an_overlapping_map_is_one_clear_line() {
    let out = run(
        6,
        &[
            "--uid-map",
            "0:100000:100",
            "--uid-map",
            "50:200000:10",
            "true",
        ],
    );
    assert_one_line_error(&out, 6, 125, "overlap");
}

#[test]
fn an_unknown_capability_is_one_clear_line() {
    let out = run(6, &["--cap-add", "NOT_A_CAP", "true"]);
    assert_one_line_error(&out, 6, 125, "unknown capability");
}

/// Puts a file of the shared default rootfs back as it was, whatever the
/// test's outcome (before the fix, a container's writes land in the cache).
struct Restore(Vec<(PathBuf, Option<Vec<u8>>)>);

impl Drop for Restore {
    fn drop(&mut self) {
        for (path, bytes) in &self.0 {
            match bytes {
                Some(bytes) => {
                    let _ = std::fs::write(path, bytes);
                }
                None => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

#[test]
fn a_container_cannot_change_what_the_next_one_sees() {
    // The first run builds the default rootfs (owned by the mapped root).
    stdout_of(&run(6, &["true"]));
    let tree = support::cache_dir().join("busybox-rootfs-100000-100000");
    let planted = format!("planted-{}", std::process::id());
    let group = tree.join("etc/group");
    let _restore = Restore(vec![
        (tree.join(&planted), None),
        (
            group.clone(),
            Some(std::fs::read(&group).unwrap_or_else(|e| {
                panic!(
                    "step 6: expected the default rootfs at {}, saw {e}; most likely cause: \
                     busybox::default_rootfs_owned_by builds it elsewhere",
                    tree.display()
                )
            })),
        ),
    ]);
    let write = format!("echo evil > /{planted} && echo evil:x:0: >> /etc/group && echo written");
    let seen = stdout_of(&run(6, &["sh", "-c", &write]));
    assert_eq!(
        seen, "written\n",
        "step 6: expected the container's root to write in its own /, saw {seen:?}; \
         most likely cause: the root is read-only or not owned by the mapped root (write_maps, \
         0 to 100000)"
    );
    let look = format!(
        "test -e /{planted} && echo planted; grep -q evil /etc/group && echo changed; echo done"
    );
    let seen = stdout_of(&run(6, &["sh", "-c", &look]));
    assert_eq!(
        seen, "done\n",
        "step 6: expected a container's writes to stay its own, the next container saw \
         {seen:?}; most likely cause: the default rootfs is used in place, not under a \
         per-container overlay (image::overlay::over_shared_root)"
    );
    assert!(
        !tree.join(&planted).exists(),
        "step 6: expected the shared default rootfs untouched, a container wrote {planted} \
         into it; most likely cause: the default rootfs is used in place, not under a \
         per-container overlay (image::overlay::over_shared_root)"
    );
}

/// Rootless (an ordinary user, no sudo): the earlier steps get a user
/// namespace first, which an unprivileged process may create, and then
/// their own namespaces inside it; its root is the user's own uid.
#[test]
fn rootless_steps_1_to_5_get_a_user_namespace_first() {
    let user = support::Rootless::new();
    let map = format!("0 {} 1", support::Rootless::UID);
    let out = user.run(1, &["sh", "-c", "echo $$; cat /proc/self/uid_map"]);
    let lines = rootless_stdout(&out, 1);
    let words: Vec<String> = lines
        .split_whitespace()
        .map(str::to_string)
        .collect::<Vec<_>>();
    assert_eq!(
        words.join(" "),
        format!("1 {map}"),
        "step 1 run by uid {}: expected pid 1 and the uid map `{map}` (root inside is the \
         user), it printed:\n{lines}\nmost likely cause: rootless::adapt does not put a user \
         namespace first, or its default map is not the user's own id",
        support::Rootless::UID
    );
    let out = user.run(
        4,
        &[
            "sh",
            "-c",
            "id -u; ls /proc/1/cmdline; touch /tmp/x && echo ok",
        ],
    );
    let printed = rootless_stdout(&out, 4);
    assert_eq!(
        printed.split_whitespace().collect::<Vec<_>>(),
        ["0", "/proc/1/cmdline", "ok"],
        "step 4 run by uid {}: expected root in its own rootfs with its own /proc, it \
         printed:\n{printed}",
        support::Rootless::UID
    );
}

/// Rootless step 6: a shell as root in a container, run by an ordinary
/// user: every capability of the container's set (over its namespaces
/// only), its writes on an overlay the child mounted itself, gone when it
/// ends, and nothing left in the user's directories.
#[test]
fn rootless_step6_is_root_in_a_container_whose_writes_vanish() {
    let user = support::Rootless::new();
    let out = user.run(
        6,
        &[
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; grep CapEff /proc/self/status; touch /made-here && echo wrote",
        ],
    );
    let printed = rootless_stdout(&out, 6);
    let words: Vec<&str> = printed.split_whitespace().collect();
    let uid = support::Rootless::UID.to_string();
    assert_eq!(
        words,
        [
            "0",
            "0",
            uid.as_str(),
            "1",
            "CapEff:",
            "00000000a80425fb",
            "wrote"
        ],
        "step 6 run by uid {uid}: expected root (mapped to the user), Docker's 14 \
         capabilities and a writable root, it printed:\n{printed}\nmost likely cause: the \
         maps are not the user's own id (rootless::default_maps), or the overlay over the \
         default rootfs is not mounted by the child (rootless::overlay_options)"
    );
    let out = user.run(
        6,
        &["sh", "-c", "test -e /made-here && echo kept || echo gone"],
    );
    assert_eq!(
        rootless_stdout(&out, 6).trim(),
        "gone",
        "step 6 run by uid {uid}: a file the last container wrote is still there: each \
         container must get an overlay of its own over the shared default rootfs"
    );
    let left = user.left_in("home/.cache/caixa/containers");
    assert!(
        left.is_empty(),
        "step 6 run by uid {uid}: expected every container's overlay directory gone, left: \
         {left:?}; most likely cause: Mounted::remove cannot delete the work directory \
         overlayfs made with mode 0 (open_work_dirs)"
    );
    let records = user.left_in("run/caixa/running");
    assert!(
        records.is_empty(),
        "step 6 run by uid {uid}: expected no record of a running start left, found \
         {records:?}"
    );
}

/// The stdout of a rootless run that must have succeeded.
fn rootless_stdout(out: &std::process::Output, n: u32) -> String {
    assert!(
        out.status.success(),
        "step {n} run by uid {} (rootless) failed with {}: {}\nstdout: {}",
        support::Rootless::UID,
        out.status,
        text(&out.stderr).trim(),
        text(&out.stdout)
    );
    text(&out.stdout)
}

/// Rootless with more ids than the user's own: the setuid helpers
/// `newuidmap` and `newgidmap` write a map within the user's range in
/// `/etc/subuid` and `/etc/subgid`; files the container gives to its other
/// users are deleted with it, as root of a user namespace mapping them.
/// Without a range, the helpers refuse, and the start says so in one line.
#[test]
fn rootless_a_wider_map_goes_through_newuidmap_and_leaves_nothing() {
    let user = support::Rootless::new();
    let uid = support::Rootless::UID;
    let own = format!("0:{uid}:1");
    let args = [
        "--uid-map",
        own.as_str(),
        "--uid-map",
        "1:300000:65535",
        "--gid-map",
        own.as_str(),
        "--gid-map",
        "1:300000:65535",
    ];
    let script = "cat /proc/self/uid_map; mkdir /d && touch /d/f && chown -R 1000:1000 /d && stat -c %u /d/f";
    let mut cmd = user.step_with_subids(6, Some((300000, 65536)));
    cmd.args(args).args(["sh", "-c", script]);
    let out = support::output_of(cmd);
    let printed = rootless_stdout(&out, 6);
    let words: Vec<&str> = printed.split_whitespace().collect();
    let uid_text = uid.to_string();
    assert_eq!(
        words,
        ["0", uid_text.as_str(), "1", "1", "300000", "65535", "1000"],
        "step 6 run rootless with a subordinate range: expected both ranges in the uid map \
         and a file given to uid 1000, it printed:\n{printed}\nmost likely cause: \
         rootless::write_maps does not run newgidmap and newuidmap for a map wider than the \
         user's own id"
    );
    let left = user.left_in("home/.cache/caixa/containers");
    assert!(
        left.is_empty(),
        "step 6 run rootless with a subordinate range: the container's overlay directory is \
         left ({left:?}): its files belong to subordinate ids the user cannot delete on the \
         host; rootless::remove_as_mapped_root deletes them as root of a user namespace"
    );

    let mut cmd = user.step_with_subids(6, None);
    cmd.args(args).arg("true");
    let out = support::output_of(cmd);
    assert_one_line_error(&out, 6, 125, "/etc/subuid and /etc/subgid list the ranges");
}

/// Rootless: a kernel that allows an ordinary user no user namespace must
/// get one line that says which knob forbids it. The knob is turned in a
/// user namespace of the test's own (`user.max_user_namespaces` is counted
/// per user namespace, and root there may lower it), never on the host: a
/// shell there, root mapped to root and the rootless uid to itself, sets it
/// to 0, then starts step 1 as that uid.
#[test]
fn rootless_a_kernel_without_user_namespaces_for_users_is_one_clear_line() {
    use std::io::Write;
    let user = support::Rootless::new();
    let uid = support::Rootless::UID;
    let bin = user.dir.path().join("bin/step1-nouserns");
    std::fs::copy(support::binary(1), &bin).expect("copy step 1");
    // The inner shell is exec'd once the maps are written: it starts as
    // mapped root, with its capabilities in the namespace.
    let inner = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces || exit 99; \
         exec setpriv --reuid={uid} --regid={uid} --clear-groups env -i PATH=/usr/bin:/bin \
         HOME={home} XDG_RUNTIME_DIR={run} {bin} true",
        home = user.dir.path().join("home").display(),
        run = user.dir.path().join("run").display(),
        bin = bin.display(),
    );
    // If the test fails before "go", dropping `child` closes its stdin:
    // `read` fails and the shell ends.
    let mut child = std::process::Command::new("unshare")
        .args(["-U", "sh", "-c", "read go && exec sh -c \"$0\"", &inner])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux)");
    let pid = child.id();
    let ours = std::fs::read_link("/proc/self/ns/user").unwrap();
    let start = std::time::Instant::now();
    while std::fs::read_link(format!("/proc/{pid}/ns/user"))
        .ok()
        .as_ref()
        == Some(&ours)
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "unshare -U did not make a user namespace"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for file in ["uid_map", "gid_map"] {
        // One write: a map is written once, whole.
        std::fs::write(
            format!("/proc/{pid}/{file}"),
            format!("0 0 1\n{uid} {uid} 1\n"),
        )
        .expect("the test's own maps");
    }
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_ne!(
        out.status.code(),
        Some(99),
        "the test could not lower user.max_user_namespaces in its own user namespace"
    );
    assert_one_line_error(&out, 1, 125, "user.max_user_namespaces is 0");
}
