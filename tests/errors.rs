//! Bad input gets one clear line and a non-zero exit, across the steps.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use support::{assert_one_line_error, binary, require_root, run, wait_output};

/// Steps 1-6 run rootless (tests/step6.rs grades that); a later step run
/// by an ordinary user needs root for its cgroup and bridge, and says so.
#[test]
fn not_root_is_one_clear_line() {
    require_root();
    // Copy the binary where `nobody` can run it (the checkout may be private).
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join("step8");
    std::fs::copy(binary(8), &copy).unwrap();
    let child = Command::new(&copy)
        .arg("true")
        .uid(65534)
        .gid(65534)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child);
    assert_one_line_error(&out, 8, 125, "needs root");
}

#[test]
fn a_kernel_without_the_namespace_is_one_clear_line() {
    require_root();
    // Make this one process see what a kernel without IPC namespaces answers:
    // a seccomp filter returns ENOSYS for clone3 (as before Linux 5.3) and
    // EINVAL for clone with CLONE_NEWIPC, the error such a kernel gives.
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    let arch = TargetArch::try_from(std::env::consts::ARCH).unwrap();
    let clone3: seccompiler::BpfProgram = SeccompFilter::new(
        [(libc::SYS_clone3, vec![])].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .unwrap()
    .try_into()
    .unwrap();
    let newipc = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(libc::CLONE_NEWIPC as u64),
        libc::CLONE_NEWIPC as u64,
    )
    .unwrap();
    let clone: seccompiler::BpfProgram = SeccompFilter::new(
        [(
            libc::SYS_clone,
            vec![SeccompRule::new(vec![newipc]).unwrap()],
        )]
        .into_iter()
        .collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EINVAL as u32),
        arch,
    )
    .unwrap()
    .try_into()
    .unwrap();
    let mut cmd = Command::new(binary(3));
    cmd.arg("true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only prctl/seccomp calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            seccompiler::apply_filter(&clone3).map_err(std::io::Error::other)?;
            seccompiler::apply_filter(&clone).map_err(std::io::Error::other)
        });
    }
    let out = wait_output(cmd.spawn().unwrap());
    assert_one_line_error(&out, 3, 125, "does not support one of these namespaces");
}

#[test]
fn an_unknown_option_is_a_usage_error_exit_125() {
    let out = run(1, &["--no-such-option"]);
    assert_eq!(out.status.code(), Some(125), "as docker run does");
    assert!(support::text(&out.stderr).contains("--no-such-option"));
}

#[test]
fn a_command_that_is_not_executable_is_exit_126() {
    let out = run(4, &["/etc/passwd"]);
    assert_one_line_error(&out, 4, 126, "not an executable file");
}

#[test]
fn a_missing_command_without_a_rootfs_is_exit_127() {
    let out = run(1, &["no-such-command-caixa"]);
    assert_one_line_error(&out, 1, 127, "not found");
}

/// A real image layout (umoci's, in `dir/layout`) whose manifest is then
/// changed by `edit`: stored as a new blob, and named in `index.json`.
fn layout_with_manifest(edit: impl Fn(&mut serde_json::Value)) -> tempfile::TempDir {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let rootfs = support::TinyRootfs::new();
    support::umoci_image(&layout, rootfs.dir.path(), "--config.cmd /bin/sh");
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let read = |path: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let mut index = read(&layout.join("index.json"));
    let mut manifest = read(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    edit(&mut manifest);
    let bytes = manifest.to_string().into_bytes();
    let digest = format!("sha256:{:x}", sha2::Sha256::digest(&bytes));
    std::fs::write(blob(&digest), &bytes).unwrap();
    index["manifests"][0]["digest"] = digest.into();
    index["manifests"][0]["size"] = bytes.len().into();
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    dir
}

/// The documents a pull refuses (tests/step10.rs,
/// `a_pull_refuses_the_types_load_refuses`), a load refuses too, with the
/// same words: one validation serves both.
#[test]
fn load_refuses_documents_that_are_not_what_they_claim() {
    require_root();
    /// A change that makes the manifest a lie.
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit); 3] = [
        ("both an index", |m| m["manifests"] = serde_json::json!([])),
        ("schemaVersion 1", |m| m["schemaVersion"] = 1.into()),
        ("schemaVersion 3", |m| m["schemaVersion"] = 3.into()),
    ];
    for (needle, edit) in cases {
        let layout = layout_with_manifest(edit);
        let store = tempfile::tempdir().unwrap();
        let out = run(
            9,
            &[
                "--root",
                store.path().to_str().unwrap(),
                "load",
                layout.path().join("layout").to_str().unwrap(),
                "--name",
                "evil",
            ],
        );
        assert_one_line_error(&out, 9, 125, needle);
        assert!(
            !store.path().join("images").exists()
                || std::fs::read_dir(store.path().join("images"))
                    .unwrap()
                    .next()
                    .is_none(),
            "nothing named is stored for {needle:?}"
        );
    }
}
