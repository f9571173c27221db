//! Text as PostgreSQL can store it.

use std::borrow::Cow;

/// `text` without its NUL characters, which a PostgreSQL `text` value
/// cannot hold. For output we keep rather than refuse: log lines and job
/// errors are reported by scripts, not chosen by whoever sends them.
pub(crate) fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') { Cow::Owned(text.replace('\0', "")) } else { Cow::Borrowed(text) }
}
