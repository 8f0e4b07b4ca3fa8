//! The command line: global options and one enum variant per subcommand (a new subcommand is
//! one more variant here and one more module).

#[cfg(feature = "server")]
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use wasmtx::Mode;

const EXIT_CODES: &str = "\
Exit codes: 0 success, 1 internal or store failure, 2 usage error, 3 bad input, 4 unknown rule, \
version or model type, 5 conflict (lock timeout, concurrent change, active version), 6 rule \
refused (an upload that is not a valid rule, or an invocation the rule rejected or failed), \
7 store unreachable or every sandbox slot busy.";

/// Run sandboxed WebAssembly business rules on models in Redis (or an embedded store).
///
/// Without --store (or REDIS_URL) every command works on the embedded store, kept in the data
/// directory (--data-dir, default .wasmtx in the current directory) between commands.
#[derive(Debug, Parser)]
#[command(name = "wasmtx", version, after_help = EXIT_CODES)]
#[command(after_long_help = concat!(
    "Examples:\n",
    "  wasmtx model define examples/models/account.toml\n",
    "  wasmtx rule upload bank-transfer bank_transfer.wasm\n",
    "  wasmtx model set Account alice balance 100\n",
    "  wasmtx invoke bank-transfer -m Account:alice -m Account:bob --input '{\"amount\": 30}'\n",
    "  wasmtx --store redis://127.0.0.1:6379 serve --addr 127.0.0.1:8080\n\n",
    "Exit codes: 0 success, 1 internal or store failure, 2 usage error, 3 bad input, 4 unknown rule, ",
    "version or model type, 5 conflict (lock timeout, concurrent change, active version), 6 rule ",
    "refused (an upload that is not a valid rule, or an invocation the rule rejected or failed), ",
    "7 store unreachable or every sandbox slot busy.",
))]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Where models, rules and schemas live: a Redis URL (redis://host:port/db), or `memory`
    /// for the embedded store kept in --data-dir [default: memory].
    #[arg(long, visible_alias = "redis", env = "REDIS_URL", global = true, value_name = "URL")]
    pub store: Option<String>,
    /// Prefix of every Redis key (models and registry).
    #[arg(long, env = "WASMTX_PREFIX", global = true, default_value = "wasmtx")]
    pub prefix: String,
    /// Have Redis say which cached models other clients changed (client-side tracking, a
    /// standalone server only): worth it where several engines write the same models.
    #[arg(long, env = "WASMTX_CLIENT_TRACKING", global = true)]
    pub client_tracking: bool,
    /// Where the embedded store keeps models, rules and schemas between commands.
    #[arg(long, env = "WASMTX_DATA_DIR", global = true, default_value = ".wasmtx", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Where to keep precompiled rules [default: <data-dir>/cache with the embedded store, none
    /// with Redis].
    #[arg(long, env = "WASMTX_CACHE_DIR", global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Keep no precompiled rules on disk.
    #[arg(long, global = true, conflicts_with = "cache_dir")]
    pub no_cache: bool,
    /// The largest rule accepted, in bytes.
    #[arg(long, env = "WASMTX_MAX_RULE_BYTES", global = true, default_value_t = 8 << 20, value_name = "BYTES")]
    pub max_rule_bytes: usize,
    /// How many entries the audit trail keeps (the newest), for the commands and the server
    /// that change the registry.
    #[arg(long, env = "WASMTX_AUDIT_RETENTION", global = true, default_value = "10000", value_name = "N")]
    pub audit_retention: usize,
    /// Print machine-readable JSON (errors too, on stderr).
    #[arg(long, global = true)]
    pub json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload, list, show, activate and delete rules.
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Define model schemas; read, set and delete models.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Run a rule's active version on models and print its output and what it wrote.
    #[command(after_help = concat!(
        "Examples:\n",
        "  wasmtx invoke bank-transfer -m Account:alice -m Account:bob --action transfer --input '{\"amount\": 30}'\n",
        "  wasmtx invoke level-up -m GameCharacter:hero --mode optimistic --input-file input.json",
    ))]
    Invoke(InvokeArgs),
    /// Serve the HTTP API.
    #[cfg(feature = "server")]
    #[command(after_help = concat!(
        "Examples:\n",
        "  wasmtx serve                                   # embedded store, 127.0.0.1:8080\n",
        "  WASMTX_TOKEN=an-admin-secret wasmtx --store redis://127.0.0.1:6379 serve\n",
        "  wasmtx --store redis://127.0.0.1:6379 serve --tokens-file /etc/wasmtx/tokens --addr 10.0.0.5:8080\n\n",
        "Tokens: `--token` is one `admin` token named `default`; --tokens-file (one `name:scope:secret` a line, ",
        "# comments) and WASMTX_TOKENS (entries separated by commas) add named ones. Scopes: read (GET but ",
        "/v1/audit), invoke (read + POST .../invoke), admin (everything). With any token every /v1 route needs one ",
        "(401 without or with an unknown one, 403 with too weak a scope); /healthz is open. A non-loopback address ",
        "needs a token, and gets a warning: the API is plain HTTP, put a TLS-terminating proxy in front. ",
        "SIGHUP (or a change of the file, checked every second) reloads the tokens.",
    ))]
    Serve(ServeArgs),
    /// List the newest entries of the audit trail: every upload, activation, rollback,
    /// deletion and schema change, with who made it (the token's name over HTTP, `cli:<user>`
    /// for a command).
    Audit(AuditArgs),
    /// Run a fixture file of given/when/then cases against a rule, each case on a fresh
    /// embedded store (no Redis, no data directory).
    #[command(after_help = concat!(
        "Examples:\n",
        "  wasmtx test examples/rules/level-up/tests/fixtures.toml\n",
        "  wasmtx test tests/fixtures.toml --rule .      # a Rust crate or an AssemblyScript project\n",
        "  wasmtx test tests/fixtures.toml --rule target/wasm32-unknown-unknown/release/my_rule.wasm\n",
        "  wasmtx --json test tests/fixtures.toml --case overflow\n\n",
        "The format is documented in the Rust guide (guest-sdk/rust/README.md); error kinds in ERRORS.md. ",
        "Exit codes: 0 every case passed, 1 a case failed, 3 the fixture file cannot be read or parsed (an ",
        "unknown error kind included), 6 the rule or a schema cannot be loaded or built, or the .wasm is stale.",
    ))]
    Test(TestArgs),
    /// Create a rule project from a template: a model schema, the rule, a unit test on the
    /// harness, a fixture file and a README; it builds and its tests pass as it is.
    #[command(after_help = concat!(
        "Examples:\n",
        "  wasmtx new rust points              # then: cd points && wasmtx test tests/fixtures.toml\n",
        "  wasmtx new assemblyscript my-rule   # then: cd my-rule && npm install && npm test\n\n",
        "The project depends on the SDK of the wasmtx checkout this command was built from, by path (or the ",
        "one --wasmtx-dir names); without a checkout, on the published versions. Exit codes: 0 created, 3 the ",
        "name is not a package name (kind invalid_rule_name) or the directory exists and is not empty.",
    ))]
    New(NewArgs),
    /// Build the rule project in a directory (a Rust crate or an AssemblyScript project), check
    /// the result as an upload would, and print the artefact, its size, digest and exports.
    #[command(after_help = concat!(
        "Examples:\n",
        "  wasmtx build                 # the project in this directory\n",
        "  wasmtx --json build rules/points\n\n",
        "A Rust crate is built with `cargo build --release --target wasm32-unknown-unknown` (the target is ",
        "installed with rustup if missing); an AssemblyScript project with `npm install` and `npm run build` ",
        "when its sources are newer than its output. Exit codes: 0 built and valid, 3 not a rule project, ",
        "6 the build failed (kind build_failed) or the result is not a valid rule (the upload's error kinds).",
    ))]
    Build(BuildArgs),
}

