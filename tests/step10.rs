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
use support::{
    TestNetns, TinyRootfs, assert_one_line_error, binary, expect_success, likely_cause, stdout_of,
    text, wait_output,
};

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
                "step 10: expected the test's docker-registry to listen on {} within 15 s, it \
                 does not; most likely cause: docker-registry is missing or cannot bind the \
                 port (another test's registry still holds it)",
                registry.host()
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
        assert!(
            status.success(),
            "step 10: expected skopeo to copy the test image to the registry at {}, it ended \
             with {status}; most likely cause: the test's registry is not up, or skopeo is \
             missing (sudo apt-get install skopeo); its stderr is above",
            self.host()
        );
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
        assert!(
            out.status.success(),
            "step 10: expected skopeo to read the manifest of {repo_tag} from the test's \
             registry, it failed; most likely cause: the image was not pushed there (a push \
             under test that did not finish), or the registry is down\nstderr: {}",
            text(&out.stderr)
        );
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
    let said = expect_success(
        &out,
        "the pull by tag",
        "fetch_blob does not download or store a blob (GET /v2/NAME/blobs/DIGEST, then \
         store.put_blob(digest, Some(size), …))",
    );
    assert_eq!(
        said.trim(),
        format!("pulled {reference}"),
        "step 10: expected the pull to end with one line saying what it pulled, it said \
         {said:?}; most likely cause: pull prints its progress on stdout, which is for the \
         result only (progress goes to stderr)"
    );
    let netns = TestNetns::new();
    let out = client.run_in(&netns, &[&reference]);
    let seen = stdout_of(&out);
    assert_eq!(
        seen, "pulled-by-tag",
        "step 10: expected the pulled image's Cmd to print its marker, it printed {seen:?}; \
         most likely cause: fetch_blob stored another blob than the one asked for, so the \
         image run is not the one pulled"
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
        "step 10: expected a second pull of the same image to say \"already present\" for \
         every blob and download none; it printed:\n{}\nMost likely cause: fetch_blob does \
         not first skip a blob the store has (store.blob_path(digest)?.exists())",
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
    assert!(
        stdout_of(&out).starts_with(&format!("pushed {target}")),
        "step 10: expected the push to say \"pushed {target}\", it said {:?}; most likely \
         cause: push prints its progress on stdout, which is for the result only",
        text(&out.stdout)
    );
    let mounted = text(&out.stderr)
        .lines()
        .filter(|l| l.ends_with("mounted from test/img"))
        .count();
    assert!(
        mounted >= 2,
        "step 10: expected config and layer to be mounted from the source repository (same \
         registry), not uploaded, {mounted} lines say \"mounted from test/img\"; most likely \
         cause: upload does not first POST /blobs/uploads/?mount=DIGEST&from=REPO, or takes \
         its 202 (no mount) for a 201\n{}",
        text(&out.stderr)
    );
    assert_eq!(
        registry.raw_manifest("other/copy:2"),
        registry.raw_manifest("test/img:1"),
        "step 10: expected the pushed manifest to be byte-identical to the pulled one; most \
         likely cause: push serializes the manifest again (serde changes spacing and key \
         order) instead of sending the stored bytes, so its digest changes"
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
        "step 10: expected the credentials stored as Docker does (\"auths\", base64), not in \
         clear text, config.json holds {saved:?}; most likely cause: save_credentials writes \
         the password itself instead of base64(user:password) under auths.HOST.auth"
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
    let last = err.lines().last().unwrap_or("");
    let cause = "most likely cause: fetch_blob does not store the blob with \
                 store.put_blob(digest, Some(size), …), which hashes what it reads and \
                 refuses a blob whose digest is not the one asked for";
    assert_eq!(
        out.status.code(),
        Some(125),
        "step 10: expected the pull of a tampered blob to fail with exit code 125 and \
         \"digest mismatch\", it ended with {}; {cause}\nstderr: {err}",
        out.status
    );
    assert!(
        last.starts_with("step10: digest mismatch"),
        "step 10: expected the pull of a tampered blob to end with \"step10: digest \
         mismatch\", it ended with {last:?}; {cause}\nstderr: {err}"
    );
    let images = client.step10(&["images"], "");
    let listed = stdout_of(&images);
    assert_eq!(
        listed, "",
        "step 10: expected a refused pull to leave no image, `images` lists {listed:?}; most \
         likely cause: pull tags the image before every blob is downloaded and verified"
    );
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
        "step 10: expected --platform {platform} to pick that platform's manifest {m2}, \
         `images` lists another; most likely cause: the index's entry is chosen without the \
         asked platform (validate::choose must match --platform's os/architecture)\n{images}"
    );
    let other = Client::new();
    stdout_of(&other.step10(&["pull", &reference], ""));
    let images = stdout_of(&other.step10(&["images"], ""));
    assert!(
        images.contains(&m1),
        "step 10: expected a pull without --platform to pick this machine's manifest \
         (linux/{this}) {m1}, `images` lists another; most likely cause: the index's first \
         entry is taken instead of the one for this_platform()\n{images}"
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
    let said = expect_success(
        &out,
        "the pull from a registry that wants a Bearer token",
        "the client does not answer a 401's WWW-Authenticate: Bearer realm=… by asking the \
         realm for a token and retrying with Authorization: Bearer TOKEN",
    );
    assert_eq!(
        said.trim(),
        format!("pulled 127.0.0.1:{port}/test/img:1"),
        "step 10: expected the pull through the token flow to say what it pulled, it said \
         {said:?}; most likely cause: pull prints its progress on stdout"
    );
    // Unblock the server's remaining accepts and collect its verdict.
    for _ in 0..12 {
        let _ = TcpStream::connect(("127.0.0.1", port));
    }
    assert!(
        server.join().unwrap(),
        "step 10: expected the client to ask the realm for a token with the repository's \
         pull scope (scope=repository:test/img:pull), it did not; most likely cause: the \
         token request drops the challenge's scope, or does not percent-encode it"
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
    /// "200 OK" with extra header lines `.0`, then the body `.1` one byte
    /// every `.2`: never a pause long enough for a read timeout.
    Drip(String, Vec<u8>, Duration),
    /// A status line, then header bytes one every `.0`, without end.
    DripHead(Duration),
}

/// One request, as a fake registry sees it.
struct Asked {
    /// The request's path and query.
    path: String,
    /// Its `Authorization` header, if any.
    authorization: Option<String>,
    /// The server's own port (for a token realm on itself).
    port: u16,
}

/// A registry on loopback that answers each request what `route(path,
/// its own port)` says, one thread per connection; it lives until the test
/// binary ends.
fn fake_registry(route: impl Fn(&str, u16) -> Reply + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    serve(listener, move |asked: &Asked| {
        route(&asked.path, asked.port)
    })
}

/// Serves `listener` (which may be in a test's network namespace) with
/// `route`, one thread per connection, until the test binary ends.
fn serve(listener: TcpListener, route: impl Fn(&Asked) -> Reply + Send + Sync + 'static) -> u16 {
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
                let mut authorization = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if line.to_ascii_lowercase().starts_with("authorization:") {
                        authorization = Some(line[14..].trim().to_string());
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
                let head = |status: &str, len: usize, extra: &str| {
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n"
                    )
                };
                let asked = Asked {
                    path,
                    authorization,
                    port,
                };
                match route(&asked) {
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
                    Reply::Drip(extra, body, every) => {
                        let _ = stream.write_all(head("200 OK", body.len(), &extra).as_bytes());
                        for byte in body {
                            std::thread::sleep(every);
                            if stream.write_all(&[byte]).is_err() {
                                break;
                            }
                        }
                    }
                    Reply::DripHead(every) => {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nX-Drip: ");
                        for _ in 0..100_000 {
                            std::thread::sleep(every);
                            if stream.write_all(b"a").is_err() {
                                break;
                            }
                        }
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
    let listed = stdout_of(&client.step10(&["images"], ""));
    assert_eq!(
        listed, "",
        "step 10: expected a refused pull to leave no image, `images` lists {listed:?}; most \
         likely cause: pull tags the image before every blob is downloaded and verified"
    );
    let blobs = client.store.path().join("blobs/sha256");
    let left: Vec<String> = std::fs::read_dir(&blobs)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&digest[7..]) || n.contains("tmp") || n.starts_with('.'))
        .collect();
    assert!(
        left.is_empty(),
        "step 10: expected no blob named {digest} and no half-written one left after a refused \
         pull, found {left:?}; most likely cause: fetch_blob writes the download straight to \
         its final name instead of through store.put_blob (a temporary file renamed only once \
         its digest and size are right)"
    );
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
    assert_eq!(
        out.status.code(),
        Some(125),
        "step 10: expected a pull from a stalled registry to fail with exit code 125, it \
         ended with {}; most likely cause: {}\nstderr: {err}",
        out.status,
        likely_cause(&err)
    );
    assert!(
        err.lines()
            .last()
            .unwrap_or("")
            .contains("no answer within 1 s"),
        "step 10: expected a registry that stops sending to end the pull with a last line \
         saying \"no answer within 1 s\", it did not; most likely cause: the blob's body is \
         read without the client's deadline (answer.body() watches it)\n{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "step 10: expected --timeout 1 to end a stalled pull well within 60 s, it took {:?}; \
         most likely cause: the blob's body is read without the client's deadline \
         (answer.body() watches it)",
        started.elapsed()
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
    assert_eq!(
        out.status.code(),
        Some(125),
        "step 10: expected a pull of a truncated blob to fail with exit code 125, it ended \
         with {}; most likely cause: fetch_blob stores the blob without its size to check \
         (store.put_blob(digest, Some(size), …)) ({})\nstderr: {err}",
        out.status,
        likely_cause(&err)
    );
    assert!(
        err.lines().last().unwrap_or("").starts_with("step10: "),
        "step 10: expected one clear last line starting with \"step10: \", the last line is \
         {:?}; most likely cause: {}\nstderr: {err}",
        err.lines().last().unwrap_or(""),
        likely_cause(&err)
    );
    assert!(
        !err.contains("panicked"),
        "step 10: expected a clear error, the step panicked; most likely cause: {}\n\
         stderr: {err}",
        likely_cause(&err)
    );
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
        "step 10: expected a blob above --chunk-size 64k to go in PATCHes (\" chunks\" on \
         stderr), it did not; most likely cause: upload sends the blob in one PUT whatever \
         --chunk-size says\n{}",
        text(&out.stderr)
    );
    assert_eq!(
        to.raw_manifest("test/img:1"),
        from.raw_manifest("test/img:1"),
        "step 10: expected the chunked push to give the same manifest bytes; most likely \
         cause: push serializes the manifest again instead of sending the stored bytes"
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
    let said = stdout_of(&out);
    assert_eq!(
        said.trim(),
        format!("pulled {reference}"),
        "step 10: expected the pull to work once the registry is listed with \
         --insecure-registry, it said {said:?}; most likely cause: plain_http_ok does not \
         allow a host named by --insecure-registry"
    );
}

// Hostile registries: each test runs a registry of its own that lies in one
// way, on loopback inside the test's own network namespace, and pulls from
// it with step 10 run in that namespace.

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// This machine's architecture as images name it.
fn this_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// An image of `n` one-file layers: its manifest (to change at will),
/// config and layers.
struct Layered {
    manifest: serde_json::Value,
    blobs: Vec<Vec<u8>>,
}

fn layered(n: usize) -> Layered {
    let layers: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut tar = tar::Builder::new(Vec::new());
            let content = format!("layer {i}\n").into_bytes();
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, format!("file{i}"), &content[..])
                .unwrap();
            tar.into_inner().unwrap()
        })
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let config = serde_json::json!({"architecture": this_arch(), "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    .to_string()
    .into_bytes();
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({"mediaType": OCI_LAYER, "digest": sha(l), "size": l.len()})).collect::<Vec<_>>()});
    let mut blobs = vec![config];
    blobs.extend(layers);
    Layered { manifest, blobs }
}

