//! The `wasmtx` command: manage rules and models, invoke rules, serve the HTTP API.
//! See `wasmtx --help`.

// The modules live in `src/bin/wasmtx/` (a binary's root file looks for modules beside it).
#[path = "wasmtx/args.rs"]
mod args;
#[path = "wasmtx/audit_cmd.rs"]
mod audit_cmd;
#[path = "wasmtx/build_cmd.rs"]
mod build_cmd;
#[path = "wasmtx/datadir.rs"]
mod datadir;
#[path = "wasmtx/failure.rs"]
mod failure;
#[path = "wasmtx/invoke_cmd.rs"]
mod invoke_cmd;
#[path = "wasmtx/model_cmd.rs"]
mod model_cmd;
#[path = "wasmtx/new_cmd.rs"]
mod new_cmd;
#[path = "wasmtx/output.rs"]
mod output;
#[path = "wasmtx/rule_cmd.rs"]
mod rule_cmd;
#[cfg(feature = "server")]
#[path = "wasmtx/serve_cmd.rs"]
mod serve_cmd;
#[path = "wasmtx/test_cmd.rs"]
mod test_cmd;
#[path = "wasmtx/workspace.rs"]
mod workspace;

use std::process::ExitCode;

use clap::Parser as _;

use crate::args::{Cli, Command};
use crate::failure::Failure;
use crate::output::Output;
use crate::workspace::{Purpose, Workspace};

/// jemalloc: less CPU per invocation than the system allocator under many threads, and memory
/// handed back as it decays (the benchmark compares both).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    let result = init_tracing(cli.command.is_serve())
        .and_then(|()| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::new(wasmtx::ErrorClass::Internal, wasmtx::ErrorKind::Runtime, e.to_string()))
        })
        .and_then(|runtime| runtime.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if json {
                eprintln!("{}", failure.to_json());
            } else {
                eprintln!("wasmtx: error: {failure}");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let out = Output { json: cli.global.json };
    match cli.command {
        #[cfg(feature = "server")]
        Command::Serve(args) => serve_cmd::run(args, &cli.global).await,
        // A fresh embedded store per case: no backend to open.
        Command::Test(args) => test_cmd::run(&args, out),
        Command::Build(args) => build_cmd::run(&args, out),
        Command::New(args) => new_cmd::run(&args, out),
        command => {
            let mut workspace = Workspace::open(&cli.global, Purpose::COMMAND).await?;
            let result = match command {
                Command::Rule(c) => rule_cmd::run(c, &workspace, out).await,
                Command::Model(c) => model_cmd::run(c, &workspace, out).await,
                Command::Invoke(args) => invoke_cmd::run(args, &workspace, out).await,
                // Handled above.
                #[cfg(feature = "server")]
                Command::Serve(_) => Ok(()),
                Command::Audit(args) => audit_cmd::run(&args, &workspace, out).await,
                Command::Test(_) | Command::Build(_) | Command::New(_) => Ok(()),
            };
            // What a failed command wrote (nothing, by the engine's contract) is saved too.
            workspace.save()?;
            result
        }
    }
}

/// Logs to stderr, filtered by `WASMTX_LOG` (default: warnings, and info for `serve`), as text
/// (ANSI colours only when stderr is a terminal and `NO_COLOR` is unset) or, with
/// `WASMTX_LOG_FORMAT=json`, one JSON object per line.
///
/// # Errors
/// Bad input for a `WASMTX_LOG_FORMAT` other than `text` or `json`.
fn init_tracing(serving: bool) -> Result<(), Failure> {
    use std::io::IsTerminal as _;

    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASMTX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let format = std::env::var("WASMTX_LOG_FORMAT").unwrap_or_default();
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    match format.as_str() {
        "" | "text" => {
            let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            logs.with_ansi(ansi).init();
        }
        "json" => logs.json().with_ansi(false).with_current_span(true).init(),
        other => return Err(Failure::input(format!("WASMTX_LOG_FORMAT is {other:?}: use `text` or `json`"))),
    }
    Ok(())
}
