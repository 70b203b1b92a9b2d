//! devices: what the container may open.
//!
//! A device node is only a name for a (type, major, minor) triple; whoever
//! may `mknod` or bind one can reach the hardware behind it. The device
//! cgroup is the kernel's second lock: on every `open(2)` and `mknod(2)` of
//! a device it asks the container's group whether that triple may be read,
//! written or created. See Documentation/admin-guide/cgroup-v1/devices.rst
//! and, for v2, the `BPF_PROG_TYPE_CGROUP_DEVICE` program in
//! [`super::v2::devices`].
//!
//! The rules come from `linux.resources.devices` in the order given, the
//! later overriding the earlier, as in cgroup v1's `devices.allow` and
//! `devices.deny` files. cgroup v1 keeps only *one default* (allow or deny
//! everything) and a list of *exceptions* to it, so [`policy`] turns the
//! rules into exactly that, and refuses, naming the rule, what that shape
//! cannot hold. v1 writes the shape into its files; v2 compiles the same
//! shape into a program: one meaning on both.
//!
//! caixa appends its own rules last, as runc does: the devices its `/dev`
//! holds stay usable (podman sends only "deny everything" and expects the
//! runtime to allow them), and `mknod` of any node is allowed (opening it
//! is what the rules decide).

use std::fmt;

use crate::rootfs::dev::DEFAULT_DEVICES;

/// Which devices a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// Every device, block and character (`a`).
    All,
    /// Block devices (`b`): disks.
    Block,
    /// Character devices (`c`): terminals, `/dev/null`, `/dev/loop-control`.
    Char,
}

/// A subset of `rwm`, as bits numbered like the kernel's
/// `BPF_DEVCG_ACC_*`, so the v2 program can compare them directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access(u8);

impl Access {
    /// `m`: create a node with mknod(2).
    pub const MKNOD: Access = Access(1);
    /// `r`: open for reading.
    pub const READ: Access = Access(2);
    /// `w`: open for writing.
    pub const WRITE: Access = Access(4);
    /// `rwm`.
    pub const ALL: Access = Access(7);

    /// Parses `rwm` or a subset in any order; `None` for anything else.
    pub fn parse(text: &str) -> Option<Access> {
        let mut bits = 0;
        for c in text.chars() {
            bits |= match c {
                'm' => 1,
                'r' => 2,
                'w' => 4,
                _ => return None,
            };
        }
        (bits != 0).then_some(Access(bits))
    }

    /// The bits, as the kernel numbers them.
    pub fn bits(self) -> u8 {
        self.0
    }

    fn has(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, c) in [(2, 'r'), (4, 'w'), (1, 'm')] {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// One rule of `linux.resources.devices`: allow or deny some access to
/// some devices. `None` for a number is every number (`*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    /// Allow (true) or deny.
    pub allow: bool,
    /// Which kind of device.
    pub kind: DeviceKind,
    /// Major number (the driver), or every one.
    pub major: Option<u32>,
    /// Minor number (the device of that driver), or every one.
    pub minor: Option<u32>,
    /// Which accesses.
    pub access: Access,
}

impl DeviceRule {
    /// An allow rule for one character device, for every access.
    const fn char_device(major: Option<u32>, minor: Option<u32>, access: Access) -> DeviceRule {
        DeviceRule {
            allow: true,
            kind: DeviceKind::Char,
            major,
            minor,
            access,
        }
    }

    /// Whether both rules may apply to one device (a number or `*` each).
    fn overlaps(&self, other: &DeviceRule) -> bool {
        let same = |a: Option<u32>, b: Option<u32>| a.is_none() || b.is_none() || a == b;
        self.kind == other.kind && same(self.major, other.major) && same(self.minor, other.minor)
    }
}

impl fmt::Display for DeviceRule {
    /// cgroup v1's line: `c 1:3 rwm`, `b 8:* r`, `a`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let number = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        match self.kind {
            DeviceKind::All => write!(f, "a"),
            DeviceKind::Block | DeviceKind::Char => write!(
                f,
                "{} {}:{} {}",
                if self.kind == DeviceKind::Block {
                    'b'
                } else {
                    'c'
                },
                number(self.major),
                number(self.minor),
                self.access
            ),
        }
    }
}

// ANCHOR: caixa_devices
/// The rules caixa appends: its `/dev` (see `crate::rootfs::dev`), the
/// container's own ptys (`/dev/pts/ptmx` is 5:2, each pty 136:N), and
/// mknod of any node, whose *use* the other rules decide.
pub fn caixa_rules() -> Vec<DeviceRule> {
    let mut rules: Vec<DeviceRule> = DEFAULT_DEVICES
        .iter()
        .map(|d| DeviceRule::char_device(Some(d.major as u32), Some(d.minor as u32), Access::ALL))
        .collect();
    rules.push(DeviceRule::char_device(Some(5), Some(2), Access::ALL));
    rules.push(DeviceRule::char_device(Some(136), None, Access::ALL));
    rules.push(DeviceRule::char_device(None, None, Access::MKNOD));
    rules.push(DeviceRule {
        kind: DeviceKind::Block,
        ..DeviceRule::char_device(None, None, Access::MKNOD)
    });
    rules
}
// ANCHOR_END: caixa_devices

