//! Shared helpers: running commands with a visible `$ cmd` echo, capturing
//! their output, and reading cargo's `test result:` lines.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitStatus, Output, Stdio};

use anyhow::{bail, Context, Result};

/// Renders a command as a shell-like line (environment changes set with
/// [`Command::env`] first, then the program and its quoted arguments).
pub fn display(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            parts.push(format!(
                "{}={}",
                key.to_string_lossy(),
                quote(value.to_string_lossy().as_ref())
            ));
        }
    }
    parts.push(quote(&cmd.get_program().to_string_lossy()));
    parts.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    parts.join(" ")
}

/// Quotes one word for display if it contains characters a shell would split on.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Prints the `$ cmd` echo line for a command about to run.
pub fn echo(cmd: &Command) {
    println!("$ {}", display(cmd));
    let _ = std::io::stdout().flush();
}

/// Runs a command with its stdout and stderr going straight to the terminal,
/// after echoing it. Returns whether it exited successfully; an error only if
/// it could not be started at all.
pub fn run(cmd: &mut Command) -> Result<bool> {
    echo(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", display(cmd)))?;
    Ok(status.success())
}

/// Like [`run`] but fails with a clear message when the command fails.
pub fn run_ok(cmd: &mut Command) -> Result<()> {
    if !run(cmd)? {
        bail!("command failed: `{}`", display(cmd));
    }
    Ok(())
}

/// Runs a command quietly (no echo) and captures stdout and stderr.
pub fn capture(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", display(cmd)))
}

/// Runs a command quietly and returns its stdout as text, failing (with its
/// stderr in the message) when it exits unsuccessfully.
pub fn capture_stdout(cmd: &mut Command) -> Result<String> {
    let out = capture(cmd)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\n{}",
            display(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command after echoing it, streaming its stdout and stderr (merged,
/// in order) to our stdout line by line, and hands every line to `on_line`.
pub fn run_streaming(cmd: &mut Command, mut on_line: impl FnMut(&str)) -> Result<ExitStatus> {
    echo(cmd);
    let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
    let writer2 = writer.try_clone().context("cannot duplicate a pipe")?;
    cmd.stdin(Stdio::null()).stdout(writer).stderr(writer2);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{}`", display(cmd)))?;
    // The Command still holds the write ends; drop them so we see EOF.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut out = std::io::stdout();
    for line in BufReader::new(reader).split(b'\n') {
        let line = line.context("reading command output")?;
        let line = String::from_utf8_lossy(&line);
        let _ = writeln!(out, "{line}");
        on_line(&line);
    }
    child.wait().context("waiting for command")
}

/// Pass/fail counts, summed over a suite.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Checks or tests that passed.
    pub passed: u64,
    /// Checks or tests that failed.
    pub failed: u64,
}

impl Tally {
    /// Records one check and prints `ok: name` or `FAILED: name`.
    pub fn record(&mut self, name: &str, ok: bool) {
        if ok {
            self.passed += 1;
            println!("ok: {name}");
        } else {
            self.failed += 1;
            println!("FAILED: {name}");
        }
    }

    /// Records the outcome of running `cmd` (see [`run`]) as one check.
    pub fn check_cmd(&mut self, name: &str, cmd: &mut Command) -> Result<bool> {
        let ok = run(cmd)?;
        self.record(name, ok);
        Ok(ok)
    }

    /// Adds another tally to this one.
    pub fn add(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
}

/// Parses one of cargo test's summary lines,
/// `test result: ok. 3 passed; 0 failed; 1 ignored; ...`, into a tally.
/// Returns `None` for any other line.
pub fn parse_test_result(line: &str) -> Option<Tally> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, counts) = rest.split_once(". ")?;
    let mut tally = Tally::default();
    let (mut saw_passed, mut saw_failed) = (false, false);
    for part in counts.split(';') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => (tally.passed, saw_passed) = (n, true),
            "failed" => (tally.failed, saw_failed) = (n, true),
            _ => {}
        }
    }
    (saw_passed && saw_failed).then_some(tally)
}

/// Runs a `cargo test`-like command (also `cargo miri test`), streaming its
/// output, and sums every `test result:` line. A command that fails without
/// reporting any failed test (a build error, a crashed test binary) counts
/// one extra failure, with a message saying so.
pub fn run_cargo_tests(cmd: &mut Command) -> Result<Tally> {
    let mut tally = Tally::default();
    let status = run_streaming(cmd, |line| {
        if let Some(t) = parse_test_result(line) {
            tally.add(t);
        }
    })?;
    if !status.success() && tally.failed == 0 {
        println!(
            "FAILED: the command failed ({status}) without a failing test: build error or crash"
        );
        tally.failed += 1;
    }
    Ok(tally)
}

/// Looks for an executable named `name` on `PATH` (and in `~/.cargo/bin`).
pub fn which(name: impl AsRef<OsStr>) -> Option<std::path::PathBuf> {
    let name = name.as_ref();
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(std::path::PathBuf::from(home).join("bin"));
    } else if let Some(home) = std::env::var_os("HOME") {
        dirs.push(std::path::PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Finds `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Looks for `pattern` in `log[*cursor..]` (a child's captured output);
/// when found, returns the text from the cursor through the end of the
/// matching line (or of the log) and moves the cursor past it.
pub fn take_through_line(log: &[u8], cursor: &mut usize, pattern: &str) -> Option<String> {
    let new = log.get(*cursor..)?;
    let pos = find(new, pattern.as_bytes())?;
    let after = pos + pattern.len();
    let end = new[after..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(new.len(), |i| after + i + 1);
    *cursor += end;
    Some(String::from_utf8_lossy(&new[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ok_and_failed_lines() {
        let t = parse_test_result(
            "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s",
        );
        assert_eq!(
            t,
            Some(Tally {
                passed: 12,
                failed: 0
            })
        );
        let t = parse_test_result("test result: FAILED. 3 passed; 2 failed; 0 ignored");
        assert_eq!(
            t,
            Some(Tally {
                passed: 3,
                failed: 2
            })
        );
        assert_eq!(parse_test_result("test foo ... ok"), None);
        assert_eq!(parse_test_result("running 3 tests"), None);
    }

    #[test]
    fn displays_commands_quoted() {
        let mut cmd = Command::new("cargo");
        cmd.env("RUSTDOCFLAGS", "-D warnings").args(["doc", "a b"]);
        assert_eq!(display(&cmd), "RUSTDOCFLAGS='-D warnings' cargo doc 'a b'");
    }

    #[test]
    fn streaming_sees_stdout_and_stderr() {
        let mut lines = Vec::new();
        let status = run_streaming(
            Command::new("sh").args(["-c", "echo one; echo two >&2"]),
            |l| lines.push(l.to_string()),
        )
        .unwrap();
        assert!(status.success());
        assert_eq!(lines, ["one", "two"]);
    }
}
