//! The client's side of `build` and `commit` (`step11 build`, `step11 commit`).
//!
//! `build` tars the context directory (without what `.dockerignore`
//! excludes, [`super::context::tar_context`]), sends it as the body of
//! `POST /build`, and prints the daemon's progress lines as they come, as
//! `docker build` does; an `{"error": …}` line makes it fail with that line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde_json::Value;

use crate::engine::EngineError;
use crate::engine::client::{Client, Payload};
use crate::registry::client::percent_encode;

/// `step11 build`'s options: `docker build`'s that caixa knows.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildOptions {
    /// The image's name: NAME[:TAG].
    #[arg(short = 't', long = "tag")]
    pub tag: Option<String>,
    /// The Dockerfile, relative to the context (default: Dockerfile).
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    pub file: String,
    /// A build argument, KEY=VALUE (repeatable).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// The stage to build (FROM … AS NAME).
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Print only the image id.
    #[arg(short, long)]
    pub quiet: bool,
    /// The context directory.
    pub context: PathBuf,
}

/// Sends the context and prints the build's progress; fails with the
/// build's error line.
pub fn build(client: &Client, options: &BuildOptions) -> Result<(), EngineError> {
    let mut args = BTreeMap::new();
    for arg in &options.build_args {
        match arg.split_once('=') {
            Some((k, v)) => args.insert(k.to_string(), v.to_string()),
            // `--build-arg KEY` passes this shell's value on, as Docker's client does.
            None => args.insert(arg.clone(), std::env::var(arg).unwrap_or_default()),
        };
    }
    let context = super::context::tar_context(&options.context, &options.file).map_err(|e| {
        EngineError::BadRequest(format!(
            "reading the context {}: {e}",
            options.context.display()
        ))
    })?;
    let mut target = format!(
        "/build?dockerfile={}&buildargs={}&nocache={}&q={}&rm=1",
        percent_encode(&options.file),
        percent_encode(&serde_json::to_string(&args).unwrap_or_default()),
        u8::from(options.no_cache),
        u8::from(options.quiet),
    );
    if let Some(tag) = &options.tag {
        target.push_str(&format!("&t={}", percent_encode(tag)));
    }
    if let Some(stage) = &options.target {
        target.push_str(&format!("&target={}", percent_encode(stage)));
    }
    let len = context.len() as u64;
    let mut failed = None;
    let mut built = false;
    let mut pending = Vec::new();
    let mut stdout = std::io::stdout();
    client.call(
        "POST",
        &target,
        Some(Payload::reader(
            "application/x-tar",
            std::io::Cursor::new(context),
            Some(len),
        )),
        &mut |chunk| {
            pending.extend_from_slice(chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                if let Some(e) = v["error"].as_str() {
                    failed = Some(e.to_string());
                } else if v["aux"]["ID"].is_string() {
                    built = true;
                } else if let Some(s) = v["stream"].as_str() {
                    let _ = stdout.write_all(s.as_bytes());
                    let _ = stdout.flush();
                }
            }
        },
    )?;
    match (failed, built) {
        (Some(e), _) => Err(EngineError::Daemon(e)),
        (None, true) => Ok(()),
        // The answer ended before the image: the daemon broke off.
        (None, false) => Err(EngineError::Daemon(
            "the build ended without an image: see the daemon's log".into(),
        )),
    }
}

/// `step11 commit CONTAINER REPO[:TAG]`: prints the new image's id.
pub fn commit(client: &Client, container: &str, repository: &str) -> Result<(), EngineError> {
    // The tag is after the last ':' that follows the last '/' (a registry's
    // port is not a tag).
    let last = repository.rsplit('/').next().unwrap_or(repository);
    let (repo, tag) = match last.rsplit_once(':') {
        Some((_, tag)) => (&repository[..repository.len() - tag.len() - 1], tag),
        None => (repository, "latest"),
    };
    let v = client.json(
        "POST",
        &format!(
            "/commit?container={}&repo={}&tag={}",
            percent_encode(container),
            percent_encode(repo),
            percent_encode(tag)
        ),
        None,
    )?;
    println!("{}", v["Id"].as_str().unwrap_or_default());
    Ok(())
}
