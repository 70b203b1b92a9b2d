//! One instruction's work on a stage: its words, its cache key, its change.
//!
//! [`Step::instruction`] reads the instruction's words (substituting
//! variables where Docker does), works out what decides its result (the
//! cache key's extra part: RUN's command and environment, the digest of
//! COPY's files), asks the cache, and only on a miss does the work: a
//! config change, a RUN ([`super::run`]), or files written into the image's
//! root, an overlay of its layers over a fresh upper directory whose
//! contents become the layer.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::builder::{FileWork, Options, Stage, line, resolve_image, shell_text};
use super::copy::{self, Owner};
use super::dockerfile::{Args, Instruction};
use super::expand;
use super::run::{RunStep, build_shift, run_step};
use super::{BuildError, cache};
use crate::image::diff::{Layer, write_layer};
use crate::image::draft::{Draft, Saved};
use crate::image::overlay::{ImageRoot, prepare};
use crate::image::store::Store;

/// One instruction's work on a stage.
pub(super) struct Step<'a> {
    pub(super) store: &'a Store,
    pub(super) exe: &'a Path,
    pub(super) context: &'a Path,
    pub(super) work: &'a Path,
    pub(super) escape: char,
    pub(super) options: &'a Options,
    pub(super) output: &'a mut dyn FnMut(&str),
}

/// What an instruction does to the image, once its words are known.
enum Change {
    /// Only the config: made before the cache is asked, whose key is the
    /// config it gives.
    Config(Box<dyn FnOnce(&mut Draft)>),
    /// Work on the image's files, done only when the cache has no image.
    Work(Work),
}

/// The work of an instruction that makes a layer.
enum Work {
    /// A command in a container.
    Run(RunStep),
    /// Files into the image (COPY, ADD, WORKDIR's directory).
    Files(FileWork, Box<dyn FnOnce(&mut Draft)>),
}

