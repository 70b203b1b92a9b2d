//! Step 4 grading: the mount namespace and the root filesystem.

mod support;

use std::os::unix::process::CommandExt;
use std::process::Stdio;

use support::{
    Running, TinyRootfs, assert_one_line_error, host_mount_points, in_shared_mount_namespace,
    mount_points_of, run, stdout_of, step, wait_output,
};

#[test]
fn the_hosts_files_are_invisible() {
    let marker = tempfile::NamedTempFile::new().expect("a temporary file");
    let path = marker.path().to_str().expect("a UTF-8 temporary path");
    let out = run(
        4,
        &[
            "sh",
            "-c",
            &format!("test -e {path} && echo visible || echo gone"),
        ],
    );
    let seen = stdout_of(&out);
    assert_eq!(
        seen.trim(),
        "gone",
        "step 4: expected the host's file {path} to be invisible inside, the container says \
         {:?}; most likely cause: its / is still the host's: pivot_into does not chdir into \
         the rootfs and run pivot_root(\".\", \".\") there",
        seen.trim()
    );
}

#[test]
fn root_is_the_rootfs_and_the_old_root_is_gone() {
    let rootfs = TinyRootfs::new();
    std::fs::write(rootfs.dir.path().join("only-in-rootfs"), "yes\n").expect("write in the rootfs");
    let out = run(
        4,
        &[
            "--rootfs",
            rootfs.path(),
            "/bin/busybox",
            "sh",
            "-c",
            "/bin/busybox cat /only-in-rootfs; /bin/busybox cat /proc/self/mountinfo",
        ],
    );
    let text = stdout_of(&out);
    assert!(
        text.starts_with("yes\n"),
        "step 4: expected the rootfs's /only-in-rootfs to read \"yes\" inside, the output \
         starts otherwise; most likely cause: the rootfs is not the container's /: pivot_into \
         must chdir into it and pivot_root(\".\", \".\") there\n{text}"
    );
    // The container's mount table has its root at "/" and no leftover of the
    // host's root (pivot_root + MNT_DETACH).
    let mountpoints: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(4))
        .collect();
    let roots = mountpoints.iter().filter(|m| **m == "/").count();
    assert!(
        roots >= 1,
        "step 4: expected a mount at / in the container's mount table, there is none; most \
         likely cause: the rootfs is not a mount point: bind_rootfs_onto_itself must bind it \
         onto itself before the pivot\n{text}"
    );
    assert!(
        mountpoints.iter().all(|m| !m.starts_with(rootfs.path())),
        "step 4: expected no mount under the rootfs's host path {} inside, some are left; \
         most likely cause: the old root is still in the table (pivot_into must unmount it \
         with umount2(\".\", MNT_DETACH) after pivot_root)\n{text}",
        rootfs.path()
    );
    // pivot_root(".", ".") stacks the old root on the new one, at "/": with
    // it, the host's mounts stay in the container's table (its /proc, /dev…).
    assert_eq!(
        roots, 1,
        "step 4: expected one mount at /, the rootfs; there are {roots}; most likely cause: \
         pivot_root(\".\", \".\") stacks the old root on top of the new one, and it stays \
         (with the host's /proc, /dev and every other host mount under it) until pivot_into \
         unmounts it with umount2(\".\", MNT_DETACH)\n{text}"
    );
}

#[test]
fn ps_inside_shows_only_the_container() {
    // `; true` keeps sh alive as pid 1 (a lone last command would be exec'd).
    let out = run(4, &["sh", "-c", "ps -o pid,comm; true"]);
    let text = stdout_of(&out);
    let pids: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        pids.len(),
        2,
        "step 4: expected ps to list only sh (pid 1) and ps itself, it listed {} processes; \
         most likely cause: /proc inside is the host's: the old root is still on top \
         (pivot_into must umount2(\".\", MNT_DETACH) it), or the container's /proc is \
         mounted before the pivot, outside its root\n{text}",
        pids.len()
    );
    assert_eq!(
        pids[0], "1",
        "step 4: expected sh as pid 1 in ps's listing, the first pid is {}; most likely \
         cause: /proc inside is the host's, not a proc of the container's PID namespace \
         mounted after the pivot\n{text}",
        pids[0]
    );
}

