//! The daemon's images, past pull and load: tag, inspect, history,
//! remove, save, log in, push.
//!
//! An image in caixa's store is a name pointing at a manifest digest
//! ([`Store::tag`]); the manifest names a config and layers, all blobs
//! addressed by their digests. So most of these are small: a *tag* is one
//! more name for the same digest, a *removal* takes a name away (the blobs
//! stay, shared with other images and with containers' layers), *inspect*
//! and *history* read the config, *save* writes the blobs out as an
//! archive, and *push* hands them to step 10's registry client.
//!
//! Credentials come from the client, never from the daemon's own files
//! when a client sent some: the Docker CLI keeps them (`docker login`)
//! and sends them with each push or pull in `X-Registry-Auth`, base64url
//! JSON. The daemon uses them for that one transfer and keeps nothing.

use std::io::Write;

use serde_json::{Value, json};

use super::EngineError;
use super::daemon::Daemon;
use super::events::Event;
use super::server::{Request, Responder};
use crate::image::store::{Store, is_unnamed};
use crate::registry::client::Options;
use crate::registry::reference::Reference;

/// The store's name for `name`: Docker's short names (`demo`) mean
/// `demo:latest`, and names are checked against the reference grammar
/// before any path is built from them.
fn full_name(name: &str) -> Result<String, EngineError> {
    let reference = Reference::parse(name)
        .map_err(|e| EngineError::BadRequest(format!("invalid image name {name:?}: {e}")))?;
    // A name with a tag or a digest stays as given; a bare one gets `:latest`.
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        Ok(name.to_string())
    } else {
        let _ = reference;
        Ok(format!("{name}:latest"))
    }
}

/// The store's name for a name a client gives an image it makes or
/// names (`tag`, `build -t`, `commit`): [`full_name`]'s, so that
/// `build -t web`, `tag … web` and `run web` mean one `web:latest`; never
/// a digest, which names content, not a choice.
pub(crate) fn tag_name(name: &str) -> Result<String, EngineError> {
    let full = full_name(name)?;
    if full.contains('@') {
        return Err(EngineError::BadRequest(format!(
            "cannot tag with a digest ({full}): a digest names content, not a choice"
        )));
    }
    Ok(full)
}

/// `name`'s manifest digest, or Docker's 404 words.
fn resolve(store: &Store, name: &str) -> Result<(String, String), EngineError> {
    // A name first, as Docker looks: an id only if no image has that name.
    let full = full_name(name);
    if let Some(digest) = full.as_ref().ok().and_then(|f| store.resolve(f).ok()) {
        return Ok((full?, digest));
    }
    match by_id(store, name)? {
        Some(found) => Ok(found),
        None => {
            full?;
            Err(EngineError::NotFound(format!("No such image: {name}")))
        }
    }
}

/// An image named by its id, as `images` shows it: the manifest's digest,
/// with or without `sha256:`, whole or the start of it (12 digits at
/// least, the length `images` prints): one of its names and the digest.
/// `None` if `id` is no id of an image here; a 409 if it starts two ids.
pub(crate) fn by_id(store: &Store, id: &str) -> Result<Option<(String, String)>, EngineError> {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    if hex.len() < 12 || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let mut images = store.images()?;
    // A real name before the one of an image of no name (`@` sorts first).
    images.sort_by_key(|(name, digest)| is_unnamed(name, digest));
    let mut matches = images
        .iter()
        .filter(|(_, digest)| digest.trim_start_matches("sha256:").starts_with(hex));
    let Some((name, digest)) = matches.next() else {
        return Ok(None);
    };
    if matches.any(|(_, other)| other != digest) {
        return Err(EngineError::Conflict(format!(
            "{id} is the start of more than one image's id: give more of it"
        )));
    }
    Ok(Some((name.clone(), digest.clone())))
}

/// An image id as `images` and `build` print it: its first 12 digits.
pub(crate) fn short_id(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

// ANCHOR: registry_auth
/// The credentials a Docker client sent for one transfer: `X-Registry-Auth`
/// is base64url of `{"username": …, "password": …}` (`e30=`, `{}`, when
/// the client has none). Malformed is a 400: better than trying anonymously
/// and failing with a confusing 401.
pub fn registry_auth(req: &Request) -> Result<Option<(String, String)>, EngineError> {
    use base64::Engine as _;
    let Some(header) = req.headers.get("x-registry-auth") else {
        return Ok(None);
    };
    let bad = || EngineError::BadRequest("X-Registry-Auth is not base64url JSON".into());
    let text = header.to_str().map_err(|_| bad())?.trim();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(text))
        .map_err(|_| bad())?;
    let json: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    match (json["username"].as_str(), json["password"].as_str()) {
        (Some(user), Some(password)) if !user.is_empty() => {
            Ok(Some((user.to_string(), password.to_string())))
        }
        _ => Ok(None),
    }
}
// ANCHOR_END: registry_auth

