//! Step 1 grading: the PID namespace, exit codes and signals.

mod support;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

use support::{Running, likely_cause, run, stdout_of, step, text, wait_output_or_explain};

#[test]
fn the_command_is_pid_1_inside() {
    let out = run(1, &["sh", "-c", "echo $$"]);
    let pid = stdout_of(&out);
    assert_eq!(
        pid.trim(),
        "1",
        "step 1: expected the command to be pid 1 of a new PID namespace, it is pid {}; \
         most likely cause: clone_child does not pass its flags (CLONE_NEWPID) in clone3's \
         `flags`, so the child stays in the host's PID namespace",
        pid.trim()
    );
}

#[test]
fn the_host_sees_another_pid_for_the_same_process() {
    let running = Running::start(1, &[], "echo ready; read x");
    let pid = running.container_pid();
    // NSpid lists the process's pid in each PID namespace it belongs to,
    // outermost first: the host's pid, then 1.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status of the container: {e}"));
    let nspid = status
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .expect("the kernel writes an NSpid: line in /proc/PID/status (Linux 4.1 and later)");
    let ids: Vec<&str> = nspid.split_whitespace().skip(1).collect();
    assert_eq!(
        ids,
        [pid.to_string().as_str(), "1"],
        "step 1: expected the container's pid 1 to be pid {pid} on the host and 1 inside \
         (\"NSpid: {pid} 1\"), saw \"{nspid}\"; most likely cause: clone_child does not pass \
         its flags (CLONE_NEWPID) in clone3's `flags`, so the child has one pid only"
    );
    // And it is in another PID namespace than we are.
    let ours = std::fs::read_link("/proc/self/ns/pid").expect("read /proc/self/ns/pid");
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/pid")).expect("read its ns/pid");
    assert_ne!(
        ours, theirs,
        "step 1: expected the container in a PID namespace of its own, it is in the test's \
         ({ours:?}); most likely cause: clone_child does not pass its flags (CLONE_NEWPID) in \
         clone3's `flags`"
    );
    let running_err = running.stderr_text();
    let (status, _) = running.finish();
    assert!(
        status.success(),
        "step 1: expected the container to end well once it read its line, it ended with \
         {status}; most likely cause: the step binary does not wait for its child or report \
         its exit code: clone_child must return Forked::Parent(pid) in the parent (the \
         child's pid, not 0)\nstderr: {}",
        running_err
    );
}

#[test]
fn the_exit_code_is_the_commands() {
    for (args, code) in [(&["sh", "-c", "exit 42"][..], 42), (&["true"][..], 0)] {
        let out = run(1, args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "step 1: expected `{}` to make the step exit {code}, it ended with {}; \
             most likely cause: clone_child does not tell the two processes apart (clone3 returns 0 in the \
             child: Forked::Child; the child's pid in the parent), so a child that believes it \
             is the parent runs the parent's code ({})\nstderr: {}",
            args.join(" "),
            out.status,
            likely_cause(&text(&out.stderr)),
            text(&out.stderr)
        );
    }
}

#[test]
fn a_container_killed_by_a_signal_exits_128_plus_n() {
    let running = Running::start(1, &[], "echo ready; read x");
    let pid = running.container_pid();
    // SAFETY: plain kill(2) of the container's pid 1, which we just read.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGKILL) },
        0,
        "step 1: expected to kill the container's pid 1 ({pid}) from the host, kill(2) \
         failed: {}; most likely cause: the step binary's child ended already (read its \
         stderr)",
        std::io::Error::last_os_error()
    );
    let mut running = running;
    let status = running.wait_for_end(
        "step 1: expected the step binary to end once its container was killed; \
         most likely cause: it never hears of the end, clone3 needs SIGCHLD as the child's exit signal",
    );
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "step 1: expected exit code 137 (128 + SIGKILL) for a container killed by SIGKILL, \
         the step binary ended with {status}; most likely cause: the parent reports a \
         signalled child as its own exit code or dies with it, instead of 128 + the signal \
         (clone_child must return Forked::Parent(pid) so the parent waits for that pid)\n\
         stderr: {}",
        running.stderr_text()
    );
}

