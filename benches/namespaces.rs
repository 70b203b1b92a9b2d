//! What a namespace costs: criterion benches of the kernel work alone and of
//! whole step binaries, start to exit, so later steps can be compared.
//!
//! Run with `cargo bench --bench namespaces` (as root: the runner in
//! `.cargo/config.toml` uses sudo when needed). Peers such as `unshare(1)` run
//! in the same process, side by side.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::process::{Command, Stdio};
use std::time::Duration;

use caixa::Namespace;
use caixa::ns::clone::{Forked, clone_child};
use criterion::{Criterion, criterion_group, criterion_main};
use nix::sys::wait::waitpid;

/// clone3 with one namespace flag, a child that exits at once, and the wait.
fn clone_and_reap(namespaces: &[Namespace]) {
    let flags = caixa::ns::clone_flags(namespaces);
    // SAFETY: criterion measures on this one thread; the child only _exits.
    match unsafe { clone_child(flags) } {
        Ok(Forked::Child) => unsafe { libc::_exit(0) },
        Ok(Forked::Parent(pid)) => {
            waitpid(pid, None).expect("waitpid");
        }
        Err(errno) => panic!("clone3({namespaces:?}) failed: {errno} (are you root?)"),
    }
}

fn each_namespace(c: &mut Criterion) {
    let mut group = c.benchmark_group("clone+exit+wait");
    group.bench_function("no new namespace", |b| b.iter(|| clone_and_reap(&[])));
    for ns in Namespace::ALL {
        group.bench_function(ns.proc_name(), |b| b.iter(|| clone_and_reap(&[ns])));
    }
    group.finish();
}

fn run_quietly(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .env("CAIXA_CACHE_DIR", cache_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("spawn");
    assert!(status.success(), "{program} {args:?}: {status}");
}

fn cache_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("caixa-cache")
}

fn steps_start_to_exit(c: &mut Criterion) {
    let steps = [
        ("step1", env!("CARGO_BIN_EXE_step1")),
        ("step2", env!("CARGO_BIN_EXE_step2")),
        ("step3", env!("CARGO_BIN_EXE_step3")),
        ("step4", env!("CARGO_BIN_EXE_step4")),
        ("step5", env!("CARGO_BIN_EXE_step5")),
        ("step6", env!("CARGO_BIN_EXE_step6")),
        ("step7", env!("CARGO_BIN_EXE_step7")),
    ];
    // Build the default rootfs (and step 6's, owned by the mapped root) once,
    // outside the measurement.
    run_quietly(steps[4].1, &["true"]);
    run_quietly(steps[5].1, &["true"]);

    let mut group = c.benchmark_group("start-to-exit of true");
    group.bench_function("/bin/true (no container)", |b| {
        b.iter(|| run_quietly("/bin/true", &[]))
    });
    group.bench_function("unshare --pid --fork --mount --uts --ipc --net", |b| {
        b.iter(|| {
            run_quietly(
                "unshare",
                &[
                    "--pid", "--fork", "--mount", "--uts", "--ipc", "--net", "true",
                ],
            )
        })
    });
    for (name, path) in steps {
        group.bench_function(name, |b| b.iter(|| run_quietly(path, &["true"])));
    }
    group.finish();
}