/// A hostile registry in `netns`: `documents` are (tag, Content-Type, body),
/// each served by its tag and by its digest; `blobs` by their digests;
/// except where `lie` answers first.
fn hostile(
    netns: &TestNetns,
    documents: Vec<(&'static str, &'static str, Vec<u8>)>,
    blobs: Vec<Vec<u8>>,
    lie: impl Fn(&Asked) -> Option<Reply> + Send + Sync + 'static,
) -> u16 {
    serve(netns.listen_loopback(), move |asked: &Asked| {
        if let Some(reply) = lie(asked) {
            return reply;
        }
        for (tag, media, body) in &documents {
            if asked.path.ends_with(&format!("/manifests/{tag}"))
                || asked.path.ends_with(&format!("/manifests/{}", sha(body)))
            {
                return Reply::Send("200 OK", format!("Content-Type: {media}\r\n"), body.clone());
            }
        }
        for blob in &blobs {
            if asked.path.ends_with(&format!("/blobs/{}", sha(blob))) {
                return Reply::Send("200 OK", String::new(), blob.clone());
            }
        }
        Reply::Send("404 Not Found", String::new(), Vec::new())
    })
}

/// `step10 [options] pull 127.0.0.1:PORT/test/img:TAG` inside `netns`.
fn pull_in(netns: &TestNetns, client: &Client, port: u16, tag: &str, options: &[&str]) -> Output {
    let reference = format!("127.0.0.1:{port}/test/img:{tag}");
    let mut args = options.to_vec();
    args.extend(["pull", reference.as_str()]);
    client.step10_in(netns.step(10), &args, "")
}

