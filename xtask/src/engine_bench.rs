//! `bench-engine`: caixa's engine beside podman, timed in the same run
//! (issue 19's measure).
//!
//! Each run is `run --rm IMAGE true`, end to end as a user types it: the
//! client, the daemon, the shim, the runtime, the container, its removal.
//! Three runners, twice each (with no network, then with the default
//! bridge and its address): caixa's own client against caixa's daemon, the
//! Docker CLI against caixa's daemon, and podman (its own runtime, crun,
//! as installed). Runs are interleaved (caixa, Docker CLI, podman, caixa,
//! …) so a noisy moment hurts all alike; the table gives min, median and
//! max, and the ratios of medians to podman's.
//!
//! Everything happens in a network namespace and a mount namespace of the
//! bench's own: the bridges, veths and netfilter rules the three make go
//! with the namespace, and the daemon's image store and state are under
//! `target/bench-engine`. As `bench-podman` does, the empty cgroup2 mount
//! of a hybrid host is unmounted in the private mount namespace, so podman's
//! crun runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const INNER: &str = "CAIXA_BENCH_ENGINE_INNER";

/// Entry point: re-executes itself in a private network and mount
/// namespace first. With `scale`, the flatness measure instead
/// ([`scale`]); with `memory`, what idle containers keep alive ([`memory`]).
pub fn run(root: &Path, runs: usize, scale: Option<usize>, memory: Option<usize>) -> Result<()> {
    if std::env::var_os(INNER).is_none() {
        for tool in ["podman", "skopeo", "umoci", "unshare", "ip"] {
            if Command::new(tool).arg("--version").output().is_err() {
                bail!(
                    "{tool} is not installed: sudo apt-get install podman skopeo umoci util-linux iproute2"
                );
            }
        }
        crate::sh(
            root,
            "cargo",
            &["build", "--quiet", "--release", "--bin", "step11"],
        )?;
        let me = std::env::current_exe()?;
        let mut inner = Command::new("unshare");
        inner
            .args(["--mount", "--net", "--propagation", "private", "--"])
            .arg(me)
            .args(["bench-engine", "--runs", &runs.to_string()]);
        if let Some(n) = scale {
            inner.args(["--scale", &n.to_string()]);
        }
        if let Some(n) = memory {
            inner.args(["--memory", &n.to_string()]);
        }
        let status = inner
            .env(INNER, "1")
            .status()
            .context("unshare --mount --net (are you root?)")?;
        if !status.success() {
            bail!("bench-engine failed ({status})");
        }
        return Ok(());
    }
    crate::peers::leave_hybrid_cgroup_mode()?;
    crate::peers::say_memory_cgroups();
    quiet(Command::new("ip").args(["link", "set", "lo", "up"]))?;
    let work = root.join("target/bench-engine");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let oci_archive = crate::podman_bench::image(&work)?;
    let docker_archive = work.join("bb-docker.tar");
    quiet(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci-archive:{}", oci_archive.display()))
            .arg(format!("docker-archive:{}:bb:1", docker_archive.display())),
    )?;

    let daemon = Daemon::start(root, &work)?;
    let host = format!("unix://{}", daemon.socket.display());
    let step11 = root.join("target/release/step11");
    quiet(
        Command::new(&step11)
            .args(["-H", &host, "load"])
            .arg(&docker_archive),
    )?;
    let docker = docker_cli();
    let docker_config = work.join("docker-config");
    std::fs::create_dir_all(&docker_config)?;

    let parent = format!("/caixa-bench-{}", std::process::id());
    let podman = |args: &[&str]| {
        let mut cmd = crate::podman_bench::podman_in(&work);
        cmd.args(args);
        cmd
    };
    quiet(podman(&["load", "-q", "-i"]).arg(&oci_archive))?;
    if let Some(n) = scale {
        let peers = Peers {
            docker: &docker,
            docker_config: &docker_config,
            podman: &podman,
            parent: &parent,
        };
        let measured = self::scale(&step11, &host, n, &peers);
        drop(daemon);
        // Killed at once: `busybox sleep` as pid 1 ignores SIGTERM, and
        // `system reset` would give each of hundreds its ten seconds.
        let _ = podman(&["rm", "--all", "--force", "--time", "0"]).output();
        let _ = podman(&["system", "reset", "--force"]).output();
        crate::podman_bench::remove_groups(parent.trim_start_matches('/'));
        return measured;
    }
    if let Some(n) = memory {
        let measured = self::memory(&step11, &host, daemon.child.id(), n, &podman, &parent);
        drop(daemon);
        let _ = podman(&["rm", "--all", "--force", "--time", "0"]).output();
        let _ = podman(&["system", "reset", "--force"]).output();
        crate::podman_bench::remove_groups(parent.trim_start_matches('/'));
        return measured;
    }

    // The same engine without its start made at `create`
    // (`--park-seconds 0`): what that saves a Docker CLI's run.
    let unparked = Daemon::start_as(root, &work, "unparked", &["--park-seconds", "0"])?;
    let unparked_host = format!("unix://{}", unparked.socket.display());
    quiet(
        Command::new(&step11)
            .args(["-H", &unparked_host, "load"])
            .arg(&docker_archive),
    )?;
    // The same words to the same daemon, from its client and Docker's.
    let engine_run = |client: &Path, host: &str, network: &str| {
        let mut cmd = Command::new(client);
        cmd.env("DOCKER_CONFIG", &docker_config)
            .args(["-H", host, "run", "--rm", "--network", network])
            .args(["bb:1", "true"]);
        cmd
    };
    let engine_run = &engine_run;
    type Runner<'a> = (String, Box<dyn Fn() -> Command + 'a>);
    let mut rows: Vec<Runner> = Vec::new();
    for network in ["none", "bridge"] {
        let (step11, docker, host) = (step11.clone(), docker.clone(), host.as_str());
        rows.push((
            format!("caixa client → caixa, {network}"),
            Box::new(move || engine_run(&step11, host, network)),
        ));
        rows.push((
            format!("Docker CLI → caixa, {network}"),
            Box::new(move || engine_run(&docker, host, network)),
        ));
        let args = crate::podman_bench::run_args(&parent, network);
        let podman = &podman;
        rows.push((
            format!("podman, {network}"),
            Box::new(move || {
                let mut cmd = podman(&[]);
                cmd.args(&args);
                cmd
            }),
        ));
    }
    let once = |make: &dyn Fn() -> Command, name: &str| -> Result<Duration> {
        let mut cmd = make();
        cmd.stdin(Stdio::null());
        let start = Instant::now();
        let out = cmd.output()?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "{name}: failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(took)
    };
    // The Docker CLI's floors. `docker version`: its own start, one
    // request to the same daemon (`GET /version`, no container) and its
    // end. `docker run` against a stand-in that answers each request at
    // once (`cli_floor`): what the CLI's side of a run costs, with no engine
    // behind it. Whatever the daemon does, `docker run` cannot take less.
    let stand_in = crate::cli_floor::StandIn::serve(&work.join("stand-in.sock"))?;
    let stand_in_host = stand_in.host();
    let floors: Vec<Runner> = vec![
        (
            "Docker CLI's floor: `docker version`".into(),
            Box::new(|| {
                let mut cmd = Command::new(&docker);
                cmd.env("DOCKER_CONFIG", &docker_config).args([
                    "-H",
                    &host,
                    "version",
                    "--format",
                    "{{.Server.Version}}",
                ]);
                cmd
            }),
        ),
        (
            "Docker CLI's floor: `run`, stand-in".into(),
            Box::new(|| engine_run(&docker, &stand_in_host, "none")),
        ),
        (
            "Docker CLI → caixa, none, unparked".into(),
            Box::new(|| engine_run(&docker, &unparked_host, "none")),
        ),
    ];
    for (name, make) in &rows {
        once(make.as_ref(), name)?; // warm up: pages, the bridges, podman's network
    }
    for (name, make) in &floors {
        once(make.as_ref(), name)?;
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); rows.len()];
    let mut floor_times: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); floors.len()];
    for _ in 0..runs {
        for (k, (name, make)) in rows.iter().enumerate() {
            times[k].push(once(make.as_ref(), name)?);
        }
        for (k, (name, make)) in floors.iter().enumerate() {
            floor_times[k].push(once(make.as_ref(), name)?);
        }
    }
    drop(stand_in);
    println!("\n{runs} interleaved `run --rm IMAGE true` per row (ms)");
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>10}",
        "runner", "min", "median", "max", "/podman"
    );
    let spreads: Vec<_> = times.iter_mut().map(|t| crate::peers::spread(t)).collect();
    let recorded = rows
        .iter()
        .zip(&spreads)
        .map(|((name, _), s)| crate::cost_plot::Row::new(name, s))
        .collect();
    for (k, ((name, _), s)) in rows.iter().zip(&spreads).enumerate() {
        // Rows come in threes per network: caixa, Docker CLI, podman.
        let podman_median = spreads[k - k % 3 + 2].median;
        println!(
            "{name:<34} {:>8.1} {:>8.1} {:>8.1} {:>10.2}",
            s.min,
            s.median,
            s.max,
            s.median / podman_median
        );
    }
    for ((name, _), times) in floors.iter().zip(floor_times.iter_mut()) {
        let floor = crate::peers::spread(times);
        println!(
            "{name:<34} {:>8.1} {:>8.1} {:>8.1} {:>10.2}",
            floor.min,
            floor.median,
            floor.max,
            floor.median / spreads[2].median
        );
    }
    println!(
        "\n(below 1.0: faster than podman; issue 19's goal is 0.2 through caixa's client, 0.25 through the Docker CLI;\n the floors' ratios are against podman without a network: no `docker run` can be faster than the stand-in's;\n `unparked`: a daemon with --park-seconds 0, whose `create` makes nothing of the start)"
    );
    drop(unparked);
    drop(daemon);
    let _ = podman(&["system", "reset", "--force"]).output();
    crate::podman_bench::remove_groups(parent.trim_start_matches('/'));
    let measure = crate::cost_plot::Measure {
        title: "run --rm IMAGE true: caixa's engine and podman".into(),
        date: crate::cost_plot::today(),
        runs,
        rows: recorded,
    };
    crate::cost_plot::record(root, "engine", &measure)
}

