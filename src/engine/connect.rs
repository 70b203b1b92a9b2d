//! `docker network connect` and `disconnect`: a container joins or leaves
//! a network after it was made, also while it runs.
//!
//! A container starts on one network, `eth0`: its default route, its
//! published ports and its `/etc/hosts` are that network's. Joining
//! another gives it one more interface, `eth1` (then `eth2`…): one more
//! lease, one more veth pair into the *same* network namespace, and the
//! names of the new network's containers in its hosts file (and its own
//! names in theirs). Nothing of the container restarts.
//!
//! Who does what, so that one owner holds each job:
//!
//! 1. The daemon changes the *plan*: the container's bundle lists the
//!    networks it joined (`org.caixa.network.joined`), and its record
//!    names them for `ps`, `inspect` and `network rm`.
//! 2. A running container's shim, asked `networks`, reads the bundle again
//!    and makes the running container match it
//!    ([`crate::parent::Running::rejoin`]): the shim holds the container's
//!    network leases, as it holds everything else the container uses.
//! 3. Every later start (a restart, `docker start`) reads the same bundle:
//!    the container comes back on every network it joined.
//!
//! If the shim cannot do it (no address left, the bridge refused), the
//! plan is put back as it was, so the bundle never lists a network the
//! container is not on.
//!
//! caixa keeps a container on the network it was made on: that network
//! owns its default route, its published ports and its hosts file (Docker
//! would move them; caixa asks you to make the container again).

use serde_json::Value;

use super::EngineError;
use super::events::{self, Event};
use super::networks::{Network, Networks};
use super::state::{Containers, Record, Status};
use crate::net::NetworkSpec;

/// What a connect or disconnect works on, found and locked: the
/// networks' lock (no `network rm` slips in before the record names the
/// network), the container's lock (no start or stop half-way through).
struct Target {
    network: Network,
    containers: Containers,
    record: Record,
    config: oci_spec::runtime::Spec,
    spec: crate::Spec,
    _networks: nix::fcntl::Flock<std::fs::File>,
    container_lock: super::state::Locked,
}

impl Target {
    fn find(root: &std::path::Path, key: &str, body: &Value) -> Result<Target, EngineError> {
        let container = body["Container"]
            .as_str()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| EngineError::BadRequest("the body needs a Container".into()))?;
        let networks = Networks::open(root)?;
        let locked = networks.lock()?;
        let network = match key {
            "bridge" => super::networks::default_bridge(),
            "none" | "host" => {
                return Err(EngineError::BadRequest(format!(
                    "a container cannot join network {key}: it is not a network of its own"
                )));
            }
            _ => networks.find(key)?,
        };
        let containers = Containers::open(root)?;
        // The record as it is under the lock: one read before it may have
        // been changed since (a rename, another connect), and the plan
        // written back would undo that change.
        let found = containers.find(container)?;
        let (container_lock, record) = containers.lock_record(&found.id)?;
        let dir = containers.dir(&record.id);
        let config = crate::bundle::read(&dir)?;
        let spec = crate::bundle::from_oci(&config, &dir, &record.id)?;
        Ok(Target {
            network,
            containers,
            record,
            config,
            spec,
            _networks: locked,
            container_lock,
        })
    }
}

