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
use std::path::Path;

use super::BuildError;
use super::dockerfile::{Args, Dockerfile, Instruction};
use super::expand;
use crate::image::draft::{Draft, Saved};
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
pub(super) struct Stage {
    pub(super) name: Option<String>,
    pub(super) draft: Draft,
    /// The image so far, saved (`None`: `FROM scratch`, nothing yet).
    pub(super) saved: Option<Saved>,
    pub(super) args: BTreeMap<String, String>,
    pub(super) shell: Vec<String>,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    pub(super) cmd_set: bool,
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
                    if stages
                        .last()
                        .is_some_and(|s| s.name.as_deref() == Some(target))
                    {
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
                    _ => {
                        return Err(line(
                            ins,
                            "SHELL requires the JSON form: SHELL [\"/bin/sh\", \"-c\"]",
                        ));
                    }
                }
            } else {
                let before = stages_before(&stages);
                let stage = stages.last_mut().ok_or_else(|| line(ins, "no stage"))?;
                let mut step = super::step::Step {
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
            if !stages
                .iter()
                .any(|s| s.name.as_deref() == Some(target.as_str()))
            {
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
            (self.output)(&format!(
                " ---> {}\n",
                crate::engine::images::short_id(&saved.manifest)
            ));
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

pub(super) fn stages_before(stages: &[Stage]) -> Vec<(Option<String>, Option<Saved>)> {
    let n = stages.len().saturating_sub(1);
    stages[..n]
        .iter()
        .map(|s| (s.name.clone(), s.saved.clone()))
        .collect()
}

pub(super) fn line(ins: &Instruction, what: impl Into<String>) -> BuildError {
    BuildError::Parse(ins.error(what))
}

pub(super) fn shell_text(ins: &Instruction) -> Result<&str, BuildError> {
    match &ins.args {
        Args::Shell(t) => Ok(t),
        Args::Exec(_) => Err(line(
            ins,
            format!("{} does not take a JSON list", ins.keyword),
        )),
    }
}

/// The manifest of `image` in the store (`demo` is `demo:latest`).
pub fn resolve_image(store: &Store, image: &str) -> Result<String, String> {
    store
        .resolve(image)
        .or_else(|_| store.resolve(&crate::registry::reference::store_name_of(image)))
        .map_err(|_| format!("no image {image} in the daemon's store: pull or load it first"))
}

/// Work on the image's root filesystem (its merged directory).
pub(super) type FileWork = Box<dyn FnOnce(&Path) -> Result<(), BuildError>>;
