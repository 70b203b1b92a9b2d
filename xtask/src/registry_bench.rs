//! `bench-registry`: caixa's registry and client beside Debian's
//! distribution registry and skopeo, timed in the same run (issue 17's
//! bench), and a warm-cache rebuild.
//!
//! The image is ~48 MiB of random bytes in three layers (umoci), so that
//! compression and deduplication save nothing. Each run starts both
//! registries on empty stores (a registry that already holds a blob skips
//! its upload, and caixa's store shares blobs between repositories), then
//! times, interleaved: `step10 push` to `step11 registry`, `skopeo copy`
//! to `docker-registry`, `step10 pull` into an empty store, `skopeo copy`
//! back into an empty OCI layout. The rebuild is `step11 build` of one
//! Dockerfile twice against a daemon of the bench's own, the second timed
//! (every step a cache hit). The table gives min, median and max, and the
//! ratios of medians; `step10 pull` also verifies and records what it
//! stores, skopeo only writes blobs, so the pull ratio overstates caixa's
//! cost a little.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The registries' ports on loopback.
const CAIXA_PORT: u16 = 5731;
const DISTRIBUTION_PORT: u16 = 5732;

/// A server killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Entry point.
pub fn run(root: &Path, runs: usize) -> Result<()> {
    for tool in ["skopeo", "umoci", "docker-registry"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()?;
        if !found.status.success() {
            bail!("{tool} is not installed: sudo apt-get install skopeo umoci docker-registry");
        }
    }
    crate::sh(
        root,
        "cargo",
        &[
            "build",
            "--quiet",
            "--release",
            "--bin",
            "step9",
            "--bin",
            "step10",
            "--bin",
            "step11",
        ],
    )?;
    // Cargo's target directory: CARGO_TARGET_DIR (relative to the
    // workspace) or `target`, where the build above put the binaries.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |dir| root.join(dir));
    let bin = |n: u32| target.join(format!("release/step{n}"));
    let work = root.join("target/bench-registry");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let layout = image(&work)?;

    // The image in a caixa store, for step10 push.
    let source = work.join("source-store");
    let archive = work.join("img.tar");
    checked(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}:img", layout.display()))
            .arg(format!("oci-archive:{}:bench/img:1", archive.display())),
        "skopeo copy to an OCI archive",
    )?;
    checked(
        Command::new(bin(9))
            .arg("--root")
            .arg(&source)
            .arg("load")
            .arg(&archive)
            .args(["--name", &format!("127.0.0.1:{CAIXA_PORT}/bench/img:1")]),
        "step9 load",
    )?;

    let names = [
        "push: step10 → step11 registry",
        "push: skopeo → docker-registry",
        "pull: step10 ← step11 registry",
        "pull: skopeo ← docker-registry",
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); names.len()];
    for n in 0..runs {
        let (_caixa, _distribution) = registries(&work, &bin(11))?;
        let pulled = work.join(format!("pulled-{n}"));
        let steps: [(usize, Command, &str); 4] = [
            (0, step10(&bin(10), &source, "push"), "step10 push"),
            (
                1,
                skopeo(
                    &format!("oci:{}:img", layout.display()),
                    &format!("docker://127.0.0.1:{DISTRIBUTION_PORT}/bench/img:1"),
                ),
                "skopeo push",
            ),
            (
                2,
                step10(&bin(10), &pulled.join("caixa"), "pull"),
                "step10 pull",
            ),
            (
                3,
                skopeo(
                    &format!("docker://127.0.0.1:{DISTRIBUTION_PORT}/bench/img:1"),
                    &format!("oci:{}:img", pulled.join("skopeo").display()),
                ),
                "skopeo pull",
            ),
        ];
        for (k, mut cmd, what) in steps {
            let start = Instant::now();
            checked(&mut cmd, what)?;
            times[k].push(start.elapsed());
        }
        let _ = std::fs::remove_dir_all(&pulled);
    }
    let rebuilds = rebuild(&work, &bin(11), &archive, runs)?;

    println!("\n{runs} interleaved runs of a 48 MiB image in three layers (ms)");
    println!("{:<34} {:>8} {:>8} {:>8}", "what", "min", "median", "max");
    let mut medians = Vec::new();
    for (name, t) in names
        .iter()
        .copied()
        .zip(&mut times)
        .chain([("rebuild: step11 build, warm cache", &mut rebuilds.clone())])
    {
        let s = crate::peers::spread(t);
        medians.push(s.median);
        println!("{name:<34} {:>8.1} {:>8.1} {:>8.1}", s.min, s.median, s.max);
    }
    println!(
        "\nratios of medians (below 1.0: caixa is faster): push caixa/distribution = {:.2}   \
         pull caixa/distribution = {:.2}",
        medians[0] / medians[1],
        medians[2] / medians[3]
    );
    Ok(())
}

