//! Round trips of the specs the steps and the engine build, and one test per
//! refused field.

use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::cgroup::{DeviceRate, Limits};
use crate::idmap::IdMap;
use crate::image::overlay::ImageRoot;
use crate::net::NetworkSpec;
use crate::ns::Namespace;
use crate::spec::Spec;

const ID: &str = "0123456789ab";
const BUNDLE: &str = "/run/caixa/bundles/0123456789ab";

fn spec(namespaces: &[Namespace]) -> Spec {
    let mut spec = Spec::new(vec!["sh".into(), "-c".into(), "echo $HOSTNAME".into()]);
    spec.id = ID.into();
    spec.namespaces = namespaces.to_vec();
    spec.process.env.push("HOME=/root".into());
    spec
}

fn step1() -> Spec {
    spec(&[Namespace::Pid])
}

fn step4() -> Spec {
    // pid, net, ipc, mnt: the namespaces of steps 1 to 4
    let mut s = spec(&Namespace::ALL[..4]);
    s.root = Some("/var/lib/caixa/rootfs".into());
    s.process.cwd = "/tmp".into();
    s
}

fn step8() -> Spec {
    // What the step binaries of steps 6 and later create, in their order.
    let mut s = spec(&[
        Namespace::User,
        Namespace::Pid,
        Namespace::Net,
        Namespace::Ipc,
        Namespace::Mount,
        Namespace::Uts,
    ]);
    s.root = Some("/var/lib/caixa/rootfs".into());
    s.hostname = Some("box".into());
    let map = IdMap {
        container: 0,
        host: 100_000,
        count: 65_536,
    };
    s.uid_map = vec![map];
    s.gid_map = vec![map];
    s.capabilities = Some(crate::caps::resolve(
        &[caps::Capability::CAP_NET_ADMIN],
        &[],
    ));
    s.no_new_privs = true;
    s.seccomp = crate::seccomp::Confinement::Builtin;
    let disk = DeviceRate {
        major: 8,
        minor: 0,
        rate: 1 << 20,
    };
    s.limits = Some(Limits {
        memory: Some(64 << 20),
        memory_swap: Some(-1),
        cpus: Some(0.5),
        cpu_shares: Some(512),
        pids_limit: Some(50),
        blkio_weight: Some(500),
        device_read_bps: vec![disk],
        device_write_bps: vec![disk],
        device_read_iops: vec![DeviceRate { rate: 100, ..disk }],
        device_write_iops: vec![DeviceRate { rate: 50, ..disk }],
        cpuset_cpus: Some("0-1".into()),
        ..Limits::default()
    });
    s.network = Some(NetworkSpec {
        bridge: "caixa0".into(),
        subnet: "10.89.0.0/24".parse().unwrap(),
        publish: vec![
            "8080:80".parse().unwrap(),
            "127.0.0.1:5353:53/udp".parse().unwrap(),
        ],
        bandwidth: Some("10mbit".into()),
        state_dir: "/run/caixa".into(),
        names: vec!["web".into(), "www".into()],
        interface: 0,
    });
    s.joined_networks = vec![NetworkSpec {
        bridge: "caixa-1a2b3c4d".into(),
        subnet: "10.90.3.0/24".parse().unwrap(),
        publish: Vec::new(),
        bandwidth: None,
        state_dir: "/run/caixa".into(),
        names: vec!["web".into(), "1a2b3c4d5e6f".into()],
        interface: 1,
    }];
    s.mounts = vec![crate::rootfs::binds::Bind::new("/srv/motd", "/etc/motd")];
    s.process.user = Some("1000:1000".into());
    s
}

fn step9() -> Spec {
    let mut s = step8();
    s.root = None;
    s.image = Some(ImageRoot {
        store: "/var/lib/caixa/store".into(),
        manifest: "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270".into(),
        keep: true,
    });
    s.process.user = Some("nginx".into());
    s.limits = Some(Limits {
        cpu_weight: Some(200),
        ..Limits::default()
    });
    s.network.as_mut().unwrap().publish.clear();
    s.network.as_mut().unwrap().bandwidth = None;
    s
}

