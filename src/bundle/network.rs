//! The network plan, both ways, as `org.caixa.network.*` annotations.
//!
//! OCI runtimes leave networks to their caller: containerd and podman run
//! CNI plugins around runc. caixa's runtime wires its own bridge, veth, NAT
//! and shaping (step 8), so the plan travels with the bundle, in the same
//! words as the command line: `-p` syntax for ports, tc's for the rate.
//! A user-mode network (`pasta`) travels the same way: its mode and ports.

use std::collections::HashMap;
use std::path::PathBuf;

use super::to_oci::utf8;
use super::{
    ANNOTATION_BANDWIDTH, ANNOTATION_BRIDGE, ANNOTATION_JOINED, ANNOTATION_NAMES,
    ANNOTATION_NETWORK_MODE, ANNOTATION_PUBLISH, ANNOTATION_STATE_DIR, ANNOTATION_SUBNET,
    BundleError, invalid_annotation,
};
use crate::net::usermode::UserModeNetwork;
use crate::net::{NetworkSpec, Publish};

/// Adds the annotations of `net`.
pub(super) fn network_to_oci(
    net: &NetworkSpec,
    annotations: &mut HashMap<String, String>,
) -> Result<(), BundleError> {
    annotations.insert(ANNOTATION_BRIDGE.into(), net.bridge.clone());
    annotations.insert(ANNOTATION_SUBNET.into(), net.subnet.to_string());
    if !net.publish.is_empty() {
        let publish: Vec<String> = net.publish.iter().map(ToString::to_string).collect();
        annotations.insert(ANNOTATION_PUBLISH.into(), publish.join(","));
    }
    if let Some(rate) = &net.bandwidth {
        annotations.insert(ANNOTATION_BANDWIDTH.into(), rate.clone());
    }
    if !net.names.is_empty() {
        annotations.insert(ANNOTATION_NAMES.into(), net.names.join(","));
    }
    let state_dir = utf8("network state directory", &net.state_dir)?;
    annotations.insert(ANNOTATION_STATE_DIR.into(), state_dir);
    Ok(())
}

/// Adds the annotations of a user-mode network: its mode and its ports.
pub(super) fn user_network_to_oci(
    net: &UserModeNetwork,
    annotations: &mut HashMap<String, String>,
) {
    annotations.insert(ANNOTATION_NETWORK_MODE.into(), "pasta".into());
    if !net.publish.is_empty() {
        let publish: Vec<String> = net.publish.iter().map(ToString::to_string).collect();
        annotations.insert(ANNOTATION_PUBLISH.into(), publish.join(","));
    }
}

/// The user-mode network the annotations describe, checked as
/// `--network pasta -p …` is; `None` without the mode annotation.
pub(super) fn user_network_from_oci(
    annotations: &HashMap<String, String>,
) -> Result<Option<UserModeNetwork>, BundleError> {
    match annotations.get(ANNOTATION_NETWORK_MODE).map(String::as_str) {
        None => Ok(None),
        Some("pasta") => {
            let bridge_keys = [
                ANNOTATION_BRIDGE,
                ANNOTATION_SUBNET,
                ANNOTATION_BANDWIDTH,
                ANNOTATION_STATE_DIR,
                ANNOTATION_NAMES,
                ANNOTATION_JOINED,
            ];
            if let Some(key) = bridge_keys.iter().find(|k| annotations.contains_key(**k)) {
                return Err(invalid_annotation(
                    ANNOTATION_NETWORK_MODE,
                    format!("a pasta network has no bridge, yet {key} is set: drop one of them"),
                ));
            }
            let publish = publish_from_oci(annotations)?;
            UserModeNetwork::plan(publish, None)
                .map(Some)
                .map_err(|e| invalid_annotation(ANNOTATION_PUBLISH, e.to_string()))
        }
        Some(other) => Err(invalid_annotation(
            ANNOTATION_NETWORK_MODE,
            format!("{other:?}: the one user-mode network caixa has is pasta"),
        )),
    }
}

/// The published ports of `org.caixa.network.publish`, each as `-p`
/// takes it, none published twice.
fn publish_from_oci(annotations: &HashMap<String, String>) -> Result<Vec<Publish>, BundleError> {
    let publish = annotations
        .get(ANNOTATION_PUBLISH)
        .filter(|p| !p.is_empty())
        .map(|list| {
            list.split(',')
                .map(str::parse)
                .collect::<Result<Vec<Publish>, _>>()
        })
        .transpose()
        .map_err(|e| invalid_annotation(ANNOTATION_PUBLISH, e))?
        .unwrap_or_default();
    if let Some(twice) = crate::net::published_twice(&publish) {
        return Err(invalid_annotation(
            ANNOTATION_PUBLISH,
            format!("host port {} is published twice", twice.key()),
        ));
    }
    Ok(publish)
}

// ANCHOR: joined_networks
/// Adds (or, with none, removes) the annotation of the networks joined
/// later: `BRIDGE=SUBNET=NAMES;…`, in the order of their interfaces.
pub(super) fn joined_to_oci(joined: &[NetworkSpec], annotations: &mut HashMap<String, String>) {
    if joined.is_empty() {
        annotations.remove(ANNOTATION_JOINED);
        return;
    }
    let list: Vec<String> = joined
        .iter()
        .map(|n| format!("{}={}={}", n.bridge, n.subnet, n.names.join(",")))
        .collect();
    annotations.insert(ANNOTATION_JOINED.into(), list.join(";"));
}

