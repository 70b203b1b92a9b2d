//! What an image costs: unpacking a layer (MB/s), beside `umoci unpack` of
//! the same image in the same run, and the time to a first run of it,
//! beside `umoci unpack` + `runc run`; and pulling it from a registry on
//! loopback, beside `skopeo copy`.
//!
//! Run with `cargo bench --bench images` as root, with umoci, runc, skopeo
//! and docker-registry installed (`sudo apt-get install umoci runc skopeo
//! docker-registry`).

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use caixa::image::overlay::ensure_layer;
use caixa::image::store::Store;
use caixa::image::unpack::Shift;
use caixa::trace::Trace;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sha2::{Digest, Sha256};

/// 48 MiB in 384 files of pseudo-random bytes (gzip cannot shrink them to
/// nothing), plus a static busybox so the image runs.
fn layer() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let add = |builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        builder.append_data(&mut h, path, data).unwrap();
    };
    add(
        &mut builder,
        "bin/busybox",
        &std::fs::read("/bin/busybox").unwrap(),
        0o755,
    );
    for i in 0..384 {
        let data: Vec<u8> = (0..128 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state & 0x3f) as u8 + b' '
            })
            .collect();
        add(
            &mut builder,
            &format!("data/{}/file{i}", i % 16),
            &data,
            0o644,
        );
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    builder.append_link(&mut h, "bin/true", "busybox").unwrap();
    builder.into_inner().unwrap()
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Writes an OCI layout with the one layer; returns (layer digest, diff_id).
fn layout(dir: &Path, tar: &[u8]) -> (String, String) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let blob = |bytes: &[u8]| {
        let d = sha(bytes);
        std::fs::write(dir.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
        (d, bytes.len())
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(tar).unwrap();
    let (ld, ls) = blob(&gz.finish().unwrap());
    let diff = sha(tar);
    let config = serde_json::json!({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[diff]},"config":{"Cmd":["/bin/true"]}});
    let (cd, cs) = blob(config.to_string().as_bytes());
    let manifest = serde_json::json!({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":cd,"size":cs},
        "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":ld,"size":ls}]});
    let (md, ms) = blob(manifest.to_string().as_bytes());
    let index = serde_json::json!({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "digest":md,"size":ms,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    (ld, diff)
}

fn unpack(c: &mut Criterion) {
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-images");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let tar = layer();
    let (blob, diff) = layout(&work.join("layout"), &tar);
    let store = Store::open(work.join("store")).unwrap();
    let hex = &blob[7..];
    store
        .put_blob(
            &blob,
            None,
            std::fs::File::open(work.join("layout/blobs/sha256").join(hex)).unwrap(),
        )
        .unwrap();
    let shift = Shift::IDENTITY;
    let mut group = c.benchmark_group("unpack a 48 MiB layer (tar+gzip)");
    group.throughput(Throughput::Bytes(tar.len() as u64));
    group.bench_function("caixa", |b| {
        b.iter(|| {
            let _ = std::fs::remove_dir_all(store.layers_dir("0-0"));
            ensure_layer(
                &store,
                "application/vnd.oci.image.layer.v1.tar+gzip",
                &blob,
                &diff,
                &shift,
                &Trace::new(false),
            )
            .unwrap();
        })
    });
    let bundle = work.join("bundle");
    let layout_ref = format!("{}:bench", work.join("layout").display());
    group.bench_function("umoci unpack", |b| {
        b.iter(|| {
            let _ = std::fs::remove_dir_all(&bundle);
            let status = Command::new("umoci")
                .args(["unpack", "--image", &layout_ref])
                .arg(&bundle)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("umoci (sudo apt-get install umoci)");
            assert!(status.success());
        })
    });
    group.finish();
    first_run(c, &work);
    engine(c, &work);
    pull(
        c,
        &work,
        std::fs::metadata(work.join("layout/blobs/sha256").join(hex)).map_or(0, |m| m.len()),
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// A process killed on drop (a daemon of the bench's).
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The same container through step 11's daemon (client → API → shim →
/// container), beside step 10 running it directly, and the Docker CLI as the
/// client of the same daemon.
fn engine(c: &mut Criterion, work: &Path) {
    let step11 = env!("CARGO_BIN_EXE_step11");
    let root = work.join("engine-root");
    let socket = work.join("engine.sock");
    quiet(
        Command::new(env!("CARGO_BIN_EXE_step9"))
            .arg("--root")
            .arg(&root)
            .arg("load")
            .arg(work.join("layout"))
            .args(["--name", "bench:1"]),
    );
    let _daemon = Daemon(
        Command::new(step11)
            .arg("--root")
            .arg(&root)
            .arg("daemon")
            .arg("--socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let host = format!("unix://{}", socket.display());
    let mut group = c.benchmark_group("run /bin/true of an unpacked image, --network none");
    group.bench_function("caixa: step10 run (no daemon)", |b| {
        b.iter(|| {
            quiet(
                Command::new(env!("CARGO_BIN_EXE_step10"))
                    .arg("--root")
                    .arg(&root)
                    .args(["run", "--network", "none", "bench:1"]),
            )
        })
    });
    group.bench_function("caixa: step11 run --rm (through the daemon)", |b| {
        b.iter(|| {
            quiet(Command::new(step11).args([
                "-H",
                &host,
                "run",
                "--rm",
                "--network",
                "none",
                "bench:1",
            ]))
        })
    });
    let docker = Path::new("/opt/caixa-peers/docker");
    if docker.is_file() {
        group.bench_function("docker CLI run --rm (to caixa's daemon)", |b| {
            b.iter(|| {
                quiet(
                    Command::new(docker)
                        .args(["-H", &host, "run", "--rm", "--network", "none", "bench:1"])
                        .env("DOCKER_CONFIG", work.join("docker-config")),
                )
            })
        });
    }
    group.finish();
}

/// A docker-registry on a free loopback port, killed on drop.
struct Registry(std::process::Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Pulling the image from a registry on loopback: `step10 pull` into a
/// fresh store, beside `skopeo copy` of it into a fresh OCI layout.
fn pull(c: &mut Criterion, work: &Path, layer_bytes: u64) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let dir = work.join("registry");
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}/data\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.display()
    );
    std::fs::write(dir.join("config.yml"), config).unwrap();
    let _registry = Registry(
        Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (sudo apt-get install docker-registry)"),
    );
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let remote = format!("docker://127.0.0.1:{port}/bench/img:1");
    quiet(
        Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:bench", work.join("layout").display()))
            .arg(&remote),
    );
    let store = work.join("pull-store");
    let copy = work.join("pull-copy");
    let mut group = c.benchmark_group("pull a 48 MiB image from a registry on loopback");
    group.throughput(Throughput::Bytes(layer_bytes));
    group.bench_function("caixa: step10 pull", |b| {
        b.iter(|| {
            let _ = std::fs::remove_dir_all(&store);
            quiet(
                Command::new(env!("CARGO_BIN_EXE_step10"))
                    .arg("--root")
                    .arg(&store)
                    .args(["pull", &format!("127.0.0.1:{port}/bench/img:1")]),
            );
        })
    });
    group.bench_function("skopeo copy", |b| {
        b.iter(|| {
            let _ = std::fs::remove_dir_all(&copy);
            quiet(
                Command::new("skopeo")
                    .args(["copy", "--src-tls-verify=false"])
                    .arg(&remote)
                    .arg(format!("oci:{}:bench", copy.display())),
            );
        })
    });
    group.finish();
}

/// Runs `cmd` quietly; panics with its stderr if it fails.
fn quiet(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// From the image on disk (an OCI layout) to `/bin/true` run in it and
/// ended: caixa's `step9 load` + `step9 run`, beside `umoci unpack` +
/// `runc run` of the same layout. Then a next run, the layers there.
fn first_run(c: &mut Criterion, work: &Path) {
    let step9 = env!("CARGO_BIN_EXE_step9");
    let layout = work.join("layout");
    let store = work.join("first-run-store");
    let bundle = work.join("first-run-bundle");
    let layout_ref = format!("{}:bench", layout.display());
    let id = format!("caixa-bench-{}", std::process::id());
    let caixa_load = || {
        quiet(
            Command::new(step9)
                .arg("--root")
                .arg(&store)
                .arg("load")
                .arg(&layout)
                .args(["--name", "bench"]),
        )
    };
    let caixa_run = || {
        quiet(Command::new(step9).arg("--root").arg(&store).args([
            "run",
            "--network",
            "none",
            "bench",
        ]))
    };
    let umoci_unpack = || {
        quiet(
            Command::new("umoci")
                .args(["unpack", "--image", &layout_ref])
                .arg(&bundle),
        );
        // umoci writes a runtime config from the image's; run it without a
        // terminal, as caixa does.
        let path = bundle.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config["process"]["terminal"] = false.into();
        std::fs::write(&path, config.to_string()).unwrap();
    };
    let runc_run = || {
        quiet(
            Command::new("runc")
                .args(["run", "--bundle"])
                .arg(&bundle)
                .arg(&id),
        )
    };
    let mut group = c.benchmark_group("time to first run of a 48 MiB image");
    group.bench_function("caixa: step9 load + run", |b| {
        b.iter(|| {
            let _ = std::fs::remove_dir_all(&store);
            caixa_load();
            caixa_run();
        })
    });
    group.bench_function("umoci unpack + runc run", |b| {
        b.iter(|| {
            let _ = std::fs::remove_dir_all(&bundle);
            umoci_unpack();
            runc_run();
        })
    });
    group.finish();
    let mut group = c.benchmark_group("next run of the image (unpacked already)");
    group.bench_function("caixa: step9 run", |b| b.iter(caixa_run));
    group.bench_function("runc run", |b| b.iter(runc_run));
    group.finish();
    let _ = std::fs::remove_dir_all(&store);
    let _ = std::fs::remove_dir_all(&bundle);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(8));
    targets = unpack
}
criterion_main!(benches);
