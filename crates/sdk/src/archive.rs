//! Template directories as the tar archives the server stores.

use std::io;
use std::path::{Component, Path, PathBuf};

use warmspace_template::MANIFEST_FILE;

/// A tar archive of `directory`, deterministic for the same files (sorted
/// paths, zeroed times and owners) so that unchanged pushes dedupe.
pub fn tar_directory(directory: &Path) -> io::Result<Vec<u8>> {
    if !directory.join(MANIFEST_FILE).is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} has no {MANIFEST_FILE} at its root", directory.display()),
        ));
    }
    let mut paths = Vec::new();
    collect_files(directory, directory, &mut paths)?;
    paths.sort();
    let mut builder = tar::Builder::new(Vec::new());
    for relative in paths {
        let path = directory.join(&relative);
        let metadata = std::fs::metadata(&path).map_err(|e| context(e, &path))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(metadata.len());
        header.set_mode(std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        let file = std::fs::File::open(&path).map_err(|e| context(e, &path))?;
        builder.append_data(&mut header, &relative, file)?;
    }
    builder.into_inner()
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| context(e, dir))? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if entry.file_name() != ".git" {
                collect_files(root, &path, out)?;
            }
        } else if kind.is_file() {
            out.push(path.strip_prefix(root).expect("below the root").to_path_buf());
        }
    }
    Ok(())
}

fn context(err: io::Error, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("reading {}: {err}", path.display()))
}

/// The most entries (files and directories) a template archive may hold.
pub const MAX_ENTRIES: usize = 10_000;
/// The most bytes a template archive's files may add up to once unpacked.
pub const MAX_UNPACKED_BYTES: u64 = 256 << 20;

/// Why a template archive is refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a readable tar archive: {0}")]
    Unreadable(io::Error),
    #[error("{path:?} {problem}")]
    Entry { path: String, problem: String },
    #[error("it holds more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("its files add up to more than {MAX_UNPACKED_BYTES} bytes")]
    TooLarge,
}

/// Checks a template archive without unpacking it.
pub fn check(archive: &[u8]) -> Result<(), ArchiveError> {
    walk(&mut tar::Archive::new(archive), |_| Ok(()))
}

/// Walks an archive's entries, refusing (before `each` sees it) any entry
/// that is not a regular file or a directory — a link could make whoever
/// unpacks the archive read or write outside it — and any path that is
/// absolute or climbs with `..`; and stopping once there are more than
/// [`MAX_ENTRIES`] entries or [`MAX_UNPACKED_BYTES`] bytes. The server checks
/// uploads with it, the provisioner unpacks through it.
pub fn walk<R: io::Read>(
    archive: &mut tar::Archive<R>,
    mut each: impl FnMut(&mut tar::Entry<'_, R>) -> io::Result<()>,
) -> Result<(), ArchiveError> {
    let (mut entries, mut bytes) = (0usize, 0u64);
    for entry in archive.entries().map_err(ArchiveError::Unreadable)? {
        let mut entry = entry.map_err(ArchiveError::Unreadable)?;
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err(ArchiveError::TooManyEntries);
        }
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refuse = |problem: &str| ArchiveError::Entry { path: path.clone(), problem: problem.to_owned() };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Directory => {}
            // A global PAX header describes the archive and unpacks to nothing.
            tar::EntryType::XGlobalHeader => continue,
            tar::EntryType::Symlink => return Err(refuse("is a symbolic link; template archives hold no links")),
            tar::EntryType::Link => return Err(refuse("is a hard link; template archives hold no links")),
            other => {
                let problem = format!("is a {other:?} entry; only regular files and directories are allowed");
                return Err(refuse(&problem));
            }
        }
        let inside = Path::new(&path).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if path.is_empty() || !inside {
            return Err(refuse("is not a relative path inside the template (absolute, or with `..`)"));
        }
        bytes = bytes.saturating_add(entry.size());
        if bytes > MAX_UNPACKED_BYTES {
            return Err(ArchiveError::TooLarge);
        }
        each(&mut entry).map_err(|e| refuse(&format!("cannot be unpacked: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            // Set the name directly: `append_data` itself refuses `..` and absolute paths.
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            if *kind == tar::EntryType::Symlink || *kind == tar::EntryType::Link {
                header.set_link_name("/etc/passwd").unwrap();
            }
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn files_and_directories_pass() {
        let ok = archive(&[
            ("dir/", tar::EntryType::Directory, b""),
            ("dir/a.sh", tar::EntryType::Regular, b"echo"),
            ("./warmspace.hcl", tar::EntryType::Regular, b"x"),
        ]);
        check(&ok).unwrap();
    }

    #[test]
    fn links_escapes_and_odd_entries_are_refused_by_name() {
        for (path, kind, want) in [
            ("warmspace.hcl", tar::EntryType::Symlink, "symbolic link"),
            ("warmspace.hcl", tar::EntryType::Link, "hard link"),
            ("/etc/cron.d/x", tar::EntryType::Regular, "relative path"),
            ("a/../../x", tar::EntryType::Regular, "relative path"),
            ("fifo", tar::EntryType::Fifo, "only regular files"),
        ] {
            let err = check(&archive(&[(path, kind, b"")])).unwrap_err().to_string();
            assert!(err.contains(path) && err.contains(want), "{path}: {err}");
        }
    }

    #[test]
    fn entry_count_and_unpacked_size_are_capped() {
        let many: Vec<(String, tar::EntryType, &[u8])> =
            (0..=MAX_ENTRIES).map(|i| (format!("d{i}/"), tar::EntryType::Directory, &b""[..])).collect();
        let many: Vec<(&str, tar::EntryType, &[u8])> = many.iter().map(|(p, k, d)| (p.as_str(), *k, *d)).collect();
        assert!(matches!(check(&archive(&many)), Err(ArchiveError::TooManyEntries)));

        // A header may claim any size; the claim alone is refused, before any data is read.
        let mut header = tar::Header::new_gnu();
        header.set_path("big").unwrap();
        header.set_size(MAX_UNPACKED_BYTES + 1);
        header.set_cksum();
        let mut big = header.as_bytes().to_vec();
        big.resize(big.len() + 1024, 0);
        assert!(matches!(check(&big), Err(ArchiveError::TooLarge)));
    }

    #[test]
    fn garbage_is_unreadable() {
        assert!(matches!(check(&[7; 1024]), Err(ArchiveError::Unreadable(_))));
    }
}
