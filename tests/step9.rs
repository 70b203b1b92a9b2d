//! Step 9 grading: images. Every image here is built by the test itself, in
//! the OCI layout format (and converted with skopeo where a real tool helps),
//! so nothing comes from the network.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};
use support::{Running, TestNetns, assert_one_line_error, binary, stdout_of, text, wait_output};

/// One tar entry of a hand-made layer.
enum Entry<'a> {
    Dir(&'a str),
    /// A directory with its own mode.
    DirMode(&'a str, u32),
    /// A file of another owner than root (uid and gid).
    FileOf(&'a str, u64),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    CharDevice(&'a str, u32, u32),
}

/// A tar archive with `entries`, names written raw (so the test can make
/// the hostile ones the tar crate would refuse to write).
fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let (name, data): (&str, &[u8]) = match e {
            Entry::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (n, b"")
            }
            Entry::DirMode(n, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                (n, b"")
            }
            Entry::FileOf(n, _) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                (n, b"")
            }
            Entry::File(n, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o755);
                (n, d)
            }
            Entry::Symlink(n, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name(t).unwrap();
                (n, b"")
            }
            Entry::HardLink(n, t) => {
                h.set_entry_type(tar::EntryType::Link);
                raw_name(&mut h.as_ustar_mut().unwrap().linkname, t);
                (n, b"")
            }
            Entry::CharDevice(n, major, minor) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                (n, b"")
            }
        };
        raw_name(&mut h.as_ustar_mut().unwrap().name, name);
        h.set_size(data.len() as u64);
        let owner = match e {
            Entry::FileOf(_, id) => *id,
            _ => 0,
        };
        h.set_uid(owner);
        h.set_gid(owner);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

fn raw_name(field: &mut [u8], name: &str) {
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// An OCI image layout in a temporary directory.
struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    /// Writes a layout whose layers are `layers` (uncompressed tars), gzip
    /// compressed, and whose config is `config` (the "config" object).
    fn new(layers: &[Vec<u8>], config: serde_json::Value) -> Layout {
        Layout::with(
            layers,
            config,
            "application/vnd.oci.image.layer.v1.tar+gzip",
            None,
        )
    }

    fn with(
        layers: &[Vec<u8>],
        config: serde_json::Value,
        media_type: &str,
        diff_ids: Option<Vec<String>>,
    ) -> Layout {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        let blob = |bytes: &[u8]| {
            let d = sha(bytes);
            std::fs::write(dir.path().join("blobs/sha256").join(&d[7..]), bytes).unwrap();
            serde_json::json!({ "digest": d, "size": bytes.len() })
        };
        let mut descriptors = Vec::new();
        for layer in layers {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(layer).unwrap();
            let mut d = blob(&gz.finish().unwrap());
            d["mediaType"] = media_type.into();
            descriptors.push(d);
        }
        let diff_ids = diff_ids.unwrap_or_else(|| layers.iter().map(|l| sha(l)).collect());
        let cfg = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "config": config,
        });
        let mut c = blob(cfg.to_string().as_bytes());
        c["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": c, "layers": descriptors,
        });
        let mut m = blob(manifest.to_string().as_bytes());
        m["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
        m["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": "test" });
        let index = serde_json::json!({ "schemaVersion": 2, "manifests": [m] });
        std::fs::write(dir.path().join("index.json"), index.to_string()).unwrap();
        std::fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        Layout { dir }
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    /// Adds `blob`, a layer already compressed, on top of the image, with
    /// `diff_id` in its config: the manifest, config and index are
    /// rewritten to match.
    fn push_layer(&self, blob: &[u8], media_type: &str, diff_id: &str) {
        let blobs = self.dir.path().join("blobs/sha256");
        let write_blob = |bytes: &[u8]| {
            let digest = sha(bytes);
            std::fs::write(blobs.join(&digest[7..]), bytes).unwrap();
            digest
        };
        let read_json = |digest: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(blobs.join(&digest[7..])).unwrap()).unwrap()
        };
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.dir.path().join("index.json")).unwrap())
                .unwrap();
        let mut manifest = read_json(index["manifests"][0]["digest"].as_str().unwrap());
        let mut config = read_json(manifest["config"]["digest"].as_str().unwrap());
        config["rootfs"]["diff_ids"]
            .as_array_mut()
            .unwrap()
            .push(diff_id.into());
        let config = config.to_string().into_bytes();
        manifest["config"]["digest"] = write_blob(&config).into();
        manifest["config"]["size"] = config.len().into();
        manifest["layers"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "mediaType": media_type, "digest": write_blob(blob), "size": blob.len()
            }));
        let manifest = manifest.to_string().into_bytes();
        let index = serde_json::json!({ "schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": write_blob(&manifest), "size": manifest.len()
        }]});
        std::fs::write(self.dir.path().join("index.json"), index.to_string()).unwrap();
    }
}

/// The base layer: a static busybox and the directories a shell expects.
fn base_layer() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox")
        .expect("busybox-static (sudo apt-get install busybox-static)");
    let mut entries = vec![Entry::Dir("bin"), Entry::File("bin/busybox", &busybox)];
    let applets = [
        "sh", "ls", "cat", "echo", "test", "pwd", "touch", "rm", "id", "sleep",
    ];
    let links: Vec<String> = applets.iter().map(|a| format!("bin/{a}")).collect();
    for l in &links {
        entries.push(Entry::Symlink(l, "busybox"));
    }
    entries.extend([
        Entry::Dir("etc"),
        Entry::File(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/:/bin/sh\n",
        ),
        Entry::Dir("tmp"),
        Entry::Dir("data"),
        Entry::File("data/a", b"a\n"),
        Entry::File("data/b", b"b\n"),
        Entry::Dir("dir"),
        Entry::File("dir/x", b"x\n"),
    ]);
    tar_of(&entries)
}

fn default_config() -> serde_json::Value {
    serde_json::json!({ "Env": ["PATH=/bin", "FOO=bar"], "Cmd": ["sh", "-c", "echo $FOO; pwd"], "WorkingDir": "/tmp" })
}

/// A test's image store (world-traversable: the container's root is an
/// unprivileged host uid) and network namespace.
struct World {
    store: tempfile::TempDir,
    netns: TestNetns,
}

impl World {
    fn new() -> World {
        let store = tempfile::tempdir().unwrap();
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        World {
            store,
            netns: TestNetns::new(),
        }
    }

