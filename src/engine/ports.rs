//! Published ports as `inspect` shows them, and as `docker port` reads
//! them: `NetworkSettings.Ports` (`{"80/tcp": [{"HostIp": "0.0.0.0",
//! "HostPort": "8080"}]}`, while it runs) and `HostConfig.PortBindings`
//! (what it was created with).
//!
//! The source is the container's bundle: `-p` travels from the create
//! request (`HostConfig.PortBindings`, see [`super::request`]) into the
//! spec's [`crate::net::NetworkSpec::publish`], and from there into the
//! bundle's annotations; the same list the shim's DNAT rules come from.

use serde_json::{Map, Value, json};

use crate::net::portmap::Publish;

// ANCHOR: ports
/// `(NetworkSettings.Ports, HostConfig.PortBindings)` for `publish`;
/// `running` says whether the ports are bound now (Docker shows none for a
/// container that does not run).
pub fn to_json(publish: &[Publish], running: bool) -> (Value, Value) {
    let mut ports = Map::new();
    let mut bindings = Map::new();
    for p in publish {
        let key = format!("{}/{}", p.container_port, p.protocol);
        let host_port = p.host_port.to_string();
        let bound = json!({
            "HostIp": p.host_ip.map_or("0.0.0.0".to_string(), |ip| ip.to_string()),
            "HostPort": host_port,
        });
        let asked = json!({
            "HostIp": p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            "HostPort": host_port,
        });
        if running {
            push(&mut ports, &key, bound);
        }
        push(&mut bindings, &key, asked);
    }
    (Value::Object(ports), Value::Object(bindings))
}
// ANCHOR_END: ports

fn push(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.get_mut(key).and_then(Value::as_array_mut) {
        Some(list) => list.push(value),
        None => {
            map.insert(key.to_string(), json!([value]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_port_reads_as_docker_writes_it() {
        let publish: Vec<Publish> = vec![
            "8080:80".parse().unwrap(),
            "127.0.0.1:53:53/udp".parse().unwrap(),
        ];
        let (ports, bindings) = to_json(&publish, true);
        assert_eq!(
            ports,
            json!({ "80/tcp": [{ "HostIp": "0.0.0.0", "HostPort": "8080" }],
                    "53/udp": [{ "HostIp": "127.0.0.1", "HostPort": "53" }] })
        );
        assert_eq!(bindings["80/tcp"][0]["HostIp"], "");
        assert_eq!(to_json(&publish, false).0, json!({}));
    }
}
