//! Shared set-up of the CLI's end-to-end tests: an emulator running on its
//! own runtime, and the built `safeguard` binary run against it with a
//! private configuration directory (tokens in files, never the keyring).
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use safeguard_emulator::{Control, Emulator, EmulatorConfig};

/// An emulator and the runtime that serves it.
pub struct Emu {
    /// The emulator.
    pub emu: Emulator,
    /// Keeps the emulator's tasks running.
    pub runtime: tokio::runtime::Runtime,
    /// The configuration directory of the CLI runs of this test.
    pub config: tempfile::TempDir,
}

impl Emu {
    /// Starts an emulator with the default configuration.
    pub fn start() -> Emu {
        Emu::start_with(|_| {})
    }

    /// Starts an emulator with `adjust`ed configuration.
    pub fn start_with(adjust: impl FnOnce(&mut EmulatorConfig)) -> Emu {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut config = EmulatorConfig::default();
        adjust(&mut config);
        let emu = runtime
            .block_on(Emulator::start(config))
            .expect("emulator starts");
        Emu {
            emu,
            runtime,
            config: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// `127.0.0.1:PORT` of the SPP side.
    pub fn host(&self) -> String {
        self.emu.spp_host()
    }

    /// The emulator's CA file.
    pub fn ca(&self) -> PathBuf {
        self.emu.connection().spp.ca.clone()
    }

    /// The fault-injection handle.
    pub fn control(&self) -> Control {
        self.emu.control()
    }

    /// The CLI's configuration directory.
    pub fn config_dir(&self) -> &Path {
        self.config.path()
    }

    /// `safeguard ARGS` with this test's environment (no SAFEGUARD_*
    /// variable of the caller's leaks in).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_safeguard"));
        for (k, _) in std::env::vars() {
            if k.starts_with("SAFEGUARD_") {
                c.env_remove(k);
            }
        }
        c.env("SAFEGUARD_CONFIG_DIR", self.config_dir())
            .env("SAFEGUARD_TOKEN_STORE", "file")
            .env("NO_COLOR", "1")
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs `safeguard ARGS` with `stdin` as its input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("safeguard runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("stdin written");
        Run::from(child.wait_with_output().expect("safeguard ends"), args)
    }

    /// Runs `safeguard ARGS`.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("safeguard runs"), args)
    }

    /// Signs the `default` profile in as Admin with PKCE.
    pub fn login_admin(&self) {
        self.login_admin_as("default");
    }

    /// Signs profile `name` in as Admin with PKCE.
    pub fn login_admin_as(&self, name: &str) {
        let ca = self.ca();
        let r = self.run_with_stdin(
            &[
                "--profile",
                name,
                "login",
                "--host",
                &self.host(),
                "--ca",
                ca.to_str().unwrap(),
                "--user",
                "Admin",
                "--password-stdin",
            ],
            "Admin123\n",
        );
        r.ok();
    }
}

/// What one run printed, and how it ended.
#[derive(Debug)]
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
    /// The arguments, for messages.
    pub args: String,
}

impl Run {
    fn from(o: Output, args: &[&str]) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            args: args.join(" "),
        }
    }

    /// Asserts success; returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "safeguard {} failed ({}):\nstdout: {}\nstderr: {}",
            self.args, self.code, self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts exit code `code`.
    pub fn fails_with(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "safeguard {}: expected exit {code}, got {}:\nstdout: {}\nstderr: {}",
            self.args, self.code, self.stdout, self.stderr
        );
        self
    }

    /// stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| {
            panic!(
                "safeguard {}: stdout is not JSON ({e}): {}",
                self.args, self.stdout
            )
        })
    }
}