/// A pull refused with one line holding `needle`, and no image left.
fn assert_refused(out: &Output, client: &Client, needle: &str) {
    assert_one_line_error(out, 10, 125, needle);
    assert_refused_image(client);
}

/// A pull that failed with `needle` on its last line (the progress lines
/// of blobs that did come may precede it), leaving no image.
fn assert_failed_with(out: &Output, client: &Client, needle: &str) {
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(125),
        "step 10: expected the pull to fail with exit code 125 and {needle:?}, it ended with \
         {}; most likely cause: {}\nstderr: {err}",
        out.status,
        likely_cause(&err)
    );
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("step10: ") && last.contains(needle),
        "step 10: expected {needle:?} in the last line, it is {last:?}; most likely cause: \
         a read of the registry's answer is not bounded by the client's deadline (a registry \
         that drips bytes never trips a per-read timeout)\nstderr: {err}"
    );
    assert_refused_image(client);
}

/// No image in `client`'s store.
fn assert_refused_image(client: &Client) {
    let listed = stdout_of(&client.step10(&["images"], ""));
    assert_eq!(
        listed, "",
        "step 10: expected a refused pull to leave no image, `images` lists {listed:?}; most \
         likely cause: pull tags the image before every blob is downloaded and verified"
    );
}

/// A counter the registry's threads and the test share.
fn counter() -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0))
}

