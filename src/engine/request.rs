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
//! asks for a tmpfs must not believe their secrets stay in memory.

use serde_json::Value;

use super::EngineError;
use crate::cgroup::Limits;
use crate::image::overlay::ImageRoot;
use crate::image::store::Store;
use crate::net::{NetworkSpec, Publish};
use crate::privilege::Privilege;
use crate::rootfs::binds::{
    VolumeArg, VolumeArgError, VolumeSource, check_target, check_volume_name,
};
use crate::rootfs::tmpfs::Tmpfs;
use crate::spec::{Spec, set_env};

fn bad(why: impl Into<String>) -> EngineError {
    EngineError::BadRequest(why.into())
}

/// A JSON field that must be a list of strings (or absent: empty).
pub(crate) fn strings(v: &Value, field: &str) -> Result<Vec<String>, EngineError> {
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
    if host["Privileged"].as_bool() == Some(true) {
        return Err(bad(
            "--privileged is not supported: add the capabilities it needs with --cap-add",
        ));
    }
    Ok(())
}

/// What a create request asks for: the spec, and the volumes the daemon
/// must resolve (make, find) before the spec's binds are known.
#[derive(Debug)]
pub struct Plan {
    /// The container, without its volumes' binds yet.
    pub spec: Spec,
    /// `-v`, `--mount`, the request's and the image's anonymous volumes.
    pub volumes: Vec<VolumeArg>,
}

// ANCHOR: create_spec
/// The plan for container `id` from Docker's create `body`, with its image
/// from `store`: what `docker run` would run.
pub fn to_spec(
    store: &Store,
    id: &str,
    body: &Value,
    joining: Option<&super::networks::Joining>,
) -> Result<Plan, EngineError> {
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
    network(host, joining, &mut spec)?;
    spec.process.rlimits = ulimits(host)?;
    spec.tmpfs = tmpfs(host)?;
    spec.readonly_root = host["ReadonlyRootfs"].as_bool() == Some(true);
    spec.init = host["Init"].as_bool() == Some(true);

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
    let image_volumes = config.config().as_ref().and_then(|c| c.volumes().clone());
    let volumes = volumes(body, image_volumes.as_deref().unwrap_or_default())?;
    // A volume and a tmpfs on one path: one would hide the other.
    if let Some(t) = spec
        .tmpfs
        .iter()
        .find(|t| volumes.iter().any(|v| v.target == t.target))
    {
        return Err(bad(format!(
            "duplicate mount point: {} is both a volume and a tmpfs",
            t.target.display()
        )));
    }
    Ok(Plan { spec, volumes })
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
    let reference = crate::registry::reference::Reference::parse(image);
    if let Some(name) = reference.as_ref().ok().map(|r| r.store_name())
        && store.resolve(&name).is_ok()
    {
        return Ok(name);
    }
    // An id (`run 3f2a…`, what `build -q` prints): one of its names.
    if let Some((name, _)) = super::images::by_id(store, image)? {
        return Ok(name);
    }
    reference.map_err(|e| bad(e.to_string()))?;
    Err(EngineError::NotFound(format!("No such image: {image}")))
}