/// An engine container with `docker run`'s extra flags: `--tmpfs`,
/// `--read-only`, `--init`, `--ulimit`.
fn step11() -> Spec {
    let mut s = step9();
    s.tmpfs = vec!["/run:size=64m,mode=1777".parse().unwrap()];
    s.readonly_root = true;
    s.init = true;
    s.process.rlimits = vec![crate::rlimit::parse_ulimit("nofile=1024:2048").unwrap()];
    s
}

#[test]
fn the_specs_of_steps_1_4_8_9_and_11_come_back() {
    for (step, spec) in [
        (1, step1()),
        (4, step4()),
        (8, step8()),
        (9, step9()),
        (11, step11()),
    ] {
        let config = to_oci(&spec).unwrap();
        let back = from_oci(&config, Path::new(BUNDLE), &spec.id).unwrap();
        assert_eq!(back, spec, "step {step}");
    }
}

#[test]
fn verbose_does_not_travel_and_the_id_is_the_callers() {
    let mut s = step1();
    s.verbose = true;
    let back = from_oci(&to_oci(&s).unwrap(), Path::new(BUNDLE), "other").unwrap();
    assert!(!back.verbose);
    assert_eq!(back.id, "other");
}

#[test]
fn a_step1_config_holds_nothing_caixa_did_not_ask_for() {
    let config = serde_json::to_value(to_oci(&step1()).unwrap()).unwrap();
    let want = json!({
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": ["sh", "-c", "echo $HOSTNAME"],
            "env": [format!("PATH={}", crate::spec::DEFAULT_PATH), "HOME=/root"],
            "cwd": "/",
            "noNewPrivileges": false
        },
        "linux": {"namespaces": [{"type": "pid"}]}
    });
    assert_eq!(config, want);
}

/// `spec` through a config whose root.path was changed to `path`.
fn with_root_path(spec: &Spec, path: &str) -> Result<Spec, BundleError> {
    let mut config = to_oci(spec).unwrap();
    let mut root = config.root().clone().unwrap();
    root.set_path(path.into());
    config.set_root(Some(root));
    from_oci(&config, Path::new(BUNDLE), ID)
}

#[test]
fn a_relative_root_is_the_bundles() {
    let back = with_root_path(&step4(), "rootfs").unwrap();
    assert_eq!(back.root, Some(Path::new(BUNDLE).join("rootfs")));
}

#[test]
fn an_image_root_must_be_where_caixa_mounts_it() {
    let err = with_root_path(&step9(), "/elsewhere").unwrap_err();
    assert_eq!(err.field(), Some("root.path"));
    let merged = "/var/lib/caixa/store/containers/0123456789ab/merged";
    assert!(err.to_string().contains(merged), "{err}");
}

#[test]
fn the_bundle_is_written_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = to_oci(&step8()).unwrap();
    write(dir.path(), &config).unwrap();
    assert_eq!(read(dir.path()).unwrap(), config);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, [CONFIG_FILE]);
}

#[test]
fn a_misspelt_key_is_refused_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = serde_json::to_value(to_oci(&step8()).unwrap()).unwrap();
    let process = config["process"].as_object_mut().unwrap();
    let caps = process.remove("capabilities").unwrap();
    process.insert("capabilites".into(), caps);
    std::fs::write(dir.path().join(CONFIG_FILE), config.to_string()).unwrap();
    let err = read(dir.path()).unwrap_err();
    assert_eq!(err.field(), Some("process.capabilites"), "{err}");
    config["process"]["capabilites"] = Value::Null;
    config["linux"]["resources"]["memroy"] = json!({});
    std::fs::write(dir.path().join(CONFIG_FILE), config.to_string()).unwrap();
    assert_eq!(
        read(dir.path()).unwrap_err().field(),
        Some("linux.resources.memroy")
    );
}

