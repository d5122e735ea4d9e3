//! A child process awaited with a deadline: `systemctl show` for `status`
//! and `<binary> version` for self-update must not hang the command when the
//! other side hangs.

use std::io::{self, Read};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How often the child is checked.
const POLL: Duration = Duration::from_millis(20);

/// A child that exited in time, with what it printed.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output (piped).
    pub stdout: String,
    /// Its standard error (piped).
    pub stderr: String,
}

/// Why waiting gave no [`Finished`].
#[derive(Debug)]
pub enum WaitError {
    /// Still running at the deadline: it was killed and reaped.
    TimedOut,
    /// Waiting itself failed.
    Wait(io::Error),
}

/// Waits up to `timeout` for `child` (stdout and stderr piped), then reads
/// its output. Its output must be small (a few lines): it is read after the
/// exit, so a child filling the pipe would be killed at the deadline.
pub fn wait_within(child: &mut Child, timeout: Duration) -> Result<Finished, WaitError> {
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(WaitError::TimedOut);
            }
            Err(e) => return Err(WaitError::Wait(e)),
        }
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    Ok(Finished {
        status,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn spawn(script: &str) -> Child {
        Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh")
    }

    #[test]
    fn output_of_a_quick_child_and_a_hung_one_killed() {
        let done = wait_within(
            &mut spawn("echo out; echo err >&2"),
            Duration::from_secs(30),
        )
        .expect("finished");
        assert!(done.status.success());
        assert_eq!(done.stdout, "out\n");
        assert_eq!(done.stderr, "err\n");
        let mut hung = spawn("sleep 30");
        let started = Instant::now();
        assert!(matches!(
            wait_within(&mut hung, Duration::from_millis(200)),
            Err(WaitError::TimedOut)
        ));
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