/// Step 1 running `true`, under a seccomp filter that kills the process
/// making `rt_sigprocmask(SIG_SETMASK, …)`. The container makes that call
/// after the parent has let it go and before its `execve` (block 10 of
/// `init::run` puts back the signal mask), so it dies there, of `SIGSYS`:
/// the parent believes the exec worked and waits for it to end. (The step
/// binary makes the same call once the container has ended, when it puts
/// its own mask back, and dies of it too: a test of this kind can only ask
/// whether it ended at all.)
fn dying_before_exec() -> Command {
    let arch = seccompiler::TargetArch::try_from(std::env::consts::ARCH).expect("a known arch");
    let set_mask = seccompiler::SeccompCondition::new(
        0,
        seccompiler::SeccompCmpArgLen::Dword,
        seccompiler::SeccompCmpOp::Eq,
        libc::SIG_SETMASK as u64,
    )
    .expect("a condition on rt_sigprocmask's first argument");
    let filter: seccompiler::BpfProgram = seccompiler::SeccompFilter::new(
        [(
            libc::SYS_rt_sigprocmask,
            vec![seccompiler::SeccompRule::new(vec![set_mask]).expect("a rule")],
        )]
        .into_iter()
        .collect(),
        seccompiler::SeccompAction::Allow,
        seccompiler::SeccompAction::KillProcess,
        arch,
    )
    .expect("a seccomp filter for rt_sigprocmask")
    .try_into()
    .expect("the filter compiled to BPF");
    let mut cmd = step(1);
    cmd.arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only setrlimit(2) (no core file of the killed processes) and
    // seccomp(2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::setrlimit(libc::RLIMIT_CORE, &none) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            seccompiler::apply_filter(&filter).map_err(std::io::Error::other)
        });
    }
    cmd
}

/// What it means when the step binary does not end after its container
/// died before its command.
const NO_SIGCHLD: &str = "step 1: expected the step binary to end once its container died \
    before its execve (killed on purpose), it never noticed; most likely cause: clone_child \
    does not ask for SIGCHLD, which the kernel sends when a child dies only if the clone \
    asked for it: SIGCHLD as clone3's exit_signal, or in the low byte of the fallback \
    clone's flags. (execve makes it SIGCHLD anyway, which is why every other test passes \
    without it.)";

#[test]
fn a_container_that_dies_before_its_command_is_reaped() {
    let out = wait_output_or_explain(
        dying_before_exec().spawn().expect("start step1"),
        NO_SIGCHLD,
    );
    // Ended, which is the point; it must not have run the command either.
    assert!(
        !out.status.success(),
        "step 1: expected the container to die before its command (a seccomp filter kills \
         it), the step binary ended well; most likely cause: the test's filter did not reach \
         the child: clone_child must create it with clone3 (or clone), not spawn a new \
         program\nstderr: {}",
        text(&out.stderr)
    );
}

