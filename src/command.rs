//! Finding the command inside the container, the way a shell would.
//!
//! `execve(2)` wants a path. A command name without `/` is looked up in the
//! container's own `PATH`, after `pivot_root`, so it is the container's
//! `/bin/sh` that runs and not the host's. Looking it up before `Ready` lets a
//! missing command fail with a clear line and exit code 127, as in a shell.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::spec::DEFAULT_PATH;

/// The command is not there or cannot run.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Nothing of that name in `PATH`, or the path does not exist.
    #[error("command {0:?} not found in the container (searched PATH={1})")]
    NotFound(String, String),
    /// It exists but is a directory or has no execute bit.
    #[error("command {0} is not an executable file")]
    NotExecutable(PathBuf),
}

/// Resolves `program` against the `PATH` found in `env` (Docker's default
/// when there is none).
pub fn resolve(program: &str, env: &[String]) -> Result<PathBuf, CommandError> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return match std::fs::metadata(&path) {
            Ok(_) if is_executable_file(&path) => Ok(path),
            Ok(_) => Err(CommandError::NotExecutable(path)),
            Err(_) => Err(CommandError::NotFound(program.to_string(), "-".into())),
        };
    }
    let search = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut found_but_not_executable = None;
    for dir in search.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if is_executable_file(&candidate) {
            return Ok(candidate);
        }
        if candidate.exists() && found_but_not_executable.is_none() {
            found_but_not_executable = Some(candidate);
        }
    }
    match found_but_not_executable {
        Some(path) => Err(CommandError::NotExecutable(path)),
        None => Err(CommandError::NotFound(
            program.to_string(),
            search.to_string(),
        )),
    }
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Strings as `execve` wants them. `Spec::validate` has refused NUL bytes
/// already, so none is dropped here.
pub fn to_cstrings(strings: &[String]) -> Vec<CString> {
    strings
        .iter()
        .filter_map(|s| CString::new(s.as_bytes()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_commands_in_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        let sh = resolve("sh", &env).unwrap();
        assert!(sh.ends_with("sh"));
        assert!(matches!(
            resolve("no-such-command-caixa", &env),
            Err(CommandError::NotFound(..))
        ));
        assert!(matches!(
            resolve("/etc/passwd", &env),
            Err(CommandError::NotExecutable(_))
        ));
        assert!(matches!(
            resolve("/nonexistent/x", &env),
            Err(CommandError::NotFound(..))
        ));
    }
}
