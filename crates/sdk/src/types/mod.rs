mod buildinfo;
mod error;
mod users;

pub use buildinfo::*;
pub use error::*;
pub use users::*;
pub use warmspace_authz::Role;
