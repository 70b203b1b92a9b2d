//! `conformance`: the OCI runtime-tools validation suite, run against runc
//! and caixa's step 12 on the same machine, printed as one markdown table
//! (issue 18; the table in step 12's chapter comes from it).
//!
//! The suite is public Go code with its dependencies vendored, but it is
//! not part of this repository and CI cannot fetch it (CI reaches package
//! registries only), so this command is not in `xtask ci`. Build it once,
//! outside the project, and point this command at the checkout:
//!
//! ```text
//! cd ~/runtime-tools   # github.com/opencontainers/runtime-tools at 260e151
//! PATH=/usr/lib/go-1.19/bin:$PATH GOFLAGS=-mod=vendor GOPROXY=off \
//!     make runtimetest validation-executables
//! cd ~/caixa; sudo -E env PATH=$PATH cargo xtask conformance --runtime-tools ~/runtime-tools
//! ```
//!
//! Each group is one executable (`validation/GROUP/GROUP.t`) that writes
//! bundles in temporary directories, drives `$RUNTIME create/start/state/
//! kill/delete` and prints TAP. Each runtime is called through a wrapper
//! script that gives it a `--root` (and caixa a state directory) of this
//! run's own, so nothing touches the host's containers; the groups make
//! their bundles below `target/conformance/tmp` (`TMPDIR`). After each group
//! the containers it left are deleted with `--force` and what it left
//! mounted there is unmounted; at the end, the suite's own cgroups go too.
//!
//! The suite's default config asks for all five capability sets, with
//! inheritable and ambient holding the same 14 capabilities as the others;
//! caixa keeps inheritable and ambient empty on purpose (CVE-2022-24769, see
//! `src/caps.rs`) and refuses such a config, so every group fails at
//! `create`. The `--one-cap-set` columns run a runtime through
//! `cargo xtask conformance-shim`, which empties those two sets in the
//! bundle's `config.json` (and the checker's `test.json`, where a group
//! writes one) before `create`, so the suite's in-container checker expects
//! what the runtime was asked for: what the suite measures beyond that one
//! refusal.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// What one group printed: TAP's `ok` (skips included), `not ok`, the plan,
/// and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `ok` lines, skips included (TAP counts a skip as a pass).
    pub passed: usize,
    /// `not ok` lines.
    pub failed: usize,
    /// `ok … # SKIP` lines.
    pub skipped: usize,
    /// The `1..N` plan (summed, when a group prints two), if the group got
    /// as far as printing one.
    pub planned: Option<usize>,
    /// A diagnostic block said `"error": …` (the hook groups report only so).
    pub diagnosed_error: bool,
    /// The group exited with status 0 (it calls `Fatal`, status 1, when it
    /// cannot go on, or when a runtime accepted what it must refuse).
    pub exited_ok: bool,
    /// The group did not end within the time allowed.
    pub timed_out: bool,
}

impl Outcome {
    /// Reads the TAP a group printed and how it ended. Only lines at the
    /// left margin are tests: the suite quotes the checker's own TAP inside
    /// indented diagnostic blocks.
    pub fn parse(tap: &str, exited_ok: bool) -> Outcome {
        let mut out = Outcome {
            passed: 0,
            failed: 0,
            skipped: 0,
            planned: None,
            diagnosed_error: false,
            exited_ok,
            timed_out: false,
        };
        for line in tap.lines() {
            if line.starts_with("ok") {
                out.passed += 1;
                if line.to_ascii_lowercase().contains("# skip") {
                    out.skipped += 1;
                }
            } else if line.starts_with("not ok") {
                out.failed += 1;
            } else if let Some(n) = line.strip_prefix("1..") {
                // Some groups run two TAP streams, one plan each.
                if let Ok(n) = n.trim().parse::<usize>() {
                    out.planned = Some(out.planned.unwrap_or(0) + n);
                }
            } else if line.trim_start().starts_with("\"error\":") {
                out.diagnosed_error = true;
            }
        }
        out
    }

    /// Whether the group had no test line: some groups (the hooks', the
    /// `*_fail` ones) say how it went only by their exit status and
    /// diagnostics, and others stop before their first test.
    fn has_no_tests(&self) -> bool {
        self.passed + self.failed == 0
    }

