//! The two guides, walked end to end from an empty temporary directory as a new user would:
//! every block the guide marks is written, run or checked against what the commands print.
//!
//! A guide marks its blocks with an HTML comment on the line before the fence (invisible when
//! the guide is rendered):
//!
//! - `<!-- test: file PATH -->`: the block is the content of `PATH` (relative to the current
//!   directory);
//! - `<!-- test: same PATH -->`: `PATH` must already hold exactly the block (a file `wasmtx new`
//!   made, which the guide shows);
//! - `<!-- test: run -->`: the block is a shell script, run with `bash -e` (a `cd` in it moves
//!   the walk's current directory);
//! - `<!-- test: console -->`: a transcript: each `$ command` is run (stdout and stderr
//!   together, any exit code) and what follows it, up to the next `$`, must be its output, line
//!   for line, up to timings, digests and sizes;
//! - `<!-- test: setup -->`: a block the walk replaces with its own setup (building `wasmtx`
//!   and putting it on the `PATH`: the walk uses the binary this test run built).
//!
//! In every block `/path/to/wasmtx` and `$WASMTX` are this checkout. The Rust walk copies the
//! workspace's `Cargo.lock` into the new crate when it enters it and builds offline, so it
//! needs no registry; the
//! AssemblyScript walk installs its two npm packages like the example rules' builds do. The
//! Rust guide's `cargo test` compiles the engine into the new crate: that step runs only with
//! `WASMTX_GUIDE_CARGO_TEST=1` (minutes of compiling; the fixture step runs the same cases).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail, ensure};
use wasmtx_examples::workspace_root;

use crate::process::{TempDir, wasmtx_bin};

/// One marked block of a guide.
#[derive(Debug)]
enum Step {
    File { path: String, content: String },
    Same { path: String, content: String, line: usize },
    Run { script: String, line: usize },
    Console { transcript: String, line: usize },
    Setup,
}

/// The marked blocks of a guide, in order.
fn steps(guide: &str) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut lines = guide.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let Some(directive) = line.trim().strip_prefix("<!-- test:").and_then(|d| d.strip_suffix("-->")) else {
            continue;
        };
        let directive = directive.trim().to_owned();
        let fence = lines.next().map(|(_, l)| l.trim_start().to_owned()).unwrap_or_default();
        ensure!(
            fence.starts_with("```"),
            "line {}: `<!-- test: {directive} -->` is not followed by a code block",
            n + 1
        );
        let mut content = String::new();
        for (_, l) in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            content.push_str(l);
            content.push('\n');
        }
        let line = n + 2;
        steps.push(match directive.split_once(' ') {
            Some(("file", path)) => Step::File { path: path.trim().to_owned(), content },
            Some(("same", path)) => Step::Same { path: path.trim().to_owned(), content, line },
            None if directive == "run" => Step::Run { script: content, line },
            None if directive == "console" => Step::Console { transcript: content, line },
            None if directive == "setup" => Step::Setup,
            _ => bail!("line {}: unknown directive `{directive}`", n + 1),
        });
    }
    Ok(steps)
}

/// A walk through one guide: the current directory and the environment commands run in.
struct Walk {
    name: &'static str,
    cwd: PathBuf,
    root: String,
    path_env: String,
    cargo_test: bool,
}

impl Walk {
    fn new(name: &'static str, dir: &Path) -> Result<Self> {
        let bin_dir = wasmtx_bin()?.parent().context("the binary's directory")?.display().to_string();
        Ok(Self {
            name,
            cwd: dir.to_path_buf(),
            root: workspace_root().display().to_string(),
            path_env: format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default()),
            cargo_test: std::env::var_os("WASMTX_GUIDE_CARGO_TEST").is_some(),
        })
    }

    fn substitute(&self, text: &str) -> String {
        text.replace("/path/to/wasmtx", &self.root)
    }

    /// `bash -e -c script` in the current directory; returns its exit code and output.
    fn shell(&self, script: &str) -> Result<(Option<i32>, String)> {
        let output = Command::new("bash")
            .arg("-e")
            .arg("-c")
            .arg(format!("{script}\n"))
            .current_dir(&self.cwd)
            .env("PATH", &self.path_env)
            .env("WASMTX", &self.root)
            .env("CARGO_NET_OFFLINE", "true")
            .env("NO_COLOR", "1")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("REDIS_URL")
            .env_remove("WASMTX_DATA_DIR")
            .env_remove("WASMTX_LOG")
            .stdin(Stdio::null())
            .output()
            .context("running bash")?;
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Ok((output.status.code(), text))
    }

    fn step(&mut self, step: &Step) -> Result<()> {
        match step {
            Step::Setup => Ok(()),
            Step::File { path, content } => {
                let target = self.cwd.join(path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&target, self.substitute(content))?;
                Ok(())
            }
            Step::Same { path, content, line } => {
                let target = self.cwd.join(path);
                let on_disk = std::fs::read_to_string(&target).with_context(|| format!("reading {path}"))?;
                ensure!(
                    on_disk == self.substitute(content),
                    "{} line {line}: {path} holds\n{on_disk}\nbut the guide shows\n{content}",
                    self.name
                );
                Ok(())
            }
            Step::Run { script, line } => {
                let script = self.substitute(script);
                if script.lines().any(|l| l.trim() == "cargo test --release") && !self.cargo_test {
                    return Ok(());
                }
                self.run_tracking_cwd(&format!("{script}\npwd >&3"), *line)?;
                let (manifest, lock) = (self.cwd.join("Cargo.toml"), self.cwd.join("Cargo.lock"));
                if manifest.is_file() && !lock.exists() {
                    // A new crate resolves against the workspace's lock file: no registry.
                    std::fs::copy(Path::new(&self.root).join("Cargo.lock"), lock)?;
                }
                Ok(())
            }
            Step::Console { transcript, line } => self.console(&self.substitute(transcript), *line),
        }
    }

    /// Runs `script`, which prints its final directory on fd 3, and moves there.
    fn run_tracking_cwd(&mut self, script: &str, line: usize) -> Result<()> {
        let marker = self.cwd.join(".guide-walk-cwd");
        let (code, output) = self.shell(&format!("exec 3>{:?}\n{script}", marker.display().to_string()))?;
        ensure!(code == Some(0), "{} line {line}: the block failed ({code:?}):\n{script}\n{output}", self.name);
        let cwd = std::fs::read_to_string(&marker).unwrap_or_default();
        let _ = std::fs::remove_file(&marker);
        if !cwd.trim().is_empty() {
            self.cwd = PathBuf::from(cwd.trim());
        }
        Ok(())
    }

    fn console(&self, transcript: &str, line: usize) -> Result<()> {
        let mut commands: Vec<(String, Vec<String>)> = Vec::new();
        for l in transcript.lines() {
            match l.strip_prefix("$ ") {
                Some(command) => commands.push((command.to_owned(), Vec::new())),
                None => match commands.last_mut() {
                    Some((_, expected)) => expected.push(l.to_owned()),
                    None => bail!("{} line {line}: a console block must start with `$ `", self.name),
                },
            }
        }
        for (command, expected) in commands {
            let (_, output) = self.shell(&command)?;
            let got: Vec<String> = output.lines().map(normalize).collect();
            let want: Vec<String> = expected.iter().map(|l| normalize(l)).collect();
            ensure!(
                got == want,
                "{} line {line}: `{command}` printed\n{}\nbut the guide shows\n{}",
                self.name,
                output.trim_end(),
                expected.join("\n")
            );
        }
        Ok(())
    }
}

