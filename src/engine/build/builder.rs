//! The classic builder's loop: one instruction after the other, each one
//! an image.
//!
//! Every instruction starts from the image the one before made and makes
//! a new one: ENV or CMD change only the config (an *empty layer* in the
//! history), RUN, COPY, ADD and WORKDIR add a layer of what they changed.
//! Before doing the work, the builder asks the cache ([`super::cache`]):
//! the same parent and the same instruction (for COPY and ADD, the same
//! file contents too) made an image before, so that image is the answer,
//! and nothing runs. The first instruction that misses makes every later
//! one miss, since its parent is new: that is why a Dockerfile copies the
//! files that change often as late as it can.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::copy::{self, Owner};
use super::dockerfile::{Args, Dockerfile, Instruction};
use super::expand;
use super::run::{RunStep, build_shift, run_step};
use super::{BuildError, cache};
use crate::image::diff::{Layer, write_layer};
use crate::image::draft::{Draft, Saved};
use crate::image::overlay::{ImageRoot, prepare};
use crate::image::store::Store;

/// What to build, as `docker build`'s options say.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to stop after.
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
}

/// One stage (`FROM … AS name` up to the next FROM).
struct Stage {
    name: Option<String>,
    draft: Draft,
    /// The image so far, saved (`None`: `FROM scratch`, nothing yet).
    saved: Option<Saved>,
    args: BTreeMap<String, String>,
    shell: Vec<String>,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    cmd_set: bool,
}

/// The builder at work.
pub struct Builder<'a> {
    /// The daemon's store.
    pub store: &'a Store,
    /// The daemon's binary (RUN's helper).
    pub exe: &'a Path,
    /// The unpacked build context.
    pub context: &'a Path,
    /// A private scratch directory, removed by the caller.
    pub work: &'a Path,
    /// The options.
    pub options: &'a Options,
    /// Where the progress goes (Docker's `stream` lines).
    pub output: &'a mut dyn FnMut(&str),
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..12.min(hex.len())]
}

impl Builder<'_> {
    // ANCHOR: build_loop
    /// Builds `dockerfile`; returns the last stage's (or `--target`'s) image.
    pub fn build(&mut self, dockerfile: &Dockerfile) -> Result<Saved, BuildError> {
        let escape = dockerfile.escape;
        let total = dockerfile.instructions.len();
        let mut global: BTreeMap<String, String> = BTreeMap::new();
        let mut stages: Vec<Stage> = Vec::new();
        for (n, ins) in dockerfile.instructions.iter().enumerate() {
            (self.output)(&format!("Step {}/{total} : {}\n", n + 1, ins.text()));
            if ins.keyword == "FROM" {
                if let Some(target) = &self.options.target {
                    if stages.last().is_some_and(|s| s.name.as_deref() == Some(target)) {
                        break;
                    }
                }
                let stage = self.from(ins, escape, &global, &stages)?;
                self.show(&stage);
                stages.push(stage);
                continue;
            }
            let Some(stage) = stages.last_mut() else {
                if ins.keyword == "ARG" {
                    for (k, v) in self.arg(ins, escape, &global, &BTreeMap::new())? {
                        global.insert(k, v);
                    }
                    continue;
                }
                return Err(line(ins, "the first instruction must be FROM (or ARG)"));
            };
            if ins.keyword == "ARG" {
                for (k, v) in self.arg(ins, escape, &stage.args, &global)? {
                    stage.args.insert(k, v);
                }
            } else if ins.keyword == "SHELL" {
                match &ins.args {
                    Args::Exec(words) if !words.is_empty() => stage.shell = words.clone(),
                    _ => return Err(line(ins, "SHELL requires the JSON form: SHELL [\"/bin/sh\", \"-c\"]")),
                }
            } else {
                let before = stages_before(&stages);
                let stage = stages.last_mut().ok_or_else(|| line(ins, "no stage"))?;
                let mut step = Step {
                    store: self.store,
                    exe: self.exe,
                    context: self.context,
                    work: self.work,
                    escape,
                    options: self.options,
                    output: &mut *self.output,
                };
                step.instruction(stage, ins, &before)?;
            }
            if let Some(stage) = stages.last() {
                self.show(stage);
            }
        }
        if let Some(target) = &self.options.target {
            if !stages.iter().any(|s| s.name.as_deref() == Some(target.as_str())) {
                return Err(BuildError::Other(format!(
                    "failed to reach build target {target} in Dockerfile"
                )));
            }
        }
        let last = stages
            .pop()
            .ok_or_else(|| BuildError::Other("the Dockerfile has no FROM".into()))?;
        match last.saved {
            Some(saved) => Ok(saved),
            None => Ok(last.draft.save(self.store)?),
        }
    }
    // ANCHOR_END: build_loop

    fn show(&mut self, stage: &Stage) {
        if let Some(saved) = &stage.saved {
            (self.output)(&format!(" ---> {}\n", short(&saved.config)));
        }
    }

    fn from(
        &mut self,
        ins: &Instruction,
        escape: char,
        global: &BTreeMap<String, String>,
        stages: &[Stage],
    ) -> Result<Stage, BuildError> {
        let text = match &ins.args {
            Args::Shell(t) => t.clone(),
            Args::Exec(_) => return Err(line(ins, "FROM takes an image name, not a JSON list")),
        };
        let lookup = |k: &str| global.get(k).cloned();
        let words = expand::words(&text, escape, &lookup).map_err(|e| line(ins, e.0))?;
        let (image, name) = match words.as_slice() {
            [image] => (image.clone(), None),
            [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
                (image.clone(), Some(name.to_ascii_lowercase()))
            }
            _ => return Err(line(ins, "FROM IMAGE [AS NAME]")),
        };
        let shell = vec!["/bin/sh".to_string(), "-c".to_string()];
        let (draft, saved) = if image == "scratch" {
            (Draft::scratch(), None)
        } else if let Some(stage) = stages.iter().find(|s| s.name.as_deref() == Some(&image)) {
            (stage.draft.clone(), stage.saved.clone())
        } else {
            let manifest = resolve_image(self.store, &image).map_err(|e| line(ins, e))?;
            let draft = Draft::open(self.store, &manifest)?;
            let saved = draft.save(self.store)?;
            (draft, Some(saved))
        };
        Ok(Stage {
            name,
            draft,
            saved,
            args: BTreeMap::new(),
            shell,
            cmd_set: false,
        })
    }

    /// `ARG NAME[=default]`: its value is the `--build-arg`, else the
    /// default, else the global ARG's.
    fn arg(
        &mut self,
        ins: &Instruction,
        escape: char,
        known: &BTreeMap<String, String>,
        global: &BTreeMap<String, String>,
    ) -> Result<Vec<(String, String)>, BuildError> {
        let text = shell_text(ins)?;
        let lookup = |k: &str| known.get(k).cloned();
        let mut out = Vec::new();
        for word in expand::words(text, escape, &lookup).map_err(|e| line(ins, e.0))? {
            let (name, default) = match word.split_once('=') {
                Some((n, d)) => (n.to_string(), Some(d.to_string())),
                None => (word.clone(), None),
            };
            let value = self
                .options
                .build_args
                .get(&name)
                .cloned()
                .or(default)
                .or_else(|| global.get(&name).cloned())
                .unwrap_or_default();
            out.push((name, value));
        }
        Ok(out)
    }
}