/// The rules as cgroup v1 holds them: one default for every device, and
/// exceptions to it (all of the other verdict), merged per device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePolicy {
    /// What happens to a device no exception names.
    pub default_allow: bool,
    /// The exceptions, each `allow == !default_allow`, no two for the same
    /// (kind, major, minor).
    pub exceptions: Vec<DeviceRule>,
}

/// A rule [`policy`] cannot keep exactly, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {index} ({rule}): {why}")]
pub struct RuleError {
    /// Its place in the list given (0-based).
    pub index: usize,
    /// The rule, as v1 writes it.
    pub rule: String,
    /// Why it cannot be kept.
    pub why: String,
}

// ANCHOR: policy
/// The default and exceptions that `rules`, then [`caixa_rules`], mean.
///
/// Read in order: an all-devices rule (`a`, `*:*`, `rwm`) sets the default
/// and forgets every earlier rule, as writing `a` to v1's files does; a
/// rule of the other verdict becomes an exception (merged with one for the
/// same devices, as v1 merges them); a rule of the default's verdict
/// changes nothing unless it cuts into an exception, which v1 could not
/// follow exactly: refused, as is an `a` rule for less than everything.
pub fn policy(rules: &[DeviceRule]) -> Result<DevicePolicy, RuleError> {
    let fail = |index: usize, rule: &DeviceRule, why: String| RuleError {
        index,
        rule: rule.to_string(),
        why,
    };
    // The policy of a new group before any rule: it inherits "allow".
    let mut default_allow = true;
    // Each exception with the index of the rule that made it.
    let mut exceptions: Vec<(usize, DeviceRule)> = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        if rule.kind == DeviceKind::All {
            if rule.major.is_some() || rule.minor.is_some() || rule.access != Access::ALL {
                return Err(fail(
                    index,
                    rule,
                    "type a (all devices) must be *:* rwm; name the type (b or c) for less".into(),
                ));
            }
            default_allow = rule.allow;
            exceptions.clear();
        } else if rule.allow != default_allow {
            match exceptions
                .iter_mut()
                .find(|(_, e)| (e.kind, e.major, e.minor) == (rule.kind, rule.major, rule.minor))
            {
                Some((_, e)) => e.access = Access(e.access.0 | rule.access.0),
                None => exceptions.push((index, *rule)),
            }
        } else if let Some((earlier, _)) = exceptions
            .iter()
            .find(|(_, e)| e.overlaps(rule) && e.access.0 & rule.access.0 != 0)
        {
            return Err(fail(
                index,
                rule,
                format!(
                    "it undoes part of rule {earlier}; caixa keeps one all-devices rule and exceptions to it: give the all-devices rule first, then only rules of the other verdict"
                ),
            ));
        }
    }
    for rule in caixa_rules() {
        if default_allow {
            // Already allowed, unless a deny names one of caixa's devices.
            if let Some((index, e)) = exceptions
                .iter()
                .find(|(_, e)| e.overlaps(&rule) && e.access.0 & rule.access.0 != 0)
            {
                return Err(fail(
                    *index,
                    e,
                    format!("it denies {rule}, which caixa's /dev holds and every container needs"),
                ));
            }
        } else if let Some((_, e)) = exceptions
            .iter_mut()
            .find(|(_, e)| (e.kind, e.major, e.minor) == (rule.kind, rule.major, rule.minor))
        {
            e.access = Access(e.access.0 | rule.access.0);
        } else {
            exceptions.push((usize::MAX, rule));
        }
    }
    if !default_allow {
        check_nested(&exceptions).map_err(|(index, e, other)| {
            fail(index, &e, format!(
                "its read/write access and that of {other} overlap without one holding the other: cgroup v1 needs a single rule to allow both"
            ))
        })?;
    }
    Ok(DevicePolicy {
        default_allow,
        exceptions: exceptions.into_iter().map(|(_, e)| e).collect(),
    })
}
// ANCHOR_END: policy

/// cgroup v1 allows an open only when *one* exception holds every access
/// asked (read and write together for `O_RDWR`); "later overrides" would
/// add them up. Both agree when, for any two exceptions that may name the
/// same device, the read/write part of one holds the other's.
fn check_nested(exceptions: &[(usize, DeviceRule)]) -> Result<(), (usize, DeviceRule, DeviceRule)> {
    let rw = |a: Access| Access(a.0 & (Access::READ.0 | Access::WRITE.0));
    for (i, (index, a)) in exceptions.iter().enumerate() {
        for (_, b) in &exceptions[..i] {
            let (ra, rb) = (rw(a.access), rw(b.access));
            if a.overlaps(b) && !ra.has(rb) && !rb.has(ra) {
                return Err((*index, *a, *b));
            }
        }
    }
    Ok(())
}

