//! `wasmtx test`: run a fixture file of given/when/then cases on the embedded store
//! (`wasmtx::testing::fixtures`).

use wasmtx::ErrorClass;
use wasmtx::testing::fixtures::{Fixture, FixtureError};

use crate::args::TestArgs;
use crate::failure::Failure;
use crate::output::Output;

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
        let message = format!("{} of {} cases failed", report.failed, report.cases.len());
        Err(Failure::new(ErrorClass::Internal, "test_failed", message))
    }
}

fn failure(error: &FixtureError) -> Failure {
    Failure::new(error.class(), error.kind(), error.to_string())
}