    fn root(&self) -> &str {
        self.store.path().to_str().unwrap()
    }

    fn load(&self, path: &str, name: &str) -> Output {
        let child = Command::new(binary(9))
            .args(["--root", self.root(), "load", path, "--name", name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child)
    }

    /// Runs `image` (a layer of it hostile), expects one line of error
    /// containing `needle`, and checks that no half-written layer is left.
    fn refuses_to_run(&self, image: &str, needle: &str) {
        let out = self.run(&[image, "true"]);
        assert_one_line_error(&out, 9, 125, needle);
        let entries = self.layer_entries();
        assert!(
            entries.iter().all(|e| !e.starts_with(".tmp")),
            "step 9: expected no half-written layer (.tmp…) left after a refused layer, \
             found: {entries:?}; most likely cause: the unpack writes into a temporary \
             directory and does not remove it when it refuses the layer"
        );
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut full = vec!["--root", self.root(), "run"];
        full.extend_from_slice(args);
        self.netns.run(9, &full)
    }

    fn running(&self, args: &[&str], script: &str) -> Running {
        let mut cmd = self.netns.step(9);
        cmd.args(["--root", self.root(), "run"]);
        Running::spawn(cmd, args, script)
    }

    fn containers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.store.path().join("containers"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Unpacked layers and anything half-written beside them.
    fn layer_entries(&self) -> Vec<String> {
        let mut out = Vec::new();
        for owner in std::fs::read_dir(self.store.path().join("layers"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for e in std::fs::read_dir(owner.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        out
    }
}

fn loaded(world: &World, layers: &[Vec<u8>]) {
    let layout = Layout::new(layers, default_config());
    let out = world.load(layout.path(), "img:1");
    let said = stdout_of(&out);
    assert_eq!(
        said.trim(),
        "loaded img:1",
        "step 9: expected load to say it loaded the layout as img:1, it said {said:?}; most \
         likely cause: load names the image otherwise than --name asks"
    );
}

/// A layer over [`base_layer`] that whites out `data/a` and makes `dir`
/// opaque, with a `z` of its own.
fn whited_out() -> Vec<Entry<'static>> {
    vec![
        Entry::Dir("data"),
        Entry::File("data/.wh.a", b""),
        Entry::Dir("dir"),
        Entry::File("dir/.wh..wh..opq", b""),
        Entry::File("dir/z", b"z\n"),
    ]
}

#[test]
fn whiteouts_and_opaque_directories_give_the_right_merged_view() {
    let world = World::new();
    let upper = tar_of(&whited_out());
    loaded(&world, &[base_layer(), upper]);
    let out = world.run(&["img:1", "sh", "-c", "ls /data; echo --; ls /dir"]);
    let seen = stdout_of(&out);
    let (data, dir) = seen.split_once("--\n").unwrap_or((&seen, ""));
    assert_eq!(
        data, "b\n",
        "step 9: expected /data to show only b: the upper layer's data/.wh.a hides the base \
         layer's a. It shows {data:?}. Most likely cause: `.wh.NAME` did not become a \
         character device 0/0 named NAME, overlayfs's whiteout (apply_whiteout)"
    );
    assert_eq!(
        dir, "z\n",
        "step 9: expected /dir to show only the upper layer's z: its dir/.wh..wh..opq hides \
         every lower dir/. It shows {dir:?}. Most likely cause: `.wh..wh..opq` did not become \
         the xattr trusted.overlay.opaque=\"y\" on the directory (apply_whiteout)"
    );
}

#[test]
fn a_whiteout_hides_only_lower_layers_never_its_own() {
    // OCI image spec: a whiteout applies to lower layers only; what its own
    // layer has, before or after it in the archive, stays.
    let world = World::new();
    let middle = tar_of(&[Entry::Dir("other"), Entry::File("other/z", b"z\n")]);
    let upper = tar_of(&[
        // A file of this layer, then its whiteout: the file stays.
        Entry::Dir("data"),
        Entry::File("data/a", b"A\n"),
        Entry::File("data/.wh.a", b""),
        // A whiteout, then entries under the same name: a new directory.
        Entry::File(".wh.dir", b""),
        Entry::File("dir/y", b"y\n"),
        // A directory of this layer, then its whiteout: only this layer's.
        Entry::Dir("other"),
        Entry::File("other/w", b"w\n"),
        Entry::File(".wh.other", b""),
    ]);
    loaded(&world, &[base_layer(), middle, upper]);
    let out = world.run(&["img:1", "sh", "-c", "cat /data/a; ls /dir; ls /other"]);
    let seen = stdout_of(&out);
    assert_eq!(
        seen, "A\ny\nw\n",
        "step 9: expected what the whiteout's own layer has to stay (data/a is A, dir has y, \
         other has w) and the lower layers' entries to be hidden (dir/x, other/z), the \
         container printed {seen:?}. Most likely cause: apply_whiteout replaces what this \
         layer has: a whiteout hides only the lower layers' NAME: when this layer has NAME, \
         leave its file, and make its directory opaque"
    );
}

#[test]
fn the_image_config_shapes_the_process_and_the_command_line_wins() {
    let world = World::new();
    loaded(&world, &[base_layer()]);
    let out = world.run(&["img:1"]);
    let seen = stdout_of(&out);
    assert_eq!(
        seen, "bar\n/tmp\n",
        "step 9: expected the image's Cmd to print its Env's FOO (bar) and its WorkingDir \
         (/tmp), it printed {seen:?}; most likely cause: config::shape does not carry the \
         image config's Env, Cmd or WorkingDir into the spec"
    );
    let out = world.run(&[
        "-e",
        "FOO=baz",
        "-w",
        "/",
        "img:1",
        "sh",
        "-c",
        "echo $FOO; pwd",
    ]);
    let seen = stdout_of(&out);
    assert_eq!(
        seen, "baz\n/\n",
        "step 9: expected -e FOO=baz, -w / and a command to override the image's, the \
         container printed {seen:?}; most likely cause: config::shape lets the image's Env, \
         WorkingDir or Cmd win over the command line's (the command line's come last)"
    );
}

#[test]
fn a_registry_port_is_not_taken_for_a_tag() {
    // `localhost:5000/app` has no tag: the `:5000` is the registry's port.
    let world = World::new();
    let layout = Layout::new(&[base_layer()], default_config());
    let out = world.load(layout.path(), "localhost:5000/app");
    let said = stdout_of(&out);
    assert_eq!(
        said.trim(),
        "loaded localhost:5000/app:latest",
        "step 9: expected a name without a tag to get :latest, even with a registry port in \
         it, load said {said:?}; most likely cause: the name's parser takes the text after \
         the last `:` for a tag even when a `/` follows it (there it is a port)"
    );
    let out = world.run(&["localhost:5000/app", "echo", "found"]);
    let seen = stdout_of(&out);
    assert_eq!(
        seen,
        "found
",
        "step 9: expected run to find localhost:5000/app by the name it was loaded under, \
         it printed {seen:?}; most likely cause: run and load parse the name differently \
         (one takes :5000 for a tag)"
    );
}

#[test]
fn a_missing_working_directory_is_created() {
    let world = World::new();
    let layout = Layout::new(
        &[base_layer()],
        serde_json::json!({ "Env": ["PATH=/bin"], "Cmd": ["pwd"], "WorkingDir": "/app/work" }),
    );
    stdout_of(&world.load(layout.path(), "img:1"));
    let out = world.run(&["img:1"]);
    let seen = stdout_of(&out);
    assert_eq!(
        seen, "/app/work\n",
        "step 9: expected a WorkingDir the image lacks (/app/work) to be created, as docker \
         run does, pwd printed {seen:?}; most likely cause: the child does not make the \
         missing directories of the spec's cwd (make_missing_dirs) before its chdir"
    );
    // Through a symlink of the image, an absolute one: it resolves inside
    // the container's root, as the container sees it.
    let linked = tar_of(&[Entry::Symlink("link", "/data")]);
    let layout = Layout::new(
        &[base_layer(), linked],
        serde_json::json!({ "Env": ["PATH=/bin"], "Cmd": ["ls", "-d", "/data/new/deep"], "WorkingDir": "/link/new/deep" }),
    );
    stdout_of(&world.load(layout.path(), "img:2"));
    let out = world.run(&["img:2"]);
    let seen = stdout_of(&out);
    assert_eq!(
        seen, "/data/new/deep\n",
        "step 9: expected the working directory /link/new/deep (through the image's symlink \
         /link) to be created inside the rootfs, and the Cmd to see it, it printed {seen:?}; \
         most likely cause: the missing directories are made before the pivot, by a path \
         joined to the rootfs, so the absolute link /data resolves on the host"
    );
}

#[test]
fn the_image_user_applies() {
    let world = World::new();
    let layout = Layout::new(
        &[base_layer()],
        serde_json::json!({ "Env": ["PATH=/bin"], "Cmd": ["id"], "User": "web" }),
    );
    stdout_of(&world.load(layout.path(), "img:1"));
    let out = world.run(&["img:1"]);
    assert!(
        stdout_of(&out).starts_with("uid=1000(web) gid=1000"),
        "step 9: expected the image's User web to run the Cmd as uid 1000 (from the image's \
         /etc/passwd), `id` printed {:?}; most likely cause: the image config's User is not \
         carried into the spec (config::shape), or is looked up in the host's /etc/passwd \
         instead of the container's",
        text(&out.stdout)
    );
    // Changing ids needs CAP_SETUID and CAP_SETGID: dropping them must not
    // stop the switch (it happens first), and the user holds no capability.
    let out = world.run(&[
        "--cap-drop",
        "SETUID",
        "--cap-drop",
        "SETGID",
        "img:1",
        "sh",
        "-c",
        "id; cat /proc/self/status",
    ]);
    let status = stdout_of(&out);
    assert!(
        status.starts_with("uid=1000(web) gid=1000"),
        "step 9: expected the switch to user web to happen despite --cap-drop SETUID, \
         SETGID, the container printed {status}; most likely cause: the child drops the \
         capabilities before become_user: the switch needs CAP_SETUID and CAP_SETGID, so it \
         must come first"
    );
    assert!(
        status.contains("CapEff:\t0000000000000000")
            && status.contains("CapPrm:\t0000000000000000"),
        "step 9: expected a non-root user to hold no capability (CapEff and CapPrm 0), the \
         container printed {status}; most likely cause: the user is switched without \
         clearing the effective and permitted sets (setuid(2) clears them only when no \
         PR_SET_KEEPCAPS is set)"
    );
    assert!(
        status.contains("CapBnd:\t00000000a804253b"),
        "step 9: expected the bounding set to lose SETUID and SETGID (CapBnd \
         00000000a804253b), the container printed {status}; most likely cause: --cap-drop \
         is applied after the user switch, or not to the bounding set"
    );
}

#[test]
fn two_containers_of_one_image_do_not_see_each_others_writes() {
    let world = World::new();
    loaded(&world, &[base_layer()]);
    let a = world.running(
        &["img:1"],
        "echo secret > /data/written-by-a; echo ready; read x",
    );
    let out = world.run(&[
        "img:1",
        "sh",
        "-c",
        "cat /data/written-by-a 2>/dev/null || echo absent",
    ]);
    let seen = stdout_of(&out);
    assert_eq!(
        seen.trim(),
        "absent",
        "step 9: expected a second container not to see the first one's /data/written-by-a, \
         it printed {:?}; most likely cause: the containers share one upper directory: \
         overlay::prepare must make each container its own upper and work directories",
        seen.trim()
    );
    a.finish_well();
}

#[test]
fn a_containers_writes_vanish_when_it_is_removed_unless_kept() {
    let world = World::new();
    loaded(&world, &[base_layer()]);
    stdout_of(&world.run(&["img:1", "sh", "-c", "echo x > /etc/new; rm /data/a"]));
    let out = world.run(&[
        "img:1",
        "sh",
        "-c",
        "cat /etc/new 2>/dev/null || echo gone; cat /data/a",
    ]);
    let seen = stdout_of(&out);
    assert_eq!(
        seen, "gone\na\n",
        "step 9: expected the next container to start from the image again (no /etc/new, \
         /data/a back), it printed {seen:?}; most likely cause: a container's upper \
         directory is kept and reused instead of removed when it ends"
    );
    assert!(
        world.containers().is_empty(),
        "step 9: expected no container directory left after the containers ended, found \
         {:?}; most likely cause: the step binary does not remove a container's directory \
         (upper, work, merged) once it is unmounted",
        world.containers()
    );
    let out = world.run(&[
        "--keep",
        "img:1",
        "sh",
        "-c",
        "echo x > /etc/new; rm /data/a",
    ]);
    stdout_of(&out);
    let kept = world.containers();
    assert_eq!(
        kept.len(),
        1,
        "step 9: expected the container run with --keep to keep its directory, found \
         {kept:?}; most likely cause: the clean-up at the end ignores --keep"
    );
    let upper = kept[0].join("upper");
    assert!(
        upper.join("etc/new").is_file(),
        "step 9: expected the kept container's upper directory to hold etc/new, the file it \
         wrote; most likely cause: the container's writes went elsewhere than its upper \
         directory (overlay::prepare's upperdir)"
    );
    let meta = std::fs::symlink_metadata(upper.join("data/a")).unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type()),
        "step 9: expected the kept upper directory's data/a, which the container deleted, \
         to be a whiteout (a character device), it is {:?}; most likely cause: the rootfs is \
         not an overlay with this upper directory",
        meta.file_type()
    );
}

/// Whether `path` is a mount point in this mount namespace.
fn mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(path.as_ref()))
}

