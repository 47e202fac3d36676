//! Counted nouns in messages, singular for exactly one: "1 file", "2 files", "0 files".

/// `count` followed by `singular` when it is 1, by `plural` otherwise.
pub fn counted(count: u64, singular: &str, plural: &str) -> String {
    format!("{count} {}", if count == 1 { singular } else { plural })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_every_other_count_plural() {
        assert_eq!(counted(0, "file", "files"), "0 files");
        assert_eq!(counted(1, "file", "files"), "1 file");
        assert_eq!(counted(2, "link", "links"), "2 links");
        assert_eq!(counted(1, "entry", "entries"), "1 entry");
        assert_eq!(counted(11, "byte", "bytes"), "11 bytes");
    }
}
