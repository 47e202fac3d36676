//! Copies one file's content while hashing it, keeping holes: only the data regions the
//! filesystem reports (`SEEK_DATA`/`SEEK_HOLE`) are read and written, so a sparse file stays
//! sparse, while the SHA-256 covers the logical content (holes hash as zeros).

use super::JobError;
use super::manifest::hex;
use rustix::fs::SeekFrom;
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

/// Bytes read and written per call.
const CHUNK: usize = 256 * 1024;
/// Zeros standing in for a hole in the hash.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Copies the first `length` bytes of `input` (the file at `source`) into the empty `output` (at
/// `target`); returns the size copied and the SHA-256 of the logical content. A file that shrank
/// meanwhile is copied up to its new end.
pub fn copy_content(
    input: &mut File,
    output: &mut File,
    length: u64,
    source: &Path,
    target: &Path,
) -> Result<(u64, String), JobError> {
    let read_error = |source_error| JobError::io("reading", source, source_error);
    let write_error = |target_error| JobError::io("writing", target, target_error);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut position = 0;
    while position < length {
        let data = next_region(input, SeekFrom::Data(position), position, length).map_err(read_error)?;
        hash_zeros(&mut hasher, data - position);
        position = data;
        if data == length {
            break;
        }
        let hole = next_region(input, SeekFrom::Hole(data), length, length).map_err(read_error)?;
        input.seek(std::io::SeekFrom::Start(data)).map_err(read_error)?;
        output.seek(std::io::SeekFrom::Start(data)).map_err(write_error)?;
        let mut left = hole - data;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
            let read = input.read(&mut buffer[..want]).map_err(read_error)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            output.write_all(&buffer[..read]).map_err(write_error)?;
            position += read as u64;
            left -= read as u64;
        }
        if left > 0 {
            break;
        }
    }
    // The length is set last, so a hole at the end stays a hole.
    output.set_len(position).map_err(write_error)?;
    Ok((position, hex(&hasher.finalize())))
}

/// Where the next data (or hole) starts at or after `from`, at most `length`; `fallback` when the
/// filesystem keeps no such map (every byte is then data) or nothing follows.
fn next_region(file: &File, whence: SeekFrom, fallback: u64, length: u64) -> std::io::Result<u64> {
    match rustix::fs::seek(file, whence) {
        Ok(offset) => Ok(offset.min(length)),
        // ENXIO: no data (or hole) after `from` before the end.
        Err(Errno::NXIO) => Ok(if matches!(whence, SeekFrom::Data(_)) { length } else { fallback }),
        Err(Errno::INVAL | Errno::NOTSUP) => Ok(fallback),
        Err(errno) => Err(errno.into()),
    }
}

fn hash_zeros(hasher: &mut Sha256, mut count: u64) {
    while count > 0 {
        let step = usize::try_from(count).unwrap_or(ZEROS.len()).min(ZEROS.len());
        hasher.update(&ZEROS[..step]);
        count -= step as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn holes_stay_holes_and_the_hash_covers_the_zeros() {
        let dir = std::env::temp_dir().join(format!("abo-sparse-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let (source, target) = (dir.join("sparse"), dir.join("copy"));
        let length = 64 * 1024 * 1024;
        {
            let mut file = File::create(&source).expect("create");
            file.seek(std::io::SeekFrom::Start(8 * 1024 * 1024)).expect("seek");
            file.write_all(b"middle").expect("write");
            file.set_len(length).expect("length");
        }
        let mut input = File::open(&source).expect("open");
        let mut output = File::create_new(&target).expect("create copy");
        let (size, sha256) = copy_content(&mut input, &mut output, length, &source, &target).expect("copy");

        let mut expected = vec![0u8; usize::try_from(length).expect("fits")];
        expected[8 * 1024 * 1024..8 * 1024 * 1024 + 6].copy_from_slice(b"middle");
        assert_eq!(size, length);
        assert_eq!(sha256, hex(&Sha256::digest(&expected)));
        assert_eq!(std::fs::read(&target).expect("read copy"), expected);
        let blocks = std::fs::metadata(&target).expect("meta").blocks();
        assert!(blocks * 512 < 1024 * 1024, "the copy stays sparse: {} bytes allocated", blocks * 512);
        let _ = std::fs::remove_dir_all(dir);
    }
}
