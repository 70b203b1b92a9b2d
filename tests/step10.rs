//! Step 10 grading: pull and push against a real registry (Debian's
//! `docker-registry`) that each test starts on a free loopback port, with
//! images the test builds (umoci) and puts there (skopeo).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::{TestNetns, TinyRootfs, assert_one_line_error, binary, stdout_of, text, wait_output};

/// A registry on 127.0.0.1 (or on an address inside a test's network
/// namespace), with its storage in a temporary directory.
struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    addr: String,
    port: u16,
    /// `--net=/run/netns/NAME` when it runs inside a test's namespace.
    netns: Option<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    fn start(htpasswd: Option<(&str, &str)>) -> Registry {
        Registry::start_at(htpasswd, None, "127.0.0.1")
    }

    /// A registry listening on `addr` inside `netns` (when given).
    fn start_at(htpasswd: Option<(&str, &str)>, netns: Option<&TestNetns>, addr: &str) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}/data\nhttp:\n  addr: {addr}:{port}\n",
            dir.path().display()
        );
        if let Some((user, password)) = htpasswd {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (sudo apt-get install apache2-utils)");
            std::fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: caixa-test\n    path: {}/htpasswd\n",
                dir.path().display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let netns = netns.map(|n| format!("--net=/run/netns/{}", n.name));
        let child = Registry::command(&netns, "docker-registry")
            .args(["serve", dir.path().join("config.yml").to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (sudo apt-get install docker-registry)");
        let registry = Registry {
            child,
            dir,
            addr: addr.to_string(),
            port,
            netns,
        };
        let start = Instant::now();
        while !registry.listening() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "the registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn host(&self) -> String {
        format!("{}:{}", self.addr, self.port)
    }

    /// `program`, run where the registry runs.
    fn command(netns: &Option<String>, program: &str) -> Command {
        match netns {
            None => Command::new(program),
            Some(net) => {
                let mut cmd = Command::new("nsenter");
                cmd.args([net, "--", program]);
                cmd
            }
        }
    }

    fn listening(&self) -> bool {
        match &self.netns {
            None => TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
            // ss(8) inside the namespace: is anything listening there yet?
            Some(_) => Registry::command(&self.netns, "ss")
                .args(["-ltnH"])
                .output()
                .is_ok_and(|o| text(&o.stdout).contains(&self.host())),
        }
    }

    /// Puts the OCI layout `layout` (tag `base`) at `repo:tag` with skopeo.
    fn put(&self, layout: &Path, repo_tag: &str, all: bool, creds: Option<&str>) {
        let mut cmd = Registry::command(&self.netns, "skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if all {
            cmd.arg("--all");
        }
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let status = cmd
            .arg(format!("oci:{}:base", layout.display()))
            .arg(format!("docker://{}/{repo_tag}", self.host()))
            .status()
            .expect("skopeo (sudo apt-get install skopeo)");
        assert!(status.success(), "skopeo copy to the registry failed");
    }

    /// The raw manifest of `repo:tag`, as the registry serves it.
    fn raw_manifest(&self, repo_tag: &str) -> Vec<u8> {
        let out = Registry::command(&self.netns, "skopeo")
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{}/{repo_tag}", self.host()),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        out.stdout
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OCI layout (tag `base`) of a tiny busybox rootfs, made with umoci.
fn image(marker: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = TinyRootfs::new();
    std::fs::write(rootfs.dir.path().join("marker"), marker).unwrap();
    support::umoci_image(
        &dir.path().join("layout"),
        rootfs.dir.path(),
        "--config.cmd /bin/sh --config.cmd -c --config.cmd 'cat /marker'",
    );
    dir
}

/// A store (world-traversable: container root is an unprivileged uid) and
/// a config dir for credentials.
struct Client {
    store: tempfile::TempDir,
    config: tempfile::TempDir,
}

impl Client {
    fn new() -> Client {
        let store = tempfile::tempdir().unwrap();
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Client {
            store,
            config: tempfile::tempdir().unwrap(),
        }
    }

    fn step10(&self, args: &[&str], stdin: &str) -> Output {
        self.step10_in(Command::new(binary(10)), args, stdin)
    }

    /// Step 10 from `cmd` (e.g. inside a test's network namespace).
    fn step10_in(&self, mut cmd: Command, args: &[&str], stdin: &str) -> Output {
        let mut child = cmd
            .arg("--root")
            .arg(self.store.path())
            .args(args)
            .env("CAIXA_CONFIG_DIR", self.config.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        wait_output(child)
    }

    fn run_in(&self, netns: &TestNetns, args: &[&str]) -> Output {
        let mut full = vec!["--root", self.store.path().to_str().unwrap(), "run"];
        full.extend_from_slice(args);
        netns.run(10, &full)
    }
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

#[test]
fn pull_by_tag_then_run() {
    let registry = Registry::start(None);
    let img = image("pulled-by-tag");
    registry.put(&img.path().join("layout"), "test/img:1", false, None);
    let client = Client::new();
    let reference = format!("{}/test/img:1", registry.host());
    let out = client.step10(&["pull", &reference], "");
    assert_eq!(stdout_of(&out).trim(), format!("pulled {reference}"));
    let netns = TestNetns::new();
    let out = client.run_in(&netns, &[&reference]);
    assert_eq!(
        stdout_of(&out),
        "pulled-by-tag",
        "the image's Cmd prints its marker"
    );
}

#[test]
fn pull_by_digest_and_a_second_pull_downloads_nothing() {
    let registry = Registry::start(None);
    let img = image("by-digest");
    registry.put(&img.path().join("layout"), "test/img:1", false, None);
    let digest = sha(&registry.raw_manifest("test/img:1"));
    let client = Client::new();
    let reference = format!("{}/test/img@{digest}", registry.host());
    let out = client.step10(&["pull", &reference], "");
    stdout_of(&out);
    let again = client.step10(&["pull", &reference], "");
    stdout_of(&again);
    let lines: Vec<String> = text(&again.stderr).lines().map(String::from).collect();
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.ends_with("already present")),
        "step 10: a second pull must skip every blob:\n{}",
        text(&again.stderr)
    );
}

#[test]
fn push_then_pull_round_trips_byte_identical_manifests() {
    let registry = Registry::start(None);
    let img = image("round-trip");
    registry.put(&img.path().join("layout"), "test/img:1", false, None);
    let client = Client::new();
    let source = format!("{}/test/img:1", registry.host());
    stdout_of(&client.step10(&["pull", &source], ""));
    let target = format!("{}/other/copy:2", registry.host());
    let out = client.step10(&["push", &source, "--to", &target], "");
    assert!(stdout_of(&out).starts_with(&format!("pushed {target}")));
    let mounted = text(&out.stderr)
        .lines()
        .filter(|l| l.ends_with("mounted from test/img"))
        .count();
    assert!(
        mounted >= 2,
        "step 10: on the same registry, config and layer are mounted from the source repository, not uploaded:\n{}",
        text(&out.stderr)
    );
    assert_eq!(
        registry.raw_manifest("other/copy:2"),
        registry.raw_manifest("test/img:1"),
        "step 10: the pushed manifest must be byte-identical"
    );
    // And it pulls back.
    let fresh = Client::new();
    stdout_of(&fresh.step10(&["pull", &target], ""));
}

#[test]
fn basic_auth_needs_login_and_works_after_it() {
    let registry = Registry::start(Some(("caixa", "s3cret")));
    let img = image("behind-auth");
    registry.put(
        &img.path().join("layout"),
        "test/img:1",
        false,
        Some("caixa:s3cret"),
    );
    let client = Client::new();
    let reference = format!("{}/test/img:1", registry.host());
    let out = client.step10(&["pull", &reference], "");
    assert_one_line_error(&out, 10, 125, "step10 login");
    let out = client.step10(&["login", &registry.host(), "-u", "caixa"], "s3cret\n");
    stdout_of(&out);
    let saved = std::fs::read_to_string(client.config.path().join("config.json")).unwrap();
    assert!(
        saved.contains("auths") && !saved.contains("s3cret"),
        "credentials are stored as Docker does (base64), not in clear text"
    );
    stdout_of(&client.step10(&["pull", &reference], ""));
}

#[test]
fn a_tampered_blob_is_refused_and_nothing_is_stored() {
    let registry = Registry::start(None);
    let img = image("tampered");
    registry.put(&img.path().join("layout"), "test/img:1", false, None);
    // Flip a byte of the biggest blob in the registry's own storage.
    let blobs = registry
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256");
    let mut biggest: Option<PathBuf> = None;
    for prefix in std::fs::read_dir(&blobs).unwrap().flatten() {
        for blob in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            let data = blob.path().join("data");
            let size = std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
            if biggest
                .as_ref()
                .is_none_or(|b| std::fs::metadata(b).map(|m| m.len()).unwrap_or(0) < size)
            {
                biggest = Some(data);
            }
        }
    }
    let data = biggest.unwrap();
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let client = Client::new();
    let out = client.step10(&["pull", &format!("{}/test/img:1", registry.host())], "");
    // Progress lines for the blobs that were fine may come first.
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("step10: digest mismatch"),
        "step 10: a tampered blob must be refused: {err}"
    );
    let images = client.step10(&["images"], "");
    assert_eq!(stdout_of(&images), "", "a refused pull must leave no image");
}

#[test]
fn a_multi_platform_index_gives_this_machines_manifest() {
    let registry = Registry::start(None);
    let this = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let other_arch = if this == "arm64" { "amd64" } else { "arm64" };
    let img = image("this-machines-variant");
    let layout = img.path().join("layout");
    // Make an index of two platforms: the image as built (for this
    // machine), and a copy whose config names another architecture (same
    // layers), each with its own manifest.
    let blob_path = |d: &str| layout.join("blobs/sha256").join(&d[7..]);
    let write_blob = |bytes: &[u8]| {
        let d = sha(bytes);
        std::fs::write(blob_path(&d), bytes).unwrap();
        d
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m1 = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let m1_bytes = std::fs::read(blob_path(&m1)).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&m1_bytes).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob_path(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    config["architecture"] = other_arch.into();
    let cbytes = config.to_string().into_bytes();
    manifest["config"]["digest"] = write_blob(&cbytes).into();
    manifest["config"]["size"] = cbytes.len().into();
    let m2_bytes = manifest.to_string().into_bytes();
    let m2 = write_blob(&m2_bytes);
    let list = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m1, "size": m1_bytes.len(), "platform": { "os": "linux", "architecture": this } },
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m2, "size": m2_bytes.len(), "platform": { "os": "linux", "architecture": other_arch } },
        ]
    });
    let list_bytes = list.to_string().into_bytes();
    let list_digest = write_blob(&list_bytes);
    let top = serde_json::json!({ "schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": list_digest, "size": list_bytes.len(),
        "annotations": { "org.opencontainers.image.ref.name": "base" } }] });
    std::fs::write(layout.join("index.json"), top.to_string()).unwrap();
    registry.put(&layout, "test/multi:1", true, None);
    let client = Client::new();
    let reference = format!("{}/test/multi:1", registry.host());
    let platform = format!("linux/{other_arch}");
    stdout_of(&client.step10(&["pull", "--platform", &platform, &reference], ""));
    let images = stdout_of(&client.step10(&["images"], ""));
    assert!(
        images.contains(&m2),
        "--platform {platform} must pick its manifest:\n{images}"
    );
    let other = Client::new();
    stdout_of(&other.step10(&["pull", &reference], ""));
    let images = stdout_of(&other.step10(&["images"], ""));
    assert!(
        images.contains(&m1),
        "this machine (linux/{this}) gets its own manifest:\n{images}"
    );
}

