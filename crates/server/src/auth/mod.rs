//! Who is calling: passwords, session tokens, and the extractor that turns a
//! request's token into an authenticated [`Actor`].

mod actor;
pub mod passwords;
pub mod tokens;

pub use actor::{Actor, subject_of};