    /// Whether every test of the group passed and it ended well.
    pub fn whole(&self) -> bool {
        !self.timed_out
            && self.exited_ok
            && self.failed == 0
            && !(self.has_no_tests() && self.diagnosed_error)
            && self.planned.is_none_or(|n| n == self.passed)
            && (self.planned.is_some() || self.has_no_tests())
    }

    /// `passed/total`, the total being the plan (a group that stopped early
    /// passed none of what it did not reach); `pass` or `fail` for a group
    /// without tests; what went wrong besides.
    pub fn cell(&self) -> String {
        let mut cell = if self.has_no_tests() {
            if self.whole() { "pass" } else { "fail" }.to_string()
        } else {
            let total = self.planned.unwrap_or(self.passed + self.failed);
            let mut cell = format!("{}/{}", self.passed, total);
            if self.planned.is_none() {
                cell.push_str(" (no plan)");
            } else if !self.exited_ok && !self.timed_out {
                cell.push_str(" (exit 1)");
            }
            cell
        };
        if self.timed_out {
            cell.push_str(" (timeout)");
        }
        cell
    }
}

/// One column of the table: a runtime, and whether it runs through the shim.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    runtime: PathBuf,
    one_cap_set: bool,
}

/// Entry point: runs every group (or `groups`) against every runtime.
pub fn run(
    root: &Path,
    runtime_tools: &Path,
    runtimes: Vec<PathBuf>,
    one_cap_set: Vec<PathBuf>,
    groups: Vec<String>,
    timeout: Duration,
) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the suite creates containers: run it as root \
             (sudo -E env PATH=$PATH cargo xtask conformance …)"
        );
    }
    let runtime_tools = runtime_tools
        .canonicalize()
        .with_context(|| format!("no runtime-tools checkout at {}", runtime_tools.display()))?;
    if !runtime_tools.join("runtimetest").is_file() {
        bail!(
            "{} has no runtimetest: build the suite there first with \
             `PATH=/usr/lib/go-1.19/bin:$PATH GOFLAGS=-mod=vendor GOPROXY=off make runtimetest validation-executables`",
            runtime_tools.display()
        );
    }
    let groups = if groups.is_empty() {
        all_groups(&runtime_tools)?
    } else {
        groups
    };
    let work = target_dir(root).join("conformance");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    let columns = columns(root, &work, runtimes, one_cap_set)?;
    let groups_before = suite_groups();
    let shim = std::env::current_exe().context("cannot find xtask's own executable")?;
    let mut results = vec![Vec::new(); columns.len()];
    for (column, results) in columns.iter().zip(&mut results) {
        let dir = work.join(column.name.replace(", ", "-").replace(' ', "-"));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot make {}", dir.display()))?;
        let wrapper = wrapper(&dir, column, &shim)?;
        for group in &groups {
            let tap = dir.join(format!("{group}.tap"));
            let tmp = work.join("tmp");
            std::fs::create_dir_all(&tmp)?;
            let outcome = run_group(&runtime_tools, group, &wrapper, &tap, &tmp, timeout)?;
            eprintln!("conformance: {} {group}: {}", column.name, outcome.cell());
            remove_leftovers(&wrapper, &tmp);
            results.push(outcome);
        }
    }
    remove_suite_groups(&groups_before);
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    print!("{}", table(&names, &groups, &results));
    println!(
        "\nruntime-tools at {}; each group's TAP is in {}",
        commit_of(&runtime_tools),
        work.display()
    );
    Ok(())
}