#[test]
fn a_huge_or_broken_config_is_refused_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_FILE);
    std::fs::write(&path, vec![b' '; MAX_CONFIG_BYTES as usize + 1]).unwrap();
    assert!(
        read(dir.path())
            .unwrap_err()
            .to_string()
            .contains("larger than 1 MiB")
    );
    std::fs::write(&path, "{\"ociVersion\": ").unwrap();
    assert!(matches!(read(dir.path()), Err(BundleError::Json { .. })));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(read(dir.path()), Err(BundleError::Io { .. })));
}

/// Sets the value at `pointer` in `doc`, making missing objects on the way
/// and appending when the last step is one past the end of a list.
fn set(doc: &mut Value, pointer: &str, value: Value) {
    let mut at = doc;
    let steps: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        at = match at {
            Value::Array(list) => {
                let n: usize = step.parse().unwrap();
                if n == list.len() {
                    list.push(Value::Null);
                }
                &mut list[n]
            }
            other => {
                if other.is_null() {
                    *other = json!({});
                }
                other
                    .as_object_mut()
                    .unwrap()
                    .entry(step.to_string())
                    .or_insert(Value::Null)
            }
        };
        if last {
            *at = value;
            return;
        }
    }
}

fn assert_refused(pointer: &str, value: Value, field: &str) {
    let mut config = serde_json::to_value(to_oci(&step8()).unwrap()).unwrap();
    set(&mut config, pointer, value);
    let config: oci_spec::runtime::Spec = serde_json::from_value(config).unwrap();
    let err = from_oci(&config, Path::new(BUNDLE), ID).unwrap_err();
    assert_eq!(err.field(), Some(field), "{err}");
    assert!(err.to_string().contains(field), "{err}");
}

macro_rules! refused {
    ($($name:ident: $pointer:literal = $value:tt => $field:literal;)*) => {$(
        #[test]
        fn $name() {
            assert_refused($pointer, json!($value), $field);
        }
    )*};
}