#[test]
fn the_containers_mounts_are_invisible_on_the_host() {
    // The step binary runs in a mount namespace of the test's, copied from
    // ours with every mount shared (as on a systemd host): what the container
    // mounts would propagate there unless it stops propagation first.
    let host = host_mount_points();
    let running = Running::start_with(4, &[], "echo ready; read x", in_shared_mount_namespace);
    let step_binary = running.child.id().to_string();
    let seen_by_the_step_binary = mount_points_of(&step_binary);
    let leaked: Vec<&String> = seen_by_the_step_binary
        .iter()
        .filter(|m| !host.contains(m))
        .collect();
    assert_eq!(
        host, seen_by_the_step_binary,
        "step 4: expected the container's mounts to stay inside it; these appeared outside, \
         where the step binary runs: {leaked:?}; most likely cause: stop_propagation_to_host \
         does not make / MS_SLAVE|MS_REC before the first mount (without MS_REC only / \
         itself stops propagating)"
    );
    let (status, _) = running.finish();
    assert!(
        status.success(),
        "step 4: expected the container to end well once it read its line, it ended with \
         {status}; most likely cause: a step of the set-up after the pivot failed (run \
         `step4 sh -c 'read x'` to see its stderr)"
    );
    let after = host_mount_points();
    let added: Vec<&String> = after.iter().filter(|m| !host.contains(m)).collect();
    assert_eq!(
        host, after,
        "step 4: expected the host's mount table unchanged after the container ended, these \
         are new: {added:?}; most likely cause: stop_propagation_to_host does not make / \
         MS_SLAVE|MS_REC, so the container's mounts reached the host and outlived it"
    );
}

#[test]
fn dev_holds_only_the_default_devices() {
    let out = run(4, &["ls", "/dev"]);
    let listing = stdout_of(&out);
    let mut names: Vec<String> = listing.split_whitespace().map(String::from).collect();
    names.sort();
    let mut expected = [
        "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
        "stdout", "tty", "urandom", "zero",
    ];
    expected.sort();
    assert_eq!(
        names, expected,
        "step 4: expected /dev to hold only the default devices (a tmpfs of the container's \
         own), it holds {names:?}; most likely cause: a longer list is the host's /dev, seen \
         through a root that is still the host's (pivot_into must pivot_root and unmount the \
         old root with MNT_DETACH)"
    );
    let out = run(
        4,
        &[
            "sh",
            "-c",
            "echo x > /dev/null && head -c 4 /dev/zero | wc -c && stat -c %t,%T /dev/null",
        ],
    );
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        ["4", "1,3"],
        "step 4: expected /dev/null to be the real (1,3) device, writable, and /dev/zero \
         readable: lines [\"4\", \"1,3\"], the container printed {lines:?}; most likely \
         cause: the container's /dev is not the tmpfs with the host's nodes bound in \
         (create_devices), so /dev/null is a plain file or missing"
    );
}

#[test]
fn pseudo_filesystems_are_mounted_with_safe_flags() {
    let out = run(4, &["cat", "/proc/self/mounts"]);
    let text = stdout_of(&out);
    // The mounts at `target`; the last one is what the container sees.
    let at = |target: &str| -> Vec<&str> {
        text.lines()
            .filter(|l| l.split_whitespace().nth(1) == Some(target))
            .collect()
    };
    for (target, kind) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
    ] {
        let mounts = at(target);
        assert!(
            !mounts.is_empty(),
            "step 4: expected a {kind} mounted at {target} inside, there is none; most likely \
             cause: mount_defaults ran outside the rootfs, or the bind of the rootfs onto \
             itself hid it\n{text}"
        );
        assert_eq!(
            mounts.len(),
            1,
            "step 4: expected one mount at {target}, there are {}: {mounts:?}; most likely \
             cause: the host's are still in the table: pivot_into must unmount the old root \
             with umount2(\".\", MNT_DETACH) after pivot_root",
            mounts.len()
        );
        assert!(
            mounts[0].starts_with(&format!("{kind} ")),
            "step 4: expected {kind} at {target}, found {:?}; most likely cause: the mount \
             seen there is the host's, left by an old root that was not unmounted \
             (umount2(\".\", MNT_DETACH) in pivot_into)",
            mounts[0]
        );
    }
    let sys = at("/sys")[0];
    assert!(
        sys.contains(" ro,"),
        "step 4: expected /sys mounted read-only (ro), it is {sys:?}; most likely cause: \
         the host's /sys is seen through an old root that was not unmounted (umount2(\".\", \
         MNT_DETACH) in pivot_into)"
    );
}

