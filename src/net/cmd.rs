//! Running `ip`, `iptables-restore`, `tc` and `nsenter`, with `-v` showing
//! each command and its batch input as a learner would type them.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};

use super::NetError;
use crate::trace::{Side, Trace};

/// The Debian package that provides each tool, for the error message.
fn package(program: &str) -> &'static str {
    match program {
        "ip" | "tc" | "bridge" => "iproute2",
        "nsenter" => "util-linux",
        _ => "iptables",
    }
}

/// Runs `program args` with `input` on stdin; fails with its stderr.
pub fn run(program: &str, args: &[&str], input: &str, trace: &Trace) -> Result<String, NetError> {
    let (line, child, _) = start(program, args, input, false, trace)?;
    finish(line, child)
}

/// Shows the command (and its input) under `-v`, starts it and writes
/// `input` to its stdin, which is then closed. With `orphan`, the program
/// is started through a middle process that exits at once ([`orphan`]):
/// the [`Child`] returned is that middle process, and the program's
/// stdout and stderr come merged, in the one pipe returned beside it (a
/// program left running must not block on a pipe nobody reads).
fn start(
    program: &str,
    args: &[&str],
    input: &str,
    orphan: bool,
    trace: &Trace,
) -> Result<(String, Child, Option<File>), NetError> {
    let line = format!("{program} {}", args.join(" "));
    if trace.enabled() {
        let shown = if input.is_empty() {
            line.clone()
        } else {
            format!("{line} <<EOF\n{}EOF", input)
        };
        trace.step(Side::Parent, format_args!("$ {shown}"));
    }
    let failed = |e: std::io::Error| NetError::Command {
        command: line.clone(),
        stderr: e.to_string(),
    };
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::piped());
    let merged = if orphan {
        let (reader, writer) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| failed(e.into()))?;
        command
            .stdout(writer.try_clone().map_err(failed)?)
            .stderr(writer);
        // SAFETY: `orphan` makes only async-signal-safe calls (raw system
        // calls and _exit), as the time between fork and exec requires.
        unsafe { command.pre_exec(self::orphan) };
        Some(File::from(reader))
    } else {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        None
    };
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => NetError::Missing(program.to_string(), package(program)),
        _ => failed(e),
    })?;
    // Our copies of the merged pipe's write end go with `command`, so that
    // the reader sees its end when the program's go.
    drop(command);
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    Ok((line, child, merged))
}