impl Step<'_> {
    pub(super) fn instruction(
        &mut self,
        stage: &mut Stage,
        ins: &Instruction,
        before: &[(Option<String>, Option<Saved>)],
    ) -> Result<(), BuildError> {
        // Variables: the image's Env over the stage's ARGs (ENV wins).
        let mut vars = stage.args.clone();
        for entry in stage.draft.env() {
            if let Some((k, v)) = entry.split_once('=') {
                vars.insert(k.to_string(), v.to_string());
            }
        }
        let lookup = |k: &str| vars.get(k).cloned();
        let esc = self.escape;
        let expand_words =
            |text: &str| expand::words(text, esc, &lookup).map_err(|e| line(ins, e.0));
        let expand_word = |text: &str| expand::word(text, esc, &lookup).map_err(|e| line(ins, e.0));
        let shell_form = |stage: &Stage| -> Vec<String> {
            match &ins.args {
                Args::Exec(words) => words.clone(),
                Args::Shell(text) => stage.shell.iter().cloned().chain([text.clone()]).collect(),
            }
        };
        // (the change, the cache key's extra part, the history's words)
        let mut extra = String::new();
        let created_by = format!("/bin/sh -c #(nop) {}", ins.text());
        let change: Change = match ins.keyword.as_str() {
            "RUN" => {
                if stage.draft.layers.is_empty() {
                    return Err(line(
                        ins,
                        "RUN needs a base image with a shell to run it (FROM scratch has none)",
                    ));
                }
                if let Some((k, _)) = ins.flags.first() {
                    return Err(line(
                        ins,
                        format!("RUN --{k} is not supported by caixa's classic builder"),
                    ));
                }
                let args = shell_form(stage);
                let mut env = stage.draft.env();
                if !env.iter().any(|e| e.starts_with("PATH=")) {
                    env.push(format!("PATH={}", crate::spec::DEFAULT_PATH));
                }
                for (k, v) in &stage.args {
                    if !env.iter().any(|e| e.split('=').next() == Some(k)) {
                        env.push(format!("{k}={v}"));
                    }
                }
                if !env.iter().any(|e| e.starts_with("HOME=")) {
                    env.push("HOME=/root".into());
                }
                extra = serde_json::to_string(&(&args, &env)).unwrap_or_default();
                let c = &stage.draft.config["config"];
                Change::Work(Work::Run(RunStep {
                    manifest: String::new(),
                    args,
                    env,
                    cwd: working_dir(&stage.draft),
                    user: c["User"]
                        .as_str()
                        .filter(|u| !u.is_empty())
                        .map(String::from),
                }))
            }
            "COPY" | "ADD" => {
                let (work, key) = self.copy(stage, ins, before, &expand_words, &expand_word)?;
                extra = key;
                Change::Work(Work::Files(work, Box::new(|_| {})))
            }
            "WORKDIR" => {
                let dir = expand_word(shell_text(ins)?)?;
                let old = working_dir(&stage.draft);
                let new = Path::new(&old).join(&dir).display().to_string();
                // The directory it makes, substituted, keys the cache.
                extra = new.clone();
                let target = PathBuf::from(&new);
                let shift = build_shift();
                Change::Work(Work::Files(
                    Box::new(move |root: &Path| {
                        let at = super::scope::resolve_in(root, &target, true)
                            .map_err(BuildError::Other)?;
                        copy::make_dirs(
                            root,
                            &at,
                            Owner {
                                uid: shift.uid_base,
                                gid: shift.gid_base,
                            },
                        )
                        .map_err(BuildError::Other)
                    }),
                    Box::new(move |d: &mut Draft| {
                        d.process().insert("WorkingDir".into(), json!(new));
                    }),
                ))
            }
            "ENV" | "LABEL" => {
                let pairs = pairs(ins, &expand_words, &expand_word)?;
                let env = ins.keyword == "ENV";
                Change::Config(Box::new(move |d: &mut Draft| {
                    if env {
                        let mut list = d.env();
                        for (k, v) in pairs {
                            crate::spec::set_env(&mut list, format!("{k}={v}"));
                        }
                        d.process().insert("Env".into(), json!(list));
                    } else {
                        let labels = d.process().entry("Labels").or_insert(json!({}));
                        if !labels.is_object() {
                            *labels = json!({});
                        }
                        for (k, v) in pairs {
                            labels[k] = json!(v);
                        }
                    }
                }))
            }
            "EXPOSE" => {
                let ports = expand_words(shell_text(ins)?)?;
                for p in &ports {
                    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                    if port.parse::<u16>().is_err() || !["tcp", "udp", "sctp"].contains(&proto) {
                        return Err(line(ins, format!("invalid port {p:?}: use PORT[/tcp|udp]")));
                    }
                }
                Change::Config(Box::new(move |d: &mut Draft| {
                    let map = d.process().entry("ExposedPorts").or_insert(json!({}));
                    if !map.is_object() {
                        *map = json!({});
                    }
                    for p in ports {
                        let key = if p.contains('/') {
                            p
                        } else {
                            format!("{p}/tcp")
                        };
                        map[key] = json!({});
                    }
                }))
            }
            "VOLUME" => {
                let vols = match &ins.args {
                    Args::Exec(v) => v.clone(),
                    Args::Shell(t) => expand_words(t)?,
                };
                Change::Config(Box::new(move |d: &mut Draft| {
                    let map = d.process().entry("Volumes").or_insert(json!({}));
                    if !map.is_object() {
                        *map = json!({});
                    }
                    for v in vols {
                        map[v] = json!({});
                    }
                }))
            }
            "CMD" | "ENTRYPOINT" => {
                let words = shell_form(stage);
                let key = if ins.keyword == "CMD" {
                    "Cmd"
                } else {
                    "Entrypoint"
                };
                let reset_cmd = ins.keyword == "ENTRYPOINT" && !stage.cmd_set;
                if ins.keyword == "CMD" {
                    stage.cmd_set = true;
                }
                Change::Config(Box::new(move |d: &mut Draft| {
                    d.process().insert(key.into(), json!(words));
                    if reset_cmd {
                        d.process().insert("Cmd".into(), Value::Null);
                    }
                }))
            }
            "USER" | "STOPSIGNAL" => {
                let value = expand_word(shell_text(ins)?)?;
                let key = if ins.keyword == "USER" {
                    "User"
                } else {
                    "StopSignal"
                };
                Change::Config(Box::new(move |d: &mut Draft| {
                    d.process().insert(key.into(), json!(value));
                }))
            }
            "MAINTAINER" => {
                let who = shell_text(ins)?.to_string();
                Change::Config(Box::new(move |d: &mut Draft| {
                    d.config["author"] = json!(who)
                }))
            }
            other => {
                return Err(line(
                    ins,
                    format!("{other} is not supported by caixa's builder"),
                ));
            }
        };

        // A change of the config alone is made now: the config it gives,
        // every value substituted, is what the cache knows it by (the
        // instruction's text still says `$V`, whatever `--build-arg V`).
        let work = match change {
            Change::Config(apply) => {
                apply(&mut stage.draft);
                extra = serde_json::to_string(&stage.draft.config["config"]).unwrap_or_default();
                None
            }
            Change::Work(work) => Some(work),
        };
        // The cache: the same parent and instruction made an image before.
        let parent = stage
            .saved
            .as_ref()
            .map_or("scratch", |s| s.manifest.as_str());
        let key = cache::key(parent, &ins.text(), &extra);
        if !self.options.no_cache {
            if let Some(manifest) = cache::lookup(self.store, &key) {
                if let Ok(draft) = Draft::open(self.store, &manifest) {
                    (self.output)(" ---> Using cache\n");
                    stage.saved = Some(draft.save(self.store)?);
                    stage.draft = draft;
                    return Ok(());
                }
            }
        }
        match work {
            // A config change, made above.
            None => stage.draft.history(&created_by, true),
            Some(Work::Run(mut run)) => {
                run.manifest = parent.to_string();
                let layer = run_step(self.store, self.exe, self.work, &run, &mut *self.output)?;
                stage.draft.add_layer(&layer, &run.args.join(" "));
            }
            Some(Work::Files(work, apply)) => {
                let layer = self.files(stage, work)?;
                apply(&mut stage.draft);
                match layer {
                    Some(layer) => stage.draft.add_layer(&layer, &created_by),
                    None => stage.draft.history(&created_by, true),
                }
            }
        }
        let saved = stage.draft.save(self.store)?;
        cache::store(self.store, &key, &saved.manifest)?;
        stage.saved = Some(saved);
        Ok(())
    }

    /// Runs `work` on the image's root (an overlay of its layers over a
    /// fresh upper directory, or an empty directory for `FROM scratch`);
    /// returns the layer of what it changed (`None`: nothing changed, and
    /// `keep_empty` is false).
    fn files(&mut self, stage: &Stage, work: FileWork) -> Result<Option<Layer>, BuildError> {
        let shift = build_shift();
        let layer = match (&stage.saved, stage.draft.layers.is_empty()) {
            (Some(saved), false) => {
                let id = crate::ns::uts::short_random_id();
                let root = ImageRoot {
                    store: self.store.root.clone(),
                    manifest: saved.manifest.clone(),
                    keep: false,
                };
                let trace = crate::trace::Trace::new(false);
                // Dropped on every path: unmounted, its directory removed.
                let mounted = prepare(&root, &format!("build-{id}"), &shift, &trace)?;
                work(&mounted.merged)?;
                let upper = self
                    .store
                    .container_dir(&format!("build-{id}"))
                    .join("upper");
                let layer = write_layer(self.store, &upper, &shift)?;
                mounted.remove()?;
                layer
            }
            _ => {
                let dir = self
                    .work
                    .join(format!("scratch-{}", crate::ns::uts::short_random_id()));
                std::fs::create_dir_all(&dir).map_err(BuildError::io(&dir))?;
                let result = work(&dir).and_then(|()| Ok(write_layer(self.store, &dir, &shift)?));
                let _ = std::fs::remove_dir_all(&dir);
                result?
            }
        };
        Ok((layer.entries > 0).then_some(layer))
    }

    /// COPY and ADD: what to copy, and the digest of it for the cache.
    #[allow(clippy::type_complexity)]
    fn copy(
        &mut self,
        stage: &Stage,
        ins: &Instruction,
        before: &[(Option<String>, Option<Saved>)],
        expand_words: &dyn Fn(&str) -> Result<Vec<String>, BuildError>,
        expand_word: &dyn Fn(&str) -> Result<String, BuildError>,
    ) -> Result<(FileWork, String), BuildError> {
        let add = ins.keyword == "ADD";
        for (k, _) in &ins.flags {
            if k != "chown" && k != "from" {
                return Err(line(
                    ins,
                    format!("{} --{k} is not supported by caixa's builder", ins.keyword),
                ));
            }
        }
        let words = match &ins.args {
            Args::Exec(w) => w
                .iter()
                .map(|w| expand_word(w))
                .collect::<Result<Vec<_>, _>>()?,
            Args::Shell(t) => expand_words(t)?,
        };
        let Some((dest, sources)) = words.split_last().filter(|(_, s)| !s.is_empty()) else {
            return Err(line(
                ins,
                format!(
                    "{} requires at least two arguments: SOURCE... DEST",
                    ins.keyword
                ),
            ));
        };
        let shift = build_shift();
        let owner = match ins.flag("chown") {
            None => Owner {
                uid: shift.uid_base,
                gid: shift.gid_base,
            },
            Some(spec) => {
                let (u, g) = spec.split_once(':').unwrap_or((spec, spec));
                match (u.parse::<u32>(), g.parse::<u32>()) {
                    (Ok(u), Ok(g)) if u < shift.count && g < shift.count => Owner {
                        uid: shift.uid_base + u,
                        gid: shift.gid_base + g,
                    },
                    _ => {
                        return Err(line(
                            ins,
                            format!(
                                "--chown={spec}: caixa takes numeric ids (UID[:GID]) below {}",
                                shift.count
                            ),
                        ));
                    }
                }
            }
        };
        // Where the sources are: the context, or another stage's image.
        let (source_root, from_image): (PathBuf, Option<String>) = match ins.flag("from") {
            None => (self.context.to_path_buf(), None),
            Some(from) => {
                let by_name = before
                    .iter()
                    .find(|(n, _)| n.as_deref() == Some(&from.to_ascii_lowercase()));
                let by_index = from.parse::<usize>().ok().and_then(|i| before.get(i));
                let manifest = match by_name.or(by_index) {
                    Some((_, Some(saved))) => saved.manifest.clone(),
                    Some((_, None)) => {
                        return Err(line(ins, format!("--from={from}: that stage is empty")));
                    }
                    None => resolve_image(self.store, from).map_err(|e| line(ins, e))?,
                };
                (PathBuf::new(), Some(manifest))
            }
        };
        if let Some(url) = sources.iter().find(|s| s.contains("://")) {
            return Err(line(
                ins,
                format!(
                    "{} of a URL ({url}) is not supported: download it in a RUN, or put it in the context",
                    ins.keyword
                ),
            ));
        }
        let workdir = working_dir(&stage.draft);
        let dest_path = Path::new(&workdir).join(dest);
        let dest_is_dir = dest.ends_with('/')
            || sources.len() > 1
            || sources.iter().any(|s| super::ignore::has_wildcard(s));
        if sources.len() > 1 && !dest.ends_with('/') {
            return Err(line(
                ins,
                format!(
                    "when using {} with more than one source file, the destination must be a directory and end with a /",
                    ins.keyword
                ),
            ));
        }
        let sources = sources.to_vec();
        let ins_line = ins.line;
        let keyword = ins.keyword.clone();
        let store = self.store.clone();
        let work_dir = self.work.to_path_buf();
        // Resolve and hash now for the cache (the context is here); the
        // copy itself runs later, on the image's root.
        let mut hasher = Sha256::new();
        hasher.update(format!("{:?}{:?}", owner, dest_path).as_bytes());
        let resolved = match &from_image {
            None => {
                let found = find_sources(&source_root, &sources)
                    .map_err(|e| BuildError::Parse(ins.error(format!("{keyword} failed: {e}"))))?;
                for (src, rel) in &found {
                    copy::hash_tree(src, rel, &mut hasher).map_err(BuildError::io(src))?;
                }
                Some(found)
            }
            Some(manifest) => {
                hasher.update(manifest.as_bytes());
                None
            }
        };
        let key = format!("{:x}", hasher.finalize());
        let work = move |root: &Path| -> Result<(), BuildError> {
            let err = |e: String| {
                BuildError::Parse(super::dockerfile::ParseError {
                    line: ins_line,
                    what: format!("{keyword} failed: {e}"),
                })
            };
            let copy_all = |found: &[(PathBuf, PathBuf)]| -> Result<(), BuildError> {
                let target = super::scope::resolve_in(root, &dest_path, true).map_err(err)?;
                let into_dir =
                    dest_is_dir || std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir());
                for (src, _) in found {
                    let meta = std::fs::metadata(src).map_err(BuildError::io(src))?;
                    let dest = if meta.is_dir() || into_dir {
                        copy::make_dirs(
                            root,
                            &target,
                            Owner {
                                uid: shift.uid_base,
                                gid: shift.gid_base,
                            },
                        )
                        .map_err(err)?;
                        if meta.is_dir() {
                            target.clone()
                        } else {
                            target.join(src.file_name().unwrap_or_default())
                        }
                    } else {
                        let parent = target.parent().unwrap_or(root);
                        copy::make_dirs(
                            root,
                            parent,
                            Owner {
                                uid: shift.uid_base,
                                gid: shift.gid_base,
                            },
                        )
                        .map_err(err)?;
                        target.clone()
                    };
                    if add && meta.is_file() && super::context::is_archive(src) {
                        // ADD of a local archive: its contents go in.
                        let tmp =
                            work_dir.join(format!("add-{}", crate::ns::uts::short_random_id()));
                        std::fs::create_dir_all(&tmp).map_err(BuildError::io(&tmp))?;
                        let result = super::context::unpack_archive(src, &tmp).and_then(|()| {
                            let dir = if into_dir {
                                target.clone()
                            } else {
                                dest.clone()
                            };
                            copy::make_dirs(
                                root,
                                &dir,
                                Owner {
                                    uid: shift.uid_base,
                                    gid: shift.gid_base,
                                },
                            )
                            .map_err(err)?;
                            copy::copy_entry(&tmp, &dir, owner).map_err(BuildError::io(&dir))
                        });
                        let _ = std::fs::remove_dir_all(&tmp);
                        result?;
                        continue;
                    }
                    copy::copy_entry(src, &dest, owner).map_err(BuildError::io(&dest))?;
                }
                Ok(())
            };
            match (resolved, from_image) {
                (Some(found), _) => copy_all(&found),
                (None, Some(manifest)) => {
                    let id = format!("build-{}", crate::ns::uts::short_random_id());
                    let image = ImageRoot {
                        store: store.root.clone(),
                        manifest,
                        keep: false,
                    };
                    let trace = crate::trace::Trace::new(false);
                    let mounted = prepare(&image, &id, &shift, &trace)?;
                    let found = find_sources(&mounted.merged, &sources).map_err(err)?;
                    copy_all(&found)?;
                    mounted.remove()?;
                    Ok(())
                }
                (None, None) => Ok(()),
            }
        };
        Ok((Box::new(work), key))
    }
}