refused! {
    refuses_oci_version_2: "/ociVersion" = "2.0.0" => "ociVersion";
    refuses_domainname: "/domainname" = "example.org" => "domainname";
    refuses_a_relative_hook: "/hooks/createRuntime" = [{"path": "bin/true"}] => "hooks.createRuntime[0].path";
    refuses_a_zero_hook_timeout: "/hooks/poststop" = [{"path": "/bin/true", "timeout": 0}] => "hooks.poststop[0].timeout";
    refuses_solaris: "/solaris/milestone" = "svc:/milestone/container:default" => "solaris";
    refuses_idmapped_mounts: "/uidMappings" = [{"containerID": 0, "hostID": 1, "size": 1}] => "uidMappings";
    refuses_a_console_size: "/process/consoleSize" = {"height": 24, "width": 80} => "process.consoleSize";
    refuses_a_command_line: "/process/commandLine" = "sh" => "process.commandLine";
    refuses_apparmor: "/process/apparmorProfile" = "docker-default" => "process.apparmorProfile";
    refuses_selinux_label: "/process/selinuxLabel" = "system_u:system_r:container_t:s0" => "process.selinuxLabel";
    refuses_oom_score_adj: "/process/oomScoreAdj" = 100 => "process.oomScoreAdj";
    refuses_io_priority: "/process/ioPriority" = {"class": "IOPRIO_CLASS_IDLE", "priority": 0} => "process.ioPriority";
    refuses_a_scheduler: "/process/scheduler" = {"policy": "SCHED_BATCH"} => "process.scheduler";
    refuses_cpu_affinity: "/process/execCPUAffinity" = {"initial": "0"} => "process.execCPUAffinity";
    refuses_a_username: "/process/user/username" = "app" => "process.user.username";
    refuses_inheritable_caps: "/process/capabilities/inheritable" = ["CAP_CHOWN"] => "process.capabilities";
    refuses_unequal_caps: "/process/capabilities/effective" = ["CAP_KILL"] => "process.capabilities";
    refuses_an_init_that_is_not_a_flag: "/annotations/org.caixa.process.init" = "yes" => "annotations.org.caixa.process.init";
    refuses_joining_a_namespace: "/linux/namespaces/0/path" = "/proc/1/ns/user" => "linux.namespaces[0].path";
    refuses_a_time_namespace: "/linux/namespaces/6" = {"type": "time"} => "linux.namespaces[6]";
    refuses_net_devices: "/linux/netDevices" = {"eth1": {"name": "eth1"}} => "linux.netDevices";
    refuses_a_hosts_sysctl: "/linux/sysctl" = {"vm.swappiness": "0"} => "linux.sysctl.vm.swappiness";
    refuses_rlimits_soft_above_hard: "/process/rlimits" = [{"type": "RLIMIT_NOFILE", "hard": 10, "soft": 20}] => "process.rlimits[0]";
    refuses_a_relative_masked_path: "/linux/maskedPaths/11" = "proc/cpuinfo" => "linux.maskedPaths[11]";
    refuses_a_cgroups_path_of_another_group: "/linux/cgroupsPath" = "/mine" => "linux.cgroupsPath";
    refuses_a_cgroups_path_out_of_the_hierarchy: "/linux/cgroupsPath" = "/../0123456789ab" => "linux.cgroupsPath";
    refuses_a_systemd_cgroups_path: "/linux/cgroupsPath" = "machine.slice:libpod:0123456789ab" => "linux.cgroupsPath";
    refuses_devices: "/linux/devices" = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}] => "linux.devices";
    refuses_a_seccomp_agent: "/linux/seccomp/listenerPath" = "/run/agent.sock" => "linux.seccomp.listenerPath";
    refuses_seccomp_notify: "/linux/seccomp/syscalls/0/action" = "SCMP_ACT_NOTIFY" => "linux.seccomp.syscalls[0].action";
    refuses_an_errno_on_allow: "/linux/seccomp/defaultAction" = "SCMP_ACT_ALLOW" => "linux.seccomp.defaultErrnoRet";
    refuses_a_call_no_architecture_has: "/linux/seccomp/syscalls/0/names/0" = "raed" => "linux.seccomp.syscalls[0].names[0]";
    refuses_rootfs_propagation: "/linux/rootfsPropagation" = "shared" => "linux.rootfsPropagation";
    refuses_a_mount_label: "/linux/mountLabel" = "system_u:object_r:container_file_t:s0" => "linux.mountLabel";
    refuses_intel_rdt: "/linux/intelRdt" = {"closID": "guaranteed"} => "linux.intelRdt";
    refuses_a_memory_policy: "/linux/memoryPolicy" = {"mode": "MPOL_BIND", "nodes": "0"} => "linux.memoryPolicy";
    refuses_a_personality: "/linux/personality" = {"domain": "LINUX32"} => "linux.personality";
    refuses_time_offsets: "/linux/timeOffsets" = {"monotonic": {"secs": 1}} => "linux.timeOffsets";
    refuses_a_deny_inside_an_allow: "/linux/resources/devices" = [{"allow": false}, {"allow": true, "type": "c", "major": 10, "access": "rw"}, {"allow": false, "type": "c", "major": 10, "minor": 237, "access": "w"}] => "linux.resources.devices[2]";
    refuses_an_all_rule_for_less: "/linux/resources/devices" = [{"allow": false, "access": "r"}] => "linux.resources.devices[0]";
    refuses_a_fifo_rule: "/linux/resources/devices" = [{"allow": true, "type": "p"}] => "linux.resources.devices[0].type";
    refuses_a_bad_access: "/linux/resources/devices" = [{"allow": true, "type": "c", "access": "rwx"}] => "linux.resources.devices[0].access";
    refuses_a_huge_major: "/linux/resources/devices" = [{"allow": true, "type": "c", "major": 4096}] => "linux.resources.devices[0].major";
    refuses_denying_caixas_devices: "/linux/resources/devices" = [{"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}] => "linux.resources.devices[0]";
    refuses_hugepage_limits: "/linux/resources/hugepageLimits" = [{"pageSize": "2MB", "limit": 1}] => "linux.resources.hugepageLimits";
    refuses_a_net_class: "/linux/resources/network" = {"classID": 1} => "linux.resources.network";
    refuses_rdma: "/linux/resources/rdma" = {"mlx5_1": {"hcaHandles": 3}} => "linux.resources.rdma";
    refuses_other_unified_keys: "/linux/resources/unified" = {"memory.high": "1g"} => "linux.resources.unified";
    refuses_a_memory_reservation: "/linux/resources/memory/reservation" = 1 => "linux.resources.memory.reservation";
    refuses_kernel_memory: "/linux/resources/memory/kernel" = 1 => "linux.resources.memory.kernel";
    refuses_kernel_tcp_memory: "/linux/resources/memory/kernelTCP" = 1 => "linux.resources.memory.kernelTCP";
    refuses_swappiness: "/linux/resources/memory/swappiness" = 0 => "linux.resources.memory.swappiness";
    refuses_disabling_the_oom_killer: "/linux/resources/memory/disableOOMKiller" = true => "linux.resources.memory.disableOOMKiller";
    refuses_use_hierarchy: "/linux/resources/memory/useHierarchy" = true => "linux.resources.memory.useHierarchy";
    refuses_check_before_update: "/linux/resources/memory/checkBeforeUpdate" = true => "linux.resources.memory.checkBeforeUpdate";
    refuses_cpu_idle: "/linux/resources/cpu/idle" = 1 => "linux.resources.cpu.idle";
    refuses_cpu_burst: "/linux/resources/cpu/burst" = 1000 => "linux.resources.cpu.burst";
    refuses_realtime_runtime: "/linux/resources/cpu/realtimeRuntime" = 1000 => "linux.resources.cpu.realtimeRuntime";
    refuses_realtime_period: "/linux/resources/cpu/realtimePeriod" = 1000 => "linux.resources.cpu.realtimePeriod";
    refuses_memory_nodes: "/linux/resources/cpu/mems" = "0" => "linux.resources.cpu.mems";
    refuses_another_cfs_period: "/linux/resources/cpu/period" = 50000 => "linux.resources.cpu.period";
    refuses_a_leaf_weight: "/linux/resources/blockIO/leafWeight" = 100 => "linux.resources.blockIO.leafWeight";
    refuses_weight_devices: "/linux/resources/blockIO/weightDevice" = [{"major": 8, "minor": 0, "weight": 100}] => "linux.resources.blockIO.weightDevice";
    refuses_a_disk_mount: "/mounts/7" = {"destination": "/data", "type": "ext4", "source": "/dev/vda"} => "mounts[7]";
    refuses_a_relative_bind_source: "/mounts/7" = {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind"]} => "mounts[7]";
    refuses_a_bind_option_caixa_does_not_honour: "/mounts/6/options" = ["bind", "size=1m"] => "mounts[6].options";
    refuses_an_unknown_caixa_annotation: "/annotations/org.caixa.network.brigde" = "caixa0" => "annotations.org.caixa.network.brigde";
    refuses_a_joined_network_without_names: "/annotations/org.caixa.network.joined" = "caixa-1=10.90.0.0/24" => "annotations.org.caixa.network.joined";
    refuses_joining_the_first_network_again: "/annotations/org.caixa.network.joined" = "caixa0=10.90.3.0/24=" => "annotations.org.caixa.network.joined";
    refuses_a_joined_name_that_is_no_host_name: "/annotations/org.caixa.network.joined" = "caixa-x=10.90.3.0/24=web,../etc" => "annotations.org.caixa.network.joined";
    refuses_a_joined_bridge_that_is_no_interface_name: "/annotations/org.caixa.network.joined" = "caixa-x y=10.90.3.0/24=" => "annotations.org.caixa.network.joined";
    refuses_a_joined_subnet_that_is_no_subnet: "/annotations/org.caixa.network.joined" = "caixa-x=10.90.3.0=" => "annotations.org.caixa.network.joined";
}

/// podman's and containerd's configs list their own mounts and paths:
/// they become the spec's mount table, in order, with flags and data read
/// as mount(8) reads them; rlimits, umask and sysctl travel too.
#[test]
fn an_orchestrators_own_mounts_become_a_mount_table() {
    let mut config = serde_json::to_value(to_oci(&step8()).unwrap()).unwrap();
    set(
        &mut config,
        "/mounts",
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "/tmp/hosts", "options": ["bind", "rprivate", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "ro"]}
        ]),
    );
    set(&mut config, "/linux/maskedPaths", json!(["/proc/kcore"]));
    set(&mut config, "/linux/readonlyPaths", json!(["/proc/sys"]));
    set(
        &mut config,
        "/process/rlimits",
        json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}]),
    );
    set(&mut config, "/process/user/umask", json!(63));
    set(
        &mut config,
        "/linux/sysctl",
        json!({"net.ipv4.ping_group_range": "0 0"}),
    );
    set(
        &mut config,
        "/linux/namespaces/6",
        json!({"type": "cgroup"}),
    );
    let mut twice = config.clone();
    set(&mut twice, "/linux/namespaces/7", json!({"type": "cgroup"}));
    let twice: oci_spec::runtime::Spec = serde_json::from_value(twice).unwrap();
    let err = from_oci(&twice, Path::new(BUNDLE), ID).unwrap_err();
    assert_eq!(err.field(), Some("linux.namespaces[7]"), "{err}");
    let config: oci_spec::runtime::Spec = serde_json::from_value(config).unwrap();
    let spec = from_oci(&config, Path::new(BUNDLE), ID).unwrap();
    let table = spec.mount_table.expect("a mount table");
    assert!(spec.mounts.is_empty(), "the binds are in the table");
    let kinds: Vec<_> = table
        .mounts
        .iter()
        .map(|m| (m.target.display().to_string(), m.kind.clone()))
        .collect();
    use crate::rootfs::table::Kind;
    assert_eq!(
        kinds[0].1,
        Kind::Filesystem {
            fstype: "proc".into(),
            source: "proc".into()
        }
    );
    assert_eq!(
        kinds[2],
        (
            "/etc/hosts".into(),
            Kind::Bind {
                source: "/tmp/hosts".into(),
                recursive: false
            }
        )
    );
    assert_eq!(kinds[3].1, Kind::Cgroup);
    assert_eq!(
        table.mounts[1].data.as_deref(),
        Some("mode=755,size=65536k")
    );
    assert!(
        table.mounts[2]
            .flags
            .contains(nix::mount::MsFlags::MS_RDONLY)
    );
    assert_eq!(table.masked, vec![std::path::PathBuf::from("/proc/kcore")]);
    assert!(spec.cgroup_ns, "a cgroup namespace, made by the init");
    assert_eq!(spec.process.umask, Some(0o77));
    assert_eq!(spec.process.rlimits[0].soft, 512);
    assert_eq!(
        spec.sysctl,
        vec![("net.ipv4.ping_group_range".to_string(), "0 0".to_string())]
    );
}

