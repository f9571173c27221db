//! Reading a child process's output line by line, for the agent's startup
//! script and the `exec` backend's scripts alike.

use std::borrow::Cow;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;
use warmspace_states::{MAX_LOG_LINE, cap_log_line};

/// Bytes of a line kept while reading: one more than a log line may hold,
/// so that a longer line is known to be cut, and one runaway line cannot
/// exhaust memory.
const READ_LIMIT: usize = MAX_LOG_LINE + 1;

/// How long the output readers may keep draining after the script exits. A
/// background process it started (`code-server &`) may hold stdout open for
/// as long as the workspace lives, so EOF cannot be awaited.
pub const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// Reads `stream` (a child's stdout or stderr) line by line on a task of its
/// own, handing each line to `on_line` as it comes, invalid UTF-8 replaced,
/// a line over [`MAX_LOG_LINE`] cut with a marker that says so.
/// The task ends with the stream; [`drain`] bounds how long it may take.
pub fn forward_lines<R, F>(stream: Option<R>, mut on_line: F) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    F: FnMut(Cow<'_, str>) + Send + 'static,
{
    tokio::spawn(async move {
        let Some(stream) = stream else { return };
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        // A read error ends the stream like EOF: there is nothing better to do with the rest.
        while let Ok(true) = read_line_capped(&mut reader, &mut line).await {
            let text = String::from_utf8_lossy(&line);
            let cut = match cap_log_line(&text) {
                Cow::Owned(cut) => Some(cut),
                Cow::Borrowed(_) => None,
            };
            on_line(cut.map_or(text, Cow::Owned));
        }
    })
}

/// Reads the next line into `line`, without its `\n` or `\r\n`; false at the
/// end of the stream. Past [`READ_LIMIT`] bytes the rest of the line is skipped.
async fn read_line_capped<R: AsyncRead + Unpin>(reader: &mut BufReader<R>, line: &mut Vec<u8>) -> io::Result<bool> {
    line.clear();
    let mut read_any = false;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            // The last line may lack its newline.
            return Ok(read_any);
        }
        read_any = true;
        let newline = chunk.iter().position(|&b| b == b'\n');
        let content = &chunk[..newline.unwrap_or(chunk.len())];
        let room = READ_LIMIT.saturating_sub(line.len());
        line.extend_from_slice(&content[..content.len().min(room)]);
        let consumed = newline.map_or(chunk.len(), |i| i + 1);
        reader.consume(consumed);
        if newline.is_some() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(true);
        }
    }
}

/// Lets the readers finish what is already in the pipes, but stops them after
/// [`OUTPUT_GRACE`] if something still holds the pipes open.
pub async fn drain(readers: [JoinHandle<()>; 2]) {
    let deadline = tokio::time::Instant::now() + OUTPUT_GRACE;
    for mut reader in readers {
        if tokio::time::timeout_at(deadline, &mut reader).await.is_err() {
            reader.abort();
            // Awaited so that no line arrives after the outcome. It ends
            // canceled, as asked; only a panic in the reader is news.
            if let Err(err) = reader.await
                && err.is_panic()
            {
                tracing::warn!(error = %err, "an output reader panicked; some output may be lost");
            }
        }
    }
}