/// A container that stays up: what `--scale` and `--memory` start.
const SLEEPER: [&str; 4] = ["bb:1", "busybox", "sleep", "3600"];

/// `step11 run -d` of a [`SLEEPER`], no network, through the daemon at `host`.
fn caixa_sleeper(step11: &Path, host: &str) -> Command {
    let mut cmd = Command::new(step11);
    cmd.args(["-H", host, "run", "-d", "--network", "none"])
        .args(SLEEPER)
        .stdin(Stdio::null());
    cmd
}

/// podman's `run -d` of the same, below the cgroup `parent`, with the
/// limits this machine can give (see `podman_bench::run_args`).
fn podman_sleeper(podman: &dyn Fn(&[&str]) -> Command, parent: &str) -> Command {
    let mut cmd = podman(&["run", "-d", "--network", "none", "--cgroup-parent", parent]);
    cmd.args([
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
        "localhost/bb:1",
    ])
    .args(&SLEEPER[1..]);
    cmd
}

/// The peers `--scale` lists beside caixa's client: the Docker CLI against
/// the same daemon, and podman with as many containers of its own.
struct Peers<'a> {
    docker: &'a Path,
    docker_config: &'a Path,
    podman: &'a dyn Fn(&[&str]) -> Command,
    parent: &'a str,
}