#[test]
fn another_seccomp_profile_is_compiled_and_travels_back() {
    let podman: oci_spec::runtime::LinuxSeccomp =
        serde_json::from_str(include_str!("../seccomp/compile/podman-4.3.1-default.json")).unwrap();
    let mut config = to_oci(&step8()).unwrap();
    let mut linux = config.linux().clone().unwrap();
    linux.set_seccomp(Some(podman.clone()));
    config.set_linux(Some(linux));
    let spec = from_oci(&config, Path::new(BUNDLE), ID).unwrap();
    let oci = crate::seccomp::Confinement::Oci(Box::new(podman.clone()));
    assert_eq!(spec.seccomp, oci);
    let back = to_oci(&spec).unwrap();
    assert_eq!(
        back.linux().as_ref().unwrap().seccomp().as_ref(),
        Some(&podman)
    );
    let mut builtin = step8();
    builtin.seccomp = crate::seccomp::Confinement::Builtin;
    assert_eq!(
        from_oci(&to_oci(&builtin).unwrap(), Path::new(BUNDLE), ID).unwrap(),
        builtin
    );
}

#[test]
fn other_annotations_are_ignored() {
    let mut config = serde_json::to_value(to_oci(&step8()).unwrap()).unwrap();
    set(&mut config, "/annotations/com.example.owner", json!("ops"));
    let config: oci_spec::runtime::Spec = serde_json::from_value(config).unwrap();
    assert_eq!(from_oci(&config, Path::new(BUNDLE), ID).unwrap(), step8());
}