/// `POST /images/NAME/tag?repo=R&tag=T`: one more name for the same image.
pub fn tag(daemon: &Daemon, name: &str, req: &Request) -> Result<(), EngineError> {
    let store = Store::open(&daemon.root)?;
    let (_, digest) = resolve(&store, name)?;
    let repo = req
        .param("repo")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| EngineError::BadRequest("tag needs repo: the new name".into()))?;
    let new = match req.param("tag").filter(|t| !t.is_empty()) {
        Some(tag) => format!("{repo}:{tag}"),
        None => repo.to_string(),
    };
    let new = tag_name(&new)?;
    store.tag(&new, &digest)?;
    let event = Event::new("image", "tag", &digest).with("name", &new);
    super::events::record(&daemon.root, &event);
    Ok(())
}

/// `DELETE /images/NAME`: takes the name away, unless a container was made
/// from it (409, or with `force` anyway: the container keeps its layers);
/// the image goes with its last name. Named by its id, an image is all its
/// names: with more than one, Docker's 409 unless `force` (then all go).
pub fn remove(daemon: &Daemon, name: &str, force: bool) -> Result<Value, EngineError> {
    let store = Store::open(&daemon.root)?;
    let (full, digest) = resolve(&store, name)?;
    let by_name = full_name(name).is_ok_and(|f| f == full);
    let names: Vec<String> = match by_name {
        true => vec![full],
        false => store
            .images()?
            .into_iter()
            .filter(|(n, d)| *d == digest && !is_unnamed(n, d))
            .map(|(n, _)| n)
            .collect(),
    };
    if names.len() > 1 && !force {
        return Err(EngineError::Conflict(format!(
            "unable to delete {} (must be forced): the image has {} names ({}): remove them by name, or use -f",
            short_id(&digest),
            names.len(),
            names.join(", ")
        )));
    }
    if !force {
        // Whether this removal deletes the image: no other name left.
        let deletes = !store
            .images()?
            .iter()
            .any(|(n, d)| *d == digest && !is_unnamed(n, d) && !names.contains(n));
        let containers = super::state::Containers::open(&daemon.root)?;
        for (record, _) in containers.list()? {
            let made_from = full_name(&record.image).ok();
            let by_name = names
                .iter()
                .find(|n| made_from.as_deref() == Some(n.as_str()));
            // Made from it by its id (`run 3f2a…`, how an image of no
            // name is run): the same image, whatever it is called.
            let by_id = || {
                by_id(&store, &record.image)
                    .ok()
                    .flatten()
                    .is_some_and(|(_, d)| d == digest)
            };
            if by_name.is_some() || (deletes && by_id()) {
                return Err(EngineError::Conflict(format!(
                    "unable to remove {}: container {} was made from it: remove it first, or use -f",
                    by_name.map_or(short_id(&digest), |n| n.as_str()),
                    record.name
                )));
            }
        }
    }
    let mut answer = Vec::new();
    for full in &names {
        store.untag(full)?;
        let event = Event::new("image", "untag", &digest).with("name", full);
        super::events::record(&daemon.root, &event);
        answer.push(json!({ "Untagged": full }));
    }
    if !by_name {
        // Removed by its id: it goes, names and all.
        store.forget_unnamed(&digest)?;
    }
    if !store.images()?.iter().any(|(_, d)| *d == digest) {
        let event = Event::new("image", "delete", &digest).with("name", name);
        super::events::record(&daemon.root, &event);
        // No name left. The blobs stay: others may share them, and
        // caixa has no collector of unused blobs yet.
        answer.push(json!({ "Deleted": digest }));
    }
    Ok(Value::Array(answer))
}

