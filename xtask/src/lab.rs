//! `check-lab`: the lab machines' files parse, and they all install the
//! one package list.
//!
//! A lab machine (Vagrant, Lima, cloud-init, a dev container) must get
//! what CI gets, or a test that passes in CI fails in the first lab. So
//! there is one list, `.ci/packages.txt`, and one script that installs it,
//! `.ci/install-packages`; CI's `.ci/run` and every lab file call that
//! script and keep no list of their own. This check holds them to it: each
//! file parses (YAML and JSON with a parser; shell with `bash -n`; the
//! Vagrantfile only by its shape, as Ruby is not installed), each runs the
//! shared script, none installs packages itself beyond the list, and every
//! package that `doctor` asks for on behalf of a step is in the list, so a
//! machine made from it passes `doctor`, and so is the browser
//! `check-book-browser` opens the book in.
//!
//! Booting them is not checked here (CI's machine cannot download cloud
//! images); the book's instructor part says which ones were booted.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use yaml_rust2::{Yaml, YamlLoader};

/// The one package list.
pub const PACKAGES: &str = ".ci/packages.txt";
/// The one script that installs it.
const INSTALL: &str = ".ci/install-packages";
/// The script every lab machine ends with.
const PROVISION: &str = ".ci/lab/provision";

/// The packages of `.ci/packages.txt`: every line without its `#` comment.
pub fn packages(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A Debian package name: lower-case letters, digits, `+ - .`, at least two
/// characters, starting with a letter or digit (Debian policy 5.6.1).
fn is_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// Runs every rule; reports every problem at once.
pub fn check(root: &Path) -> Result<()> {
    let read = |path: &str| {
        std::fs::read_to_string(root.join(path)).with_context(|| format!("cannot read {path}"))
    };
    let mut problems = Vec::new();

    let list = packages(&read(PACKAGES)?);
    let set: BTreeSet<&str> = list.iter().map(String::as_str).collect();
    if list.is_empty() {
        problems.push(format!("{PACKAGES} lists no package"));
    }
    if set.len() != list.len() {
        problems.push(format!("{PACKAGES} lists a package twice"));
    }
    for name in list.iter().filter(|n| !is_package_name(n)) {
        problems.push(format!("{PACKAGES}: \"{name}\" is not a package name"));
    }
    for tool in crate::doctor::TOOLS {
        if tool.step.is_some() && !set.contains(tool.package) {
            problems.push(format!(
                "doctor fails step {} without {} (package {}), which {PACKAGES} does not install",
                tool.step.unwrap_or_default(),
                tool.program,
                tool.package
            ));
        }
    }

    // No graded test needs the browser, but the book's check does: a lab
    // machine, like CI, must be able to run it.
    if !set.contains(crate::browser::PACKAGE) {
        problems.push(format!(
            "`cargo xtask check-book-browser` opens the book in {} (package {}), which {PACKAGES} \
             does not install",
            crate::browser::PROGRAM,
            crate::browser::PACKAGE
        ));
    }

    // Shell: parses, and the list is installed only by INSTALL.
    for (path, must_run) in [
        (INSTALL, PACKAGES),
        (".ci/run", INSTALL),
        (PROVISION, "/.ci/install-packages"),
    ] {
        let text = read(path)?;
        let syntax = Command::new("bash")
            .arg("-n")
            .arg(root.join(path))
            .output()
            .context("cannot run bash -n")?;
        if !syntax.status.success() {
            problems.push(format!(
                "{path} does not parse: {}",
                String::from_utf8_lossy(&syntax.stderr).trim()
            ));
        }
        if !text.contains(must_run) {
            problems.push(format!("{path} does not use {must_run}"));
        }
        if path != INSTALL && text.contains("apt-get install") {
            problems.push(format!(
                "{path} installs packages itself: add them to {PACKAGES} instead"
            ));
        }
    }

    // cloud-init: YAML, the `#cloud-config` header, provision in runcmd,
    // and only bootstrap packages that the list has too.
    let cloud = read(".ci/lab/cloud-init.yaml")?;
    if !cloud.starts_with("#cloud-config\n") {
        problems.push(".ci/lab/cloud-init.yaml must start with #cloud-config".into());
    }
    match yaml(&cloud) {
        Err(e) => problems.push(format!(".ci/lab/cloud-init.yaml: {e:#}")),
        Ok(doc) => {
            if !strings(&doc["runcmd"])
                .iter()
                .any(|s| s.contains(PROVISION))
            {
                problems.push(format!(
                    ".ci/lab/cloud-init.yaml: no runcmd runs {PROVISION}"
                ));
            }
            for p in strings(&doc["packages"]) {
                if !set.contains(p.as_str()) {
                    problems.push(format!(
                        ".ci/lab/cloud-init.yaml installs {p}, which {PACKAGES} does not list"
                    ));
                }
            }
        }
    }

    // Lima: YAML, both architectures, provision in a provisioning script.
    match yaml(&read(".ci/lab/lima.yaml")?) {
        Err(e) => problems.push(format!(".ci/lab/lima.yaml: {e:#}")),
        Ok(doc) => {
            let arches: BTreeSet<String> = doc["images"]
                .as_vec()
                .map(|v| {
                    v.iter()
                        .filter_map(|i| i["arch"].as_str())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            for arch in ["x86_64", "aarch64"] {
                if !arches.contains(arch) {
                    problems.push(format!(".ci/lab/lima.yaml has no {arch} image"));
                }
            }
            let scripts = doc["provision"]
                .as_vec()
                .map(|v| {
                    v.iter()
                        .filter_map(|p| p["script"].as_str())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            if !scripts.iter().any(|s| s.contains(PROVISION)) {
                problems.push(format!(
                    ".ci/lab/lima.yaml: no provision script runs {PROVISION}"
                ));
            }
        }
    }

    // The GitHub Classroom workflow: YAML, the list's script, the grader.
    let classroom = read(".ci/lab/classroom.yml")?;
    match yaml(&classroom) {
        Err(e) => problems.push(format!(".ci/lab/classroom.yml: {e:#}")),
        Ok(doc) => {
            let runs: Vec<String> = doc["jobs"]["grade"]["steps"]
                .as_vec()
                .map(|v| {
                    v.iter()
                        .filter_map(|s| s["run"].as_str())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            for needed in [INSTALL, "cargo xtask grade --format classroom"] {
                if !runs.iter().any(|r| r.contains(needed)) {
                    problems.push(format!(
                        ".ci/lab/classroom.yml: no step of job `grade` runs {needed}"
                    ));
                }
            }
        }
    }

    // Vagrantfile: no Ruby here, so only its shape: every block closed,
    // and the provisioner runs the script.
    let vagrant = read(".ci/lab/Vagrantfile")?;
    let code: Vec<&str> = vagrant
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .collect();
    let opened = code
        .iter()
        .filter(|l| l.ends_with(" do") || l.contains(" do |"))
        .count();
    let closed = code.iter().filter(|l| **l == "end").count();
    if opened != closed {
        problems.push(format!(
            ".ci/lab/Vagrantfile opens {opened} blocks and closes {closed}"
        ));
    }
    if !vagrant.contains(PROVISION) {
        problems.push(format!(".ci/lab/Vagrantfile does not run {PROVISION}"));
    }

    // The dev container: JSON with comments, privileged, built from the list.
    let json = read(".ci/lab/devcontainer/devcontainer.json")?;
    match serde_json::from_str::<serde_json::Value>(&without_comment_lines(&json)) {
        Err(e) => problems.push(format!(".ci/lab/devcontainer/devcontainer.json: {e}")),
        Ok(v) if v["privileged"] != true => problems.push(
            ".ci/lab/devcontainer/devcontainer.json: not privileged, where no namespace test can pass"
                .into(),
        ),
        Ok(_) => {}
    }
    let dockerfile = read(".ci/lab/devcontainer/Dockerfile")?;
    if !(dockerfile.contains(PACKAGES) && dockerfile.contains("install-packages")) {
        problems.push(format!(
            ".ci/lab/devcontainer/Dockerfile does not install {PACKAGES} with {INSTALL}"
        ));
    }

    if !problems.is_empty() {
        bail!(
            "the lab machines' files disagree ({} found):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    println!(
        "check-lab: {} packages in {PACKAGES}, installed by {INSTALL} for CI and every lab file; \
         the YAML, JSON and shell parse (the Vagrantfile is checked by its shape only)",
        list.len()
    );
    Ok(())
}

/// The one document of a YAML file.
fn yaml(text: &str) -> Result<Yaml> {
    let mut docs = YamlLoader::load_from_str(text).context("not valid YAML")?;
    if docs.len() != 1 {
        bail!("holds {} YAML documents, not one", docs.len());
    }
    Ok(docs.remove(0))
}

/// The strings of a YAML list, a list's lists flattened (cloud-init's
/// `runcmd` takes both `- cmd` and `- [sh, -c, cmd]`).
fn strings(value: &Yaml) -> Vec<String> {
    match value {
        Yaml::String(s) => vec![s.clone()],
        Yaml::Array(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// JSON with comments (devcontainer.json's dialect) as plain JSON: lines
/// that are only a `//` comment go; `//` inside a string stays.
fn without_comment_lines(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_lines_without_comments() {
        assert_eq!(
            packages("# head\n\ngcc\nbusybox-static  # why\n"),
            ["gcc", "busybox-static"]
        );
        assert!(is_package_name("qemu-system-x86") && is_package_name("libc6-dev"));
        assert!(!is_package_name("Gcc") && !is_package_name("a") && !is_package_name("-x"));
    }

    #[test]
    fn yaml_errors_are_caught() {
        assert!(yaml("a: [1, 2\n").is_err());
        assert!(yaml("a: 1\n---\nb: 2\n").is_err());
        let doc = yaml("runcmd:\n  - echo hi\n  - [sh, -c, 'x y']\n").unwrap();
        assert_eq!(strings(&doc["runcmd"]), ["echo hi", "sh", "-c", "x y"]);
    }

    #[test]
    fn this_checkouts_lab_files_agree() {
        check(&crate::workspace_root()).unwrap();
    }
}