/// Issue 19's "keep start and `ps` flat to 500": starts `n` containers
/// that stay up (`run -d --network none IMAGE busybox sleep 3600`, caixa's
/// client), and at each checkpoint takes the median of the last ten
/// starts, the time of the first `ps` after them (it reads the new
/// containers' files), and the median of five more (the daemon's listing
/// recalls what it read, `engine::recall`), with five of the Docker CLI's
/// `ps` between them. Every container is removed (`rm -f`, in batches),
/// also when a start fails; then podman does the same alone, up to the
/// last checkpoint caixa reached. One table, with the ratios of each `ps`
/// to podman's. The first error ends both series and is the one returned.
fn scale(step11: &Path, host: &str, n: usize, peers: &Peers<'_>) -> Result<()> {
    let client = |args: &[&str]| {
        let mut cmd = Command::new(step11);
        cmd.args(["-H", host]).args(args).stdin(Stdio::null());
        cmd
    };
    let docker_ps = || {
        let mut cmd = Command::new(peers.docker);
        cmd.env("DOCKER_CONFIG", peers.docker_config)
            .args(["-H", host, "ps"])
            .stdin(Stdio::null());
        cmd
    };
    let podman_run = || podman_sleeper(peers.podman, peers.parent);
    let timed = |mut cmd: Command| -> Result<(Duration, String)> {
        let start = Instant::now();
        let out = cmd.output()?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "{:?}: {}",
                cmd.get_args().collect::<Vec<_>>(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok((
            took,
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ))
    };
    let mut checkpoints: Vec<usize> = [1, 10, 50, 100, 200, 300, 400, 500, n]
        .into_iter()
        .filter(|&c| c <= n)
        .collect();
    checkpoints.dedup();
    // Times one command; an error ends the bench (kept in `outcome`).
    let mut outcome = Ok(());
    let once = |make: &dyn Fn() -> Command, outcome: &mut Result<()>| {
        if outcome.is_err() {
            return None;
        }
        match timed(make()) {
            Ok((took, out)) => Some((took, out)),
            Err(e) => {
                *outcome = Err(e);
                None
            }
        }
    };
    let median = |times: &mut Vec<Duration>| crate::peers::spread(times).median;

    // Each engine alone, one after the other: podman's containers up
    // beside caixa's would make every caixa start copy their mounts into
    // its shim's namespace, and the other way round.
    let caixa_run = || caixa_sleeper(step11, host);
    let caixa_ps = || client(&["ps"]);
    let podman_ps = || (peers.podman)(&["ps"]);
    let mut ids = Vec::with_capacity(n);
    let mut starts: Vec<Duration> = Vec::new();
    // Per checkpoint: caixa's run -d, first ps, ps, docker ps.
    let mut caixa: Vec<[f64; 4]> = Vec::new();
    for k in 1..=n {
        let Some((took, id)) = once(&caixa_run, &mut outcome) else {
            break;
        };
        starts.push(took);
        ids.push(id);
        if checkpoints.contains(&k) {
            let mut last: Vec<Duration> = starts[starts.len().saturating_sub(10)..].to_vec();
            let first = once(&caixa_ps, &mut outcome);
            let (mut then, mut docker) = (Vec::new(), Vec::new());
            for _ in 0..5 {
                then.extend(once(&caixa_ps, &mut outcome).map(|t| t.0));
                docker.extend(once(&docker_ps, &mut outcome).map(|t| t.0));
            }
            let Some((first, _)) = first.filter(|_| outcome.is_ok()) else {
                break;
            };
            caixa.push([
                median(&mut last),
                first.as_secs_f64() * 1e3,
                median(&mut then),
                median(&mut docker),
            ]);
        }
    }
    for batch in ids.chunks(50) {
        let mut args = vec!["rm", "-f"];
        args.extend(batch.iter().map(String::as_str));
        if let Err(e) = timed(client(&args)) {
            eprintln!("bench-engine --scale: removing containers: {e}");
        }
    }
    // Per checkpoint: podman's run -d, ps.
    let mut podman: Vec<[f64; 2]> = Vec::new();
    let mut starts: Vec<Duration> = Vec::new();
    // As far as caixa's series went, and no further.
    let reached = checkpoints
        .get(caixa.len().wrapping_sub(1))
        .copied()
        .unwrap_or(0);
    for k in 1..=reached {
        let Some((took, _)) = once(&podman_run, &mut outcome) else {
            break;
        };
        starts.push(took);
        if checkpoints.contains(&k) {
            let mut last: Vec<Duration> = starts[starts.len().saturating_sub(10)..].to_vec();
            let mut ps = Vec::new();
            for _ in 0..5 {
                ps.extend(once(&podman_ps, &mut outcome).map(|t| t.0));
            }
            if outcome.is_err() {
                break;
            }
            podman.push([median(&mut last), median(&mut ps)]);
        }
    }

    println!(
        "\n{n} containers up at once (`run -d --network none bb:1 busybox sleep 3600`), medians (ms): caixa's,\nlisted by its client and by the Docker CLI; then, once they are removed, podman's as many"
    );
    println!(
        "{:>10} {:>18} {:>9} {:>7} {:>10} {:>15} {:>10} {:>8} {:>11}",
        "containers",
        "run -d (last ≤10)",
        "first ps",
        "ps (5)",
        "docker ps",
        "podman run -d",
        "podman ps",
        "ps /pod",
        "docker /pod"
    );
    for (i, (k, [run, first, ps, docker])) in checkpoints.iter().zip(&caixa).enumerate() {
        print!("{k:>10} {run:>18.1} {first:>9.1} {ps:>7.1} {docker:>10.1}");
        match podman.get(i) {
            Some([podman_run, podman_ps]) => println!(
                " {podman_run:>15.1} {podman_ps:>10.1} {:>8.3} {:>11.3}",
                ps / podman_ps,
                docker / podman_ps
            ),
            None => println!(),
        }
    }
    outcome
}

/// One process's memory, from `/proc/PID/smaps_rollup` (KiB): resident,
/// proportional (shared pages divided among their users) and unique
/// (`Private_Clean` + `Private_Dirty`: what its end would give back).
#[derive(Debug, Default, Clone, Copy)]
struct Memory {
    rss: u64,
    pss: u64,
    uss: u64,
}

impl Memory {
    fn of(pid: u32) -> Option<Memory> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
        let field = |name: &str| kib(&text, name);
        Some(Memory {
            rss: field("Rss:"),
            pss: field("Pss:"),
            uss: field("Private_Clean:") + field("Private_Dirty:"),
        })
    }
}

