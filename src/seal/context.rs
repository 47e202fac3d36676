//! What a sealed object is bound to. Its encoding is part of every segment's associated data, so
//! an object opened under another context (another backup, another path, another content name)
//! fails on its first segment.

use super::naming::ContentName;

/// The identity of a sealed object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context<'a> {
    /// An object of one backup: the backup's UID and the object's path under the backup's folder
    /// (`/`-separated, as the object store names it, e.g. `secrets/system-app.json`).
    BackupObject {
        /// `metadata.uid` of the APIManagerBackup.
        backup_uid: &'a str,
        /// The object's path relative to the backup's folder.
        path: &'a str,
    },
    /// A content object, shared by the backups that reference it, named by its keyed hash.
    Content(&'a ContentName),
}

impl Context<'_> {
    /// The associated-data encoding: a kind byte (1 backup object, 2 content), then each field as
    /// a 64-bit big-endian length and its UTF-8 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, fields) = match self {
            Self::BackupObject { backup_uid, path } => (1u8, vec![*backup_uid, *path]),
            Self::Content(name) => (2u8, vec![name.as_str()]),
        };
        let mut bytes = vec![kind];
        for field in fields {
            bytes.extend_from_slice(&(field.len() as u64).to_be_bytes());
            bytes.extend_from_slice(field.as_bytes());
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_length_prefixed_so_no_two_contexts_share_an_encoding() {
        let a = Context::BackupObject { backup_uid: "uid-a", path: "b/c" }.encode();
        let b = Context::BackupObject { backup_uid: "uid-ab", path: "/c" }.encode();
        assert_ne!(a, b);
        assert_eq!(a, b"\x01\0\0\0\0\0\0\0\x05uid-a\0\0\0\0\0\0\0\x03b/c");
        let name = ContentName::parse(&"ab".repeat(32)).expect("name");
        let content = Context::Content(&name).encode();
        assert_eq!(content[..9], *b"\x02\0\0\0\0\0\0\0\x40");
        assert_eq!(&content[9..], "ab".repeat(32).as_bytes());
    }
}
