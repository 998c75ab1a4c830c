//! Reading the registry file without trusting it: only a regular file is opened (a device or a
//! FIFO would never end, or block), the size limit holds while reading whatever the reported
//! length says, and a read the file changed under is reported as such rather than used. The bytes
//! are handed on block by block (hashed and parsed as they come), never held whole.

use std::fs::{File, Metadata};
use std::io::Read as _;
use std::path::Path;
use std::time::SystemTime;

use super::MAX_FILE_BYTES;
use crate::registry::RegistryError;

/// What tells one version of the file from another without reading it. The inode and the
/// status-change time catch what mtime and length miss: an edit of the same length within the
/// timestamp granularity, a copy that preserves mtime (`cp -p`, `rsync -t`), a rename over it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileStamp {
    modified: Option<SystemTime>,
    pub len: u64,
    /// Device and inode: which file the path names (a rename over the path changes them).
    pub identity: (u64, u64),
    changed: (i64, i64),
}

impl FileStamp {
    fn of(metadata: &Metadata) -> FileStamp {
        #[cfg(unix)]
        let (identity, changed) = {
            use std::os::unix::fs::MetadataExt as _;
            (
                (metadata.dev(), metadata.ino()),
                (metadata.ctime(), metadata.ctime_nsec()),
            )
        };
        #[cfg(not(unix))]
        let (identity, changed) = ((0, 0), (0, 0));
        FileStamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            identity,
            changed,
        }
    }
}

fn io_error(path: &Path, error: std::io::Error) -> RegistryError {
    RegistryError::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> RegistryError {
    RegistryError::InvalidFile {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// What the path names now (symlinks followed), refused unless it is a regular file: checked
/// before anything opens it.
pub(super) fn stamp(path: &Path) -> Result<FileStamp, RegistryError> {
    let metadata = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    if !metadata.is_file() {
        let what = if metadata.is_dir() {
            "a directory"
        } else {
            "a device, FIFO or socket"
        };
        return Err(invalid(path, format!("is {what}, not a regular file")));
    }
    Ok(FileStamp::of(&metadata))
}

/// Opens for reading without blocking: were the path swapped for a FIFO after [`stamp`], a plain
/// open would wait for a writer.
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    let mut options = File::options();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Bytes handed to the consumer at a time.
const READ_BLOCK: usize = 64 << 10;

/// Feeds the file's bytes to `consume` as they are read, and returns the stamp that held from
/// before the read to after it, or `None` if the file changed meanwhile (it is being written:
/// look again later, and discard what was consumed). Over [`MAX_FILE_BYTES`], by its reported
/// length or by what a read returns, it is invalid.
pub(super) fn read_consistent(
    path: &Path,
    consume: &mut dyn FnMut(&[u8]),
) -> Result<Option<FileStamp>, RegistryError> {
    read_within(path, MAX_FILE_BYTES, consume)
}

fn read_within(
    path: &Path,
    limit: u64,
    consume: &mut dyn FnMut(&[u8]),
) -> Result<Option<FileStamp>, RegistryError> {
    let before = stamp(path)?;
    let over_limit = || invalid(path, format!("is over the {limit}-byte limit"));
    if before.len > limit {
        return Err(over_limit());
    }
    let file = open_nonblocking(path).map_err(|e| io_error(path, e))?;
    let opened = file.metadata().map_err(|e| io_error(path, e))?;
    if !opened.is_file() || FileStamp::of(&opened).identity != before.identity {
        return Ok(None);
    }
    let mut reader = file.take(limit.saturating_add(1));
    let mut block = vec![0; READ_BLOCK];
    let mut total: u64 = 0;
    loop {
        let read = match reader.read(&mut block) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(path, e)),
        };
        total += read as u64;
        if total > limit {
            return Err(over_limit());
        }
        consume(&block[..read]);
    }
    if total != before.len || stamp(path)? != before {
        return Ok(None);
    }
    Ok(Some(before))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// procfs files are regular files that report a length of 0 and read as more: the limit
    /// holds on what is read, not on what the metadata says.
    #[test]
    fn the_limit_holds_while_reading_whatever_the_reported_length() {
        let path = Path::new("/proc/self/status");
        assert_eq!(stamp(path).unwrap().len, 0);
        let error = read_within(path, 64, &mut |_| {}).unwrap_err();
        assert_eq!(error.kind().as_str(), "invalid_registry_file", "{error}");
        assert!(
            error.to_string().contains("over the 64-byte limit"),
            "{error}"
        );
        // Within the limit, a read longer than the reported length is a file that changed.
        assert_eq!(read_within(path, 1 << 20, &mut |_| {}).unwrap(), None);
    }

    #[test]
    fn a_file_over_the_limit_by_its_length_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        std::fs::write(&path, [b'#'; 65]).unwrap();
        let error = read_within(&path, 64, &mut |_| {}).unwrap_err();
        assert!(
            error.to_string().contains("over the 64-byte limit"),
            "{error}"
        );
        std::fs::write(&path, [b'#'; 64]).unwrap();
        let mut bytes = Vec::new();
        let stamp = read_within(&path, 64, &mut |block| bytes.extend_from_slice(block)).unwrap();
        assert_eq!(stamp.unwrap().len, 64);
        assert_eq!(bytes, [b'#'; 64]);
    }
}