/// A line with what changes from run to run replaced: timings (`0.73 ms`), digests
/// (`sha256 5e9ac25a1a7a`, or a whole SHA-256 in hex), sizes (`211578 bytes`, `30.7 KiB`) and the wall-clock times the
/// `wasmtx` command gives rules (`2026-12-02T06:47:00.000Z`).
fn normalize(line: &str) -> String {
    let line = without_times(line);
    let words: Vec<&str> = line.split(' ').collect();
    let mut out = Vec::with_capacity(words.len());
    for (i, word) in words.iter().enumerate() {
        let next = words.get(i + 1).copied().unwrap_or_default();
        let previous = if i > 0 { words[i - 1] } else { "" };
        let number = word.trim_start_matches('(');
        let is_number = !number.is_empty() && number.chars().all(|c| c.is_ascii_digit() || c == '.');
        let unit = next.trim_end_matches([',', ')', ';']);
        if is_number && matches!(unit, "ms" | "bytes" | "KiB") {
            out.push(format!("{}<n>", &word[..word.len() - number.len()]));
        } else if word.len() == 64 && word.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push("<sha>".to_owned());
        } else if previous.ends_with("sha256") {
            let hex = word.trim_end_matches([',', ')']);
            out.push(format!("<sha>{}", &word[hex.len()..]));
        } else {
            out.push((*word).to_owned());
        }
    }
    out.join(" ")
}

/// `line` with every ISO 8601 UTC time (`2026-12-02T06:47:00.000Z`) as `<time>`.
fn without_times(line: &str) -> String {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd.dddZ";
    let bytes = line.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let fits = bytes.len() - i >= SHAPE.len()
            && SHAPE.iter().zip(&bytes[i..]).all(|(&s, &b)| if s == b'd' { b.is_ascii_digit() } else { s == b });
        if fits {
            out.push_str("<time>");
            i += SHAPE.len();
        } else {
            let c = line[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn walk(name: &'static str, guide: &str) -> Result<()> {
    let text = std::fs::read_to_string(workspace_root().join(guide))?;
    let steps = steps(&text)?;
    ensure!(steps.len() >= 5, "{guide} marks only {} blocks", steps.len());
    let dir = TempDir::new(name)?;
    let mut walk = Walk::new(name, dir.path())?;
    for step in &steps {
        walk.step(step)?;
    }
    Ok(())
}

#[test]
fn normalizing_keeps_words_and_drops_what_changes() {
    assert_eq!(
        normalize("rule award v1 (sha256 5e9ac25a1a7a), lock mode, 1 attempt, 0.73 ms"),
        "rule award v1 (sha256 <sha>), lock mode, 1 attempt, <n> ms"
    );
    assert_eq!(normalize("uploaded a v1 (sha256 00ff, 211578 bytes, x)"), "uploaded a v1 (sha256 <sha>, <n> bytes, x)");
    assert_eq!(normalize("  ok    points add up (0.9 ms)"), "  ok    points add up (<n> ms)");
    assert_eq!(
        normalize(r#"  history append ["+5 at 2026-12-02T06:47:00.000Z"]"#),
        r#"  history append ["+5 at <time>"]"#
    );
}

#[test]
fn the_rust_guide_works_from_an_empty_directory() -> Result<()> {
    walk("rust-guide", "guest-sdk/rust/README.md")
}

#[test]
fn the_assemblyscript_guide_works_from_an_empty_directory() -> Result<()> {
    walk("assemblyscript-guide", "guest-sdk/assemblyscript/README.md")
}