impl Command {
    /// Whether this is `wasmtx serve` (which logs at info level by default).
    pub fn is_serve(&self) -> bool {
        #[cfg(feature = "server")]
        if matches!(self, Self::Serve(_)) {
            return true;
        }
        false
    }
}

/// `wasmtx rule ...`.
#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Validate and store a rule (a component, or a core module built for wasm32-unknown-unknown
    /// with the guest SDK) as a new version. A name's first version becomes active.
    #[command(
        after_help = "Example:\n  wasmtx rule upload bank-transfer target/wasm32-unknown-unknown/release/bank_transfer.wasm --activate"
    )]
    Upload {
        /// The rule's name.
        name: String,
        /// The .wasm file.
        file: PathBuf,
        /// Make this version the active one.
        #[arg(long)]
        activate: bool,
    },
    /// List rules with their active version.
    List,
    /// Show a rule's versions: size, hash, WIT version, upload time, exports.
    Show {
        /// The rule's name.
        name: String,
    },
    /// Make a version the active one (roll forward or back) for every engine.
    #[command(after_help = "Example:\n  wasmtx rule activate bank-transfer 1")]
    Activate {
        /// The rule's name.
        name: String,
        /// The version number.
        version: u64,
    },
    /// Delete an inactive version, or the whole rule with --all.
    #[command(after_help = "Examples:\n  wasmtx rule delete bank-transfer 1\n  wasmtx rule delete bank-transfer --all")]
    Delete {
        /// The rule's name.
        name: String,
        /// The version to delete.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        version: Option<u64>,
        /// Delete every version, the active one included.
        #[arg(long)]
        all: bool,
    },
}