/// The machine's memory that no cache holds, from `/proc/meminfo` (KiB):
/// anonymous pages, page tables, unreclaimable slab, kernel stacks. What
/// a container costs beside its processes' own pages is mostly kernel
/// objects (namespaces, cgroups, mounts), which no `smaps` shows.
#[derive(Debug, Default, Clone, Copy)]
struct MachineMemory([u64; 4]);

impl MachineMemory {
    const FIELDS: [&str; 4] = ["AnonPages:", "PageTables:", "SUnreclaim:", "KernelStack:"];

    fn now() -> MachineMemory {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        MachineMemory(Self::FIELDS.map(|name| kib(&text, name)))
    }

    /// What grew since `from`, shared out over `n` containers (a field
    /// that shrank, as the machine freed something else, counts 0).
    fn per_container_since(&self, from: &MachineMemory, n: usize) -> [f64; 4] {
        let mut each = [0.0; 4];
        for (out, (now, then)) in each.iter_mut().zip(self.0.iter().zip(from.0)) {
            *out = now.saturating_sub(then) as f64 / n.max(1) as f64;
        }
        each
    }
}

/// The number after `name` in a `/proc` file of `Name:   123 kB` lines
/// (`smaps_rollup`, `meminfo`); 0 if it has none.
fn kib(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .unwrap_or(0)
}

