//! Drives the PySafeguard side (`scripts/bench-py/bench.py serve`): one
//! long-lived Python process, one JSON command per line, one JSON answer per
//! line, so Python runs interleave with the Rust runs of the same round.

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::raw::BoxError;

/// The running Python side.
pub struct Python {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// A `python` command without the CA bundle variables that would override
/// pysafeguard's `verify=<ca.pem>`.
pub fn command(python: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE");
    cmd
}

impl Python {
    /// Starts `bench.py serve` and waits for it to sign in.
    pub async fn start(python: &Path, script: &Path, conn: &Path) -> Result<Self, BoxError> {
        let mut child = command(python)
            .arg(script)
            .arg("serve")
            .arg(conn)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let mut py = Python {
            child,
            stdin,
            stdout,
        };
        let ready = py.read().await?;
        if ready["ready"] != Value::Bool(true) {
            return Err(format!("bench.py did not start: {ready}").into());
        }
        Ok(py)
    }

    async fn read(&mut self) -> Result<Value, BoxError> {
        let line = self.stdout.next_line().await?.ok_or("bench.py exited")?;
        let v: Value = serde_json::from_str(&line)?;
        if let Some(e) = v.get("error") {
            return Err(format!("bench.py: {e}").into());
        }
        Ok(v)
    }

    /// Sends one command and returns its answer.
    pub async fn call(&mut self, command: Value) -> Result<Value, BoxError> {
        let mut line = serde_json::to_vec(&command)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await?;
        self.read().await
    }

    /// Asks the process to end and waits for it.
    pub async fn quit(mut self) {
        let _ = self.stdin.write_all(b"{\"op\": \"quit\"}\n").await;
        let _ = self.child.wait().await;
    }
}