/// Makes `clone3` answer `ENOSYS` in `cmd`, as on a kernel older than 5.3.
fn without_clone3(cmd: &mut Command) {
    let arch = seccompiler::TargetArch::try_from(std::env::consts::ARCH).expect("a known arch");
    let filter: seccompiler::BpfProgram = seccompiler::SeccompFilter::new(
        [(libc::SYS_clone3, vec![])].into_iter().collect(),
        seccompiler::SeccompAction::Allow,
        seccompiler::SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .expect("a seccomp filter for clone3")
    .try_into()
    .expect("the filter compiled to BPF");
    // SAFETY: only the seccomp(2) call between fork and exec.
    unsafe {
        cmd.pre_exec(move || seccompiler::apply_filter(&filter).map_err(std::io::Error::other));
    }
}

#[test]
fn without_clone3_the_fallback_to_clone_does_the_same() {
    let mut cmd = step(1);
    cmd.args(["sh", "-c", "echo $$; exit 3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    without_clone3(&mut cmd);
    let out = wait_output_or_explain(cmd.spawn().expect("start step1"), NO_SIGCHLD);
    let err = text(&out.stderr);
    assert_eq!(
        (text(&out.stdout).trim(), out.status.code()),
        ("1", Some(3)),
        "step 1: with clone3 answering ENOSYS (a kernel older than 5.3), expected the command \
         as pid 1 and its exit code 3, saw stdout {:?} and exit code {:?}; most likely cause: \
         clone_child does not fall back to clone(2) when clone3 fails with ENOSYS (the same \
         flags, SIGCHLD in their low byte, a null stack) ({})\nstderr: {err}",
        text(&out.stdout).trim(),
        out.status.code(),
        likely_cause(&err)
    );
    // And the fallback must ask for SIGCHLD too.
    let mut cmd = dying_before_exec();
    without_clone3(&mut cmd);
    let out = wait_output_or_explain(cmd.spawn().expect("start step1"), NO_SIGCHLD);
    // Ended, which is the point; it must not have run the command either.
    assert!(
        !out.status.success(),
        "step 1: with clone3 answering ENOSYS, expected the container to die before its \
         command (a seccomp filter kills it), the step binary ended well; most likely cause: \
         the fallback clone(2) in clone_child is not the one that ran (a fork or spawn \
         instead)\nstderr: {}",
        text(&out.stderr)
    );
}

#[test]
fn sigterm_to_the_step_binary_reaches_the_container() {
    // pid 1 of a namespace gets only the signals it has a handler for: the
    // trap installs one, so a forwarded SIGTERM makes it exit 7.
    let running = Running::start(
        1,
        &[],
        "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done",
    );
    // SAFETY: kill(2) of our own child, the step binary.
    assert_eq!(
        unsafe { libc::kill(running.child.id() as i32, libc::SIGTERM) },
        0,
        "step 1: expected to send SIGTERM to the step binary, kill(2) failed: {}; \
         most likely cause: the step binary ended already (read its stderr)",
        std::io::Error::last_os_error()
    );
    let mut running = running;
    let status = running.wait_for_end(
        "step 1: expected the step binary to forward SIGTERM to the container (whose trap \
         exits 7) and end with it; most likely cause: it does not notice the container's end, \
         clone3 needs SIGCHLD as the child's exit signal",
    );
    assert_eq!(
        status.code(),
        Some(7),
        "step 1: expected the step binary to forward SIGTERM to the container (whose trap exits \
         7), not die of it: it ended with {status} (signal {:?}); most likely cause: the \
         parent does not block SIGTERM before clone_child and pass it on while it waits \
         (signals::block, Blocked::wait_for_exit), or clone_child returned Forked::Parent \
         with another pid than the child's\nstderr: {}",
        status.signal(),
        running.stderr_text()
    );
}

#[test]
fn sigint_is_forwarded_too() {
    let running = Running::start(
        1,
        &[],
        "trap 'exit 8' INT; echo ready; while :; do sleep 0.05; done",
    );
    // SAFETY: kill(2) of our own child, the step binary.
    assert_eq!(
        unsafe { libc::kill(running.child.id() as i32, libc::SIGINT) },
        0,
        "step 1: expected to send SIGINT to the step binary, kill(2) failed: {}; \
         most likely cause: the step binary ended already (read its stderr)",
        std::io::Error::last_os_error()
    );
    let mut running = running;
    let status = running.wait_for_end(
        "step 1: expected the step binary to forward SIGINT to the container (whose trap \
         exits 8) and end with it; most likely cause: it does not notice the container's end, \
         clone3 needs SIGCHLD as the child's exit signal",
    );
    assert_eq!(
        status.code(),
        Some(8),
        "step 1: expected the step binary to forward SIGINT to the container (whose trap exits \
         8), not die of it: it ended with {status}; most likely cause: the parent does not \
         block SIGINT before clone_child and pass it on while it waits (signals::block, \
         Blocked::wait_for_exit), or clone_child returned Forked::Parent with another pid \
         than the child's\nstderr: {}",
        running.stderr_text()
    );
}

#[test]
fn arguments_after_the_command_belong_to_it() {
    let out = run(1, &["sh", "-c", "echo \"$@\"", "sh", "-v", "--help"]);
    assert_eq!(
        stdout_of(&out).trim(),
        "-v --help",
        "step 1: expected the options after the command (-v --help) to reach it, it printed \
         {:?}; most likely cause: the step's clap arguments take options after the command \
         (the command's arguments need trailing_var_arg)",
        text(&out.stdout).trim()
    );
}

#[test]
fn verbose_prints_the_clone_flags() {
    let out = run(1, &["-v", "true"]);
    let err = text(&out.stderr);
    assert!(
        out.status.success(),
        "step 1: expected `step1 -v true` to succeed, it ended with {}; most likely cause: {}\n\
         stderr: {err}",
        out.status,
        likely_cause(&err)
    );
    for line in ["clone3(CLONE_NEWPID)", "execve("] {
        assert!(
            err.contains(line),
            "step 1: expected -v to print a line with {line:?}, it printed:\n{err}\n\
             most likely cause: -v's trace lines were changed: parent::launch (block 5) prints \
             \"clone3(FLAGS)\" and init::run \"execve(…)\" before each call"
        );
    }
}

#[test]
fn help_says_what_the_step_adds() {
    let out = run(1, &["--help"]);
    let help = stdout_of(&out);
    assert!(
        help.contains("PID namespace"),
        "step 1: expected `step1 --help` to say what the step adds (a PID namespace), it \
         printed:\n{help}\nmost likely cause: the about text of chapters/step1-pid/main.rs \
         was changed"
    );
}
