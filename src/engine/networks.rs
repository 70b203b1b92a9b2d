//! Networks of your own (`docker network create app`): each its own
//! bridge and subnet, isolated from the others, with its containers
//! reaching each other by name.
//!
//! Step 8 built one network: a bridge (`caixa0`), a veth per container,
//! an address from the leases, NAT. A named network is the same machinery
//! with another bridge (`caixa-` and 8 digits of its id) and another subnet
//! (`10.90.N.0/24`, the first free one, unless `--subnet` says). The
//! bridge is made by its first container and removed with its last, as
//! step 8's is; the network itself is a record in `ROOT/networks/`.
//!
//! **Isolation**: every caixa bridge's rules drop traffic from it to
//! another caixa bridge (`net::bridge::ISOLATED`), so two networks cannot
//! reach each other, as in Docker.
//!
//! **Names**: Docker's containers on a user network ask an embedded DNS
//! server in the daemon (`127.0.0.11`) for each other's addresses. caixa
//! keeps their `/etc/hosts` instead: each container's lease carries its
//! names (its own, its short id, its `--network-alias`es), and whenever a
//! container joins or leaves, the hosts file of every container on the
//! network is rewritten in place (`Leases::refresh_hosts`). The reason is
//! caixa's shape: its containers outlive the daemon, and a resolver inside
//! the daemon would stop answering while the daemon is down; files need
//! no process at all. The cost: a program that read the file once and
//! keeps it (few do) does not see later containers.
//!
//! ```text
//!   network "app" ── bridge caixa-1a2b3c4d, 10.90.0.0/24
//!      web  10.90.0.2  ── /etc/hosts: 10.90.0.2 web 1a2b…   10.90.0.3 api …
//!      api  10.90.0.3  ── /etc/hosts: (the same list)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::EngineError;
use super::state::{Containers, Record, create_dirs, io, read_json, write_json};
use crate::net::Subnet;

/// The names Docker gives its own networks: not for users to take.
const RESERVED: [&str; 4] = ["bridge", "host", "none", "default"];

/// One network, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Network {
    /// Its name (`docker network create NAME`).
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// Its host bridge, `caixa-` and 8 digits of the id.
    pub bridge: String,
    /// Its subnet; the gateway is the first address.
    pub subnet: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// `--label KEY=VALUE`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The networks of one engine root: `ROOT/networks/NAME.json`.
#[derive(Debug, Clone)]
pub struct Networks {
    dir: PathBuf,
}

impl Networks {
    /// The networks under `root`.
    pub fn open(root: &Path) -> Result<Networks, EngineError> {
        let dir = root.join("networks");
        create_dirs(&dir, 0o700)?;
        Ok(Networks { dir })
    }