/// Waits for the command to end; its stdout, or its first line of stderr
/// as the error.
fn finish(line: String, child: Child) -> Result<String, NetError> {
    let out: Output = child.wait_with_output().map_err(|e| NetError::Command {
        command: line.clone(),
        stderr: e.to_string(),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return Err(NetError::Command {
            command: line,
            stderr: first.trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ANCHOR: restore
/// The comment written after the last `COMMIT` of a netfilter batch.
/// `iptables-restore --verbose` copies each comment to its stdout when it
/// reaches it, and it reaches this one only after every transaction before
/// it is in the kernel (it stops at the first that fails).
pub const COMMITTED: &str = "# caixa: committed";

/// Applies an `iptables-restore --noflush` batch, and returns as soon as
/// the batch is committed instead of when the program ends.
///
/// Why not wait for the end: a transaction that deletes rules or chains
/// hands them to the kernel to free after an RCU grace period (no CPU may
/// still be walking them), and the last `close` of a netfilter netlink
/// socket waits for that freeing to finish. So `iptables-restore` that
/// deleted something spends 5 to 15 ms in its final `close`, after its
/// work is done: most of the time a step 8 container with `-p` took to
/// end. The rules are gone once [`COMMITTED`] comes back; the program ends
/// on its own, as an orphan ([`orphan`]). If the marker never comes, the
/// batch failed, and the error is the first line the program wrote.
/// `--wait=10`: the legacy backend locks `/run/xtables.lock` for each
/// table's transaction, so a batch that meets another iptables user's
/// (another container's start) waits for it, for 10 s at most, instead of
/// failing at once (the nf_tables backend takes no such lock).
///
/// What the orphan still does can delay the next netfilter transaction of
/// this network namespace, ours or anyone's: the kernel finishes its
/// `close` holding nf_tables' commit lock. The rules are gone either way.
pub fn restore(batch: &str, trace: &Trace) -> Result<(), NetError> {
    // A table left open would be dropped unapplied at the end of the input,
    // after the marker: the marker would then say nothing.
    debug_assert!(batch.is_empty() || batch.ends_with("COMMIT\n"));
    let input = format!("{batch}{COMMITTED}\n");
    let (line, middle, output) = start(
        "iptables-restore",
        &["--noflush", "--verbose", "--wait=10"],
        &input,
        true,
        trace,
    )?;
    until_committed(line, middle, output)
}

/// Reads the program's output until [`COMMITTED`] comes back. Without
/// the marker, the batch failed: the error is the first other line the
/// program wrote (its stderr comes in the same pipe). `middle` is the
/// process [`orphan`] left, which has exited.
fn until_committed(line: String, mut middle: Child, output: Option<File>) -> Result<(), NetError> {
    let _ = middle.wait();
    let mut said = None;
    for text in output
        .into_iter()
        .flat_map(|o| BufReader::new(o).lines().map_while(Result::ok))
    {
        if text == COMMITTED {
            return Ok(());
        }
        if said.is_none() && !text.trim().is_empty() {
            said = Some(text.trim().to_string());
        }
    }
    Err(NetError::Command {
        command: line,
        stderr: said.unwrap_or_else(|| "it ended without committing the batch".into()),
    })
}

/// Runs in the forked child before `exec`: forks once more and exits, so
/// that the program execs in a grandchild whose parent is gone. The kernel
/// gives an orphan to the nearest subreaper above us (a service manager)
/// or to init, which reaps it whenever it ends; caixa neither waits for it
/// nor leaves a zombie of its own, and needs no thread
/// (a thread alive when the container is cloned would deadlock the child,
/// which inherits only the cloning thread). The raw system call, not
/// glibc's `fork`, which is not async-signal-safe.
fn orphan() -> std::io::Result<()> {
    let (none, flags) = (0 as libc::c_long, libc::SIGCHLD as libc::c_long);
    // SAFETY: clone with only SIGCHLD is fork: no shared memory, no new
    // stack; the child returns 0 and goes on to exec. Every argument is a
    // full `long`, as the kernel reads them.
    match unsafe { libc::syscall(libc::SYS_clone, flags, none, none, none, none) } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            // The program keeps running after we return: it should hold
            // nothing of ours but its three pipes, even a descriptor we
            // inherited without close-on-exec (a kernel before 5.11 has no
            // close_range, and then nothing is marked).
            // SAFETY: a system call on descriptors only.
            unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    3 as libc::c_long,
                    libc::c_long::from(u32::MAX),
                    libc::CLOSE_RANGE_CLOEXEC as libc::c_long,
                )
            };
            Ok(())
        }
        // SAFETY: _exit ends the middle process without running anything
        // of the parent's (no atexit, no destructors, no stdio flush).
        _ => unsafe { libc::_exit(0) },
    }
}
// ANCHOR_END: restore

/// Writes a sysctl under `/proc/sys` (e.g. `net/ipv4/ip_forward`).
pub fn sysctl(key: &str, value: &str, trace: &Trace) -> Result<(), NetError> {
    let path = format!("/proc/sys/{key}");
    trace.step(
        Side::Parent,
        format_args!("$ sysctl -w {}={value}", key.replace('/', ".")),
    );
    std::fs::write(&path, value).map_err(|source| NetError::State {
        path: path.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::Pid;

    fn quiet() -> Trace {
        Trace::new(false)
    }

    #[test]
    fn restore_returns_once_committed_while_the_program_still_runs() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!(
            "cat >/dev/null; echo '{COMMITTED}'; echo $$ > {}; exec sleep 60",
            pid_file.display()
        );
        let (line, child, output) =
            start("sh", &["-c", &script], "*nat\nCOMMIT\n", true, &quiet()).unwrap();
        until_committed(line, child, output).unwrap();
        // The pid is written after the marker: wait for it, not for the end.
        let pid = loop {
            if let Ok(text) = std::fs::read_to_string(&pid_file)
                && let Ok(pid) = text.trim().parse::<i32>()
            {
                break pid;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        assert!(
            !stat.is_empty(),
            "restore waited for the program to end, not for its marker"
        );
        // The fourth field of stat, after the command in parentheses.
        let parent = stat.rsplit(") ").next().and_then(|r| r.split(' ').nth(1));
        assert_ne!(
            parent,
            Some(std::process::id().to_string().as_str()),
            "the program is still our child: it would be a zombie until we wait for it"
        );
    }

    #[test]
    fn restore_without_the_marker_reports_the_programs_error() {
        let script = "cat >/dev/null; echo 'line 2 failed: Bad rule' >&2; exit 1";
        let (line, child, output) =
            start("sh", &["-c", script], "*nat\nCOMMIT\n", true, &quiet()).unwrap();
        match until_committed(line, child, output) {
            Err(NetError::Command { stderr, .. }) => assert_eq!(stderr, "line 2 failed: Bad rule"),
            other => panic!("expected the program's error, got {other:?}"),
        }
        let script = "cat >/dev/null; exit 1";
        let (line, child, output) = start("sh", &["-c", script], "", true, &quiet()).unwrap();
        match until_committed(line, child, output) {
            Err(NetError::Command { stderr, .. }) => {
                assert_eq!(stderr, "it ended without committing the batch")
            }
            other => panic!("expected an error without the marker, got {other:?}"),
        }
    }
}
