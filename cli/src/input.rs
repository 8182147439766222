//! Reading secrets the way the tool allows: a prompt without echo, stdin,
//! a file, or (for CI) an environment variable; never an argument.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use safeguard_sdk::SecretString;

use crate::exit::{usage, CliResult};

/// Where a secret comes from.
#[derive(Clone, Debug, Default)]
pub struct SecretSource<'a> {
    /// Read the first line of stdin.
    pub stdin: bool,
    /// Read this file (trailing newline removed).
    pub file: Option<&'a Path>,
    /// Read this environment variable when neither is given.
    pub env: Option<&'a str>,
}

/// Reads a secret from `source`, else prompts for it on the terminal
/// (no echo) with `prompt`.
pub fn read_secret(prompt: &str, source: SecretSource<'_>) -> CliResult<SecretString> {
    if source.stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| usage(format!("stdin: {e}")))?;
        return Ok(SecretString::from(
            line.trim_end_matches(['\r', '\n']).to_owned(),
        ));
    }
    if let Some(file) = source.file {
        let text =
            std::fs::read_to_string(file).map_err(|e| usage(format!("{}: {e}", file.display())))?;
        return Ok(SecretString::from(
            text.trim_end_matches(['\r', '\n']).to_owned(),
        ));
    }
    if let Some(value) = source
        .env
        .and_then(|v| std::env::var(v).ok())
        .filter(|v| !v.is_empty())
    {
        return Ok(SecretString::from(value));
    }
    if !std::io::stdin().is_terminal() && !std::io::stderr().is_terminal() {
        return Err(usage(format!(
            "{} needed and no terminal to ask on: use the --*-stdin or --*-file option{}",
            prompt.trim_end_matches([':', ' ']),
            source.env.map(|e| format!(" or {e}")).unwrap_or_default()
        )));
    }
    rpassword::prompt_password(prompt)
        .map(SecretString::from)
        .map_err(|e| usage(format!("cannot read from the terminal: {e}")))
}

/// Reads a line that is not secret (a user name) from the terminal.
pub fn read_line(prompt: &str) -> CliResult<String> {
    if !std::io::stdin().is_terminal() {
        return Err(usage(format!(
            "{} needed: give it as an option",
            prompt.trim_end_matches([':', ' '])
        )));
    }
    eprint!("{prompt}");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| usage(format!("stdin: {e}")))?;
    Ok(line.trim().to_owned())
}
