//! Images you make: `build` (Docker's classic builder) and `commit`.
//!
//! A layer is a filesystem diff: what one step changed, as a tar. `build`
//! reads a Dockerfile ([`dockerfile`], [`expand`]) and carries out its
//! instructions one by one ([`builder`]): RUN in a container of the layers
//! so far ([`run`]), COPY and ADD from the context the client sent
//! ([`context`], [`copy`], [`scope`]), each a new layer written by
//! [`crate::image::diff`], each remembered by the cache ([`cache`]).
//! `commit` turns a container's upper directory into a layer with the same
//! writer. The API is Docker's (`POST /build`, `POST /commit`), so
//! `DOCKER_BUILDKIT=0 docker build` drives it.
//!
//! ```text
//!   client ──tar of the context──▶ POST /build ──▶ unpack (hostile input)
//!                                                 │
//!   FROM demo:1 ─▶ image₀ ─RUN─▶ image₁ ─COPY─▶ image₂ ─CMD─▶ image₃ ──tag──▶ NAME
//!                     (each step: the cache, or the work and a new layer)
//! ```

pub mod builder;
pub mod cache;
pub mod client;
pub mod context;
pub mod copy;
pub mod dockerfile;
pub mod expand;
pub mod ignore;
pub mod run;
pub mod scope;
pub mod step;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::EngineError;
use super::responder::Responder;
use super::server::{MAX_BODY, Request, RequestBody};
use crate::image::ImageError;
use crate::image::draft::Draft;
use crate::image::store::Store;

/// Why a build or a commit failed: one line.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile, with its line.
    #[error(transparent)]
    Parse(#[from] dockerfile::ParseError),
    /// The context archive was refused.
    #[error("refusing the build context: {0}")]
    Context(String),
    /// A RUN's command failed (Docker's words).
    #[error("The command '{command}' returned a non-zero code: {code}")]
    RunFailed {
        /// The command.
        command: String,
        /// Its exit code.
        code: i32,
    },
    /// The store.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A file of the build's.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Anything else, in words.
    #[error("{0}")]
    Other(String),
}