#[test]
fn a_killed_step9_leaves_nothing_once_the_next_container_starts() {
    let world = World::new();
    loaded(&world, &[base_layer()]);
    let mut running = world.running(&["img:1"], "echo ready; read x");
    let container = running.container_pid();
    let cgroups = std::fs::read_to_string(format!("/proc/{container}/cgroup")).unwrap();
    assert!(
        !support::caixa_cgroups(&cgroups).is_empty(),
        "step 9: expected the container in a cgroup of caixa's, its /proc/PID/cgroup says \
         {cgroups}; most likely cause: the step binary does not put the container into its \
         cgroup (step 7's work lost)"
    );
    let dirs = world.containers();
    assert_eq!(
        dirs.len(),
        1,
        "step 9: expected one container directory while it runs, found {dirs:?}; most likely \
         cause: overlay::prepare makes its directories elsewhere than the store's containers/"
    );
    let merged = dirs[0].join("merged");
    assert!(
        mounted(&merged),
        "step 9: expected the container's root mounted at {merged:?} while it runs, it is \
         not; most likely cause: the overlay is mounted in the container's mount namespace \
         only, or at another path"
    );
    // SIGKILL: the step binary cleans up nothing; its container dies with
    // it (PR_SET_PDEATHSIG), but the mount, upper directory and cgroup stay.
    running.child.kill().unwrap();
    running.child.wait().unwrap();
    drop(running);
    assert!(
        support::wait_gone(container),
        "step 9: expected the container (pid {container}) to die with its killed step9, it \
         lives on; most likely cause: the child does not set PR_SET_PDEATHSIG"
    );
    stdout_of(&world.run(&["img:1", "echo", "next"]));
    let (still_mounted, left_dirs, left_cgroups) = (
        mounted(&merged),
        world.containers(),
        support::cgroups_left(&cgroups),
    );
    // Clean up before asserting, so a failure leaves nothing either.
    let _ = lazy_umount(&merged);
    let _ = std::fs::remove_dir_all(&dirs[0]);
    support::remove_cgroups(&cgroups);
    assert!(
        !still_mounted && left_dirs.is_empty() && left_cgroups.is_empty(),
        "step 9: expected the next start to sweep what a killed start left, it left: mounted \
         {still_mounted}, container dirs {left_dirs:?}, cgroups {left_cgroups:?}; most likely \
         cause: the start does not sweep the records of dead step binaries (leftovers::sweep) \
         before making its own container"
    );
}