/// The image's working directory so far: `/` when its config names none,
/// or names it `""`, as images Docker builds do.
fn working_dir(draft: &Draft) -> String {
    draft.config["config"]["WorkingDir"]
        .as_str()
        .filter(|dir| !dir.is_empty())
        .unwrap_or("/")
        .to_string()
}

/// The sources of a COPY, each resolved inside `root` (host path, path
/// relative to `root`); wildcards match names in `root`. Every source,
/// named or matched, goes through [`super::scope::resolve_in`]: a symlink
/// among them is followed as the image sees it, inside `root`, never as
/// the host does (a match `evil.tar -> /etc/...` must not bring the host's
/// file into the image).
fn find_sources(root: &Path, sources: &[String]) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let mut found = Vec::new();
    for src in sources {
        if super::ignore::has_wildcard(src) {
            let pattern: Vec<String> = src
                .split('/')
                .filter(|n| !n.is_empty() && *n != ".")
                .map(String::from)
                .collect();
            let before = found.len();
            for rel in copy::list(root) {
                let names: Vec<String> = rel
                    .iter()
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect();
                if super::ignore::matches(&pattern, &names) {
                    found.push(source_in(root, &rel, &rel.to_string_lossy())?);
                }
            }
            if found.len() == before {
                return Err(format!(
                    "no source files were specified: {src} matches nothing in the build context"
                ));
            }
            continue;
        }
        found.push(source_in(root, Path::new(src), src)?);
    }
    Ok(found)
}