/// The networks joined later, as the annotation lists them, beside
/// `first` (whose state directory they share): `eth1`, `eth2`… in order.
/// Each part is checked as `docker network create` and `connect` check it.
pub(super) fn joined_from_oci(
    annotations: &HashMap<String, String>,
    first: Option<&NetworkSpec>,
) -> Result<Vec<NetworkSpec>, BundleError> {
    let Some(list) = annotations.get(ANNOTATION_JOINED).filter(|l| !l.is_empty()) else {
        return Ok(Vec::new());
    };
    let bad = |why: String| invalid_annotation(ANNOTATION_JOINED, why);
    let first = first.ok_or_else(|| {
        bad(
            "a container joins more networks only beside its first: add org.caixa.network.bridge"
                .into(),
        )
    })?;
    let mut joined: Vec<NetworkSpec> = Vec::new();
    for (n, part) in list.split(';').enumerate() {
        let fields: Vec<&str> = part.split('=').collect();
        let [bridge, subnet, names] = fields.as_slice() else {
            return Err(bad(format!("{part:?}: write BRIDGE=SUBNET=NAMES")));
        };
        if !crate::net::is_bridge_name(bridge) {
            return Err(bad(format!(
                "{bridge:?}: use 1-15 letters, digits, '-' or '_'"
            )));
        }
        if *bridge == first.bridge || joined.iter().any(|j| j.bridge == *bridge) {
            return Err(bad(format!(
                "{bridge} is listed twice: a network is joined once"
            )));
        }
        let names = names
            .split(',')
            .filter(|n| !n.is_empty())
            .map(|n| {
                crate::net::is_host_name(n)
                    .then(|| n.to_string())
                    .ok_or_else(|| {
                        bad(format!(
                            "{n:?}: a name is 1-63 letters, digits, '_', '.' or '-'"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // eth1…eth9: the host end's name has room for one digit.
        let interface = u8::try_from(n + 1)
            .ok()
            .filter(|i| *i <= 9)
            .ok_or_else(|| bad("a container is on 10 networks at most".into()))?;
        joined.push(NetworkSpec {
            bridge: bridge.to_string(),
            subnet: subnet.parse().map_err(bad)?,
            publish: Vec::new(),
            bandwidth: None,
            state_dir: first.state_dir.clone(),
            names,
            interface,
        });
    }
    Ok(joined)
}
// ANCHOR_END: joined_networks

/// The network the annotations describe, checked as the command line
/// checks `--bridge`, `--subnet`, `-p` and `--network-bandwidth`; `None`
/// when there is none.
pub(super) fn network_from_oci(
    annotations: &HashMap<String, String>,
) -> Result<Option<NetworkSpec>, BundleError> {
    let get = |key: &str| annotations.get(key).map(String::as_str);
    let keys = [
        ANNOTATION_BRIDGE,
        ANNOTATION_SUBNET,
        ANNOTATION_PUBLISH,
        ANNOTATION_BANDWIDTH,
        ANNOTATION_STATE_DIR,
        ANNOTATION_NAMES,
    ];
    // No bridge, or a user-mode network (`user_network_from_oci`).
    if keys.iter().all(|k| get(k).is_none()) || get(ANNOTATION_NETWORK_MODE).is_some() {
        return Ok(None);
    }
    let required = |key: &str| {
        get(key).ok_or_else(|| {
            invalid_annotation(
                key,
                "a caixa network needs its bridge, subnet and state-dir annotations",
            )
        })
    };
    let bridge = required(ANNOTATION_BRIDGE)?;
    if !crate::net::is_bridge_name(bridge) {
        return Err(invalid_annotation(
            ANNOTATION_BRIDGE,
            format!("{bridge:?}: use 1-15 letters, digits, '-' or '_'"),
        ));
    }
    let subnet = required(ANNOTATION_SUBNET)?
        .parse()
        .map_err(|e| invalid_annotation(ANNOTATION_SUBNET, e))?;
    let publish = publish_from_oci(annotations)?;
    let bandwidth = get(ANNOTATION_BANDWIDTH)
        .map(crate::net::shape::parse_rate)
        .transpose()
        .map_err(|e| invalid_annotation(ANNOTATION_BANDWIDTH, e.to_string()))?;
    let state_dir = PathBuf::from(required(ANNOTATION_STATE_DIR)?);
    if !state_dir.is_absolute() {
        return Err(invalid_annotation(
            ANNOTATION_STATE_DIR,
            "must be an absolute path",
        ));
    }
    // Names end up in other containers' hosts files: each is checked.
    let names = match get(ANNOTATION_NAMES).filter(|n| !n.is_empty()) {
        Some(list) => list
            .split(',')
            .map(|n| {
                crate::net::is_host_name(n)
                    .then(|| n.to_string())
                    .ok_or_else(|| {
                        invalid_annotation(
                            ANNOTATION_NAMES,
                            format!("{n:?}: a name is 1-63 letters, digits, '_', '.' or '-'"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    Ok(Some(NetworkSpec {
        bridge: bridge.to_string(),
        subnet,
        publish,
        bandwidth,
        state_dir,
        names,
        interface: 0,
    }))
}