/// `umount -l`, for the clean-up of a failed test.
fn lazy_umount(path: &Path) -> std::io::Result<std::process::ExitStatus> {
    Command::new("umount")
        .arg("-l")
        .arg(path)
        .stderr(Stdio::null())
        .status()
}

#[test]
fn an_image_of_many_layers_still_mounts() {
    // Sixty layers: their full paths would not fit in one page of mount
    // options; the short links do.
    let world = World::new();
    let mut layers = vec![base_layer()];
    let names: Vec<String> = (0..59).map(|i| format!("data/layer-{i:02}")).collect();
    for name in &names {
        layers.push(tar_of(&[Entry::Dir("data"), Entry::File(name, b"x")]));
    }
    loaded(&world, &layers);
    let out = world.run(&["img:1", "sh", "-c", "ls /data | wc -l"]);
    let seen = stdout_of(&out);
    assert_eq!(
        seen.trim(),
        "61",
        "step 9: expected /data to hold 61 files (two of the base layer and one per upper \
         layer), `ls /data | wc -l` said {:?}; most likely cause: the overlay's lowerdir list \
         names layers by their full paths and no longer fits one page of mount options: use \
         the short links",
        seen.trim()
    );
}

fn hostile(world: &World, layer: Vec<u8>, needle: &str) {
    let layout = Layout::new(&[base_layer(), layer], default_config());
    stdout_of(&world.load(layout.path(), "bad:1"));
    let before = world.layer_entries();
    let out = world.run(&["bad:1", "true"]);
    assert_one_line_error(&out, 9, 125, needle);
    let after: Vec<String> = world
        .layer_entries()
        .into_iter()
        .filter(|e| !before.contains(e))
        .collect();
    // Only the good base layer (and its short link) may have been added.
    assert!(
        after.iter().all(|e| !e.starts_with(".tmp")),
        "step 9: expected no half-written layer (.tmp…) left after a refused layer, found \
         {after:?}; most likely cause: the unpack does not remove its temporary directory \
         when it refuses the layer"
    );
    assert!(
        after.len() <= 2,
        "step 9: expected the hostile layer not to be registered, the store's layers grew by \
         {after:?}; most likely cause: the layer is renamed into place before the unpack \
         has checked every entry"
    );
}

#[test]
fn an_absolute_name_is_refused() {
    let world = World::new();
    hostile(
        &world,
        tar_of(&[Entry::File("/caixa-abs-test", b"x")]),
        "absolute path",
    );
    assert!(
        !Path::new("/caixa-abs-test").exists(),
        "step 9: expected an absolute name in a layer to be refused, it wrote \
         /caixa-abs-test on the host; most likely cause: safe_relative does not refuse a \
         name with a root component"
    );
}