/// A fake registry that wants a Bearer token from its own /token endpoint,
/// serving one small image: enough to exercise the token flow end to end.
#[test]
fn the_bearer_token_flow_works() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let Tiny {
        manifest,
        config,
        layer,
    } = Tiny::new(5);
    let (config_d, layer_d) = (sha(&config), sha(&layer));
    let server = std::thread::spawn(move || {
        let mut token_asked = false;
        for stream in listener.incoming().take(12) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let mut auth = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if line.to_ascii_lowercase().starts_with("authorization:") {
                    auth = line[14..].trim().to_string();
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, body, extra): (&str, Vec<u8>, String) = if path.starts_with("/token") {
                token_asked = path.contains("scope=repository%3Atest%2Fimg%3Apull");
                (
                    "200 OK",
                    br#"{"token":"good-token"}"#.to_vec(),
                    String::new(),
                )
            } else if auth != "Bearer good-token" {
                let challenge = format!(
                    "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\",scope=\"repository:test/img:pull\"\r\n"
                );
                ("401 Unauthorized", b"{}".to_vec(), challenge)
            } else if path.ends_with("/manifests/1") {
                (
                    "200 OK",
                    manifest.clone(),
                    "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n".into(),
                )
            } else if path.ends_with(&config_d) {
                ("200 OK", config.clone(), String::new())
            } else if path.ends_with(&layer_d) {
                ("200 OK", layer.clone(), String::new())
            } else {
                ("404 Not Found", Vec::new(), String::new())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        token_asked
    });
    let client = Client::new();
    let out = client.step10(&["pull", &format!("127.0.0.1:{port}/test/img:1")], "");
    assert_eq!(
        stdout_of(&out).trim(),
        format!("pulled 127.0.0.1:{port}/test/img:1")
    );
    // Unblock the server's remaining accepts and collect its verdict.
    for _ in 0..12 {
        let _ = TcpStream::connect(("127.0.0.1", port));
    }
    assert!(
        server.join().unwrap(),
        "the client must ask the realm for a token with the repository's pull scope"
    );
}

