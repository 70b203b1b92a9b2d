//! Mounts, masked paths and read-only paths, both ways.
//!
//! caixa's init mounts a fixed set of filesystems in every container that
//! has a root of its own ([`DEFAULT_MOUNTS`]), then bind-mounts the spec's
//! host files, then masks and freezes fixed paths ([`MASKED_PATHS`],
//! [`READONLY_PATHS`]). A bundle must list exactly those: the tables in
//! `src/rootfs` are the one source of truth for the init and for this file.
//!
//! Without a root (steps 1–3) the init mounts nothing, so the lists are empty.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::Mount;

use super::BundleError;
use crate::rootfs::binds::Bind;
use crate::rootfs::mask::{MASKED_PATHS, READONLY_PATHS};
use crate::rootfs::mounts::{DEFAULT_MOUNTS, Mount as DefaultMount};
use crate::rootfs::table::{
    Entry as TableEntry, FILESYSTEMS, Kind as TableKind, Table, read_options,
};
use crate::rootfs::tmpfs::Tmpfs;

/// mount(8) option names of the flags caixa's default mounts use.
const FLAG_NAMES: [(MsFlags, &str); 5] = [
    (MsFlags::MS_NOSUID, "nosuid"),
    (MsFlags::MS_NOEXEC, "noexec"),
    (MsFlags::MS_NODEV, "nodev"),
    (MsFlags::MS_STRICTATIME, "strictatime"),
    (MsFlags::MS_RDONLY, "ro"),
];

/// Options a bind may carry. caixa binds with `MS_BIND | MS_REC` (so
/// `bind` and `rbind` mean the same), writable unless `ro`; `private` and
/// `rprivate` are what it does anyway (the container's mount namespace is
/// a slave of the host's, and nothing flows back).
const BIND_OPTIONS: [&str; 6] = ["bind", "rbind", "rw", "ro", "private", "rprivate"];

/// One default mount as OCI writes it: the source is the filesystem type,
/// as caixa passes it to mount(2); flags first, then the filesystem's data.
fn default_to_oci(m: &DefaultMount) -> Mount {
    let mut options: Vec<String> = FLAG_NAMES
        .iter()
        .filter(|(flag, _)| m.flags.contains(*flag))
        .map(|(_, name)| name.to_string())
        .collect();
    options.extend(
        m.data
            .into_iter()
            .flat_map(|d| d.split(','))
            .map(String::from),
    );
    let mut oci = Mount::default();
    oci.set_destination(Path::new("/").join(m.target))
        .set_typ(Some(m.fstype.to_string()))
        .set_source(Some(PathBuf::from(m.fstype)))
        .set_options(Some(options));
    oci
}

/// The OCI mounts for a container: the defaults, then its binds, then its
/// tmpfs mounts, when the container has a root; else none.
pub(super) fn mounts_to_oci(has_root: bool, binds: &[Bind], tmpfs: &[Tmpfs]) -> Vec<Mount> {
    if !has_root {
        return Vec::new();
    }
    let tmpfs = tmpfs.iter().map(|t| {
        let mut oci = Mount::default();
        oci.set_destination(t.target.clone())
            .set_typ(Some("tmpfs".into()))
            .set_source(Some(PathBuf::from("tmpfs")))
            .set_options(Some(t.words()));
        oci
    });
    let binds = binds.iter().map(|b| {
        let mode = if b.read_only { "ro" } else { "rw" };
        let mut oci = Mount::default();
        oci.set_destination(b.target.clone())
            .set_typ(Some("bind".into()))
            .set_source(Some(b.source.clone()))
            .set_options(Some(vec!["rbind".into(), mode.into()]));
        oci
    });
    DEFAULT_MOUNTS
        .iter()
        .map(default_to_oci)
        .chain(binds)
        .chain(tmpfs)
        .collect()
}

fn option_set(m: &Mount) -> BTreeSet<&str> {
    m.options().iter().flatten().map(String::as_str).collect()
}

fn same_mount(a: &Mount, b: &Mount) -> bool {
    a.destination() == b.destination()
        && a.typ() == b.typ()
        && a.source() == b.source()
        && option_set(a) == option_set(b)
}