/// The pids whose command line contains every one of `words`.
fn pids_with(words: &[&str]) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let line = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let line = String::from_utf8_lossy(&line).replace('\0', " ");
        if words.iter().all(|w| line.contains(w)) {
            pids.push(pid);
        }
    }
    pids
}

/// Issue 19's "memory per running container": starts `n` idle containers
/// (`busybox sleep 3600`, no network) with caixa's client and `n` with
/// podman, then reads what each engine keeps alive beside them: caixa's
/// daemon, its shim launcher and one shim a container; podman's one
/// `conmon` a container (podman has no daemon). Prints each helper's
/// median resident, proportional and unique size, and the sums per
/// container. Every container is removed at the end, also on failure.
fn memory(
    step11: &Path,
    host: &str,
    daemon: u32,
    n: usize,
    podman: &dyn Fn(&[&str]) -> Command,
    parent: &str,
) -> Result<()> {
    let mut ids = Vec::new();
    let mut outcome = (|| {
        // What the machine spends: /proc/meminfo before and after each
        // engine's n containers (caixa's first, then podman's beside them).
        let settle = || std::thread::sleep(Duration::from_secs(2));
        settle();
        let before = MachineMemory::now();
        for _ in 0..n {
            let out = caixa_sleeper(step11, host).output()?;
            if !out.status.success() {
                bail!("run -d: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            ids.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        // Let them settle: a shim's first second is not its idle life.
        settle();
        let with_caixa = MachineMemory::now();
        for _ in 0..n {
            quiet(&mut podman_sleeper(podman, parent))?;
        }
        settle();
        let with_podman = MachineMemory::now();
        let shims: Vec<u32> = ids
            .iter()
            .flat_map(|id| pids_with(&[" shim ", id.as_str()]))
            .collect();
        // The daemon's own launcher: its child that says so.
        let launchers: Vec<u32> = pids_with(&["shim-launcher"])
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| {
                        s.rsplit_once(')')
                            .and_then(|(_, r)| r.split_whitespace().nth(1).map(str::to_string))
                    })
                    .is_some_and(|ppid| ppid == daemon.to_string())
            })
            .collect();
        let conmons = pids_with(&["conmon", "--exit-dir"]);
        if shims.len() != n || conmons.len() != n {
            bail!(
                "expected {n} shims and {n} conmons, found {} and {}",
                shims.len(),
                conmons.len()
            );
        }
        let read =
            |pids: &[u32]| -> Vec<Memory> { pids.iter().filter_map(|p| Memory::of(*p)).collect() };
        let (shim, conmon) = (read(&shims), read(&conmons));
        let daemon_memory = Memory::of(daemon).unwrap_or_default();
        let launcher = read(&launchers).first().copied().unwrap_or_default();
        let median = |all: &[Memory], pick: fn(&Memory) -> u64| -> f64 {
            let mut values: Vec<u64> = all.iter().map(pick).collect();
            values.sort_unstable();
            values.get(values.len() / 2).copied().unwrap_or(0) as f64 / 1024.0
        };
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "
{n} idle containers each (`run -d --network none IMAGE busybox sleep 3600`), MiB"
        );
        println!("{:<40} {:>8} {:>8} {:>8}", "process", "RSS", "PSS", "USS");
        for (name, all) in [
            ("caixa shim (median)", &shim),
            ("podman's conmon (median)", &conmon),
        ] {
            println!(
                "{name:<40} {:>8.2} {:>8.2} {:>8.2}",
                median(all, |m| m.rss),
                median(all, |m| m.pss),
                median(all, |m| m.uss)
            );
        }
        for (name, m) in [
            ("caixa daemon", daemon_memory),
            ("caixa shim launcher", launcher),
        ] {
            println!(
                "{name:<40} {:>8.2} {:>8.2} {:>8.2}",
                mib(m.rss),
                mib(m.pss),
                mib(m.uss)
            );
        }
        let sum = |all: &[Memory], pick: fn(&Memory) -> u64| all.iter().map(pick).sum::<u64>();
        let per = |kib: u64| kib as f64 / 1024.0 / n as f64;
        println!(
            "
per container, everything each engine keeps alive beside it (MiB):"
        );
        println!(
            "caixa  (shims + daemon + launcher): RSS sum {:.2}, PSS sum {:.2}",
            per(sum(&shim, |m| m.rss) + daemon_memory.rss + launcher.rss),
            per(sum(&shim, |m| m.pss) + daemon_memory.pss + launcher.pss)
        );
        println!(
            "podman (conmons):                   RSS sum {:.2}, PSS sum {:.2}",
            per(sum(&conmon, |m| m.rss)),
            per(sum(&conmon, |m| m.pss))
        );
        println!("(issue 19's goal: 2 MiB a container, conmon's class)");
        println!(
            "
what one more container costs the machine, its own processes included (KiB, /proc/meminfo):"
        );
        println!(
            "{:<8} {:>10} {:>10} {:>12} {:>12} {:>8}",
            "engine", "AnonPages", "PageTables", "SUnreclaim", "KernelStack", "sum"
        );
        for (name, from, to) in [
            ("caixa", before, with_caixa),
            ("podman", with_caixa, with_podman),
        ] {
            let d = to.per_container_since(&from, n);
            println!(
                "{name:<8} {:>10.0} {:>10.0} {:>12.0} {:>12.0} {:>8.0}",
                d[0],
                d[1],
                d[2],
                d[3],
                d.iter().sum::<f64>()
            );
        }
        Ok(())
    })();
    for batch in ids.chunks(50) {
        let mut args = vec!["-H", host, "rm", "-f"];
        args.extend(batch.iter().map(String::as_str));
        if let Err(e) = quiet(Command::new(step11).args(&args)) {
            eprintln!("bench-engine --memory: removing containers: {e}");
            outcome = outcome.and(Err(e));
        }
    }
    let _ = podman(&["rm", "-f", "-a", "-t", "0"]).output();
    outcome
}