#[test]
fn a_dotdot_name_is_refused() {
    let world = World::new();
    hostile(
        &world,
        tar_of(&[Entry::File("../../caixa-dotdot-test", b"x")]),
        "`..`",
    );
}

#[test]
fn writing_through_a_symlinked_directory_is_refused() {
    let world = World::new();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap();
    hostile(
        &world,
        tar_of(&[
            Entry::Symlink("escape", target),
            Entry::File("escape/pwned", b"x"),
        ]),
        "symlink",
    );
    let written = std::fs::read_dir(outside.path()).unwrap().count();
    assert_eq!(
        written, 0,
        "step 9: expected nothing written through the layer's symlink escape, the host \
         directory it points to holds {written} entries; most likely cause: the unpack \
         follows a symlink of the layer as a directory (real_dirs must refuse one)"
    );
}

#[test]
fn a_hard_link_out_of_the_layer_is_refused() {
    let world = World::new();
    hostile(
        &world,
        tar_of(&[Entry::HardLink("passwd-link", "/etc/passwd")]),
        "hard link",
    );
}

#[test]
fn a_whiteout_of_the_parent_directory_is_refused() {
    let world = World::new();
    // Unpack a good image first: its layer must survive the bad one.
    loaded(&world, &[base_layer()]);
    stdout_of(&world.run(&["img:1", "sh", "-c", "exit 0"]));
    for name in [".wh...", ".wh..", ".wh."] {
        hostile(&world, tar_of(&[Entry::File(name, b"")]), "names no entry");
    }
    stdout_of(&world.run(&["img:1", "sh", "-c", "exit 0"]));
}

#[test]
fn a_device_node_is_refused() {
    let world = World::new();
    hostile(
        &world,
        tar_of(&[Entry::CharDevice("mem", 1, 1)]),
        "device node",
    );
}

#[test]
fn a_truncated_layer_is_refused() {
    let world = World::new();
    let mut layer = tar_of(&[Entry::File("big", &[7u8; 20000])]);
    layer.truncate(5000);
    hostile(&world, layer, "truncated");
}

#[test]
fn a_duplicate_entry_cannot_write_through_an_earlier_symlink() {
    let world = World::new();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    let layer = tar_of(&[
        Entry::File("f", b"1"),
        Entry::Symlink("f", target.to_str().unwrap()),
        Entry::File("f", b"contained"),
    ]);
    loaded(&world, &[base_layer(), layer]);
    let out = world.run(&["img:1", "cat", "/f"]);
    let seen = stdout_of(&out);
    assert_eq!(
        seen, "contained",
        "step 9: expected the layer's last entry f to replace its own symlink f, not write \
         through it, /f reads {seen:?}; most likely cause: the unpack opens an existing \
         path for writing instead of removing what is there first (clear)"
    );
    assert!(
        !target.exists(),
        "step 9: expected the layer not to write through its own symlink, it wrote {}; most \
         likely cause: the unpack opens an existing path for writing instead of removing \
         what is there first (clear)",
        target.display()
    );
}

#[test]
fn a_diff_id_mismatch_is_refused() {
    let world = World::new();
    let wrong = vec![format!("sha256:{}", "0".repeat(64))];
    let layout = Layout::with(
        &[base_layer()],
        default_config(),
        "application/vnd.oci.image.layer.v1.tar+gzip",
        Some(wrong),
    );
    stdout_of(&world.load(layout.path(), "bad:1"));
    let out = world.run(&["bad:1", "true"]);
    assert_one_line_error(&out, 9, 125, "digest mismatch");
    assert!(
        world.layer_entries().iter().all(|e| e == "l"),
        "step 9: expected no layer registered when its diff_id does not match, the store \
         has {:?}; most likely cause: the layer is renamed into place before its digest is \
         checked against the config's diff_id",
        world.layer_entries()
    );
}

#[test]
fn an_unknown_media_type_is_refused_at_load() {
    let world = World::new();
    let layout = Layout::with(
        &[base_layer()],
        default_config(),
        "application/vnd.example.layer.v1.tar+lz4",
        None,
    );
    let out = world.load(layout.path(), "bad:1");
    assert_one_line_error(&out, 9, 125, "unsupported media type");
}

#[test]
fn a_tampered_blob_is_refused_at_load() {
    let world = World::new();
    let layout = Layout::new(&[base_layer()], default_config());
    // Flip the content of the layer blob (the largest file) behind its digest.
    let blobs = layout.dir.path().join("blobs/sha256");
    let biggest = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&biggest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&biggest, bytes).unwrap();
    let out = world.load(layout.path(), "bad:1");
    assert_one_line_error(&out, 9, 125, "digest mismatch");
}

#[test]
fn a_decompression_bomb_is_refused() {
    let world = World::new();
    // 800 MiB of zeros compress to under a megabyte: far past the bound of
    // 100 times the compressed size plus 512 MiB.
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "cd {} && truncate -s 800M zeros && tar cf - zeros | gzip -9 > layer.tgz",
        dir.path().display()
    );
    let made = Command::new("sh").args(["-c", &script]).status().unwrap();
    assert!(
        made.success(),
        "step 9: expected the test to make its bomb layer, the shell ended with {made}: \
         {script}; most likely cause: the host lacks truncate, tar or gzip, or space in the \
         temporary directory"
    );
    let bomb = std::fs::read(dir.path().join("layer.tgz")).unwrap();
    // Hand-write the layer: the bomb is already gzip-compressed.
    let layout = Layout::new(&[base_layer()], default_config());
    layout.push_layer(
        &bomb,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        &format!("sha256:{}", "1".repeat(64)),
    );
    stdout_of(&world.load(layout.path(), "bomb:1"));
    world.refuses_to_run("bomb:1", "decompression bomb");
}