/// The binds and tmpfs mounts of the OCI mounts, after checking that the
/// rest are exactly caixa's defaults. caixa mounts the defaults first, then
/// the binds, then the tmpfs mounts, each in their order.
pub(super) fn mounts_from_oci(
    mounts: &[Mount],
    has_root: bool,
) -> Result<(Vec<Bind>, Vec<Tmpfs>), BundleError> {
    let unsupported = |field: String, why: String| BundleError::Unsupported { field, why };
    if !has_root {
        return match mounts.first() {
            Some(m) => Err(unsupported(
                "mounts".into(),
                format!(
                    "caixa mounts nothing (here {}) in a container without a root of its own: set root.path and the mount namespace, or remove the mounts",
                    m.destination().display()
                ),
            )),
            None => Ok((Vec::new(), Vec::new())),
        };
    }
    let defaults: Vec<Mount> = DEFAULT_MOUNTS.iter().map(default_to_oci).collect();
    let mut seen = vec![false; defaults.len()];
    let mut binds = Vec::new();
    let mut tmpfs = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        let dest = m.destination();
        if let Some(k) = defaults.iter().position(|d| same_mount(d, m)) {
            seen[k] = true;
        } else if let Some(d) = defaults.iter().find(|d| d.destination() == dest) {
            return Err(unsupported(
                field,
                format!(
                    "caixa mounts {} as {} with options {}, exactly: write it so",
                    dest.display(),
                    d.typ().as_deref().unwrap_or_default(),
                    d.options()
                        .iter()
                        .flatten()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ));
        } else if m.typ().as_deref() == Some("tmpfs") {
            let words: Vec<String> = m.options().iter().flatten().cloned().collect();
            let one = Tmpfs::new(&dest.to_string_lossy(), &words)
                .map_err(|why| super::invalid(&field, why))?;
            tmpfs.push(one);
        } else {
            binds.push(bind_from_oci(m, field)?);
        }
    }
    match defaults.iter().zip(&seen).find(|(_, seen)| !**seen) {
        Some((d, _)) => Err(unsupported(
            "mounts".into(),
            format!(
                "caixa always mounts {} ({}) in a container with a root: list it as caixa mounts it",
                d.destination().display(),
                d.typ().as_deref().unwrap_or_default()
            ),
        )),
        None => Ok((binds, tmpfs)),
    }
}

/// A bind of an absolute host path onto an absolute container path.
fn bind_from_oci(m: &Mount, field: String) -> Result<Bind, BundleError> {
    let dest = m.destination();
    let kind = m.typ().as_deref().unwrap_or("none");
    let options = option_set(m);
    let is_bind = options.contains("bind") || options.contains("rbind");
    if !is_bind || !matches!(kind, "bind" | "none") {
        return Err(BundleError::Unsupported {
            field,
            why: format!(
                "a {kind} mount at {}: caixa mounts only its defaults and binds",
                dest.display()
            ),
        });
    }
    if let Some(option) = options.iter().find(|o| !BIND_OPTIONS.contains(o)) {
        return Err(BundleError::Unsupported {
            field,
            why: format!(
                "option {option:?} on the bind at {}: caixa binds with {} only",
                dest.display(),
                BIND_OPTIONS.join(", ")
            ),
        });
    }
    if options.contains("ro") && options.contains("rw") {
        return Err(super::invalid(
            &field,
            format!(
                "the bind at {} is both ro and rw: choose one",
                dest.display()
            ),
        ));
    }
    let target = crate::rootfs::binds::check_target(&dest.to_string_lossy())
        .map_err(|e| super::invalid(&field, e.to_string()))?;
    match m.source() {
        Some(source) if source.is_absolute() => Ok(Bind {
            source: source.clone(),
            target,
            read_only: options.contains("ro"),
        }),
        _ => Err(super::invalid(
            &field,
            format!(
                "the bind at {} needs an absolute source and destination",
                dest.display()
            ),
        )),
    }
}

/// caixa's masked and read-only paths, for a container with a root.
pub(super) fn paths_to_oci(has_root: bool) -> (Vec<String>, Vec<String>) {
    let list = |paths: &[&str]| match has_root {
        true => paths.iter().map(|p| p.to_string()).collect(),
        false => Vec::new(),
    };
    (list(&MASKED_PATHS), list(&READONLY_PATHS))
}

/// Checks `linux.maskedPaths` and `linux.readonlyPaths` against caixa's.
pub(super) fn check_paths(
    masked: &[String],
    readonly: &[String],
    has_root: bool,
) -> Result<(), BundleError> {
    let (want_masked, want_readonly) = paths_to_oci(has_root);
    for (field, given, want, verb) in [
        ("linux.maskedPaths", masked, want_masked, "masks"),
        (
            "linux.readonlyPaths",
            readonly,
            want_readonly,
            "makes read-only",
        ),
    ] {
        let why = if let Some(extra) = given.iter().find(|p| !want.contains(p)) {
            format!(
                "caixa {verb} exactly its defaults (src/rootfs/mask.rs), and {extra} is not one when the container has a root; none without one"
            )
        } else if let Some(missing) = want.iter().find(|p| !given.contains(p)) {
            format!("caixa always {verb} {missing} in a container with a root: list it")
        } else {
            continue;
        };
        return Err(BundleError::Unsupported {
            field: field.into(),
            why,
        });
    }
    Ok(())
}