// ANCHOR: request_volumes
/// The volumes a create asks for, in Docker's three spellings: `Binds`
/// (`-v SOURCE:TARGET[:ro]`), `Mounts` (`--mount type=volume|bind,…`) and
/// `Volumes` (`-v /path`: anonymous), then the image's `VOLUME`s that no
/// other mount covers (anonymous, as Docker makes them). One target, one
/// mount: a second is refused, as Docker refuses it.
fn volumes(body: &Value, image_volumes: &[String]) -> Result<Vec<VolumeArg>, EngineError> {
    let host = &body["HostConfig"];
    let mut all: Vec<VolumeArg> = Vec::new();
    for text in strings(&host["Binds"], "HostConfig.Binds")? {
        all.push(
            text.parse()
                .map_err(|e: VolumeArgError| bad(e.to_string()))?,
        );
    }
    for (i, m) in host["Mounts"].as_array().into_iter().flatten().enumerate() {
        if m["Type"].as_str() == Some("tmpfs") {
            continue; // see `tmpfs`
        }
        all.push(mount(m).map_err(|why| bad(format!("HostConfig.Mounts[{i}]: {why}")))?);
    }
    let anonymous = body["Volumes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(target, _)| target.as_str())
        .chain(image_volumes.iter().map(String::as_str));
    for target in anonymous {
        let target = check_target(target).map_err(|e| bad(e.to_string()))?;
        if !all.iter().any(|v| v.target == target) {
            all.push(VolumeArg {
                source: VolumeSource::Anonymous,
                target,
                read_only: false,
            });
        }
    }
    for (i, v) in all.iter().enumerate() {
        if all[..i].iter().any(|w| w.target == v.target) {
            return Err(bad(format!(
                "duplicate mount point: {}: mount one volume there",
                v.target.display()
            )));
        }
    }
    Ok(all)
}
// ANCHOR_END: request_volumes

/// One `HostConfig.Mounts` entry: `{"Type": "volume"|"bind", "Source",
/// "Target", "ReadOnly"}`; options caixa does not honour are refused.
fn mount(m: &Value) -> Result<VolumeArg, String> {
    let target = m["Target"].as_str().unwrap_or_default();
    let target = check_target(target).map_err(|e| e.to_string())?;
    let source = m["Source"].as_str().unwrap_or_default();
    let source = match m["Type"].as_str().unwrap_or_default() {
        "bind" if source.starts_with('/') => VolumeSource::Host(source.into()),
        "bind" => return Err(format!("a bind needs an absolute Source, not {source:?}")),
        "volume" if source.is_empty() => VolumeSource::Anonymous,
        "volume" => {
            check_volume_name(source).map_err(|e| e.to_string())?;
            VolumeSource::Named(source.to_string())
        }
        other => {
            return Err(format!(
                "type {other:?} is not supported by caixa's engine: use type=volume or type=bind"
            ));
        }
    };
    let propagation = m["BindOptions"]["Propagation"].as_str().unwrap_or_default();
    if !matches!(propagation, "" | "rprivate" | "private") {
        return Err(format!(
            "bind propagation {propagation:?} is not supported: caixa's binds are rprivate"
        ));
    }
    if let Some(driver) = m["VolumeOptions"]["DriverConfig"]["Name"]
        .as_str()
        .filter(|d| !d.is_empty() && *d != "local")
    {
        return Err(format!(
            "volume driver {driver:?}: caixa has only \"local\""
        ));
    }
    Ok(VolumeArg {
        source,
        target,
        read_only: m["ReadOnly"].as_bool().unwrap_or(false),
    })
}

// ANCHOR: request_tmpfs
/// `HostConfig.Tmpfs` (`--tmpfs /run:size=64m`: path → options) and the
/// `tmpfs` entries of `HostConfig.Mounts` (`--mount type=tmpfs,…`), in
/// one form: each checked as the step binaries check `--tmpfs`.
fn tmpfs(host: &Value) -> Result<Vec<Tmpfs>, EngineError> {
    let mut all: Vec<Tmpfs> = Vec::new();
    for (target, options) in host["Tmpfs"].as_object().into_iter().flatten() {
        let options = options
            .as_str()
            .ok_or_else(|| bad(format!("HostConfig.Tmpfs[{target:?}] must be a string")))?;
        let words: Vec<String> = options
            .split(',')
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect();
        all.push(Tmpfs::new(target, &words).map_err(|why| bad(format!("--tmpfs {why}")))?);
    }
    for m in host["Mounts"].as_array().into_iter().flatten() {
        if m["Type"].as_str() != Some("tmpfs") {
            continue;
        }
        let mut words = Vec::new();
        if m["ReadOnly"].as_bool() == Some(true) {
            words.push("ro".to_string());
        }
        if let Some(size) = m["TmpfsOptions"]["SizeBytes"].as_u64().filter(|n| *n > 0) {
            words.push(format!("size={size}"));
        }
        if let Some(mode) = m["TmpfsOptions"]["Mode"].as_u64().filter(|n| *n > 0) {
            words.push(format!("mode={mode:o}"));
        }
        let target = m["Target"].as_str().unwrap_or_default();
        all.push(
            Tmpfs::new(target, &words).map_err(|why| bad(format!("--mount type=tmpfs: {why}")))?,
        );
    }
    for (i, t) in all.iter().enumerate() {
        if all[..i].iter().any(|u| u.target == t.target) {
            return Err(bad(format!(
                "duplicate mount point: {}: mount one tmpfs there",
                t.target.display()
            )));
        }
    }
    Ok(all)
}
// ANCHOR_END: request_tmpfs

/// `HostConfig.Ulimits` (`--ulimit nofile=1024:2048`): `[{"Name", "Soft",
/// "Hard"}]`, each name once.
fn ulimits(host: &Value) -> Result<Vec<crate::rlimit::Rlimit>, EngineError> {
    let mut all: Vec<crate::rlimit::Rlimit> = Vec::new();
    for u in host["Ulimits"].as_array().into_iter().flatten() {
        let name = u["Name"].as_str().unwrap_or_default();
        // -1 (Docker's "unlimited") is RLIM_INFINITY.
        let value = |key: &str| match &u[key] {
            Value::Number(n) if n.as_i64() == Some(-1) => Ok(u64::MAX),
            Value::Number(n) => n
                .as_u64()
                .ok_or_else(|| bad(format!("ulimit {name}: {key} {n} is out of range"))),
            _ => Err(bad(format!("ulimit {name}: {key} must be a number"))),
        };
        let limit = crate::rlimit::by_name(name, value("Soft")?, value("Hard")?).map_err(bad)?;
        if all.iter().any(|l| l.resource == limit.resource) {
            return Err(bad(format!("ulimit {name} is given twice")));
        }
        all.push(limit);
    }
    Ok(all)
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
        device_read_bps: device_rates(host, "BlkioDeviceReadBps", false)?,
        device_write_bps: device_rates(host, "BlkioDeviceWriteBps", false)?,
        device_read_iops: device_rates(host, "BlkioDeviceReadIOps", true)?,
        device_write_iops: device_rates(host, "BlkioDeviceWriteIOps", true)?,
        ..Limits::default()
    };
    limits.validate().map_err(|e| bad(e.to_string()))?;
    limits.check_here().map_err(|e| bad(e.to_string()))?;
    Ok(limits)
}