/// `POST /networks/{id}/connect`, body `{"Container": ID, "EndpointConfig":
/// {"Aliases": [...]}}`.
pub fn connect(root: &std::path::Path, key: &str, body: &Value) -> Result<(), EngineError> {
    let endpoint = &body["EndpointConfig"];
    if endpoint["IPAMConfig"].as_object().is_some_and(|c| {
        c.values()
            .any(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    }) || endpoint["IPAddress"]
        .as_str()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(EngineError::BadRequest(
            "caixa gives addresses from the network's leases: drop --ip".into(),
        ));
    }
    let mut t = Target::find(root, key, body)?;
    let (network, record) = (&t.network, &t.record);
    let Some(first) = &t.spec.network else {
        // pasta's namespace has one tap whose address is the host's: no
        // bridge could be wired beside it, and a rootless daemon makes
        // no bridge anyway (podman refuses `network connect` there too).
        let on = if t.spec.user_network.is_some() {
            "pasta, a user-mode network: a bridge network cannot be added beside it"
        } else {
            "network none: it has no network to join others beside"
        };
        return Err(EngineError::BadRequest(format!(
            "container {} is on {on}; make it on a network",
            record.name
        )));
    };
    let joined_already = t
        .spec
        .joined_networks
        .iter()
        .any(|j| j.bridge == network.bridge);
    if first.bridge == network.bridge || joined_already {
        return Err(EngineError::Forbidden(format!(
            "endpoint with name {} already exists in network {}",
            record.name, network.name
        )));
    }
    // The names the others reach it by: as at create, on a named network;
    // none on step 8's bridge, which resolves no names (as Docker's).
    let names = if network.name == "bridge" {
        Vec::new()
    } else {
        let aliases = endpoint["Aliases"].as_array();
        super::networks::names_on_network(&record.name, &record.id, aliases, "--alias")?
    };
    let mut joined = t.spec.joined_networks.clone();
    let interface = u8::try_from(joined.len() + 1)
        .ok()
        .filter(|i| *i <= 9)
        .ok_or_else(|| EngineError::Conflict("a container is on 10 networks at most".into()))?;
    joined.push(NetworkSpec {
        bridge: network.bridge.clone(),
        subnet: network
            .subnet
            .parse()
            .map_err(|e: String| EngineError::BadRequest(e))?,
        publish: Vec::new(),
        bandwidth: None,
        state_dir: first.state_dir.clone(),
        names,
        interface,
    });
    let mut changed = record.clone();
    changed.joined.push(network.name.clone());
    t.apply(&changed, &joined)?;
    events::record(root, &event("connect", &t.network, &changed));
    Ok(())
}

/// `POST /networks/{id}/disconnect`, body `{"Container": ID, "Force": bool}`.
pub fn disconnect(root: &std::path::Path, key: &str, body: &Value) -> Result<(), EngineError> {
    let mut t = Target::find(root, key, body)?;
    let (network, record) = (&t.network, &t.record);
    if t.spec
        .network
        .as_ref()
        .is_some_and(|n| n.bridge == network.bridge)
    {
        return Err(EngineError::Forbidden(format!(
            "container {} was made on network {}, which holds its default route, its published ports and its /etc/hosts: caixa keeps it there; remove the container and make it again on another network",
            record.name, network.name
        )));
    }
    let mut joined = t.spec.joined_networks.clone();
    let before = joined.len();
    joined.retain(|j| j.bridge != network.bridge);
    if joined.len() == before {
        return Err(EngineError::Conflict(format!(
            "container {} is not connected to network {}",
            record.name, network.name
        )));
    }
    // (The ones after it move down one interface at the next start: the
    // bundle keeps their order, and each start numbers them from it.)
    let mut changed = record.clone();
    changed.joined.retain(|n| *n != network.name);
    t.apply(&changed, &joined)?;
    events::record(root, &event("disconnect", &t.network, &changed));
    Ok(())
}

impl Target {
    // ANCHOR: apply_joined
    /// Writes the new plan (bundle, then record `new`) and, if the
    /// container runs, has its shim carry it out; puts the old plan back if
    /// the shim cannot. Under the locks `find` took.
    fn apply(&mut self, new: &Record, joined: &[NetworkSpec]) -> Result<(), EngineError> {
        let (containers, old) = (&self.containers, &self.record);
        let dir = containers.dir(&old.id);
        let before = self.config.clone();
        crate::bundle::set_joined_networks(&mut self.config, joined);
        crate::bundle::write(&dir, &self.config)?;
        let carried_out = containers
            .rewrite(&self.container_lock, new)
            .and_then(|()| match containers.state(&old.id)?.status {
                Status::Running => super::shim::rejoin(&dir),
                _ => Ok(()),
            });
        if carried_out.is_err() {
            let _ = crate::bundle::write(&dir, &before);
            let _ = containers.rewrite(&self.container_lock, old);
        }
        carried_out
    }
    // ANCHOR_END: apply_joined
}

/// Docker's event of a container joining or leaving a network.
fn event(action: &str, network: &Network, record: &Record) -> Event {
    Event::new("network", action, &network.id)
        .with("name", &network.name)
        .with("type", "bridge")
        .with("container", &record.id)
}