impl BuildError {
    /// An I/O error on `path`, for `map_err`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
        move |source| BuildError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A private directory that goes with its owner, on every path.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bad(why: impl Into<String>) -> EngineError {
    EngineError::BadRequest(why.into())
}

// ANCHOR: serve_build
/// `POST /build`: the body is the context as a tar; the query says the
/// rest (`t`, `dockerfile`, `buildargs`, `target`, `nocache`, `q`). The
/// answer streams Docker's JSON lines: `{"stream": …}` for progress,
/// `{"aux": {"ID": …}}` for the image, `{"error": …}` for a failure.
pub fn serve_build(
    root: &Path,
    exe: &Path,
    req: &Request,
    body: &mut RequestBody,
    out: &mut Responder,
) -> Result<(), EngineError> {
    let store = Store::open(root).map_err(|e| bad(e.to_string()))?;
    // The name is checked before the context is unpacked: a refused name
    // is one 400, not a build that ends without its tag. The body is read
    // (into nothing) first, so that the client, still sending it, hears
    // the 400 rather than a connection cut under its feet.
    let tag = match req.param("t").filter(|t| !t.is_empty()) {
        Some(t) => match super::images::tag_name(t) {
            Ok(tag) => Some(tag),
            Err(refused) => {
                let _ = std::io::copy(&mut body.limit(MAX_BODY), &mut std::io::sink());
                return Err(refused);
            }
        },
        None => None,
    };
    let dockerfile_name = req
        .param("dockerfile")
        .filter(|d| !d.is_empty())
        .unwrap_or("Dockerfile");
    let mut options = builder::Options {
        target: req
            .param("target")
            .filter(|t| !t.is_empty())
            .map(str::to_ascii_lowercase),
        no_cache: req.flag("nocache"),
        ..builder::Options::default()
    };
    if let Some(args) = req.param("buildargs").filter(|a| !a.is_empty()) {
        let map: BTreeMap<String, Option<String>> = serde_json::from_str(args)
            .map_err(|e| bad(format!("buildargs must be a JSON object of strings: {e}")))?;
        options.build_args = map
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
    }
    let quiet = req.flag("q");

    // The context, unpacked into a private directory, refused whole if
    // any entry is hostile.
    let scratch = Scratch(
        root.join("engine/tmp")
            // The daemon's pid in it: a new daemon sweeps only a dead one's.
            .join(format!(
                "build-{}-{}",
                std::process::id(),
                crate::ns::uts::short_random_id()
            )),
    );
    let context = scratch.0.join("context");
    let work = scratch.0.join("work");
    for dir in [&context, &work] {
        super::state::create_dirs(dir, 0o700)?;
    }
    let archive = scratch.0.join("context.tar");
    let mut file = std::fs::File::create(&archive).map_err(super::state::io(&archive))?;
    let size = std::io::copy(&mut body.limit(MAX_BODY), &mut file)
        .map_err(|e| bad(format!("reading the build context: {e}")))?;
    drop(file);
    let file = std::fs::File::open(&archive).map_err(super::state::io(&archive))?;
    let reader: Box<dyn std::io::Read> = if context::is_archive(&archive) && is_gzip(&archive) {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    context::unpack_context(reader, size, &context).map_err(|e| bad(e.to_string()))?;

    let mut stream = out
        .stream(200, "application/json")
        .map_err(EngineError::Connection)?;
    // The status is sent: from here on, errors travel as Docker's lines.
    let mut send = |value: Value| {
        let _ = writeln!(stream, "{value}");
    };
    let result = (|| {
        let text = read_dockerfile(&context, dockerfile_name)?;
        let parsed = dockerfile::parse(&text)?;
        let mut progress = |s: &str| {
            if !quiet {
                send(json!({ "stream": s }));
            }
        };
        let saved = builder::Builder {
            store: &store,
            exe,
            context: &context,
            work: &work,
            options: &options,
            output: &mut progress,
        }
        .build(&parsed)?;
        match &tag {
            Some(tag) => store.tag(tag, &saved.manifest)?,
            None => store.keep_unnamed(&saved.manifest)?,
        }
        Ok::<_, BuildError>(saved)
    })();
    // The scratch goes before the last line is sent: a client that has
    // read the end of the answer finds nothing of the build left behind.
    drop(scratch);
    match result {
        Ok(saved) => {
            // The image's id is its manifest's digest, as `images`,
            // `inspect` and `run` know it (never the config's, which no
            // other answer names).
            send(json!({ "aux": { "ID": saved.manifest } }));
            let short = super::images::short_id(&saved.manifest);
            if quiet {
                send(json!({ "stream": format!("{}\n", saved.manifest) }));
            } else {
                send(json!({ "stream": format!("Successfully built {short}\n") }));
                if let Some(tag) = &tag {
                    send(json!({ "stream": format!("Successfully tagged {tag}\n") }));
                }
            }
        }
        Err(e) => {
            let message = e.to_string();
            send(json!({ "errorDetail": { "message": message }, "error": message }));
        }
    }
    Ok(())
}
// ANCHOR_END: serve_build

fn is_gzip(path: &Path) -> bool {
    let mut magic = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && magic == [0x1f, 0x8b]
}

/// The Dockerfile's text, read inside the context, within the size limit.
fn read_dockerfile(context: &Path, name: &str) -> Result<String, BuildError> {
    let path = scope::resolve_in(context, Path::new(name), true).map_err(BuildError::Other)?;
    let meta = std::fs::metadata(&path).map_err(|_| {
        BuildError::Other(format!(
            "cannot find {name} in the build context: give its name with -f"
        ))
    })?;
    // A FIFO (or a device) would block the read for ever: a context's tar
    // may hold one under this name.
    if !meta.is_file() {
        return Err(BuildError::Other(format!(
            "{name} in the build context is not a regular file"
        )));
    }
    if meta.len() > dockerfile::MAX_DOCKERFILE_BYTES as u64 {
        return Err(BuildError::Other(format!(
            "{name} is {} bytes, over the limit of {} bytes",
            meta.len(),
            dockerfile::MAX_DOCKERFILE_BYTES
        )));
    }
    let bytes = std::fs::read(&path).map_err(BuildError::io(&path))?;
    String::from_utf8(bytes).map_err(|_| BuildError::Other(format!("{name} is not UTF-8 text")))
}

// ANCHOR: serve_commit
/// `POST /commit?container=ID&repo=R&tag=T`: a new image of the
/// container's image plus one layer of its changes (its upper directory).
/// The answer is `201 {"Id": "sha256:…"}`, the new image's id.
pub fn serve_commit(root: &Path, req: &Request, out: &mut Responder) -> Result<(), EngineError> {
    let key = req
        .param("container")
        .ok_or_else(|| bad("container is missing"))?;
    // The new name is checked before anything is written (as build -t's).
    let name = req
        .param("repo")
        .filter(|r| !r.is_empty())
        .map(|repo| match req.param("tag").filter(|t| !t.is_empty()) {
            Some(tag) => super::images::tag_name(&format!("{repo}:{tag}")),
            None => super::images::tag_name(repo),
        })
        .transpose()?;
    let containers = super::state::Containers::open(root)?;
    let record = containers.find(key)?;
    // A running container may change its upper directory while it is
    // read, even swap a directory for a symlink to the host's between a
    // look and an open: only a container that has ended is committed.
    // (Docker pauses it instead, with the freezer.)
    if containers.state(&record.id)?.status == super::state::Status::Running {
        return Err(EngineError::Conflict(format!(
            "container {key} is running: stop it first (caixa commits only a container that has ended)"
        )));
    }
    let store = Store::open(root).map_err(|e| bad(e.to_string()))?;
    let dir = containers.dir(&record.id);
    let bundle = crate::bundle::read(&dir).map_err(|e| bad(e.to_string()))?;
    let annotations = bundle.annotations().clone().unwrap_or_default();
    let manifest = annotations
        .get(crate::bundle::ANNOTATION_IMAGE_MANIFEST)
        .ok_or_else(|| bad(format!("container {key} has no image to commit onto")))?;
    let upper = store.container_dir(&record.id).join("upper");
    if !upper.is_dir() {
        return Err(EngineError::Conflict(format!(
            "container {key} has no changes on disk (never started?): start it first"
        )));
    }
    let shift = bundle.linux().as_ref().map_or(run::build_shift(), |l| {
        run::shift_of(l.uid_mappings().as_deref(), l.gid_mappings().as_deref())
    });
    let commit = || -> Result<crate::image::draft::Saved, BuildError> {
        let mut draft = Draft::open(&store, manifest)?;
        let layer = crate::image::diff::write_layer(&store, &upper, &shift)?;
        let comment = req.param("comment").unwrap_or("");
        draft.add_layer(&layer, &format!("caixa commit {} {comment}", record.id));
        let saved = draft.save(&store)?;
        match &name {
            Some(name) => store.tag(name, &saved.manifest)?,
            None => store.keep_unnamed(&saved.manifest)?,
        }
        Ok(saved)
    };
    let saved = commit().map_err(|e| bad(e.to_string()))?;
    out.json(201, &json!({ "Id": saved.manifest }))
        .map_err(EngineError::Connection)
}
// ANCHOR_END: serve_commit
