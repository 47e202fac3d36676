//! `job inspect-files`: tells who owns the root of the System FileStorage claim (mounted read-only),
//! so the copy's Pod can be given the group that owns the installation's files. Reads metadata
//! only: a root no one but its owner may enter is still inspected.

use super::report::{FileStorageOwner, StepReport};
use super::{InspectArgs, JobError};
use std::os::unix::fs::MetadataExt;

/// The owner, group and mode of the claim's root.
pub fn run(args: &InspectArgs) -> Result<StepReport, JobError> {
    let root = std::fs::metadata(&args.source).map_err(|error| JobError::io("inspecting", &args.source, error))?;
    Ok(StepReport::InspectFiles(FileStorageOwner { uid: root.uid(), gid: root.gid(), mode: root.mode() & 0o7777 }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::scratch;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn reports_the_roots_owner_group_and_mode() {
        let root = scratch("inspect");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o2750)).expect("mode");
        let metadata = std::fs::metadata(&root).expect("metadata");
        let report = run(&InspectArgs { source: root.clone(), termination_log: root.join("log") }).expect("inspected");
        let expected = FileStorageOwner { uid: metadata.uid(), gid: metadata.gid(), mode: 0o2750 };
        assert_eq!(report, StepReport::InspectFiles(expected));
        let missing = run(&InspectArgs { source: root.join("absent"), termination_log: root.join("log") });
        assert!(matches!(missing, Err(JobError::Io { .. })));
        std::fs::remove_dir_all(root).expect("cleanup");
    }
}
