//! Step 4 grading: the mount namespace and the root filesystem.

mod support;

use support::{
    Running, TinyRootfs, assert_one_line_error, host_mount_points, in_shared_mount_namespace,
    mount_points_of, run, stdout_of,
};

#[test]
fn the_hosts_files_are_invisible() {
    let marker = tempfile::NamedTempFile::new().unwrap();
    let path = marker.path().to_str().unwrap();
    let out = run(
        4,
        &[
            "sh",
            "-c",
            &format!("test -e {path} && echo visible || echo gone"),
        ],
    );
    assert_eq!(
        stdout_of(&out).trim(),
        "gone",
        "step 4: a host file is visible inside — did pivot_root run and the old root get detached?"
    );
}

#[test]
fn root_is_the_rootfs_and_the_old_root_is_gone() {
    let rootfs = TinyRootfs::new();
    std::fs::write(rootfs.dir.path().join("only-in-rootfs"), "yes\n").unwrap();
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
    assert!(text.starts_with("yes\n"), "{text}");
    // The container's mount table has its root at "/" and no leftover of the
    // host's root (pivot_root + MNT_DETACH).
    let mountpoints: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(4))
        .collect();
    assert!(mountpoints.contains(&"/"), "{text}");
    assert!(
        mountpoints.iter().all(|m| !m.starts_with(rootfs.path())),
        "step 4: the old root is still mounted inside:\n{text}"
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
        "step 4: ps should list only sh (pid 1) and ps itself — is /proc the container's own?\n{text}"
    );
    assert_eq!(pids[0], "1", "{text}");
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
    assert_eq!(
        host, seen_by_the_step_binary,
        "step 4: the container's mounts appeared outside it — is / made MS_SLAVE|MS_REC first?"
    );
    let (status, _) = running.finish();
    assert!(status.success());
    assert_eq!(host, host_mount_points(), "the host's mount table changed");
}

#[test]
fn dev_holds_only_the_default_devices() {
    let out = run(4, &["ls", "/dev"]);
    let mut names: Vec<String> = stdout_of(&out)
        .split_whitespace()
        .map(String::from)
        .collect();
    names.sort();
    let mut expected = [
        "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
        "stdout", "tty", "urandom", "zero",
    ];
    expected.sort();
    assert_eq!(names, expected);
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
        "/dev/null must be the real (1,3) device"
    );
}

#[test]
fn pseudo_filesystems_are_mounted_with_safe_flags() {
    let out = run(4, &["cat", "/proc/self/mounts"]);
    let text = stdout_of(&out);
    let find = |target: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(target))
            .unwrap_or_else(|| panic!("{target} is not mounted:\n{text}"))
            .to_string()
    };
    assert!(find("/proc").starts_with("proc "));
    assert!(find("/dev").starts_with("tmpfs "));
    assert!(find("/dev/pts").starts_with("devpts "));
    assert!(find("/dev/shm").starts_with("tmpfs "));
    assert!(find("/dev/mqueue").starts_with("mqueue "));
    let sys = find("/sys");
    assert!(sys.starts_with("sysfs ") && sys.contains(" ro,"), "{sys}");
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
    assert_eq!(lines, ["0", "0", "read-only", "read-only"], "{text}");
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
    assert!(mq >= 0, "mq_open: {}", std::io::Error::last_os_error());
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
        "the host's queue {name} is visible inside:\n{listing}"
    );
}

#[test]
fn workdir_is_honoured() {
    let out = run(4, &["-w", "/tmp", "pwd"]);
    assert_eq!(stdout_of(&out).trim(), "/tmp");
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
    let outside = tempfile::tempdir().unwrap();
    std::fs::remove_dir(rootfs.dir.path().join("proc")).unwrap();
    std::os::unix::fs::symlink(outside.path(), rootfs.dir.path().join("proc")).unwrap();
    let out = run(4, &["--rootfs", rootfs.path(), "/bin/sh", "-c", "true"]);
    assert_one_line_error(&out, 4, 125, "symbolic link");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
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
    assert_eq!(
        stdout_of(&out),
        "from the host\nrefused\n",
        "step 4: --volume HOST:/srv:ro must show the host's file and refuse writes (bind_into: MS_BIND, then MS_REMOUNT | MS_RDONLY on the new mount)"
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
    assert_eq!(
        stdout_of(&out),
        "from the host\n",
        "step 4: the container must see its volume at /escape/vol"
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("new")).unwrap_or_default(),
        "back\n",
        "step 4: a writable bind writes to the host directory"
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "step 4: the mount point was made on the host through the rootfs's symlink: open it inside the root (openat2 RESOLVE_IN_ROOT), never by a joined path"
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