/// A layer whose tar archive ends after one small file, but whose
/// compressed stream goes on with 128 MiB of zeros (a few hundred KiB on
/// disk), with the diff_id of the whole stream: an attacker's own image is
/// consistent. Draining it all to check the diff_id is what must not happen.
fn a_stream_going_on_after_its_tar_is_refused(compress: &str, media_type: &str) {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("layer.tar"),
        tar_of(&[Entry::File("planted", b"x\n")]),
    )
    .unwrap();
    let stream = "{ cat layer.tar; head -c 128M /dev/zero; }";
    let script = format!(
        "cd {} && {stream} | {compress} > layer.blob && {stream} | sha256sum",
        dir.path().display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "step 9: expected the test to make its layer with {compress}, it failed; most likely \
         cause: the host lacks {compress} (sudo apt-get install zstd)\nstderr: {}",
        text(&out.stderr)
    );
    let diff_id = format!("sha256:{}", &text(&out.stdout)[..64]);
    let blob = std::fs::read(dir.path().join("layer.blob")).unwrap();
    assert!(
        blob.len() < 2 << 20,
        "step 9: expected the test's hostile layer to stay under 2 MiB on disk, it is {} \
         bytes; most likely cause: the host's {compress} compresses zeros poorly",
        blob.len()
    );

    let layout = Layout::new(&[base_layer()], default_config());
    layout.push_layer(&blob, media_type, &diff_id);
    stdout_of(&world.load(layout.path(), "endless:1"));
    world.refuses_to_run("endless:1", "after the end of its tar archive");
}

#[test]
fn a_zstd_stream_going_on_after_its_tar_is_refused() {
    a_stream_going_on_after_its_tar_is_refused(
        "zstd -q -1 -c",
        "application/vnd.oci.image.layer.v1.tar+zstd",
    );
}

#[test]
fn a_gzip_stream_going_on_after_its_tar_is_refused() {
    a_stream_going_on_after_its_tar_is_refused(
        "gzip -1 -c",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
}

fn skopeo(args: &[&str]) {
    let status = Command::new("skopeo")
        .args(args)
        .status()
        .expect("skopeo (sudo apt-get install skopeo)");
    assert!(
        status.success(),
        "step 9: expected skopeo {args:?} to make the test's image, it ended with {status}; \
         most likely cause: skopeo is missing or too old for this format (its stderr is \
         above)"
    );
}

#[test]
fn a_docker_save_tarball_loads_and_runs() {
    let world = World::new();
    let layout = Layout::new(&[base_layer()], default_config());
    let archive = tempfile::tempdir().unwrap();
    let tarball = archive.path().join("saved.tar");
    skopeo(&[
        "copy",
        "--quiet",
        &format!("oci:{}:test", layout.path()),
        &format!("docker-archive:{}:saved:2", tarball.display()),
    ]);
    let child = Command::new(binary(9))
        .args(["--root", world.root(), "load", tarball.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child);
    let said = stdout_of(&out);
    assert_eq!(
        said.trim(),
        "loaded saved:2",
        "step 9: expected a docker-save tarball (skopeo's) to load as saved:2, load said \
         {said:?}; most likely cause: load_docker does not take the name from the tarball's \
         manifest.json RepoTags"
    );
    let seen = stdout_of(&world.run(&["saved:2"]));
    assert_eq!(
        seen, "bar\n/tmp\n",
        "step 9: expected saved:2 to run its Cmd in its WorkingDir, as the config says, it \
         printed {seen:?}; most likely cause: load_docker stores another config than the one \
         manifest.json names"
    );
}

#[test]
fn an_oci_archive_loads_and_runs() {
    let world = World::new();
    let layout = Layout::new(&[base_layer()], default_config());
    let archive = tempfile::tempdir().unwrap();
    let file = archive.path().join("image.oci.tar");
    skopeo(&[
        "copy",
        "--quiet",
        &format!("oci:{}:test", layout.path()),
        &format!("oci-archive:{}:arch:3", file.display()),
    ]);
    let out = world.load(file.to_str().unwrap(), "arch:3");
    let said = stdout_of(&out);
    assert_eq!(
        said.trim(),
        "loaded arch:3",
        "step 9: expected an OCI archive (skopeo's) to load as arch:3, load said {said:?}; \
         most likely cause: load does not unpack a tar of an OCI layout before reading it as \
         one (load_oci)"
    );
    let seen = stdout_of(&world.run(&["arch:3"]));
    assert_eq!(
        seen, "bar\n/tmp\n",
        "step 9: expected arch:3 to run its Cmd in its WorkingDir, as the config says, it \
         printed {seen:?}; most likely cause: config::shape does not carry the config's Cmd \
         and WorkingDir into the spec"
    );
}

#[test]
fn zstd_compressed_layers_load_and_run() {
    // skopeo recompresses a two-layer image (a whiteout in the upper one):
    // plain zstd (one frame), and zstd:chunked (many frames and a skippable
    // one holding a table of contents).
    let world = World::new();
    let upper = tar_of(&[Entry::Dir("data"), Entry::File("data/.wh.a", b"")]);
    let layout = Layout::new(&[base_layer(), upper], default_config());
    for (format, name) in [("zstd", "zstd:1"), ("zstd:chunked", "chunked:1")] {
        let out = tempfile::tempdir().unwrap();
        skopeo(&[
            "copy",
            "--quiet",
            "--dest-compress-format",
            format,
            &format!("oci:{}:test", layout.path()),
            &format!("oci:{}:test", out.path().display()),
        ]);
        let blobs = out.path().join("blobs/sha256");
        let zstd_blobs = std::fs::read_dir(&blobs)
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path()).is_ok_and(|b| b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]))
            })
            .count();
        assert_eq!(
            zstd_blobs, 2,
            "step 9: expected skopeo to make two zstd layers ({format}), it made {zstd_blobs}; \
             most likely cause: the host's skopeo is too old for --dest-compress-format \
             {format}"
        );
        let loaded = world.load(out.path().to_str().unwrap(), name);
        let said = stdout_of(&loaded);
        assert_eq!(
            said.trim(),
            format!("loaded {name}"),
            "step 9: expected the {format} layout with zstd layers to load, load said \
             {said:?}; most likely cause: load refuses the zstd layer media type"
        );
        let ran = world.run(&[name, "sh", "-c", "ls /data"]);
        let seen = stdout_of(&ran);
        assert_eq!(
            seen, "b\n",
            "step 9: expected the {format} layers to unpack and the whiteout of data/a to \
             apply (ls /data: b), it printed {seen:?}; most likely cause: tar_stream does not \
             decode every zstd frame (zstd:chunked has many, and a skippable one), or \
             apply_whiteout does not turn `.wh.a` into a 0/0 character device"
        );
    }
}

