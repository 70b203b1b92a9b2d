//! Step 11 grading: the engine. Each test starts its own daemon, on its own
//! socket and store, inside its own network namespace, and drives it with
//! the step11 client as a user would; images are built by the test (umoci)
//! and saved as `docker save` archives (skopeo).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{TestNetns, TinyRootfs, assert_one_line_error, binary, stdout_of, text, wait_output};

/// A daemon of the test's own.
struct Engine {
    daemon: Option<Child>,
    dir: tempfile::TempDir,
    netns: TestNetns,
    /// More `daemon` options (the hidden limits a test sets).
    options: Vec<String>,
    /// How the daemon is started: its environment, its umask, its socket.
    setup: Setup,
}

/// How a test starts its daemon, beyond the options.
#[derive(Default)]
struct Setup {
    /// More environment for the daemon (a secret it must keep).
    env: Vec<(String, String)>,
    /// The umask it is started under (else the test's).
    umask: Option<libc::mode_t>,
    /// Its socket, relative to the test's directory (else `caixa.sock`).
    socket: Option<PathBuf>,
}

impl Engine {
    fn start() -> Engine {
        Engine::start_with(&[])
    }

    fn start_with(options: &[&str]) -> Engine {
        Engine::start_set_up(options, Setup::default())
    }

    fn start_set_up(options: &[&str], setup: Setup) -> Engine {
        let dir = tempfile::tempdir().unwrap();
        // World-traversable: a container's root is an unprivileged host uid.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut engine = Engine {
            daemon: None,
            dir,
            netns: TestNetns::new(),
            options: options.iter().map(|o| o.to_string()).collect(),
            setup,
        };
        engine.daemon = Some(engine.spawn_daemon());
        engine
    }

    fn socket(&self) -> PathBuf {
        let socket = self
            .setup
            .socket
            .as_deref()
            .unwrap_or(Path::new("caixa.sock"));
        self.dir.path().join(socket)
    }

    /// The engine's root: a long path on purpose, so that a container's
    /// `shim.sock` under it is longer than a socket address may be (108
    /// bytes), as under a real `--root` with 64-digit ids.
    fn root(&self) -> PathBuf {
        self.dir
            .path()
            .join("an-engine-root-whose-path-is-long-enough-to-matter-for-sockets")
    }

    /// `step11 daemon` on this engine's root and socket, in its namespace.
    fn daemon_command(&self) -> Command {
        let mut cmd = self.netns.step(11);
        cmd.arg("--root")
            .arg(self.root())
            .arg("daemon")
            .arg("--socket")
            .arg(self.socket())
            .args(&self.options)
            .envs(self.setup.env.iter().map(|(k, v)| (k, v)));
        if let Some(mask) = self.setup.umask {
            // SAFETY: umask(2) is async-signal-safe; nothing else runs
            // between fork and exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    libc::umask(mask);
                    Ok(())
                });
            }
        }
        cmd
    }

    fn spawn_daemon(&self) -> Child {
        let child = self
            .daemon_command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start step11 daemon");
        let start = Instant::now();
        while UnixStream::connect(self.socket()).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "step 11: the daemon did not listen on {:?}",
                self.socket()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Kills the daemon (SIGKILL: no goodbye), leaving its containers.
    fn kill_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    fn client(&self, args: &[&str]) -> Output {
        self.client_with_env(args, &[])
    }

    /// The client, with more environment of its own.
    fn client_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let child = Command::new(binary(11))
            .envs(env.iter().copied())
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child)
    }

    /// The states of this engine's containers, by id.
    fn states(&self) -> Vec<(String, serde_json::Value)> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.root().join("containers"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = entry.file_name().to_string_lossy().into_owned();
            if let Some(state) = std::fs::read(entry.path().join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                all.push((id, state));
            }
        }
        all
    }

    /// The pids 1 of the containers whose state says they run.
    fn running_pids(&self) -> Vec<i32> {
        self.states()
            .into_iter()
            .filter(|(_, s)| s["status"] == "running")
            .map(|(_, s)| s["pid"].as_i64().unwrap_or(0) as i32)
            .collect()
    }

    /// One API call on a connection of its own: (status, body).
    fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        api(&self.socket(), method, path, body)
    }
}

/// One HTTP request on the daemon's socket, answered whole.
fn api(socket: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = UnixStream::connect(socket).expect("connect to the daemon");
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: caixa\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Containers first: each shim sees its container end, tears down
        // what it made (cgroup, network, mount) and records `exited`.
        for pid in self.running_pids() {
            if pid > 0 {
                let _ = nix_kill(pid, libc::SIGKILL);
                support::wait_gone(pid);
            }
        }
        // Wait for that, before the state directory, which holds the
        // records of leftovers, goes with the namespace.
        let start = Instant::now();
        while self.states().iter().any(|(id, s)| {
            s["status"] == "running"
                && std::fs::File::open(self.root().join("containers").join(id).join("shim.lock"))
                    .ok()
                    .is_some_and(|f| shim_holds(&f))
        }) && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill_daemon();
    }
}

/// Whether a shim holds this lock file (it keeps an exclusive flock).
fn shim_holds(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor we own; released at once.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
    if taken {
        // SAFETY: as above.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
    }
    !taken
}

fn nix_kill(pid: i32, signal: i32) -> i32 {
    // SAFETY: kill(2) with a pid and a signal number.
    unsafe { libc::kill(pid, signal) }
}

/// A `docker save` archive of a tiny busybox image named `demo:1`, built
/// once per test cache (umoci and skopeo take a second here, and half a
/// minute in the VM lane's emulation) and only read by the tests.
fn archive() -> (tempfile::TempDir, PathBuf) {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let tar = BUILT.get_or_init(|| {
        // Named by the busybox it holds: a new busybox makes a new archive.
        let busybox = std::fs::metadata("/bin/busybox")
            .or_else(|_| std::fs::metadata("/usr/bin/busybox"))
            .map_or(0, |m| m.len());
        let cached = support::cache_dir().join(format!("step11-demo-1-{busybox}.tar"));
        if !cached.exists() {
            let (_dir, tar) = archive_with(|_| {});
            std::fs::create_dir_all(support::cache_dir()).unwrap();
            // A copy then a rename: a test binary running beside this
            // one never reads half an archive.
            let partial = cached.with_extension(format!("{}.partial", std::process::id()));
            std::fs::copy(&tar, &partial).unwrap();
            std::fs::rename(&partial, &cached).unwrap();
        }
        cached
    });
    (tempfile::tempdir().unwrap(), tar.clone())
}

/// [`archive`], with `shape` adding to its rootfs first.
fn archive_with(shape: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = TinyRootfs::new();
    shape(rootfs.dir.path());
    // The applets the tests run as a container's pid 1.
    for applet in ["sleep", "tail", "true", "cat"] {
        std::os::unix::fs::symlink("busybox", rootfs.dir.path().join("bin").join(applet)).unwrap();
    }
    let layout = dir.path().join("layout");
    support::umoci_image(
        &layout,
        rootfs.dir.path(),
        "--config.env PATH=/bin --config.cmd /bin/sh --config.cmd -c --config.cmd 'echo hello'",
    );
    let tar = dir.path().join("demo.tar");
    let status = Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:base", layout.display()))
        .arg(format!("docker-archive:{}:demo:1", tar.display()))
        .status()
        .expect("skopeo (sudo apt-get install skopeo)");
    assert!(status.success(), "skopeo failed");
    (dir, tar)
}

fn loaded(engine: &Engine) {
    let (_dir, tar) = archive();
    let out = engine.client(&["load", tar.to_str().unwrap()]);
    assert_eq!(
        stdout_of(&out),
        "Loaded image: demo:1\n",
        "step 11: expected the daemon to load the demo image and say \"Loaded image: demo:1\""
    );
}

#[test]
fn the_daemon_answers_on_its_socket_only_for_root_and_its_group() {
    let engine = Engine::start();
    let out = engine.client(&["version"]);
    assert!(
        stdout_of(&out).starts_with("caixa "),
        "step 11: GET /version: {}",
        text(&out.stdout)
    );
    let mode = std::fs::metadata(engine.socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660, "the socket is as powerful as root: mode 0660");
    // A second daemon on the same socket must refuse, in one line.
    let second = engine
        .daemon_command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_one_line_error(&wait_output(second), 11, 125, "already listens");
}

