//! The longest log line warmspace keeps, and how a longer one is cut: the
//! same rule where output is read (the agent's startup script, an `exec`
//! script) and where lines are stored (lines from any daemon or agent).

use std::borrow::Cow;

/// The longest line kept, in bytes, the marker of a cut line included.
pub const MAX_LOG_LINE: usize = 64 * 1024;

/// How a line that was cut ends, so nobody takes it for the whole line.
pub const LINE_TRUNCATED_MARKER: &str = "… [line truncated]";

/// `line` if it fits in [`MAX_LOG_LINE`] bytes; otherwise as much of it as
/// fits (cut at a character boundary) followed by [`LINE_TRUNCATED_MARKER`].
/// A line cut once is not cut again.
pub fn cap_log_line(line: &str) -> Cow<'_, str> {
    if line.len() <= MAX_LOG_LINE {
        return Cow::Borrowed(line);
    }
    let mut cut = MAX_LOG_LINE - LINE_TRUNCATED_MARKER.len();
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}{LINE_TRUNCATED_MARKER}", &line[..cut]))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn a_capped_line_fits_keeps_its_start_and_says_whether_it_was_cut(
            text in "[a-zé€😀]{0,40}",
            repeat in 1usize..5000,
        ) {
            let line = text.repeat(repeat);
            let capped = cap_log_line(&line);
            prop_assert!(capped.len() <= MAX_LOG_LINE);
            if line.len() <= MAX_LOG_LINE {
                prop_assert_eq!(&*capped, &*line);
            } else {
                let kept = capped.strip_suffix(LINE_TRUNCATED_MARKER).expect("a cut line says so");
                prop_assert!(line.starts_with(kept));
                // No more was dropped than a character's worth beyond the room the marker takes.
                prop_assert!(kept.len() + LINE_TRUNCATED_MARKER.len() + 4 > MAX_LOG_LINE);
            }
            prop_assert_eq!(&*cap_log_line(&capped), &*capped, "capping twice changes nothing");
        }
    }
}
