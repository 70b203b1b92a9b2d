//! Running `ip`, `iptables-restore`, `tc` and `nsenter`, with `-v` showing
//! each command and its batch input as a learner would type them.

use std::io::Write;
use std::process::{Command, Stdio};

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
    let line = format!("{program} {}", args.join(" "));
    if trace.enabled() {
        let shown = if input.is_empty() {
            line.clone()
        } else {
            format!("{line} <<EOF\n{}EOF", input)
        };
        trace.step(Side::Parent, format_args!("$ {shown}"));
    }
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                NetError::Missing(program.to_string(), package(program))
            }
            _ => NetError::Command {
                command: line.clone(),
                stderr: e.to_string(),
            },
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| NetError::Command {
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
