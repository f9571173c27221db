mod buildinfo;
mod error;
mod files;
mod jobs;
mod templates;
mod users;

pub use buildinfo::*;
pub use error::*;
pub use files::*;
pub use jobs::*;
pub use templates::*;
pub use users::*;
pub use warmspace_authz::Role;
