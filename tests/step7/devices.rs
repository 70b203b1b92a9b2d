//! Step 7 grading, devices: what the container may open, and where its
//! group is (`linux.cgroupsPath`). Both come from an OCI bundle, the way
//! podman and containerd hand them over; `step11 build-run DIR ID` runs a
//! bundle through the same `from_oci` as the engine's shim.

use std::process::{Command, Stdio};

use caixa::cgroup::{Access, DeviceKind, DeviceRule, GroupPath, Limits};
use caixa::ns::Namespace;
use caixa::spec::Spec;

use super::*;
use support::{step, wait_output};

/// podman's whole list: deny everything (the runtime allows its defaults).
fn deny_all() -> Vec<DeviceRule> {
    vec![DeviceRule {
        allow: false,
        kind: DeviceKind::All,
        major: None,
        minor: None,
        access: Access::ALL,
    }]
}

/// A directory made in every cgroup tree by a test, removed (when empty)
/// on drop, also when the test fails.
struct TestParent {
    name: String,
}

impl Drop for TestParent {
    /// Through caixa's own `remove_tree`: a plain rmdir fails (EBUSY) while
    /// a container that just died below still holds its group, and left
    /// the test's parents behind on this machine.
    fn drop(&mut self) {
        if let Ok(h) = detect() {
            for root in h.roots() {
                let dir = root.join(&self.name);
                if let Err(e) = caixa::cgroup::remove_tree(&dir) {
                    eprintln!("warning: the test's parent group {}: {e}", dir.display());
                }
            }
        }
    }
}

