//! Uploaded files: tar archives of template versions, stored by content hash.

use sha2::{Digest, Sha256};
use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource};
use warmspace_sdk::UploadResponse;

use super::{Actor, Domain, Error, Found, Result};

pub const TAR: &str = "application/x-tar";

impl Domain {
    /// Refused (before reading it) when an upload is larger than the server takes.
    pub fn upload_too_large(&self) -> Error {
        Error::TooLarge {
            message: "The file is too large.".into(),
            detail: format!("Uploads are limited to {} bytes (--max-file-size).", self.config.max_file_size),
        }
    }

    /// Stores a tar archive. The same bytes always get the same id and are stored once.
    pub async fn upload_file(&self, actor: &Actor, content_type: &str, data: &[u8]) -> Result<UploadResponse> {
        actor.authorize(Action::Create, Object { resource: Resource::File, owner: Some(actor.user.id) })?;
        if content_type != TAR {
            return Err(Error::field("Content-Type", format!("must be {TAR}, not {content_type:?}")));
        }
        if data.len() > self.config.max_file_size {
            return Err(self.upload_too_large());
        }
        // Refused here, where the uploader learns why, rather than only when a daemon unpacks it.
        warmspace_sdk::archive::check(data).map_err(|err| Error::field("file", err.to_string()))?;
        let hash = hex::encode(Sha256::digest(data));
        let file = self.store.upload_file(&hash, TAR, data, actor.user.id).await?;
        Ok(UploadResponse { id: file.id, hash: file.hash })
    }

    /// A file the actor uploaded, or one behind a template they may read: its type and bytes.
    pub async fn download_file(&self, actor: &Actor, id: Uuid) -> Result<(String, Vec<u8>)> {
        let file = self.store.file(id).await.found("File")?;
        // Checked on every read: nothing cached may let one user read another's upload.
        let reads_all = warmspace_authz::authorize(&actor.subject, Action::Read, Object::any(Resource::File)).is_ok();
        let readable = reads_all
            || self.store.file_uploaded_by(id, actor.user.id).await?
            || (self.store.file_backs_a_template(id).await?
                && actor.authorize(Action::Read, Object::any(Resource::Template)).is_ok());
        if !readable {
            let denied = warmspace_authz::Denied::new(&actor.subject, Action::Read, Object::any(Resource::File));
            return Err(denied.attempting("read this file").into());
        }
        Ok((file.mimetype, self.store.file_data(id).await?))
    }
}