fn stages_before(stages: &[Stage]) -> Vec<(Option<String>, Option<Saved>)> {
    let n = stages.len().saturating_sub(1);
    stages[..n]
        .iter()
        .map(|s| (s.name.clone(), s.saved.clone()))
        .collect()
}

fn line(ins: &Instruction, what: impl Into<String>) -> BuildError {
    BuildError::Parse(ins.error(what))
}

fn shell_text(ins: &Instruction) -> Result<&str, BuildError> {
    match &ins.args {
        Args::Shell(t) => Ok(t),
        Args::Exec(_) => Err(line(ins, format!("{} does not take a JSON list", ins.keyword))),
    }
}

/// The manifest of `image` in the store (`demo` is `demo:latest`).
pub fn resolve_image(store: &Store, image: &str) -> Result<String, String> {
    store
        .resolve(image)
        .or_else(|_| store.resolve(&crate::registry::reference::store_name_of(image)))
        .map_err(|_| format!("no image {image} in the daemon's store: pull or load it first"))
}

/// One instruction's work on a stage.
struct Step<'a> {
    store: &'a Store,
    exe: &'a Path,
    context: &'a Path,
    work: &'a Path,
    escape: char,
    options: &'a Options,
    output: &'a mut dyn FnMut(&str),
}

/// What an instruction does to the image, once its words are known.
enum Change {
    /// Only the config.
    Config(Box<dyn FnOnce(&mut Draft)>),
    /// A command in a container.
    Run(RunStep),
    /// Files into the image (COPY, ADD, WORKDIR's directory).
    Files(Box<dyn FnOnce(&Path) -> Result<(), BuildError>>, Box<dyn FnOnce(&mut Draft)>),
}