/// A one-file image, for the fake registries: manifest, config, layer.
struct Tiny {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
}

impl Tiny {
    /// An image whose one file holds `size` bytes.
    fn new(size: usize) -> Tiny {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(size as u64);
        h.set_mode(0o644);
        h.set_cksum();
        let content: Vec<u8> = (0..size).map(|i| b"hello"[i % 5]).collect();
        tar.append_data(&mut h, "hello", &content[..]).unwrap();
        let layer = tar.into_inner().unwrap();
        let config = serde_json::json!({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[sha(&layer)]}}).to_string().into_bytes();
        let manifest = serde_json::json!({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":sha(&config),"size":config.len()},
            "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":sha(&layer),"size":layer.len()}]}).to_string().into_bytes();
        Tiny {
            manifest,
            config,
            layer,
        }
    }
}

/// What a fake registry does with one request.
enum Reply {
    /// A status line ("200 OK"), extra header lines, a body.
    Send(&'static str, String, Vec<u8>),
    /// Announces `.0` bytes, sends `.1` (fewer) and closes the connection.
    Truncated(usize, Vec<u8>),
    /// Announces `.0` bytes, sends `.1` (fewer) and then nothing, ever.
    StallAfter(usize, Vec<u8>),
}

/// A registry on loopback that answers each request what `route(path,
/// its own port)` says, one thread per connection; it lives until the test
/// binary ends.
fn fake_registry(route: impl Fn(&str, u16) -> Reply + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let route = std::sync::Arc::new(route);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let route = route.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
                let head = |status: &str, len: usize, extra: &str| {
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n"
                    )
                };
                match route(&path, port) {
                    Reply::Send(status, extra, body) => {
                        let _ = stream.write_all(head(status, body.len(), &extra).as_bytes());
                        let _ = stream.write_all(&body);
                    }
                    Reply::Truncated(len, part) => {
                        let _ = stream.write_all(head("200 OK", len, "").as_bytes());
                        let _ = stream.write_all(&part);
                    }
                    Reply::StallAfter(len, part) => {
                        let _ = stream.write_all(head("200 OK", len, "").as_bytes());
                        let _ = stream.write_all(&part);
                        let _ = stream.flush();
                        std::thread::sleep(Duration::from_secs(120));
                    }
                }
                let _ = stream.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    port
}