#[test]
fn mounts_without_a_root_are_refused() {
    let mut s = step1();
    s.mounts = vec![crate::rootfs::binds::Bind::new("/a", "/b")];
    assert_eq!(to_oci(&s).unwrap_err().field(), Some("mounts"));
    let mut config = to_oci(&step1()).unwrap();
    config.set_mounts(to_oci(&step4()).unwrap().mounts().clone());
    assert_eq!(
        from_oci(&config, Path::new(BUNDLE), ID)
            .unwrap_err()
            .field(),
        Some("mounts")
    );
}

#[test]
fn every_refused_field_has_a_reason() {
    assert_eq!(
        reason("process.capabilities.ambient"),
        reason("process.capabilities")
    );
    assert_eq!(
        reason("linux.namespaces[3].path"),
        reason("linux.namespaces.path")
    );
    assert!(reason("linux.mountLabel").contains("SELinux"));
}

#[test]
fn one_spec_makes_one_config_byte_for_byte() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(a.path(), &to_oci(&step9()).unwrap()).unwrap();
    write(b.path(), &to_oci(&step9()).unwrap()).unwrap();
    let text = |dir: &Path| std::fs::read(dir.join(CONFIG_FILE)).unwrap();
    assert_eq!(text(a.path()), text(b.path()));
}

