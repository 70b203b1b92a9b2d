use caps::Capability;

use super::profile::{self, Test};

#[test]
fn the_filter_compiles_for_this_architecture() {
    let enosys = super::compile::Action::Errno(libc::ENOSYS as u16);
    let kept = &crate::caps::DEFAULT_CAPABILITIES[..];
    let filter = super::default_filter(Some(kept)).unwrap();
    assert!(filter.calls > 300, "{}", filter.calls);
    let plan = super::compile::plan(&super::oci_profile(Some(kept))).unwrap();
    let clone3 = plan.calls.iter().find(|c| c.name == "clone3").unwrap();
    assert_eq!(clone3.always, Some(enosys));
    let all = super::compile::plan(&super::oci_profile(None)).unwrap();
    let clone3 = all.calls.iter().find(|c| c.name == "clone3").unwrap();
    assert_eq!(
        clone3.always,
        Some(super::compile::Action::Allow),
        "CAP_SYS_ADMIN allows clone3"
    );
}

#[test]
fn dockers_defaults_leave_out_what_the_profile_leaves_out() {
    let resolved = profile::resolve(Some(&crate::caps::DEFAULT_CAPABILITIES[..]));
    let names: Vec<&str> = resolved.allowed.iter().map(|c| c.name()).collect();
    for denied in [
        "io_uring_setup",
        "keyctl",
        "add_key",
        "bpf",
        "mount",
        "unshare",
        "setns",
        "userfaultfd",
    ] {
        assert!(!names.contains(&denied), "{denied}");
    }
    for allowed in ["read", "execve", "chroot", "ptrace", "fchmodat2"] {
        assert!(names.contains(&allowed), "{allowed}");
    }
    let conditional: Vec<&str> = resolved.conditional.iter().map(|r| r.call.name()).collect();
    assert_eq!(conditional, ["socket", "personality", "clone"]);
}

#[test]
fn a_kept_capability_opens_its_group() {
    let mut kept = crate::caps::DEFAULT_CAPABILITIES.to_vec();
    kept.push(Capability::CAP_SYS_ADMIN);
    let resolved = profile::resolve(Some(&kept));
    let names: Vec<&str> = resolved.allowed.iter().map(|c| c.name()).collect();
    assert!(names.contains(&"mount") && names.contains(&"clone"));
    assert!(!resolved.clone3_enosys);
    assert!(
        resolved
            .conditional
            .iter()
            .all(|r| r.call.name() != "clone")
    );
}

#[test]
fn no_call_is_listed_twice_with_two_numbers() {
    let resolved = profile::resolve(None);
    for (i, a) in resolved.allowed.iter().enumerate() {
        for b in &resolved.allowed[i + 1..] {
            assert!(a.name() != b.name() && a.nr != b.nr, "{a:?} {b:?}");
        }
    }
}

#[test]
fn the_namespace_mask_is_dockers() {
    assert_eq!(profile::NAMESPACE_FLAGS, 0x7e02_0000);
    assert_eq!(
        profile::CLONE_WITHOUT_NAMESPACES.any_of,
        [Test::NoneOf(0x7e02_0000)]
    );
}

#[test]
fn the_oci_profile_names_what_the_filter_allows() {
    let kept = &crate::caps::DEFAULT_CAPABILITIES[..];
    let profile = super::oci_profile(Some(kept));
    let resolved = profile::resolve(Some(kept));
    let names: Vec<&str> = profile
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|s| s.names())
        .map(String::as_str)
        .collect();
    for call in &resolved.allowed {
        assert!(names.contains(&call.name()), "{}", call.name());
    }
    assert!(names.contains(&"clone3") && names.contains(&"socket"));
    assert!(!names.contains(&"unshare"));
}