    /// The networks' lock: a name and a subnet are chosen under it, so
    /// two creates never take the same.
    pub(super) fn lock(&self) -> Result<Flock<std::fs::File>, EngineError> {
        let path = self.dir.join(".lock");
        let file = std::fs::File::create(&path).map_err(io(&path))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| EngineError::Sys {
            call: "flock(networks/.lock)",
            source: errno,
        })
    }

    /// Every network, by name.
    pub fn list(&self) -> Result<Vec<Network>, EngineError> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                all.push(read_json::<Network>(&path)?);
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// The network named `key`, or whose id starts with it.
    pub fn find(&self, key: &str) -> Result<Network, EngineError> {
        let missing = || EngineError::NotFound(format!("network {key} not found"));
        if key.is_empty() {
            return Err(missing());
        }
        let all = self.list()?;
        if let Some(n) = all.iter().find(|n| n.name == key) {
            return Ok(n.clone());
        }
        let mut by_id = all.into_iter().filter(|n| n.id.starts_with(key));
        match (by_id.next(), by_id.next()) {
            (Some(n), None) => Ok(n),
            _ => Err(missing()),
        }
    }

    // ANCHOR: network_create
    /// Records a new network: checks the name, picks (or checks) a subnet
    /// that overlaps no other caixa network, and names its bridge.
    pub fn create(
        &self,
        name: &str,
        subnet: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Network, EngineError> {
        if RESERVED.contains(&name) {
            return Err(EngineError::Conflict(format!(
                "{name} is a pre-defined network and cannot be created"
            )));
        }
        if !crate::net::is_host_name(name) {
            return Err(EngineError::BadRequest(format!(
                "invalid network name {name:?}: use 1-63 letters, digits, '_', '.' or '-', starting with a letter or a digit"
            )));
        }
        let _locked = self.lock()?;
        let all = self.list()?;
        if all.iter().any(|n| n.name == name) {
            return Err(EngineError::Conflict(format!(
                "network with name {name} already exists"
            )));
        }
        let default: Subnet = crate::net::DEFAULT_SUBNET
            .parse()
            .map_err(EngineError::BadRequest)?;
        let taken: Vec<Subnet> = all
            .iter()
            .filter_map(|n| n.subnet.parse().ok())
            .chain([default])
            .collect();
        let subnet = match subnet {
            Some(text) => {
                let wanted: Subnet = text.parse().map_err(|e| {
                    EngineError::BadRequest(format!("invalid subnet {text:?}: {e}"))
                })?;
                if wanted.size() < 8 {
                    return Err(EngineError::BadRequest(format!(
                        "subnet {wanted} is too small: use a /29 or larger"
                    )));
                }
                if let Some(range) = wanted.special() {
                    return Err(EngineError::BadRequest(format!(
                        "subnet {wanted} is in the {range} range, where no bridge can give addresses: choose a private range such as 10.91.0.0/24"
                    )));
                }
                if let Some(other) = taken.iter().find(|t| t.overlaps(wanted)) {
                    return Err(EngineError::Conflict(format!(
                        "subnet {wanted} overlaps {other}, already in use by caixa: choose another --subnet"
                    )));
                }
                wanted
            }
            None => (0..=255)
                .filter_map(|n| format!("10.90.{n}.0/24").parse::<Subnet>().ok())
                .find(|s| !taken.iter().any(|t| t.overlaps(*s)))
                .ok_or_else(|| {
                    EngineError::Conflict(
                        "no free subnet left in 10.90.0.0/16: give --subnet".into(),
                    )
                })?,
        };
        let id = crate::ids::random_hex(32);
        let network = Network {
            name: name.to_string(),
            bridge: format!("caixa-{}", &id[..8]),
            id,
            subnet: subnet.to_string(),
            created: super::state::now(),
            labels,
        };
        write_json(&self.dir.join(format!("{name}.json")), &network)?;
        self.event("create", &network);
        Ok(network)
    }
    // ANCHOR_END: network_create

    /// Forgets network `key`, unless a container is on it (409).
    pub fn remove(&self, key: &str, containers: &Containers) -> Result<Network, EngineError> {
        // The lock first: a create that joins this network holds it until
        // its record names the network, so it is seen below.
        let _locked = self.lock()?;
        let network = self.find(key)?;
        if let Some((record, _)) = containers
            .list()?
            .into_iter()
            .find(|(r, _)| r.network == network.name || r.joined.contains(&network.name))
        {
            return Err(EngineError::Conflict(format!(
                "network {} has container {} on it: remove the container first",
                network.name, record.name
            )));
        }
        // Its bridge goes with it (no container holds an address on it
        // now); a failure keeps the network, so `rm` can be tried again.
        crate::net::bridge::remove_kept(&bridge_spec(&network)?, &crate::trace::Trace::new(false))
            .map_err(|e| {
                EngineError::Conflict(format!(
                    "network {}: cannot remove its bridge {}: {e}",
                    network.name, network.bridge
                ))
            })?;
        let path = self.dir.join(format!("{}.json", network.name));
        std::fs::remove_file(&path).map_err(io(&path))?;
        self.event("destroy", &network);
        Ok(network)
    }

    /// Records a network's event in the engine's log ([`super::events`]).
    fn event(&self, action: &str, network: &Network) {
        let event = super::events::Event::new("network", action, &network.id)
            .with("name", &network.name)
            .with("type", "bridge");
        if let Some(root) = self.dir.parent() {
            super::events::record(root, &event);
        }
    }
}