/// The columns: by default runc from `PATH`, this checkout's step12 as it
/// stands and through the shim.
fn columns(
    root: &Path,
    work: &Path,
    runtimes: Vec<PathBuf>,
    one_cap_set: Vec<PathBuf>,
) -> Result<Vec<Column>> {
    let (runtimes, one_cap_set) = if runtimes.is_empty() && one_cap_set.is_empty() {
        crate::sh(root, "cargo", &["build", "--quiet", "--bin", "step12"])?;
        // A copy: the suite runs for minutes, and a rebuild meanwhile must
        // not change the runtime under it.
        let target = target_dir(root);
        std::fs::create_dir_all(work.join("bin"))?;
        let step12 = work.join("bin/step12");
        std::fs::copy(target.join("debug/step12"), &step12)
            .with_context(|| format!("cannot copy step12 from {}", target.display()))?;
        (vec![PathBuf::from("runc"), step12.clone()], vec![step12])
    } else {
        (runtimes, one_cap_set)
    };
    let mut columns = Vec::new();
    for (paths, shimmed) in [(runtimes, false), (one_cap_set, true)] {
        for path in paths {
            let runtime = resolve(&path)?;
            let base = runtime
                .file_name()
                .map_or("runtime".into(), |n| n.to_string_lossy().into_owned());
            let name = if shimmed {
                format!("{base}, one cap set")
            } else {
                base
            };
            columns.push(Column {
                name,
                runtime,
                one_cap_set: shimmed,
            });
        }
    }
    Ok(columns)
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the workspace)
/// or `target`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir))
}

/// An absolute path for `runtime`, looked up in `PATH` when it is a bare name.
fn resolve(runtime: &Path) -> Result<PathBuf> {
    if runtime.components().count() > 1 {
        return runtime
            .canonicalize()
            .with_context(|| format!("no runtime at {}", runtime.display()));
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(runtime))
        .find(|p| p.is_file())
        .with_context(|| format!("{} is not in PATH: install it", runtime.display()))
}

/// The groups the suite was built with, in name order.
fn all_groups(runtime_tools: &Path) -> Result<Vec<String>> {
    let mut groups = Vec::new();
    for entry in std::fs::read_dir(runtime_tools.join("validation"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if runtime_tools
            .join(format!("validation/{name}/{name}.t"))
            .is_file()
        {
            groups.push(name);
        }
    }
    if groups.is_empty() {
        bail!(
            "no validation/*/*.t in {}: run `make validation-executables` there",
            runtime_tools.display()
        );
    }
    groups.sort();
    Ok(groups)
}

/// The script the suite calls as `$RUNTIME`: the runtime with a `--root`
/// (and, for caixa, a state directory) of this column's own.
fn wrapper(dir: &Path, column: &Column, shim: &Path) -> Result<PathBuf> {
    let path = dir.join("runtime");
    let shim = if column.one_cap_set {
        format!("{} conformance-shim -- ", shim.display())
    } else {
        String::new()
    };
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nCAIXA_STATE_DIR={state} exec {shim}{runtime} --root {root} \"$@\"\n",
            state = dir.join("caixa").display(),
            runtime = column.runtime.display(),
            root = dir.join("root").display(),
        ),
    )?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(path)
}

