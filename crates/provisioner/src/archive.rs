//! Unpacking a template's tar archive into a private directory.

use std::path::Path;

use warmspace_sdk::archive::{ArchiveError, walk};

/// Unpacks `archive` into `dir`, through the same checks the server applies
/// to uploads (no links, no path outside the template, capped entries and
/// size): an archive that reached this daemon some other way is checked too.
pub fn unpack(archive: &[u8], dir: &Path) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(archive);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    walk(&mut archive, |entry| {
        // The walk admits only relative paths inside the template; the tar crate checks again.
        if entry.unpack_in(dir)? {
            Ok(())
        } else {
            Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "it would land outside the template"))
        }
    })
}
