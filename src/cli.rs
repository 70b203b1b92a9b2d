//! The command line the step binaries share, modelled on `docker run`.
//!
//! `stepN [OPTIONS] [COMMAND [ARG...]]`: options come first; the first word
//! that is not an option is the command, and everything after it is the
//! command's, even words that start with `-`. With no command, an interactive
//! shell runs.

use std::path::PathBuf;

use clap::Args;

use crate::exit::codes;
use crate::ns::Namespace;
use crate::rootfs::busybox;
use crate::spec::Spec;

/// Options every step has.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Print each setup step as it happens, with its time since start.
    #[arg(short, long)]
    pub verbose: bool,

    /// Set an environment variable in the container (KEY=VALUE, or KEY to pass
    /// the host's value on). May be repeated.
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,

    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR", default_value = "/")]
    pub workdir: PathBuf,

    /// The command to run and its arguments (default: an interactive shell).
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `--rootfs` (step 4 and later).
#[derive(Debug, Args)]
pub struct RootfsArgs {
    /// The container's root filesystem: any directory. Default: a busybox
    /// rootfs built on first use from the host's static busybox.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
}

/// `--hostname` (step 5 and later).
#[derive(Debug, Args)]
pub struct HostnameArgs {
    /// The container's host name (default: a random 12-digit id, as Docker).
    #[arg(long, short = 'H', value_name = "NAME")]
    pub hostname: Option<String>,
}

impl RunArgs {
    /// A spec for this command line with `namespaces` switched on.
    pub fn to_spec(&self, namespaces: &[Namespace]) -> Spec {
        let args = if self.command.is_empty() {
            vec!["/bin/sh".to_string()]
        } else {
            self.command.clone()
        };
        let mut spec = Spec::new(args);
        spec.namespaces = namespaces.to_vec();
        spec.verbose = self.verbose;
        spec.process.cwd = self.workdir.clone();
        spec.process.env.push("HOME=/root".into());
        if let Some(term) = std::env::var_os("TERM") {
            spec.process
                .env
                .push(format!("TERM={}", term.to_string_lossy()));
        }
        for entry in &self.env {
            let entry = match entry.split_once('=') {
                Some(_) => entry.clone(),
                None => format!("{entry}={}", std::env::var(entry).unwrap_or_default()),
            };
            set_env(&mut spec.process.env, entry);
        }
        spec
    }
}

/// Sets `KEY=VALUE` in `env`, replacing an earlier value of the same key.
pub fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry.split('=').next().unwrap_or_default().to_string();
    env.retain(|e| e.split('=').next() != Some(key.as_str()));
    env.push(entry);
}

impl RootfsArgs {
    /// The rootfs to use: the one given, or the default busybox one.
    pub fn resolve(&self) -> Result<PathBuf, busybox::BusyboxError> {
        match &self.rootfs {
            Some(dir) => Ok(dir.clone()),
            None => busybox::default_rootfs(),
        }
    }
}

impl HostnameArgs {
    /// The host name to use: the one given, or a short random id.
    pub fn resolve(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(crate::ns::uts::short_random_id)
    }
}

/// Runs `spec` and exits the process with the container's exit code, or
/// prints one line (`stepN: what happened: what to do`) and exits 125/126/127.
pub fn run_and_exit(program: &str, spec: &Spec) -> ! {
    match crate::parent::run(spec) {
        Ok(exit) => std::process::exit(exit.code()),
        Err(error) => fail(program, &error, error.exit_code()),
    }
}

/// Prints `program: error` on one line and exits with `code`.
pub fn fail(program: &str, error: &dyn std::error::Error, code: i32) -> ! {
    eprintln!("{program}: {error}");
    std::process::exit(code)
}

/// Exits with [`codes::SETUP_FAILED`] after printing `error`.
pub fn fail_setup(program: &str, error: &dyn std::error::Error) -> ! {
    fail(program, error, codes::SETUP_FAILED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn everything_after_the_command_is_the_commands() {
        let cli = Cli::try_parse_from(["step1", "-v", "ls", "-la", "-v", "/"]).unwrap();
        assert!(cli.run.verbose);
        assert_eq!(cli.run.command, ["ls", "-la", "-v", "/"]);
    }

    #[test]
    fn no_command_means_a_shell() {
        let cli = Cli::try_parse_from(["step1"]).unwrap();
        assert_eq!(cli.run.to_spec(&[]).process.args, ["/bin/sh"]);
    }

    #[test]
    fn env_entries_replace_earlier_ones() {
        let cli = Cli::try_parse_from(["step1", "-e", "PATH=/x", "-e", "A=1", "true"]).unwrap();
        let env = cli.run.to_spec(&[]).process.env;
        assert!(env.contains(&"PATH=/x".to_string()));
        assert!(env.contains(&"A=1".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
    }
}
