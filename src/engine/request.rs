//! A create request becomes a plan: Docker's JSON → caixa's [`Spec`].
//!
//! `POST /containers/create` carries Docker's container config (`Image`,
//! `Cmd`, `Env`, `HostConfig.Memory`, `PortBindings`, …). The daemon turns it
//! into the same [`Spec`] a step binary builds from its command line, through
//! the same library functions (the image config's shaping, [`Privilege`],
//! [`Limits`], [`NetworkSpec::plan`]), then writes it as an OCI bundle for
//! the shim (see [`crate::bundle`]). Nothing here goes through the step
//! binaries' command-line module: the command line is one way to describe a
//! container, the API another, the spec is what both mean.
//!
//! Fields caixa cannot honour are refused (400), never ignored: a user who
//! asks for a volume must not believe their data is kept.

use serde_json::Value;

use super::EngineError;
use crate::cgroup::Limits;
use crate::image::overlay::ImageRoot;
use crate::image::store::Store;
use crate::net::{NetworkSpec, Publish};
use crate::privilege::Privilege;
use crate::spec::{Spec, set_env};

fn bad(why: impl Into<String>) -> EngineError {
    EngineError::BadRequest(why.into())
}

fn strings(v: &Value, field: &str) -> Result<Vec<String>, EngineError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|s| {
                s.as_str()
                    .map(String::from)
                    .ok_or_else(|| bad(format!("{field} must be a list of strings")))
            })
            .collect(),
        _ => Err(bad(format!("{field} must be a list of strings"))),
    }
}

fn number<T: TryFrom<i64>>(v: &Value, field: &str) -> Result<Option<T>, EngineError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad(format!("{field} is out of range: {n}"))),
        _ => Err(bad(format!("{field} must be a number"))),
    }
}

/// Refuses what caixa does not do yet, one clear line each.
fn refuse_unsupported(body: &Value) -> Result<(), EngineError> {
    let host = &body["HostConfig"];
    let mounts = ["Binds", "Mounts"]
        .iter()
        .any(|k| host[*k].as_array().is_some_and(|a| !a.is_empty()))
        || body["Volumes"].as_object().is_some_and(|v| !v.is_empty());
    if mounts {
        return Err(bad(
            "volumes and bind mounts are not supported by caixa's engine yet: run without -v",
        ));
    }
    if body["OpenStdin"].as_bool() == Some(true) {
        return Err(bad(
            "stdin (-i) is not supported by caixa's engine yet: run without -i (-t alone works)",
        ));
    }
    if host["Privileged"].as_bool() == Some(true) {
        return Err(bad(
            "--privileged is not supported: add the capabilities it needs with --cap-add",
        ));
    }
    Ok(())
}

// ANCHOR: create_spec
/// The plan for container `id` from Docker's create `body`, with its image
/// from `store`: what `docker run` would run.
pub fn to_spec(store: &Store, id: &str, body: &Value) -> Result<Spec, EngineError> {
    refuse_unsupported(body)?;
    let image = image_name(body)?;
    let host = &body["HostConfig"];
    let mut spec = Spec::new(Vec::new());
    spec.id = id.to_string();
    // Every namespace: an engine container is isolated as step 8's are.
    spec.namespaces = crate::ns::ALL.to_vec();
    spec.process.env.push("HOME=/root".into());

    // The image's config under the request's choices (as `docker run`).
    let local = local_name(store, image)?;
    let (manifest, _, config) = crate::image::config::read(store, &local)
        .map_err(|e| EngineError::NotFound(format!("No such image: {image} ({e})")))?;
    let command = strings(&body["Cmd"], "Cmd")?;
    let workdir = body["WorkingDir"]
        .as_str()
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from);
    crate::image::config::shape(&mut spec.process, &config, &command, &[], workdir)
        .map_err(|e| bad(e.to_string()))?;
    apply_env(&mut spec.process.env, &strings(&body["Env"], "Env")?);
    if !body["Entrypoint"].is_null() {
        // An Entrypoint in the request replaces the image's, and its Cmd too.
        let entrypoint = strings(&body["Entrypoint"], "Entrypoint")?;
        spec.process.args = entrypoint.into_iter().chain(command).collect();
        if spec.process.args.is_empty() {
            return Err(bad("no command: give an entrypoint or a command"));
        }
    }
    if let Some(user) = body["User"].as_str().filter(|u| !u.is_empty()) {
        spec.process.user = Some(user.to_string());
    }
    // Changes live in the container's upper directory until it is removed.
    spec.image = Some(ImageRoot {
        store: store.root.clone(),
        manifest,
        keep: true,
    });

    Privilege {
        cap_add: &strings(&host["CapAdd"], "CapAdd")?,
        cap_drop: &strings(&host["CapDrop"], "CapDrop")?,
        security_opt: &strings(&host["SecurityOpt"], "SecurityOpt")?,
        ..Privilege::default()
    }
    .apply(&mut spec)
    .map_err(|e| bad(e.to_string()))?;
    spec.limits = Some(limits(host)?);
    spec.network = network(host)?;

    // `-t`: a terminal, which programs learn to drive from TERM (Docker's).
    if body["Tty"].as_bool() == Some(true) {
        spec.terminal = true;
        if !spec.process.env.iter().any(|e| e.starts_with("TERM=")) {
            set_env(&mut spec.process.env, "TERM=xterm".into());
        }
    }
    // Docker's default host name is the short id.
    let hostname = body["Hostname"]
        .as_str()
        .filter(|h| !h.is_empty())
        .map_or_else(|| id[..12.min(id.len())].to_string(), String::from);
    set_env(&mut spec.process.env, format!("HOSTNAME={hostname}"));
    spec.hostname = Some(hostname);
    spec.validate().map_err(|e| bad(e.to_string()))?;
    Ok(spec)
}
// ANCHOR_END: create_spec