/// `wasmtx model ...`.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Define (or redefine) a model type from a schema file (TOML, or JSON by extension).
    #[command(after_help = "Example:\n  wasmtx model define examples/models/account.toml")]
    Define {
        /// The schema file.
        file: PathBuf,
    },
    /// List model types.
    List,
    /// Show a model type's fields.
    Show {
        /// The model type.
        model_type: String,
    },
    /// Delete a model type's schema. Its models' data stays in the store (defining the type
    /// again makes it readable again); until then, invocations naming the type are refused.
    #[command(after_help = "Example:\n  wasmtx model undefine Account")]
    Undefine {
        /// The model type.
        model_type: String,
    },
    /// Print a model's fields (defaults if it was never written).
    #[command(after_help = "Example:\n  wasmtx model get Account alice")]
    Get {
        /// The model type.
        model_type: String,
        /// The model's key.
        key: String,
    },
    /// Set one field. VALUE is JSON (`100`, `"text"`, `[1, 2]`, `{"k": 1}`); for a str field,
    /// text that is not JSON is taken as is.
    #[command(
        after_help = "Examples:\n  wasmtx model set Account alice balance 100\n  wasmtx model set UserProfile u1 tags '[\"a\", \"b\"]'"
    )]
    Set {
        /// The model type.
        model_type: String,
        /// The model's key.
        key: String,
        /// The field.
        field: String,
        /// The new value.
        value: String,
    },
    /// Delete a model's data (it reads as its defaults again).
    Delete {
        /// The model type.
        model_type: String,
        /// The model's key.
        key: String,
    },
}

/// Parses `--mode`: one of [`Mode::ALL`], by [`Mode::as_str`], each with its summary in `--help`.
fn mode_parser() -> impl TypedValueParser<Value = Mode> {
    PossibleValuesParser::new(Mode::ALL.map(|mode| PossibleValue::new(mode.as_str()).help(mode.summary())))
        .try_map(|name| name.parse::<Mode>())
}

/// `wasmtx invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The rule's name.
    pub rule: String,
    /// A model, as Type:key; repeat in the order the rule expects.
    #[arg(short, long = "model", value_name = "TYPE:KEY")]
    pub models: Vec<String>,
    /// The action name (the lock name in lock mode) [default: run].
    #[arg(short, long)]
    pub action: Option<String>,
    /// How to keep the models consistent.
    #[arg(long, default_value = "lock", value_parser = mode_parser())]
    pub mode: Mode,
    /// The rule's input, JSON.
    #[arg(short, long, default_value = "null", conflicts_with = "input_file")]
    pub input: String,
    /// Read the input JSON from a file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,
    /// Total attempts for retryable failures [default: the engine's policy].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,
    /// An idempotency key: invoking again with the same key (after a timeout, say) applies
    /// nothing and prints the first outcome, marked as a replay.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