#[test]
fn a_registry_that_drips_bytes_meets_a_deadline() {
    let netns = TestNetns::new();
    let image = layered(1);
    let manifest = image.manifest.to_string().into_bytes();
    let layer = sha(&image.blobs[1]);
    let every = Duration::from_millis(100);
    // A manifest, then a blob, sent one byte every 100 ms: never a pause
    // of a second (--timeout 1), and far longer than either may take.
    let dripped = manifest.clone();
    let port = hostile(&netns, vec![], image.blobs.clone(), move |asked| {
        asked.path.ends_with("/manifests/1").then(|| {
            Reply::Drip(
                format!("Content-Type: {OCI_MANIFEST}\r\n"),
                dripped.clone(),
                every,
            )
        })
    });
    let client = Client::new();
    let out = pull_in(&netns, &client, port, "1", &["--timeout", "1"]);
    assert_failed_with(&out, &client, "not complete within");
    let layer_bytes = image.blobs[1].clone();
    let port = hostile(
        &netns,
        vec![("1", OCI_MANIFEST, manifest.clone())],
        vec![image.blobs[0].clone()],
        move |asked| {
            asked
                .path
                .ends_with(&layer)
                .then(|| Reply::Drip(String::new(), layer_bytes.clone(), every))
        },
    );
    let out = pull_in(&netns, &client, port, "1", &["--timeout", "1"]);
    assert_failed_with(&out, &client, "not complete within");
    // A token server that drips its answer.
    let port = hostile(
        &netns,
        vec![("1", OCI_MANIFEST, manifest.clone())],
        image.blobs.clone(),
        move |asked| {
            if asked.path.starts_with("/token") {
                let token = format!("{{\"token\":\"t\"}}{}", " ".repeat(300));
                Some(Reply::Drip(String::new(), token.into_bytes(), every))
            } else {
                let challenge = format!(
                    "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{}/token\"\r\n",
                    asked.port
                );
                Some(Reply::Send("401 Unauthorized", challenge, Vec::new()))
            }
        },
    );
    let out = pull_in(&netns, &client, port, "1", &["--timeout", "1"]);
    assert_failed_with(&out, &client, "not complete within");
    // Headers, dripped without end: the answer never begins.
    let port = hostile(&netns, vec![], vec![], move |_| {
        Some(Reply::DripHead(every))
    });
    let out = pull_in(&netns, &client, port, "1", &["--timeout", "1"]);
    assert_refused(&out, &client, "no answer within 1 s");
}