// ANCHOR: v1_lines
/// The writes that give a v1 `devices` group `policy`, in order: the
/// default first (writing `a` also empties the list), then one line per
/// exception to the file of its verdict.
pub fn v1_settings(policy: &DevicePolicy) -> Vec<super::Setting> {
    let file = |allow: bool| {
        if allow {
            "devices.allow"
        } else {
            "devices.deny"
        }
    };
    let mut out = vec![super::Setting::new(file(policy.default_allow), "a")];
    for e in &policy.exceptions {
        out.push(super::Setting::new(file(e.allow), e));
    }
    out
}
// ANCHOR_END: v1_lines

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(allow: bool, text: &str) -> DeviceRule {
        let parts: Vec<&str> = text.split(' ').collect();
        let kind = match parts[0] {
            "a" => DeviceKind::All,
            "b" => DeviceKind::Block,
            _ => DeviceKind::Char,
        };
        let (major, minor) = match parts.get(1) {
            Some(nums) => {
                let (a, b) = nums.split_once(':').unwrap();
                (a.parse().ok(), b.parse().ok())
            }
            None => (None, None),
        };
        let access = Access::parse(parts.get(2).copied().unwrap_or("rwm")).unwrap();
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access,
        }
    }

    fn lines(p: &DevicePolicy) -> Vec<String> {
        v1_settings(p)
            .into_iter()
            .map(|s| format!("{} {}", s.file, s.value))
            .collect()
    }

    #[test]
    fn podmans_deny_all_keeps_caixas_devices() {
        let p = policy(&[rule(false, "a")]).unwrap();
        assert!(!p.default_allow);
        assert_eq!(
            lines(&p),
            [
                "devices.deny a",
                "devices.allow c 1:3 rwm",
                "devices.allow c 1:5 rwm",
                "devices.allow c 1:7 rwm",
                "devices.allow c 1:8 rwm",
                "devices.allow c 1:9 rwm",
                "devices.allow c 5:0 rwm",
                "devices.allow c 5:2 rwm",
                "devices.allow c 136:* rwm",
                "devices.allow c *:* m",
                "devices.allow b *:* m",
            ]
        );
    }

    #[test]
    fn containerds_list_merges_with_caixas() {
        let mut rules = vec![
            rule(false, "a"),
            rule(true, "c *:* m"),
            rule(true, "b *:* m"),
        ];
        for d in [
            "1:3", "1:5", "1:7", "1:8", "1:9", "5:0", "5:1", "5:2", "136:*", "10:200",
        ] {
            rules.push(rule(true, &format!("c {d} rwm")));
        }
        let p = policy(&rules).unwrap();
        let l = lines(&p);
        assert!(l.contains(&"devices.allow c 10:200 rwm".to_string()));
        assert_eq!(l.iter().filter(|x| x.contains("c 1:3")).count(), 1);
        assert_eq!(l.iter().filter(|x| x.contains("*:* m")).count(), 2);
    }

    #[test]
    fn a_later_all_rule_forgets_the_earlier_ones() {
        let p = policy(&[rule(false, "a"), rule(true, "c 10:237 r"), rule(true, "a")]).unwrap();
        assert_eq!(
            p,
            DevicePolicy {
                default_allow: true,
                exceptions: vec![]
            }
        );
        let p = policy(&[rule(false, "c 10:237 rw")]).unwrap();
        assert_eq!(lines(&p), ["devices.allow a", "devices.deny c 10:237 rw"]);
        // Rules of the default's verdict that cut into nothing are no-ops.
        let p = policy(&[rule(true, "c 10:237 rw"), rule(false, "a")]).unwrap();
        assert!(!p.default_allow);
    }

    #[test]
    fn what_v1_cannot_hold_is_refused_naming_the_rule() {
        let why = |rules: &[DeviceRule]| policy(rules).unwrap_err();
        let e = why(&[
            rule(false, "a"),
            rule(true, "c 10:* rw"),
            rule(false, "c 10:237 w"),
        ]);
        assert_eq!(e.index, 2, "{e}");
        assert!(e.to_string().contains("undoes part of rule 1"), "{e}");
        let mut partial = rule(false, "a");
        partial.access = Access::READ;
        assert_eq!(why(&[partial]).index, 0);
        let e = why(&[rule(false, "c 1:3 w")]);
        assert!(e.to_string().contains("caixa's /dev"), "{e}");
        let e = why(&[
            rule(false, "a"),
            rule(true, "c 10:* r"),
            rule(true, "c *:237 w"),
        ]);
        assert_eq!(e.index, 2, "{e}");
    }

    #[test]
    fn access_is_a_subset_of_rwm() {
        assert_eq!(Access::parse("mwr"), Some(Access::ALL));
        assert_eq!(Access::parse("r").map(Access::bits), Some(2));
        assert_eq!(Access::parse(""), None);
        assert_eq!(Access::parse("rx"), None);
    }
}
