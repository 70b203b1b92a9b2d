//! Privilege (step 6): what root in the container may do, as `docker run`'s
//! `--uid-map`, `--cap-add`, `--cap-drop` and `--security-opt` say.
//!
//! One owner for these choices: the step binaries' command line and the
//! engine's create requests both describe them with [`Privilege`], which
//! fills the spec's user namespace maps, capabilities, no_new_privs and
//! seccomp fields the same way.

use crate::idmap::IdMap;
use crate::seccomp::Confinement;
use crate::spec::Spec;

/// A privilege choice that cannot be honoured.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// An unknown capability.
    #[error(transparent)]
    Caps(#[from] crate::caps::CapsError),
    /// An unknown `--security-opt`.
    #[error("unknown --security-opt {0:?}: use seccomp=unconfined or no-new-privileges=false")]
    UnknownOpt(String),
    /// seccomp needs no_new_privs once CAP_SYS_ADMIN is gone.
    #[error(
        "no-new-privileges=false needs seccomp=unconfined too: the filter is installed after CAP_SYS_ADMIN is dropped, which the kernel allows only with no_new_privs"
    )]
    SeccompNeedsNoNewPrivs,
}

/// The privilege of one container, as `docker run` spells it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Privilege<'a> {
    /// uid map ranges; empty: [`DEFAULT_ID_MAP`].
    pub uid_map: &'a [IdMap],
    /// gid map ranges; empty: [`DEFAULT_ID_MAP`].
    pub gid_map: &'a [IdMap],
    /// Capabilities kept beyond Docker's 14 defaults (names, or ALL).
    pub cap_add: &'a [String],
    /// Capabilities dropped from the defaults (names, or ALL).
    pub cap_drop: &'a [String],
    /// `seccomp=unconfined`, `no-new-privileges[=false]`.
    pub security_opt: &'a [String],
}

impl Privilege<'_> {
    /// Fills the user namespace, capability, no_new_privs and seccomp fields.
    pub fn apply(&self, spec: &mut Spec) -> Result<(), PrivilegeError> {
        // Root's default is a range of 65536 ids; a user's, its own id
        // (see `crate::rootless::default_maps`).
        let (uid, gid) = crate::rootless::default_maps();
        let or_default = |map: &[IdMap], default: Vec<IdMap>| {
            if map.is_empty() {
                default
            } else {
                map.to_vec()
            }
        };
        spec.uid_map = or_default(self.uid_map, uid);
        spec.gid_map = or_default(self.gid_map, gid);
        let parse_all = |names: &[String]| -> Result<Vec<_>, crate::caps::CapsError> {
            names.iter().try_fold(Vec::new(), |mut all, n| {
                all.extend(crate::caps::parse(n)?);
                Ok(all)
            })
        };
        spec.capabilities = Some(crate::caps::resolve(
            &parse_all(self.cap_add)?,
            &parse_all(self.cap_drop)?,
        ));
        spec.no_new_privs = true;
        spec.seccomp = Confinement::Builtin;
        for opt in self.security_opt {
            match opt.as_str() {
                "seccomp=unconfined" | "seccomp:unconfined" => {
                    spec.seccomp = Confinement::Unconfined
                }
                "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true" => {
                    spec.no_new_privs = true
                }
                "no-new-privileges=false" | "no-new-privileges:false" => spec.no_new_privs = false,
                other => return Err(PrivilegeError::UnknownOpt(other.to_string())),
            }
        }
        if spec.seccomp.is_confined() && !spec.no_new_privs {
            return Err(PrivilegeError::SeccompNeedsNoNewPrivs);
        }
        Ok(())
    }
}

/// The host uid and gid that container root maps to (0 without a map).
pub fn host_root(spec: &Spec) -> (u32, u32) {
    let root_of = |maps: &[IdMap]| maps.iter().find(|m| m.container == 0).map_or(0, |m| m.host);
    (root_of(&spec.uid_map), root_of(&spec.gid_map))
}