/// The addresses on `bridge` now, by container id, from its leases.
fn addresses(bridge: &str) -> BTreeMap<String, String> {
    crate::net::ipam::addresses(&crate::net::state_dir(), bridge)
        .into_iter()
        .map(|(id, address)| (id, address.to_string()))
        .collect()
}

/// Docker's shape of a network, with the containers on it now.
fn to_json(n: &Network, containers: &Containers) -> Value {
    let subnet: Option<Subnet> = n.subnet.parse().ok();
    let on_it = addresses(&n.bridge);
    let mut members = serde_json::Map::new();
    for (record, _) in containers.list().unwrap_or_default() {
        if let Some(address) = on_it.get(&record.id) {
            let prefix = subnet.map_or(24, |s| s.prefix);
            members.insert(
                record.id.clone(),
                json!({ "Name": record.name, "IPv4Address": format!("{address}/{prefix}") }),
            );
        }
    }
    json!({
        "Name": n.name, "Id": n.id, "Created": super::daemon::rfc3339(n.created),
        "Scope": "local", "Driver": "bridge", "EnableIPv6": false, "Internal": false,
        "Attachable": false, "Ingress": false,
        "IPAM": { "Driver": "default", "Options": {}, "Config": [{
            "Subnet": n.subnet,
            "Gateway": subnet.map(|s| s.gateway().to_string()).unwrap_or_default(),
        }]},
        "Containers": members,
        "Options": { "com.docker.network.bridge.name": n.bridge },
        "Labels": n.labels,
    })
}

/// The network plan of `network`'s bridge, for what only its bridge
/// matters to (bringing it up, removing it).
fn bridge_spec(network: &Network) -> Result<crate::net::NetworkSpec, EngineError> {
    let subnet = network
        .subnet
        .parse()
        .map_err(|e: String| EngineError::BadRequest(format!("network {}: {e}", network.name)))?;
    Ok(crate::net::NetworkSpec::of_bridge(
        &network.bridge,
        subnet,
        &crate::net::state_dir(),
    ))
}

// ANCHOR: keep_bridges_up
/// Brings up the bridge of every network `record` is on, kept as the
/// network's (see `net::bridge::keep_up`): the bridge and its shared rules
/// are made once, not with each container, and the end of a network's
/// last container does not remove them. A rootless daemon has no bridge.
pub fn keep_bridges_up(root: &Path, record: &Record) -> Result<(), EngineError> {
    if crate::rootless::active() {
        return Ok(());
    }
    let networks = Networks::open(root)?;
    for name in std::iter::once(&record.network).chain(&record.joined) {
        let network = match name.as_str() {
            "" | "default" | "bridge" => default_bridge(),
            "none" | "host" | "pasta" => continue,
            other => networks.find(other)?,
        };
        let spec = bridge_spec(&network)?;
        crate::net::bridge::keep_up(&spec, &crate::trace::Trace::new(false)).map_err(|e| {
            EngineError::StartFailed {
                name: record.name.clone(),
                code: 125,
                reason: e.to_string(),
            }
        })?;
    }
    Ok(())
}
// ANCHOR_END: keep_bridges_up

/// Step 8's network, as Docker shows its default `bridge`.
pub(super) fn default_bridge() -> Network {
    Network {
        name: "bridge".into(),
        id: "0".repeat(64),
        bridge: crate::net::DEFAULT_BRIDGE.into(),
        subnet: crate::net::DEFAULT_SUBNET.into(),
        created: 0,
        labels: BTreeMap::new(),
    }
}

/// `GET /networks`: the default bridge, then every network of the root.
pub fn list(root: &Path) -> Result<Value, EngineError> {
    let containers = Containers::open(root)?;
    let mut all = vec![to_json(&default_bridge(), &containers)];
    for n in Networks::open(root)?.list()? {
        all.push(to_json(&n, &containers));
    }
    Ok(Value::Array(all))
}

/// `GET /networks/ID`.
pub fn inspect(root: &Path, key: &str) -> Result<Value, EngineError> {
    let containers = Containers::open(root)?;
    if key == "bridge" {
        return Ok(to_json(&default_bridge(), &containers));
    }
    Ok(to_json(&Networks::open(root)?.find(key)?, &containers))
}