/// `--device-write-bps /dev/vda:1mb` as the API carries it:
/// `[{"Path": "/dev/vda", "Rate": 1048576}]`; the path must be a block
/// device of this host (its numbers are read with stat(2)).
fn device_rates(
    host: &Value,
    field: &str,
    iops: bool,
) -> Result<Vec<crate::cgroup::DeviceRate>, EngineError> {
    let mut all = Vec::new();
    for d in host[field].as_array().into_iter().flatten() {
        let (Some(path), Some(rate)) = (d["Path"].as_str(), d["Rate"].as_u64()) else {
            return Err(bad(format!(
                "{field}: each entry needs a Path and a Rate (a number)"
            )));
        };
        let text = format!("{path}:{rate}");
        all.push(crate::cgroup::parse_device_rate(&text, iops).map_err(|e| bad(e.to_string()))?);
    }
    Ok(all)
}

/// `NetworkMode` and `PortBindings` → the network, through the same
/// `-p` parser and plan the step binaries use: step 8's bridge, none, a
/// user-mode network (pasta), or the named network the daemon found
/// (`joining`), with the names the container answers to there. The
/// default is the bridge, or pasta for a rootless daemon, which may not
/// make a bridge (Podman's default too).
fn network(
    host: &Value,
    joining: Option<&super::networks::Joining>,
    spec: &mut crate::spec::Spec,
) -> Result<(), EngineError> {
    let mode = match host["NetworkMode"].as_str() {
        Some("" | "default") | None if crate::rootless::active() => "pasta",
        Some("" | "default" | "bridge") | None => "bridge",
        Some("pasta") if crate::rootless::active() => "pasta",
        Some("pasta") => return Err(bad(crate::net::NetError::PastaAsRoot.to_string())),
        Some("host") => {
            return Err(bad(
                "--network host is not supported: a caixa container always has its own network namespace; publish ports with -p",
            ));
        }
        Some("none") => "none",
        Some(_) if joining.is_some() => "bridge",
        Some(other) => return Err(EngineError::NotFound(format!("network {other} not found"))),
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
    if mode == "pasta" {
        let planned = crate::net::usermode::UserModeNetwork::plan(publish, None);
        spec.user_network = Some(planned.map_err(|e| bad(e.to_string()))?);
        return Ok(());
    }
    let (bridge, subnet) = match joining {
        Some(j) => (j.network.bridge.as_str(), j.network.subnet.as_str()),
        None => (crate::net::DEFAULT_BRIDGE, crate::net::DEFAULT_SUBNET),
    };
    let mut planned =
        NetworkSpec::plan(mode, publish, None, bridge, subnet).map_err(|e| bad(e.to_string()))?;
    if let (Some(net), Some(j)) = (&mut planned, joining) {
        net.names = j.names.clone();
    }
    spec.network = planned;
    Ok(())
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