/// step8's config with `linux` changed by `edit`, read back.
fn from_edited(edit: impl FnOnce(&mut Value)) -> Spec {
    let mut config = serde_json::to_value(to_oci(&step8()).unwrap()).unwrap();
    edit(&mut config);
    let config: oci_spec::runtime::Spec = serde_json::from_value(config).unwrap();
    from_oci(&config, Path::new(BUNDLE), ID).unwrap()
}

#[test]
fn podmans_and_containerds_cgroups_paths_are_converted() {
    let podman = from_edited(|c| {
        set(
            c,
            "/linux/cgroupsPath",
            json!(format!("/libpod_parent/libpod-{ID}")),
        );
        set(c, "/linux/resources/pids", json!({"limit": 2048}));
    });
    let limits = podman.limits.unwrap();
    assert_eq!(limits.pids_limit, Some(2048));
    assert_eq!(
        limits.group(ID).dir_in(Path::new("/sys/fs/cgroup/memory")),
        Path::new("/sys/fs/cgroup/memory/libpod_parent").join(format!("libpod-{ID}"))
    );
    let containerd = from_edited(|c| {
        set(c, "/linux/cgroupsPath", json!(format!("/default/{ID}")));
        c["linux"].as_object_mut().unwrap().remove("resources");
    });
    let limits = containerd
        .limits
        .expect("a cgroupsPath alone makes a cgroup");
    assert_eq!(
        limits.group(ID).to_cgroups_path(),
        Path::new("/default").join(ID)
    );
    assert!(
        from_edited(|c| {
            c["linux"].as_object_mut().unwrap().remove("resources");
        })
        .limits
        .is_none()
    );
}