/// Runs one group from the checkout (it finds `runtimetest` and the rootfs
/// tarball there), its output in `tap`; killed, with its process group,
/// after `timeout`.
fn run_group(
    runtime_tools: &Path,
    group: &str,
    wrapper: &Path,
    tap: &Path,
    tmp: &Path,
    timeout: Duration,
) -> Result<Outcome> {
    use std::os::unix::process::CommandExt;
    let file = std::fs::File::create(tap)?;
    let mut child = Command::new(runtime_tools.join(format!("validation/{group}/{group}.t")))
        .current_dir(runtime_tools)
        .env("RUNTIME", wrapper)
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start the {group} group"))?;
    let start = Instant::now();
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait()? {
            break (status, false);
        }
        if start.elapsed() > timeout {
            // SAFETY: kill(2) on the process group this child leads.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            break (child.wait()?, true);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut outcome = Outcome::parse(&std::fs::read_to_string(tap)?, status.success());
    outcome.timed_out = timed_out;
    Ok(outcome)
}

/// Deletes, with `--force`, every container a group left in the column's
/// root, then unmounts what is left below `tmp` (where the group made its
/// bundles) and empties it. A runtime told to make no mount namespace
/// (linux_ns_itype) mounts `/proc`, `/dev` and `/sys` of the bundle in the
/// host's own mount table, and the group's clean-up does not unmount them.
fn remove_leftovers(wrapper: &Path, tmp: &Path) {
    if let Ok(out) = Command::new(wrapper).args(["list", "--quiet"]).output() {
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new(wrapper)
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    let mut points = mounts_below(tmp);
    // Deepest first: a mount below another keeps that one busy.
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        if let Ok(c) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) {
            // SAFETY: umount2(2) with a NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
    // remove_dir_all crosses mount points: with a bind of the host's /etc
    // still there (the mounts group makes some), it would empty /etc.
    if !mounts_below(tmp).is_empty() {
        eprintln!(
            "conformance: mounts are left below {}; not removing it",
            tmp.display()
        );
        return;
    }
    if let Ok(entries) = std::fs::read_dir(tmp) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The mount points below `dir` in our mount table.
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// The names the suite gives its cgroups (`cgroupsPath` "/cgrouptest" and
/// "testdir/cgrouptest/container"): runc removes the container's own group
/// at `delete`, not the parents it made.
const SUITE_GROUPS: [&str; 2] = ["cgrouptest", "testdir"];

/// The suite's groups that exist now, in every hierarchy.
fn suite_groups() -> Vec<PathBuf> {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    hierarchies
        .flatten()
        .flat_map(|h| SUITE_GROUPS.map(|name| h.path().join(name)))
        .filter(|p| p.is_dir())
        .collect()
}

/// Removes (children first, empty ones only) the suite's groups that were
/// not there before the run.
fn remove_suite_groups(before: &[PathBuf]) {
    for dir in suite_groups() {
        if !before.contains(&dir) {
            let _ = caixa::cgroup::remove_tree(&dir);
        }
    }
}

/// The checkout's commit, as recorded by git, or "an unknown commit" (a
/// `git archive` copy has none).
fn commit_of(runtime_tools: &Path) -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(runtime_tools)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "an unknown commit".into())
}

/// The markdown table: one row per group, one column per runtime, and the
/// groups every runtime passed whole counted at the end.
pub fn table(columns: &[&str], groups: &[String], results: &[Vec<Outcome>]) -> String {
    let mut out = format!("| group | {} |\n", columns.join(" | "));
    out.push_str(&format!("|---|{}\n", "---|".repeat(columns.len())));
    for (i, group) in groups.iter().enumerate() {
        let cells: Vec<String> = results.iter().map(|r| r[i].cell()).collect();
        out.push_str(&format!("| {group} | {} |\n", cells.join(" | ")));
    }
    let whole: Vec<String> = results
        .iter()
        .map(|r| {
            let n = r.iter().filter(|o| o.whole()).count();
            format!("{n}/{}", r.len())
        })
        .collect();
    out.push_str(&format!(
        "| **groups passed whole** | {} |\n",
        whole.join(" | ")
    ));
    out
}

/// `cargo xtask conformance-shim -- RUNTIME ARGS…`: empties the inheritable
/// and ambient capability sets in the bundle that `create` or `run` names,
/// then becomes `RUNTIME ARGS…`. Every JSON file at the top of the bundle is
/// changed alike: some groups give the checker its expectations in a
/// `test.json` of their own beside `config.json`.
pub fn shim(command: &[String]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let Some((runtime, args)) = command.split_first() else {
        bail!("conformance-shim: give the runtime and its arguments after --");
    };
    if let Some(bundle) = bundle_of(args) {
        for entry in std::fs::read_dir(&bundle)
            .with_context(|| format!("cannot read the bundle {}", bundle.display()))?
        {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let Ok(mut config) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if empty_inheritable_and_ambient(&mut config) {
                std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
            }
        }
    }
    Err(Command::new(runtime).args(args).exec()).with_context(|| format!("cannot run {runtime}"))
}

/// The bundle a `create` or `run` command line names (`--bundle DIR`,
/// `--bundle=DIR`, `-b DIR`; the working directory when none), or `None`
/// for the other commands.
fn bundle_of(args: &[String]) -> Option<PathBuf> {
    let command = args.iter().position(|a| a == "create" || a == "run")?;
    let rest = &args[command + 1..];
    for (i, arg) in rest.iter().enumerate() {
        if let Some(dir) = arg.strip_prefix("--bundle=") {
            return Some(dir.into());
        }
        if arg == "--bundle" || arg == "-b" {
            return rest.get(i + 1).map(PathBuf::from);
        }
    }
    std::env::current_dir().ok()
}

/// Empties `process.capabilities.inheritable` and `.ambient`; whether
/// anything changed.
fn empty_inheritable_and_ambient(config: &mut Value) -> bool {
    let Some(caps) = config.pointer_mut("/process/capabilities") else {
        return false;
    };
    let mut changed = false;
    for set in ["inheritable", "ambient"] {
        if let Some(Value::Array(list)) = caps.get_mut(set) {
            changed |= !list.is_empty();
            list.clear();
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_counts_only_the_left_margin() {
        let tap = "TAP version 13\nok 1 - a\n  ---\n  {\"stdout\": \"ok 9\\nnot ok 8\"}\n  \
                   ...\nok 2 # SKIP not set\nnot ok 3 - b\n1..3\n";
        let out = Outcome::parse(tap, true);
        assert_eq!(
            (out.passed, out.failed, out.skipped, out.planned),
            (2, 1, 1, Some(3))
        );
        assert_eq!(out.cell(), "2/3");
        assert!(!out.whole());
        assert!(Outcome::parse("ok 1\nok 2\n1..2\n", true).whole());
        let two_streams =
            Outcome::parse("TAP version 13\nok 1\n1..1\nTAP version 13\n1..0\n", true);
        assert_eq!(
            (two_streams.cell(), two_streams.whole()),
            ("1/1".into(), true)
        );
    }

    #[test]
    fn a_group_that_stops_early_or_exits_badly_says_so() {
        let out = Outcome::parse("TAP version 13\nok 1 - a\n", false);
        assert_eq!((out.cell(), out.whole()), ("1/1 (no plan)".into(), false));
        let out = Outcome::parse("ok 1\n1..1\n", false);
        assert_eq!((out.cell(), out.whole()), ("1/1 (exit 1)".into(), false));
        let out = Outcome {
            timed_out: true,
            ..Outcome::parse("ok 1\n1..4\n", false)
        };
        assert_eq!(out.cell(), "1/4 (timeout)");
    }

    #[test]
    fn a_group_without_tests_is_judged_by_its_end() {
        let hooks_ok = Outcome::parse("TAP version 13\n1..0\n", true);
        assert_eq!(hooks_ok.cell(), "pass");
        let hooks_bad = Outcome::parse(
            "TAP version 13\n  ---\n  {\n    \"error\": \"x\"\n  }\n1..0\n",
            true,
        );
        assert_eq!(hooks_bad.cell(), "fail");
        assert_eq!(Outcome::parse("failed to create\n", false).cell(), "fail");
        assert_eq!(Outcome::parse("", true).cell(), "pass");
    }

    #[test]
    fn the_table_has_a_row_per_group_and_counts_whole_groups() {
        let ok = Outcome::parse("ok 1\n1..1\n", true);
        let bad = Outcome::parse("not ok 1\n1..1\n", true);
        let groups = vec!["create".to_string(), "kill".to_string()];
        let t = table(
            &["runc", "step12"],
            &groups,
            &[vec![ok.clone(), ok.clone()], vec![ok, bad]],
        );
        assert_eq!(
            t,
            "| group | runc | step12 |\n|---|---|---|\n| create | 1/1 | 1/1 |\n\
             | kill | 1/1 | 0/1 |\n| **groups passed whole** | 2/2 | 1/2 |\n"
        );
    }

    #[test]
    fn the_shim_finds_the_bundle_of_create_and_run_only() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            bundle_of(&args("--root /r create --bundle /b id")),
            Some("/b".into())
        );
        assert_eq!(bundle_of(&args("run -b /b id")), Some("/b".into()));
        assert_eq!(bundle_of(&args("create --bundle=/b id")), Some("/b".into()));
        assert_eq!(bundle_of(&args("--root /r start id")), None);
    }

    #[test]
    fn the_shim_empties_inheritable_and_ambient_only() {
        let mut config = serde_json::json!({"process": {"capabilities": {
            "bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"],
            "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]}}});
        assert!(empty_inheritable_and_ambient(&mut config));
        assert_eq!(
            config["process"]["capabilities"],
            serde_json::json!({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL"], "inheritable": [], "ambient": []})
        );
        assert!(!empty_inheritable_and_ambient(&mut config));
        assert!(!empty_inheritable_and_ambient(&mut serde_json::json!({})));
    }
}
