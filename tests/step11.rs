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
}

impl Engine {
    fn start() -> Engine {
        Engine::start_with(&[])
    }

    fn start_with(options: &[&str]) -> Engine {
        let dir = tempfile::tempdir().unwrap();
        // World-traversable: a container's root is an unprivileged host uid.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut engine = Engine {
            daemon: None,
            dir,
            netns: TestNetns::new(),
            options: options.iter().map(|o| o.to_string()).collect(),
        };
        engine.daemon = Some(engine.spawn_daemon());
        engine
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("caixa.sock")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `step11 daemon` on this engine's root and socket, in its namespace.
    fn daemon_command(&self) -> Command {
        let mut cmd = self.netns.step(11);
        cmd.arg("--root")
            .arg(self.root())
            .arg("daemon")
            .arg("--socket")
            .arg(self.socket())
            .args(&self.options);
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
        let child = Command::new(binary(11))
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

    /// The runner pids of the containers the state says run.
    fn running_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir(self.root().join("engine/containers"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let state: serde_json::Value = std::fs::read(entry.path().join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            if state["status"] == "running" {
                pids.push(state["pid"].as_i64().unwrap_or(0) as i32);
            }
        }
        pids
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Containers first (their runners clean up as they die), then the
        // daemon; the monitors end with their containers.
        for pid in self.running_pids() {
            if pid > 0 {
                let _ = nix_kill(pid, libc::SIGKILL);
                support::wait_gone(pid);
            }
        }
        // Each monitor then sweeps what its killed runner left (cgroups,
        // mounts) and records `exited`: wait for that, before the state
        // directory, which holds the records, goes with the namespace.
        let start = Instant::now();
        while !self.running_pids().is_empty() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill_daemon();
    }
}

fn nix_kill(pid: i32, signal: i32) -> i32 {
    // SAFETY: kill(2) with a pid and a signal number.
    unsafe { libc::kill(pid, signal) }
}

/// A `docker save` archive of a tiny busybox image named `demo:1`.
fn archive() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = TinyRootfs::new();
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
    assert_eq!(stdout_of(&out), "Loaded image: demo:1\n");
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
    assert!(images.starts_with("demo:1\t"), "{images}");
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
    assert!(stdout_of(&engine.client(&["ps"])).contains("keeper"));
    // The daemon dies; the container, under its monitor, does not.
    engine.kill_daemon();
    let pids = engine.running_pids();
    assert_eq!(pids.len(), 1);
    assert!(
        Path::new(&format!("/proc/{}", pids[0])).exists(),
        "step 11: the container must outlive the daemon (its monitor holds it)"
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
    assert_eq!(stdout_of(&engine.client(&["ps", "-a"])).lines().count(), 1);
}

#[test]
fn one_client_drives_two_daemons() {
    let (a, b) = (Engine::start(), Engine::start());
    loaded(&a);
    assert!(stdout_of(&a.client(&["images"])).contains("demo:1"));
    assert_eq!(
        stdout_of(&b.client(&["images"])),
        "",
        "step 11: -H picks the daemon; each has its own store"
    );
    stdout_of(&a.client(&["run", "--name", "only-on-a", "demo:1", "sh", "-c", "true"]));
    assert!(stdout_of(&a.client(&["ps", "-a"])).contains("only-on-a"));
    assert!(!stdout_of(&b.client(&["ps", "-a"])).contains("only-on-a"));
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
    let docker = |args: &[&str]| {
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
    };
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
    assert_eq!(images.trim(), "demo:1");
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
    assert_eq!(text(&out.stdout), "via-docker\n");
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
    let out = docker(&["run", "-v", "/tmp:/mnt", "demo:1", "true"]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("not supported"),
        "a volume must be refused, not ignored: {}",
        text(&out.stderr)
    );
    let out = docker(&["run", "-d", "--name", "bg", "demo:1", "sleep", "60"]);
    stdout_of(&out);
    let ps = stdout_of(&docker(&["ps", "--format", "{{.Names}} {{.Status}}"]));
    assert!(ps.starts_with("bg Up"), "{ps}");
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
    assert_eq!(stdout_of(&out).trim(), "loaded demo:1");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _registry = Killed(
        Command::new(binary(11))
            .arg("--root")
            .arg(source.path())
            .args(["registry", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "step 11: the registry did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
        format!("pulled {reference}")
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
        assert_eq!(version.api_version.as_deref(), Some("1.41"));
        let images = docker
            .list_images(None::<ListImagesOptions>)
            .await
            .expect("step 11: GET /images/json in Docker's shape");
        assert!(
            images.iter().any(|i| i.repo_tags == ["demo:1"]),
            "{images:?}"
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
        assert_eq!((state.exit_code, state.running), (Some(3), Some(false)));
        assert_eq!(inspected.name.as_deref(), Some("/from-bollard"));
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

fn read_to_close(mut stream: UnixStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
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
                    "step 11: the daemon neither answered nor closed the connection in a minute; got {:?}",
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
    let holders: Vec<UnixStream> = (0..4)
        .map(|_| {
            let mut s = UnixStream::connect(&socket).unwrap();
            std::io::Write::write_all(
                &mut s,
                b"POST /containers/create HTTP/1.1\r\nHost: caixa\r\nContent-Length: 100\r\n\r\n",
            )
            .unwrap();
            s
        })
        .collect();
    let answer = exchange(&socket, b"GET /_ping HTTP/1.1\r\nHost: caixa\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("its limit"),
        "step 11: over the connection cap, a 503 that says why: {answer:?}"
    );
    assert_one_line_error(&engine.client(&["ps"]), 11, 125, "its limit");
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
        "{answer:?}"
    );
}
