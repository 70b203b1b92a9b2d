//! `cargo xtask`: the project's own tooling, in Rust so it runs wherever cargo does.
//!
//! `cargo xtask --help` lists the commands (the checks CI runs, grading, the
//! book's outputs, the student copy, the VM tests, the peer benchmarks);
//! `cargo xtask COMMAND --help` says what one does and takes. The command
//! line is the [`Task`] enum below; each command's work lives in its module.

mod anchors;
mod book;
mod book_html;
mod book_ids;
mod book_site;
mod browser;
mod cli_floor;
mod conformance;
mod cost_plot;
mod course;
mod doctor;
mod drift;
mod engine_bench;
mod exercises;
mod grade;
mod grade_vms;
mod lab;
mod mistakes;
mod outputs;
mod peers;
mod podman_bench;
mod proven;
mod registry_bench;
mod spine;
mod transcripts;
mod vm;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// The project's own tooling: checks, grading, the book's outputs, the
/// student copy and the VM tests.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Xtask {
    #[command(subcommand)]
    command: Task,
}

/// One task; each has its own `--help`.
#[derive(Debug, Subcommand)]
enum Task {
    /// Every check CI runs, in the order a failure is cheapest to find.
    Ci,
    /// Check that every `{{#include}}` in the book resolves to text.
    CheckAnchors,
    /// Build the book in English (book/book) and Brazilian Portuguese
    /// (book/book/pt-BR): extract the messages (book/po/messages.pot),
    /// merge them into book/po/pt-BR.po and report how much is translated.
    Book {
        /// Merge into a scratch copy and leave book/po/pt-BR.po alone.
        #[arg(long)]
        no_update: bool,
        /// Fail when a message is untranslated or fuzzy.
        #[arg(long)]
        check_complete: bool,
    },
    /// Open every page of both editions of the book in headless Chromium.
    ///
    /// Builds the book (`cargo xtask book --no-update`), then checks every
    /// page of book/book/ (English) and book/book/pt-BR/ (Portuguese):
    /// every relative link leads to a file of the book and its #anchor to
    /// an id in that page; no {{#include}} is left unresolved; no code
    /// block is empty. Then it loads each page in Debian's `chromium`
    /// (headless, two at a time, as root with --no-sandbox) and fails when
    /// a script throws, when the rendered <main> lost the page's heading or
    /// text, when a sidebar entry is empty, or when the language switch is
    /// missing or does not lead to the same page of the other edition. One line per problem, with the
    /// file to fix; a summary with counts and time. A screenshot of every
    /// page (1280x2000) is left in <target>/book-screens/<lang>/, and the
    /// two editions' step 1 as language-switch-{en,pt-BR}.png, for CI to
    /// keep as an artefact. Needs `sudo apt-get install chromium`
    /// (.ci/packages.txt); takes about 1.5 minutes on two cores.
    CheckBookBrowser {
        /// Check the book already in book/book/ instead of building it.
        #[arg(long)]
        no_build: bool,
        /// The checkout whose book to build and check (default: this one);
        /// a scratch copy, to see what a change to the book would break.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Check that the book and the README say what the code says: the
    /// steps, the exercise regions, the points and the mistakes caught.
    CheckDrift,
    /// Check the lab machines' files (.ci/lab/): they parse, and they and
    /// CI install the one package list, .ci/packages.txt.
    CheckLab,
    /// Regenerate the book's command outputs.
    Outputs {
        /// Check that they still match (numbers aside) instead of writing them.
        #[arg(long)]
        check: bool,
    },
    /// Write the student copy: each exercise region becomes a `todo!`.
    Exercises {
        /// Stub only the exercises of steps up to N.
        #[arg(long, value_name = "N", conflicts_with = "only")]
        step: Option<u32>,
        /// Stub only these steps' exercises; every other step keeps the
        /// reference, so one step can be a lab of its own.
        #[arg(long, value_name = "N,M,...", value_delimiter = ',')]
        only: Vec<u32>,
        /// Where to write the copy.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Also build the student book from the copy (into DIR/book/book):
        /// its code shows the `todo!()`s, its check questions no answers.
        #[arg(long)]
        book: bool,
    },
    /// Prove that each step's graded tests fail on its stub.
    CheckExercises,
    /// Prove that each step's graded tests catch the usual wrong solutions
    /// (xtask/mistakes/stepN.toml), each applied to a scratch copy.
    CheckMistakes {
        /// Only these steps (default: every step with a mistakes file).
        #[arg(long, value_name = "N,M,...", value_delimiter = ',')]
        steps: Vec<u32>,
        /// Only the steps whose regions, tests or mistakes changed since
        /// this git revision (what CI runs on a change).
        #[arg(long, value_name = "REV", conflicts_with_all = ["steps", "unproven"])]
        changed_since: Option<String>,
        /// Only the steps whose files differ from the tree their proof was
        /// recorded on (xtask/mistakes/proven.toml): what `xtask ci` runs.
        #[arg(long, conflicts_with = "steps")]
        unproven: bool,
        /// Record the proof of each step that passed (its fingerprint) in
        /// xtask/mistakes/proven.toml, so `--unproven` skips it until its
        /// files change.
        #[arg(long)]
        record: bool,
        /// Also write the book's per-step tables (book/src/mistakes/stepN.md).
        #[arg(long)]
        write_book: bool,
    },
    /// Run the graded tests and print (or write) the scores.
    Grade {
        /// Grade only this step: a number, `stepN` or `errors`.
        #[arg(long, value_name = "STEP")]
        step: Option<String>,
        /// What to print or write.
        #[arg(long, value_enum, default_value_t = grade::Format::Table)]
        format: grade::Format,
        /// Where to write the result (gradescope and classroom have a default file).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The checkout to grade (default: this one).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Grade the optional harder exercises too (`[stepN.harder]` in
        /// tests/weights.toml): points of their own, beyond the total.
        #[arg(long)]
        harder: bool,
    },
    /// Grade a folder of submissions, each in a VM of its own, several at once.
    ///
    /// For each SUBMISSIONS/NAME (a student's checkout), this checkout's
    /// tests/ replace the submission's, its test binaries are built on the
    /// host (in its own target/), and the VM lane's machine (Debian's
    /// kernel, pure cgroup v2, QEMU) runs every test of them; the logs are
    /// scored with this checkout's tests/weights.toml into OUT/NAME.json
    /// (Gradescope's format), and a table of totals ends the run. Each VM
    /// takes 2 CPUs and 2 GiB: give --jobs what the machine has. The build
    /// runs a submission's build scripts on the host: run this as a user
    /// with no rights worth stealing.
    GradeVms {
        /// The folder of submissions, one directory each.
        submissions: PathBuf,
        /// Where the results go (created).
        out: PathBuf,
        /// VMs at a time.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Grade only these test binaries (`step5`, `errors`; repeatable).
        #[arg(long = "step", value_name = "NAME")]
        steps: Vec<String>,
        /// Minutes each VM may run before it is stopped (what ran is scored).
        #[arg(long, default_value_t = 60)]
        timeout_min: u64,
    },
    /// Which steps pass, as a table.
    Status,
    /// Can this machine run each step? Fails when one cannot run.
    Doctor,
    /// Run the graded tests on pure cgroup v2, in QEMU.
    VmTest {
        /// The steps to test, comma-separated.
        #[arg(
            long,
            value_name = "N,N,...",
            value_delimiter = ',',
            default_value = "4,6,7"
        )]
        steps: Vec<u32>,
        /// An extracted kernel package to boot, with `vmlinux` and `lib/modules`
        /// (default: Debian's stock kernel, downloaded once).
        #[arg(long, value_name = "DIR")]
        kernel: Option<PathBuf>,
        /// Give up after this many minutes.
        #[arg(long = "timeout-min", value_name = "N", default_value_t = 15)]
        timeout_min: u64,
    },
    /// Time caixa beside runc and crun, in the same run.
    BenchPeers {
        /// Starts per runtime.
        #[arg(long, value_name = "N", default_value_t = 100)]
        runs: usize,
    },
    /// Redraw the appendix on cost's plot (book/src/images/cost.svg) from
    /// what bench-peers and bench-engine last recorded beside it.
    PlotCost,
    /// Time podman with caixa's runtime (step 12), crun and runc under it.
    BenchPodman {
        /// Runs per runtime.
        #[arg(long, value_name = "N", default_value_t = 20)]
        runs: usize,
    },
    /// Time caixa's engine (its client and the Docker CLI) beside podman,
    /// with no network and with the default bridge, in the same run.
    BenchEngine {
        /// Runs per row.
        #[arg(long, value_name = "N", default_value_t = 20)]
        runs: usize,
        /// Instead of the rows: start N containers that stay up
        /// (`run -d`, no network), timing each start and `ps` as their
        /// number grows (`ps` also through the Docker CLI, and podman's with
        /// as many containers of its own), then remove them all: does the
        /// engine stay flat?
        #[arg(long, value_name = "N")]
        scale: Option<usize>,
        /// Instead of the rows: start N idle containers with caixa and N
        /// with podman, and print the memory each engine keeps alive beside
        /// them (resident, proportional, unique), per helper and per container.
        #[arg(long, value_name = "N", conflicts_with = "scale")]
        memory: Option<usize>,
    },
    /// Time push and pull of a 48 MiB image with caixa's registry and
    /// client beside Debian's docker-registry and skopeo, and a warm-cache
    /// rebuild, in the same run.
    BenchRegistry {
        /// Runs of each.
        #[arg(long, value_name = "N", default_value_t = 10)]
        runs: usize,
    },
    /// Run the OCI runtime-tools validation suite against runc and step12
    /// and print the table (as root; not in CI, which cannot fetch the suite).
    Conformance {
        /// A runtime-tools checkout where `make runtimetest
        /// validation-executables` has been run.
        #[arg(long, value_name = "DIR")]
        runtime_tools: PathBuf,
        /// A runtime to run the suite against, as the suite writes it (default:
        /// runc, and this checkout's step12).
        #[arg(long = "runtime", value_name = "PATH")]
        runtimes: Vec<PathBuf>,
        /// A runtime to run with the suite's inheritable and ambient
        /// capability sets emptied (default: this checkout's step12).
        #[arg(long = "one-cap-set", value_name = "PATH")]
        one_cap_set: Vec<PathBuf>,
        /// Only these groups (default: every one built).
        #[arg(long, value_name = "G,G,...", value_delimiter = ',')]
        groups: Vec<String>,
        /// Give up on a group after this many seconds.
        #[arg(long = "timeout-secs", value_name = "N", default_value_t = 120)]
        timeout_secs: u64,
    },
    /// Used by `conformance`: empty the bundle's inheritable and ambient
    /// capability sets, then run `RUNTIME ARGS…`.
    #[command(hide = true)]
    ConformanceShim {
        /// The runtime and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
}

