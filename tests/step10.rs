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

/// A registry on 127.0.0.1, with its storage in a temporary directory.
struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
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
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}/data\nhttp:\n  addr: 127.0.0.1:{port}\n",
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
        let child = Command::new("docker-registry")
            .args(["serve", dir.path().join("config.yml").to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (sudo apt-get install docker-registry)");
        let registry = Registry { child, dir, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "the registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Puts the OCI layout `layout` (tag `base`) at `repo:tag` with skopeo.
    fn put(&self, layout: &Path, repo_tag: &str, all: bool, creds: Option<&str>) {
        let mut cmd = Command::new("skopeo");
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
        let out = Command::new("skopeo")
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
    let layout = dir.path().join("layout");
    let bundle = dir.path().join("bundle");
    let script = format!(
        "set -e; umoci init --layout {l}; umoci new --image {l}:base; umoci unpack --image {l}:base {b}; \
         cp -a {r}/. {b}/rootfs/; umoci repack --image {l}:base {b}; \
         umoci config --image {l}:base --config.cmd /bin/sh --config.cmd -c --config.cmd 'cat /marker'",
        l = layout.display(),
        b = bundle.display(),
        r = rootfs.path()
    );
    let status = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .status()
        .expect("umoci (sudo apt-get install umoci)");
    assert!(status.success(), "umoci failed");
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
        let mut child = Command::new(binary(10))
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
    let img = image("amd64-variant");
    let layout = img.path().join("layout");
    // Make an index of two platforms: the image as built, and a copy whose
    // config says arm64 (same layers), each with its own manifest.
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
    config["architecture"] = "arm64".into();
    let cbytes = config.to_string().into_bytes();
    manifest["config"]["digest"] = write_blob(&cbytes).into();
    manifest["config"]["size"] = cbytes.len().into();
    let m2_bytes = manifest.to_string().into_bytes();
    let m2 = write_blob(&m2_bytes);
    let list = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m1, "size": m1_bytes.len(), "platform": { "os": "linux", "architecture": "amd64" } },
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m2, "size": m2_bytes.len(), "platform": { "os": "linux", "architecture": "arm64" } },
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
    stdout_of(&client.step10(&["pull", "--platform", "linux/arm64", &reference], ""));
    let images = stdout_of(&client.step10(&["images"], ""));
    assert!(
        images.contains(&m2),
        "--platform linux/arm64 must pick the arm64 manifest:\n{images}"
    );
    let other = Client::new();
    stdout_of(&other.step10(&["pull", &reference], ""));
    let images = stdout_of(&other.step10(&["images"], ""));
    assert!(
        images.contains(&m1),
        "this machine (linux/amd64) gets the amd64 manifest:\n{images}"
    );
}

/// A fake registry that wants a Bearer token from its own /token endpoint,
/// serving one small image: enough to exercise the token flow end to end.
#[test]
fn the_bearer_token_flow_works() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let layer = {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "hello", &b"hello"[..]).unwrap();
        tar.into_inner().unwrap()
    };
    let config = serde_json::json!({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[sha(&layer)]}}).to_string().into_bytes();
    let manifest = serde_json::json!({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":sha(&config),"size":config.len()},
        "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":sha(&layer),"size":layer.len()}]}).to_string().into_bytes();
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
