//! Push: every blob the registry lacks (checked with `HEAD`), uploaded in
//! one `PUT` after opening an upload session, then the manifest.

use super::RegistryError;
use super::client::Client;
use super::reference::Reference;
use crate::image::store::Store;

// ANCHOR: push
/// Pushes the local image `name` to `reference`.
pub fn push(
    store: &Store,
    name: &str,
    reference: &Reference,
    insecure: &[String],
    progress: &(dyn Fn(&str) + Sync),
) -> Result<String, RegistryError> {
    let manifest_digest = store.resolve(name)?;
    let body = store.read_blob(&manifest_digest)?;
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
            what: "local manifest".into(),
            why: e.to_string(),
        })?;
    let mut client = Client::new(reference, insecure);
    let mut blobs = vec![json["config"]["digest"].as_str().unwrap_or("").to_string()];
    blobs.extend(
        json["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str().map(String::from)),
    );
    for digest in &blobs {
        match client.send("HEAD", &format!("/blobs/{digest}"), &[], None, "pull,push") {
            Ok(_) => {
                progress(&format!("{digest}: already there"));
                continue;
            }
            Err(RegistryError::Status { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        let start = client.send(
            "POST",
            "/blobs/uploads/",
            &[("Content-Length", "0")],
            Some(b""),
            "pull,push",
        )?;
        let location = start
            .header("Location")
            .ok_or_else(|| RegistryError::Protocol {
                what: "upload".into(),
                why: "no Location header".into(),
            })?
            .to_string();
        let location = if location.starts_with('/') {
            let base = client_base(&client, insecure);
            format!("{base}{location}")
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let data = store.read_blob(digest)?;
        client.send(
            "PUT",
            &format!("{location}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            Some(&data),
            "pull,push",
        )?;
        progress(&format!("{digest}: pushed {} bytes", data.len()));
    }
    let media = json["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    client.send(
        "PUT",
        &format!("/manifests/{}", reference.tag_or_digest),
        &[("Content-Type", &media)],
        Some(&body),
        "pull,push",
    )?;
    Ok(manifest_digest)
}
// ANCHOR_END: push

/// `scheme://host` of the registry, for a relative upload location.
fn client_base(client: &Client, insecure: &[String]) -> String {
    let scheme = if super::client::plain_http_ok(client.host(), insecure) {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{}", client.host())
}
