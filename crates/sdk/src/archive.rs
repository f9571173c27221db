//! Template directories as the tar archives the server stores.

use std::io;
use std::path::{Path, PathBuf};

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