/// caixa's daemon for the bench: its own socket, store and network state;
/// killed when dropped.
struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    fn start(root: &Path, work: &Path) -> Result<Daemon> {
        Daemon::start_as(root, work, "caixa", &[])
    }

    /// A daemon of its own store under `work`, named `name`, with more
    /// `daemon` options. The network state is the first daemon's: both
    /// keep the default bridge, in one network namespace.
    fn start_as(root: &Path, work: &Path, name: &str, options: &[&str]) -> Result<Daemon> {
        let socket = work.join(format!("{name}.sock"));
        let store = match name {
            "caixa" => work.join("root"),
            _ => work.join(format!("root-{name}")),
        };
        let child = Command::new(root.join("target/release/step11"))
            .arg("--root")
            .arg(store)
            .args(["daemon", "--socket"])
            .arg(&socket)
            .args(options)
            .env("CAIXA_STATE_DIR", work.join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start step11 daemon")?;
        let daemon = Daemon { child, socket };
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&daemon.socket).is_err() {
            if start.elapsed() > Duration::from_secs(15) {
                bail!("the daemon did not listen within 15 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(daemon)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Docker CLI: `CAIXA_DOCKER_CLI`, else the one `.ci/run` installs,
/// else `docker` on the PATH (as the step 11 tests find it).
fn docker_cli() -> PathBuf {
    std::env::var_os("CAIXA_DOCKER_CLI")
        .map(PathBuf::from)
        .or_else(|| {
            let peers = PathBuf::from("/opt/caixa-peers/docker");
            peers.is_file().then_some(peers)
        })
        .unwrap_or_else(|| PathBuf::from("docker"))
}

fn quiet(cmd: &mut Command) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
