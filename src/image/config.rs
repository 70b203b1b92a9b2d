//! The image config shapes the process, as `docker run` does: the command
//! is Entrypoint + (the command line, or else Cmd); the environment is the
//! image's Env with `-e` on top; the working directory and user are the
//! image's unless the command line says otherwise.

use std::path::PathBuf;

use oci_spec::image::{ImageConfiguration, ImageManifest};

use super::ImageError;
use super::store::Store;
use crate::spec::Process;

/// The manifest and config of the image `name`.
pub fn read(
    store: &Store,
    name: &str,
) -> Result<(String, ImageManifest, ImageConfiguration), ImageError> {
    let digest = store.resolve(name)?;
    let manifest =
        ImageManifest::from_reader(&store.read_blob(&digest)?[..]).map_err(|source| {
            ImageError::Json {
                what: format!("manifest of {name}"),
                source,
            }
        })?;
    let config =
        ImageConfiguration::from_reader(&store.read_blob(manifest.config().digest().as_ref())?[..])
            .map_err(|source| ImageError::Json {
                what: format!("config of {name}"),
                source,
            })?;
    Ok((digest, manifest, config))
}

// ANCHOR: shape
/// Applies the image's config under the command line's choices.
/// `command` is what followed the image name; `user_env` the `-e` entries;
/// `workdir` the `-w` value.
pub fn shape(
    process: &mut Process,
    config: &ImageConfiguration,
    command: &[String],
    user_env: &[String],
    workdir: Option<PathBuf>,
) -> Result<(), ImageError> {
    let c = config.config().clone().unwrap_or_default();
    let entrypoint = c.entrypoint().clone().unwrap_or_default();
    let cmd = if command.is_empty() {
        c.cmd().clone().unwrap_or_default()
    } else {
        command.to_vec()
    };
    process.args = entrypoint.into_iter().chain(cmd).collect();
    if process.args.is_empty() {
        return Err(ImageError::NoCommand);
    }
    for entry in c
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .chain(user_env.iter().cloned())
    {
        crate::spec::set_env(&mut process.env, entry);
    }
    process.cwd = match (workdir, c.working_dir()) {
        (Some(dir), _) => dir,
        (None, Some(dir)) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("/"),
    };
    process.user = c.user().clone().filter(|u| !u.is_empty());
    Ok(())
}
// ANCHOR_END: shape

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> ImageConfiguration {
        ImageConfiguration::from_reader(json.as_bytes()).unwrap()
    }

    const IMAGE: &str = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
        "config":{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],"Env":["A=1","PATH=/bin"],"WorkingDir":"/work","User":"1000:1000"}}"#;

    #[test]
    fn docker_run_semantics() {
        let mut p = crate::spec::Spec::new(vec![]).process;
        shape(&mut p, &config(IMAGE), &[], &["A=2".into()], None).unwrap();
        assert_eq!(p.args, ["/bin/sh", "-c", "echo hi"]);
        assert!(p.env.contains(&"A=2".to_string()) && p.env.contains(&"PATH=/bin".to_string()));
        assert_eq!(p.cwd, PathBuf::from("/work"));
        assert_eq!(p.user.as_deref(), Some("1000:1000"));
        shape(
            &mut p,
            &config(IMAGE),
            &["echo bye".into()],
            &[],
            Some("/tmp".into()),
        )
        .unwrap();
        assert_eq!(p.args, ["/bin/sh", "-c", "echo bye"]);
        assert_eq!(p.cwd, PathBuf::from("/tmp"));
        let bare =
            r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        assert!(shape(&mut p, &config(bare), &[], &[], None).is_err());
    }
}