#[test]
fn podmans_and_containerds_device_rules_are_converted() {
    let podman = from_edited(|c| {
        set(
            c,
            "/linux/resources/devices",
            json!([{"allow": false, "access": "rwm"}]),
        );
    });
    let rules = podman.limits.unwrap().devices.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].to_string(), "a");
    let mut list = vec![json!({"allow": false, "access": "rwm"})];
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
        (10, 200),
    ] {
        list.push(
            json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"}),
        );
    }
    list.push(json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}));
    list.push(json!({"allow": true, "type": "c", "major": -1, "minor": -1, "access": "m"}));
    let containerd = from_edited(|c| set(c, "/linux/resources/devices", Value::Array(list)));
    let rules = containerd.limits.unwrap().devices.unwrap();
    assert_eq!(rules[9].to_string(), "c 10:200 rwm");
    assert_eq!(rules[10].to_string(), "c 136:* rwm");
    assert_eq!(rules[11].to_string(), "c *:* m");
    // An empty list asks for nothing, as an absent one.
    let empty = from_edited(|c| set(c, "/linux/resources/devices", json!([])));
    assert_eq!(empty.limits.unwrap().devices, None);
}

#[test]
fn a_cgroups_path_and_device_rules_come_back() {
    let mut s = step8();
    let mut limits = s.limits.clone().unwrap_or_default();
    limits.group =
        Some(crate::cgroup::GroupPath::from_cgroups_path(&format!("pods/{ID}"), ID).unwrap());
    limits.devices = Some(vec![
        crate::cgroup::DeviceRule {
            allow: false,
            kind: crate::cgroup::DeviceKind::All,
            major: None,
            minor: None,
            access: crate::cgroup::Access::ALL,
        },
        crate::cgroup::DeviceRule {
            allow: true,
            kind: crate::cgroup::DeviceKind::Block,
            major: Some(254),
            minor: None,
            access: crate::cgroup::Access::READ,
        },
    ]);
    s.limits = Some(limits);
    let config = to_oci(&s).unwrap();
    assert_eq!(
        config.linux().as_ref().unwrap().cgroups_path().as_deref(),
        Some(Path::new("/caixa/pods").join(ID).as_path())
    );
    assert_eq!(from_oci(&config, Path::new(BUNDLE), ID).unwrap(), s);
}

/// A rootless engine's container: a user-mode network (pasta) with a
/// published port, and no bridge.
fn with_pasta() -> Spec {
    let mut s = step11();
    s.network = None;
    s.joined_networks.clear();
    s.user_network = Some(
        crate::net::usermode::UserModeNetwork::plan(vec!["8080:80".parse().unwrap()], None)
            .unwrap(),
    );
    s
}

#[test]
fn a_user_mode_network_comes_back_with_its_ports() {
    let spec = with_pasta();
    let config = to_oci(&spec).unwrap();
    let annotations = config.annotations().clone().unwrap_or_default();
    assert_eq!(
        annotations.get(ANNOTATION_NETWORK_MODE).map(String::as_str),
        Some("pasta")
    );
    let back = from_oci(&config, Path::new(BUNDLE), &spec.id).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn a_user_mode_network_beside_a_bridge_or_of_another_kind_is_refused() {
    for (key, value) in [
        (ANNOTATION_BRIDGE, "caixa0"),
        (ANNOTATION_NETWORK_MODE, "slirp4netns"),
    ] {
        let mut config = serde_json::to_value(to_oci(&with_pasta()).unwrap()).unwrap();
        config["annotations"][key] = json!(value);
        let config: oci_spec::runtime::Spec = serde_json::from_value(config).unwrap();
        let err = from_oci(&config, Path::new(BUNDLE), ID).unwrap_err();
        assert_eq!(
            err.field(),
            Some("annotations.org.caixa.network.mode"),
            "{key}: {err}"
        );
    }
}
