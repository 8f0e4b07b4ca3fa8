//! `wasmtx audit`: the newest entries of the audit trail, newest first.

use wasmtx::registry::audit::AuditError;
use wasmtx::{ErrorClass, ErrorKind};

use crate::args::AuditArgs;
use crate::failure::Failure;
use crate::output::Output;
use crate::workspace::Workspace;

pub async fn run(args: &AuditArgs, workspace: &Workspace, out: Output) -> Result<(), Failure> {
    let log = workspace.audit_log().await?;
    let entries = log.list(args.limit.max(1)).await.map_err(|e| match e {
        AuditError::Store(e) => Failure::from(e),
        other => Failure::new(ErrorClass::Internal, ErrorKind::DataDir, other.to_string()),
    })?;
    out.show(&entries, || {
        if entries.is_empty() {
            return "no audit entries".to_owned();
        }
        entries.iter().map(|e| e.to_line() + "\n").collect()
    });
    Ok(())
}