/// The rootless user, with an image of `layers` (over the base layer)
/// loaded as `img:1` into its own store. The layout is the test's, made
/// readable by the user; it is returned, since dropping it deletes it.
fn rootless_with_image(layers: &[Vec<u8>]) -> (support::Rootless, Layout) {
    let user = support::Rootless::new();
    let mut all = vec![base_layer()];
    all.extend_from_slice(layers);
    let layout = Layout::new(&all, default_config());
    std::fs::set_permissions(layout.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut load = user.step(9);
    load.args(["load", layout.path(), "--name", "img:1"]);
    let out = support::output_of(load);
    assert!(
        out.status.success() && stdout_of(&out).trim() == "loaded img:1",
        "step 9 load run by uid {}: expected `loaded img:1`, it exited {} with {:?} {:?}; \
         most likely cause: the store is not the user's own (store::default_root)",
        support::Rootless::UID,
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    (user, layout)
}

/// Rootless (#22): an ordinary user loads an image into a store of its own
/// and runs it: layers unpacked as the user (whiteouts, an opaque
/// directory in `user.overlay.*`, a directory the user may not write),
/// mounted by the child in its user namespace, root in the container, the
/// writes gone with the container, nothing left behind.
#[test]
fn rootless_an_image_runs_from_the_users_own_store() {
    let mut entries = whited_out();
    entries.extend([
        Entry::DirMode("ro", 0o555),
        Entry::File("ro/f", b"f\n"),
        Entry::FileOf("web-owned", 1000),
    ]);
    let (user, _layout) = rootless_with_image(&[tar_of(&entries)]);
    let uid = support::Rootless::UID;
    let script = "ls /data; echo --; ls /dir; echo --; cat /ro/f; ls -ldn /ro; \
                  ls -ln /web-owned; id -u; touch /made-here && echo wrote";
    let out = user.run(
        9,
        &["run", "--network", "none", "img:1", "sh", "-c", script],
    );
    let printed = text(&out.stdout);
    assert!(
        out.status.success(),
        "step 9 run by uid {uid} (rootless) failed with {}: {}\nstdout: {printed}\nmost \
         likely cause: the layers are not unpacked as the user, or the overlay of the \
         image is not mounted by the child (rootless::overlay_options)",
        out.status,
        text(&out.stderr)
    );
    let words: Vec<&str> = printed.split_whitespace().collect();
    // `ls -ln`: mode, links, uid, gid, size, date (three words), name.
    let ok = words.len() == 25
        && words[..6] == ["b", "--", "z", "--", "f", "dr-xr-xr-x"]
        && words[7..9] == ["0", "0"]
        && words[14..17] == ["-rw-r--r--", "1", "0"]
        && words[17] == "0"
        && words[23..] == ["0", "wrote"];
    assert!(
        ok,
        "step 9 run by uid {uid}: expected /data with only b (a whiteout), /dir with only z \
         (opaque), /ro mode 555 and /web-owned (uid 1000 in the image) owned by root, id 0 \
         and a writable root, it printed:\n\
         {printed}\nmost likely cause: an opaque directory marked trusted.overlay.opaque, \
         which a user's mount (userxattr) does not read; or a file owned by another id than \
         the user's (unpack::Shift::rootless)"
    );
    let out = user.run(
        9,
        &[
            "run",
            "--network",
            "none",
            "img:1",
            "sh",
            "-c",
            "test -e /made-here && echo kept || echo gone",
        ],
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "gone",
        "step 9 run by uid {uid}: a file the last container wrote is still there ({}); each \
         container must get an upper directory of its own, deleted with it",
        text(&out.stderr)
    );
    let store = "home/.local/share/caixa";
    let owners = user.left_in(&format!("{store}/layers"));
    assert_eq!(
        owners,
        [format!("{uid}-{uid}-user")],
        "step 9 run by uid {uid}: expected the layers in the user's store, unpacked for the \
         user alone ({uid}-{uid}-user), found {owners:?}"
    );
    let left = user.left_in(&format!("{store}/containers"));
    assert!(
        left.is_empty(),
        "step 9 run by uid {uid}: expected every container's directory gone, left: {left:?}"
    );
    let records = user.left_in("run/caixa/running");
    assert!(
        records.is_empty(),
        "step 9 run by uid {uid}: expected no record of a running start left, found \
         {records:?}"
    );
}

/// Rootless with the user's subordinate range mapped (`--uid-map 1:…`):
/// the layers are unpacked as root of a user namespace with those maps, so
/// an image's file keeps the owner the image gives it, as the container
/// sees it (an id past the maps is `nobody`, as for root), and on the host
/// it belongs to the subordinate id the maps make of it.
#[test]
fn rootless_a_subordinate_range_keeps_the_images_owners() {
    use std::os::unix::fs::MetadataExt;
    let uid = support::Rootless::UID;
    let mut entries = whited_out();
    entries.extend([
        Entry::FileOf("web-owned", 1000),
        Entry::FileOf("far", 70000),
    ]);
    let (user, _layout) = rootless_with_image(&[tar_of(&entries)]);
    let own = format!("0:{uid}:1");
    let mut run = user.step_with_subids(9, Some((300000, 65536)));
    run.args(["run", "--network", "none"]);
    for flag in ["--uid-map", "--gid-map"] {
        run.args([flag, own.as_str(), flag, "1:300000:65535"]);
    }
    let script = "stat -c '%u %g' /web-owned /far; ls /data; echo --; ls /dir; \
                  touch /made-here && echo wrote";
    run.args(["img:1", "sh", "-c", script]);
    let out = support::output_of(run);
    let printed = text(&out.stdout);
    assert!(
        out.status.success() && printed == "1000 1000\n65534 65534\nb\n--\nz\nwrote\n",
        "step 9 run rootless with the subordinate range 300000-365535 mapped: expected \
         /web-owned owned by 1000 as the image says, /far (70000, past the maps) by nobody, \
         the whiteout and opaque directory applied and a writable root; it exited {} and \
         printed:\n{printed}stderr: {}\nmost likely cause: the layers are unpacked as the \
         user alone (every file the user's) instead of as root of a user namespace with the \
         container's maps (unpack::Shift::mapped)",
        out.status,
        text(&out.stderr)
    );
    let layers = user.left_in("home/.local/share/caixa/layers");
    let mapped: Vec<&String> = layers
        .iter()
        .filter(|name| name.starts_with(&format!("{uid}-{uid}-user-")))
        .collect();
    assert_eq!(
        mapped.len(),
        1,
        "step 9 run rootless with a subordinate range: expected one layers directory of its \
         own for those maps ({uid}-{uid}-user-DIGEST), found {layers:?}"
    );
    let home = user
        .step(9)
        .get_envs()
        .find(|(k, _)| *k == "HOME")
        .and_then(|(_, v)| v.map(PathBuf::from))
        .expect("the rootless user's HOME");
    let dir = home.join(".local/share/caixa/layers").join(mapped[0]);
    let owners: Vec<(u32, u32)> = std::fs::read_dir(&dir)
        .expect("the mapped layers directory")
        .flatten()
        .filter_map(|layer| std::fs::symlink_metadata(layer.path().join("web-owned")).ok())
        .map(|meta| (meta.uid(), meta.gid()))
        .collect();
    assert_eq!(
        owners,
        [(300999, 300999)],
        "step 9 run rootless with a subordinate range: expected the layer's web-owned (1000 in \
         the image) owned on the host by 300999, the id the maps give 1000"
    );
    let left = user.left_in("home/.local/share/caixa/containers");
    assert!(
        left.is_empty(),
        "step 9 run rootless with a subordinate range: expected the container's directory \
         gone, left: {left:?}"
    );
}

/// `cmd` (a step as the rootless user, see `support::Rootless::step`) with
/// FUSE open to the user, as udev leaves it on a desktop: in a mount
/// namespace of the test's, a device node of mode 0666 of the test's own
/// is bind-mounted over `/dev/fuse` (this machine kind's is 0600), and a
/// passwd with the user's name over `/etc/passwd` (`fusermount3` asks
/// who is mounting). After the step, the line `fuse mounts left: N` says
/// how many fuse-overlayfs mounts remain in that namespace. The host's
/// `/dev` and `/etc` are never touched.
fn with_fuse(cmd: &Command, dir: &Path) -> Command {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let uid = support::Rootless::UID;
    std::fs::write(
        dir.join("passwd"),
        format!("{passwd}caixa-rootless:x:{uid}:{uid}::/nonexistent:/bin/sh\n"),
    )
    .expect("the test's passwd");
    let env: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_str()?, v?.to_str()?)))
        .collect();
    let script = format!(
        "mount --make-rprivate / && mknod -m 0666 {dir}/fuse c 10 229 && \
         mount --bind {dir}/fuse /dev/fuse && mount --bind {dir}/passwd /etc/passwd || exit 125; \
         setpriv --reuid={uid} --regid={uid} --clear-groups env -i {env} \"$0\" \"$@\"; rc=$?; \
         echo \"fuse mounts left: $(grep -c fuse-overlayfs /proc/self/mountinfo)\"; exit $rc",
        dir = dir.display(),
        env = env.join(" "),
    );
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(["-m", "sh", "-c", &script])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    wrapped
}

