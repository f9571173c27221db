//! The agent's SFTP server (the `sftp` subsystem of its SSH server), so that
//! OpenSSH's `sftp` and `scp` (whose default protocol is SFTP) work in any
//! workspace, whether or not its image has OpenSSH's `sftp-server`.
//!
//! Like `sftp-server`, it acts as the agent's user and resolves relative
//! paths against the agent's working directory (`$HOME`). The protocol is
//! SFTP version 3 (what OpenSSH speaks) from the `russh-sftp` crate; this
//! module maps its requests onto the file system. No extensions are
//! offered, so clients fall back to the base protocol (a rename, for one,
//! replaces an existing target, as POSIX `rename` does).

use std::collections::HashMap;
use std::fs::{FileTimes, Metadata, Permissions};
use std::io::{ErrorKind, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use russh_sftp::protocol::{Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version};
use russh_sftp::server::StatusReply;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// The most one read returns: clients ask again for the rest.
const MAX_READ: u32 = 64 * 1024;
/// How many directory entries one `readdir` answer carries.
const DIR_BATCH: usize = 128;

/// One SFTP session: its open files and directories.
pub(crate) struct Sftp {
    root: PathBuf,
    handles: HashMap<String, Open>,
    next_handle: u64,
}

/// What a handle refers to.
enum Open {
    File { file: tokio::fs::File, path: PathBuf },
    Dir { entries: Option<tokio::fs::ReadDir>, path: PathBuf },
}

impl Sftp {
    /// A session resolving relative paths against `root`.
    pub fn new(root: PathBuf) -> Sftp {
        Sftp { root, handles: HashMap::new(), next_handle: 0 }
    }

    fn resolve(&self, path: &str) -> PathBuf {
        // Joining an absolute path replaces the root, as it should.
        self.root.join(path)
    }

    fn keep(&mut self, open: Open) -> String {
        self.next_handle += 1;
        let handle = self.next_handle.to_string();
        self.handles.insert(handle.clone(), open);
        handle
    }

    fn handle(&mut self, handle: &str) -> Result<&mut Open, StatusReply> {
        self.handles.get_mut(handle).ok_or_else(|| StatusCode::Failure.with_message("no such handle"))
    }
}

impl russh_sftp::server::Handler for Sftp {
    type Error = StatusReply;

    fn unimplemented(&self) -> StatusReply {
        StatusCode::OpUnsupported.into()
    }

    async fn init(&mut self, _: u32, _: HashMap<String, String>) -> Result<Version, StatusReply> {
        Ok(Version::new())
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, StatusReply> {
        let path = self.resolve(&filename);
        let mut options = std::fs::OpenOptions::from(pflags);
        // A new file gets the mode asked for, less the umask, as open(2) gives it.
        options.mode(attrs.permissions.map_or(0o666, |mode| mode & 0o7777));
        let file = tokio::fs::OpenOptions::from(options).open(&path).await.map_err(failed)?;
        Ok(Handle { id, handle: self.keep(Open::File { file, path }) })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, StatusReply> {
        match self.handles.remove(&handle) {
            Some(Open::File { mut file, .. }) => file.flush().await.map_err(failed)?,
            Some(Open::Dir { .. }) => {}
            None => return Err(StatusCode::Failure.with_message("no such handle")),
        }
        Ok(ok(id))
    }

    async fn read(&mut self, id: u32, handle: String, offset: u64, len: u32) -> Result<Data, StatusReply> {
        let Open::File { file, .. } = self.handle(&handle)? else {
            return Err(StatusCode::Failure.with_message("not a file"));
        };
        file.seek(SeekFrom::Start(offset)).await.map_err(failed)?;
        let mut data = vec![0; len.min(MAX_READ) as usize];
        let read = file.read(&mut data).await.map_err(failed)?;
        if read == 0 && len > 0 {
            return Err(StatusCode::Eof.into());
        }
        data.truncate(read);
        Ok(Data { id, data })
    }

    async fn write(&mut self, id: u32, handle: String, offset: u64, data: Vec<u8>) -> Result<Status, StatusReply> {
        let Open::File { file, .. } = self.handle(&handle)? else {
            return Err(StatusCode::Failure.with_message("not a file"));
        };
        file.seek(SeekFrom::Start(offset)).await.map_err(failed)?;
        file.write_all(&data).await.map_err(failed)?;
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, StatusReply> {
        let metadata = tokio::fs::symlink_metadata(self.resolve(&path)).await.map_err(failed)?;
        Ok(Attrs { id, attrs: attributes(&metadata) })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, StatusReply> {
        let metadata = tokio::fs::metadata(self.resolve(&path)).await.map_err(failed)?;
        Ok(Attrs { id, attrs: attributes(&metadata) })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, StatusReply> {
        let metadata = match self.handle(&handle)? {
            Open::File { file, .. } => file.metadata().await,
            Open::Dir { path, .. } => tokio::fs::metadata(path).await,
        };
        Ok(Attrs { id, attrs: attributes(&metadata.map_err(failed)?) })
    }

    async fn setstat(&mut self, id: u32, path: String, attrs: FileAttributes) -> Result<Status, StatusReply> {
        set_attributes(self.resolve(&path), attrs).await?;
        Ok(ok(id))
    }

    async fn fsetstat(&mut self, id: u32, handle: String, attrs: FileAttributes) -> Result<Status, StatusReply> {
        let path = match self.handle(&handle)? {
            Open::File { file, path } => {
                // Written data first, so that a size or times set after it stick.
                file.flush().await.map_err(failed)?;
                path.clone()
            }
            Open::Dir { path, .. } => path.clone(),
        };
        set_attributes(path, attrs).await?;
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, StatusReply> {
        let path = self.resolve(&path);
        let entries = tokio::fs::read_dir(&path).await.map_err(failed)?;
        Ok(Handle { id, handle: self.keep(Open::Dir { entries: Some(entries), path }) })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, StatusReply> {
        let Open::Dir { entries, .. } = self.handle(&handle)? else {
            return Err(StatusCode::Failure.with_message("not a directory"));
        };
        // A directory read to its end stays at its end.
        let Some(entries) = entries else { return Err(StatusCode::Eof.into()) };
        let mut files = Vec::new();
        while files.len() < DIR_BATCH {
            let Some(entry) = entries.next_entry().await.map_err(failed)? else { break };
            // An entry removed since it was listed is simply not shown.
            if let Ok(metadata) = entry.metadata().await {
                files.push(File::new(entry.file_name().to_string_lossy(), attributes(&metadata)));
            }
        }
        if files.is_empty() {
            if let Open::Dir { entries, .. } = self.handle(&handle)? {
                *entries = None;
            }
            return Err(StatusCode::Eof.into());
        }
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, StatusReply> {
        tokio::fs::remove_file(self.resolve(&filename)).await.map_err(failed)?;
        Ok(ok(id))
    }

    async fn mkdir(&mut self, id: u32, path: String, attrs: FileAttributes) -> Result<Status, StatusReply> {
        let mut builder = tokio::fs::DirBuilder::new();
        builder.mode(attrs.permissions.map_or(0o777, |mode| mode & 0o7777));
        builder.create(self.resolve(&path)).await.map_err(failed)?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, StatusReply> {
        tokio::fs::remove_dir(self.resolve(&path)).await.map_err(failed)?;
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, StatusReply> {
        let path = self.resolve(&path);
        // A path that does not exist yet (an upload's target) is normalised as written.
        let real = tokio::fs::canonicalize(&path).await.unwrap_or_else(|_| normalize(&path));
        Ok(Name { id, files: vec![File::dummy(real.to_string_lossy())] })
    }

    async fn rename(&mut self, id: u32, oldpath: String, newpath: String) -> Result<Status, StatusReply> {
        tokio::fs::rename(self.resolve(&oldpath), self.resolve(&newpath)).await.map_err(failed)?;
        Ok(ok(id))
    }

    async fn readlink(&mut self, id: u32, path: String) -> Result<Name, StatusReply> {
        let target = tokio::fs::read_link(self.resolve(&path)).await.map_err(failed)?;
        Ok(Name { id, files: vec![File::dummy(target.to_string_lossy())] })
    }

    /// OpenSSH sends the link's target first and the link's path second
    /// (the reverse of the draft, which the crate's field names follow),
    /// and its own server reads them that way: so does this one.
    async fn symlink(&mut self, id: u32, linkpath: String, targetpath: String) -> Result<Status, StatusReply> {
        let (target, link) = (linkpath, self.resolve(&targetpath));
        tokio::fs::symlink(target, link).await.map_err(failed)?;
        Ok(ok(id))
    }
}

fn ok(id: u32) -> Status {
    Status { id, status_code: StatusCode::Ok, error_message: "Ok".into(), language_tag: "en-US".into() }
}

/// The status for a failed file system call, with the system's reason.
fn failed(err: std::io::Error) -> StatusReply {
    let code = match err.kind() {
        ErrorKind::NotFound => StatusCode::NoSuchFile,
        ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    };
    code.with_message(err.to_string())
}

/// A file's attributes as SFTP carries them: the mode with its file type bits, times in whole seconds.
fn attributes(metadata: &Metadata) -> FileAttributes {
    let seconds = |t: i64| u32::try_from(t).unwrap_or(0);
    FileAttributes {
        size: Some(metadata.size()),
        uid: Some(metadata.uid()),
        user: None,
        gid: Some(metadata.gid()),
        group: None,
        permissions: Some(metadata.mode()),
        atime: Some(seconds(metadata.atime())),
        mtime: Some(seconds(metadata.mtime())),
    }
}

/// Applies what `attrs` sets (size, mode, owner, times) to the file at `path`.
async fn set_attributes(path: PathBuf, attrs: FileAttributes) -> Result<(), StatusReply> {
    let apply = move || -> std::io::Result<()> {
        if let Some(size) = attrs.size {
            std::fs::OpenOptions::new().write(true).open(&path)?.set_len(size)?;
        }
        if let Some(mode) = attrs.permissions {
            std::fs::set_permissions(&path, Permissions::from_mode(mode & 0o7777))?;
        }
        if attrs.uid.is_some() || attrs.gid.is_some() {
            std::os::unix::fs::chown(&path, attrs.uid, attrs.gid)?;
        }
        if let (Some(atime), Some(mtime)) = (attrs.atime, attrs.mtime) {
            let at = |seconds: u32| UNIX_EPOCH + Duration::from_secs(seconds.into());
            let times = FileTimes::new().set_accessed(at(atime)).set_modified(at(mtime));
            std::fs::File::open(&path)?.set_times(times)?;
        }
        Ok(())
    };
    tokio::task::spawn_blocking(apply)
        .await
        .map_err(|_| StatusCode::Failure.with_message("setting attributes stopped"))?
        .map_err(failed)
}

/// `path` without `.` and `..` components, resolved as written (symbolic links are not followed).
fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::Normal(name) => normal.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    normal
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn paths_are_normalised_as_written() {
        assert_eq!(normalize(Path::new("/home/me/./a/../b")), PathBuf::from("/home/me/b"));
        assert_eq!(normalize(Path::new("/../..")), PathBuf::from("/"));
        assert_eq!(normalize(Path::new("/")), PathBuf::from("/"));
    }

    proptest! {
        #[test]
        fn a_normalised_path_is_absolute_plain_and_stable(parts in prop::collection::vec("\\.|\\.\\.|[a-z]{1,3}", 0..8)) {
            let path = PathBuf::from(format!("/{}", parts.join("/")));
            let normal = normalize(&path);
            prop_assert!(normal.is_absolute());
            prop_assert!(normal.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
            prop_assert_eq!(normalize(&normal), normal.clone());
            let plain = parts.iter().filter(|p| !p.starts_with('.')).count();
            prop_assert!(normal.components().count() <= plain + 1);
        }
    }
}
