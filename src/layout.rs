//! What a backup contains and where it lands on the backup claim: the 3scale-operator layout, so
//! its restore reads our backups.

/// Secrets backed up, by name. A missing optional one is recorded as absent.
pub const SECRETS: [&str; 13] = [
    "system-smtp",
    "system-seed",
    "backend-internal-api",
    "backend-listener",
    "system-events-hook",
    "system-app",
    "system-recaptcha",
    "zync",
    "system-master-apicast",
    "system-memcache",
    "system-database",
    "backend-redis",
    "system-redis",
];

/// Secrets a working 3scale installation may lack (features not configured).
pub const OPTIONAL_SECRETS: [&str; 2] = ["system-smtp", "system-recaptcha"];

/// Secrets a restore never creates: they point at the databases, which the user restores (maybe
/// elsewhere) and points these at, as with 3scale-operator.
pub const NEVER_RESTORED: [&str; 3] = ["system-database", "backend-redis", "system-redis"];

/// ConfigMaps backed up, by name.
pub const CONFIG_MAPS: [&str; 2] = ["system-environment", "apicast-environment"];

/// Folder of the Secrets on the claim.
pub const SECRETS_DIR: &str = "secrets";
/// Folder of the ConfigMaps on the claim.
pub const CONFIG_MAPS_DIR: &str = "configmaps";
/// The APIManager object on the claim.
pub const APIMANAGER_FILE: &str = "apimanager/apimanager-backup.json";
/// Folder of the copied System FileStorage on the claim.
pub const FILE_STORAGE_DIR: &str = "system-filestorage-pvc";
/// The manifest of the backup (ours, not 3scale-operator's).
pub const MANIFEST_FILE: &str = "manifest.json";

/// Where the backup claim is mounted in the step Pods.
pub const BACKUP_MOUNT: &str = "/backup";
/// Where the System FileStorage claim is mounted in the copy step's Pod (read-only) and the restore step's Pod.
pub const FILE_STORAGE_MOUNT: &str = "/system-storage";
