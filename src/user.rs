//! Users by name or number, looked up in the container's own `/etc/passwd`
//! and `/etc/group` (an image's `User` may be `nginx`, `1000` or `1000:1000`).

/// (uid, gid) for `user`: `NAME`, `UID`, `NAME:GROUP` or `UID:GID`.
pub fn resolve(user: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    resolve_in(user, &passwd, &group)
}

/// [`resolve`] against given file contents.
pub fn resolve_in(user: &str, passwd: &str, group: &str) -> Result<(u32, u32), String> {
    let (name, grp) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let entry = |file: &str, key: &str| -> Option<(u32, u32)> {
        file.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.first() != Some(&key) && f.get(2) != Some(&key) {
                return None;
            }
            let id = f.get(2)?.parse().ok()?;
            Some((id, f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0)))
        })
    };
    let (uid, default_gid) = match name.parse::<u32>() {
        Ok(uid) => (uid, entry(passwd, name).map_or(uid, |(_, g)| g)),
        Err(_) => entry(passwd, name)
            .ok_or_else(|| format!("user {name:?} is not in the container's /etc/passwd"))?,
    };
    let gid = match grp {
        None => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => entry(group, g)
                .map(|(gid, _)| gid)
                .ok_or_else(|| format!("group {g:?} is not in the container's /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/home/web:/bin/sh\n";
        let group = "root:x:0:\nwww:x:1001:\n";
        assert_eq!(resolve_in("web", passwd, group), Ok((1000, 1001)));
        assert_eq!(resolve_in("1000", passwd, group), Ok((1000, 1001)));
        assert_eq!(resolve_in("2000:3000", passwd, group), Ok((2000, 3000)));
        assert_eq!(resolve_in("web:root", passwd, group), Ok((1000, 0)));
        assert!(resolve_in("nobody-here", passwd, group).is_err());
    }
}