#[test]
fn a_registry_cannot_make_a_pull_open_thousands_of_downloads() {
    let netns = TestNetns::new();
    let client = Client::new();
    // Ten thousand layers: refused before any blob is asked for.
    let image = layered(1);
    let mut manifest = image.manifest.clone();
    manifest["layers"] = (0..10_000)
        .map(|i| serde_json::json!({"mediaType": OCI_LAYER, "digest": sha(format!("{i}").as_bytes()), "size": 1}))
        .collect();
    let asked_blobs = counter();
    let seen = asked_blobs.clone();
    let port = hostile(
        &netns,
        vec![("1", OCI_MANIFEST, manifest.to_string().into_bytes())],
        image.blobs,
        move |asked| {
            if asked.path.contains("/blobs/") {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            None
        },
    );
    let out = pull_in(&netns, &client, port, "1", &[]);
    assert_refused(&out, &client, "10000 layers");
    assert_eq!(
        asked_blobs.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "step 10: expected a manifest of too many layers to be refused before any download, \
         the registry was asked for {} blobs; most likely cause: the manifest's layer count is \
         checked after the downloads start",
        asked_blobs.load(std::sync::atomic::Ordering::SeqCst)
    );
    // Twelve real layers: all come, a few at a time. The registry holds
    // each blob request a moment, counting how many are open at once.
    let image = layered(12);
    let (open, most) = (counter(), counter());
    let (open2, most2) = (open.clone(), most.clone());
    let port = hostile(
        &netns,
        vec![("1", OCI_MANIFEST, image.manifest.to_string().into_bytes())],
        image.blobs,
        move |asked| {
            if asked.path.contains("/blobs/") {
                use std::sync::atomic::Ordering::SeqCst;
                let now = open2.fetch_add(1, SeqCst) + 1;
                most2.fetch_max(now, SeqCst);
                std::thread::sleep(Duration::from_millis(200));
                open2.fetch_sub(1, SeqCst);
            }
            None
        },
    );
    let out = pull_in(&netns, &client, port, "1", &[]);
    stdout_of(&out);
    let most = most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=4).contains(&most),
        "step 10: expected blobs to download a few at a time (a pool of at most 4), {most} \
         were open together; most likely cause: download starts one thread per blob instead \
         of a small pool taking blobs from a shared queue"
    );
}