// ANCHOR: table_from_oci
/// A bundle's own mount table (step 12): its mounts in order, each a
/// filesystem caixa knows, a bind of an absolute host path or the
/// container's cgroups, and its masked and read-only paths. Used when the
/// bundle's list is not caixa's defaults (podman's, containerd's).
pub(super) fn table_from_oci(
    mounts: &[Mount],
    masked: &[String],
    readonly: &[String],
) -> Result<Table, BundleError> {
    let mut table = Table::default();
    for (i, m) in mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        let dest = m.destination();
        let target = crate::rootfs::binds::check_target(&dest.to_string_lossy())
            .map_err(|e| super::invalid(&field, e.to_string()))?;
        let typ = m.typ().as_deref().unwrap_or("none");
        let words: Vec<String> = m.options().clone().unwrap_or_default();
        let options =
            read_options(&words, if typ == "none" { "bind" } else { typ }).map_err(|why| {
                BundleError::Unsupported {
                    field: format!("{field}.options"),
                    why,
                }
            })?;
        let kind = if options.bind || typ == "bind" {
            match m.source() {
                Some(source) if source.is_absolute() => TableKind::Bind {
                    source: source.clone(),
                    recursive: options.recursive,
                },
                _ => {
                    return Err(super::invalid(
                        &field,
                        format!("the bind at {} needs an absolute source", dest.display()),
                    ));
                }
            }
        } else if typ == "cgroup" {
            TableKind::Cgroup
        } else if FILESYSTEMS.contains(&typ) {
            TableKind::Filesystem {
                fstype: typ.to_string(),
                source: m
                    .source()
                    .as_ref()
                    .map_or_else(|| typ.to_string(), |s| s.to_string_lossy().into_owned()),
            }
        } else {
            return Err(BundleError::Unsupported {
                field,
                why: format!(
                    "a {typ} mount at {}: caixa mounts {}, cgroup and binds",
                    dest.display(),
                    FILESYSTEMS.join(", ")
                ),
            });
        };
        if matches!(kind, TableKind::Bind { .. } | TableKind::Cgroup) && !options.data.is_empty() {
            return Err(BundleError::Unsupported {
                field: format!("{field}.options"),
                why: format!("{:?}: a bind takes flags only", options.data.join(",")),
            });
        }
        table.mounts.push(TableEntry {
            target,
            kind,
            flags: options.flags,
            data: (!options.data.is_empty()).then(|| options.data.join(",")),
            propagation: options.propagation,
        });
    }
    for (field, given, list) in [
        ("linux.maskedPaths", masked, &mut table.masked),
        ("linux.readonlyPaths", readonly, &mut table.readonly),
    ] {
        for (i, path) in given.iter().enumerate() {
            let checked = crate::rootfs::binds::check_target(path)
                .map_err(|e| super::invalid(&format!("{field}[{i}]"), e.to_string()))?;
            list.push(checked);
        }
    }
    Ok(table)
}
// ANCHOR_END: table_from_oci

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_name_every_flag_init_mounts_with() {
        for m in &DEFAULT_MOUNTS {
            let oci = default_to_oci(m);
            let flags = FLAG_NAMES
                .iter()
                .filter(|(_, name)| option_set(&oci).contains(name))
                .fold(MsFlags::empty(), |all, (flag, _)| all | *flag);
            assert_eq!(flags, m.flags, "{}", m.target);
            let data: Vec<&str> = option_set(&oci)
                .into_iter()
                .filter(|o| !FLAG_NAMES.iter().any(|(_, n)| n == o))
                .collect();
            let mut want: Vec<&str> = m.data.map(|d| d.split(',').collect()).unwrap_or_default();
            want.sort();
            assert_eq!(data, want, "{}", m.target);
        }
    }

    #[test]
    fn defaults_in_any_order_and_binds_come_back() {
        let mut data = Bind::new("/srv/data", "/data");
        data.read_only = true;
        let binds = vec![Bind::new("/srv/hosts", "/etc/hosts"), data];
        let run: Tmpfs = "/run:size=1m".parse().unwrap();
        let mut mounts = mounts_to_oci(true, &binds, std::slice::from_ref(&run));
        // The defaults in any order; the binds in theirs (a later bind may
        // sit inside an earlier one).
        mounts[..DEFAULT_MOUNTS.len()].reverse();
        assert_eq!(
            mounts_from_oci(&mounts, true).unwrap(),
            (binds.clone(), vec![run])
        );
        assert!(mounts_to_oci(false, &binds, &[]).is_empty());
    }
}