#[test]
fn masked_paths_read_empty_and_proc_sys_is_read_only() {
    let out = run(
        4,
        &[
            "sh",
            "-c",
            "wc -c < /proc/keys; wc -c < /proc/timer_list; \
             echo x > /proc/sys/kernel/hostname && echo writable || echo read-only; \
             touch /sys/caixa 2>/dev/null && echo writable || echo read-only",
        ],
    );
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        ["0", "0", "read-only", "read-only"],
        "step 4: expected /proc/keys and /proc/timer_list masked (empty), /proc/sys and /sys \
         read-only: lines [\"0\", \"0\", \"read-only\", \"read-only\"] (the sizes of the \
         two files, then whether each is writable), the container printed {lines:?}; most \
         likely cause: mask_paths or make_readonly_paths ran before /proc was mounted in the \
         new root, or against the host's /proc of an old root still on top"
    );
}

#[test]
fn a_host_posix_message_queue_is_invisible_inside() {
    let name = format!("/caixa-test-{}", std::process::id());
    let cname = std::ffi::CString::new(name.clone()).unwrap();
    // SAFETY: mq_open with O_CREAT and default attributes; closed below.
    let mq = unsafe {
        libc::mq_open(
            cname.as_ptr(),
            libc::O_CREAT | libc::O_RDWR,
            0o600,
            std::ptr::null_mut::<libc::mq_attr>(),
        )
    };
    assert!(
        mq >= 0,
        "step 4: expected the test to create a POSIX message queue on the host, mq_open(3) \
         answered {}; most likely cause: the host has no /dev/mqueue or its queue limit \
         (fs.mqueue.queues_max) is reached",
        std::io::Error::last_os_error()
    );
    struct Unlink(std::ffi::CString, libc::mqd_t);
    impl Drop for Unlink {
        fn drop(&mut self) {
            // SAFETY: closing and unlinking the queue we opened.
            unsafe {
                libc::mq_close(self.1);
                libc::mq_unlink(self.0.as_ptr());
            }
        }
    }
    let _cleanup = Unlink(cname, mq);
    let out = run(4, &["ls", "-a", "/dev/mqueue"]);
    let listing = stdout_of(&out);
    assert!(
        !listing.contains(&name[1..]),
        "step 4: expected the host's POSIX message queue {name} to be invisible inside; the \
         container's /dev/mqueue lists it; most likely cause: /dev/mqueue inside is the \
         host's, seen through an old root that was not unmounted (umount2(\".\", MNT_DETACH) \
         in pivot_into): it must be an mqueue of the container's own IPC namespace, mounted \
         after the pivot\n{listing}"
    );
}

#[test]
fn workdir_is_honoured() {
    let out = run(4, &["-w", "/tmp", "pwd"]);
    let seen = stdout_of(&out);
    assert_eq!(
        seen.trim(),
        "/tmp",
        "step 4: expected -w /tmp to be the command's working directory, pwd said {:?}; most \
         likely cause: the child changes to the spec's cwd before pivot_into, whose last \
         chdir(\"/\") undoes it: the chdir to the cwd belongs after the pivot (init's \
         init_cwd_fds block)",
        seen.trim()
    );
}

#[test]
fn a_missing_rootfs_is_one_clear_line() {
    let out = run(4, &["--rootfs", "/nonexistent/caixa-rootfs", "true"]);
    assert_one_line_error(&out, 4, 125, "does not exist");
}

#[test]
fn a_rootfs_that_is_a_file_is_one_clear_line() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = run(4, &["--rootfs", file.path().to_str().unwrap(), "true"]);
    assert_one_line_error(&out, 4, 125, "not a directory");
}

#[test]
fn a_rootfs_without_the_command_is_exit_127() {
    let rootfs = TinyRootfs::new();
    let out = run(4, &["--rootfs", rootfs.path(), "no-such-command"]);
    assert_one_line_error(&out, 4, 127, "not found in the container");
}

#[test]
fn a_symlinked_mount_point_in_the_rootfs_is_refused() {
    // A hostile rootfs: mounting /proc "through" this link would mount over
    // the host path it points to.
    let rootfs = TinyRootfs::new();
    let outside = tempfile::tempdir().expect("a temporary directory");
    std::fs::remove_dir(rootfs.dir.path().join("proc")).expect("remove the rootfs's /proc");
    std::os::unix::fs::symlink(outside.path(), rootfs.dir.path().join("proc"))
        .expect("make /proc a symbolic link");
    let out = run(4, &["--rootfs", rootfs.path(), "/bin/sh", "-c", "true"]);
    assert_one_line_error(&out, 4, 125, "symbolic link");
    let through = std::fs::read_dir(outside.path())
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        through,
        0,
        "step 4: expected nothing mounted through the symbolic link, onto the host's {}, it \
         holds {through} entries; most likely cause: a mount point is reached by joining \
         paths (root.join(\"proc\")) instead of being opened inside the root \
         (openat2 RESOLVE_IN_ROOT, mount onto /proc/self/fd/N)",
        outside.path().display()
    );
}