/// `GET /images/NAME/json`: Docker's fields that caixa knows.
pub fn inspect(daemon: &Daemon, name: &str) -> Result<Value, EngineError> {
    let store = Store::open(&daemon.root)?;
    let (full, digest) = resolve(&store, name)?;
    let (_, manifest, config) = crate::image::config::read(&store, &full)?;
    let c = config.config().clone().unwrap_or_default();
    let tags: Vec<String> = store
        .images()?
        .into_iter()
        .filter(|(n, d)| *d == digest && !is_unnamed(n, d))
        .map(|(n, _)| n)
        .collect();
    let size: u64 = manifest.layers().iter().map(|l| l.size()).sum();
    Ok(json!({
        "Id": digest, "RepoTags": tags, "RepoDigests": [],
        "Created": config.created().clone().unwrap_or_default(),
        "Architecture": config.architecture().to_string(), "Os": config.os().to_string(),
        "Size": size,
        "Config": {
            "Env": c.env(), "Cmd": c.cmd(), "Entrypoint": c.entrypoint(),
            "WorkingDir": c.working_dir().clone().unwrap_or_default(),
            "User": c.user().clone().unwrap_or_default(),
            "ExposedPorts": c.exposed_ports().as_ref().map(|ports| {
                ports.iter().map(|p| (p.clone(), json!({}))).collect::<serde_json::Map<_, _>>()
            }),
            "Volumes": c.volumes().as_ref().map(|vols| {
                vols.iter().map(|v| (v.clone(), json!({}))).collect::<serde_json::Map<_, _>>()
            }),
            "Labels": c.labels(),
        },
        "RootFS": {
            "Type": "layers",
            "Layers": config.rootfs().diff_ids(),
        },
    }))
}

/// `GET /images/NAME/history`: the config's history, newest first, as
/// Docker lists it.
pub fn history(daemon: &Daemon, name: &str) -> Result<Value, EngineError> {
    let store = Store::open(&daemon.root)?;
    let (full, digest) = resolve(&store, name)?;
    let (_, _, config) = crate::image::config::read(&store, &full)?;
    let mut entries = Vec::new();
    let all = config.history().clone().unwrap_or_default();
    for (i, h) in all.iter().enumerate().rev() {
        let created = h
            .created()
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        entries.push(json!({
            // Only the newest step is this image; the others have no ids
            // of their own here (Docker's word for that).
            "Id": if i + 1 == all.len() { digest.clone() } else { "<missing>".into() },
            "Created": created,
            "CreatedBy": h.created_by().clone().unwrap_or_default(),
            "Comment": h.comment().clone().unwrap_or_default(),
            "Size": 0, "Tags": Value::Null,
        }));
    }
    Ok(Value::Array(entries))
}

// ANCHOR: image_push
/// `POST /images/NAME/push?tag=T`: sends the image to the registry its
/// name starts with, with the client's credentials, streaming Docker's
/// progress lines (`{"status": …}`, then `{"aux": {"Digest": …}}`, or
/// `{"error": …}`, which clients print and exit non-zero on).
pub fn push(
    daemon: &Daemon,
    name: &str,
    req: &Request,
    out: &mut Responder,
) -> Result<(), EngineError> {
    let with_tag = match req.param("tag").filter(|t| !t.is_empty()) {
        Some(tag) => format!("{name}:{tag}"),
        None => name.to_string(),
    };
    let store = Store::open(&daemon.root)?;
    let (full, _) = resolve(&store, &with_tag)?;
    let reference =
        Reference::parse(&full).map_err(|e| EngineError::BadRequest(format!("{full}: {e}")))?;
    let options = Options {
        credentials: registry_auth(req)?,
        ..daemon.options.clone()
    };
    let mut out = out
        .stream(200, "application/json")
        .map_err(EngineError::Connection)?;
    let place = format!("{}/{}", reference.api_host(), reference.repository);
    let _ = writeln!(
        out,
        "{}",
        json!({ "status": format!("The push refers to repository [{place}]") })
    );
    let progress = crate::registry::progress::Progress::Lines;
    let line = match crate::registry::push::push(&store, &full, &reference, &options, &progress) {
        Ok(digest) => {
            let size = store.read_blob(&digest).map_or(0, |b| b.len());
            let tag = full.rsplit_once(':').map_or("latest", |(_, t)| t);
            let event = Event::new("image", "push", &full).with("name", &full);
            super::events::record(&daemon.root, &event);
            let _ = writeln!(
                out,
                "{}",
                json!({ "status": format!("{tag}: digest: {digest} size: {size}") })
            );
            json!({ "progressDetail": {}, "aux": { "Tag": tag, "Digest": digest, "Size": size } })
        }
        Err(e) => json!({ "error": e.to_string(), "errorDetail": { "message": e.to_string() } }),
    };
    let _ = writeln!(out, "{line}");
    Ok(())
}
// ANCHOR_END: image_push