/// `wasmtx serve`.
#[cfg(feature = "server")]
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, env = "WASMTX_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// One token of scope `admin`, named `default` (a non-loopback address needs a token).
    #[arg(long, env = "WASMTX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file of named tokens, one `name:scope:secret` a line (scopes: read, invoke, admin).
    #[arg(long, env = "WASMTX_TOKENS_FILE", value_name = "PATH")]
    pub tokens_file: Option<PathBuf>,
    /// Named tokens, `name:scope:secret` separated by commas.
    #[arg(long, env = "WASMTX_TOKENS", hide_env_values = true, value_name = "ENTRIES")]
    pub tokens: Option<String>,
    /// Let anyone read (every GET under /v1 but /v1/audit) without a token.
    #[arg(long)]
    pub public_reads: bool,
    /// Who may read /metrics: `open`, `token` (any scope), or `auto`: open on a loopback
    /// address, token elsewhere.
    #[arg(long, default_value = "auto", value_parser = ["auto", "open", "token"])]
    pub metrics: String,
    /// How long a client has to send a request's headers (and how long an idle connection is
    /// kept).
    #[arg(long, default_value = "10000", value_name = "MS")]
    pub header_timeout_ms: u64,
    /// Largest request head (request line and headers), in bytes (at least 8192); larger: 431.
    #[arg(long, default_value = "65536", value_name = "BYTES")]
    pub header_bytes: usize,
    /// How long a client has to send a request's body once its headers arrived; then 408.
    #[arg(long, default_value = "30000", value_name = "MS")]
    pub body_timeout_ms: u64,
    /// Most requests handled at once (/healthz aside); more get 503 with Retry-After.
    #[arg(long, default_value = "512", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_in_flight: u64,
    /// Most invocations of one rule at once; more get 503 with Retry-After.
    #[arg(long, default_value = "128", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_invocations_per_rule: u64,
    /// Largest request body, in bytes [default: --max-rule-bytes + 64 KiB].
    #[arg(long, value_name = "BYTES")]
    pub body_limit: Option<usize>,
    /// Longest time a newly activated version can go unseen if a change announcement is lost.
    #[arg(long, default_value = "1000", value_name = "MS")]
    pub refresh_ms: u64,
    /// How long a shutdown waits for in-flight requests.
    #[arg(long, default_value = "30000", value_name = "MS")]
    pub drain_timeout_ms: u64,
}

/// `wasmtx new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The rule's language.
    #[arg(value_enum)]
    pub language: ProjectLanguage,
    /// The project's name: the rule's and the package's (lowercase letters, digits, `-`).
    pub name: String,
    /// Where to create it [default: ./NAME]; it must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The wasmtx checkout whose SDK the project uses by path [default: the one this command
    /// was built from, if it is still there; else the published SDK by version].
    #[arg(long, value_name = "DIR")]
    pub wasmtx_dir: Option<PathBuf>,
    /// Depend on the published SDK by version, even with a checkout at hand.
    #[arg(long, conflicts_with = "wasmtx_dir")]
    pub published: bool,
}

/// The languages `wasmtx new` has a template for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ProjectLanguage {
    /// A Rust crate built for wasm32-unknown-unknown.
    Rust,
    /// An AssemblyScript project built with the SDK's `wasmtx-as`.
    #[value(name = "assemblyscript", alias = "as")]
    AssemblyScript,
}

/// `wasmtx build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The project's directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// `wasmtx audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// How many entries, newest first.
    #[arg(long, default_value = "100", value_name = "N")]
    pub limit: usize,
}

/// `wasmtx test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The fixture file (TOML).
    pub file: PathBuf,
    /// The rule: the directory of a Rust rule crate or an AssemblyScript project (built first),
    /// or a .wasm file (refused if older than its project's sources) [default: the file's
    /// `rule`, relative to the file].
    #[arg(long, value_name = "PATH")]
    pub rule: Option<PathBuf>,
    /// Run only the cases whose name contains this text.
    #[arg(long, value_name = "TEXT")]
    pub case: Option<String>,
}
