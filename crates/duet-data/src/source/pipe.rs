//! `pipe:<command>` shards, as webdataset runs them: `sh -c <command>`, its stdout is the shard.
//!
//! webdataset's `gopen_pipe` (webdataset `gopen.py`) checks the exit status when the stream is
//! closed; here the status is checked when stdout reaches its end, and a failure surfaces as the
//! `Read` error (an [`std::io::Error`] wrapping [`DataError::PipeFailed`]). A reader dropped early
//! kills the command; either way the child is reaped.

use std::io::{self, Read};
use std::ops::Range;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use super::ShardStore;
use crate::DataError;

/// How much of the command's stderr an error message keeps.
const STDERR_TAIL: usize = 4 << 10;

/// Runs `pipe:` commands. It has no sizes or ranges: a command's output is a stream.
#[derive(Debug, Default, Clone, Copy)]
pub struct PipeStore;

impl PipeStore {
    fn command(url: &str) -> Result<&str, DataError> {
        match url.strip_prefix("pipe:") {
            Some(command) if !command.trim().is_empty() => Ok(command),
            _ => Err(DataError::InvalidUrl {
                url: url.to_owned(),
                reason: "expected `pipe:` followed by a shell command".to_owned(),
            }),
        }
    }

    fn unsupported(url: &str, op: &'static str) -> DataError {
        DataError::Unsupported {
            url: url.to_owned(),
            op,
            store: "pipe:",
        }
    }
}

impl ShardStore for PipeStore {
    fn open(&self, url: &str) -> Result<Box<dyn Read + Send>, DataError> {
        let command = Self::command(url)?;
        let spawn_error = |source| DataError::PipeSpawn {
            command: command.to_owned(),
            source,
        };
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
            unreachable!("stdout and stderr were configured as pipes");
        };
        // Drained on its own thread so a chatty command cannot block on a full stderr pipe.
        let stderr = std::thread::spawn(move || {
            let mut tail = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
            tail
        });
        let command = command.to_owned();
        Ok(Box::new(PipeReader {
            command,
            child,
            stdout,
            stderr: Some(stderr),
            done: false,
        }))
    }

    fn size(&self, url: &str) -> Result<u64, DataError> {
        Err(Self::unsupported(url, "size"))
    }

    fn read_range(&self, url: &str, _range: Range<u64>) -> Result<Vec<u8>, DataError> {
        Err(Self::unsupported(url, "read_range"))
    }
}

/// The running command's stdout.
#[derive(Debug)]
struct PipeReader {
    command: String,
    child: Child,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<Vec<u8>>>,
    done: bool,
}

impl PipeReader {
    /// Reaps the child at end of stream and turns a failure into an error.
    fn finish(&mut self) -> io::Result<()> {
        self.done = true;
        let status = self.child.wait()?;
        let tail = self.stderr.take().map(JoinHandle::join).transpose();
        let tail = tail.map_err(|_| io::Error::other("stderr reader thread panicked"))?;
        if status.success() {
            return Ok(());
        }
        let tail = tail.unwrap_or_default();
        let start = tail.len().saturating_sub(STDERR_TAIL);
        let stderr_tail = String::from_utf8_lossy(&tail[start..])
            .trim_end()
            .to_owned();
        let command = self.command.clone();
        let error = DataError::PipeFailed {
            command,
            status: status.to_string(),
            stderr_tail,
        };
        Err(io::Error::other(error))
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.finish()?;
        }
        Ok(n)
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        if !self.done {
            // Stopped early (a reader skipped the rest, or an error upstream): the command may be
            // blocked writing, so end it. Errors mean it has already exited; wait() reaps it
            // either way, and Drop has no one to report to.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(url: &str) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        PipeStore
            .open(url)
            .expect("spawned")
            .read_to_end(&mut bytes)
            .map(|_| bytes)
    }

    fn pipe_error(e: &io::Error) -> &DataError {
        e.get_ref()
            .and_then(|e| e.downcast_ref::<DataError>())
            .expect("a DataError inside")
    }

    #[test]
    fn streams_command_output() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("shard.tar");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let got = read_all(&format!("pipe:cat '{}'", path.display())).expect("cat succeeds");
        assert_eq!(got, data);
    }

    #[test]
    fn failures_name_command_status_and_stderr() {
        let err = read_all("pipe:false").expect_err("false fails");
        assert!(
            matches!(pipe_error(&err), DataError::PipeFailed { status, .. } if status == "exit status: 1")
        );
        let err = read_all("pipe:echo partial; echo 'no such bucket' >&2; exit 3").expect_err("3");
        let msg = pipe_error(&err).to_string();
        assert!(
            msg.contains("pipe:echo partial") && msg.contains("exit status: 3"),
            "{msg}"
        );
        assert!(msg.contains("no such bucket"), "{msg}");
    }

    #[test]
    fn early_drop_kills_and_sizes_are_unsupported() {
        let mut reader = PipeStore.open("pipe:yes").expect("spawned");
        let mut buf = [0u8; 4];
        reader.read_exact(&mut buf).expect("some output");
        assert_eq!(&buf, b"y\ny\n");
        drop(reader); // must return: `yes` is killed and reaped.
        assert!(matches!(
            PipeStore.size("pipe:true"),
            Err(DataError::Unsupported { .. })
        ));
        assert!(PipeStore.read_range("pipe:true", 0..1).is_err());
        assert!(matches!(
            PipeStore.open("pipe: "),
            Err(DataError::InvalidUrl { .. })
        ));
    }
}
