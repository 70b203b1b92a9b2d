//! Step 2 grading: the network namespace.

mod support;

use support::{expect_success, host_links, run, stdout_of, text};

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
         {names:?}; most likely cause: the clone had no CLONE_NEWNET, so the container sees \
         the host's links: is Namespace::Net in the step's spec (chapters/step2-net/main.rs)?\n\
         {links}"
    );
    let flags = links.split(['<', '>']).nth(1).unwrap_or("");
    assert!(
        flags.split(',').any(|f| f == "UP"),
        "step 2: expected lo to be up (UP among its flags), its flags are <{flags}>; most \
         likely cause: bring_up_loopback does not add IFF_UP to the flags SIOCGIFFLAGS read, \
         or does not write them back with SIOCSIFFLAGS\n{links}"
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
    let seen = expect_success(
        &out,
        "step 2's ping-pong on 127.0.0.1 inside",
        "lo is down (\"Network is unreachable\"): bring_up_loopback must add IFF_UP to lo's \
         flags and write them back with SIOCSIFFLAGS",
    );
    assert_eq!(
        seen.trim(),
        "pong",
        "step 2: expected a client on 127.0.0.1 inside to reach a listener inside and print \
         pong, it printed {seen:?}; most likely cause: lo is down: bring_up_loopback must add \
         IFF_UP to lo's flags and write them back with SIOCSIFFLAGS\nstderr: {}",
        text(&out.stderr)
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
         test's ({}); most likely cause: Namespace::Net is missing from the step's spec \
         (chapters/step2-net/main.rs), so clone3 gets no CLONE_NEWNET",
        theirs.trim()
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
    let count = stdout_of(&out);
    assert_eq!(
        count.trim(),
        "3",
        "step 2: expected three links inside after making a veth pair (lo and the pair), \
         `ip -o link | wc -l` said {count:?}; most likely cause: the container is not in a \
         new network namespace (Namespace::Net in the step's spec), so it counts the host's \
         links too"
    );
    let after = host_links();
    assert_eq!(
        after, before,
        "step 2: expected a link made in the container to exist only there, the host's links \
         went from {before:?} to {after:?}; most likely cause: the container shares the \
         host's network namespace: Namespace::Net is missing from the step's spec, so \
         clone3 gets no CLONE_NEWNET"
    );
}