/// `POST /networks/create`: `{"Name", "Driver", "IPAM": {"Config":
/// [{"Subnet"}]}, "Labels"}`; only the bridge driver, IPv4, not internal.
pub fn create(root: &Path, body: &Value) -> Result<Value, EngineError> {
    let bad = |why: &str| EngineError::BadRequest(why.to_string());
    let name = body["Name"]
        .as_str()
        .ok_or_else(|| bad("a network needs a Name"))?;
    match body["Driver"].as_str() {
        None | Some("" | "bridge") => {}
        Some(other) => {
            return Err(bad(&format!(
                "network driver {other:?} is not supported: caixa's networks are bridges"
            )));
        }
    }
    if body["Internal"].as_bool() == Some(true) || body["EnableIPv6"].as_bool() == Some(true) {
        return Err(bad(
            "--internal and --ipv6 are not supported by caixa's networks",
        ));
    }
    let configs = body["IPAM"]["Config"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if configs.len() > 1 {
        return Err(bad("one subnet per network: give --subnet once"));
    }
    let subnet = configs.first().and_then(|c| c["Subnet"].as_str());
    // What caixa's bridges cannot give is refused, never ignored: a
    // network made without it would not be the one asked for.
    if let Some(config) = configs.first() {
        unsupported(config, &["Subnet", "Gateway"], "in IPAM.Config")?;
        if let (Some(gateway), Some(text)) = (config["Gateway"].as_str(), subnet)
            && !gateway.is_empty()
            && let Ok(net) = text.parse::<crate::net::subnet::Subnet>()
            && gateway != net.gateway().to_string()
        {
            return Err(bad(&format!(
                "gateway {gateway}: a caixa network's gateway is the first address of its subnet, {}",
                net.gateway()
            )));
        }
        if subnet.is_none() && config["Gateway"].as_str().is_some_and(|g| !g.is_empty()) {
            return Err(bad("a gateway needs its --subnet"));
        }
    }
    if body["Options"].as_object().is_some_and(|o| !o.is_empty()) {
        return Err(bad(
            "network options (-o) are not supported by caixa's networks: a bridge of its own name and the default MTU",
        ));
    }
    let mut labels = BTreeMap::new();
    for (k, v) in body["Labels"].as_object().into_iter().flatten() {
        let v = v
            .as_str()
            .ok_or_else(|| bad(&format!("label {k:?} must be a string")))?;
        labels.insert(k.clone(), v.to_string());
    }
    let network = Networks::open(root)?.create(name, subnet, labels)?;
    Ok(json!({ "Id": network.id, "Warning": "" }))
}

/// Refuses a field of `object` that is set (not `null`, `""`, `{}` or
/// `[]`) and not among `known`: `where_` says where, in the one line.
fn unsupported(object: &Value, known: &[&str], where_: &str) -> Result<(), EngineError> {
    let set = |v: &Value| match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    };
    match object
        .as_object()
        .into_iter()
        .flatten()
        .find(|(k, v)| !known.contains(&k.as_str()) && set(v))
    {
        Some((key, _)) => Err(EngineError::BadRequest(format!(
            "{key} {where_} is not supported by caixa's networks: give --subnet alone (its gateway is its first address)"
        ))),
        None => Ok(()),
    }
}

/// `DELETE /networks/ID`.
pub fn remove(root: &Path, key: &str) -> Result<(), EngineError> {
    if RESERVED.contains(&key) {
        return Err(EngineError::Conflict(format!(
            "{key} is a pre-defined network and cannot be removed"
        )));
    }
    Networks::open(root)?
        .remove(key, &Containers::open(root)?)
        .map(drop)
}

/// `POST /networks/prune`: every network no container is on.
pub fn prune(root: &Path) -> Result<Value, EngineError> {
    let networks = Networks::open(root)?;
    let containers = Containers::open(root)?;
    let mut gone = Vec::new();
    for n in networks.list()? {
        if networks.remove(&n.name, &containers).is_ok() {
            gone.push(n.name);
        }
    }
    Ok(json!({ "NetworksDeleted": gone }))
}

