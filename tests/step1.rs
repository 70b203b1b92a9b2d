//! Step 1 grading: the PID namespace, exit codes and signals.

mod support;

use std::os::unix::process::ExitStatusExt;

use support::{Running, run, stdout_of, text};

#[test]
fn the_command_is_pid_1_inside() {
    let out = run(1, &["sh", "-c", "echo $$"]);
    assert_eq!(
        stdout_of(&out).trim(),
        "1",
        "step 1: the command should be pid 1 of a new PID namespace — did clone3 get CLONE_NEWPID?"
    );
}

#[test]
fn the_host_sees_another_pid_for_the_same_process() {
    let running = Running::start(1, &[], "echo ready; read x");
    let pid = running.container_pid();
    assert_ne!(pid, 1);
    // NSpid lists the process's pid in each PID namespace it belongs to,
    // outermost first: the host's pid, then 1.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .expect("NSpid line");
    let ids: Vec<&str> = nspid.split_whitespace().skip(1).collect();
    assert_eq!(ids, [pid.to_string().as_str(), "1"], "{nspid}");
    // And it is in another PID namespace than we are.
    let ours = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    assert_ne!(ours, theirs);
    let (status, _) = running.finish();
    assert!(status.success());
}

#[test]
fn the_exit_code_is_the_commands() {
    let out = run(1, &["sh", "-c", "exit 42"]);
    assert_eq!(out.status.code(), Some(42), "{}", text(&out.stderr));
    let out = run(1, &["true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn a_container_killed_by_a_signal_exits_128_plus_n() {
    let running = Running::start(1, &[], "echo ready; read x");
    let pid = running.container_pid();
    // SAFETY: plain kill(2) of the container's pid 1, which we just read.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let mut running = running;
    let status = running.child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 9), "{status:?}");
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
        0
    );
    let mut running = running;
    let status = running.child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(7),
        "the step binary should forward SIGTERM to the container, not die of it: {status:?} (signal {:?})",
        status.signal()
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
        0
    );
    let mut running = running;
    assert_eq!(running.child.wait().unwrap().code(), Some(8));
}

#[test]
fn arguments_after_the_command_belong_to_it() {
    let out = run(1, &["sh", "-c", "echo \"$@\"", "sh", "-v", "--help"]);
    assert_eq!(stdout_of(&out).trim(), "-v --help");
}

#[test]
fn verbose_prints_the_clone_flags() {
    let out = run(1, &["-v", "true"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("clone3(CLONE_NEWPID)"), "{err}");
    assert!(err.contains("execve("), "{err}");
}

#[test]
fn help_says_what_the_step_adds() {
    let out = run(1, &["--help"]);
    assert!(stdout_of(&out).contains("PID namespace"));
}
