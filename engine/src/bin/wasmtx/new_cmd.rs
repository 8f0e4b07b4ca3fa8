//! `wasmtx new <rust|assemblyscript> <name>`: a ready rule project from a template shipped in
//! this binary (model schema, rule source, tests, fixture file, README), which builds and
//! passes its tests as it is.
//!
//! The templates depend on the guest SDK of the wasmtx checkout this binary was built from, by
//! path, while that checkout is still there (the crates are not published yet); `--wasmtx-dir`
//! names another checkout; with `--published`, or without a checkout, the projects depend on
//! the published versions.

use std::path::{Path, PathBuf};

use serde::Serialize;
use wasmtx::{ErrorClass, ErrorKind};

use crate::args::{NewArgs, ProjectLanguage};
use crate::failure::Failure;
use crate::output::Output;

/// One file of a template: where it goes in the project, and its text with `{{placeholders}}`.
/// (The Rust template's manifest is `Cargo.toml.in`: a `Cargo.toml` would make the folder a
/// package of its own, which `cargo package` leaves out of the engine's.)
type TemplateFile = (&'static str, &'static str);

const RUST: &[TemplateFile] = &[
    ("Cargo.toml", include_str!("templates/rust/Cargo.toml.in")),
    ("src/lib.rs", include_str!("templates/rust/src/lib.rs")),
    ("models/player.toml", include_str!("templates/rust/models/player.toml")),
    ("tests/rule.rs", include_str!("templates/rust/tests/rule.rs")),
    ("tests/fixtures.toml", include_str!("templates/rust/tests/fixtures.toml")),
    ("README.md", include_str!("templates/rust/README.md")),
    (".gitignore", include_str!("templates/rust/gitignore")),
];

const ASSEMBLYSCRIPT: &[TemplateFile] = &[
    ("package.json", include_str!("templates/assemblyscript/package.json")),
    (".npmrc", include_str!("templates/assemblyscript/npmrc")),
    ("tsconfig.json", include_str!("templates/assemblyscript/tsconfig.json")),
    ("assembly/index.ts", include_str!("templates/assemblyscript/assembly/index.ts")),
    ("models/counter.toml", include_str!("templates/assemblyscript/models/counter.toml")),
    ("tests/fixtures.toml", include_str!("templates/assemblyscript/tests/fixtures.toml")),
    ("README.md", include_str!("templates/assemblyscript/README.md")),
    (".gitignore", include_str!("templates/assemblyscript/gitignore")),
];

/// What `wasmtx new` made.
#[derive(Debug, Serialize)]
struct Created {
    name: String,
    language: &'static str,
    dir: String,
    files: Vec<&'static str>,
    /// How the project depends on the SDK: `path` (a checkout) or `version` (published).
    sdk: &'static str,
    next: String,
}

pub fn run(args: &NewArgs, out: Output) -> Result<(), Failure> {
    check_name(&args.name)?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() && std::fs::read_dir(&dir).map_or(true, |mut entries| entries.next().is_some()) {
        return Err(Failure::input(format!("{} already exists and is not empty", dir.display())));
    }
    let checkout = match &args.wasmtx_dir {
        Some(given) => Some(checkout_at(given)?),
        None if args.published => None,
        None => built_from(),
    };
    let (language, files, next) = match args.language {
        ProjectLanguage::Rust => ("rust", RUST, "wasmtx test tests/fixtures.toml"),
        ProjectLanguage::AssemblyScript => {
            ("assemblyscript", ASSEMBLYSCRIPT, "npm install --no-audit --no-fund && npm test")
        }
    };
    let values = placeholders(&args.name, checkout.as_deref());
    for (path, template) in files {
        let target = dir.join(path);
        let written = target
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&target, fill(template, &values)));
        written.map_err(|e| Failure::input(format!("cannot write {}: {e}", target.display())))?;
    }
    let created = Created {
        name: args.name.clone(),
        language,
        dir: dir.display().to_string(),
        files: files.iter().map(|(path, _)| *path).collect(),
        sdk: if checkout.is_some() { "path" } else { "version" },
        next: format!("cd {} && {next}", dir.display()),
    };
    out.show(&created, || {
        let kind = match args.language {
            ProjectLanguage::Rust => "a Rust",
            ProjectLanguage::AssemblyScript => "an AssemblyScript",
        };
        let mut text = format!("created {}, {kind} rule project:\n", created.dir);
        for file in &created.files {
            text.push_str(&format!("  {file}\n"));
        }
        if checkout.is_none() {
            text.push_str("the SDK is used by its published version (--wasmtx-dir names a checkout to use instead)\n");
        }
        text.push_str(&format!("next: {}", created.next));
        text
    });
    Ok(())
}

/// A project name is a rule name and a package name: lowercase ASCII letters, digits and `-`,
/// starting with a letter, at most 64 characters.
fn check_name(name: &str) -> Result<(), Failure> {
    let fits = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if fits {
        return Ok(());
    }
    Err(Failure::new(
        ErrorClass::BadInput,
        ErrorKind::InvalidRuleName,
        format!(
            "invalid project name {name:?}: use lowercase letters, digits and `-`, starting with a letter \
             (it is the rule's and the package's name)"
        ),
    ))
}

/// The checkout this binary was built from, if it is still where it was.
fn built_from() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    is_checkout(root).then(|| root.to_path_buf())
}

fn checkout_at(dir: &Path) -> Result<PathBuf, Failure> {
    let dir = std::path::absolute(dir).map_err(|e| Failure::input(format!("{}: {e}", dir.display())))?;
    if is_checkout(&dir) {
        Ok(dir)
    } else {
        Err(Failure::input(format!(
            "{} is not a wasmtx checkout (no guest-sdk/rust/Cargo.toml and guest-sdk/assemblyscript/package.json)",
            dir.display()
        )))
    }
}

fn is_checkout(dir: &Path) -> bool {
    dir.join("guest-sdk/rust/Cargo.toml").is_file() && dir.join("guest-sdk/assemblyscript/package.json").is_file()
}

/// The values of the templates' placeholders.
fn placeholders(name: &str, checkout: Option<&Path>) -> Vec<(&'static str, String)> {
    let version = env!("CARGO_PKG_VERSION");
    let minor = version.rsplit_once('.').map_or(version, |(major_minor, _)| major_minor);
    let (guest, engine, sdk) = match checkout {
        Some(root) => (
            format!("{{ path = {:?} }}", root.join("guest-sdk/rust").display().to_string()),
            format!("{{ path = {:?}, default-features = false }}", root.join("engine").display().to_string()),
            format!("file:{}", root.join("guest-sdk/assemblyscript").display()),
        ),
        None => {
            (format!("{minor:?}"), format!("{{ version = {minor:?}, default-features = false }}"), version.to_owned())
        }
    };
    vec![
        ("name", name.to_owned()),
        ("lib_name", name.replace('-', "_")),
        ("guest_dependency", guest),
        ("engine_dependency", engine),
        ("sdk_dependency", sdk),
    ]
}

/// `template` with each `{{key}}` replaced by its value.
fn fill(template: &str, values: &[(&'static str, String)]) -> String {
    values.iter().fold(template.to_owned(), |text, (key, value)| text.replace(&format!("{{{{{key}}}}}"), value))
}