/// A container's place on a named network: the network and the names the
/// others reach it by. It holds the networks' lock: keep it until the
/// container's record names the network, so that no `network rm` slips
/// in between.
#[derive(Debug)]
pub struct Joining {
    /// The network.
    pub network: Network,
    /// Its name, its short id, its aliases.
    pub names: Vec<String>,
    _locked: Flock<std::fs::File>,
}

/// The names a container answers to on a named network: its name, its
/// short id and its aliases (each checked: they end up in other
/// containers' hosts files; `flag` names the option in the refusal).
pub(super) fn names_on_network(
    name: &str,
    id: &str,
    aliases: Option<&Vec<Value>>,
    flag: &str,
) -> Result<Vec<String>, EngineError> {
    let mut names = vec![name.to_string(), id[..12.min(id.len())].to_string()];
    for alias in aliases.into_iter().flatten() {
        let alias = alias.as_str().unwrap_or("");
        if !crate::net::is_host_name(alias) {
            return Err(EngineError::BadRequest(format!(
                "invalid {flag} {alias:?}: use 1-63 letters, digits, '_', '.' or '-'"
            )));
        }
        names.push(alias.to_string());
    }
    names.retain(|n| crate::net::is_host_name(n));
    names.dedup();
    Ok(names)
}

/// The network a create body asks for, when it is a named one: `None` for
/// `bridge` (step 8's), `none`, `pasta`; 404 for a network that does not exist.
pub fn joining(
    root: &Path,
    body: &Value,
    name: &str,
    id: &str,
) -> Result<Option<Joining>, EngineError> {
    let mode = body["HostConfig"]["NetworkMode"].as_str().unwrap_or("");
    if matches!(mode, "" | "default" | "bridge" | "none" | "host" | "pasta") {
        return Ok(None);
    }
    let networks = Networks::open(root)?;
    let locked = networks.lock()?;
    let network = networks.find(mode)?;
    let endpoint = &body["NetworkingConfig"]["EndpointsConfig"];
    let aliases = endpoint[&network.name]["Aliases"]
        .as_array()
        .or_else(|| endpoint[mode]["Aliases"].as_array());
    let names = names_on_network(name, id, aliases, "--network-alias")?;
    Ok(Some(Joining {
        network,
        names,
        _locked: locked,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_bridge_cannot_give_is_refused_not_ignored() {
        let root = tempfile::tempdir().unwrap();
        let ipam = |config: Value| json!({ "Name": "n", "IPAM": { "Config": [config] } });
        for (body, says) in [
            (
                ipam(json!({ "Subnet": "10.5.0.0/24", "IPRange": "10.5.0.128/25" })),
                "IPRange",
            ),
            (
                ipam(json!({ "Subnet": "10.5.0.0/24", "AuxiliaryAddresses": { "a": "10.5.0.9" } })),
                "AuxiliaryAddresses",
            ),
            (
                ipam(json!({ "Subnet": "10.5.0.0/24", "Gateway": "10.5.0.254" })),
                "first address",
            ),
            (ipam(json!({ "Gateway": "10.6.0.1" })), "needs its --subnet"),
            (ipam(json!({ "Subnet": "127.0.0.0/24" })), "loopback"),
            (ipam(json!({ "Subnet": "224.0.0.0/24" })), "multicast"),
            (
                json!({ "Name": "n", "Options": { "com.docker.network.driver.mtu": "1400" } }),
                "options (-o)",
            ),
            (
                json!({ "Name": "n", "Labels": { "a": 1 } }),
                "must be a string",
            ),
        ] {
            match create(root.path(), &body) {
                Err(EngineError::BadRequest(why)) => assert!(why.contains(says), "{body}: {why}"),
                other => panic!("{body}: expected a 400 that says {says:?}, got {other:?}"),
            }
        }
        // What the Docker CLI sends for `--subnet S --gateway S.1`.
        let fine = ipam(json!({ "Subnet": "10.5.0.0/24", "Gateway": "10.5.0.1", "IPRange": "" }));
        assert!(create(root.path(), &fine).is_ok());
    }
}