// ANCHOR: apply_env
/// The request's `Env` over the image's, in order: `KEY=VALUE` sets KEY;
/// a bare `KEY` unsets it (Docker's daemon reads it so). The daemon never
/// fills a value from its own environment: that would hand its secrets to
/// any client's container. A client that means "my value" resolves it
/// itself, as `docker run -e KEY` and `step11 run -e KEY` do.
pub fn apply_env(env: &mut Vec<String>, request: &[String]) {
    for entry in request {
        if entry.contains('=') {
            set_env(env, entry.clone());
        } else {
            env.retain(|e| e.split('=').next() != Some(entry.as_str()));
        }
    }
}
// ANCHOR_END: apply_env

/// The request's `Image`, which must be there.
pub fn image_name(body: &Value) -> Result<&str, EngineError> {
    body["Image"]
        .as_str()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| bad("Image is missing"))
}

/// The store's name for `image`: as given if the store has it, else the
/// reference's normal form (`busybox` → `busybox:latest`).
fn local_name(store: &Store, image: &str) -> Result<String, EngineError> {
    if store.resolve(image).is_ok() {
        return Ok(image.to_string());
    }
    let reference =
        crate::registry::reference::Reference::parse(image).map_err(|e| bad(e.to_string()))?;
    let name = reference.store_name();
    if store.resolve(&name).is_err() {
        return Err(EngineError::NotFound(format!("No such image: {image}")));
    }
    Ok(name)
}

/// `HostConfig`'s resource fields → [`Limits`] (every engine container gets
/// a cgroup, limited or not, so its usage can be read).
fn limits(host: &Value) -> Result<Limits, EngineError> {
    let positive = |v: Option<u64>| v.filter(|n| *n > 0);
    let limits = Limits {
        memory: positive(number(&host["Memory"], "Memory")?),
        memory_swap: number::<i64>(&host["MemorySwap"], "MemorySwap")?.filter(|n| *n != 0),
        cpus: positive(number(&host["NanoCpus"], "NanoCpus")?).map(|n| n as f64 / 1e9),
        cpu_shares: positive(number(&host["CpuShares"], "CpuShares")?),
        pids_limit: number::<i64>(&host["PidsLimit"], "PidsLimit")?.filter(|n| *n > 0),
        blkio_weight: number::<u16>(&host["BlkioWeight"], "BlkioWeight")?.filter(|n| *n > 0),
        cpuset_cpus: host["CpusetCpus"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(String::from),
        ..Limits::default()
    };
    limits.validate().map_err(|e| bad(e.to_string()))?;
    Ok(limits)
}

/// `NetworkMode` and `PortBindings` → the network, through the same
/// `-p` parser and plan the step binaries use.
fn network(host: &Value) -> Result<Option<NetworkSpec>, EngineError> {
    let mode = match host["NetworkMode"].as_str() {
        Some("" | "default" | "bridge") | None => "bridge",
        Some(other) => other,
    };
    let mut publish = Vec::new();
    // "80/tcp": [{"HostIp": "", "HostPort": "8080"}]  →  8080:80/tcp
    for (port, bindings) in host["PortBindings"].as_object().into_iter().flatten() {
        for b in bindings.as_array().into_iter().flatten() {
            let host_port = b["HostPort"].as_str().unwrap_or("");
            let text = match b["HostIp"].as_str().filter(|i| !i.is_empty()) {
                Some(ip) => format!("{ip}:{host_port}:{port}"),
                None => format!("{host_port}:{port}"),
            };
            publish.push(text.parse::<Publish>().map_err(bad)?);
        }
    }
    NetworkSpec::plan(
        mode,
        publish,
        None,
        crate::net::DEFAULT_BRIDGE,
        crate::net::DEFAULT_SUBNET,
    )
    .map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_key_unsets_what_the_image_set() {
        let mut env = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        apply_env(
            &mut env,
            &[
                "A".into(),
                "HOME".into(),
                "B=2".into(),
                "PATH=/usr/bin".into(),
            ],
        );
        assert_eq!(env, ["B=2", "PATH=/usr/bin"]);
    }
}