/// One source, `src` resolved inside `root` (symlinks included, scoped to
/// `root`): its path on the host and its path from `root`; `shown` names
/// it in the error if nothing is there.
fn source_in(root: &Path, src: &Path, shown: &str) -> Result<(PathBuf, PathBuf), String> {
    let path = super::scope::resolve_in(root, src, true)?;
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(format!(
            "file not found in build context or excluded by .dockerignore: {shown}"
        ));
    }
    let rel = path
        .strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    Ok((path, rel))
}

/// ENV and LABEL: `K=V K2="V 2"`, or the old `K V with spaces`.
fn pairs(
    ins: &Instruction,
    expand_words: &dyn Fn(&str) -> Result<Vec<String>, BuildError>,
    expand_word: &dyn Fn(&str) -> Result<String, BuildError>,
) -> Result<Vec<(String, String)>, BuildError> {
    let text = shell_text(ins)?;
    let first = text.split_whitespace().next().unwrap_or_default();
    if !first.contains('=') {
        let (k, v) = text
            .split_once(char::is_whitespace)
            .ok_or_else(|| line(ins, format!("{} requires KEY=VALUE", ins.keyword)))?;
        return Ok(vec![(k.to_string(), expand_word(v.trim())?)]);
    }
    expand_words(text)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(line(
                ins,
                format!("{}: {w:?} is not KEY=VALUE", ins.keyword),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_working_dir_is_the_root() {
        let draft = |config: Value| Draft {
            config: json!({ "config": config }),
            layers: Vec::new(),
        };
        assert_eq!(working_dir(&draft(json!({ "WorkingDir": "" }))), "/");
        assert_eq!(working_dir(&draft(json!({}))), "/");
        assert_eq!(working_dir(&draft(json!({ "WorkingDir": "/app" }))), "/app");
    }

    #[test]
    fn a_matched_source_is_resolved_inside_the_context_never_on_the_host() {
        let context = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.tar"), "host").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.tar"),
            context.path().join("evil.tar"),
        )
        .unwrap();
        std::fs::write(context.path().join("ok.txt"), "mine").unwrap();
        std::os::unix::fs::symlink("ok.txt", context.path().join("link.txt")).unwrap();
        // Matched by a wildcard, as named: the host's file is not found.
        for src in ["evi*", "evil.tar"] {
            let why = find_sources(context.path(), &[src.to_string()]).unwrap_err();
            assert!(
                why.contains("file not found in build context"),
                "{src}: {why}"
            );
        }
        // A link inside the context is followed inside it.
        let found = find_sources(context.path(), &["lin*".to_string()]).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, context.path().join("ok.txt"));
    }
}