#[test]
fn a_mount_inside_the_rootfs_comes_along() {
    // The step binary starts in a mount namespace of the test's, where a
    // tmpfs is mounted on the rootfs's /data: the bind of the rootfs onto
    // itself must be recursive (MS_REC) to carry it into the container.
    let rootfs = TinyRootfs::new();
    let data = rootfs.dir.path().join("data");
    std::fs::create_dir(&data).expect("make the rootfs's /data");
    let target = std::ffi::CString::new(data.to_str().expect("a UTF-8 path")).expect("no NUL");
    let mut cmd = step(4);
    cmd.args([
        "--rootfs",
        rootfs.path(),
        "/bin/busybox",
        "cat",
        "/proc/self/mountinfo",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    // SAFETY: only unshare(2) and mount(2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let private = libc::MS_PRIVATE | libc::MS_REC;
            let none = std::ptr::null();
            if libc::mount(none, c"/".as_ptr(), none, private, none.cast()) != 0
                || libc::mount(
                    c"tmpfs".as_ptr(),
                    target.as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    none.cast(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = wait_output(cmd.spawn().expect("start step4"));
    let table = stdout_of(&out);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().nth(4) == Some("/data")),
        "step 4: expected the tmpfs mounted on the rootfs's /data to be at /data inside; it is \
         not; most likely cause: bind_rootfs_onto_itself binds without MS_REC (it must be \
         MS_BIND|MS_REC), so the mounts inside the rootfs stay behind\n{table}"
    );
}

#[test]
fn a_volume_binds_a_host_directory_inside_the_root_read_only_when_asked() {
    let rootfs = TinyRootfs::new();
    // A hostile rootfs: `escape` points at a host directory.
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), rootfs.dir.path().join("escape")).unwrap();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("page"), "from the host\n").unwrap();
    let dir = host.path().display();

    let read_only = format!("{dir}:/srv:ro");
    let script = "cat /srv/page; touch /srv/new 2>/dev/null && echo wrote || echo refused";
    let out = run(
        4,
        &[
            "--rootfs",
            rootfs.path(),
            "--volume",
            &read_only,
            "sh",
            "-c",
            script,
        ],
    );
    let seen = stdout_of(&out);
    assert_eq!(
        seen, "from the host\nrefused\n",
        "step 4: expected --volume HOST:/srv:ro to show the host's file and refuse writes, the \
         container printed {seen:?}; most likely cause: bind_into does not remount the new \
         mount MS_BIND|MS_REMOUNT|MS_RDONLY after the bind, or remounts the directory under \
         it (open the target again after the bind, it is the new mount then)"
    );

    let through_link = format!("{dir}:/escape/vol");
    let script = "cat /escape/vol/page && echo back > /escape/vol/new";
    let out = run(
        4,
        &[
            "--rootfs",
            rootfs.path(),
            "--volume",
            &through_link,
            "sh",
            "-c",
            script,
        ],
    );
    let seen = stdout_of(&out);
    assert_eq!(
        seen, "from the host\n",
        "step 4: expected the container to see its volume at /escape/vol (through the \
         rootfs's link, resolved inside the root), it printed {seen:?}; most likely cause: \
         bind_into mounts onto a path string instead of onto the target opened inside the \
         root (/proc/self/fd/N)"
    );
    let written = std::fs::read_to_string(host.path().join("new")).unwrap_or_default();
    assert_eq!(
        written, "back\n",
        "step 4: expected a writable bind to write to the host directory, its file `new` \
         holds {written:?}; most likely cause: bind_into bound something else than the \
         volume's source onto the target, or made the bind read-only without :ro"
    );
    let leaked = std::fs::read_dir(outside.path()).unwrap().count();
    assert_eq!(
        leaked, 0,
        "step 4: expected nothing in the host directory the rootfs's symlink points to, it \
         holds {leaked} entries; most likely cause: the mount point was made on the host \
         through the rootfs's symlink: bind_into must open it inside the root (open_inside, \
         openat2 RESOLVE_IN_ROOT), never by a joined path"
    );

    let out = run(
        4,
        &[
            "--rootfs",
            rootfs.path(),
            "--volume",
            "/no/such/dir/x:/x",
            "true",
        ],
    );
    assert_one_line_error(&out, 4, 125, "does not exist");
}