/// Runs `script` as root (no user namespace, every capability, so
/// CAP_MKNOD) in its own pid, mount, ipc and uts namespaces, from an OCI
/// bundle whose group is `cgroupsPath` and whose device rules are `devices`.
fn run_bundle(
    cgroups_path: &str,
    id: &str,
    devices: Option<Vec<DeviceRule>>,
    script: &str,
) -> (String, String) {
    let rootfs = TinyRootfs::new();
    let mut spec = Spec::new(vec!["/bin/sh".into(), "-c".into(), script.into()]);
    spec.id = id.to_string();
    spec.namespaces = vec![
        Namespace::Pid,
        Namespace::Ipc,
        Namespace::Mount,
        Namespace::Uts,
    ];
    spec.root = Some(rootfs.dir.path().to_path_buf());
    spec.limits = Some(Limits {
        pids_limit: Some(64),
        devices,
        group: Some(GroupPath::from_cgroups_path(cgroups_path, id).expect("a valid cgroupsPath")),
        ..Limits::default()
    });
    let bundle = tempfile::tempdir().expect("tempdir");
    let store = tempfile::tempdir().expect("tempdir");
    let config = caixa::bundle::to_oci(&spec).expect("a config.json of the spec");
    caixa::bundle::write(bundle.path(), &config).expect("write config.json");
    let child = step(11)
        .arg("--root")
        .arg(store.path())
        .arg("build-run")
        .arg(bundle.path())
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start step11 build-run");
    let out = wait_output(child);
    (text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_container_denied_all_but_the_defaults_cannot_open_a_node_it_made() {
    let _one = serial();
    let parent = TestParent {
        name: format!("caixa-test-{}", std::process::id()),
    };
    let id = format!("{:012x}", std::process::id() as u64 * 7919);
    let path = format!("/{}/libpod-{id}", parent.name);
    // /dev/kmsg (1:11): built into every kernel (a driver in a module,
    // such as loop's 10:237, may be absent: ENODEV looks like a denial),
    // harmless to open and close, and absent from caixa's /dev.
    let script = "mknod /dev/km c 1 11 && echo mknod-ok; \
                  if (: < /dev/km) 2>/dev/null; then echo node-opened; else echo node-denied; fi; \
                  echo x > /dev/null && echo null-ok; \
                  cat /proc/self/cgroup";

    // Without rules (caixa's default): the node it made opens.
    let (out, err) = run_bundle(&path, &id, None, script);
    assert!(
        out.contains("mknod-ok") && out.contains("node-opened"),
        "step 7: without device rules, expected the container's root to make /dev/km (1:11, \
         /dev/kmsg) and open it; got:\n{out}\nmost likely cause: caixa's default rules \
         (devices::caixa_rules) no longer allow `c *:* m`, or a deny rule is written when \
         the bundle has none ({})\nstderr: {err}",
        likely_cause(&err)
    );

    // podman's list: deny everything; caixa adds its own devices.
    let (out, err) = run_bundle(&path, &id, Some(deny_all()), script);
    eprintln!("{out}{err}");
    assert!(
        out.contains("mknod-ok"),
        "step 7: expected mknod allowed under deny-all (caixa allows c *:* m, as runc), \
         got:\n{out}\nmost likely cause: devices::policy drops caixa's own rules after the \
         bundle's deny-all ({})\nstderr: {err}",
        likely_cause(&err)
    );
    assert!(
        out.contains("node-denied"),
        "step 7: with linux.resources.devices = deny all, expected opening /dev/km (1:11) \
         refused by the device cgroup; got:\n{out}\nmost likely cause: the rules are not \
         written to devices.deny/devices.allow (v1: devices::v1_settings) or the BPF program \
         is not attached (v2: v2::devices::attach), or the container is not in the group \
         (Cgroup::enter)\nstderr: {err}"
    );
    assert!(
        out.contains("null-ok"),
        "step 7: expected /dev/null still usable under deny-all, got:\n{out}\n\
         most likely cause: devices::policy does not append caixa's own devices (devices::caixa_rules) \
         after the bundle's rules\nstderr: {err}"
    );
    assert!(
        out.contains(&format!("/{}/libpod-{id}", parent.name)),
        "step 7: expected the container in the cgroupsPath's group (/{}/libpod-{id}), \
         /proc/self/cgroup says:\n{out}\nmost likely cause: GroupPath::from_cgroups_path is \
         not used for the group, or Cgroup::enter does not write the pid into its \
         cgroup.procs",
        parent.name
    );
    // The leaf is gone; the parent stays (others may share it) until we remove it.
    for root in detect().expect("a cgroup hierarchy").roots() {
        let leaf = root.join(&parent.name).join(format!("libpod-{id}"));
        assert!(
            !leaf.exists(),
            "step 7: expected {} removed after the end, it is left behind; \
             most likely cause: Cgroup::destroy does not remove a cgroupsPath group's leaf",
            leaf.display()
        );
    }
}

#[test]
fn an_existing_group_outside_caixa_is_not_taken_over() {
    let _one = serial();
    let parent = TestParent {
        name: format!("caixa-test-taken-{}", std::process::id()),
    };
    let id = format!("{:012x}", std::process::id() as u64 * 7907);
    let roots = detect().expect("a cgroup hierarchy").roots();
    let taken = roots[0].join(&parent.name).join(&id);
    std::fs::create_dir_all(&taken).expect("make someone else's group");
    let (out, err) = run_bundle(&format!("/{}/{id}", parent.name), &id, None, "echo ran");
    let _ = std::fs::remove_dir(&taken);
    assert!(
        !out.contains("ran") && err.contains("exists already"),
        "step 7: expected a cgroupsPath naming an existing group outside caixa/ refused \
         (caixa kills what is in its group at the end), stdout: {out}; most likely cause: \
         fs::make_group_dir takes over a directory that exists already instead of refusing \
         it (\"exists already\")\nstderr: {err}"
    );
}

/// A group made in a cgroup2 tree by a test, removed on drop.
struct V2Group(PathBuf);

impl Drop for V2Group {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The program on a real cgroup v2 group, also on a hybrid host (its
/// `unified` tree has no controller, but device programs attach to any
/// group): a shell moved into it may make a node (1:11) but not open it, and may
/// still use /dev/null.
#[test]
fn the_v2_device_program_denies_on_a_real_cgroup2_group() {
    let _one = serial();
    support::require_root();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let root = mountinfo
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dash = f.iter().position(|x| *x == "-")?;
            (f.get(dash + 1) == Some(&"cgroup2")).then(|| PathBuf::from(f[4]))
        })
        .expect(
            "step 7: no cgroup2 mount on this host (mount -t cgroup2 none /sys/fs/cgroup/unified)",
        );
    let group = V2Group(root.join(format!("caixa-devtest-{}", std::process::id())));
    std::fs::create_dir(&group.0).expect("make a v2 group");
    let policy = caixa::cgroup::devices::policy(&deny_all()).expect("deny-all is expressible");
    caixa::cgroup::v2::devices::attach(&group.0, &policy).expect("load and attach the program");

    let scratch = tempfile::tempdir().expect("tempdir");
    let node = scratch.path().join("km");
    let script = format!(
        "echo $$ > {procs} || exit 9; \
         mknod {node} c 1 11 && echo mknod-ok; \
         if (: < {node}) 2>/dev/null; then echo node-opened; else echo node-denied; fi; \
         echo x > /dev/null && echo null-ok",
        procs = group.0.join("cgroup.procs").display(),
        node = node.display()
    );
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run sh");
    let out = text(&out.stdout);
    eprintln!("cgroup2 at {}: {out}", root.display());
    assert!(
        out.contains("mknod-ok") && out.contains("node-denied") && out.contains("null-ok"),
        "step 7: expected the v2 device program to allow mknod and /dev/null and deny opening \
         1:11; got:\n{out}\nmost likely cause: v2::devices::program does not translate the \
         policy (deny-all plus caixa's rules) into the right checks, or attach does not \
         attach it to the group"
    );
    // The same node opens outside the group: the program made the difference.
    let outside = std::fs::File::open(&node);
    assert!(
        outside.is_ok(),
        "step 7: expected 1:11 to open outside the group, saw {outside:?}; most likely cause: \
         the program was attached to another group than the test's (v2::devices::attach)"
    );
}
