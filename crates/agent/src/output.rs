//! Reading a child process's output line by line, for the agent's startup
//! script and the `exec` backend's scripts alike.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;

/// Longer output lines are cut here, so one runaway line cannot exhaust memory.
pub const MAX_LINE: usize = 64 * 1024;

/// How long the output readers may keep draining after the script exits. A
/// background process it started (`code-server &`) may hold stdout open for
/// as long as the workspace lives, so EOF cannot be awaited.
pub const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// Reads the next line into `line`, without its `\n` or `\r\n`; false at the
/// end of the stream. Past [`MAX_LINE`] bytes the rest of the line is skipped.
pub async fn read_line_capped<R: AsyncRead + Unpin>(reader: &mut BufReader<R>, line: &mut Vec<u8>) -> io::Result<bool> {
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
        let room = MAX_LINE.saturating_sub(line.len());
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
            // Awaited so that no line arrives after the outcome.
            let _ = reader.await;
        }
    }
}
