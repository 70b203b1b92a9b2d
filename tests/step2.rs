//! Step 2 grading: the network namespace.

mod support;

use support::{host_links, run, stdout_of};

#[test]
fn only_lo_inside_and_it_is_up() {
    let out = run(2, &["ip", "-o", "link"]);
    let links = stdout_of(&out);
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(str::trim)
        .collect();
    assert_eq!(
        names,
        ["lo"],
        "step 2: expected only lo inside a new network namespace, `ip -o link` listed \
         {names:?}: did clone3 get CLONE_NEWNET (Namespace::Net in the step's spec)?\n{links}"
    );
    let flags = links.split(['<', '>']).nth(1).unwrap_or("");
    assert!(
        flags.split(',').any(|f| f == "UP"),
        "step 2: expected lo to be up (UP among its flags), its flags are <{flags}>: did \
         bring_up_loopback add IFF_UP to the flags SIOCGIFFLAGS read, and write them back \
         with SIOCSIFFLAGS?\n{links}"
    );
}

#[test]
fn loopback_answers_inside() {
    // A listener and a client on 127.0.0.1, both inside the container: this
    // works only when lo is up.
    let out = run(
        2,
        &[
            "sh",
            "-c",
            "busybox nc -l -p 7777 -e echo pong & sleep 0.2; echo ping | busybox nc 127.0.0.1 7777",
        ],
    );
    assert_eq!(
        stdout_of(&out).trim(),
        "pong",
        "step 2: expected a client on 127.0.0.1 inside to reach a listener inside; it works \
         only when lo has IFF_UP (bring_up_loopback)"
    );
}

#[test]
fn the_container_is_in_another_network_namespace() {
    let ours = std::fs::read_link("/proc/self/ns/net").expect("read /proc/self/ns/net");
    let out = run(2, &["readlink", "/proc/self/ns/net"]);
    let theirs = stdout_of(&out);
    assert_ne!(
        theirs.trim(),
        ours.to_string_lossy(),
        "step 2: expected the container in a network namespace of its own, it is in the \
         test's: is Namespace::Net in the step's spec?"
    );
}

#[test]
fn the_hosts_links_are_untouched() {
    let before = host_links();
    // A pair of links made inside must exist there and nowhere else.
    let out = run(
        2,
        &[
            "sh",
            "-c",
            "ip link add caixa-test0 type veth peer name caixa-test1 && ip -o link | wc -l",
        ],
    );
    assert_eq!(
        stdout_of(&out).trim(),
        "3",
        "step 2: expected three links inside after making a veth pair: lo and the pair"
    );
    assert_eq!(
        host_links(),
        before,
        "step 2: expected a link made in the container to exist only there; it appeared on \
         the host: the container shares the host's network namespace"
    );
}