#[test]
fn run_prints_the_output_and_exits_with_the_containers_code() {
    let engine = Engine::start();
    loaded(&engine);
    let images = stdout_of(&engine.client(&["images"]));
    assert!(
        images.starts_with("demo:1\t"),
        "step 11: expected images to list demo:1 first, tab-separated: {images:?}"
    );
    let out = engine.client(&["run", "demo:1"]);
    assert_eq!(
        stdout_of(&out),
        "hello\n",
        "the image's Cmd, through the daemon"
    );
    let out = engine.client(&[
        "run",
        "--rm",
        "--name",
        "short",
        "-e",
        "WHO=caixa",
        "demo:1",
        "sh",
        "-c",
        "echo out $WHO; echo err >&2; exit 7",
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "step 11: run exits with the container's code: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "out caixa\n", "stdout, demultiplexed");
    assert!(text(&out.stderr).contains("err"), "stderr, demultiplexed");
    // A container that ends before the daemon looks has still started.
    for _ in 0..10 {
        let out = engine.client(&["run", "--rm", "--network", "none", "demo:1", "true"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "step 11: a quick container ran: {}",
            text(&out.stderr)
        );
    }
    let all = stdout_of(&engine.client(&["ps", "-a"]));
    assert!(!all.contains("short"), "--rm removed it:\n{all}");
    assert_eq!(
        all.lines().count(),
        2,
        "the first run is still listed:\n{all}"
    );
}

#[test]
fn a_detached_container_outlives_its_daemon() {
    let mut engine = Engine::start();
    loaded(&engine);
    let out = engine.client(&["run", "-d", "--name", "keeper", "demo:1", "sleep", "60"]);
    let id = stdout_of(&out).trim().to_string();
    assert_eq!(id.len(), 64, "run -d prints the id: {id}");
    assert!(
        stdout_of(&engine.client(&["ps"])).contains("keeper"),
        "step 11: expected ps to list the detached container keeper while it runs"
    );
    // The daemon dies; the container, under its shim, does not.
    engine.kill_daemon();
    let pids = engine.running_pids();
    assert_eq!(
        pids.len(),
        1,
        "step 11: expected the container to live on under its shim after the daemon was killed: {pids:?}"
    );
    assert!(
        Path::new(&format!("/proc/{}", pids[0])).exists(),
        "step 11: the container must outlive the daemon (its shim holds it)"
    );
    engine.daemon = Some(engine.spawn_daemon());
    let ps = stdout_of(&engine.client(&["ps"]));
    assert!(
        ps.contains("keeper") && ps.contains("Up"),
        "a new daemon sees it running:\n{ps}"
    );
    stdout_of(&engine.client(&["stop", "-t", "1", "keeper"]));
    let code = stdout_of(&engine.client(&["wait", &id[..12]]));
    assert!(
        code.trim() == "137" || code.trim() == "143",
        "stopped: SIGTERM, then SIGKILL after the grace: {code}"
    );
    stdout_of(&engine.client(&["rm", "keeper"]));
    assert_eq!(
        stdout_of(&engine.client(&["ps", "-a"])).lines().count(),
        1,
        "step 11: expected ps -a to print only its header once keeper was removed"
    );
}

#[test]
fn one_client_drives_two_daemons() {
    let (a, b) = (Engine::start(), Engine::start());
    loaded(&a);
    assert!(
        stdout_of(&a.client(&["images"])).contains("demo:1"),
        "step 11: expected daemon A to list the image loaded into it"
    );
    assert_eq!(
        stdout_of(&b.client(&["images"])),
        "",
        "step 11: -H picks the daemon; each has its own store"
    );
    stdout_of(&a.client(&["run", "--name", "only-on-a", "demo:1", "sh", "-c", "true"]));
    assert!(
        stdout_of(&a.client(&["ps", "-a"])).contains("only-on-a"),
        "step 11: expected daemon A to list its container only-on-a"
    );
    assert!(
        !stdout_of(&b.client(&["ps", "-a"])).contains("only-on-a"),
        "step 11: expected daemon B not to see daemon A's container: each daemon has its own root"
    );
}

#[test]
fn mistakes_are_one_clear_line() {
    let engine = Engine::start();
    loaded(&engine);
    let nowhere = Command::new(binary(11))
        .args(["-H", "unix:///nonexistent/caixa.sock", "ps"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_one_line_error(
        &wait_output(nowhere),
        11,
        125,
        "cannot connect to the caixa daemon",
    );
    assert_one_line_error(
        &engine.client(&["logs", "nosuch"]),
        11,
        125,
        "No such container: nosuch",
    );
    stdout_of(&engine.client(&["run", "-d", "--name", "busy", "demo:1", "sleep", "60"]));
    assert_one_line_error(&engine.client(&["rm", "busy"]), 11, 125, "is running");
    assert_one_line_error(
        &engine.client(&["run", "--name", "busy", "demo:1", "true"]),
        11,
        125,
        "already in use",
    );
    assert_one_line_error(
        &engine.client(&["run", "--network", "none", "-p", "80:80", "demo:1"]),
        11,
        125,
        "--network none",
    );
    stdout_of(&engine.client(&["rm", "-f", "busy"]));
}

/// The Docker CLI: `CAIXA_DOCKER_CLI`, else the one `.ci/run` installs,
/// else `docker` on the PATH.
fn docker_cli() -> PathBuf {
    if let Some(path) = std::env::var_os("CAIXA_DOCKER_CLI") {
        return PathBuf::from(path);
    }
    let ci = Path::new("/opt/caixa-peers/docker");
    if ci.is_file() {
        return ci.to_path_buf();
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("docker"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        panic!(
            "step 11: this test drives the daemon with the Docker CLI: install it (see .ci/run: \
             apt-get download docker.io; dpkg-deb -x …; only usr/bin/docker is needed) or set CAIXA_DOCKER_CLI"
        )
    })
}

#[test]
fn the_docker_cli_drives_the_daemon() {
    let engine = Engine::start();
    let (_dir, tar) = archive();
    let docker = |args: &[&str]| docker_on(&engine, args);
    let out = docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(
        stdout_of(&out).trim(),
        "1.41",
        "step 11: GET /version as Docker's"
    );
    let out = docker(&["load", "-i", tar.to_str().unwrap()]);
    assert!(
        stdout_of(&out).contains("demo:1"),
        "POST /images/load with a chunked body"
    );
    let images = stdout_of(&docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    assert_eq!(
        images.trim(),
        "demo:1",
        "step 11: expected docker images to list demo:1: {images}"
    );
    // Attached: create, attach (hijacked connection), wait, start.
    let out = docker(&[
        "run",
        "--rm",
        "demo:1",
        "sh",
        "-c",
        "echo via-docker; exit 6",
    ]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "step 11: docker run must get the exit code: {}",
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout),
        "via-docker\n",
        "step 11: expected docker run to print the container's output: {}",
        text(&out.stderr)
    );
    stdout_of(&docker(&[
        "run",
        "--name",
        "said",
        "demo:1",
        "sh",
        "-c",
        "echo logged",
    ]));
    let logs = docker(&["logs", "said"]);
    assert_eq!(
        stdout_of(&logs),
        "logged\n",
        "docker logs: inspect, then the frames"
    );
    stdout_of(&docker(&["rm", "said"]));
    let out = docker(&["run", "--rm", "demo:1", "no-such-command"]);
    assert_eq!(
        out.status.code(),
        Some(127),
        "step 11: docker run --rm of a missing command must exit 127, and return: the shim removing it must not wait for the lock its start holds: {}",
        text(&out.stderr)
    );
    let out = docker(&["run", "--tmpfs", "/run", "demo:1", "true"]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("not supported"),
        "a tmpfs must be refused, not ignored: {}",
        text(&out.stderr)
    );
    let out = docker(&["run", "-d", "--name", "bg", "demo:1", "sleep", "60"]);
    stdout_of(&out);
    let ps = stdout_of(&docker(&["ps", "--format", "{{.Names}} {{.Status}}"]));
    assert!(
        ps.starts_with("bg Up"),
        "step 11: expected docker ps to show the detached container bg Up: {ps}"
    );
    stdout_of(&docker(&["stop", "-t", "1", "bg"]));
    stdout_of(&docker(&["rm", "bg"]));
    assert_eq!(
        stdout_of(&docker(&["ps", "-a", "-q"])),
        "",
        "--rm and rm left nothing"
    );
}

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_registry_of_your_own_serves_a_stores_images() {
    let (_dir, tar) = archive();
    let source = tempfile::tempdir().unwrap();
    let out = wait_output(
        Command::new(binary(9))
            .arg("--root")
            .arg(source.path())
            .arg("load")
            .arg(&tar)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(
        stdout_of(&out).trim(),
        "loaded demo:1",
        "step 11: expected step 9 to load the demo layout"
    );
    let (_registry, port) = start_registry(source.path(), &[]);
    // A real client of the distribution API, verifying every digest.
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://127.0.0.1:{port}/demo:1"))
        .arg(format!("oci:{}:copy", copy.path().display()))
        .status()
        .expect("skopeo (sudo apt-get install skopeo)");
    assert!(
        status.success(),
        "step 11: skopeo must pull from caixa's registry"
    );
    // And step 10's client, into another store: the same manifest.
    let other = tempfile::tempdir().unwrap();
    let step10 = |args: &[&str]| {
        wait_output(
            Command::new(binary(10))
                .arg("--root")
                .arg(other.path())
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    };
    let reference = format!("127.0.0.1:{port}/demo:1");
    assert_eq!(
        stdout_of(&step10(&["pull", &reference])).trim(),
        format!("pulled {reference}"),
        "step 11: expected step 10 to pull from caixa's registry"
    );
    let source_digest = std::fs::read_to_string(source.path().join("images/demo:1")).unwrap();
    let images = stdout_of(&step10(&["images"]));
    assert!(
        images.contains(source_digest.trim()),
        "the pulled manifest is the served one:\n{images}"
    );
    let out = step10(&["pull", &format!("127.0.0.1:{port}/demo:2")]);
    assert_one_line_error(&out, 10, 125, "404");
}

/// Creates container `name` running `cmd` (not started) through the API; its id.
fn create(engine: &Engine, name: &str, cmd: &[&str]) -> String {
    let body = serde_json::json!({ "Image": "demo:1", "Cmd": cmd }).to_string();
    let (status, answer) = engine.api(
        "POST",
        &format!("/containers/create?name={name}"),
        Some(&body),
    );
    assert_eq!(status, 201, "create {name}: {answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    v["Id"].as_str().unwrap().to_string()
}

/// The processes whose command line names `word` (a container id: its shim).
fn shims_of(id: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    let words: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                    words
                        .windows(2)
                        .any(|w| w[0] == b"shim" && w[1] == id.as_bytes())
                })
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn concurrent_starts_of_one_container_start_it_once() {
    let engine = Engine::start();
    loaded(&engine);
    let id = create(&engine, "racer", &["sleep", "60"]);
    let socket = engine.socket();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let starts: Vec<_> = (0..6)
            .map(|_| s.spawn(|| api(&socket, "POST", "/containers/racer/start", None).0))
            .collect();
        starts.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 204).count(),
        1,
        "step 11: exactly one start may start it (the others get 304): {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 204 || *s == 304),
        "step 11: expected every concurrent start to answer 204 or 304: {statuses:?}"
    );
    assert_eq!(shims_of(&id), 1, "step 11: one container, one shim");
    assert_eq!(
        engine.running_pids().len(),
        1,
        "step 11: expected one running container after concurrent starts: {:?}",
        engine.running_pids()
    );
    stdout_of(&engine.client(&["rm", "-f", "racer"]));
    assert_eq!(shims_of(&id), 0, "rm -f ends its shim");
}

#[test]
fn concurrent_creates_of_one_name_make_one_container() {
    let engine = Engine::start();
    loaded(&engine);
    let socket = engine.socket();
    let body = serde_json::json!({ "Image": "demo:1", "Cmd": ["true"] }).to_string();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let creates: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| api(&socket, "POST", "/containers/create?name=twin", Some(&body)).0)
            })
            .collect();
        creates.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "step 11: a name is reserved atomically: one create wins, the others get 409: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "step 11: expected every concurrent create to answer 201 or 409: {statuses:?}"
    );
    let all = stdout_of(&engine.client(&["ps", "-a"]));
    assert_eq!(
        all.matches("twin").count(),
        1,
        "step 11: expected one container named twin after concurrent creates: {all}"
    );
    assert_eq!(engine.states().len(), 1, "no half-made container is left");
}

#[test]
fn stop_never_signals_a_pid_that_another_process_has_now() {
    let engine = Engine::start();
    loaded(&engine);
    let id = stdout_of(&engine.client(&["run", "-d", "--name", "orphan", "demo:1", "sleep", "60"]))
        .trim()
        .to_string();
    // The shim dies (SIGKILL: no goodbye); its container dies with it.
    let state = kill_shim(&engine, &id);
    // Their pids now belong to an unrelated process, as after a reuse.
    let mut stranger = Command::new("sleep").arg("300").spawn().unwrap();
    let path = engine
        .root()
        .join("containers")
        .join(&id)
        .join("state.json");
    let mut forged = state.clone();
    forged["status"] = "running".into();
    forged["pid"] = stranger.id().into();
    forged["shim"] = stranger.id().into();
    std::fs::write(&path, forged.to_string()).unwrap();
    let out = engine.client(&["stop", "-t", "1", "orphan"]);
    let alive = stranger.try_wait().unwrap().is_none();
    let _ = stranger.kill();
    let _ = stranger.wait();
    stdout_of(&out);
    assert!(
        alive,
        "step 11: stop signalled a process that only has the container's old pid: liveness must come from the shim's lock, never from a pid"
    );
    let ps = stdout_of(&engine.client(&["ps", "-a"]));
    assert!(
        ps.contains("Exited (255)"),
        "a lost shim's container is exited (255):\n{ps}"
    );
    stdout_of(&engine.client(&["rm", "orphan"]));
    assert!(
        !engine.root().join("containers").join(&id).exists(),
        "rm removes what the dead shim left (its mount swept first)"
    );
}

#[test]
fn a_daemon_killed_in_the_middle_of_a_start_loses_nothing() {
    let mut engine = Engine::start();
    loaded(&engine);
    for round in 0..3 {
        let name = format!("halfway{round}");
        let id = create(&engine, &name, &["sleep", "60"]);
        // Send the start and kill the daemon before (or while) it answers.
        let socket = engine.socket();
        let path = format!("/containers/{name}/start");
        let sender = std::thread::spawn(move || {
            use std::io::{Read, Write};
            if let Ok(mut stream) = UnixStream::connect(&socket) {
                let _ = write!(
                    stream,
                    "POST {path} HTTP/1.1\r\nHost: caixa\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = stream.read_to_end(&mut Vec::new());
            }
        });
        std::thread::sleep(Duration::from_millis(5 * round));
        engine.kill_daemon();
        let _ = sender.join();
        engine.daemon = Some(engine.spawn_daemon());
        // Whatever the moment: the container is there, created or running,
        // and a start now leaves it running under exactly one shim.
        let (status, answer) = engine.api("POST", &format!("/containers/{name}/start"), None);
        assert!(status == 204 || status == 304, "{status}: {answer}");
        let ps = stdout_of(&engine.client(&["ps"]));
        assert!(ps.contains(&name) && ps.contains("Up"), "{ps}");
        assert_eq!(shims_of(&id), 1, "one shim for {name}");
        stdout_of(&engine.client(&["rm", "-f", &name]));
        assert_eq!(
            shims_of(&id),
            0,
            "step 11: expected rm -f {name} to end its shim"
        );
        assert!(
            !engine.root().join("containers").join(&id).exists(),
            "step 11: expected rm -f {name} to remove the container's directory"
        );
    }
}

#[test]
fn one_id_everywhere_and_a_json_file_log() {
    let engine = Engine::start();
    loaded(&engine);
    let id = stdout_of(&engine.client(&[
        "run",
        "-d",
        "--name",
        "ided",
        "demo:1",
        "sh",
        "-c",
        "echo out; echo err >&2; sleep 60",
    ]))
    .trim()
    .to_string();
    let pid = engine.running_pids()[0];
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroups.contains(&id),
        "step 11: the container's cgroup is named by its API id {id}:\n{cgroups}"
    );
    let dir = engine.root().join("containers").join(&id);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounts.contains(&format!("{}", dir.join("merged").display())),
        "the overlay is mounted in the container's own directory, named by its id"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert!(
        config["ociVersion"]
            .as_str()
            .unwrap_or("")
            .starts_with("1."),
        "an OCI config.json: {config}"
    );
    assert_eq!(
        config["process"]["args"][0], "sh",
        "step 11: expected the OCI config.json's process.args to start with the command, sh: {config}"
    );
    // The output, in Docker's json-file format: a line per write, with its stream and time.
    let start = Instant::now();
    let log = loop {
        let log = std::fs::read_to_string(dir.join("container.log")).unwrap_or_default();
        if log.lines().count() >= 2 || start.elapsed() > Duration::from_secs(10) {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["log"] == "out\n" && l["stream"] == "stdout"),
        "step 11: expected the JSON log to hold the stdout line out\\n: {log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["log"] == "err\n" && l["stream"] == "stderr"),
        "step 11: expected the JSON log to hold the stderr line err\\n: {log}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["time"].as_str().is_some_and(|t| t.ends_with('Z'))),
        "step 11: expected every JSON log line to carry a UTC time ending in Z: {log}"
    );
    stdout_of(&engine.client(&["rm", "-f", "ided"]));
}

#[test]
fn inspect_says_when_the_oom_killer_ended_it() {
    let engine = Engine::start();
    loaded(&engine);
    // `tail` keeps a line that never ends in memory: it grows until killed.
    let out = engine.client(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "16m",
        "demo:1",
        "tail",
        "/dev/zero",
    ]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "step 11: expected a container over --memory 16m to be OOM-killed (137), it ended with {:?}\nstderr: {}",
        out.status.code(),
        text(&out.stderr)
    );
    let (status, answer) = engine.api("GET", "/containers/hog/json", None);
    assert_eq!(
        status, 200,
        "step 11: expected GET /containers/hog/json to answer 200: {answer}"
    );
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        v["State"]["OOMKilled"], true,
        "step 11: inspect reports State.OOMKilled: {v}"
    );
    assert_eq!(
        v["State"]["ExitCode"], 137,
        "step 11: expected inspect's State.ExitCode 137 (SIGKILL) for an OOM-killed container: {v}"
    );
    let log = std::fs::read_to_string(
        engine
            .root()
            .join("containers")
            .join(v["Id"].as_str().unwrap())
            .join("container.log"),
    )
    .unwrap_or_default();
    assert!(
        !log.contains("OOM"),
        "runtime diagnostics stay out of the container's log: {log}"
    );
}

/// bollard, the Rust Docker client (hyper underneath), as a program would
/// use the engine: typed requests and answers, a stream for wait and logs,
/// an upgraded connection for attach.
#[test]
fn bollard_drives_the_daemon() {
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::{
        AttachContainerOptions, CreateContainerOptions, ListImagesOptions, LogsOptions,
    };
    use futures_util::StreamExt;

    let engine = Engine::start();
    loaded(&engine);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let docker = bollard::Docker::connect_with_unix(
            engine.socket().to_str().unwrap(),
            120,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap();
        let version = docker.version().await.expect("step 11: GET /version");
        assert_eq!(
            version.api_version.as_deref(),
            Some("1.41"),
            "step 11: expected the daemon to speak API 1.41 to bollard: {version:?}"
        );
        let images = docker
            .list_images(None::<ListImagesOptions>)
            .await
            .expect("step 11: GET /images/json in Docker's shape");
        assert!(
            images.iter().any(|i| i.repo_tags == ["demo:1"]),
            "step 11: expected bollard's image list to hold demo:1: {images:?}"
        );
        let created = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some("from-bollard".into()),
                    ..Default::default()
                }),
                ContainerCreateBody {
                    image: Some("demo:1".into()),
                    cmd: Some(vec![
                        "sh".into(),
                        "-c".into(),
                        "echo out $WHO; echo err >&2; exit 3".into(),
                    ]),
                    env: Some(vec!["WHO=bollard".into()]),
                    ..Default::default()
                },
            )
            .await
            .expect("step 11: POST /containers/create");
        let id = created.id;
        // Attached before the start, as `docker run` does: the 101 upgrade.
        let mut attached = docker
            .attach_container(
                &id,
                Some(AttachContainerOptions {
                    stream: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            )
            .await
            .expect("step 11: POST /containers/ID/attach must upgrade");
        docker
            .start_container(&id, None)
            .await
            .expect("step 11: POST /containers/ID/start");
        let mut live = Vec::new();
        while let Some(piece) = attached.output.next().await {
            live.push(piece.expect("the attached output").to_string());
        }
        assert!(
            live.concat().contains("out bollard"),
            "attach: the output, live: {live:?}"
        );
        let waited: Vec<_> = docker.wait_container(&id, None).collect().await;
        match waited.as_slice() {
            [Err(bollard::errors::Error::DockerContainerWaitError { code, .. })] => {
                assert_eq!(*code, 3, "step 11: wait answers the exit code")
            }
            other => panic!("step 11: wait must answer exit code 3, got {other:?}"),
        }
        let logs: Vec<_> = docker
            .logs(
                &id,
                Some(LogsOptions {
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            )
            .collect()
            .await;
        let (mut out, mut err) = (String::new(), String::new());
        for piece in logs {
            match piece.expect("step 11: GET /containers/ID/logs") {
                bollard::container::LogOutput::StdOut { message } => {
                    out.push_str(&String::from_utf8_lossy(&message))
                }
                bollard::container::LogOutput::StdErr { message } => {
                    err.push_str(&String::from_utf8_lossy(&message))
                }
                other => panic!("unexpected log piece {other:?}"),
            }
        }
        assert_eq!(
            (out.as_str(), err.as_str()),
            ("out bollard\n", "err\n"),
            "logs, demultiplexed"
        );
        let inspected = docker
            .inspect_container(&id, None)
            .await
            .expect("step 11: GET /containers/ID/json");
        let state = inspected.state.expect("inspect has a State");
        assert_eq!(
            (state.exit_code, state.running),
            (Some(3), Some(false)),
            "step 11: expected bollard's inspect to see exit code 3 and not running: {state:?}"
        );
        assert_eq!(
            inspected.name.as_deref(),
            Some("/from-bollard"),
            "step 11: expected bollard's inspect to see the name /from-bollard"
        );
        docker
            .remove_container(&id, None)
            .await
            .expect("step 11: DELETE /containers/ID");
        let gone = docker.inspect_container(&id, None).await;
        assert!(
            matches!(
                gone,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                })
            ),
            "removed: {gone:?}"
        );
    });
}

/// Writes `request` on a new connection to the daemon and reads until the
/// daemon closes it (or breaks it off); fails if it does neither in a
/// minute.
fn exchange(socket: &Path, request: &[u8]) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    let _ = std::io::Write::write_all(&mut stream, request);
    read_to_close(stream)
}

fn read_to_close(stream: UnixStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    read_until_closed(stream)
}

/// Reads until the peer closes (or resets); panics on the read timeout
/// the caller set.
fn read_until_closed(mut stream: impl std::io::Read) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match std::io::Read::read(&mut stream, &mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "step 11: the server neither answered nor closed the connection in time; got {:?}",
                    text(&got)
                )
            }
            Err(_) => break, // reset: what came before it stands
        }
    }
    text(&got)
}