impl Step<'_> {
    fn instruction(
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
        let expand_words = |text: &str| expand::words(text, esc, &lookup).map_err(|e| line(ins, e.0));
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
                    return Err(line(ins, "RUN needs a base image with a shell to run it (FROM scratch has none)"));
                }
                for (k, _) in &ins.flags {
                    return Err(line(ins, format!("RUN --{k} is not supported by caixa's classic builder")));
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
                Change::Run(RunStep {
                    manifest: String::new(),
                    args,
                    env,
                    cwd: c["WorkingDir"].as_str().unwrap_or("/").to_string(),
                    user: c["User"].as_str().filter(|u| !u.is_empty()).map(String::from),
                })
            }
            "COPY" | "ADD" => {
                let (work, key) = self.copy(stage, ins, before, &expand_words, &expand_word)?;
                extra = key;
                Change::Files(work, Box::new(|_| {}))
            }
            "WORKDIR" => {
                let dir = expand_word(shell_text(ins)?)?;
                let old = stage.draft.config["config"]["WorkingDir"].as_str().unwrap_or("/").to_string();
                let new = Path::new(&old).join(&dir).display().to_string();
                let target = PathBuf::from(&new);
                let shift = build_shift();
                Change::Files(
                    Box::new(move |root: &Path| {
                        let at = super::scope::resolve_in(root, &target, true).map_err(BuildError::Other)?;
                        copy::make_dirs(root, &at, Owner { uid: shift.uid_base, gid: shift.gid_base })
                            .map_err(BuildError::Other)
                    }),
                    Box::new(move |d: &mut Draft| {
                        d.process().insert("WorkingDir".into(), json!(new));
                    }),
                )
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
                        let key = if p.contains('/') { p } else { format!("{p}/tcp") };
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
                let key = if ins.keyword == "CMD" { "Cmd" } else { "Entrypoint" };
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
                let key = if ins.keyword == "USER" { "User" } else { "StopSignal" };
                Change::Config(Box::new(move |d: &mut Draft| {
                    d.process().insert(key.into(), json!(value));
                }))
            }
            "MAINTAINER" => {
                let who = shell_text(ins)?.to_string();
                Change::Config(Box::new(move |d: &mut Draft| d.config["author"] = json!(who)))
            }
            other => {
                return Err(line(ins, format!("{other} is not supported by caixa's builder")));
            }
        };

        // The cache: the same parent and instruction made an image before.
        let parent = stage.saved.as_ref().map_or("scratch", |s| s.manifest.as_str());
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
        match change {
            Change::Config(apply) => {
                apply(&mut stage.draft);
                stage.draft.history(&created_by, true);
            }
            Change::Run(mut run) => {
                run.manifest = parent.to_string();
                let layer = run_step(self.store, self.exe, self.work, &run, &mut *self.output)?;
                stage.draft.add_layer(&layer, &format!("/bin/sh -c {}", run.args.join(" ")));
            }
            Change::Files(work, apply) => {
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
    fn files(
        &mut self,
        stage: &Stage,
        work: Box<dyn FnOnce(&Path) -> Result<(), BuildError>>,
    ) -> Result<Option<Layer>, BuildError> {
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
                let upper = self.store.container_dir(&format!("build-{id}")).join("upper");
                let layer = write_layer(self.store, &upper, &shift)?;
                mounted.remove()?;
                layer
            }
            _ => {
                let dir = self.work.join(format!("scratch-{}", crate::ns::uts::short_random_id()));
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
    ) -> Result<(Box<dyn FnOnce(&Path) -> Result<(), BuildError>>, String), BuildError> {
        let add = ins.keyword == "ADD";
        for (k, _) in &ins.flags {
            if k != "chown" && k != "from" {
                return Err(line(ins, format!("{} --{k} is not supported by caixa's builder", ins.keyword)));
            }
        }
        let words = match &ins.args {
            Args::Exec(w) => w.iter().map(|w| expand_word(w)).collect::<Result<Vec<_>, _>>()?,
            Args::Shell(t) => expand_words(t)?,
        };
        let Some((dest, sources)) = words.split_last().filter(|(_, s)| !s.is_empty()) else {
            return Err(line(ins, format!("{} requires at least two arguments: SOURCE... DEST", ins.keyword)));
        };
        let shift = build_shift();
        let owner = match ins.flag("chown") {
            None => Owner { uid: shift.uid_base, gid: shift.gid_base },
            Some(spec) => {
                let (u, g) = spec.split_once(':').unwrap_or((spec, spec));
                match (u.parse::<u32>(), g.parse::<u32>()) {
                    (Ok(u), Ok(g)) if u < shift.count && g < shift.count => Owner {
                        uid: shift.uid_base + u,
                        gid: shift.gid_base + g,
                    },
                    _ => return Err(line(ins, format!("--chown={spec}: caixa takes numeric ids (UID[:GID]) below {}", shift.count))),
                }
            }
        };
        // Where the sources are: the context, or another stage's image.
        let (source_root, from_image): (PathBuf, Option<String>) = match ins.flag("from") {
            None => (self.context.to_path_buf(), None),
            Some(from) => {
                let by_name = before.iter().find(|(n, _)| n.as_deref() == Some(&from.to_ascii_lowercase()));
                let by_index = from.parse::<usize>().ok().and_then(|i| before.get(i));
                let manifest = match by_name.or(by_index) {
                    Some((_, Some(saved))) => saved.manifest.clone(),
                    Some((_, None)) => return Err(line(ins, format!("--from={from}: that stage is empty"))),
                    None => resolve_image(self.store, from).map_err(|e| line(ins, e))?,
                };
                (PathBuf::new(), Some(manifest))
            }
        };
        if let Some(url) = sources.iter().find(|s| s.contains("://")) {
            return Err(line(ins, format!("{} of a URL ({url}) is not supported: download it in a RUN, or put it in the context", ins.keyword)));
        }
        let workdir = stage.draft.config["config"]["WorkingDir"].as_str().unwrap_or("/").to_string();
        let dest_path = Path::new(&workdir).join(dest);
        let dest_is_dir = dest.ends_with('/') || sources.len() > 1 || sources.iter().any(|s| super::ignore::has_wildcard(s));
        if sources.len() > 1 && !dest.ends_with('/') {
            return Err(line(ins, format!("when using {} with more than one source file, the destination must be a directory and end with a /", ins.keyword)));
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
                let found = find_sources(&source_root, &sources).map_err(|e| BuildError::Parse(ins.error(format!("{keyword} failed: {e}"))))?;
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
            let err = |e: String| BuildError::Parse(super::dockerfile::ParseError { line: ins_line, what: format!("{keyword} failed: {e}") });
            let copy_all = |found: &[(PathBuf, PathBuf)]| -> Result<(), BuildError> {
                let target = super::scope::resolve_in(root, &dest_path, true).map_err(err)?;
                let into_dir = dest_is_dir || std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir());
                for (src, _) in found {
                    let meta = std::fs::metadata(src).map_err(BuildError::io(src))?;
                    let dest = if meta.is_dir() || into_dir {
                        copy::make_dirs(root, &target, Owner { uid: shift.uid_base, gid: shift.gid_base }).map_err(err)?;
                        if meta.is_dir() {
                            target.clone()
                        } else {
                            target.join(src.file_name().unwrap_or_default())
                        }
                    } else {
                        let parent = target.parent().unwrap_or(root);
                        copy::make_dirs(root, parent, Owner { uid: shift.uid_base, gid: shift.gid_base }).map_err(err)?;
                        target.clone()
                    };
                    if add && meta.is_file() && super::context::is_archive(src) {
                        // ADD of a local archive: its contents go in.
                        let tmp = work_dir.join(format!("add-{}", crate::ns::uts::short_random_id()));
                        std::fs::create_dir_all(&tmp).map_err(BuildError::io(&tmp))?;
                        let result = super::context::unpack_archive(src, &tmp).and_then(|()| {
                            let dir = if into_dir { target.clone() } else { dest.clone() };
                            copy::make_dirs(root, &dir, Owner { uid: shift.uid_base, gid: shift.gid_base }).map_err(err)?;
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
                    let image = ImageRoot { store: store.root.clone(), manifest, keep: false };
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

/// The sources of a COPY, each resolved inside `root` (host path, path
/// relative to `root`); wildcards match names in `root`.
fn find_sources(root: &Path, sources: &[String]) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let mut found = Vec::new();
    for src in sources {
        if super::ignore::has_wildcard(src) {
            let pattern: Vec<String> = src.split('/').filter(|n| !n.is_empty() && *n != ".").map(String::from).collect();
            let before = found.len();
            for rel in copy::list(root) {
                let names: Vec<String> = rel.iter().map(|n| n.to_string_lossy().into_owned()).collect();
                if super::ignore::matches(&pattern, &names) {
                    found.push((root.join(&rel), rel));
                }
            }
            if found.len() == before {
                return Err(format!("no source files were specified: {src} matches nothing in the build context"));
            }
            continue;
        }
        let path = super::scope::resolve_in(root, Path::new(src), true)?;
        if std::fs::symlink_metadata(&path).is_err() {
            return Err(format!("file not found in build context or excluded by .dockerignore: {src}"));
        }
        let rel = path.strip_prefix(root).map(Path::to_path_buf).unwrap_or_default();
        found.push((path, rel));
    }
    Ok(found)
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
        let (k, v) = text.split_once(char::is_whitespace).ok_or_else(|| line(ins, format!("{} requires KEY=VALUE", ins.keyword)))?;
        return Ok(vec![(k.to_string(), expand_word(v.trim())?)]);
    }
    expand_words(text)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(line(ins, format!("{}: {w:?} is not KEY=VALUE", ins.keyword))),
        })
        .collect()
}
