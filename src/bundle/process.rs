//! The process's user and capabilities, both ways.
//!
//! OCI knows numeric ids only; caixa's init also takes a name from the
//! image's config (`nginx`, `app:staff`) and a bare uid whose group comes
//! from the container's `/etc/passwd`. Both are resolved inside the
//! container, so they travel as the [`ANNOTATION_USER`] annotation.
//!
//! OCI has five capability sets; caixa keeps one (bounding, effective and
//! permitted equal; inheritable and ambient empty, see [`crate::caps`]).

use std::collections::HashMap;
use std::str::FromStr;

use oci_spec::runtime::{Capabilities, LinuxCapabilities, User};

use super::{
    ANNOTATION_USER, BundleError, invalid, invalid_annotation, refuse, refuse_unconverted,
};

/// The OCI user for caixa's `user`, and the annotation when ids cannot say it.
///
/// Only `UID:GID` with both numeric becomes ids; `0:0` stays an annotation
/// too, because caixa's init treats it as a user switch (supplementary
/// groups `[0]`) and `None` as staying root (no supplementary group).
pub(super) fn user_to_oci(user: Option<&str>, annotations: &mut HashMap<String, String>) -> User {
    let mut oci = User::default();
    let numeric = user.and_then(|u| {
        let (uid, gid) = u.split_once(':')?;
        Some((uid.parse::<u32>().ok()?, gid.parse::<u32>().ok()?))
    });
    match (user, numeric) {
        (_, Some((uid, gid))) if (uid, gid) != (0, 0) => {
            oci.set_uid(uid).set_gid(gid);
        }
        (Some(name), _) => {
            annotations.insert(ANNOTATION_USER.into(), name.to_string());
        }
        (None, _) => {}
    }
    oci
}

/// caixa's `user` for the OCI user and annotations.
pub(super) fn user_from_oci(
    user: &User,
    annotations: &HashMap<String, String>,
) -> Result<Option<String>, BundleError> {
    refuse_unconverted(
        "process.user",
        user,
        &["uid", "gid", "umask", "additionalGids"],
    )?;
    match (annotations.get(ANNOTATION_USER), user.uid(), user.gid()) {
        (Some(name), 0, 0) if !name.is_empty() && !name.contains('\0') => Ok(Some(name.clone())),
        (Some(_), 0, 0) => Err(invalid_annotation(
            ANNOTATION_USER,
            "must be a user name, NAME:GROUP or a uid",
        )),
        (Some(_), _, _) => Err(invalid(
            "process.user",
            format!("give either uid/gid or the {ANNOTATION_USER} annotation, not both"),
        )),
        (None, 0, 0) => Ok(None),
        (None, uid, gid) => Ok(Some(format!("{uid}:{gid}"))),
    }
}

/// The OCI capabilities for caixa's one set; `None` keeps all of root's.
pub(super) fn capabilities_to_oci(
    keep: Option<&[caps::Capability]>,
) -> Result<Option<LinuxCapabilities>, BundleError> {
    let Some(keep) = keep else {
        return Ok(None);
    };
    let set = keep
        .iter()
        .map(|cap| {
            serde_json::from_value(serde_json::Value::String(cap.to_string()))
                .map_err(|_| invalid("process.capabilities", format!("{cap} has no OCI name")))
        })
        .collect::<Result<Capabilities, _>>()?;
    let mut oci = LinuxCapabilities::default();
    oci.set_bounding(Some(set.clone()))
        .set_effective(Some(set.clone()))
        .set_permitted(Some(set))
        .set_inheritable(None)
        .set_ambient(None);
    Ok(Some(oci))
}

/// caixa's one set for the OCI capabilities, in the kernel's order.
pub(super) fn capabilities_from_oci(
    oci: Option<&LinuxCapabilities>,
) -> Result<Option<Vec<caps::Capability>>, BundleError> {
    let Some(oci) = oci else {
        return Ok(None);
    };
    let empty = Capabilities::new();
    let set = |s: &Option<Capabilities>| s.clone().unwrap_or_default();
    let bounding = set(oci.bounding());
    let one_set = set(oci.effective()) == bounding
        && set(oci.permitted()) == bounding
        && *oci.inheritable().as_ref().unwrap_or(&empty) == empty
        && *oci.ambient().as_ref().unwrap_or(&empty) == empty;
    if !one_set {
        return Err(refuse("process.capabilities"));
    }
    let mut keep = bounding
        .iter()
        .map(|cap| {
            caps::Capability::from_str(&format!("CAP_{cap}")).map_err(|_| {
                invalid(
                    "process.capabilities",
                    format!("CAP_{cap} is unknown to this build of caixa"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    keep.sort_by_key(|c| c.index());
    Ok(Some(keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_capability_has_an_oci_name_and_comes_back() {
        let mut all: Vec<_> = caps::all().into_iter().collect();
        all.sort_by_key(|c| c.index());
        let oci = capabilities_to_oci(Some(&all)).unwrap();
        assert_eq!(capabilities_from_oci(oci.as_ref()).unwrap(), Some(all));
    }

    #[test]
    fn users_by_number_travel_as_ids_and_names_as_an_annotation() {
        for user in [
            None,
            Some("1000:1000"),
            Some("nobody"),
            Some("1000"),
            Some("0:0"),
        ] {
            let mut annotations = HashMap::new();
            let oci = user_to_oci(user, &mut annotations);
            let back = user_from_oci(&oci, &annotations).unwrap();
            assert_eq!(back.as_deref(), user);
        }
        let mut annotations = HashMap::new();
        let oci = user_to_oci(Some("1000:50"), &mut annotations);
        assert_eq!((oci.uid(), oci.gid(), annotations.len()), (1000, 50, 0));
    }
}