/// The protocol's hostile corners: a stalled header, garbage, a body over
/// its limit, more connections than the cap. The daemon answers each as
/// HTTP says, and goes on serving everyone else.
#[test]
fn the_daemon_survives_bad_clients() {
    let engine = Engine::start_with(&["--header-timeout", "1", "--max-connections", "4"]);
    let socket = engine.socket();
    // Half a header, then nothing: closed after the header timeout, while
    // another client is served meanwhile.
    let mut stalled = UnixStream::connect(&socket).unwrap();
    std::io::Write::write_all(&mut stalled, b"GET /_ping HTTP/1.1\r\nHost: caixa\r\n").unwrap();
    assert!(
        stdout_of(&engine.client(&["version"])).starts_with("caixa "),
        "step 11: a stalled client must not stop the others"
    );
    assert_eq!(
        read_to_close(stalled),
        "",
        "step 11: a client that stalls inside its header is closed, unanswered"
    );
    // Garbage: 400.
    let answer = exchange(&socket, b"this is not HTTP at all\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 400"),
        "step 11: garbage is a 400: {answer:?}"
    );
    // A JSON body over 16 MiB, chunked so that only counting finds it: 413.
    let mut big = UnixStream::connect(&socket).unwrap();
    std::io::Write::write_all(
        &mut big,
        b"POST /v1.41/containers/create HTTP/1.1\r\nHost: caixa\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    let mut writer = big.try_clone().unwrap();
    let feeder = std::thread::spawn(move || {
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..17 {
            let sent =
                std::io::Write::write_all(&mut writer, format!("{:x}\r\n", chunk.len()).as_bytes())
                    .and_then(|()| std::io::Write::write_all(&mut writer, &chunk))
                    .and_then(|()| std::io::Write::write_all(&mut writer, b"\r\n"));
            if sent.is_err() {
                return; // the daemon stopped reading: as it should
            }
        }
        let _ = std::io::Write::write_all(&mut writer, b"0\r\n\r\n");
    });
    let answer = read_to_close(big);
    let _ = feeder.join();
    assert!(
        answer.starts_with("HTTP/1.1 413") && answer.contains("larger than 16 MiB"),
        "step 11: a JSON body over its limit is a 413 that says so: {answer:?}"
    );
    // Four requests that hold their connections (bodies announced, never
    // sent) fill the cap; the fifth connection is answered 503 at once.
    // A holder answered at once was turned away (the big body's place was
    // not free yet): it tries again, until four are held.
    let hold = || loop {
        let mut s = UnixStream::connect(&socket).unwrap();
        std::io::Write::write_all(
            &mut s,
            b"POST /containers/create HTTP/1.1\r\nHost: caixa\r\nContent-Length: 100\r\n\r\n",
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut byte = [0u8; 1];
        if std::io::Read::read(&mut s, &mut byte).is_err() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let holders: Vec<UnixStream> = (0..4).map(|_| hold()).collect();
    // (The daemon takes a holder's place when it accepts it, and frees the
    // big body's place when that connection's task ends, both a moment
    // after the client's side is done: ask until the four hold the cap.)
    let begin = Instant::now();
    let answer = loop {
        let answer = exchange(&socket, b"GET /_ping HTTP/1.1\r\nHost: caixa\r\n\r\n");
        if answer.starts_with("HTTP/1.1 503") || begin.elapsed() > Duration::from_secs(10) {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("its limit"),
        "step 11: over the connection cap, a 503 that says why: {answer:?}"
    );
    let out = loop {
        let out = engine.client(&["ps"]);
        if !out.status.success() || begin.elapsed() > Duration::from_secs(10) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_one_line_error(&out, 11, 125, "its limit");
    // The holders go; the daemon serves again.
    drop(holders);
    let start = Instant::now();
    loop {
        let out = engine.client(&["version"]);
        if out.status.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "step 11: the daemon must serve again once the connections are gone: {}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let answer = exchange(
        &socket,
        b"GET /v1.41/_ping HTTP/1.1\r\nHost: caixa\r\nConnection: close\r\n\r\n",
    );
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.to_lowercase().contains("api-version: 1.41"),
        "step 11: expected _ping on the socket to answer 200 with API-Version 1.41: {answer:?}"
    );
}

#[test]
fn run_t_gives_the_container_a_terminal_of_its_own() {
    let engine = Engine::start();
    loaded(&engine);
    let script = "test -t 0 && test -t 1 && test -t 2 && echo on-a-tty; tty; echo $TERM";
    let out = engine.client(&["run", "--rm", "-t", "demo:1", "sh", "-c", script]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("on-a-tty"),
        "step 11: with -t, 0, 1 and 2 are a terminal: {shown:?} {}",
        text(&out.stderr)
    );
    assert!(
        shown.contains("/dev/pts/0\r\n"),
        "the pty comes from the container's own devpts (and a terminal ends lines with CR LF): {shown:?}"
    );
    assert!(
        shown.contains("xterm"),
        "TERM is set, as Docker sets it: {shown:?}"
    );
    // Its log is one raw stream, which `logs` prints as it is.
    stdout_of(&engine.client(&[
        "run", "-d", "-t", "--name", "tt", "demo:1", "sh", "-c", "tty",
    ]));
    stdout_of(&engine.client(&["wait", "tt"]));
    assert_eq!(
        stdout_of(&engine.client(&["logs", "tt"])),
        "/dev/pts/0\r\n",
        "step 11: the log of a container with a terminal is its raw output"
    );
    // The Docker CLI reads Config.Tty and takes the output raw.
    let out = Command::new(docker_cli())
        .args(["-H", &format!("unix://{}", engine.socket().display())])
        .args(["run", "--rm", "-t", "demo:1", "sh", "-c", "tty"])
        .env("DOCKER_CONFIG", engine.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout),
        "/dev/pts/0\r\n",
        "docker run -t: {}",
        text(&out.stderr)
    );
}

/// A terminal of the test's own (a pty), with a client running on it as
/// a user's shell would run it: its controlling terminal, its 0, 1 and 2.
/// What the client prints is gathered by a thread, to be waited for.
struct UserTerminal {
    master: std::fs::File,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    client: Child,
}

impl UserTerminal {
    /// Runs `program args` on a new terminal of `rows` by `cols`.
    fn run(program: &Path, args: &[&str], env: &[(&str, &str)], rows: u16, cols: u16) -> Self {
        use std::os::fd::AsRawFd;
        let size = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
        let slave = std::fs::File::from(pty.slave);
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(env.iter().copied())
            .env("TERM", "xterm")
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        // SAFETY: setsid(2) and ioctl(2) are async-signal-safe; nothing
        // else runs between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                // A session of its own, with this terminal as its
                // controlling terminal: then the kernel sends it SIGWINCH.
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let client = command.spawn().expect("spawn the client on a terminal");
        drop(command); // our copies of the slave: the master sees EIO at the end
        let master = std::fs::File::from(pty.master);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (mut reader, gathered) = (master.try_clone().unwrap(), seen.clone());
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                gathered.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let _ = master.as_raw_fd();
        UserTerminal {
            master,
            seen,
            client,
        }
    }

    /// Types `keys`, as a user would.
    fn type_keys(&mut self, keys: &str) {
        use std::io::Write;
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    /// Waits until the screen shows `text` (10 s at most); what it showed.
    fn expect(&self, text: &str, what: &str) -> String {
        let start = Instant::now();
        loop {
            let screen = String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "step 11: {what}: waited for {text:?}; the terminal shows {screen:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `keys` until the screen shows `text`: for what depends on a
    /// change the client makes by itself (a resize sent on SIGWINCH).
    fn type_until(&mut self, keys: &str, text: &str, what: &str) {
        let start = Instant::now();
        loop {
            self.type_keys(keys);
            std::thread::sleep(Duration::from_millis(300));
            if String::from_utf8_lossy(&self.seen.lock().unwrap()).contains(text) {
                return;
            }
            if start.elapsed() > Duration::from_secs(10) {
                self.expect(text, what);
            }
        }
    }

    /// Makes the window `rows` by `cols` (the kernel signals SIGWINCH).
    fn resize(&self, rows: u16, cols: u16) {
        use std::os::fd::AsRawFd;
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: a valid winsize, read by the ioctl; the fd is open.
        assert_eq!(
            unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) },
            0,
            "TIOCSWINSZ on the test's terminal failed: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Waits for the client to exit (10 s at most); its exit code.
    fn exit_code(mut self, what: &str) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(status) = self.client.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.client.kill();
                let screen = String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned();
                panic!("step 11: {what}: the client did not exit; the terminal shows {screen:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for UserTerminal {
    fn drop(&mut self) {
        let _ = self.client.kill();
        let _ = self.client.wait();
    }
}

/// `step11 -H … ARGS` on a terminal of 30 rows by 100 columns.
fn client_on_terminal(engine: &Engine, args: &[&str]) -> UserTerminal {
    let host = format!("unix://{}", engine.socket().display());
    let mut all = vec!["-H", &host];
    all.extend_from_slice(args);
    UserTerminal::run(Path::new(binary(11)), &all, &[], 30, 100)
}

#[test]
fn run_it_is_a_shell_that_feels_like_docker() {
    let engine = Engine::start();
    loaded(&engine);
    let mut user = client_on_terminal(&engine, &["run", "-it", "--rm", "demo:1", "sh"]);
    // Keys reach the shell, and the window's size reached its terminal.
    user.type_keys("busybox stty size; echo sum-$((6*7))\r");
    user.expect(
        "sum-42",
        "run -it: what is typed reaches the container's shell",
    );
    user.expect(
        "30 100",
        "run -it: the container's terminal has the window's size",
    );
    // The window changes: the client sends the new size (SIGWINCH).
    user.resize(40, 120);
    user.type_until(
        "busybox stty size\r",
        "40 120",
        "run -it: a resized window resizes the container's terminal",
    );
    // Raw mode: Ctrl-C is a key, which the container's own terminal turns
    // into SIGINT for its foreground job, not a signal to the client.
    user.type_keys("sleep 60\r");
    std::thread::sleep(Duration::from_millis(300));
    user.type_keys("\x03");
    user.type_keys("echo back-$((1+1))\r");
    user.expect(
        "back-2",
        "run -it: Ctrl-C interrupts the container's job, and the session goes on",
    );
    user.type_keys("exit 3\r");
    assert_eq!(
        user.exit_code("run -it, then exit 3"),
        3,
        "step 11: run -it exits with the shell's code"
    );
    assert!(
        engine.states().is_empty(),
        "step 11: run -it --rm removes the container"
    );
}

#[test]
fn ctrl_p_ctrl_q_detaches_and_attach_takes_the_terminal_back() {
    let engine = Engine::start();
    loaded(&engine);
    let mut user = client_on_terminal(&engine, &["run", "-it", "--name", "away", "demo:1", "sh"]);
    user.type_keys("echo one-$((0+1))\r");
    user.expect("one-1", "run -it");
    user.type_keys("\x10\x11");
    assert_eq!(
        user.exit_code("Ctrl-P Ctrl-Q"),
        0,
        "step 11: detaching ends the client with 0"
    );
    assert!(
        stdout_of(&engine.client(&["ps"])).contains("away"),
        "step 11: after Ctrl-P Ctrl-Q the container runs on"
    );
    let mut user = client_on_terminal(&engine, &["attach", "away"]);
    user.type_keys("echo two-$((1+1))\r");
    user.expect(
        "two-2",
        "attach: the keys reach the shell that run -it started",
    );
    user.type_keys("exit 5\r");
    assert_eq!(
        user.exit_code("attach, then exit 5"),
        5,
        "step 11: attach exits with the container's code"
    );
    // Another sequence, chosen by the user; a stray Ctrl-P is typed on.
    let mut user = client_on_terminal(
        &engine,
        &[
            "run",
            "-it",
            "--rm",
            "--detach-keys",
            "ctrl-x",
            "demo:1",
            "sh",
        ],
    );
    user.type_keys("echo \x10three\r");
    user.expect("three", "--detach-keys ctrl-x: Ctrl-P alone is a key");
    user.type_keys("\x18");
    assert_eq!(
        user.exit_code("--detach-keys ctrl-x"),
        0,
        "step 11: expected the container to end with 0 after its detach keys were typed"
    );
    stdout_of(&engine.client(&["rm", "-f", "away"]));
}

#[test]
fn run_i_sends_its_input_and_the_input_s_end() {
    let engine = Engine::start();
    loaded(&engine);
    let host = format!("unix://{}", engine.socket().display());
    let feed = |program: &Path, extra: &[(&str, &str)]| {
        let mut child = Command::new(program)
            .args(["-H", &host, "run", "-i", "--rm", "demo:1"])
            .args(["sh", "-c", "cat; echo end"])
            .envs(extra.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            // Ctrl-P Ctrl-Q in data: without a terminal, no detach keys.
            stdin.write_all(b"hello\x10\x11\nworld\n").unwrap();
        } // closed: the input ends, and `cat` must see it end
        wait_output(child)
    };
    let out = feed(Path::new(binary(11)), &[]);
    assert_eq!(
        text(&out.stdout),
        "hello\x10\x11\nworld\nend\n",
        "step 11: run -i: the container reads the client's stdin to its end: {}",
        text(&out.stderr)
    );
    let config = engine.dir.path().join("docker-config");
    let out = feed(
        &docker_cli(),
        &[("DOCKER_CONFIG", config.to_str().unwrap())],
    );
    assert_eq!(
        text(&out.stdout),
        "hello\x10\x11\nworld\nend\n",
        "step 11: docker run -i: {}",
        text(&out.stderr)
    );
    // Without -i, stdin is empty (/dev/null), as in Docker.
    let out = engine.client(&["run", "--rm", "demo:1", "sh", "-c", "cat; echo end"]);
    assert_eq!(
        text(&out.stdout),
        "end\n",
        "step 11: expected run without -i to give the container an empty stdin, as Docker does: {}",
        text(&out.stderr)
    );
}

#[test]
fn docker_run_it_drives_the_containers_terminal() {
    let engine = Engine::start();
    loaded(&engine);
    let host = format!("unix://{}", engine.socket().display());
    let config = engine.dir.path().join("docker-config");
    let mut user = UserTerminal::run(
        &docker_cli(),
        &["-H", &host, "run", "-it", "--rm", "demo:1", "sh"],
        &[("DOCKER_CONFIG", config.to_str().unwrap())],
        30,
        100,
    );
    user.type_keys("echo sum-$((6*7))\r");
    user.expect("sum-42", "docker run -it: keys reach the shell");
    // The CLI sends its resize beside the keys, not before them: ask
    // until it has come.
    user.type_until(
        "busybox stty size\r",
        "30 100",
        "docker run -it: the CLI's resize reaches the terminal",
    );
    user.type_keys("exit 4\r");
    assert_eq!(
        user.exit_code("docker run -it, exit 4"),
        4,
        "step 11: expected docker run -it to end with the container's exit code 4"
    );
}

#[test]
fn exec_it_is_a_shell_in_a_running_container_with_a_terminal_of_its_own() {
    let engine = Engine::start();
    loaded(&engine);
    stdout_of(&engine.client(&["run", "-d", "--name", "box", "demo:1", "sleep", "3600"]));
    let mut user = client_on_terminal(&engine, &["exec", "-it", "box", "sh"]);
    user.type_keys("tty; busybox stty size; echo in-$((2*3))\r");
    user.expect("in-6", "exec -it: keys reach the exec's shell");
    user.expect(
        "/dev/pts/0",
        "exec -it: its terminal comes from the container's devpts",
    );
    user.expect("30 100", "exec -it: its terminal has the window's size");
    user.type_keys("exit 7\r");
    assert_eq!(
        user.exit_code("exec -it, exit 7"),
        7,
        "step 11: exec -it exits with the exec's code"
    );
    // -i alone: the client's input, to its end.
    let host = format!("unix://{}", engine.socket().display());
    let config = engine.dir.path().join("docker-config");
    for program in [PathBuf::from(binary(11)), docker_cli()] {
        let mut child = Command::new(&program)
            .args([
                "-H",
                &host,
                "exec",
                "-i",
                "box",
                "sh",
                "-c",
                "cat; echo end",
            ])
            .env("DOCKER_CONFIG", &config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"abc\n").unwrap();
        }
        let out = wait_output(child);
        assert_eq!(
            text(&out.stdout),
            "abc\nend\n",
            "step 11: {} exec -i: {}",
            program.display(),
            text(&out.stderr)
        );
    }
    // An exec -i whose command ends while the client's input is still
    // open: the client gets the end, and the code, without typing more.
    let mut open_input = Command::new(binary(11))
        .args(["-H", &host, "exec", "-i", "box", "sh", "-c", "exit 3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = open_input.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = open_input.kill();
            panic!("step 11: exec -i must end with its command, even with the client's input open");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.code(),
        Some(3),
        "step 11: expected exec -i to end with its command's exit code 3"
    );
    drop(open_input.stdin.take());
    // The Docker CLI's exec -it: its resize goes to /exec/ID/resize.
    let mut user = UserTerminal::run(
        &docker_cli(),
        &["-H", &host, "exec", "-it", "box", "sh"],
        &[("DOCKER_CONFIG", config.to_str().unwrap())],
        30,
        100,
    );
    user.type_keys("echo in-$((3*3))\r");
    user.expect("in-9", "docker exec -it: keys reach the exec's shell");
    // The CLI sends its resize beside the keys, not before them: ask
    // until it has come.
    user.type_until(
        "busybox stty size\r",
        "30 100",
        "docker exec -it: the CLI's resize reaches the terminal",
    );
    user.type_keys("exit 2\r");
    assert_eq!(
        user.exit_code("docker exec -it, exit 2"),
        2,
        "step 11: expected docker exec -it to end with the command's exit code 2"
    );
    stdout_of(&engine.client(&["rm", "-f", "box"]));
}

/// `step11 registry` on 127.0.0.1:5000 inside `engine`'s network namespace
/// (where its daemon can reach it), serving `store`, asking `ana`'s
/// password (`s3cret`).
fn registry_beside(engine: &Engine, store: &Path) -> Killed {
    let htpasswd = store.join("htpasswd");
    // Cost 4: the least bcrypt allows, so the test stays fast.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&htpasswd, format!("ana:{hash}\n")).unwrap();
    let registry = Killed(
        engine
            .netns
            .step(11)
            .arg("--root")
            .arg(store)
            .args(["registry", "--listen", "127.0.0.1:5000", "--htpasswd"])
            .arg(&htpasswd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while !engine
        .netns
        .sh("busybox wget -q -O- http://127.0.0.1:5000/v2/ 2>&1 || true")
        .contains("401")
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "step 11: the registry did not listen in the engine's namespace"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    registry
}

#[test]
fn docker_login_push_and_pull_go_through_the_daemon_with_the_clients_credentials() {
    let engine = Engine::start();
    loaded(&engine);
    let store = tempfile::tempdir().unwrap();
    let _registry = registry_beside(&engine, store.path());
    let docker = |args: &[&str]| docker_on(&engine, args);
    let said = |out: &Output| format!("{}{}", text(&out.stdout), text(&out.stderr));

    // A wrong password is refused by the registry, through the daemon.
    let out = docker(&["login", "-u", "ana", "-p", "wrong", "127.0.0.1:5000"]);
    assert!(
        !out.status.success(),
        "step 11: docker login with a wrong password must fail: {}",
        said(&out)
    );
    let out = docker(&["login", "-u", "ana", "-p", "s3cret", "127.0.0.1:5000"]);
    assert!(
        said(&out).contains("Login Succeeded"),
        "step 11: POST /auth checks the credentials with the registry: {}",
        said(&out)
    );
    stdout_of(&docker(&["tag", "demo:1", "127.0.0.1:5000/team/demo:1"]));
    let out = docker(&["push", "127.0.0.1:5000/team/demo:1"]);
    assert!(
        out.status.success() && said(&out).contains("digest: sha256:"),
        "step 11: docker push goes through the daemon, with the CLI's credentials: {}",
        said(&out)
    );
    assert!(
        store.path().join("images/team%2Fdemo:1").is_file(),
        "step 11: the pushed image is in the registry's store as team/demo:1"
    );

    // Gone from the daemon, then back from the registry: run anywhere.
    let out = docker(&["rmi", "127.0.0.1:5000/team/demo:1"]);
    assert!(
        said(&out).contains("Untagged: 127.0.0.1:5000/team/demo:1"),
        "step 11: docker rmi: {}",
        said(&out)
    );
    docker(&["logout", "127.0.0.1:5000"]);
    let out = docker(&["pull", "127.0.0.1:5000/team/demo:1"]);
    assert!(
        !out.status.success(),
        "step 11: a pull without credentials must be refused: {}",
        said(&out)
    );
    docker(&["login", "-u", "ana", "-p", "s3cret", "127.0.0.1:5000"]);
    let out = docker(&["pull", "127.0.0.1:5000/team/demo:1"]);
    assert!(
        out.status.success(),
        "step 11: docker pull with the CLI's credentials: {}",
        said(&out)
    );
    let out = docker(&["run", "--rm", "127.0.0.1:5000/team/demo:1"]);
    assert_eq!(
        text(&out.stdout),
        "hello\n",
        "step 11: the pulled image runs: {}",
        text(&out.stderr)
    );

    // inspect, history, save: what the daemon knows of an image.
    let out = docker(&["image", "inspect", "-f", "{{json .Config.Cmd}}", "demo:1"]);
    assert_eq!(
        text(&out.stdout).trim(),
        r#"["/bin/sh","-c","echo hello"]"#,
        "step 11: docker image inspect: {}",
        text(&out.stderr)
    );
    let out = docker(&["history", "demo:1"]);
    assert!(out.status.success(), "docker history: {}", said(&out));
    let saved = engine.dir.path().join("saved.tar");
    let out = docker(&["save", "-o", saved.to_str().unwrap(), "demo:1"]);
    assert!(out.status.success(), "docker save: {}", said(&out));
    let inspected = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", saved.display()))
        .output()
        .unwrap();
    assert!(
        inspected.status.success() && text(&inspected.stdout).contains("layers"),
        "step 11: skopeo reads docker save's archive as an OCI layout: {}",
        text(&inspected.stderr)
    );
    stdout_of(&docker(&["rmi", "demo:1"]));
    let out = docker(&["load", "-i", saved.to_str().unwrap()]);
    assert!(
        said(&out).contains("demo:1"),
        "step 11: docker load reads what docker save wrote: {}",
        said(&out)
    );

    // caixa's own client pushes with what step10 login saved.
    let config = engine.dir.path().join("caixa-config");
    let mut login = engine
        .netns
        .step(10)
        .args(["login", "127.0.0.1:5000", "-u", "ana"])
        .env("CAIXA_CONFIG_DIR", &config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        login.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    }
    assert!(
        wait_output(login).status.success(),
        "step 11: expected login through the daemon to succeed with the right password"
    );
    stdout_of(&engine.client(&["tag", "demo:1", "127.0.0.1:5000/team/mine:2"]));
    let out = engine.client_with_env(
        &["push", "127.0.0.1:5000/team/mine:2"],
        &[("CAIXA_CONFIG_DIR", config.to_str().unwrap())],
    );
    assert!(
        out.status.success() && store.path().join("images/team%2Fmine:2").is_file(),
        "step 11: step11 push lends the daemon step10 login's credentials: {}",
        said(&out)
    );
    // A push of a name that is no image is one line, before any stream.
    let out = engine.client(&["push", "127.0.0.1:5000/team/none:1"]);
    assert_one_line_error(&out, 11, 125, "No such image");
}

/// `inspect`'s JSON of `container`, through the Docker CLI.
fn inspected(engine: &Engine, container: &str) -> serde_json::Value {
    let out = docker_on(engine, &["inspect", container]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("docker inspect {container}: {e}: {}", text(&out.stderr)));
    list[0].clone()
}

/// Waits (a minute at most) until `check` holds for `container`'s inspect.
fn wait_for_inspect(
    engine: &Engine,
    container: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let seen = inspected(engine, container);
        if check(&seen) {
            return seen;
        }
        // A minute: under the VM lane's emulation a start takes seconds.
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "step 11: {what}: inspect says State {} RestartCount {}",
            seen["State"],
            seen["RestartCount"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_signal_to_the_shim_reaches_the_container() {
    let engine = Engine::start();
    loaded(&engine);
    // A pid 1 ignores a signal it has no handler for: the trap is one.
    let id = stdout_of(&engine.client(&[
        "run",
        "-d",
        "--name",
        "relayed",
        "--network",
        "none",
        "demo:1",
        "sh",
        "-c",
        "trap 'exit 42' USR1; echo ready; while true; do sleep 0.1; done",
    ]))
    .trim()
    .to_string();
    let start = Instant::now();
    while !stdout_of(&engine.client(&["logs", "relayed"])).contains("ready") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "step 11: expected the container relayed to say ready within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = engine
        .states()
        .into_iter()
        .find(|(i, _)| *i == id)
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("step 11: expected a state.json for container {id}"));
    let shim = state["shim"].as_i64().unwrap_or(0) as i32;
    assert!(
        shim > 0,
        "step 11: expected the state to name the shim's pid: {state}"
    );
    assert_eq!(
        nix_kill(shim, libc::SIGUSR1),
        0,
        "kill(shim {shim}, SIGUSR1) failed: {}",
        std::io::Error::last_os_error()
    );
    let ended = wait_for_inspect(
        &engine,
        "relayed",
        "expected SIGUSR1, sent to the shim, to reach the container, whose trap exits \
         with 42; most likely cause: the shim's loop (pump) does not pass a signal other \
         than SIGCHLD on to the container (shim.running.signal)",
        |c| c["State"]["Status"] == "exited",
    );
    assert_eq!(
        ended["State"]["ExitCode"], 42,
        "step 11: expected the container to end by its USR1 trap (exit 42): {}",
        ended["State"]
    );
    stdout_of(&engine.client(&["rm", "relayed"]));
}

#[test]
fn restart_policies_are_run_by_the_shim() {
    let engine = Engine::start();
    loaded(&engine);
    // on-failure:2: two more runs, then it stays ended.
    stdout_of(&engine.client(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "demo:1",
        "sh",
        "-c",
        "echo try; exit 3",
    ]));
    let ended = wait_for_inspect(&engine, "flaky", "on-failure:2 restarts it twice", |c| {
        c["RestartCount"] == 2 && c["State"]["Status"] == "exited"
    });
    assert_eq!(
        ended["State"]["ExitCode"], 3,
        "step 11: expected the restarted container's last exit code to be 3: {ended}"
    );
    assert_eq!(
        ended["HostConfig"]["RestartPolicy"]["Name"], "on-failure",
        "step 11: inspect shows the policy"
    );
    assert_eq!(
        stdout_of(&engine.client(&["logs", "flaky"])),
        "try\ntry\ntry\n",
        "step 11: three runs of on-failure:2, one log"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        inspected(&engine, "flaky")["RestartCount"],
        2,
        "no third restart"
    );

    // A success is no failure; `no` (the default) never restarts.
    stdout_of(&engine.client(&[
        "run",
        "-d",
        "--name",
        "fine",
        "--restart",
        "on-failure",
        "demo:1",
        "true",
    ]));
    stdout_of(&engine.client(&[
        "run", "-d", "--name", "once", "demo:1", "sh", "-c", "exit 1",
    ]));

    // always: restarted after a clean end, and after a kill; stop ends it.
    let out = docker_on(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "again",
            "--restart",
            "always",
            "demo:1",
            "sh",
            "-c",
            "sleep 1",
        ],
    );
    assert!(
        out.status.success(),
        "docker run --restart always: {}",
        text(&out.stderr)
    );
    wait_for_inspect(&engine, "again", "always restarts a clean end", |c| {
        c["RestartCount"].as_u64() >= Some(1)
    });
    // (A long run for the kill: one that ended by itself may be in its
    // pause before a restart, and a kill of that is refused: not running.)
    stdout_of(&engine.client(&[
        "run",
        "-d",
        "--name",
        "keeper",
        "--restart",
        "always",
        "demo:1",
        "sleep",
        "600",
    ]));
    stdout_of(&docker_on(&engine, &["kill", "keeper"]));
    wait_for_inspect(
        &engine,
        "keeper",
        "always restarts a killed container",
        |c| c["RestartCount"] == 1 && c["State"]["Running"] == true,
    );
    stdout_of(&docker_on(&engine, &["stop", "-t", "1", "keeper"]));
    let stopped = inspected(&engine, "keeper");
    std::thread::sleep(Duration::from_millis(2500));
    let later = inspected(&engine, "keeper");
    assert!(
        later["State"]["Status"] == "exited" && later["RestartCount"] == stopped["RestartCount"],
        "step 11: stop cancels every restart: {} then {}",
        stopped["State"],
        later["State"]
    );
    // stop of one that is between two runs cancels the next one too.
    stdout_of(&docker_on(&engine, &["stop", "-t", "1", "again"]));
    let stopped = inspected(&engine, "again");
    std::thread::sleep(Duration::from_millis(2500));
    let later = inspected(&engine, "again");
    assert!(
        later["State"]["Status"] == "exited" && later["RestartCount"] == stopped["RestartCount"],
        "step 11: stop cancels the restarts of a container that keeps ending: {} then {}",
        stopped["State"],
        later["State"]
    );

    // unless-stopped: a kill is a user's choice, and is respected.
    stdout_of(&engine.client(&[
        "run",
        "-d",
        "--name",
        "polite",
        "--restart",
        "unless-stopped",
        "demo:1",
        "sleep",
        "600",
    ]));
    stdout_of(&engine.client(&["kill", "polite"]));
    std::thread::sleep(Duration::from_millis(1500));
    let polite = inspected(&engine, "polite");
    assert!(
        polite["State"]["Status"] == "exited" && polite["RestartCount"] == 0,
        "step 11: unless-stopped does not restart a killed container: {}",
        polite["State"]
    );
    for (name, what) in [
        ("fine", "a success under on-failure"),
        ("once", "--restart no"),
    ] {
        let c = inspected(&engine, name);
        assert!(
            c["State"]["Status"] == "exited" && c["RestartCount"] == 0,
            "step 11: {what} is not restarted: {}",
            c["State"]
        );
    }

    // rm -f while it waits to restart: gone, and its shim with it.
    stdout_of(&engine.client(&[
        "run",
        "-d",
        "--name",
        "looper",
        "--restart",
        "always",
        "demo:1",
        "sh",
        "-c",
        "exit 1",
    ]));
    // Removed in a pause between two runs (the fourth pause lasts 1.6 s:
    // time enough for the rm to come while its shim waits).
    wait_for_inspect(
        &engine,
        "looper",
        "always restarts a failing container",
        |c| c["RestartCount"].as_u64() >= Some(4) && c["State"]["Restarting"] == true,
    );
    stdout_of(&engine.client(&["rm", "-f", "looper"]));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !stdout_of(&engine.client(&["ps", "-a"])).contains("looper"),
        "step 11: rm -f of a restarting container removes it for good"
    );

    // Bad policies are one line each.
    assert_one_line_error(
        &engine.client(&["run", "--restart", "sometimes", "demo:1", "true"]),
        11,
        125,
        "invalid restart policy",
    );
    assert_one_line_error(
        &engine.client(&["run", "--rm", "--restart", "always", "demo:1", "true"]),
        11,
        125,
        "conflict",
    );
    for name in ["flaky", "fine", "once", "keeper", "again", "polite"] {
        stdout_of(&engine.client(&["rm", "-f", name]));
    }
}

#[test]
fn containers_on_a_network_reach_each_other_by_name_and_no_one_else() {
    let engine = Engine::start();
    loaded(&engine);
    let c = |args: &[&str]| engine.client(args);
    stdout_of(&c(&["network", "create", "app"]));
    stdout_of(&c(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "app",
        "--network-alias",
        "www",
        "demo:1",
        "sh",
        "-c",
        "mkdir /www && echo page-of-web > /www/index.html && exec busybox httpd -f -p 80 -h /www",
    ]));
    // By its name and by its alias, from another container of the network
    // (retried while httpd starts).
    let fetch = "for i in $(busybox seq 30); do busybox wget -q -O- http://web/ && \
                 busybox wget -q -O- http://www/ && exit 0; sleep 0.2; done; exit 1";
    let out = c(&[
        "run",
        "--rm",
        "--network",
        "app",
        "demo:1",
        "sh",
        "-c",
        fetch,
    ]);
    assert_eq!(
        text(&out.stdout),
        "page-of-web\npage-of-web\n",
        "step 11: a container reaches another of its network by name and by alias: {}",
        text(&out.stderr)
    );
    let address = text(
        &docker_on(
            &engine,
            &["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"],
        )
        .stdout,
    )
    .trim()
    .to_string();
    assert!(
        address.starts_with("10.90."),
        "step 11: web has an address of app's subnet: {address:?}"
    );
    // Isolation: neither step 8's bridge nor another network gets through.
    // (busybox's own `wget -T` crashes in this busybox: `timeout` instead.)
    stdout_of(&c(&[
        "network",
        "create",
        "--subnet",
        "10.91.7.0/24",
        "other",
    ]));
    let probe = format!(
        "busybox timeout 3 busybox wget -q -O- http://{address}/ >/dev/null 2>&1 && echo reached || echo isolated"
    );
    for network in ["bridge", "other"] {
        let out = c(&[
            "run",
            "--rm",
            "--network",
            network,
            "demo:1",
            "sh",
            "-c",
            &probe,
        ]);
        assert_eq!(
            text(&out.stdout),
            "isolated\n",
            "step 11: a container on {network} must not reach a container on app: {}",
            text(&out.stderr)
        );
    }
    // A container that joins later is listed for the others, and gone
    // when it goes.
    stdout_of(&c(&[
        "run",
        "-d",
        "--name",
        "late",
        "--network",
        "app",
        "demo:1",
        "sleep",
        "600",
    ]));
    let hosts = stdout_of(&c(&["exec", "web", "cat", "/etc/hosts"]));
    assert!(
        hosts.contains("\tlate ") && hosts.contains("\tweb ") && hosts.contains(" www"),
        "step 11: web's /etc/hosts lists the network's containers: {hosts}"
    );
    stdout_of(&c(&["rm", "-f", "late"]));
    let hosts = stdout_of(&c(&["exec", "web", "cat", "/etc/hosts"]));
    assert!(
        !hosts.contains("late"),
        "step 11: a container that left is no longer listed: {hosts}"
    );
    // The Docker CLI sees the same.
    let ls = text(&docker_on(&engine, &["network", "ls", "--format", "{{.Name}}"]).stdout);
    assert!(
        ls.lines().any(|l| l == "app") && ls.lines().any(|l| l == "bridge"),
        "step 11: docker network ls: {ls}"
    );
    let on_it = docker_on(
        &engine,
        &[
            "network",
            "inspect",
            "-f",
            "{{range .Containers}}{{.Name}} {{end}}",
            "app",
        ],
    );
    assert_eq!(text(&on_it.stdout).trim(), "web", "docker network inspect");
    let out = docker_on(&engine, &["network", "rm", "app"]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("web"),
        "step 11: a network with a container on it is not removed: {}",
        text(&out.stderr)
    );
    // Mistakes are one line each.
    assert_one_line_error(
        &c(&["network", "create", "../x"]),
        11,
        125,
        "invalid network name",
    );
    assert_one_line_error(&c(&["network", "create", "bridge"]), 11, 125, "pre-defined");
    assert_one_line_error(
        &c(&["network", "create", "--subnet", "10.91.7.128/25", "clash"]),
        11,
        125,
        "overlaps",
    );
    assert_one_line_error(
        &c(&["run", "--network", "nosuch", "demo:1", "true"]),
        11,
        125,
        "network nosuch not found",
    );
    // All gone: no caixa bridge is left in the engine's namespace.
    stdout_of(&c(&["rm", "-f", "web"]));
    let out = docker_on(&engine, &["network", "rm", "app", "other"]);
    assert!(
        out.status.success(),
        "docker network rm: {}",
        text(&out.stderr)
    );
    let links = engine.netns.sh("ip -o link show");
    assert!(
        !links.contains("caixa-"),
        "step 11: a network's bridge goes with its last container: {links}"
    );
}

/// What the network still holds of container `id` (of any container, for
/// ""), as seen inside the engine's namespace: rules naming it, its lease,
/// the host end of its veth, its network files.
fn network_of(engine: &Engine, id: &str) -> Vec<String> {
    let state = engine.netns.state.path();
    let mut held: Vec<String> = engine
        .netns
        .rules()
        .into_iter()
        .filter(|r| r.contains(&format!("caixa:{id}")) || (id.is_empty() && r.contains("DNAT")))
        .map(|r| format!("rule {r}"))
        .collect();
    for entry in std::fs::read_dir(state.join("networks"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.path().extension().is_some_and(|e| e == "leases") {
            let leases = std::fs::read_to_string(entry.path()).unwrap_or_default();
            held.extend(
                leases
                    .lines()
                    .filter(|l| l.contains(id))
                    .map(|l| format!("lease {l}")),
            );
        }
    }
    let veth = format!("cx{}", &id[..id.len().min(10)]);
    held.extend(
        engine
            .netns
            .links()
            .into_iter()
            .filter(|l| l.starts_with(&veth))
            .map(|l| format!("veth {l}")),
    );
    held.extend(
        std::fs::read_dir(state.join("containers"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(id))
            .map(|e| format!("files {}", e.path().display())),
    );
    held
}

/// Asserts that the network holds nothing of container `id` (of any, for
/// ""), looking again for at most 20 s: the kernel removes a dead
/// namespace's veth in the background.
fn assert_network_gone(engine: &Engine, id: &str, why: &str) {
    let start = Instant::now();
    let mut left = network_of(engine, id);
    while !left.is_empty() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
        left = network_of(engine, id);
    }
    assert!(left.is_empty(), "step 11: {why}; left: {left:#?}");
}

/// `run -d -p PORT:80` of a container that sleeps (for an hour: under
/// emulation, twenty starts can take longer than a minute); its id.
fn run_published(engine: &Engine, name: &str, port: u16) -> String {
    let publish = format!("{port}:80");
    stdout_of(&engine.client(&[
        "run", "-d", "--name", name, "-p", &publish, "demo:1", "sleep", "3600",
    ]))
    .trim()
    .to_string()
}

/// SIGKILL to container `id`'s shim (its container dies with it); the
/// state it had.
fn kill_shim(engine: &Engine, id: &str) -> serde_json::Value {
    let (_, state) = engine.states().into_iter().find(|(i, _)| i == id).unwrap();
    let (shim, pid) = (
        state["shim"].as_i64().unwrap() as i32,
        state["pid"].as_i64().unwrap() as i32,
    );
    assert!(
        shim > 0 && pid > 0,
        "step 11: expected the state to name the shim's pid and the container's: {state}"
    );
    nix_kill(shim, libc::SIGKILL);
    assert!(
        support::wait_gone(shim) && support::wait_gone(pid),
        "step 11: expected the container to die with its killed shim (pid {pid}, shim {shim})"
    );
    state
}

#[test]
fn removed_containers_leave_no_rule_lease_or_veth() {
    let engine = Engine::start();
    loaded(&engine);
    // Ten: enough that a leak per container shows (two ways of ending
    // them, five each); each start wires a veth, a lease and rules.
    let names: Vec<String> = (0..10).map(|i| format!("published{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        run_published(&engine, name, 18000 + i as u16);
    }
    let forwarded = engine
        .netns
        .rules()
        .iter()
        .filter(|r| r.contains("-j DNAT"))
        .count();
    assert_eq!(forwarded, 10, "a DNAT rule per running container");
    for (i, name) in names.iter().enumerate() {
        if i % 2 == 0 {
            stdout_of(&engine.client(&["stop", "-t", "1", name]));
            stdout_of(&engine.client(&["rm", name]));
        } else {
            stdout_of(&engine.client(&["rm", "-f", name]));
        }
    }
    assert_network_gone(
        &engine,
        "",
        "stop and rm -f end a container through its shim, which removes its rules, lease, veth and files",
    );
}

#[test]
fn the_daemon_sweeps_the_network_of_a_killed_shim() {
    let mut engine = Engine::start();
    loaded(&engine);
    let first = run_published(&engine, "first", 18100);
    let second = run_published(&engine, "second", 18101);
    let third = run_published(&engine, "third", 18102);
    // A shim killed while the daemon runs: `rm` finds it dead, and sweeps.
    kill_shim(&engine, &first);
    stdout_of(&engine.client(&["rm", "first"]));
    assert_network_gone(
        &engine,
        &first,
        "a dead shim's rules, lease, veth and files are swept when the daemon finds it dead",
    );
    assert!(
        !network_of(&engine, &second).is_empty(),
        "a live container keeps its network"
    );
    // Shims killed while no daemon runs: the next daemon sweeps as it starts.
    engine.kill_daemon();
    kill_shim(&engine, &second);
    kill_shim(&engine, &third);
    engine.daemon = Some(engine.spawn_daemon());
    assert_network_gone(
        &engine,
        "",
        "a daemon sweeps the network of containers whose shims died before it started",
    );
}

#[test]
fn the_daemons_environment_never_reaches_a_container() {
    let secret = ("CAIXA_TEST_SECRET".to_string(), "daemon-secret".to_string());
    let engine = Engine::start_set_up(
        &[],
        Setup {
            env: vec![secret],
            ..Setup::default()
        },
    );
    loaded(&engine);
    let script = r#"echo "[${CAIXA_TEST_SECRET-unset}]""#;
    let run = [
        "run",
        "--rm",
        "-e",
        "CAIXA_TEST_SECRET",
        "demo:1",
        "sh",
        "-c",
        script,
    ];
    assert_eq!(
        stdout_of(&engine.client(&run)),
        "[unset]\n",
        "step 11: -e KEY is resolved by the client, from its own environment; the daemon never lends its own"
    );
    assert_eq!(
        stdout_of(&engine.client_with_env(&run, &[("CAIXA_TEST_SECRET", "client-value")])),
        "[client-value]\n",
        "step 11: -e KEY sends the client's value"
    );
    // A bare KEY in a create body (any client's) unsets KEY, as in Docker.
    let body = serde_json::json!({
        "Image": "demo:1", "Cmd": ["sh", "-c", script], "Env": ["CAIXA_TEST_SECRET"],
    });
    let (status, answer) = engine.api(
        "POST",
        "/containers/create?name=bare",
        Some(&body.to_string()),
    );
    assert_eq!(
        status, 201,
        "step 11: expected POST /containers/create?name=bare to answer 201: {answer}"
    );
    let (status, answer) = engine.api("POST", "/containers/bare/start", None);
    assert_eq!(status, 204, "{answer}");
    engine.api("POST", "/containers/bare/wait", None);
    assert_eq!(
        stdout_of(&engine.client(&["logs", "bare"])),
        "[unset]\n",
        "step 11: expected the daemon's environment not to reach the container: logs should say [unset]"
    );
}

/// A process's peak resident memory (VmHWM), in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn the_logs_of_a_huge_log_keep_the_daemon_small() {
    const LOG: u64 = 64 << 20;
    let engine = Engine::start();
    loaded(&engine);
    let id = stdout_of(&engine.client(&["run", "-d", "--name", "talker", "demo:1", "true"]))
        .trim()
        .to_string();
    stdout_of(&engine.client(&["wait", "talker"]));
    // 64 MiB of output in Docker's json-file lines, as a shim writes them
    // (written here directly: a container printing that much takes minutes
    // under the VM lane's emulated CPU, and the shim's writing is not what
    // this grades).
    let line = format!(
        "{}\n",
        serde_json::json!({ "log": format!("{}\n", "x".repeat(1000)), "stream": "stdout", "time": "2026-12-02T10:00:00.000000000Z" })
    );
    let mut chunk = String::new();
    for _ in 0..1024 {
        chunk.push_str(&line);
    }
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(
            engine
                .root()
                .join("containers")
                .join(&id)
                .join("container.log"),
        )
        .unwrap();
    for _ in 0..(LOG / (1001 * 1024) + 1) {
        std::io::Write::write_all(&mut log, chunk.as_bytes()).unwrap();
    }
    drop(log);
    let daemon = engine.daemon.as_ref().unwrap().id();
    // Start the peak afresh (proc(5): writing 5 to clear_refs resets VmHWM).
    std::fs::write(format!("/proc/{daemon}/clear_refs"), "5").unwrap();
    let before = peak_kib(daemon);
    let mut stream = UnixStream::connect(engine.socket()).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"GET /containers/talker/logs?stdout=1&stderr=1 HTTP/1.1\r\nHost: caixa\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let mut received = 0u64;
    loop {
        match std::io::Read::read(&mut stream, &mut buf) {
            Ok(0) => break,
            Ok(n) => received += n as u64,
            Err(e) => panic!("reading the logs: {e}"),
        }
    }
    let grown_mib = peak_kib(daemon).saturating_sub(before) >> 10;
    assert!(
        grown_mib < 40,
        "step 11: logs must stream a log with bounded buffers; the daemon grew by {grown_mib} MiB to send a 64 MiB log"
    );
    assert!(received > LOG, "all of the log is sent: {received} bytes");
}

/// A registry of the test's own serving `store` on a free loopback port,
/// with more `options`; killed when the test ends.
fn start_registry(store: &Path, options: &[&str]) -> (Killed, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let registry = Killed(
        Command::new(binary(11))
            .arg("--root")
            .arg(store)
            .args(["registry", "--listen", &format!("127.0.0.1:{port}")])
            .args(options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Until it answers a whole request (a bare connect would leave a
    // connection behind that holds a place for a moment).
    let start = Instant::now();
    // (A 401 too: it listens, and asks who is there.)
    let listening =
        |answer: String| answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 401");
    while !listening(registry_exchange(
        port,
        "GET /v2/ HTTP/1.1\r\nHost: caixa\r\nConnection: close\r\n\r\n",
    )) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "step 11: the registry did not listen (options {options:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (registry, port)
}

/// Sends `request` to the registry on `port`; its whole answer ("" if it
/// closed the connection unanswered). HTTP/1.1 keeps a connection open
/// after an answer: a request read to the close says `Connection: close`.
fn registry_exchange(port: u16, request: &str) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = std::io::Write::write_all(&mut stream, request.as_bytes());
    read_until_closed(stream)
}

#[test]
fn the_registry_checks_names_before_it_looks_anything_up() {
    let store = tempfile::tempdir().unwrap();
    let (_registry, port) = start_registry(store.path(), &[]);
    let get = |path: &str| {
        let answer = registry_exchange(
            port,
            &format!("GET {path} HTTP/1.1\r\nHost: caixa\r\nConnection: close\r\n\r\n"),
        );
        let status: u16 = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let code = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["errors"][0]["code"].as_str().map(String::from))
            .unwrap_or_default();
        (status, code)
    };
    let zeros = "0".repeat(64);
    let hostile = [
        (
            "/v2/../../../etc/manifests/latest".to_string(),
            "NAME_INVALID",
        ),
        (
            "/v2/demo%2F..%2F..%2Fimages/manifests/latest".into(),
            "NAME_INVALID",
        ),
        ("/v2/%2e%2e/%2e%2e/manifests/latest".into(), "NAME_INVALID"),
        (
            format!("/v2/{}/manifests/latest", "a".repeat(300)),
            "NAME_INVALID",
        ),
        ("/v2/Demo/manifests/latest".into(), "NAME_INVALID"),
        ("/v2/demo//x/manifests/latest".into(), "NAME_INVALID"),
        (
            "/v2/demo/manifests/..%2F..%2Fimages%2Fx".into(),
            "TAG_INVALID",
        ),
        ("/v2/demo/manifests/.hidden".into(), "TAG_INVALID"),
        (
            format!("/v2/demo/manifests/{}", "t".repeat(200)),
            "TAG_INVALID",
        ),
        (
            "/v2/demo/manifests/sha256:..%2F..%2Fetc".into(),
            "DIGEST_INVALID",
        ),
        ("/v2/demo/blobs/sha256:abc".into(), "DIGEST_INVALID"),
        (format!("/v2/demo/blobs/SHA256:{zeros}"), "DIGEST_INVALID"),
        (
            "/v2/demo/blobs/md5:d41d8cd98f00b204e9800998ecf8427e".into(),
            "DIGEST_INVALID",
        ),
    ];
    for (path, code) in &hostile {
        assert_eq!(
            get(path),
            (400, code.to_string()),
            "step 11: the registry checks {path:?} against the distribution spec's grammar first"
        );
    }
    // Well-formed, and looked up: not in this (empty) store.
    assert_eq!(
        get("/v2/team/demo/manifests/1"),
        (404, "MANIFEST_UNKNOWN".to_string()),
        "step 11: expected the registry to answer 404 MANIFEST_UNKNOWN for a repository it lacks"
    );
    assert_eq!(
        get(&format!("/v2/demo/blobs/sha256:{zeros}")),
        (404, "BLOB_UNKNOWN".to_string()),
        "step 11: expected the registry to answer 404 BLOB_UNKNOWN for a blob it lacks"
    );
}

#[test]
fn the_registry_caps_its_connections_and_lets_idle_ones_go() {
    let store = tempfile::tempdir().unwrap();
    let ping = |port: u16| {
        registry_exchange(
            port,
            "GET /v2/ HTTP/1.1\r\nHost: caixa\r\nConnection: close\r\n\r\n",
        )
    };
    // Clients that connect, send half a request, and wait.
    let idle = |port: u16, n: usize| -> Vec<std::net::TcpStream> {
        (0..n)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                std::io::Write::write_all(&mut s, b"GET /v2/ HTTP/1.1\r\n").unwrap();
                s
            })
            .collect()
    };
    // Once the holders are gone: `/v2/` answered again, within 30 s.
    let serves_again = |port: u16| {
        let start = Instant::now();
        while !ping(port).starts_with("HTTP/1.1 200") {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "step 11: the registry serves again once its clients are gone"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The cap: 8 at once, with time enough that no one is let go here.
    let (_registry, port) = start_registry(
        store.path(),
        &["--max-connections", "8", "--header-timeout", "600"],
    );
    let mut held = idle(port, 4);
    assert!(
        ping(port).starts_with("HTTP/1.1 200"),
        "step 11: the registry serves while idle clients hold connections"
    );
    held.extend(idle(port, 4));
    let answer = ping(port);
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("its limit"),
        "step 11: past its cap the registry answers 503 at once: {answer:?}"
    );
    drop(held);
    serves_again(port);
    // Idle clients are let go after the header timeout, and the registry
    // serves on.
    let (_registry, port) = start_registry(
        store.path(),
        &["--max-connections", "8", "--header-timeout", "1"],
    );
    for stream in idle(port, 8) {
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        assert_eq!(
            read_until_closed(stream),
            "",
            "step 11: an idle registry client is closed after the header timeout"
        );
    }
    serves_again(port);
}

/// One answer of the registry, taken apart.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    /// The value of header `name` (case-insensitive), or "".
    fn header(&self, name: &str) -> String {
        self.head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map_or(String::new(), |(_, v)| v.trim().to_string())
    }

    /// The spec's error code of the body (`errors[0].code`), or "".
    fn code(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["errors"][0]["code"].as_str().map(String::from))
            .unwrap_or_default()
    }
}

/// Sends `method path` with `headers` and `body` to the registry on `port`
/// (sized with `Content-Length` unless a header says otherwise), one
/// request on its own connection.
fn registry_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: caixa\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    let sized = headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    if !sized {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = std::io::Write::write_all(&mut stream, &bytes);
    let answer = read_until_closed(stream);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    Answer {
        status: head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// `sha256:` and the hex sha256 of `bytes`.
fn sha256_of(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// The files left in `dir` (the store's uploads, its blobs).
fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn skopeo_pushes_to_caixas_registry_and_pulls_back_the_same_manifest() {
    let (_dir, tar) = archive();
    let store = tempfile::tempdir().unwrap();
    let (_registry, port) = start_registry(store.path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let skopeo = |args: &[String]| {
        let out = Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .args(args)
            .output()
            .expect("skopeo (sudo apt-get install skopeo)");
        (out.status.success(), text(&out.stderr))
    };
    let pushed_digest = work.path().join("pushed");
    let (ok, err) = skopeo(&[
        "--digestfile".into(),
        pushed_digest.display().to_string(),
        format!("docker-archive:{}", tar.display()),
        format!("docker://127.0.0.1:{port}/team/demo:1"),
    ]);
    assert!(ok, "step 11: skopeo must push to caixa's registry: {err}");
    let pushed = std::fs::read_to_string(&pushed_digest).unwrap();
    // A pushed image is an ordinary image of the store, its tag a name.
    let stored = std::fs::read_to_string(store.path().join("images/team%2Fdemo:1")).unwrap();
    assert_eq!(
        stored.trim(),
        pushed.trim(),
        "step 11: the pushed tag is the store's image team/demo:1, at the pushed manifest"
    );
    let manifest = std::fs::read(
        store
            .path()
            .join("blobs/sha256")
            .join(pushed.trim().trim_start_matches("sha256:")),
    )
    .unwrap();
    assert_eq!(
        sha256_of(&manifest),
        pushed.trim(),
        "step 11: the manifest is kept byte for byte, under the digest of its bytes"
    );
    // And back, into a `dir:` (which keeps the manifest as served): the
    // same bytes, every blob verified by skopeo on the way.
    let back = work.path().join("back");
    let (ok, err) = skopeo(&[
        format!("docker://127.0.0.1:{port}/team/demo:1"),
        format!("dir:{}", back.display()),
    ]);
    assert!(ok, "step 11: skopeo must pull back what it pushed: {err}");
    assert_eq!(
        sha256_of(&std::fs::read(back.join("manifest.json")).unwrap()),
        pushed.trim(),
        "step 11: the manifest pulled back has the pushed digest"
    );
    // Registry to registry: a second tag and a second repository, whose
    // blobs are already here (mounted or found, not sent again).
    for to in ["team/demo:2", "other/demo:1"] {
        let (ok, err) = skopeo(&[
            format!("docker://127.0.0.1:{port}/team/demo:1"),
            format!("docker://127.0.0.1:{port}/{to}"),
        ]);
        assert!(
            ok,
            "step 11: skopeo copies within caixa's registry to {to}: {err}"
        );
    }
    // The lists, a page at a time, the next page named by `Link`.
    let get = |path: &str| registry_request(port, "GET", path, &[], b"");
    let first = get("/v2/team/demo/tags/list?n=1");
    assert_eq!(
        (first.status, first.body.as_str()),
        (200, r#"{"name":"team/demo","tags":["1"]}"#),
        "step 11: tags/list?n=1 answers the first tag"
    );
    let next = first.header("link");
    assert!(
        next.starts_with("</v2/team/demo/tags/list?n=1&last=1>") && next.contains("rel=\"next\""),
        "step 11: a page with more after it names the next in a Link header: {next:?}"
    );
    let second = get("/v2/team/demo/tags/list?n=1&last=1");
    assert_eq!(
        second.body, r#"{"name":"team/demo","tags":["2"]}"#,
        "step 11: expected the second page of tags/list to hold the tag after the last one"
    );
    assert_eq!(
        second.header("link"),
        "",
        "step 11: the last page has no Link"
    );
    assert_eq!(
        get("/v2/_catalog").body,
        r#"{"repositories":["other/demo","team/demo"]}"#,
        "step 11: the catalog lists the pushed repositories"
    );
    assert_eq!(
        get("/v2/_catalog?n=1").body,
        r#"{"repositories":["other/demo"]}"#,
        "step 11: expected _catalog?n=1 to give the first repository in order"
    );
    assert_eq!(
        get("/v2/_catalog?n=x").code(),
        "PAGINATION_NUMBER_INVALID",
        "step 11: expected _catalog?n=x to be refused as PAGINATION_NUMBER_INVALID"
    );
    assert_eq!(
        get("/v2/nobody/tags/list").code(),
        "NAME_UNKNOWN",
        "step 11: expected tags/list of an unknown repository to be NAME_UNKNOWN"
    );
    // Deleting by digest: its tags in that repository go, and it is gone
    // from there; the other repository's tag still holds it.
    let deleted = registry_request(
        port,
        "DELETE",
        &format!("/v2/team/demo/manifests/{}", pushed.trim()),
        &[],
        b"",
    );
    assert_eq!(
        deleted.status, 202,
        "step 11: DELETE of a manifest by digest: {}",
        deleted.body
    );
    assert_eq!(
        get("/v2/team/demo/manifests/1").code(),
        "MANIFEST_UNKNOWN",
        "step 11: expected the deleted manifest to be MANIFEST_UNKNOWN"
    );
    assert_eq!(
        get("/v2/team/demo/tags/list").code(),
        "NAME_UNKNOWN",
        "step 11: expected a repository with no tag left to be NAME_UNKNOWN"
    );
    assert_eq!(
        get("/v2/other/demo/manifests/1").status,
        200,
        "step 11: expected the other repository's manifest to stay"
    );
    assert_eq!(
        files_in(&store.path().join("uploads")),
        Vec::<String>::new(),
        "step 11: finished uploads leave nothing in the uploads directory"
    );
}

#[test]
fn the_registry_asks_for_credentials_when_given_an_htpasswd_file() {
    let (_dir, tar) = archive();
    let store = tempfile::tempdir().unwrap();
    let htpasswd = store.path().join("htpasswd");
    // Cost 4: the least bcrypt allows, so the test stays fast.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&htpasswd, format!("ana:{hash}\n")).unwrap();
    let (_registry, port) =
        start_registry(store.path(), &["--htpasswd", htpasswd.to_str().unwrap()]);
    let base = registry_request(port, "GET", "/v2/", &[], b"");
    assert_eq!(
        (base.status, base.code().as_str()),
        (401, "UNAUTHORIZED"),
        "step 11: without credentials, a registry with --htpasswd answers 401"
    );
    assert!(
        base.header("www-authenticate").starts_with("Basic realm="),
        "step 11: the 401 says how to authenticate: {}",
        base.head
    );
    let push = |creds: Option<&str>| {
        let mut command = Command::new("skopeo");
        command.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(creds) = creds {
            command.args(["--dest-creds", creds]);
        }
        command
            .arg(format!("docker-archive:{}", tar.display()))
            .arg(format!("docker://127.0.0.1:{port}/demo:1"))
            .output()
            .expect("skopeo (sudo apt-get install skopeo)")
    };
    for creds in [None, Some("ana:wrong"), Some("bob:s3cret")] {
        let out = push(creds);
        assert!(
            !out.status.success(),
            "step 11: a push with credentials {creds:?} must be refused"
        );
    }
    assert!(
        files_in(&store.path().join("images")).is_empty(),
        "step 11: a refused push stores nothing"
    );
    let out = push(Some("ana:s3cret"));
    assert!(
        out.status.success(),
        "step 11: a push with the htpasswd's credentials succeeds: {}",
        text(&out.stderr)
    );
    // base64("ana:s3cret")
    let authorized = registry_request(
        port,
        "GET",
        "/v2/demo/tags/list",
        &[("Authorization", "Basic YW5hOnMzY3JldA==")],
        b"",
    );
    assert_eq!(
        authorized.body, r#"{"name":"demo","tags":["1"]}"#,
        "step 11: expected the tags of demo once authorized"
    );
}

#[test]
fn hostile_pushes_are_refused_with_the_specs_codes_and_leave_nothing_behind() {
    let store = tempfile::tempdir().unwrap();
    let (_registry, port) = start_registry(store.path(), &[]);
    let uploads = store.path().join("uploads");
    let request =
        |method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| -> (u16, String) {
            let answer = registry_request(port, method, path, headers, body);
            (answer.status, answer.code())
        };
    let refused = |what: &str, got: (u16, String), status: u16, code: &str| {
        assert_eq!(
            got,
            (status, code.to_string()),
            "step 11: {what} must be refused with {status} {code}"
        );
    };
    let hello = sha256_of(b"hello");
    let zeros = format!("sha256:{}", "0".repeat(64));
    // A whole blob whose bytes are not its digest.
    refused(
        "a monolithic upload with the wrong digest",
        request(
            "POST",
            &format!("/v2/demo/blobs/uploads/?digest={zeros}"),
            &[],
            b"hello",
        ),
        400,
        "DIGEST_INVALID",
    );
    // A session: the server's id, chunks in order only.
    let start = || {
        let answer = registry_request(port, "POST", "/v2/demo/blobs/uploads/", &[], b"");
        assert_eq!(
            answer.status, 202,
            "step 11: POST starts an upload: {}",
            answer.body
        );
        let location = answer.header("location");
        assert!(
            location.starts_with("/v2/demo/blobs/uploads/")
                && !answer.header("docker-upload-uuid").is_empty(),
            "step 11: a started upload has a Location and a Docker-Upload-UUID: {}",
            answer.head
        );
        location
    };
    let session = start();
    let first = registry_request(port, "PATCH", &session, &[("Content-Range", "0-2")], b"hel");
    assert_eq!(
        (first.status, first.header("range").as_str()),
        (202, "0-2"),
        "step 11: a chunk at the upload's end is taken"
    );
    refused(
        "a chunk that does not start where the upload ends",
        request("PATCH", &session, &[("Content-Range", "5-6")], b"lo"),
        416,
        "BLOB_UPLOAD_INVALID",
    );
    // Chunked transfer encoding, as skopeo and the Docker CLI send.
    let chunked = registry_request(
        port,
        "PATCH",
        &session,
        &[("Transfer-Encoding", "chunked")],
        b"2\r\nlo\r\n0\r\n\r\n",
    );
    assert_eq!(
        (chunked.status, chunked.header("range").as_str()),
        (202, "0-4"),
        "step 11: a chunked PATCH appends its bytes"
    );
    let status = registry_request(port, "GET", &session, &[], b"");
    assert_eq!(
        (status.status, status.header("range").as_str()),
        (204, "0-4"),
        "step 11: expected an upload's status to answer 204 with the range received so far, 0-4"
    );
    refused(
        "a session closed with the wrong digest",
        request("PUT", &format!("{session}?digest={zeros}"), &[], b""),
        400,
        "DIGEST_INVALID",
    );
    refused(
        "an upload that was refused",
        request("GET", &session, &[], b""),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    // Ids are the server's, each of one repository.
    let session = start();
    let id = session.rsplit('/').next().unwrap().to_string();
    refused(
        "another repository's upload",
        request("PATCH", &format!("/v2/other/blobs/uploads/{id}"), &[], b"x"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    for bad in [
        "..%2F..%2Fimages%2Fx",
        "0123456789abcdef0123456789abcdef",
        "x",
    ] {
        refused(
            "an id the server did not give",
            request("PATCH", &format!("/v2/demo/blobs/uploads/{bad}"), &[], b"x"),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        );
    }
    refused(
        "a name outside the grammar",
        request("PATCH", &format!("/v2/../../blobs/uploads/{id}"), &[], b"x"),
        400,
        "NAME_INVALID",
    );
    refused(
        "a mount from a name outside the grammar",
        request(
            "POST",
            &format!("/v2/demo/blobs/uploads/?mount={hello}&from=..%2Fx"),
            &[],
            b"",
        ),
        400,
        "NAME_INVALID",
    );
    assert_eq!(
        request("DELETE", &session, &[], b"").0,
        204,
        "step 11: DELETE cancels an upload"
    );
    // Manifests: bounded, naming only blobs that are here, by their digest.
    let big = (5u64 << 20).to_string();
    refused(
        "a manifest over 4 MiB",
        request(
            "PUT",
            "/v2/demo/manifests/1",
            &[
                ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                ("Content-Length", &big),
            ],
            b"",
        ),
        413,
        "SIZE_INVALID",
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": zeros, "size": 2 },
        "layers": [],
    })
    .to_string();
    let oci = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    refused(
        "a manifest naming a blob that was not pushed",
        request("PUT", "/v2/demo/manifests/1", &oci, manifest.as_bytes()),
        400,
        "MANIFEST_BLOB_UNKNOWN",
    );
    refused(
        "a manifest pushed under another digest",
        request(
            "PUT",
            &format!("/v2/demo/manifests/{hello}"),
            &oci,
            manifest.as_bytes(),
        ),
        400,
        "DIGEST_INVALID",
    );
    refused(
        "a manifest whose Content-Type says index",
        request(
            "PUT",
            "/v2/demo/manifests/1",
            &[("Content-Type", "application/vnd.oci.image.index.v1+json")],
            manifest.as_bytes(),
        ),
        400,
        "MANIFEST_INVALID",
    );
    refused(
        "a tag outside the grammar",
        request(
            "PUT",
            "/v2/demo/manifests/..%2Fx",
            &oci,
            manifest.as_bytes(),
        ),
        400,
        "TAG_INVALID",
    );
    refused(
        "deleting a blob (shared by the store's images)",
        request("DELETE", &format!("/v2/demo/blobs/{hello}"), &[], b""),
        405,
        "UNSUPPORTED",
    );
    assert_eq!(
        files_in(&uploads),
        Vec::<String>::new(),
        "step 11: refused and cancelled uploads leave nothing in the uploads directory"
    );
    assert_eq!(
        (
            files_in(&store.path().join("blobs/sha256")),
            files_in(&store.path().join("images"))
        ),
        (Vec::new(), Vec::new()),
        "step 11: nothing refused reached the store's blobs or images"
    );
}

#[test]
fn a_daemon_started_under_umask_000_gives_its_own_modes() {
    let engine = Engine::start_set_up(
        &[],
        Setup {
            umask: Some(0),
            socket: Some("run/caixa/caixa.sock".into()),
            ..Setup::default()
        },
    );
    loaded(&engine);
    let id = stdout_of(&engine.client(&["run", "-d", "--name", "moded", "demo:1", "sleep", "60"]))
        .trim()
        .to_string();
    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }
    let socket = engine.socket();
    let root = engine.root();
    let dir = root.join("containers").join(&id);
    assert_eq!(
        mode(&socket),
        0o660,
        "the daemon's socket: root and its group"
    );
    assert_eq!(mode(&dir.join("shim.sock")), 0o600, "a shim's socket: root");
    let mut checked: Vec<PathBuf> = vec![
        socket.parent().unwrap().to_path_buf(),
        socket.parent().unwrap().parent().unwrap().to_path_buf(),
        root.clone(),
        root.join("containers"),
        root.join("engine"),
        root.join("engine/names"),
        dir.clone(),
    ];
    // What the engine wrote in the container's directory (not its rootfs).
    checked.extend(
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| !["merged", "upper", "work"].contains(&&*e.file_name().to_string_lossy()))
            .map(|e| e.path()),
    );
    for path in &checked {
        assert_eq!(
            mode(path) & 0o022,
            0,
            "step 11: {} is writable by others ({:o}) under a umask of 000: create with explicit modes",
            path.display(),
            mode(path)
        );
    }
    stdout_of(&engine.client(&["rm", "-f", "moded"]));
}

/// The Docker CLI against `engine`, with a config directory of the test's.
fn docker_on(engine: &Engine, args: &[&str]) -> Output {
    let child = Command::new(docker_cli())
        .arg("-H")
        .arg(format!("unix://{}", engine.socket().display()))
        .args(args)
        .env("DOCKER_CONFIG", engine.dir.path().join("docker-config"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child)
}

/// The names `step11 volume ls` lists.
fn volume_names(engine: &Engine) -> Vec<String> {
    stdout_of(&engine.client(&["volume", "ls"]))
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').nth(1).map(String::from))
        .collect()
}

#[test]
fn a_volume_outlives_its_container_and_the_containers_own_changes_do_not() {
    let engine = Engine::start();
    loaded(&engine);
    let out = engine.client(&[
        "run",
        "--name",
        "writer",
        "--network",
        "none",
        "-v",
        "data:/data",
        "demo:1",
        "sh",
        "-c",
        "echo kept > /data/note && echo lost > /changed",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "step 11: a container writes to its named volume (-v data:/data), which its root must own: {}",
        text(&out.stderr)
    );
    stdout_of(&engine.client(&["rm", "writer"]));
    let out = engine.client(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "data:/data",
        "demo:1",
        "sh",
        "-c",
        "cat /data/note; test -e /changed && echo changed-survived || echo changes-gone",
    ]);
    assert_eq!(
        stdout_of(&out),
        "kept\nchanges-gone\n",
        "step 11: what went to the volume is in the next container; the first container's own changes went with it"
    );
    // The volume's data belongs to the host uid container root maps to.
    let (status, body) = engine.api("GET", "/volumes/data", None);
    assert_eq!(status, 200, "GET /volumes/data: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mountpoint = v["Mountpoint"].as_str().unwrap();
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(mountpoint).unwrap());
    assert_eq!(
        owner, 100000,
        "the volume is owned by the mapped root: {mountpoint}"
    );

    // In use by a container, running or not, a volume stays.
    stdout_of(&engine.client(&[
        "run",
        "-d",
        "--name",
        "holder",
        "--network",
        "none",
        "-v",
        "data:/data",
        "demo:1",
        "sleep",
        "60",
    ]));
    let out = engine.client(&["volume", "rm", "data"]);
    assert_eq!(
        out.status.code(),
        Some(125),
        "step 11: expected `volume rm data` to be refused while the container holder names \
         the volume, it ended with {}; most likely cause: refuse_if_in_use does not refuse \
         when users_of lists a container\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    assert_one_line_error(&out, 11, 125, "in use");
    let (status, body) = engine.api("DELETE", "/volumes/data", None);
    assert_eq!(
        status, 409,
        "step 11: expected DELETE /volumes/data to answer 409 Conflict while holder uses it, \
         as Docker does; it answered {status}: {body}. Most likely cause: refuse_if_in_use \
         returns another error than EngineError::Conflict"
    );
    assert!(
        Path::new(mountpoint).join("note").exists(),
        "step 11: expected a refused volume rm to lose nothing, {mountpoint}/note is gone"
    );
    stdout_of(&engine.client(&["rm", "-f", "holder"]));
    stdout_of(&engine.client(&["volume", "rm", "data"]));
    assert!(
        !volume_names(&engine).contains(&"data".to_string()),
        "step 11: expected volume rm to remove data from the list of volumes"
    );
    assert!(
        !Path::new(mountpoint).exists(),
        "volume rm removes its data"
    );

    // An anonymous volume goes with a --rm container; a named one stays.
    let before = volume_names(&engine);
    let out = engine.client(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "/scratch",
        "-v",
        "kept:/kept",
        "demo:1",
        "sh",
        "-c",
        "touch /scratch/a /kept/b",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "step 11: expected a --rm container with an anonymous and a named volume to run well: {}",
        text(&out.stderr)
    );
    let after = volume_names(&engine);
    assert_eq!(
        after
            .iter()
            .filter(|n| !before.contains(n))
            .collect::<Vec<_>>(),
        ["kept"],
        "step 11: --rm removes the anonymous volume, not the named one"
    );
    // Names that could leave the volumes' directory are refused.
    for bad in ["../x", "a/b", "."] {
        let out = engine.client(&["volume", "create", bad]);
        assert_one_line_error(&out, 11, 125, "invalid volume name");
    }
}

#[test]
fn a_bind_mount_is_read_only_when_asked_and_cannot_leave_the_root() {
    let engine = Engine::start();
    // The host directory a hostile image points at.
    let outside = tempfile::tempdir().unwrap();
    let outside_path = outside.path().to_path_buf();
    let (_dir, tar) = archive_with(|root| {
        std::os::unix::fs::symlink(&outside_path, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../../..", root.join("up")).unwrap();
    });
    let out = engine.client(&["load", tar.to_str().unwrap()]);
    assert_eq!(
        stdout_of(&out),
        "Loaded image: demo:1\n",
        "step 11: expected the daemon to load the demo image and say \"Loaded image: demo:1\""
    );

    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("page"), "from the host\n").unwrap();
    std::os::unix::fs::chown(host.path(), Some(100000), Some(100000)).unwrap();
    let host_dir = host.path().display().to_string();
    let bind = format!("{host_dir}:/srv");
    let out = engine.client(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{bind}:ro"),
        "demo:1",
        "sh",
        "-c",
        "cat /srv/page; touch /srv/new && echo wrote || echo refused",
    ]);
    assert_eq!(
        stdout_of(&out),
        "from the host\nrefused\n",
        "step 11: -v HOST:PATH:ro shows the host file and refuses writes, even to the container's root"
    );
    let out = engine.client(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &bind,
        "demo:1",
        "sh",
        "-c",
        "echo back > /srv/new",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "step 11: expected a container to write into its bind mount: {}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("new")).unwrap(),
        "back\n",
        "a writable bind writes to the host directory"
    );

    // Mount points through the image's symlinks land inside its root.
    for target in ["/abs/vol", "/up/tmp/vol"] {
        let out = engine.client(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{host_dir}:{target}"),
            "demo:1",
            "sh",
            "-c",
            &format!("cat {target}/page"),
        ]);
        assert_eq!(
            stdout_of(&out),
            "from the host\n",
            "step 11: the container sees its volume at {target}"
        );
    }
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "step 11: a mount point was made through the image's symlink on the host, in {}: resolve it inside the root (openat2 RESOLVE_IN_ROOT)",
        outside.path().display()
    );
    // (Only the linked host directory is looked at: the host's mount table
    // changes as tests beside this one come and go.)
    let outside_str = outside.path().to_string_lossy().into_owned();
    let escaped: Vec<String> = support::host_mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&outside_str))
        .collect();
    assert!(
        escaped.is_empty(),
        "step 11: a volume was mounted on the host: {escaped:?}"
    );
    let out = engine.client(&[
        "run",
        "--rm",
        "-v",
        "/no/such/dir/here:/x",
        "demo:1",
        "true",
    ]);
    assert_one_line_error(&out, 11, 125, "does not exist");
}

#[test]
fn the_docker_cli_manages_volumes() {
    let engine = Engine::start();
    let (_dir, tar) = archive();
    stdout_of(&docker_on(&engine, &["load", "-i", tar.to_str().unwrap()]));
    let out = docker_on(&engine, &["volume", "create", "--label", "site=1", "site"]);
    assert_eq!(stdout_of(&out).trim(), "site", "docker volume create");
    let ls = stdout_of(&docker_on(
        &engine,
        &["volume", "ls", "--format", "{{.Driver}} {{.Name}}"],
    ));
    assert_eq!(ls.trim(), "local site", "docker volume ls");
    let label = stdout_of(&docker_on(
        &engine,
        &["volume", "inspect", "--format", "{{.Labels.site}}", "site"],
    ));
    assert_eq!(label.trim(), "1", "docker volume inspect");
    let out = docker_on(
        &engine,
        &[
            "run",
            "--rm",
            "-v",
            "site:/www",
            "demo:1",
            "sh",
            "-c",
            "echo hi > /www/index.html",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "step 11: expected a container to write into its volume through the Docker CLI: {}",
        text(&out.stderr)
    );
    let out = docker_on(
        &engine,
        &[
            "run",
            "--name",
            "reader",
            "--mount",
            "type=volume,src=site,dst=/www,readonly",
            "demo:1",
            "sh",
            "-c",
            "cat /www/index.html; touch /www/x || echo read-only",
        ],
    );
    assert_eq!(
        stdout_of(&out),
        "hi\nread-only\n",
        "step 11: --mount type=volume,readonly"
    );
    let mounts = stdout_of(&docker_on(
        &engine,
        &[
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}}{{end}}",
            "reader",
        ],
    ));
    assert_eq!(
        mounts.trim(),
        "volume site /www false",
        "docker inspect's Mounts"
    );
    let out = docker_on(&engine, &["volume", "rm", "site"]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("in use"),
        "step 11: a volume a container uses is not removed (409): {}",
        text(&out.stderr)
    );
    stdout_of(&docker_on(&engine, &["rm", "reader"]));
    let out = docker_on(&engine, &["volume", "prune", "-f"]);
    assert!(
        stdout_of(&out).contains("site"),
        "docker volume prune removes the unused volume"
    );
    let (status, body) = engine.api("POST", "/volumes/create", Some(r#"{"Name":"../x"}"#));
    assert_eq!(status, 400, "a name that climbs out is a 400: {body}");
    let (status, body) = engine.api("DELETE", "/volumes/nothing-here", None);
    assert_eq!(
        status, 404,
        "step 11: expected DELETE of a volume that does not exist to answer 404: {body}"
    );
}

#[test]
fn exec_joins_the_container_and_brings_nothing_of_the_host() {
    let engine = Engine::start();
    loaded(&engine);
    let id = stdout_of(&engine.client(&[
        "run",
        "-d",
        "--name",
        "box",
        "--network",
        "none",
        "demo:1",
        "sleep",
        "3600",
    ]))
    .trim()
    .to_string();
    let (_, state) = engine.states().into_iter().find(|(i, _)| *i == id).unwrap();
    let pid = state["pid"].as_i64().unwrap();

    // The same namespaces as the container's pid 1, seen from the host.
    let kinds = ["user", "mnt", "pid", "net", "ipc", "uts"];
    let script = "for n in user mnt pid net ipc uts; do readlink /proc/self/ns/$n; done";
    let out = engine.client(&["exec", "box", "sh", "-c", script]);
    let want: String = kinds
        .iter()
        .map(|n| {
            let link = std::fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
            format!("{}\n", link.display())
        })
        .collect();
    assert_eq!(
        stdout_of(&out),
        want,
        "step 11: expected exec to be in every namespace of the container ({}), as the host \
         sees its pid 1; most likely cause: join_namespaces does not pass setns(2) the \
         flags of every namespace or'ed together (each ns.clone_flag()) with the pidfd",
        kinds.join(", ")
    );

    // Its cgroup, its capabilities, no_new_privs and seccomp, its root.
    let fields = "^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):";
    let out = engine.client(&[
        "exec",
        "box",
        "sh",
        "-c",
        &format!("cat /proc/self/cgroup; grep -E '{fields}' /proc/self/status; id -u; pwd"),
    ]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let wanted_status: String = status
        .lines()
        .filter(|l| {
            let key = l.split(':').next().unwrap_or("");
            [
                "CapInh",
                "CapPrm",
                "CapEff",
                "CapBnd",
                "CapAmb",
                "NoNewPrivs",
                "Seccomp",
            ]
            .contains(&key)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let want = format!(
        "{}{wanted_status}0\n/\n",
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap()
    );
    assert_eq!(
        stdout_of(&out),
        want,
        "step 11: exec must enter the container's cgroup and take its privileges (capabilities, no_new_privs, seccomp) as root of its user namespace, in its working directory"
    );

    // Nothing of the host: only 0, 1 and 2 (and ls's own directory).
    let out = engine.client(&["exec", "box", "busybox", "ls", "/proc/self/fd"]);
    assert_eq!(
        stdout_of(&out),
        "0\n1\n2\n3\n",
        "step 11: an exec'd process must hold no descriptor of the host's (CVE-2024-21626)"
    );

    // Its exit code, through caixa's client and Docker's.
    let out = engine.client(&[
        "exec",
        "-e",
        "WHO=exec",
        "box",
        "sh",
        "-c",
        "echo $WHO; exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "step 11: exec exits with the command's code"
    );
    assert_eq!(
        text(&out.stdout),
        "exec\n",
        "step 11: expected exec -e WHO=exec to pass the variable to the command"
    );
    let out = engine.client(&["exec", "box", "no-such-command"]);
    assert_eq!(
        out.status.code(),
        Some(127),
        "step 11: expected exec of a command that does not exist to end with 127, as Docker does: {}",
        text(&out.stderr)
    );
    let out = docker_on(
        &engine,
        &["exec", "box", "sh", "-c", "echo via-docker; exit 4"],
    );
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(4), "via-docker\n".to_string()),
        "step 11: docker exec: {}",
        text(&out.stderr)
    );
    stdout_of(&engine.client(&["stop", "-t", "1", "box"]));
    let out = engine.client(&["exec", "box", "true"]);
    assert_one_line_error(&out, 11, 125, "not running");
}

#[test]
fn restart_kill_rename_and_prune_work_as_in_docker() {
    let engine = Engine::start();
    let (_dir, tar) = archive();
    stdout_of(&docker_on(&engine, &["load", "-i", tar.to_str().unwrap()]));
    let docker = |args: &[&str]| docker_on(&engine, args);
    let pid_of = |name: &str| {
        stdout_of(&docker(&["inspect", "--format", "{{.State.Pid}}", name]))
            .trim()
            .to_string()
    };
    stdout_of(&docker(&[
        "run",
        "-d",
        "--name",
        "one",
        "--network",
        "none",
        "demo:1",
        "sleep",
        "3600",
    ]));
    let before = pid_of("one");
    stdout_of(&docker(&["restart", "-t", "1", "one"]));
    let after = pid_of("one");
    assert!(
        after != before && after != "0",
        "step 11: docker restart stops the container and starts it again (pid {before}, then {after})"
    );
    stdout_of(&engine.client(&["kill", "-s", "KILL", "one"]));
    let out = engine.client(&["wait", "one"]);
    assert_eq!(
        stdout_of(&out),
        "137\n",
        "step 11: kill -s KILL ends it with 128 + 9"
    );
    stdout_of(&docker(&["restart", "-t", "1", "one"]));
    assert_ne!(pid_of("one"), "0", "step 11: an exited container restarts");

    stdout_of(&docker(&["rename", "one", "two"]));
    let names = stdout_of(&docker(&["ps", "--format", "{{.Names}}"]));
    assert_eq!(names.trim(), "two", "step 11: docker rename");
    stdout_of(&docker(&[
        "run",
        "--name",
        "three",
        "--network",
        "none",
        "demo:1",
        "true",
    ]));
    let out = docker(&["rename", "two", "three"]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("already in use"),
        "step 11: a taken name is refused: {}",
        text(&out.stderr)
    );
    let (status, body) = engine.api("POST", "/containers/two/rename?name=../x", None);
    assert_eq!(status, 400, "a name with a slash is a 400: {body}");

    let out = docker(&["container", "prune", "-f"]);
    assert!(
        stdout_of(&out).contains("Deleted Containers"),
        "docker container prune"
    );
    let all = stdout_of(&docker(&["ps", "-a", "--format", "{{.Names}}"]));
    assert_eq!(
        all.trim(),
        "two",
        "step 11: prune removes the stopped container and keeps the running one"
    );
    stdout_of(&docker(&["rm", "-f", "two"]));
}

/// The source document's scenario: five web servers, each in its own
/// container on its own published port, each serving the page its named
/// volume holds, all answering on 127.0.0.1; then all removed, and nothing
/// left but the volumes, until they are removed too.
#[test]
fn five_web_servers_with_their_volumes_come_and_go_cleanly() {
    let engine = Engine::start();
    loaded(&engine);
    let mut cgroups = Vec::new();
    for i in 0..5 {
        let site = format!("site{i}");
        let page = format!("echo 'site {i}' > /www/index.html");
        let out = engine.client(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{site}:/www"),
            "demo:1",
            "sh",
            "-c",
            &page,
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "step 11: expected the container to write its page into its volume: {}",
            text(&out.stderr)
        );
        let id = stdout_of(&engine.client(&[
            "run",
            "-d",
            "--name",
            &format!("web{i}"),
            "-p",
            &format!("{}:80", 18100 + i),
            "-v",
            &format!("{site}:/www:ro"),
            "demo:1",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ]))
        .trim()
        .to_string();
        let (_, state) = engine.states().into_iter().find(|(c, _)| *c == id).unwrap();
        let pid = state["pid"].as_i64().unwrap();
        cgroups.push(std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap());
    }
    for i in 0..5 {
        let url = format!("http://127.0.0.1:{}/", 18100 + i);
        // The server listens a moment after its container starts.
        let begin = Instant::now();
        let page = loop {
            let out = engine
                .netns
                .command("busybox")
                .args(["wget", "-q", "-O-", &url])
                .output()
                .expect("busybox wget (sudo apt-get install busybox-static)");
            if out.status.success() || begin.elapsed() > Duration::from_secs(30) {
                break text(&out.stdout);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(
            page,
            format!("site {i}\n"),
            "step 11: {url} must reach web{i}'s httpd, serving its volume site{i}"
        );
    }
    for i in 0..5 {
        stdout_of(&engine.client(&["rm", "-f", &format!("web{i}")]));
    }
    assert_network_gone(
        &engine,
        "",
        "five removed web servers leave no rule, lease, veth or file",
    );
    for listing in &cgroups {
        let left = support::cgroups_left(listing);
        assert!(left.is_empty(), "step 11: cgroups left: {left:?}");
    }
    let root = engine.root().to_string_lossy().into_owned();
    let mounted: Vec<String> = support::host_mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&root))
        .collect();
    assert!(mounted.is_empty(), "step 11: mounts left: {mounted:?}");
    let names = volume_names(&engine);
    assert_eq!(
        names,
        ["site0", "site1", "site2", "site3", "site4"],
        "step 11: the volumes asked for stay, and nothing else"
    );
    for name in &names {
        stdout_of(&engine.client(&["volume", "rm", name]));
    }
    assert!(
        volume_names(&engine).is_empty(),
        "volume rm removed them all"
    );
}

// ---- Images you make: build (the classic builder) and commit (#17) ----

/// A build context directory holding `files` (name, content).
fn build_context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

/// `step11 build ARGS… CONTEXT`.
fn build_in(engine: &Engine, context: &Path, args: &[&str]) -> Output {
    let mut all: Vec<&str> = vec!["build"];
    all.extend_from_slice(args);
    let context = context.to_str().unwrap();
    all.push(context);
    engine.client(&all)
}

/// Nothing of a build is left: no mount under the root, no container
/// directory (upper dirs), no scratch directory.
fn assert_build_left_nothing(engine: &Engine, what: &str) {
    let root = engine.root().to_string_lossy().into_owned();
    let mounted: Vec<String> = support::host_mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&root))
        .collect();
    assert!(
        mounted.is_empty(),
        "step 11: {what}: mounts left: {mounted:?}"
    );
    for dir in ["containers", "engine/tmp"] {
        let left: Vec<_> = std::fs::read_dir(engine.root().join(dir))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "step 11: {what}: {dir}/ keeps {left:?}");
    }
}

const WEB_DOCKERFILE: &str = "FROM demo:1\n\
# busybox has httpd: give it its name\n\
RUN ln -s busybox /bin/httpd && mkdir -p /srv/www\n\
COPY site/ /srv/www/\n\
COPY start.sh /start.sh\n\
EXPOSE 80\n\
CMD [\"/bin/sh\", \"/start.sh\"]\n";

#[test]
fn build_makes_the_source_documents_web_server_image_and_it_serves_its_page() {
    let engine = Engine::start();
    loaded(&engine);
    let context = build_context(&[
        ("Dockerfile", WEB_DOCKERFILE),
        ("site/index.html", "built by caixa\n"),
        ("start.sh", "exec httpd -f -p 80 -h /srv/www\n"),
        ("notes.log", "not sent\n"),
        (".dockerignore", "*.log\n"),
    ]);
    let out = build_in(&engine, context.path(), &["-t", "web:1"]);
    let log = stdout_of(&out);
    assert!(
        log.contains("Step 1/6 : FROM demo:1") && log.contains("Successfully tagged web:1"),
        "step 11: build prints Docker's progress: {log}"
    );
    let id = stdout_of(&engine.client(&["run", "-d", "-p", "18300:80", "web:1"]));
    let url = "http://127.0.0.1:18300/";
    let begin = Instant::now();
    let page = loop {
        let out = engine
            .netns
            .command("busybox")
            .args(["wget", "-q", "-O-", url])
            .output()
            .expect("busybox wget (sudo apt-get install busybox-static)");
        if out.status.success() || begin.elapsed() > Duration::from_secs(30) {
            break text(&out.stdout);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        page, "built by caixa\n",
        "step 11: the built image's CMD serves the COPYed site on its EXPOSEd port"
    );
    let ignored = engine.client(&[
        "run",
        "--rm",
        "web:1",
        "sh",
        "-c",
        "ls /srv/www; ls /notes.log 2>&1",
    ]);
    assert_eq!(
        text(&ignored.stdout).lines().next(),
        Some("index.html"),
        "step 11: COPY site/ copies the directory's contents"
    );
    stdout_of(&engine.client(&["rm", "-f", id.trim()]));
    assert_build_left_nothing(&engine, "a build and a run");
}

#[test]
fn the_docker_cli_builds_with_the_classic_builder() {
    let engine = Engine::start();
    loaded(&engine);
    let context = build_context(&[
        (
            "Dockerfile",
            "FROM demo:1\nARG WHO=nobody\nENV GREETING=\"hello from\"\nCOPY msg.txt /msg.txt\nRUN echo \"$GREETING $WHO\" >> /msg.txt\nCMD [\"cat\", \"/msg.txt\"]\n",
        ),
        ("msg.txt", "built by docker build\n"),
    ]);
    let out = wait_output(
        Command::new(docker_cli())
            .arg("-H")
            .arg(format!("unix://{}", engine.socket().display()))
            .args(["build", "-t", "cli-built:1", "--build-arg", "WHO=caixa"])
            .arg(context.path())
            .env("DOCKER_BUILDKIT", "0")
            .env("DOCKER_CONFIG", engine.dir.path().join("docker-config"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = text(&out.stdout);
    assert!(
        out.status.success() && log.contains("Successfully built"),
        "step 11: DOCKER_BUILDKIT=0 docker build must work against the daemon: {log}\n{}",
        text(&out.stderr)
    );
    let run = docker_on(&engine, &["run", "--rm", "cli-built:1"]);
    assert_eq!(
        text(&run.stdout),
        "built by docker build\nhello from caixa\n",
        "step 11: docker run of the image docker build made: {}",
        text(&run.stderr)
    );
}

const CACHED_DOCKERFILE: &str = "FROM demo:1\n\
RUN echo one > /one\n\
COPY a.txt /a.txt\n\
RUN cat /a.txt > /b.txt\n\
CMD [\"cat\", \"/b.txt\"]\n";

#[test]
fn build_reuses_every_cached_step_and_rebuilds_from_a_changed_copy_on() {
    let engine = Engine::start();
    loaded(&engine);
    let context = build_context(&[("Dockerfile", CACHED_DOCKERFILE), ("a.txt", "first\n")]);
    let first = stdout_of(&build_in(&engine, context.path(), &["-t", "cached:1"]));
    assert_eq!(
        first.matches("Running in").count(),
        2,
        "step 11: expected a first build to run both RUN steps (two \"Running in\"): {first}"
    );
    let second = stdout_of(&build_in(&engine, context.path(), &["-t", "cached:1"]));
    assert_eq!(
        second.matches("Running in").count(),
        0,
        "step 11: a rebuild with nothing changed runs no RUN: {second}"
    );
    assert_eq!(
        second.matches("Using cache").count(),
        4,
        "step 11: a rebuild with nothing changed reuses every step: {second}"
    );
    let built = |log: &str| {
        log.lines()
            .find(|l| l.starts_with("Successfully built"))
            .map(String::from)
    };
    assert_eq!(
        built(&first),
        built(&second),
        "step 11: the same image, the same id"
    );
    std::fs::write(context.path().join("a.txt"), "second\n").unwrap();
    let third = stdout_of(&build_in(&engine, context.path(), &["-t", "cached:1"]));
    assert_eq!(
        (
            third.matches("Using cache").count(),
            third.matches("Running in").count()
        ),
        (1, 1),
        "step 11: a changed COPY source rebuilds from the COPY on, and only that: {third}"
    );
    let run = engine.client(&["run", "--rm", "cached:1"]);
    assert_eq!(
        stdout_of(&run),
        "second\n",
        "step 11: expected the rebuilt image to serve the changed COPY source, second"
    );
    let no_cache = stdout_of(&build_in(
        &engine,
        context.path(),
        &["--no-cache", "-t", "cached:1"],
    ));
    assert_eq!(
        no_cache.matches("Running in").count(),
        2,
        "step 11: --no-cache: {no_cache}"
    );
}

#[test]
fn a_run_that_deletes_a_file_hides_it_with_a_whiteout_and_stages_copy_from_each_other() {
    let engine = Engine::start();
    loaded(&engine);
    let context = build_context(&[(
        "Dockerfile",
        "FROM demo:1 AS maker\n\
         WORKDIR /work\n\
         RUN echo made-in-stage-one > made.txt\n\
         FROM demo:1\n\
         RUN rm /bin/cat && mkdir -p /tmp/gone && rm -r /tmp/gone\n\
         COPY --from=maker /work/made.txt /opt/made.txt\n\
         CMD [\"sh\", \"-c\", \"busybox cat /opt/made.txt; test -e /bin/cat && echo cat-present || echo cat-gone\"]\n",
    )]);
    stdout_of(&build_in(&engine, context.path(), &["-t", "staged:1"]));
    let run = engine.client(&["run", "--rm", "staged:1"]);
    assert_eq!(
        stdout_of(&run),
        "made-in-stage-one\ncat-gone\n",
        "step 11: expected COPY --from to copy out of the first stage, and the RUN rm layer's \
         whiteout to hide /bin/cat; most likely cause when cat is present: whiteout_name does \
         not turn the 0/0 character device bin/cat into bin/.wh.cat (\".wh.\" and its name, \
         in the same directory)"
    );
    // The layer says it as the OCI spec does: bin/.wh.cat.
    let store = engine.root();
    let manifest = std::fs::read_to_string(store.join("images/staged:1")).unwrap();
    let blob = |d: &str| {
        store
            .join("blobs/sha256")
            .join(d.trim().trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&manifest)).unwrap()).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let rm_layer = &layers[layers.len() - 2];
    let file = std::fs::File::open(blob(rm_layer["digest"].as_str().unwrap())).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let names: Vec<String> = tar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        names.contains(&"bin/.wh.cat".to_string()),
        "step 11: the RUN rm layer must hold the whiteout bin/.wh.cat: {names:?}"
    );
}

#[test]
fn skopeo_reads_the_image_caixa_built() {
    let engine = Engine::start();
    loaded(&engine);
    let context = build_context(&[("Dockerfile", CACHED_DOCKERFILE), ("a.txt", "for skopeo\n")]);
    stdout_of(&build_in(&engine, context.path(), &["-t", "forskopeo:1"]));
    let (_registry, port) = start_registry(&engine.root(), &[]);
    let copy = tempfile::tempdir().unwrap();
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://127.0.0.1:{port}/forskopeo:1"))
        .arg(format!("oci:{}:copy", copy.path().display()))
        .output()
        .expect("skopeo (sudo apt-get install skopeo)");
    assert!(
        out.status.success(),
        "step 11: skopeo must read (and verify) the built image: {}",
        text(&out.stderr)
    );
    let out = Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci:{}:copy", copy.path().display()))
        .output()
        .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["cat", "/b.txt"]),
        "step 11: expected the committed image's Cmd to be the one given with --change"
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(4),
        "step 11: the base layer and one per RUN/COPY: {config}"
    );
    assert_eq!(
        config["history"].as_array().map(Vec::len),
        Some(6),
        "step 11: the base image's two entries and one per instruction: {config}"
    );
}

/// POST /build with `body` as the context, straight on the socket.
fn raw_build(engine: &Engine, body: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = UnixStream::connect(engine.socket()).unwrap();
    let head = format!(
        "POST /build?t=evil HTTP/1.1\r\nHost: caixa\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn hostile_contexts_and_dockerfiles_are_refused_in_one_line_leaving_nothing() {
    let engine = Engine::start();
    loaded(&engine);
    // A context tar whose entries climb out or start at /.
    for evil in ["../escaped", "/abs"] {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        header.as_gnu_mut().unwrap().name[..evil.len()].copy_from_slice(evil.as_bytes());
        header.set_cksum();
        tar.append(&header, &b"bad"[..]).unwrap();
        let answer = raw_build(&engine, &tar.into_inner().unwrap());
        assert!(
            answer.starts_with("HTTP/1.1 400") && answer.contains("refusing the build context"),
            "step 11: a context entry {evil:?} must be refused: {answer}"
        );
    }
    let escaped = engine.dir.path().join("escaped");
    assert!(!escaped.exists(), "step 11: nothing written outside");
    // A Dockerfile: unknown instruction, COPY out of the context (by `..`
    // and through a symlink), over the size limit, a failing RUN.
    let cases: [(&str, &str); 5] = [
        (
            "FROM demo:1\nFROB it\n",
            "Dockerfile:2: unknown instruction: FROB",
        ),
        (
            "FROM demo:1\nCOPY ../../../../etc/passwd /x\n",
            "file not found in build context",
        ),
        (
            "FROM demo:1\nCOPY evil/hostname /x\n",
            "file not found in build context",
        ),
        (
            "FROM demo:1\nRUN echo hi && false\n",
            "returned a non-zero code: 1",
        ),
        ("FROM nosuch:1\n", "no image nosuch:1"),
    ];
    for (dockerfile, needle) in cases {
        let context = build_context(&[("Dockerfile", dockerfile)]);
        std::os::unix::fs::symlink("/etc", context.path().join("evil")).unwrap();
        let out = build_in(&engine, context.path(), &["-t", "evil:1"]);
        assert_one_line_error(&out, 11, 125, needle);
    }
    let big = format!("FROM demo:1\n{}", "# padding\n".repeat(120_000));
    let context = build_context(&[("Dockerfile", &big)]);
    let out = build_in(&engine, context.path(), &["-t", "evil:1"]);
    assert_one_line_error(&out, 11, 125, "over the limit");
    assert!(
        engine
            .client(&["run", "--rm", "evil:1", "true"])
            .status
            .code()
            != Some(0),
        "step 11: no image was tagged"
    );
    assert_build_left_nothing(&engine, "refused builds");
}

#[test]
fn commit_makes_an_image_of_a_containers_changes() {
    let engine = Engine::start();
    loaded(&engine);
    let out = engine.client(&[
        "run",
        "--name",
        "changer",
        "demo:1",
        "sh",
        "-c",
        "echo changed > /note && rm /bin/tail",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "step 11: expected the container to change its files before the commit: {}",
        text(&out.stderr)
    );
    let id = stdout_of(&engine.client(&["commit", "changer", "noted:1"]));
    assert!(
        id.starts_with("sha256:"),
        "step 11: commit prints the new image's id: {id}"
    );
    let run = engine.client(&[
        "run",
        "--rm",
        "noted:1",
        "sh",
        "-c",
        "busybox cat /note; test -e /bin/tail || echo tail-gone",
    ]);
    assert_eq!(
        stdout_of(&run),
        "changed\ntail-gone\n",
        "step 11: the committed image holds the container's changes, deletions too"
    );
}
