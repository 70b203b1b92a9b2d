//! The client's side of reading a container from outside: `step11 cp`,
//! `top`, `stats` and `port`, each one or two calls of the API that the
//! Docker CLI makes for the same command.
//!
//! `cp` decides on the client, as `docker cp` does, what the copy means
//! (into a directory, or as a new name) from a `HEAD` of the destination,
//! and leaves the daemon one job: a tar of a path, or a tar into a
//! directory. What comes back from a container is unpacked with the `tar`
//! crate's `unpack`, which refuses names with `..` and entries that would
//! land outside the destination through a symlink.

use std::fs::File;
use std::io::{Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::EngineError;
use super::client::{Client, Payload};
use crate::registry::client::percent_encode;

fn fail(why: String) -> EngineError {
    EngineError::BadRequest(why)
}

/// `CONTAINER:PATH` → `(CONTAINER, PATH)`; a host path (one that starts
/// with `/` or `.`, or has no `:` before its first `/`) → `None`.
pub fn container_path(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (container, path) = arg.split_once(':')?;
    (!container.is_empty() && !container.contains('/')).then_some((container, path))
}

/// An unnamed scratch file (`O_TMPFILE`) in the temporary directory.
fn scratch() -> Result<File, EngineError> {
    let dir = std::env::temp_dir();
    File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(&dir)
        .map_err(|e| {
            fail(format!(
                "cannot make a scratch file in {}: {e}",
                dir.display()
            ))
        })
}

/// The stat `HEAD …/archive` answers for `path`, or `None` if it is missing.
fn stat(client: &Client, container: &str, path: &str) -> Result<Option<Value>, EngineError> {
    use base64::Engine as _;
    let target = archive_target(container, path);
    match client.call("HEAD", &target, None, &mut |_| {}) {
        Ok(answer) => {
            let header = answer
                .headers
                .get("x-docker-container-path-stat")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let json = base64::engine::general_purpose::STANDARD
                .decode(header)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            Ok(Some(json))
        }
        Err(EngineError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn archive_target(container: &str, path: &str) -> String {
    format!(
        "/containers/{}/archive?path={}",
        percent_encode(container),
        percent_encode(path)
    )
}

/// Whether a path stat says "directory" (Go's `os.ModeDir`, bit 31).
fn is_dir(stat: &Value) -> bool {
    stat["mode"].as_u64().is_some_and(|m| m & (1 << 31) != 0)
}

// ANCHOR: client_cp
/// `step11 cp SRC DST`, one side `CONTAINER:PATH`; `-` is a tar on
/// stdin or stdout.
pub fn cp(client: &Client, src: &str, dst: &str) -> Result<(), EngineError> {
    match (container_path(src), container_path(dst)) {
        (Some((container, path)), None) => copy_out(client, container, path, dst),
        (None, Some((container, path))) => copy_in(client, src, container, path),
        (Some(_), Some(_)) => Err(fail(
            "copying between containers is not supported: copy to the host first".into(),
        )),
        (None, None) => Err(fail("one of SRC and DST must be CONTAINER:PATH".into())),
    }
}
// ANCHOR_END: client_cp

fn copy_out(client: &Client, container: &str, path: &str, dst: &str) -> Result<(), EngineError> {
    let mut tar = if dst == "-" { None } else { Some(scratch()?) };
    let mut failed = None;
    client.call(
        "GET",
        &archive_target(container, path),
        None,
        &mut |chunk| {
            let written = match tar.as_mut() {
                Some(file) => file.write_all(chunk),
                None => std::io::stdout().write_all(chunk),
            };
            if let Err(e) = written {
                failed.get_or_insert(e);
            }
        },
    )?;
    if let Some(e) = failed {
        return Err(fail(format!("cannot write the copy: {e}")));
    }
    let Some(mut tar) = tar else {
        return Ok(());
    };
    tar.rewind().map_err(EngineError::Connection)?;
    let dst = Path::new(dst);
    if dst.is_dir() {
        // Into it: DST/NAME.
        return unpack(tar, dst);
    }
    // As DST: unpacked beside it, then renamed to it.
    let parent = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = Path::new(path.trim_end_matches('/'))
        .file_name()
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let beside = parent.join(format!(".step11-cp-{}", std::process::id()));
    std::fs::create_dir(&beside)
        .map_err(|e| fail(format!("cannot copy into {}: {e}", parent.display())))?;
    let result = unpack(tar, &beside).and_then(|()| {
        std::fs::rename(beside.join(&base), dst)
            .map_err(|e| fail(format!("cannot write {}: {e}", dst.display())))
    });
    let _ = std::fs::remove_dir_all(&beside);
    result
}

fn unpack(tar: File, into: &Path) -> Result<(), EngineError> {
    // Modes without their set-id and sticky bits (the crate's default): a
    // set-uid file of the container's must not become one of the host's.
    let mut archive = tar::Archive::new(tar);
    archive.unpack(into).map_err(|e| {
        fail(format!(
            "cannot unpack the copy into {}: {e}",
            into.display()
        ))
    })
}

fn copy_in(client: &Client, src: &str, container: &str, path: &str) -> Result<(), EngineError> {
    let put = |dir: &str, file: File, length: Option<u64>| {
        let target = format!(
            "{}&noOverwriteDirNonDir=true",
            archive_target(container, dir)
        );
        let body = Payload::reader("application/x-tar", file, length);
        client
            .call("PUT", &target, Some(body), &mut |_| {})
            .map(drop)
    };
    if src == "-" {
        // SAFETY: fd 0 is this process's stdin, read here and nowhere else.
        let stdin = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(0) };
        return put(path, stdin, None);
    }
    let source = Path::new(src);
    let meta =
        std::fs::symlink_metadata(source).map_err(|e| fail(format!("cannot copy {src}: {e}")))?;
    let dest = Path::new(path);
    let dest_name = || {
        dest.file_name()
            .map(PathBuf::from)
            .ok_or_else(|| fail(format!("{path} names no file")))
    };
    let parent = || {
        dest.parent()
            .map_or("/".to_string(), |p| p.to_string_lossy().into_owned())
    };
    // Docker's rule: into DST if it is a directory, else as DST.
    let (dir, name) = match stat(client, container, path)? {
        Some(stat) if is_dir(&stat) => (
            path.to_string(),
            source
                .file_name()
                .map(PathBuf::from)
                .ok_or_else(|| fail(format!("{src} names no file")))?,
        ),
        Some(_) if meta.is_dir() => {
            return Err(fail(format!(
                "cannot copy directory {src} onto file {path} in {container}"
            )));
        }
        _ => (parent(), dest_name()?),
    };
    let mut tar = tar::Builder::new(scratch()?);
    tar.follow_symlinks(false);
    let built = if meta.is_dir() {
        tar.append_dir_all(&name, source)
    } else {
        tar.append_path_with_name(source, &name)
    };
    let mut file = built
        .and_then(|()| tar.into_inner())
        .map_err(|e| fail(format!("cannot archive {src}: {e}")))?;
    let length = file.stream_position().map_err(EngineError::Connection)?;
    file.rewind().map_err(EngineError::Connection)?;
    put(&dir, file, Some(length))
}

/// `step11 top CONTAINER`: the daemon's table, tab-separated.
pub fn top(client: &Client, container: &str) -> Result<(), EngineError> {
    let answer = client.json(
        "GET",
        &format!("/containers/{}/top", percent_encode(container)),
        None,
    )?;
    let line = |cells: &Value| {
        cells
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c.as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\t")
    };
    println!("{}", line(&answer["Titles"]));
    for process in answer["Processes"].as_array().into_iter().flatten() {
        println!("{}", line(process));
    }
    Ok(())
}

/// `step11 port CONTAINER`: `80/tcp -> 0.0.0.0:8080`, as `docker port`.
pub fn port(client: &Client, container: &str) -> Result<(), EngineError> {
    let answer = client.json(
        "GET",
        &format!("/containers/{}/json", percent_encode(container)),
        None,
    )?;
    for (port, bindings) in answer["NetworkSettings"]["Ports"]
        .as_object()
        .into_iter()
        .flatten()
    {
        for b in bindings.as_array().into_iter().flatten() {
            println!(
                "{port} -> {}:{}",
                b["HostIp"].as_str().unwrap_or_default(),
                b["HostPort"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}

// ANCHOR: client_stats
/// One line of `docker stats` from one of the daemon's JSON objects: CPU
/// % from the two samples in it, memory less its inactive page cache
/// (what the Docker CLI subtracts), the limit, the pids.
pub fn stats_line(name: &str, v: &Value) -> String {
    let number = |x: &Value| x.as_u64().unwrap_or(0);
    let cpu = number(&v["cpu_stats"]["cpu_usage"]["total_usage"])
        .saturating_sub(number(&v["precpu_stats"]["cpu_usage"]["total_usage"]));
    let system = number(&v["cpu_stats"]["system_cpu_usage"])
        .saturating_sub(number(&v["precpu_stats"]["system_cpu_usage"]));
    let cpus = number(&v["cpu_stats"]["online_cpus"]).max(1);
    let percent = if system > 0 {
        cpu as f64 / system as f64 * cpus as f64 * 100.0
    } else {
        0.0
    };
    let memory = &v["memory_stats"];
    let used = number(&memory["usage"]);
    let inactive = ["total_inactive_file", "inactive_file"]
        .iter()
        .find_map(|k| memory["stats"][k].as_u64())
        .filter(|i| *i < used)
        .unwrap_or(0);
    format!(
        "{name}\t{percent:.2}%\t{} / {}\t{}",
        bytes(used - inactive),
        bytes(number(&memory["limit"])),
        number(&v["pids_stats"]["current"])
    )
}
// ANCHOR_END: client_stats

/// `step11 stats [--no-stream] CONTAINER…`: a line per container, once or
/// every second.
pub fn stats(client: &Client, containers: &[String], stream: bool) -> Result<(), EngineError> {
    println!("NAME\tCPU %\tMEM USAGE / LIMIT\tPIDS");
    std::thread::scope(|scope| {
        let threads: Vec<_> = containers
            .iter()
            .map(|name| {
                scope.spawn(move || {
                    let target = format!(
                        "/containers/{}/stats?stream={}",
                        percent_encode(name),
                        u8::from(stream)
                    );
                    let mut pending = Vec::new();
                    client
                        .call("GET", &target, None, &mut |chunk| {
                            pending.extend_from_slice(chunk);
                            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                                let line: Vec<u8> = pending.drain(..=end).collect();
                                if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                                    println!("{}", stats_line(name, &v));
                                }
                            }
                        })
                        .map(drop)
                })
            })
            .collect();
        threads
            .into_iter()
            .try_for_each(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

/// Bytes in Docker's binary units, four significant digits: `64MiB`,
/// `1.234MiB`.
pub fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    let decimals = match value {
        v if v < 10.0 => 3,
        v if v < 100.0 => 2,
        v if v < 1000.0 => 1,
        _ => 0,
    };
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_docker_prints_them() {
        assert_eq!(bytes(64 << 20), "64MiB");
        assert_eq!(bytes(1_293_942), "1.234MiB");
        assert_eq!(bytes(512), "512B");
    }

    #[test]
    fn container_paths_are_told_from_host_paths() {
        assert_eq!(container_path("web:/etc/x"), Some(("web", "/etc/x")));
        assert_eq!(container_path("./a:b"), None);
        assert_eq!(container_path("/tmp/a:b"), None);
        assert_eq!(container_path("file"), None);
    }
}
