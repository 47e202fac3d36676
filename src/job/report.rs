//! What a restore job step tells the reconciler when it succeeds: JSON in the Pod's termination
//! message (the reconciler never mounts the claims itself).

use crate::api::apimanager::SystemStorageClaim;
use serde::{Deserialize, Serialize};

/// The result of a successful step that tells the reconciler something.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "camelCase")]
pub enum StepReport {
    /// `job inspect-files`: who owns the System FileStorage claim's root.
    InspectFiles(FileStorageOwner),
    /// `job verify`: the backup was checked, and what it holds.
    #[serde(rename_all = "camelCase")]
    Verify {
        /// Whether the files match a manifest.
        checked: Checked,
        /// The backed-up APIManager.
        api_manager: BackedUpApiManager,
    },
    /// `job restore-objects`: Secrets and ConfigMaps created, and those left alone.
    #[serde(rename_all = "camelCase")]
    RestoreObjects {
        /// Created, as `Kind name`.
        created: Vec<String>,
        /// Already present and never overwritten, as `Kind name`.
        kept: Vec<String>,
    },
    /// `job restore-files`: the System FileStorage copied back and checked.
    #[serde(rename_all = "camelCase")]
    RestoreFiles {
        /// Files copied.
        files: usize,
        /// Links copied.
        links: usize,
        /// Whether the copy was checked against a manifest.
        verified: bool,
    },
    /// `job restore-s3-files`: the S3 System FileStorage objects written back.
    #[serde(rename_all = "camelCase")]
    RestoreS3Files {
        /// The bucket written to.
        bucket: String,
        /// Objects written.
        objects: usize,
        /// Their bytes.
        bytes: u64,
    },
    /// The last step of a backup: what the backup wrote to its destination, in bytes as stored
    /// (on a claim, the files' sizes; in a bucket, the objects uploaded by all its steps, sealed,
    /// without content an earlier backup had stored).
    #[serde(rename_all = "camelCase")]
    BackupWritten {
        /// Bytes written.
        bytes: u64,
    },
    /// `job restore-apimanager`: the APIManager created, or found already there.
    #[serde(rename_all = "camelCase")]
    RestoreApiManager {
        /// Its name.
        name: String,
        /// `false` when it existed already (then it was not touched).
        created: bool,
    },
}

/// The owner of a folder, numerically, as `ls -ln` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileStorageOwner {
    /// Owning user id.
    pub uid: u32,
    /// Owning group id: the group System's files are shared through.
    pub gid: u32,
    /// Permission bits (with setgid).
    pub mode: u32,
}

/// How far a backup could be checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Checked {
    /// Every file and link matches the manifest.
    Verified {
        /// Files checked.
        files: usize,
        /// Links checked.
        links: usize,
    },
    /// No manifest (3scale-operator's layout): restored unchecked.
    NoManifest,
}

/// The APIManager a backup holds: what a restore creates, and the claim its files go to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackedUpApiManager {
    /// Its name.
    pub name: String,
    /// Its System FileStorage claim as it asks for it; `None` when the files are in S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_storage: Option<SystemStorageClaim>,
    /// The group owning the backed-up System FileStorage folder: the installation's FileStorage
    /// group, which the restored files get; `None` when the backup holds no files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_storage_group: Option<u32>,
    /// When the backup holds S3 System FileStorage objects: the Secret the APIManager names for
    /// its bucket (empty when it names none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_storage_s3_secret: Option<String>,
}

impl StepReport {
    /// The termination message carrying this report.
    pub fn to_message(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The report in a termination message, if it holds one.
    pub fn from_message(message: &str) -> Option<Self> {
        serde_json::from_str(message.trim()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_termination_message() {
        let reports = [
            StepReport::Verify {
                checked: Checked::Verified { files: 3, links: 1 },
                api_manager: BackedUpApiManager {
                    name: "example".into(),
                    system_storage: None,
                    file_storage_group: None,
                    file_storage_s3_secret: None,
                },
            },
            StepReport::Verify {
                checked: Checked::NoManifest,
                api_manager: BackedUpApiManager {
                    name: "example".into(),
                    system_storage: Some(SystemStorageClaim::default()),
                    file_storage_group: Some(0),
                    file_storage_s3_secret: None,
                },
            },
            StepReport::InspectFiles(FileStorageOwner { uid: 1001, gid: 0, mode: 0o750 }),
            StepReport::RestoreObjects { created: vec!["Secret zync".into()], kept: vec![] },
            StepReport::RestoreFiles { files: 2, links: 1, verified: true },
            StepReport::Verify {
                checked: Checked::Verified { files: 3, links: 0 },
                api_manager: BackedUpApiManager {
                    name: "example".into(),
                    system_storage: None,
                    file_storage_group: None,
                    file_storage_s3_secret: Some("fs-s3".into()),
                },
            },
            StepReport::RestoreS3Files { bucket: "files".into(), objects: 2502, bytes: 17 << 20 },
            StepReport::RestoreApiManager { name: "example".into(), created: true },
        ];
        for report in reports {
            assert_eq!(StepReport::from_message(&report.to_message()), Some(report));
        }
        assert_eq!(
            StepReport::RestoreFiles { files: 2, links: 1, verified: true }.to_message(),
            r#"{"step":"restoreFiles","files":2,"links":1,"verified":true}"#
        );
        assert_eq!(
            StepReport::InspectFiles(FileStorageOwner { uid: 1001, gid: 0, mode: 0o750 }).to_message(),
            r#"{"step":"inspectFiles","uid":1001,"gid":0,"mode":488}"#
        );
        assert_eq!(StepReport::from_message("required objects missing"), None);
    }
}