fn main() {
    restore_default_signals();
    let Xtask { command } = Xtask::parse();
    if let Err(error) = run(command) {
        eprintln!("xtask: {error:#}");
        std::process::exit(1);
    }
}

/// Puts SIGINT and SIGQUIT back to their default action, for xtask and
/// every test it runs. A shell starts a background job (`cmd &`, a CI
/// runner's script, `nohup`) with both ignored, and an ignored disposition
/// survives execve: a step binary then never receives the SIGINT a graded
/// test sends it to forward (it is discarded, not queued for its signalfd),
/// and a container's shell never sees Ctrl-C. The tests would fail, or
/// hang, for a reason that is the runner's, not the code's.
fn restore_default_signals() {
    for signal in [libc::SIGINT, libc::SIGQUIT] {
        // SAFETY: signal(2) with a valid signal number and SIG_DFL, before
        // any thread is started.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
}

fn run(task: Task) -> Result<()> {
    let root = workspace_root();
    match task {
        Task::Ci => ci(&root),
        Task::CheckAnchors => anchors::check(&root),
        Task::Book {
            no_update,
            check_complete,
        } => {
            let catalog = if no_update {
                book::Catalog::Keep
            } else {
                book::Catalog::Update
            };
            book::run(&root, catalog, check_complete)
        }
        Task::CheckBookBrowser { no_build, dir } => {
            browser::run(dir.as_deref().unwrap_or(&root), !no_build)
        }
        Task::CheckDrift => drift::check(&root, &command_names()),
        Task::CheckLab => lab::check(&root),
        Task::Outputs { check } => outputs::run(&root, check),
        Task::Exercises {
            step,
            only,
            out,
            book,
        } => {
            let out = out.unwrap_or_else(|| root.join("target/student"));
            let stubbed = exercises::chosen_steps(&root, step, &only)?;
            let n = exercises::write_student_copy(&root, &out, |s| stubbed.contains(&s))?;
            let steps: Vec<String> = stubbed.iter().map(u32::to_string).collect();
            let rest = if step.is_some() || !only.is_empty() {
                "; every other step is the reference"
            } else {
                ""
            };
            println!(
                "wrote the student copy to {} ({n} exercise regions stubbed, of steps {}{rest})",
                out.display(),
                steps.join(", ")
            );
            if book {
                let index = exercises::build_student_book(&out)?;
                println!("built the student book: {}", index.display());
            }
            Ok(())
        }
        Task::CheckExercises => exercises::check(&root),
        Task::CheckMistakes {
            steps,
            changed_since,
            unproven,
            record,
            write_book,
        } => {
            let steps = match (changed_since, unproven) {
                (Some(base), _) => {
                    let changed = mistakes::changed_since(&root, &base)?;
                    if changed.is_empty() {
                        println!(
                            "check-mistakes: no step's regions, tests or mistakes changed since {base}"
                        );
                        return Ok(());
                    }
                    changed
                }
                (None, true) => {
                    let unproven = proven::unproven(&root)?;
                    if unproven.is_empty() {
                        println!(
                            "check-mistakes: every step is proven at its current fingerprint ({})",
                            proven::RECORD
                        );
                        return Ok(());
                    }
                    unproven
                }
                (None, false) => steps,
            };
            mistakes::check(&root, &steps, write_book, record)
        }
        Task::Grade {
            step,
            format,
            out,
            dir,
            harder,
        } => grade::command(&root, step.as_deref(), format, out, dir, harder),
        Task::GradeVms {
            submissions,
            out,
            jobs,
            steps,
            timeout_min,
        } => grade_vms::run(
            &root,
            &submissions,
            &out,
            jobs,
            &steps,
            Duration::from_secs(timeout_min * 60),
        ),
        Task::Status => grade::command(&root, None, grade::Format::Table, None, None, false),
        Task::Doctor => doctor::run(&root),
        Task::VmTest {
            steps,
            kernel,
            timeout_min,
        } => vm::run(&root, &steps, kernel, Duration::from_secs(timeout_min * 60)),
        Task::BenchPeers { runs } => peers::run(&root, runs),
        Task::BenchPodman { runs } => podman_bench::run(&root, runs),
        Task::BenchEngine {
            runs,
            scale,
            memory,
        } => engine_bench::run(&root, runs, scale, memory),
        Task::PlotCost => cost_plot::plot(&root),
        Task::BenchRegistry { runs } => registry_bench::run(&root, runs),
        Task::Conformance {
            runtime_tools,
            runtimes,
            one_cap_set,
            groups,
            timeout_secs,
        } => conformance::run(
            &root,
            &runtime_tools,
            runtimes,
            one_cap_set,
            groups,
            Duration::from_secs(timeout_secs),
        ),
        Task::ConformanceShim { command } => conformance::shim(&command),
    }
}

/// The names of xtask's commands, from the command-line definition: what
/// the drift check requires the README or the book to show.
pub fn command_names() -> Vec<String> {
    use clap::CommandFactory;
    Xtask::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect()
}

/// The repository root: xtask lives in `<root>/xtask`.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Runs a command in `dir`, streaming its output, and fails if it fails.
pub fn sh(dir: &Path, program: &str, args: &[&str]) -> Result<()> {
    println!("\n==> {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot run {program}: is it installed?"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The grader itself, on the reference solution: every test must score.
/// (`check-exercises` grades the stubs, where they must not.)
fn grade_reference(root: &Path) -> Result<()> {
    println!("\n==> cargo xtask grade (the reference must score full marks)");
    let graded = grade::grade(root, root, None, None, false, None)?;
    print!("{}", grade::table(&graded));
    let failed: Vec<_> = graded
        .iter()
        .flat_map(|(_, t)| t)
        .filter(|t| !t.passed)
        .collect();
    // What each failing test said: a failure seen only here (the tests
    // passed once already) must leave its reason in the CI log.
    for t in &failed {
        println!("FAILED {}\n{}\n", t.name, t.output);
    }
    let missed: Vec<&str> = failed.iter().map(|t| t.name.as_str()).collect();
    if !missed.is_empty() {
        bail!(
            "the reference does not score full marks: {} failed; the tests or the solution \
             changed, run `cargo test --test STEP` to see why",
            missed.join(", ")
        );
    }
    Ok(())
}

/// `check-mistakes --unproven`: only the steps changed since their proof was
/// recorded pay for one (see `proven.rs` for why); last in CI, being the
/// dearest when a step did change.
fn check_unproven_mistakes(root: &Path) -> Result<()> {
    println!("\n==> cargo xtask check-mistakes --unproven");
    let steps = proven::unproven(root)?;
    if steps.is_empty() {
        println!("check-mistakes: every step is proven at its current fingerprint");
        return Ok(());
    }
    mistakes::check(root, &steps, false, false)?;
    let steps: Vec<String> = steps.iter().map(u32::to_string).collect();
    println!(
        "check-mistakes: steps {} passed but have no recorded proof: run `cargo xtask \
         check-mistakes --unproven --record` and commit {} so CI skips them",
        steps.join(", "),
        proven::RECORD
    );
    Ok(())
}

/// Everything CI checks, in the order a failure is cheapest to find.
fn ci(root: &Path) -> Result<()> {
    let mut clock = PhaseClock::default();
    clock.time("fmt", || sh(root, "cargo", &["fmt", "--all", "--check"]))?;
    clock.time("anchors, drift, lab", || {
        anchors::check(root)?;
        drift::check(root, &command_names())?;
        lab::check(root)
    })?;
    clock.time("clippy", || {
        sh(
            root,
            "cargo",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        )
    })?;
    // The unit and doc tests here; the graded tests (every file of
    // `tests/`) once, through the grader, which prints what a failing one
    // said. Running them here too would double the dearest minutes.
    clock.time("unit and doc tests", || {
        sh(root, "cargo", &["test", "--workspace", "--lib", "--bins"])?;
        sh(root, "cargo", &["test", "--workspace", "--doc"])
    })?;
    clock.time("graded tests", || grade_reference(root))?;
    clock.time("outputs", || outputs::run(root, true))?;
    // Both editions, with the catalog merged into a scratch copy: every
    // message translated, none fuzzy (a changed English paragraph without
    // its Portuguese is red), then both opened in a real browser.
    clock.time("book", || book::run(root, book::Catalog::Keep, true))?;
    clock.time("book in a browser", || browser::check(root))?;
    clock.time("exercises", || exercises::check(root))?;
    clock.time("mistakes", || check_unproven_mistakes(root))?;
    println!("\nxtask ci: every check passed\n{}", clock.table());
    Ok(())
}

/// How long each phase of `ci` took, printed at its end: CI has a time
/// budget, and the log is where the next one to trim it starts.
#[derive(Default)]
struct PhaseClock {
    phases: Vec<(&'static str, Duration)>,
}

impl PhaseClock {
    /// Runs `phase`, keeping its time even when it fails.
    fn time<T>(&mut self, name: &'static str, phase: impl FnOnce() -> Result<T>) -> Result<T> {
        let start = Instant::now();
        let result = phase();
        self.phases.push((name, start.elapsed()));
        if result.is_err() {
            eprintln!("{}", self.table());
        }
        result
    }

    fn table(&self) -> String {
        let total: Duration = self.phases.iter().map(|(_, d)| *d).sum();
        let mut out = String::from("xtask ci: time per phase\n");
        for (name, took) in &self.phases {
            out += &format!("  {name:<22} {:>6.0} s\n", took.as_secs_f64());
        }
        out + &format!("  {:<22} {:>6.0} s", "total", total.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact command lines `.ci/run` uses keep parsing.
    #[test]
    fn cis_command_lines_parse() {
        let ci = Xtask::try_parse_from(["xtask", "ci"]).unwrap();
        assert!(matches!(ci.command, Task::Ci));
        let vm = Xtask::try_parse_from([
            "xtask",
            "vm-test",
            "--steps",
            "1,2,3,4,5,6,7,8,9,10,11,12",
            "--timeout-min",
            "35",
        ])
        .unwrap();
        let Task::VmTest {
            steps, timeout_min, ..
        } = vm.command
        else {
            panic!("{vm:?}")
        };
        assert_eq!(steps, (1..=12).collect::<Vec<u32>>());
        assert_eq!(timeout_min, 35);
    }

    #[test]
    fn defaults_are_the_old_ones() {
        let Task::VmTest {
            steps, timeout_min, ..
        } = Xtask::try_parse_from(["xtask", "vm-test"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!((steps, timeout_min), (vec![4, 6, 7], 15));
        let Task::BenchPeers { runs } = Xtask::try_parse_from(["xtask", "bench-peers"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(runs, 100);
    }

    #[test]
    fn check_mistakes_takes_unproven_and_record_but_not_with_steps() {
        let Task::CheckMistakes {
            unproven, record, ..
        } = Xtask::try_parse_from(["xtask", "check-mistakes", "--unproven", "--record"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert!(unproven && record);
        assert!(
            Xtask::try_parse_from(["xtask", "check-mistakes", "--unproven", "--steps", "1"])
                .is_err()
        );
    }

    #[test]
    fn the_conformance_shim_takes_the_runtimes_own_flags() {
        let Task::ConformanceShim { command } = Xtask::try_parse_from([
            "xtask",
            "conformance-shim",
            "--",
            "/bin/step12",
            "--root",
            "/r",
            "create",
            "--bundle",
            "/b",
            "id",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(command[..3], ["/bin/step12", "--root", "/r"]);
    }

    #[test]
    fn help_is_help_not_a_run() {
        let err = Xtask::try_parse_from(["xtask", "grade", "--help"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    /// Every command prints its help, and has a line that says what it is.
    #[test]
    fn every_command_has_help() {
        use clap::CommandFactory;
        for name in command_names() {
            let err = Xtask::try_parse_from(["xtask", &name, "--help"]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{name}");
            let help = err.to_string();
            assert!(help.contains("Usage: cargo xtask"), "{name}: {help}");
            let command = Xtask::command();
            let sub = command.find_subcommand(&name).unwrap();
            assert!(sub.get_about().is_some(), "{name} says nothing of itself");
        }
    }

    #[test]
    fn the_definition_is_consistent() {
        use clap::CommandFactory;
        Xtask::command().debug_assert();
    }
}