/// Rootless, where the kernel's overlayfs is not the user's: the root
/// comes from fuse-overlayfs, mounted by the parent through `fusermount3`
/// (`CAIXA_OVERLAY=fuse` chooses it here, as a refusal would on an older
/// kernel), with the same merged view of whiteouts and opaque directories,
/// a writable root, and no mount or directory left after.
#[test]
fn rootless_fuse_overlayfs_gives_the_root_where_the_kernel_will_not() {
    let (user, _layout) = rootless_with_image(&[tar_of(&whited_out())]);
    let fuse_dir = tempfile::tempdir().expect("a directory for the test's /dev/fuse");
    let script = "grep ' / ' /proc/mounts | cut -d' ' -f3; ls /data; echo --; ls /dir; \
                  touch /made-here && echo wrote";
    let mut run = user.step(9);
    run.env("CAIXA_OVERLAY", "fuse")
        .args(["run", "--network", "none", "img:1", "sh", "-c"])
        .arg(script);
    let out = support::output_of(with_fuse(&run, fuse_dir.path()));
    let printed = text(&out.stdout);
    assert!(
        out.status.success()
            && printed == "fuse.fuse-overlayfs\nb\n--\nz\nwrote\nfuse mounts left: 0\n",
        "step 9 run rootless with CAIXA_OVERLAY=fuse: expected the root on fuse-overlayfs \
         (fuse.fuse-overlayfs), /data with only b, /dir with only z, a writable root and no \
         fuse-overlayfs mount left after; it exited {} and printed:\n{printed}stderr: {}\n\
         most likely cause: CAIXA_OVERLAY is not read (image::fuse_overlay::choose), or the \
         root is not unmounted through fusermount3 (fuse_overlay::unmount)",
        out.status,
        text(&out.stderr)
    );
    let left = user.left_in("home/.local/share/caixa/containers");
    assert!(
        left.is_empty(),
        "step 9 run rootless on fuse-overlayfs: expected the container's directory gone, \
         left: {left:?}"
    );
}

/// Rootless, fuse-overlayfs chosen but not installed (or a choice that is
/// none): one line that says what to do, and nothing left.
#[test]
fn rootless_a_missing_fuse_overlayfs_is_one_line() {
    let (user, _layout) = rootless_with_image(&[]);
    for (choice, path, needle) in [
        ("fuse", "/nonexistent", "apt-get install fuse-overlayfs"),
        ("fusee", "/usr/bin:/bin", "is not a choice"),
    ] {
        let mut run = user.step(9);
        run.env("CAIXA_OVERLAY", choice).env("PATH", path).args([
            "run",
            "--network",
            "none",
            "img:1",
            "true",
        ]);
        assert_one_line_error(&support::output_of(run), 9, 125, needle);
        let left = user.left_in("home/.local/share/caixa/containers");
        assert!(
            left.is_empty(),
            "step 9 run rootless with CAIXA_OVERLAY={choice}: a refused start left {left:?}"
        );
    }
}

/// Rootless: what needs root on the host is refused in one line, before
/// anything is made: the default bridge network.
#[test]
fn rootless_a_bridge_is_refused_in_one_line() {
    let (user, _layout) = rootless_with_image(&[]);
    let out = user.run(9, &["run", "img:1", "true"]);
    assert_one_line_error(&out, 9, 125, "use --network none");
    let left = user.left_in("home/.local/share/caixa/containers");
    assert!(
        left.is_empty(),
        "step 9 run rootless with a bridge: a refused start left {left:?}"
    );
}