/// A fake registry serving `image` as test/img:1, except that the answer for
/// a path ending in `broken` is `reply`.
fn serving(image: Tiny, broken: String, reply: impl Fn() -> Reply + Send + Sync + 'static) -> u16 {
    let manifest_type = "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n".to_string();
    fake_registry(move |path, _| {
        if path.ends_with(&broken) {
            reply()
        } else if path.ends_with("/manifests/1") {
            Reply::Send("200 OK", manifest_type.clone(), image.manifest.clone())
        } else if path.ends_with(&sha(&image.config)) {
            Reply::Send("200 OK", String::new(), image.config.clone())
        } else if path.ends_with(&sha(&image.layer)) {
            Reply::Send("200 OK", String::new(), image.layer.clone())
        } else {
            Reply::Send("404 Not Found", String::new(), Vec::new())
        }
    })
}

/// The store holds no image and no blob named `digest`, whole or partial.
fn assert_nothing_stored(client: &Client, digest: &str) {
    assert_eq!(
        stdout_of(&client.step10(&["images"], "")),
        "",
        "a refused pull must leave no image"
    );
    let blobs = client.store.path().join("blobs/sha256");
    let left: Vec<String> = std::fs::read_dir(&blobs)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&digest[7..]) || n.contains("tmp") || n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "half-stored blobs left: {left:?}");
}

#[test]
fn a_stalled_registry_is_a_clear_timeout_and_nothing_is_half_stored() {
    let image = Tiny::new(64 << 10);
    let layer = sha(&image.layer);
    let (len, part) = (image.layer.len(), image.layer[..1000].to_vec());
    let port = serving(image, layer.clone(), move || {
        Reply::StallAfter(len, part.clone())
    });
    let client = Client::new();
    let reference = format!("127.0.0.1:{port}/test/img:1");
    let started = Instant::now();
    let out = client.step10(&["--timeout", "1", "pull", &reference], "");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.lines()
            .last()
            .unwrap_or("")
            .contains("no answer within 1 s"),
        "step 10: a registry that stops sending must time out with a clear line:\n{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the timeout was not honoured"
    );
    assert_nothing_stored(&client, &layer);
}