/// Both registries, on empty stores, listening.
fn registries(work: &Path, step11: &Path) -> Result<(Server, Server)> {
    let caixa_store = work.join("caixa-registry");
    let distribution_store = work.join("distribution");
    for dir in [&caixa_store, &distribution_store] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
    }
    let config = work.join("distribution.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{DISTRIBUTION_PORT}\n",
            distribution_store.display()
        ),
    )?;
    let quiet = |cmd: &mut Command| -> Result<Server> {
        Ok(Server(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        ))
    };
    let caixa = quiet(Command::new(step11).arg("--root").arg(&caixa_store).args([
        "registry",
        "--listen",
        &format!("127.0.0.1:{CAIXA_PORT}"),
    ]))?;
    let distribution = quiet(Command::new("docker-registry").arg("serve").arg(&config))?;
    for port in [CAIXA_PORT, DISTRIBUTION_PORT] {
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(15) {
                bail!("no registry listens on 127.0.0.1:{port} after 15 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok((caixa, distribution))
}

/// `step10 --root STORE push|pull` of the bench's image.
fn step10(step10: &Path, store: &Path, verb: &str) -> Command {
    let mut cmd = Command::new(step10);
    cmd.arg("--root")
        .arg(store)
        .arg(verb)
        .arg(format!("127.0.0.1:{CAIXA_PORT}/bench/img:1"));
    cmd
}

/// `skopeo copy` over plain HTTP.
fn skopeo(from: &str, to: &str) -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        from,
        to,
    ]);
    cmd
}

/// Runs `cmd`, failing with its stderr.
fn checked(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| what.to_string())?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `runs` timed second builds of one Dockerfile (a RUN and a COPY) against
/// a daemon of the bench's own, after one build that fills the cache.
fn rebuild(work: &Path, step11: &Path, archive: &Path, runs: usize) -> Result<Vec<Duration>> {
    let engine = work.join("engine");
    let socket = work.join("engine.sock");
    let _daemon = Server(
        Command::new(step11)
            .arg("--root")
            .arg(&engine)
            .arg("daemon")
            .arg("--socket")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if start.elapsed() > Duration::from_secs(15) {
            bail!("the bench's daemon does not listen on {}", socket.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let host = format!("unix://{}", socket.display());
    let client = |args: &[&str]| {
        let mut cmd = Command::new(step11);
        cmd.arg("-H").arg(&host).args(args);
        cmd
    };
    checked(
        client(&["load", "--name", "bench/img:1"]).arg(archive),
        "step11 load",
    )?;
    let context = work.join("context");
    std::fs::create_dir_all(&context)?;
    std::fs::write(
        context.join("Dockerfile"),
        "FROM bench/img:1\nRUN /bin/busybox mkdir -p /srv\nCOPY page.html /srv/page.html\n",
    )?;
    std::fs::write(context.join("page.html"), "rebuilt\n")?;
    let context = context.to_string_lossy().into_owned();
    let build = || client(&["build", "-t", "bench/site:1", &context]);
    checked(&mut build(), "step11 build (cold)")?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        checked(&mut build(), "step11 build (warm)")?;
        times.push(start.elapsed());
    }
    Ok(times)
}

/// A ~48 MiB image of random bytes in three layers, as an OCI layout.
fn image(work: &Path) -> Result<PathBuf> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .context("a static busybox: sudo apt-get install busybox-static")?;
    let layout = work.join("layout");
    let bundle = work.join("bundle");
    let mut script = format!(
        "set -e; umoci init --layout {l}; umoci new --image {l}:img; umoci unpack --image {l}:img {b}; \
         mkdir -p {b}/rootfs/bin {b}/rootfs/data; cp {busybox} {b}/rootfs/bin/busybox; ln -s busybox {b}/rootfs/bin/sh; ",
        l = layout.display(),
        b = bundle.display(),
    );
    for n in 0..3 {
        script.push_str(&format!(
            "head -c 16777216 /dev/urandom > {b}/rootfs/data/random-{n}; umoci repack --refresh-bundle --image {l}:img {b}; ",
            l = layout.display(),
            b = bundle.display(),
        ));
    }
    script.push_str(&format!(
        "umoci config --image {}:img --config.env PATH=/bin --config.cmd /bin/busybox",
        layout.display()
    ));
    let status = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("umoci could not build the bench's image");
    }
    Ok(layout)
}
