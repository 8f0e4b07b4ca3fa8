//! `wasmtx test`: run a fixture file of given/when/then cases on the embedded store
//! (`wasmtx::testing::fixtures`).

use wasmtx::ErrorClass;
use wasmtx::testing::fixtures::{Fixture, FixtureError, count};

use crate::args::TestArgs;
use crate::failure::Failure;
use crate::output::Output;
use wasmtx::ErrorKind;

pub fn run(args: &TestArgs, out: Output) -> Result<(), Failure> {
    let fixture = Fixture::from_path(&args.file).map_err(|e| failure(&e))?;
    let harness = fixture.harness(args.rule.as_deref()).map_err(|e| failure(&e))?;
    let report = fixture.run_matching(&harness, args.case.as_deref());
    out.show(&report, || report.to_string());
    if report.success() {
        Ok(())
    } else if report.cases.is_empty() {
        Err(Failure::input(format!(
            "no case of {} matches {:?}",
            args.file.display(),
            args.case.as_deref().unwrap_or("")
        )))
    } else {
        let message = format!("{} of {} failed", report.failed, count(report.cases.len(), "case"));
        Err(Failure::new(ErrorClass::Internal, ErrorKind::TestFailed, message))
    }
}

fn failure(error: &FixtureError) -> Failure {
    Failure::new(error.class(), error.error_kind(), error.to_string())
}
