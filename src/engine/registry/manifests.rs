//! Manifests and tags: what a push ends with, and what a pull starts from.
//!
//! A manifest is kept as the bytes the client sent, under the sha256 of
//! exactly those bytes: in the store's blobs, where `step9 load` and
//! `step10 pull` keep theirs. A tag is the store's image name
//! `NAME:TAG` pointing at that digest. So a pushed image is an ordinary
//! image of the store, and a daemon on the same root runs it; and the
//! bytes a client pulls back are the bytes pushed, so its digest holds.
//!
//! Before a manifest is stored it is checked as the store's own readers
//! check documents ([`validate::document`]): OCI or Docker v2, a manifest
//! or an index as its `Content-Type` says, well-formed descriptors; and
//! every blob it names must already be here, with the size it says.

use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::http::{Body, Head, Reply};
use super::uploads::Uploads;
use crate::image::store::Store;
use crate::image::validate::{self, Document};

/// The largest manifest accepted: the bound the distribution spec lets
/// registries set, and the one caixa's client reads.
pub(super) const MAX_MANIFEST: u64 = crate::registry::client::MAX_MANIFEST;
/// The most entries one page of a list (`tags/list`, `_catalog`) holds,
/// whatever `n` asks: a page is built in memory.
pub(super) const MAX_PAGE: usize = 1000;

