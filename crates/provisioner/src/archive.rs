//! Unpacking a template's tar archive into a private directory.

use std::io;
use std::path::Path;

/// Unpacks `archive` into `dir`. Entries that would land outside `dir`
/// (absolute paths, `..`) are refused by the tar crate itself.
pub fn unpack(archive: &[u8], dir: &Path) -> io::Result<()> {
    let mut archive = tar::Archive::new(archive);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.unpack_in(dir)? {
            let path = entry.path()?.display().to_string();
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{path} would land outside the template")));
        }
    }
    Ok(())
}