/// What the network adds: step 7 against step 8 (with and without a
/// published port), inside a network namespace of the bench's own where one
/// long-running container keeps the bridge up (the steady state: a lease, a
/// veth pair, the rules, and their removal).
fn network(c: &mut Criterion) {
    let netns = format!("caixa-bench-{}", std::process::id());
    let ip = |args: &[&str]| {
        let ok = Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip {args:?} failed (sudo apt-get install iproute2)");
    };
    ip(&["netns", "add", &netns]);
    ip(&["-n", &netns, "link", "set", "lo", "up"]);
    let state = std::env::temp_dir().join(format!("caixa-bench-state-{}", std::process::id()));
    let inside = |program: &str| {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{netns}"))
            .arg("--")
            .arg(program)
            .env("CAIXA_CACHE_DIR", cache_dir())
            .env("CAIXA_STATE_DIR", &state)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    };
    let step7 = env!("CARGO_BIN_EXE_step7");
    let step8 = env!("CARGO_BIN_EXE_step8");
    let mut holder = inside(step8)
        .args(["sleep", "3600"])
        .spawn()
        .expect("holder");
    std::thread::sleep(Duration::from_millis(500));
    let run = |program: &str, args: &[&str]| {
        let status = inside(program).args(args).status().expect("spawn");
        assert!(status.success(), "{program} {args:?}: {status}");
    };
    let mut group = c.benchmark_group("network: start-to-exit of true");
    group.bench_function("step7 (no network)", |b| b.iter(|| run(step7, &["true"])));
    group.bench_function("step8", |b| b.iter(|| run(step8, &["true"])));
    group.bench_function("step8 -p 8080:80", |b| {
        b.iter(|| run(step8, &["-p", "8080:80", "true"]))
    });
    group.finish();
    // End the holder's container (its pid 1 is the holder's only child), so
    // the holder removes the bridge; the namespace goes with whatever is left.
    let pid = holder.id();
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        for child in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill(2) of the holder container's pid 1.
            unsafe { libc::kill(child, libc::SIGKILL) };
        }
    }
    let _ = holder.wait();
    ip(&["netns", "del", &netns]);
    let _ = std::fs::remove_dir_all(&state);
}

/// In a forked child: no_new_privs, then `install` (a filter cannot be
/// taken back, so each one needs a fresh process), `_exit`; the parent waits.
fn fork_install_exit(install: &dyn Fn() -> bool) {
    // SAFETY: criterion measures on this one thread; the child only sets
    // no_new_privs, installs a filter built before the fork, and _exits.
    match unsafe { clone_child(nix::sched::CloneFlags::empty()) } {
        Ok(Forked::Child) => {
            let ok = nix::sys::prctl::set_no_new_privs().is_ok() && install();
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        Ok(Forked::Parent(pid)) => {
            let status = waitpid(pid, None).expect("waitpid");
            assert!(
                matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)),
                "the child could not install the filter: {status:?}"
            );
        }
        Err(errno) => panic!("clone3 failed: {errno}"),
    }
}

/// What installing step 6's filter (Docker's default profile, 300-odd calls)
/// costs at each start: the kernel checks, converts and JIT-compiles the
/// program, and fills the filter's cache by running it for every call
/// number, so both its length and its search cost. podman's profile beside
/// it, compiled the same way.
fn seccomp(c: &mut Criterion) {
    let kept = &caixa::caps::DEFAULT_CAPABILITIES[..];
    let docker = caixa::seccomp::default_filter(Some(kept)).expect("default filter");
    let podman: oci_spec::runtime::LinuxSeccomp = serde_json::from_str(include_str!(
        "../src/seccomp/compile/podman-4.3.1-default.json"
    ))
    .expect("podman's profile");
    let podman = caixa::seccomp::compile::compile(&podman).expect("compile");
    let mut group = c.benchmark_group("seccomp: fork+install+exit+wait");
    group.bench_function("no filter", |b| b.iter(|| fork_install_exit(&|| true)));
    for (name, program) in [("step 6's", &docker), ("podman's", &podman)] {
        group.bench_function(
            format!(
                "{name} ({} calls, {} instructions)",
                program.calls,
                program.insns.len()
            ),
            |b| b.iter(|| fork_install_exit(&|| program.install().is_ok())),
        );
    }
    group.finish();
    // Building it happens in the child too, before the install: the
    // profile's names looked up, the plan, the layout.
    c.bench_function("seccomp: compile step 6's filter", |b| {
        b.iter(|| caixa::seccomp::default_filter(Some(kept)).expect("default filter"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = each_namespace, seccomp, steps_start_to_exit, network
}
criterion_main!(benches);