#[test]
fn a_pull_refuses_the_types_load_refuses() {
    let netns = TestNetns::new();
    let image = layered(1);
    let as_bytes = |v: &serde_json::Value| v.to_string().into_bytes();
    let mut unknown = image.manifest.clone();
    unknown["mediaType"] = "application/x-evil+json".into();
    let mut odd_layer = image.manifest.clone();
    odd_layer["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+lz4".into();
    let mut both = image.manifest.clone();
    both["manifests"] = serde_json::json!([]);
    let mut schema1 = image.manifest.clone();
    schema1["schemaVersion"] = 1.into();
    let port = hostile(
        &netns,
        vec![
            ("unknown", "application/x-evil+json", as_bytes(&unknown)),
            ("odd-layer", OCI_MANIFEST, as_bytes(&odd_layer)),
            ("both", OCI_MANIFEST, as_bytes(&both)),
            ("schema1", OCI_MANIFEST, as_bytes(&schema1)),
        ],
        image.blobs,
        |_| None,
    );
    let client = Client::new();
    for (tag, needle) in [
        ("unknown", "application/x-evil+json"),
        ("odd-layer", "unsupported media type"),
        ("both", "both an index"),
        ("schema1", "schemaVersion 1"),
    ] {
        let out = pull_in(&netns, &client, port, tag, &[]);
        assert_refused(&out, &client, needle);
    }
}

/// Nothing but printable text and line ends on stderr, in one line.
fn assert_printable(out: &Output) {
    let err = text(&out.stderr);
    let raw: Vec<char> = err
        .chars()
        .filter(|c| (c.is_control() && *c != '\n') || ('\u{202a}'..='\u{202e}').contains(c))
        .collect();
    assert!(
        raw.is_empty(),
        "step 10: expected no control character from the registry on stderr, {raw:?} reached \
         the terminal; most likely cause: a value from the registry (digest, media type, \
         platform) goes into an error message without validate::printable\n{err:?}"
    );
    assert_eq!(
        err.lines().count(),
        1,
        "step 10: expected one line of error, got {}; most likely cause: a registry's \
         \\r\\n went into the message raw (validate::printable escapes it)\n{err:?}",
        err.lines().count()
    );
}

#[test]
fn nothing_a_registry_sends_reaches_the_terminal_raw() {
    let netns = TestNetns::new();
    let image = layered(1);
    let forged = "sha256:\u{1b}]0;owned\u{7}\u{1b}[2J\r\nstep10: pulled evil";
    let index = |digest: &str, platform: &str| {
        let (os, arch) = platform.split_once('/').unwrap();
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": digest, "size": 500, "platform": {"os": os, "architecture": arch}}]})
        .to_string()
        .into_bytes()
    };
    let mut painted = image.manifest.clone();
    painted["layers"][0]["mediaType"] = "\u{1b}[31mred\u{202e}".into();
    let evil_platform = format!("linux/{}", "\u{1b}[1Aup\u{9b}2J");
    let port = hostile(
        &netns,
        vec![
            (
                "digest",
                OCI_INDEX,
                index(forged, &format!("linux/{}", this_arch())),
            ),
            ("type", OCI_MANIFEST, painted.to_string().into_bytes()),
            ("platform", OCI_INDEX, index(&sha(b"x"), &evil_platform)),
        ],
        image.blobs.clone(),
        |_| None,
    );
    let client = Client::new();
    for tag in ["digest", "type", "platform"] {
        let out = pull_in(&netns, &client, port, tag, &[]);
        assert_eq!(
            out.status.code(),
            Some(125),
            "step 10: expected a pull whose {tag} lies to be refused with exit code 125, it \
             ended with {}; most likely cause: {}\nstderr: {}",
            out.status,
            likely_cause(&text(&out.stderr)),
            text(&out.stderr)
        );
        assert_printable(&out);
    }
    // A token with a line break (a header injection) is neither used nor
    // shown: not even in an error.
    let manifest = image.manifest.to_string().into_bytes();
    let port = hostile(
        &netns,
        vec![("1", OCI_MANIFEST, manifest)],
        image.blobs,
        |asked| {
            if asked.path.starts_with("/token") {
                let token = br#"{"token":"s3cr3t-t0ken\r\nX-Injected: yes"}"#.to_vec();
                Some(Reply::Send("200 OK", String::new(), token))
            } else {
                let challenge = format!(
                    "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{}/token\"\r\n",
                    asked.port
                );
                Some(Reply::Send("401 Unauthorized", challenge, Vec::new()))
            }
        },
    );
    let out = pull_in(&netns, &client, port, "1", &[]);
    assert_eq!(
        out.status.code(),
        Some(125),
        "step 10: expected the pull to be refused with exit code 125 (a token with \\r\\n in \
         it), it ended with {}; most likely cause: is_bearer_token does not refuse a token \
         that is not a header-safe string ({})\nstderr: {}",
        out.status,
        likely_cause(&text(&out.stderr)),
        text(&out.stderr)
    );
    assert_printable(&out);
    assert!(
        !text(&out.stderr).contains("s3cr3t"),
        "step 10: expected the token never to be printed, stderr shows it; most likely \
         cause: the refusal of a bad token quotes the token itself\n{}",
        text(&out.stderr)
    );
}

#[test]
fn a_pull_is_bounded_in_bytes_and_by_free_space() {
    let netns = TestNetns::new();
    let image = layered(1);
    let claiming = |size: u64| {
        let mut m = image.manifest.clone();
        m["layers"][0]["size"] = size.into();
        m.to_string().into_bytes()
    };
    let asked_blobs = counter();
    let seen = asked_blobs.clone();
    let port = hostile(
        &netns,
        vec![
            ("2m", OCI_MANIFEST, claiming(2 << 20)),
            ("1t", OCI_MANIFEST, claiming(1 << 40)),
            ("600t", OCI_MANIFEST, claiming(600 << 40)),
        ],
        image.blobs,
        move |asked| {
            if asked.path.contains("/blobs/") {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            None
        },
    );
    let client = Client::new();
    for (tag, options, needle) in [
        (
            "2m",
            &["--max-pull-size", "1m"][..],
            "--max-pull-size 1.0 MiB",
        ),
        // The default bound.
        ("1t", &[][..], "--max-pull-size"),
        // Within the bound asked for, but no disk here has 600 TiB free.
        (
            "600t",
            &["--max-pull-size", "1000t"][..],
            "not enough free space",
        ),
    ] {
        let out = pull_in(&netns, &client, port, tag, options);
        assert_refused(&out, &client, needle);
    }
    assert_eq!(
        asked_blobs.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "step 10: expected the size of a pull to be checked before any blob is downloaded, \
         the registry was asked for {} blobs; most likely cause: Room::claim runs after the \
         downloads start, or not at all",
        asked_blobs.load(std::sync::atomic::Ordering::SeqCst)
    );
}

#[test]
fn smaller_lies_are_caught_and_told_as_they_are() {
    let netns = TestNetns::new();
    let image = layered(1);
    let manifest = image.manifest.to_string().into_bytes();
    let entry = |digest: &str, media: &str, os: &str, arch: &str| serde_json::json!({"mediaType": media, "digest": digest, "size": 100, "platform": {"os": os, "architecture": arch}});
    let index_of = |entries: Vec<serde_json::Value>| {
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
            .to_string()
            .into_bytes()
    };
    let elsewhere = index_of(vec![
        entry(&sha(&manifest), OCI_MANIFEST, "linux", "s390x"),
        entry(&sha(&manifest), OCI_MANIFEST, "windows", "amd64"),
    ]);
    let nested = index_of(vec![entry(
        &sha(&elsewhere),
        OCI_INDEX,
        "linux",
        this_arch(),
    )]);
    let lied_about = manifest.clone();
    let truncated = manifest.clone();
    let port = hostile(
        &netns,
        vec![
            ("elsewhere", OCI_INDEX, elsewhere),
            ("nested", OCI_INDEX, nested),
            ("as-index", OCI_INDEX, manifest.clone()),
        ],
        image.blobs.clone(),
        move |asked| {
            if asked.path.ends_with("/manifests/wrong-digest") {
                let header = format!(
                    "Content-Type: {OCI_MANIFEST}\r\nDocker-Content-Digest: sha256:{}\r\n",
                    "0".repeat(64)
                );
                Some(Reply::Send("200 OK", header, lied_about.clone()))
            } else if asked.path.ends_with("/manifests/cut") {
                Some(Reply::Truncated(truncated.len(), truncated[..10].to_vec()))
            } else {
                None
            }
        },
    );
    let client = Client::new();
    for (tag, needle) in [
        ("wrong-digest", "Docker-Content-Digest"),
        ("elsewhere", "it offers linux/s390x, windows/amd64"),
        ("nested", "nested"),
        ("as-index", "served as an index"),
        // The URL that failed, not a label glued onto the base URL.
        (
            "cut",
            &format!("http://127.0.0.1:{port}/v2/test/img/manifests/cut"),
        ),
    ] {
        let out = pull_in(&netns, &client, port, tag, &[]);
        assert_refused(&out, &client, needle);
    }
    // Credentials saved for the registry go to no token server on another
    // port of the same host.
    let (realm_listener, registry_listener) = (netns.listen_loopback(), netns.listen_loopback());
    let realm_port = realm_listener.local_addr().unwrap().port();
    let authorized = counter();
    let seen = authorized.clone();
    serve(realm_listener, move |asked: &Asked| {
        if asked.authorization.is_some() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Reply::Send(
            "200 OK",
            String::new(),
            br#"{"token":"anonymous"}"#.to_vec(),
        )
    });
    let blobs = image.blobs.clone();
    let port = serve(registry_listener, move |asked: &Asked| {
        if asked.authorization.as_deref() != Some("Bearer anonymous") {
            let challenge = format!(
                "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{realm_port}/token\"\r\n"
            );
            return Reply::Send("401 Unauthorized", challenge, Vec::new());
        }
        if asked.path.ends_with("/manifests/1") {
            let media = format!("Content-Type: {OCI_MANIFEST}\r\n");
            return Reply::Send("200 OK", media, manifest.clone());
        }
        match blobs.iter().find(|b| asked.path.ends_with(&sha(b))) {
            Some(blob) => Reply::Send("200 OK", String::new(), blob.clone()),
            None => Reply::Send("404 Not Found", String::new(), Vec::new()),
        }
    });
    let out = client.step10(
        &["login", &format!("127.0.0.1:{port}"), "-u", "me"],
        "s3cret\n",
    );
    stdout_of(&out);
    let out = pull_in(&netns, &client, port, "1", &[]);
    stdout_of(&out);
    assert_eq!(
        authorized.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "step 10: expected the credentials for 127.0.0.1:{port} not to go to a realm on \
         another port ({realm_port}), the realm got them {} times; most likely cause: \
         realm_may_get_credentials compares hosts without their ports",
        authorized.load(std::sync::atomic::Ordering::SeqCst)
    );
}

#[test]
fn a_blob_of_another_size_than_its_descriptor_says_is_refused() {
    let netns = TestNetns::new();
    let image = layered(1);
    let mut manifest = image.manifest.clone();
    let size = manifest["layers"][0]["size"].as_u64().unwrap_or(0);
    // The digest is right; only the size the manifest gives is not.
    manifest["layers"][0]["size"] = (size + 100).into();
    let port = hostile(
        &netns,
        vec![("1", OCI_MANIFEST, manifest.to_string().into_bytes())],
        image.blobs,
        |_| None,
    );
    let client = Client::new();
    let out = pull_in(&netns, &client, port, "1", &[]);
    let err = text(&out.stderr);
    assert!(
        out.status.code() == Some(125)
            && err
                .lines()
                .last()
                .unwrap_or("")
                .contains("as its descriptor says"),
        "step 10: expected the pull to be refused (exit code 125, \"… as its descriptor says\") \
         when a layer is {size} bytes and its manifest says {}; it ended with {}. Most likely \
         cause: fetch_blob does not give the store the descriptor's size to check, \
         put_blob(digest, Some(size), …)\nstderr: {err}",
        size + 100,
        out.status
    );
    assert_refused_image(&client);
}