/// `POST /auth`: checks credentials against a registry (`docker login`):
/// one `GET /v2/` with them. The daemon keeps nothing: the client saves
/// them and sends them with each push and pull.
pub fn login(daemon: &Daemon, body: &Value) -> Result<Value, EngineError> {
    let server = body["serveraddress"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| EngineError::BadRequest("login needs serveraddress".into()))?;
    let host = server
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .trim_end_matches("/v2");
    let (user, password) = match (body["username"].as_str(), body["password"].as_str()) {
        (Some(u), Some(p)) if !u.is_empty() => (u.to_string(), p.to_string()),
        _ => {
            return Err(EngineError::BadRequest(
                "login needs a username and a password".into(),
            ));
        }
    };
    let reference = Reference::parse(&format!("{host}/login-check"))
        .map_err(|e| EngineError::BadRequest(format!("invalid registry {server:?}: {e}")))?;
    let options = Options {
        credentials: Some((user, password)),
        ..daemon.options.clone()
    };
    crate::registry::client::Client::new(&reference, &options)
        .check_login()
        .map_err(|e| match e {
            // The registry said no to these credentials: Docker's 401.
            crate::registry::RegistryError::Status { status: 401, .. } => {
                EngineError::Unauthorized(format!("login to {host} failed: {e}"))
            }
            // It could not be asked (no such host, refused, a timeout).
            other => EngineError::Daemon(format!("login to {host}: {other}")),
        })?;
    Ok(json!({ "Status": "Login Succeeded", "IdentityToken": "" }))
}

/// `GET /images/NAME/get`, `GET /images/get?names=…`: the images as one
/// archive that both `docker load` and OCI tools read: an OCI layout
/// (`oci-layout`, `index.json`, `blobs/sha256/…`) with Docker's
/// `manifest.json` beside it, as Docker 25 writes it. Blobs are copied as
/// they are, compressed layers and all: each is read from the store a
/// piece at a time.
pub fn save(daemon: &Daemon, names: &[String], out: &mut Responder) -> Result<(), EngineError> {
    let store = Store::open(&daemon.root)?;
    let mut images = Vec::new();
    for name in names {
        let (full, digest) = resolve(&store, name)?;
        let (_, manifest, _) = crate::image::config::read(&store, &full)?;
        images.push((full, digest, manifest));
    }
    if images.is_empty() {
        return Err(EngineError::BadRequest(
            "save needs at least one image".into(),
        ));
    }
    let stream = out
        .stream(200, "application/x-tar")
        .map_err(EngineError::Connection)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(64 << 10, stream));
    let mut written = std::collections::BTreeSet::new();
    let mut docker = Vec::new();
    let mut index = Vec::new();
    let io = EngineError::Connection;
    let add = |tar: &mut tar::Builder<_>, path: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, bytes)
    };
    for (full, digest, manifest) in &images {
        let mut blobs = vec![digest.clone(), manifest.config().digest().to_string()];
        blobs.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
        for blob in &blobs {
            if !written.insert(blob.clone()) {
                continue;
            }
            let path = store.blob_path(blob)?;
            let file = std::fs::File::open(&path).map_err(super::state::io(&path))?;
            let size = file.metadata().map_err(super::state::io(&path))?.len();
            let mut header = tar::Header::new_gnu();
            header.set_size(size);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, blob_name(blob), file)
                .map_err(io)?;
        }
        // An image of no name goes out as Docker saves one: no tags.
        let unnamed = is_unnamed(full, digest);
        docker.push(json!({
            "Config": blob_name(manifest.config().digest().as_ref()),
            "RepoTags": if unnamed { Value::Null } else { json!([full]) },
            "Layers": manifest.layers().iter().map(|l| blob_name(l.digest().as_ref())).collect::<Vec<_>>(),
        }));
        let size = store.read_blob(digest).map_or(0, |b| b.len());
        index.push(json!({
            "mediaType": manifest.media_type().as_ref().map(|m| m.to_string())
                .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into()),
            "digest": digest, "size": size,
            "annotations": if unnamed { json!({}) } else { json!({ "io.containerd.image.name": full, "org.opencontainers.image.ref.name": full.rsplit_once(':').map_or("latest", |(_, t)| t) }) },
        }));
    }
    add(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io)?;
    let index = json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index });
    add(&mut tar, "index.json", index.to_string().as_bytes()).map_err(io)?;
    add(
        &mut tar,
        "manifest.json",
        Value::Array(docker).to_string().as_bytes(),
    )
    .map_err(io)?;
    tar.into_inner().and_then(|mut w| w.flush()).map_err(io)?;
    Ok(())
}

