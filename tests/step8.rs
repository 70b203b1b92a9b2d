//! Step 8 grading: container networking. Every test makes its own network
//! namespace and does all its work inside it: the host's links and rules are
//! never touched.

mod support;

use std::io::Write;
use std::process::Stdio;

use support::{
    Running, TestNetns, TinyRootfs, assert_one_line_error, cgroups_left, remove_cgroups, stdout_of,
    text,
};

/// The first container of a fresh network gets the subnet's second address.
const FIRST: &str = "10.89.0.2";
const GATEWAY: &str = "10.89.0.1";

/// Sends `request` with busybox nc from the test's namespace; returns the answer.
fn nc(netns: &TestNetns, args: &[&str], request: &str) -> String {
    let mut child = netns
        .command("busybox")
        .arg("nc")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("step 8: expected busybox nc in the test's netns; most likely cause: busybox is not installed (sudo apt-get install busybox-static)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    text(&support::wait_output(child).stdout)
}

#[test]
fn the_container_reaches_the_bridge() {
    let netns = TestNetns::new();
    let out = netns.run(
        8,
        &[
            "sh",
            "-c",
            &format!(
                "ip -o -4 addr show eth0; ping -c 1 -W 3 {GATEWAY} >/dev/null && echo reached; true"
            ),
        ],
    );
    let text = stdout_of(&out);
    assert!(
        text.contains(&format!("inet {FIRST}/24")),
        "step 8: expected eth0 in the container to have {FIRST}/24, the first address of a \
         fresh network; `ip addr show eth0` printed:\n{text}\nmost likely cause: veth::create \
         does not configure the container's end from inside its netns (call \
         veth::configure_inside, or run `addr add ADDRESS/PREFIX dev eth0` through \
         nsenter --net=/proc/PID/ns/net ip -batch -)"
    );
    assert!(
        text.contains("reached"),
        "step 8: expected the container to reach the bridge {GATEWAY} with ping, it got no \
         answer:\n{text}\nmost likely cause: veth::create does not make the host end a port \
         of the bridge (`link set NAME master BRIDGE`), or leaves one end down (`link set \
         NAME up`, `link set eth0 up`)"
    );
}

#[test]
fn the_container_reaches_beyond_its_subnet_through_the_gateway() {
    let netns = TestNetns::new();
    // An address of the test's namespace outside the container's subnet:
    // only a default route via the bridge leads there.
    netns.sh("ip addr add 192.0.2.1/32 dev lo");
    let out = netns.run(
        8,
        &[
            "sh",
            "-c",
            "ping -c 1 -W 3 192.0.2.1 >/dev/null 2>&1 && echo reached; ip route",
        ],
    );
    let text = stdout_of(&out);
    assert!(
        text.contains("reached"),
        "step 8: expected the container to reach 192.0.2.1, outside its subnet, through the \
         gateway {GATEWAY}; ping got no answer. The container's routes:\n{text}\n\
         most likely cause: no default route in the container: veth::create does not give \
         the container's end `default via GATEWAY` inside its netns (configure_inside's \
         SIOCADDRT, or `route add default via GATEWAY` through nsenter)"
    );
}

#[test]
fn two_containers_reach_each_other() {
    let netns = TestNetns::new();
    let a = Running::spawn(
        netns.step(8),
        &[],
        "nc -l -p 7000 -e echo hi-from-a & sleep 0.3; echo ready; read x",
    );
    let out = netns.run(8, &["nc", "-w", "3", FIRST, "7000"]);
    let seen = stdout_of(&out);
    assert_eq!(
        seen.trim(),
        "hi-from-a",
        "step 8: expected container B to read \"hi-from-a\" from container A at {FIRST}:7000, \
         it read {:?}; most likely cause: veth::create does not make every host end a port \
         of the bridge (`link set NAME master BRIDGE`), or leaves it down\n\
         container A's stderr: {}",
        seen.trim(),
        a.stderr_text()
    );
    drop(a);
}

#[test]
fn a_published_http_port_answers_from_the_host_and_127_0_0_1() {
    let netns = TestNetns::new();
    let server = Running::spawn(
        netns.step(8),
        &["-p", "8080:80"],
        "d=/tmp/www-$HOSTNAME; mkdir -p $d && echo hello-caixa > $d/index.html && httpd -p 80 -h $d && echo ready; read x; rm -rf $d",
    );
    let request = "GET /index.html HTTP/1.0\r\n\r\n";
    let via_loopback = nc(&netns, &["-w", "3", "127.0.0.1", "8080"], request);
    assert!(
        via_loopback.contains("hello-caixa"),
        "step 8: expected 127.0.0.1:8080 to reach the container's httpd (OUTPUT DNAT, \
         route_localnet), it answered {via_loopback:?}; most likely cause: portmap::rules \
         does not hook the DNAT chain into OUTPUT or lacks the 127.0.0.0/8 MASQUERADE, or \
         bridge::bring_up leaves route_localnet off"
    );
    let via_bridge = nc(&netns, &["-w", "3", GATEWAY, "8080"], request);
    assert!(
        via_bridge.contains("hello-caixa"),
        "step 8: expected {GATEWAY}:8080 to reach the container's httpd too, it answered \
         {via_bridge:?}; most likely cause: portmap::rules makes a wrong DNAT rule (its \
         --dport or --to-destination ADDRESS:PORT)"
    );
    server.finish_well();
}

#[test]
fn a_udp_publish_works() {
    let netns = TestNetns::new();
    let rootfs = TinyRootfs::new().with_probe().owned_by(100000, 100000);
    let mut server = Running::spawn(
        netns.step(8),
        &["--rootfs", rootfs.path(), "-p", "5353:53/udp"],
        "echo ready; exec /probe udp-recv 53",
    );
    let first = server.read_line();
    assert_eq!(
        first.trim(),
        "listening",
        "step 8: expected the probe in the container to say it listens on UDP port 53, it \
         printed {:?}; most likely cause: {}\nstderr: {}",
        first.trim(),
        support::likely_cause(&server.stderr_text()),
        server.stderr_text()
    );
    let sent = netns
        .command(support::probe().to_str().unwrap())
        .args(["udp-send", "127.0.0.1:5353", "ping-udp"])
        .status()
        .unwrap();
    assert!(
        sent.success(),
        "step 8: expected the probe to send a datagram to 127.0.0.1:5353 in the test's netns, \
         it ended with {sent}; most likely cause: the test's netns has no usable loopback \
         (the probe's own error is above)"
    );
    let got = server.read_line();
    assert_eq!(
        got.trim(),
        "ping-udp",
        "step 8: expected a UDP datagram to 127.0.0.1:5353 to reach the container's port 53, \
         the probe printed {:?}; most likely cause: portmap::rules makes the DNAT rule for \
         tcp only (`-p udp` for a /udp publish)\nstderr: {}",
        got.trim(),
        server.stderr_text()
    );
}

#[test]
fn bandwidth_shaping_limits_a_transfer() {
    let netns = TestNetns::new();
    let rootfs = TinyRootfs::new().with_probe().owned_by(100000, 100000);
    let mut receiver = Running::spawn(
        netns.step(8),
        &["--rootfs", rootfs.path(), "--network-bandwidth", "1mbit"],
        "echo ready; exec /probe tcp-recv 9000",
    );
    let first = receiver.read_line();
    assert_eq!(
        first.trim(),
        "listening",
        "step 8: expected the probe in the container to say it listens on TCP port 9000, it \
         printed {:?}; most likely cause: {}\nstderr: {}",
        first.trim(),
        support::likely_cause(&receiver.stderr_text()),
        receiver.stderr_text()
    );
    // Send for 2 seconds: at 1 mbit/s about 250 kB can pass (plus a burst);
    // unshaped, hundreds of megabytes would.
    let sent = netns
        .command(support::probe().to_str().unwrap())
        .args(["tcp-send", &format!("{FIRST}:9000"), "2"])
        .status()
        .unwrap();
    assert!(
        sent.success(),
        "step 8: expected the probe to connect to {FIRST}:9000 and send for 2 s, it ended \
         with {sent}; most likely cause: the container is not reachable from the bridge \
         (veth::create: `master BRIDGE`, both ends up), or the shaping dropped everything \
         (shape::limit)"
    );
    let line = receiver.read_line();
    let bytes: u64 = line.trim().parse().unwrap_or_else(|_| {
        panic!(
            "step 8: expected the probe in the container to print the bytes it received, it \
             printed {line:?}; most likely cause: the connection never reached it (veth::create, \
             shape::limit)\nstderr: {}",
            receiver.stderr_text()
        )
    });
    eprintln!("received {bytes} bytes in 2 s under --network-bandwidth 1mbit");
    assert!(
        bytes > 50_000,
        "step 8: expected more than 50 kB to pass in 2 s under --network-bandwidth 1mbit, \
         {bytes} bytes did; most likely cause: shape::limit sets a rate far too low \
         (shape::parse_rate's units), or the connection failed"
    );
    assert!(
        bytes < 1_000_000,
        "step 8: expected about 250 kB (less than 1 MB) through in 2 s at 1 mbit/s, {bytes} \
         bytes did; most likely cause: shape::limit puts no qdisc on the container's eth0 \
         (tc in its netns), or its rate is far too high"
    );
}

/// `netns`'s links once they are `expected`, looking again for at most
/// 10 s; what they are then, if never. A container's veth pair goes with
/// its network namespace, which the kernel cleans up in the background
/// after the container's last process (see `Prepared::namespace_gone`).
fn links_once(netns: &TestNetns, expected: &[String]) -> Vec<String> {
    let start = std::time::Instant::now();
    loop {
        let links = netns.links();
        if links == expected || start.elapsed() > std::time::Duration::from_secs(10) {
            return links;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn nothing_is_left_after_exit() {
    let netns = TestNetns::new();
    let (rules, links) = (netns.rules(), netns.links());
    let out = netns.run(8, &["-p", "8080:80", "-p", "5353:53/udp", "true"]);
    stdout_of(&out);
    assert_eq!(
        netns.rules(),
        rules,
        "step 8: expected the iptables rules as before the container, saw {:?}; \
         most likely cause: Prepared::release does not remove the container's rules \
         (portmap::remove_rules_of) or the last container's bridge chains (bridge::destroy)",
        netns.rules()
    );
    let after = links_once(&netns, &links);
    assert_eq!(
        after, links,
        "step 8: expected the links as before the container (within 10 s: the kernel deletes \
         the veth pair with the container's namespace), saw {after:?}; most likely cause: the \
         last container's bridge is not deleted (bridge::destroy), or the pair outlives the \
         container: its peer was not moved into the container's namespace"
    );
    let leases = netns.state.path().join("networks/caixa0.leases");
    assert_eq!(
        std::fs::read_to_string(leases).unwrap_or_default(),
        "",
        "step 8: expected no lease left after the container ended, one is; \
         most likely cause: Prepared::release does not give the address back (Leases::give_back)"
    );
}

#[test]
fn while_running_the_rules_name_the_container() {
    let netns = TestNetns::new();
    let running = Running::spawn(
        netns.step(8),
        &["-p", "8080:80", "--hostname", "web"],
        "echo ready; read x",
    );
    let rules = netns.rules().join("\n");
    assert!(
        rules.contains(&format!("--to-destination {FIRST}:80")),
        "step 8: expected a DNAT rule to {FIRST}:80 while the container runs with -p 8080:80; \
         the rules are:\n{rules}\nmost likely cause: portmap::rules makes no DNAT for the \
         publish, or Prepared::connect does not apply them (portmap::apply)"
    );
    assert!(
        rules
            .lines()
            .all(|r| r.starts_with(':') || r.contains("--comment \"caixa:")),
        "step 8: expected every rule to carry a comment naming the container (or the bridge), \
         so that a later start can remove a dead one's rules:\n{rules}\nmost likely cause: \
         portmap::rules or bridge::create makes a rule without `--comment \"caixa:…\"`"
    );
    running.finish_well();
}

#[test]
fn a_host_port_published_twice_is_one_clear_line() {
    let netns = TestNetns::new();
    let first = Running::spawn(netns.step(8), &["-p", "8080:80"], "echo ready; read x");
    let rules = netns.rules();
    let out = netns.run(8, &["-p", "8080:80", "true"]);
    assert_one_line_error(&out, 8, 125, "already published");
    assert_eq!(
        netns.rules(),
        rules,
        "step 8: expected the refused second container to leave the rules as they were, saw \
         {:?}; most likely cause: the port is checked (portmap::check_free, \
         Leases::check_ports) after the rules are applied, not before",
        netns.rules()
    );
    first.finish_well();
}

#[test]
fn malformed_publish_specs_are_one_clear_line() {
    let netns = TestNetns::new();
    for bad in ["abc", "0:80", "70000:80", "8080:80/sctp", "80"] {
        let out = netns.run(8, &["-p", bad, "true"]);
        assert_one_line_error(&out, 8, 125, "invalid -p");
    }
    assert_eq!(
        netns.links(),
        ["lo"],
        "step 8: expected a refused -p to leave no link behind, saw {:?}; most likely cause: \
         the -p is parsed after the bridge is made, not before",
        netns.links()
    );
}

#[test]
fn a_subnet_overlapping_a_route_is_one_clear_line() {
    let netns = TestNetns::new();
    netns.sh("ip link add d0 type veth peer name d1 && ip addr add 10.89.5.1/16 dev d0 && ip link set d0 up");
    let out = netns.run(8, &["true"]);
    assert_one_line_error(&out, 8, 125, "overlaps the existing route");
    assert_eq!(
        netns.links(),
        ["d0", "d1", "lo"],
        "step 8: expected a refused subnet to leave no link of caixa's behind, saw {:?}; \
         most likely cause: bridge::check_subnet runs after bridge::create, not before",
        netns.links()
    );
}

#[test]
fn a_missing_iptables_is_one_clear_line() {
    let netns = TestNetns::new();
    // A PATH with ip, tc and nsenter but no iptables.
    let bin = tempfile::tempdir().unwrap();
    for tool in ["ip", "tc", "nsenter"] {
        let path = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap();
        std::os::unix::fs::symlink(path, bin.path().join(tool)).unwrap();
    }
    let out = netns
        .step(8)
        .env("PATH", bin.path())
        .args(["true"])
        .output()
        .unwrap();
    assert_one_line_error(&out, 8, 125, "iptables-restore not found");
    assert_eq!(
        netns.links(),
        ["lo"],
        "step 8: expected the bridge to go when its rules cannot be made, saw {:?}; \
         most likely cause: bridge::bring_up does not destroy the bridge it made when iptables \
         fails (bridge::destroy)",
        netns.links()
    );
}

#[test]
fn a_killed_step_binary_takes_its_container_along_and_the_next_start_recovers() {
    let netns = TestNetns::new();
    let mut running = Running::spawn(netns.step(8), &["-p", "8080:80"], "echo ready; read x");
    let container = running.container_pid();
    let cgroups = std::fs::read_to_string(format!("/proc/{container}/cgroup")).unwrap();
    // SIGKILL: the step binary gets no chance to clean up.
    running.child.kill().unwrap();
    running.child.wait().unwrap();
    let gone = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        !std::path::Path::new(&format!("/proc/{container}")).exists()
    });
    assert!(
        gone,
        "step 8: expected the container (pid {container}) to die with its step binary, it \
         outlived it; most likely cause: init::run no longer sets PR_SET_PDEATHSIG (block 8c)"
    );
    // The bridge, rules and lease it left must not stop the next container.
    let out = netns.run(8, &["-p", "8080:80", "true"]);
    stdout_of(&out);
    let after = links_once(&netns, &["lo".to_string()]);
    assert_eq!(
        after,
        ["lo"],
        "step 8: expected the next container's exit to remove the network, the killed one's \
         bridge and veth too, saw {after:?}; most likely cause: the next start does not take \
         back a dead container's lease and veth (Leases::take_back_dead), so the bridge looks \
         in use"
    );
    assert!(
        netns.rules().is_empty(),
        "step 8: expected no rule left once the next container ended, left: {:?}; \
         most likely cause: the next start does not remove a dead container's rules \
         (Leases::take_back_dead, portmap::remove_rules_of)",
        netns.rules()
    );
    // Its cgroups too: the next start swept them (a record of what the
    // killed one made, see src/leftovers.rs).
    let left = cgroups_left(&cgroups);
    remove_cgroups(&cgroups);
    assert!(
        left.is_empty(),
        "step 8: expected the next start to remove a killed start's cgroups, left: {left:?}; \
         most likely cause: leftovers::sweep does not undo the killed start's record \
         (leftovers::undo_record)"
    );
}

#[test]
fn a_different_subnet_on_an_existing_bridge_is_one_clear_line() {
    let netns = TestNetns::new();
    let first = Running::spawn(netns.step(8), &[], "echo ready; read x");
    let out = netns.run(8, &["--subnet", "10.90.0.0/24", "true"]);
    assert_one_line_error(&out, 8, 125, "already exists with 10.89.0.1/24");
    first.finish_well();
}

#[test]
fn a_container_reaches_another_through_a_published_port_hairpin() {
    let netns = TestNetns::new();
    let server = Running::spawn(
        netns.step(8),
        &["-p", "8080:80"],
        "d=/tmp/www-$HOSTNAME; mkdir -p $d && echo hello-hairpin > $d/index.html && httpd -p 80 -h $d && echo ready; read x; rm -rf $d",
    );
    // From a second container, to the host's address and the published port:
    // DNAT sends it back out of the bridge it came in by.
    let out = netns.run(
        8,
        &[
            "sh",
            "-c",
            &format!(
                "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {GATEWAY} 8080; exit 0"
            ),
        ],
    );
    assert!(
        stdout_of(&out).contains("hello-hairpin"),
        "step 8: expected a second container to get the first one's page through \
         {GATEWAY}:8080, it got {:?}; most likely cause: portmap::rules lacks the \
         MASQUERADE for the subnet to itself, or its DNAT does not apply to traffic from the \
         bridge (PREROUTING)",
        text(&out.stdout)
    );
    server.finish_well();
}

#[test]
fn a_container_reaches_itself_through_its_published_port_hairpin() {
    let netns = TestNetns::new();
    // The request leaves the container's port of the bridge and, DNATed,
    // must go back out of that same port: only a port in hairpin mode
    // sends a frame back where it came from.
    let out = netns.run(
        8,
        &[
            "-p",
            "8080:80",
            "sh",
            "-c",
            &format!(
                "d=/tmp/www-$HOSTNAME; mkdir -p $d && echo hello-self > $d/index.html && \
                 httpd -p 80 -h $d && \
                 printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {GATEWAY} 8080; exit 0"
            ),
        ],
    );
    let seen = stdout_of(&out);
    assert!(
        seen.contains("hello-self"),
        "step 8: expected a container to get its own page through its published port \
         {GATEWAY}:8080, it got {seen:?}; most likely cause: hairpin is off on the host \
         end's bridge port (`link set dev NAME type bridge_slave hairpin on`)"
    );
}

#[test]
fn a_killed_containers_port_rules_do_not_catch_the_next_ones_traffic() {
    let netns = TestNetns::new();
    let keeper = Running::spawn(netns.step(8), &[], "echo ready; read x");
    let mut killed = Running::spawn(netns.step(8), &["-p", "8080:80"], "echo ready; read x");
    let container = killed.container_pid();
    let cgroups = std::fs::read_to_string(format!("/proc/{container}/cgroup")).unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    drop(killed);
    // Its container dies with it (PR_SET_PDEATHSIG); then its cgroups can go.
    for _ in 0..200 {
        if !std::path::Path::new(&format!("/proc/{container}")).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    remove_cgroups(&cgroups);
    // The network lives on (the keeper holds it); a new container may take
    // the port, and only its rule may catch it.
    let next = Running::spawn(netns.step(8), &["-p", "8080:80"], "echo ready; read x");
    let dnat: Vec<String> = netns
        .rules()
        .into_iter()
        .filter(|r| r.contains("--dport 8080") && r.contains("DNAT"))
        .collect();
    assert_eq!(
        dnat.len(),
        1,
        "step 8: expected one DNAT rule for port 8080, the new container's, saw {dnat:?}; \
         most likely cause: a start does not remove a dead container's rules before adding \
         its own (Leases::take_back_dead, portmap::remove_rules_of)"
    );
    next.finish_well();
    keeper.finish_well();
}

#[test]
fn a_bridge_caixa_did_not_make_is_left_alone() {
    let netns = TestNetns::new();
    netns.sh("ip link add br-foreign type bridge");
    let out = netns.run(8, &["--bridge", "br-foreign", "true"]);
    assert_one_line_error(&out, 8, 125, "was not made by caixa");
    assert_eq!(
        netns.links(),
        ["br-foreign", "lo"],
        "step 8: expected a bridge caixa did not make left alone, the links are {:?}; \
         most likely cause: bridge::destroy runs on a refused start for a bridge without caixa's \
         marker (bridge::marker)",
        netns.links()
    );
}

#[test]
fn network_none_gives_only_loopback_and_touches_nothing() {
    let netns = TestNetns::new();
    let out = netns.run(8, &["--network", "none", "cat", "/proc/net/dev"]);
    let dev = stdout_of(&out);
    let devices: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|d| d.trim().to_string()))
        .collect();
    assert_eq!(
        devices,
        ["lo"],
        "step 8: expected only loopback in a container with --network none, as docker run \
         does, saw {devices:?}; most likely cause: NetworkSpec::plan makes a veth pair for \
         --network none"
    );
    assert_eq!(
        netns.links(),
        ["lo"],
        "step 8: expected --network none to make no bridge or veth, saw {:?}; \
         most likely cause: NetworkSpec::plan makes the bridge for --network none",
        netns.links()
    );
    assert!(
        netns.rules().is_empty(),
        "step 8: expected --network none to make no rule, made: {:?}; most likely cause: \
         the bridge's rules are applied before --network none is looked at",
        netns.rules()
    );
    let out = netns.run(8, &["--network", "none", "-p", "8080:80", "true"]);
    assert_one_line_error(&out, 8, 125, "--network none has no network");
}

/// Step 8's harder exercise (optional, its own points): what the container
/// sends is limited on the host side, by a tbf on an ifb device that the
/// host end's incoming traffic is redirected to, and no qdisc is put on the
/// container's `eth0`. Seen from outside: the devices and qdiscs of both
/// namespaces while it uploads, and what the ifb's tbf let through.
#[test]
fn harder_uploads_are_shaped_on_the_host() {
    let netns = TestNetns::new();
    let rootfs = TinyRootfs::new().with_probe().owned_by(100000, 100000);
    // Killed and reaped when the test ends, also by a failed assert: a
    // receiver left behind would keep the test's output pipe open for good.
    let mut receiver = support::KillOnDrop(
        netns
            .command(support::probe().to_str().expect("a UTF-8 probe path"))
            .args(["tcp-recv", "9000"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the probe in the test's netns"),
    );
    let mut listening = String::new();
    let mut out = std::io::BufReader::new(receiver.0.stdout.take().expect("stdout"));
    std::io::BufRead::read_line(&mut out, &mut listening).expect("the probe's first line");
    assert_eq!(
        listening.trim(),
        "listening",
        "the probe on the host side did not listen"
    );

    // The container uploads for 2 s, says so, and waits: what a dying
    // namespace still had queued would never arrive, so the count is read
    // on the host, from the ifb's tbf, while it lives.
    let mut container = Running::spawn(
        netns.step(8),
        &["--rootfs", rootfs.path(), "--network-bandwidth", "1mbit"],
        &format!("echo ready; /probe tcp-send {GATEWAY}:9000 2; echo sent; read x"),
    );
    let ifbs = netns.sh("ip -o link show type ifb");
    let ifb = ifbs
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(str::trim)
        .find(|name| name.starts_with("ix"))
        .unwrap_or_else(|| {
            panic!(
                "step 8, harder exercise: expected an ifb device named ix… on the host while a \
                 container runs with --network-bandwidth, `ip link show type ifb` printed:\n\
                 {ifbs}\nmost likely cause: shape::on_host still returns its stand-in (None), so \
                 the uploads are shaped inside the container"
            )
        })
        .to_string();
    let inside = netns.sh(&format!(
        "nsenter --net=/proc/{}/ns/net tc qdisc show dev eth0",
        container.container_pid()
    ));
    assert!(
        !inside.contains("tbf"),
        "step 8, harder exercise: expected no tbf on the container's eth0 once uploads are \
         shaped on the host, `tc qdisc show dev eth0` in its netns printed:\n{inside}\nmost \
         likely cause: shape::limit still shapes eth0 through nsenter"
    );
    let sent = container.read_line();
    assert_eq!(sent.trim(), "sent", "the container's upload did not end");
    let stats = netns.sh(&format!("tc -s qdisc show dev {ifb}"));
    drop(receiver);
    let bytes: Option<u64> = stats
        .lines()
        .find(|l| l.contains("tbf"))
        .and(stats.split_whitespace().skip_while(|w| *w != "Sent").nth(1))
        .and_then(|n| n.parse().ok());
    let bytes = bytes.unwrap_or_else(|| {
        panic!(
            "step 8, harder exercise: expected a tbf on {ifb} that counted what it sent, `tc -s \
             qdisc show dev {ifb}` printed:\n{stats}\nmost likely cause: shape::on_host's \
             qdiscs do not end with a tbf on the ifb"
        )
    });
    eprintln!("the ifb's tbf let {bytes} bytes through in 2 s under --network-bandwidth 1mbit");
    assert!(
        bytes > 50_000 && bytes < 1_000_000,
        "step 8, harder exercise: expected about 250 kB (between 50 kB and 1 MB) of upload \
         through the ifb's tbf in 2 s at 1 mbit/s, {bytes} bytes went; most likely cause: the \
         ingress filter does not redirect every packet to the ifb (match u32 0 0, action \
         mirred egress redirect), or the ifb's tbf has another rate"
    );
    container.finish_well();
    let left: Vec<String> = netns
        .links()
        .into_iter()
        .filter(|l| l.starts_with("ix"))
        .collect();
    assert!(
        left.is_empty(),
        "step 8, harder exercise: expected the ifb device to go with the container, {left:?} \
         is left; most likely cause: Prepared::release does not delete it (shape::remove)"
    );
}

/// Step 8 as the rootless user in `netns`, `--network pasta` and
/// `options` first (see [`support::Rootless::in_netns`]).
fn pasta_step8(
    user: &support::Rootless,
    netns: &TestNetns,
    tun_mode: u32,
    options: &[&str],
) -> std::process::Command {
    let mut cmd = user.in_netns(8, netns, tun_mode);
    cmd.args(["--network", "pasta"]).args(options);
    cmd
}

/// A DNS server on the test's resolver address, port 53, inside `netns`
/// (the host side of a pasta container, whose resolv.conf the test made:
/// see [`support::Rootless::in_netns`]). It answers an `A` query for a
/// name that starts with `caixa-probe.` with [`PROBE_ADDRESS`], any other
/// with no address, and keeps the names it was asked.
struct Resolver {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

const PROBE_ADDRESS: [u8; 4] = [10, 77, 0, 7];

impl Resolver {
    fn start(netns: &TestNetns) -> Resolver {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let netns_file =
            std::fs::File::open(format!("/run/netns/{}", netns.name)).expect("the test's netns");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            // Only this thread enters the test's namespace.
            nix::sched::setns(netns_file, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("setns into the test's netns");
            let socket =
                std::net::UdpSocket::bind((support::Rootless::RESOLVER, 53)).expect("bind :53");
            socket
                .set_read_timeout(Some(std::time::Duration::from_millis(100)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut asked = Vec::new();
            let mut buf = [0u8; 512];
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some((name, answer)) = dns_answer(&buf[..n]) {
                    asked.push(name);
                    let _ = socket.send_to(&answer, from);
                }
            }
            asked
        });
        ready_rx.recv().expect("the resolver's thread started");
        Resolver {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the server; the names it was asked.
    fn asked(mut self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap_or_default()
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The name a DNS query asks and the answer to it (RFC 1035 §4.1): the
/// query's id and question, and for a probe's `A` one address record.
fn dns_answer(query: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).into_owned());
        at += len;
    }
    let question_end = at + 4;
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let name = labels.join(".");
    let found = qtype == 1 && name.starts_with("caixa-probe.");
    let mut answer = query.get(..2)?.to_vec(); // the id
    answer.extend([0x81, 0x80, 0, 1, 0, u8::from(found), 0, 0, 0, 0]);
    answer.extend_from_slice(query.get(12..question_end)?);
    if found {
        // The name by a pointer to the question's, class IN, 60 s, 4 bytes.
        answer.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        answer.extend(PROBE_ADDRESS);
    }
    Some((name, answer))
}

/// Rootless (#22): `--network pasta` gives an ordinary user's container a
/// way out and a published port, with no bridge, veth or rule of caixa's,
/// and pasta goes with the container.
#[test]
fn rootless_pasta_gives_a_way_out_and_a_published_port() {
    let user = support::Rootless::new();
    let netns = TestNetns::new();
    let internet = netns.add_internet();
    let _sweep = support::PastaSweep(&netns);
    let _server = support::KillOnDrop(
        internet
            .command("busybox")
            .args(["nc", "-l", "-p", "7000", "-e", "echo", "hello-from-outside"])
            .spawn()
            .expect("busybox nc in the test's second namespace"),
    );
    let resolver = Resolver::start(&netns);
    let links_before = netns.links();
    let container = Running::spawn(
        pasta_step8(&user, &netns, 0o666, &["-p", "8080:80"]),
        &[],
        "{ ip -o -4 addr show; ip route; nc -w 3 10.201.0.2 7000; cat /etc/resolv.conf; \
         nslookup caixa-probe.test; } >/tmp/seen 2>&1; \
         mkdir -p /tmp/www && echo hello-pasta > /tmp/www/index.html && httpd -p 80 -h /tmp/www && \
         echo ready; read x; cat /tmp/seen",
    );
    let while_running = netns.links();
    let pastas = support::pastas_in(&netns);
    let answer = nc(
        &netns,
        &["-w", "3", "127.0.0.1", "8080"],
        "GET /index.html HTTP/1.0\r\n\r\n",
    );
    let rules = netns.rules();
    let stderr = container.stderr_text();
    let seen = container.finish_well();
    let asked = resolver.asked();
    assert!(
        seen.contains("nameserver 169.254.1.1") && seen.contains("search caixa.test"),
        "step 8 rootless: expected the container's /etc/resolv.conf to name pasta's DNS \
         forwarder 169.254.1.1 (the host's only name server, 127.0.0.53, is loopback) and keep \
         the host's search list; it saw:\n{seen}\nmost likely cause: the parent does not \
         write a user-mode network's files (UserModeNetwork::write_files) or the child does \
         not bind-mount them\nstderr: {stderr}"
    );
    assert!(
        asked.iter().any(|n| n.starts_with("caixa-probe.")) && seen.contains("10.77.0.7"),
        "step 8 rootless: expected `nslookup caixa-probe.test` in the container to reach the \
         host's resolver (127.0.0.53 in the test's namespace) through pasta and print its \
         answer 10.77.0.7; the resolver was asked {asked:?} and the container saw:\n{seen}\n\
         most likely cause: pasta is started without --dns-forward 169.254.1.1\n\
         stderr: {stderr}"
    );
    assert!(
        seen.contains("hello-from-outside"),
        "step 8 rootless: expected the container to reach 10.201.0.2:7000, a host beyond the \
         test's namespace, through pasta; it saw:\n{seen}\nmost likely cause: pasta is not \
         started (usermode::start) before the command execs, or without --config-net\n\
         stderr: {stderr}"
    );
    assert!(
        answer.contains("hello-pasta"),
        "step 8 rootless: expected 127.0.0.1:8080 (-p 8080:80) to reach the container's httpd \
         through pasta, it answered {answer:?}; most likely cause: UserModeNetwork::pasta_args \
         does not pass -p as --tcp-ports HOST:CONTAINER\nstderr: {stderr}"
    );
    assert!(
        seen.contains("inet 10.201.0.1/24") && seen.contains("default via 10.201.0.2"),
        "step 8 rootless: expected the container's interface to carry the host's address \
         10.201.0.1/24 and default route via 10.201.0.2, as pasta copies them; it saw:\n{seen}"
    );
    assert!(
        rules.is_empty() && while_running == links_before,
        "step 8 rootless: expected pasta to change nothing in the test's namespace, saw rules \
         {rules:?} and links {while_running:?} (before: {links_before:?})"
    );
    assert_eq!(
        pastas.len(),
        1,
        "step 8 rootless: expected one pasta of uid {} while the container ran, saw {pastas:?}",
        support::Rootless::UID
    );
    let left = (0..100)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            support::pastas_in(&netns)
        })
        .find(Vec::is_empty);
    assert!(
        left.is_some(),
        "step 8 rootless: expected pasta to end with the container, pid {:?} still runs; \
         most likely cause: Host::teardown does not stop it (pasta holds the container's \
         network namespace and would run on)",
        support::pastas_in(&netns)
    );
}

/// Rootless: a `/dev/net/tun` the user may not open is one line that says so.
#[test]
fn rootless_pasta_without_a_tun_device_is_one_clear_line() {
    let user = support::Rootless::new();
    let netns = TestNetns::new();
    let _internet = netns.add_internet();
    let _sweep = support::PastaSweep(&netns);
    let mut cmd = pasta_step8(&user, &netns, 0o600, &[]);
    cmd.arg("true");
    let out = support::output_of(cmd);
    assert_one_line_error(&out, 8, 125, "/dev/net/tun must be open to you");
    let left = support::pastas_in(&netns);
    assert!(
        left.is_empty(),
        "step 8 rootless: a failed pasta left {left:?} running"
    );
}

/// `--network pasta` is the rootless user's network: started by root,
/// pasta would drop to `nobody` and fail on the container's namespaces,
/// so the start is refused in one line before anything is made.
#[test]
fn pasta_as_root_is_one_clear_line() {
    let netns = TestNetns::new();
    let out = netns.run(8, &["--network", "pasta", "true"]);
    assert_one_line_error(
        &out,
        8,
        125,
        "--network pasta is the network of a rootless start",
    );
    assert_eq!(
        netns.links(),
        ["lo"],
        "step 8: a refused pasta start must make no link"
    );
}