// ANCHOR: manifest_put
/// `PUT /v2/NAME/manifests/REFERENCE`: checks the manifest, stores its
/// bytes under their digest, and points the tag at it.
pub(super) fn put(
    store: &Store,
    uploads: &Uploads,
    head: &Head,
    body: &mut Body,
    name: &str,
    reference: &str,
) -> Result<Reply, Reply> {
    let bytes = read_manifest(body)?;
    let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
    if reference.contains(':') && reference != digest {
        return Err(Reply::error_with(
            400,
            "DIGEST_INVALID",
            &format!("the manifest's digest is {digest}, not {reference}"),
            json!({ "expected": reference, "actual": digest }),
        ));
    }
    let media = head.header("content-type").unwrap_or("");
    let document = validate::document(&bytes, &[media])
        .map_err(|e| Reply::error(400, "MANIFEST_INVALID", &format!("{e}")))?;
    let named = match &document {
        Document::Index(entries) => entries.iter().collect::<Vec<_>>(),
        Document::Manifest { config, layers } => std::iter::once(config).chain(layers).collect(),
    };
    for blob in named {
        let size = store
            .blob_path(&blob.digest)
            .ok()
            .and_then(|path| std::fs::metadata(path).ok())
            .map(|m| m.len());
        match size {
            None => {
                return Err(Reply::error_with(
                    400,
                    "MANIFEST_BLOB_UNKNOWN",
                    &format!("the manifest names {}, which was not pushed", blob.digest),
                    json!({ "digest": blob.digest }),
                ));
            }
            Some(size) if size != blob.size => {
                return Err(Reply::error(
                    400,
                    "MANIFEST_INVALID",
                    &format!(
                        "the manifest says {} is {} bytes; it is {size}",
                        blob.digest, blob.size
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    // The name the tag will be, checked before the bytes go in: a name
    // the store cannot hold is the client's 400, not a 500 afterwards.
    if !reference.contains(':') && store.check_name(&format!("{name}:{reference}")).is_err() {
        return Err(Reply::error(
            400,
            "TAG_INVALID",
            &format!("{name}:{reference} is too long for a name of this registry's store"),
        ));
    }
    uploads.put_bytes(&digest, &bytes)?;
    if !reference.contains(':') {
        store
            .tag(&format!("{name}:{reference}"), &digest)
            .map_err(|e| Reply::error(500, "UNKNOWN", &format!("cannot tag: {e}")))?;
    }
    Ok(Reply::empty(201)
        .header("location", format!("/v2/{name}/manifests/{digest}"))
        .header("docker-content-digest", digest))
}
// ANCHOR_END: manifest_put

/// The manifest's bytes: at most [`MAX_MANIFEST`] (`413` past it, whether
/// declared or sent).
fn read_manifest(body: &mut Body) -> Result<Vec<u8>, Reply> {
    use std::io::Read;
    let too_large = || {
        Reply::error(
            413,
            "SIZE_INVALID",
            &format!(
                "a manifest of this registry is at most {} MiB",
                MAX_MANIFEST >> 20
            ),
        )
    };
    if body.declared().is_some_and(|d| d > MAX_MANIFEST) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    body.take(MAX_MANIFEST + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Reply::error(400, "MANIFEST_INVALID", &format!("the body broke off: {e}")))?;
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(too_large());
    }
    Ok(bytes)
}

/// `GET` (and `HEAD`) `/v2/NAME/manifests/REFERENCE`: by tag the image
/// `NAME:TAG` of the store; by digest any manifest it holds.
pub(super) fn get(store: &Store, name: &str, reference: &str) -> Reply {
    let digest = if reference.contains(':') {
        Some(reference.to_string())
    } else {
        store.resolve(&format!("{name}:{reference}")).ok()
    };
    let found = digest
        .as_deref()
        .and_then(|d| read_manifest_blob(store, d).map(|body| (d.to_string(), body)))
        .and_then(|(d, body)| media_type(&body).map(|media| (d, media, body)));
    let Some((digest, media, body)) = found else {
        return Reply::error_with(
            404,
            "MANIFEST_UNKNOWN",
            &format!("no manifest {name}:{reference}"),
            json!({ "name": name, "reference": reference }),
        );
    };
    Reply::bytes(200, &media, body).header("docker-content-digest", digest)
}

/// The bytes of blob `digest` if it may be a manifest: at most
/// [`MAX_MANIFEST`], looked at before it is read (a layer asked for on
/// this path would otherwise be read whole into memory, once per request).
fn read_manifest_blob(store: &Store, digest: &str) -> Option<Vec<u8>> {
    let path = store.blob_path(digest).ok()?;
    if std::fs::metadata(&path).ok()?.len() > MAX_MANIFEST {
        return None;
    }
    store.read_blob(digest).ok()
}

/// The media type a stored manifest is served as: its own `mediaType`,
/// else (an OCI document may omit it) the OCI type of what it is. `None`
/// for a blob that is no manifest (a config asked for on this path).
fn media_type(body: &[u8]) -> Option<String> {
    match validate::document(body, &[]).ok()? {
        Document::Index(_) => Some(own_type(body).unwrap_or(validate::INDEX_TYPES[0].into())),
        Document::Manifest { .. } => {
            Some(own_type(body).unwrap_or(validate::MANIFEST_TYPES[0].into()))
        }
    }
}

fn own_type(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["mediaType"].as_str().map(String::from)
}

// ANCHOR: manifest_delete
/// `DELETE /v2/NAME/manifests/REFERENCE`. By tag: the tag goes. By
/// digest: every tag of `NAME` pointing at it goes, and the manifest's
/// bytes with them when no image of the store points at it any more.
/// A digest no tag of `NAME` points at is no manifest of `NAME`'s (a
/// layer, a config, another repository's manifest): 404, and nothing
/// goes, whoever may push to `NAME`. The blobs it names stay: other images
/// may share them, and a container of the daemon may run on them.
pub(super) fn delete(store: &Store, name: &str, reference: &str) -> Reply {
    let unknown = || {
        Reply::error(
            404,
            "MANIFEST_UNKNOWN",
            &format!("no manifest {name}:{reference}"),
        )
    };
    if !reference.contains(':') {
        return match store.untag(&format!("{name}:{reference}")) {
            Ok(()) => Reply::empty(202),
            Err(_) => unknown(),
        };
    }
    let Ok(images) = store.images() else {
        return Reply::error(500, "UNKNOWN", "cannot list the store's images");
    };
    let ours = images
        .iter()
        .any(|(image, digest)| digest == reference && repository_of(image) == Some(name));
    if !ours
        || read_manifest_blob(store, reference)
            .and_then(|b| media_type(&b))
            .is_none()
    {
        return unknown();
    }
    let mut left = 0;
    for (image, digest) in &images {
        if digest != reference {
            continue;
        }
        if repository_of(image) == Some(name) {
            let _ = store.untag(image);
        } else {
            left += 1;
        }
    }
    if left == 0 {
        if let Ok(path) = store.blob_path(reference) {
            let _ = std::fs::remove_file(path);
        }
    }
    Reply::empty(202)
}
// ANCHOR_END: manifest_delete

/// The repository of a store image name `REPO:TAG` (`None` for a name by
/// digest, or one without a tag).
fn repository_of(image: &str) -> Option<&str> {
    let (repo, tag) = image.rsplit_once(':')?;
    (!tag.contains('/') && !repo.contains('@')).then_some(repo)
}

/// `GET /v2/NAME/tags/list?n=&last=`: the tags of `NAME`, a page at a time.
pub(super) fn tags(store: &Store, head: &Head, name: &str) -> Reply {
    let Ok(images) = store.images() else {
        return Reply::error(500, "UNKNOWN", "cannot list the store's images");
    };
    let tags: Vec<String> = images
        .iter()
        .filter(|(image, _)| repository_of(image) == Some(name))
        .filter_map(|(image, _)| image.rsplit_once(':').map(|(_, tag)| tag.to_string()))
        .collect();
    if tags.is_empty() {
        return Reply::error(
            404,
            "NAME_UNKNOWN",
            &format!("no repository {name} in this registry"),
        );
    }
    page(
        head,
        tags,
        &format!("/v2/{name}/tags/list"),
        |tags| json!({ "name": name, "tags": tags }),
    )
}

/// `GET /v2/_catalog?n=&last=`: the repositories (image names of the
/// store that are names of the API; `127.0.0.1:5000/x`, pulled from
/// elsewhere, is not one) that `visible` lets the asker see, a page at
/// a time.
pub(super) fn catalog(store: &Store, head: &Head, visible: &dyn Fn(&str) -> bool) -> Reply {
    let Ok(images) = store.images() else {
        return Reply::error(500, "UNKNOWN", "cannot list the store's images");
    };
    let repositories: Vec<String> = images
        .iter()
        .filter_map(|(image, _)| repository_of(image))
        .filter(|repo| super::names::check_name(repo).is_ok() && visible(repo))
        .map(String::from)
        .collect();
    page(
        head,
        repositories,
        "/v2/_catalog",
        |repositories| json!({ "repositories": repositories }),
    )
}

// ANCHOR: page
/// One page of `all` (sorted here): at most `n` entries (the server's
/// [`MAX_PAGE`] if `n` is larger or absent) after `last`. When more
/// follow, a `Link` header names the next page, as the spec says.
fn page(
    head: &Head,
    mut all: Vec<String>,
    path: &str,
    shape: impl Fn(&[String]) -> serde_json::Value,
) -> Reply {
    all.sort();
    all.dedup();
    let n = match head.param("n").map(str::parse::<usize>) {
        None => MAX_PAGE,
        Some(Ok(n)) => n.min(MAX_PAGE),
        Some(Err(_)) => {
            return Reply::error(
                400,
                "PAGINATION_NUMBER_INVALID",
                "n is not a number of entries",
            );
        }
    };
    let from = match head.param("last") {
        Some(last) => all.partition_point(|entry| entry.as_str() <= last),
        None => 0,
    };
    let rest = &all[from..];
    let shown = &rest[..n.min(rest.len())];
    let reply = Reply::json(200, &shape(shown));
    match shown.last() {
        Some(last) if rest.len() > shown.len() => {
            let last = crate::registry::client::percent_encode(last);
            reply.header("link", format!("<{path}?n={n}&last={last}>; rel=\"next\""))
        }
        _ => reply,
    }
}
// ANCHOR_END: page

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_by_digest_takes_only_a_manifest_of_its_own_repository() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let put = |bytes: &[u8]| store.put_blob_hashed(bytes).unwrap();
        let (layer, config) = (put(b"a layer's bytes"), put(b"{}"));
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":15}}]}}"#
        );
        let manifest = put(manifest.as_bytes());
        store.tag("bb:1", &manifest).unwrap();
        let there = |digest: &str| store.blob_path(digest).unwrap().exists();
        // A layer, a config: no manifest, whatever repository is named.
        for digest in [&layer, &config] {
            for repository in ["other", "bb"] {
                assert_eq!(delete(&store, repository, digest).status(), 404);
                assert!(there(digest), "{repository} deleted {digest}");
            }
        }
        // Another repository's manifest: not ours to delete.
        assert_eq!(delete(&store, "other", &manifest).status(), 404);
        assert!(there(&manifest) && store.resolve("bb:1").is_ok());
        // Its own: the tag and the bytes go, the blobs it names stay.
        assert_eq!(delete(&store, "bb", &manifest).status(), 202);
        assert!(!there(&manifest) && store.resolve("bb:1").is_err());
        assert!(there(&layer) && there(&config));
    }
}