/// Where a blob goes in a saved archive: `blobs/sha256/HEX`.
fn blob_name(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_mean_latest_and_hostile_ones_are_refused() {
        assert_eq!(full_name("demo").unwrap(), "demo:latest");
        assert_eq!(full_name("demo:1").unwrap(), "demo:1");
        assert_eq!(
            full_name("127.0.0.1:5000/team/demo").unwrap(),
            "127.0.0.1:5000/team/demo:latest"
        );
        for bad in ["../x", "a//b", "UPPER", ""] {
            assert!(full_name(bad).is_err(), "{bad:?}");
        }
    }

    /// A store with `names`, each pointing at its digest, and its daemon.
    fn store_with(names: &[(&str, &str)]) -> (tempfile::TempDir, Daemon) {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        for (name, digest) in names {
            store.tag(name, digest).unwrap();
        }
        let daemon = Daemon::new(
            root.path().to_path_buf(),
            "/bin/true".into(),
            Options::default(),
        );
        (root, daemon)
    }

    #[test]
    fn an_image_is_found_by_its_id_whole_or_its_first_12_digits() {
        let (a, b) = (
            format!("sha256:abcdef12{}", "0".repeat(56)),
            format!("sha256:abcdef34{}", "0".repeat(56)),
        );
        let (_root, daemon) = store_with(&[("one:1", &a), ("two:1", &b)]);
        let store = Store::open(&daemon.root).unwrap();
        assert_eq!(
            by_id(&store, &a).unwrap().map(|f| f.0),
            Some("one:1".to_string())
        );
        assert_eq!(
            by_id(&store, &b[7..19]).unwrap().map(|f| f.0),
            Some("two:1".to_string())
        );
        // Too short to be an id, or not one: no image by id.
        assert_eq!(by_id(&store, "abcdef").unwrap(), None);
        assert_eq!(by_id(&store, "one:1").unwrap(), None);
        // The start of two ids.
        let (c, d) = (
            format!("sha256:{}1", "9".repeat(63)),
            format!("sha256:{}2", "9".repeat(63)),
        );
        let (_root, daemon) = store_with(&[("c:1", &c), ("d:1", &d)]);
        let store = Store::open(&daemon.root).unwrap();
        assert!(matches!(
            by_id(&store, &"9".repeat(12)),
            Err(EngineError::Conflict(_))
        ));
    }

    #[test]
    fn removing_an_image_by_id_with_two_names_must_be_forced() {
        let digest = format!("sha256:{}", "e".repeat(64));
        let (_root, daemon) = store_with(&[("web:1", &digest), ("web:copy", &digest)]);
        let store = Store::open(&daemon.root).unwrap();
        assert!(matches!(
            remove(&daemon, &"e".repeat(12), false),
            Err(EngineError::Conflict(_))
        ));
        assert_eq!(
            store.images().unwrap().len(),
            2,
            "a refused rmi removes nothing"
        );
        // By name, one name goes and the image stays.
        remove(&daemon, "web:copy", false).unwrap();
        assert_eq!(store.images().unwrap().len(), 1);
        store.tag("web:copy", &digest).unwrap();
        // Forced, by id: every name, and the image.
        let answer = remove(&daemon, &"e".repeat(12), true).unwrap();
        assert!(store.images().unwrap().is_empty());
        assert!(answer.to_string().contains("Deleted"), "{answer}");
    }

    #[test]
    fn a_new_name_is_the_full_name_and_never_a_digest() {
        assert_eq!(tag_name("web").unwrap(), "web:latest");
        assert_eq!(
            tag_name("127.0.0.1:5000/site/web:1").unwrap(),
            "127.0.0.1:5000/site/web:1"
        );
        let digest = format!("web@sha256:{}", "a".repeat(64));
        assert!(tag_name(&digest).is_err(), "a digest is no tag");
        assert!(tag_name("Web").is_err(), "upper case is no repository");
    }
}
