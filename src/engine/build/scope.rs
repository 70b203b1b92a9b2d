//! Paths inside a root, never out of it.
//!
//! A Dockerfile's paths are hostile (`COPY ../../etc/shadow /`), and so are
//! the trees they point into: the build context may hold `evil -> /etc`,
//! an image may hold `/x -> /`. Seen from the host, a symlink's target is
//! read against the host's `/`; the builder reads it against the root it
//! belongs to, as a process `chroot`ed there would (Docker's
//! `FollowSymlinkInScope`): an absolute target starts again at the root,
//! and `..` never climbs above it. What comes back is a host path under the
//! root with no symlink left in it but (optionally) the last name.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed in one path (Linux's own limit, `ELOOP`).
const MAX_HOPS: usize = 40;

// ANCHOR: resolve_in
/// `path` (read as if `root` were `/`) as a host path under `root`;
/// symlinks on the way are followed inside `root`, the last name's too
/// when `follow_last`. Names that do not exist are kept as they are.
pub fn resolve_in(root: &Path, path: &Path, follow_last: bool) -> Result<PathBuf, String> {
    let mut todo: Vec<OsString> = parts(path);
    todo.reverse(); // a stack: the next name on top
    let mut done: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            done.pop();
            continue;
        }
        let here = root.join(done.iter().collect::<PathBuf>()).join(&name);
        let is_last = todo.is_empty();
        match std::fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() && (!is_last || follow_last) => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(format!("too many symlinks in {}", path.display()));
                }
                let target = std::fs::read_link(&here).map_err(|e| e.to_string())?;
                if target.is_absolute() {
                    done.clear();
                }
                let mut more = parts(&target);
                more.reverse();
                todo.extend(more);
            }
            _ => done.push(name),
        }
    }
    Ok(root.join(done.iter().collect::<PathBuf>()))
}
// ANCHOR_END: resolve_in

/// The names of `path`, `..` kept, `/` and `.` dropped.
fn parts(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("srv/www")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("evil")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("srv/up")).unwrap();
        std::os::unix::fs::symlink("srv/www", root.join("site")).unwrap();
        let r = |p: &str, last| resolve_in(root, Path::new(p), last).unwrap();
        assert_eq!(r("evil/passwd", true), root.join("etc/passwd"));
        assert_eq!(r("../../etc/shadow", true), root.join("etc/shadow"));
        assert_eq!(r("srv/up/etc", true), root.join("etc"));
        assert_eq!(r("/site/index.html", true), root.join("srv/www/index.html"));
        assert_eq!(r("site", false), root.join("site"));
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in(root, Path::new("loop/x"), true).is_err());
    }
}