#[test]
fn a_truncated_blob_is_refused_and_nothing_is_half_stored() {
    let image = Tiny::new(64 << 10);
    let layer = sha(&image.layer);
    let (len, part) = (
        image.layer.len(),
        image.layer[..image.layer.len() / 2].to_vec(),
    );
    let port = serving(image, layer.clone(), move || {
        Reply::Truncated(len, part.clone())
    });
    let client = Client::new();
    let out = client.step10(&["pull", &format!("127.0.0.1:{port}/test/img:1")], "");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.lines().last().unwrap_or("").starts_with("step10: "),
        "one clear last line: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_nothing_stored(&client, &layer);
}

#[test]
fn an_oversized_manifest_is_refused() {
    let port = serving(Tiny::new(5), "/manifests/1".into(), || {
        Reply::Send(
            "200 OK",
            "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n".into(),
            vec![b' '; 5 << 20],
        )
    });
    let client = Client::new();
    let out = client.step10(&["pull", &format!("127.0.0.1:{port}/test/img:1")], "");
    assert_one_line_error(&out, 10, 125, "bound for a manifest");
}

#[test]
fn malformed_answers_are_one_clear_line() {
    // A manifest that is not JSON.
    let port = serving(Tiny::new(5), "/manifests/1".into(), || {
        Reply::Send("200 OK", String::new(), b"{not json".to_vec())
    });
    let client = Client::new();
    let out = client.step10(&["pull", &format!("127.0.0.1:{port}/test/img:1")], "");
    assert_one_line_error(&out, 10, 125, "bad answer");
    // A 401 whose WWW-Authenticate header means nothing.
    let port = serving(Tiny::new(5), "/manifests/1".into(), || {
        Reply::Send(
            "401 Unauthorized",
            "WWW-Authenticate: Gibberish\r\n".into(),
            Vec::new(),
        )
    });
    let out = client.step10(&["pull", &format!("127.0.0.1:{port}/test/img:1")], "");
    assert_one_line_error(&out, 10, 125, "WWW-Authenticate");
    // A token server whose answer is not JSON.
    let port = fake_registry(|path, port| {
        if path.starts_with("/token") {
            Reply::Send("200 OK", String::new(), b"<html>".to_vec())
        } else {
            Reply::Send(
                "401 Unauthorized",
                format!("WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\"\r\n"),
                Vec::new(),
            )
        }
    });
    let out = client.step10(&["pull", &format!("127.0.0.1:{port}/test/img:1")], "");
    assert_one_line_error(&out, 10, 125, "token answer is not JSON");
    assert_nothing_stored(&client, "sha256:none");
}

#[test]
fn push_in_chunks_to_another_registry_round_trips() {
    let from = Registry::start(None);
    let to = Registry::start(None);
    let img = image("chunked");
    from.put(&img.path().join("layout"), "test/img:1", false, None);
    let client = Client::new();
    let source = format!("{}/test/img:1", from.host());
    stdout_of(&client.step10(&["pull", &source], ""));
    let target = format!("{}/test/img:1", to.host());
    let out = client.step10(
        &["push", &source, "--to", &target, "--chunk-size", "64k"],
        "",
    );
    stdout_of(&out);
    assert!(
        text(&out.stderr).contains(" chunks"),
        "step 10: a blob above --chunk-size goes in PATCHes:\n{}",
        text(&out.stderr)
    );
    assert_eq!(
        to.raw_manifest("test/img:1"),
        from.raw_manifest("test/img:1"),
        "the chunked push must give the same manifest"
    );
    let fresh = Client::new();
    stdout_of(&fresh.step10(&["pull", &target], ""));
}

#[test]
fn plain_http_only_to_loopback_or_a_listed_insecure_registry() {
    // A real registry on a non-loopback address, inside the test's own
    // network namespace (on its lo, so nothing leaves it).
    let netns = TestNetns::new();
    netns.sh("ip addr add 10.99.0.1/32 dev lo");
    let registry = Registry::start_at(None, Some(&netns), "10.99.0.1");
    let img = image("insecure");
    registry.put(&img.path().join("layout"), "test/img:1", false, None);
    let client = Client::new();
    let reference = format!("{}/test/img:1", registry.host());
    let out = client.step10_in(netns.step(10), &["--timeout", "5", "pull", &reference], "");
    assert_one_line_error(&out, 10, 125, "--insecure-registry");
    let out = client.step10_in(
        netns.step(10),
        &["--insecure-registry", &registry.host(), "pull", &reference],
        "",
    );
    assert_eq!(stdout_of(&out).trim(), format!("pulled {reference}"));
}
