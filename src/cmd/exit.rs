//! The exit codes of every command, named once. Scripts and tests read
//! them, so each command keeps the codes it always had.

/// How a command ended, as its process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: done (or healthy, for `status`).
    Ok,
    /// 1: failed (or degraded, for `status`); the message says why.
    Failure,
    /// 2: the command line asks for something that cannot be (`--only typo`).
    Usage,
    /// 3: the service is not running (`status`, as LSB init scripts say it).
    NotRunning,
    /// 78 (`EX_CONFIG`): the configuration is invalid or incomplete. The
    /// unit has `RestartPreventExitStatus=78`, so a bad env file does not
    /// restart-loop.
    Config,
}

impl ExitCode {
    /// The number the process exits with.
    pub fn code(self) -> u8 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::Failure => 1,
            ExitCode::Usage => 2,
            ExitCode::NotRunning => 3,
            ExitCode::Config => 78,
        }
    }
}

impl ExitCode {
    /// The code of another volspike process's exit status (a relayed
    /// command); a status no command uses (a crash) is a failure.
    pub fn from_status(status: i32) -> ExitCode {
        match status {
            0 => ExitCode::Ok,
            2 => ExitCode::Usage,
            3 => ExitCode::NotRunning,
            78 => ExitCode::Config,
            _ => ExitCode::Failure,
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_numbers() {
        let all = [
            ExitCode::Ok,
            ExitCode::Failure,
            ExitCode::Usage,
            ExitCode::NotRunning,
            ExitCode::Config,
        ];
        let numbers: Vec<u8> = all.iter().map(|c| c.code()).collect();
        assert_eq!(numbers, [0, 1, 2, 3, 78]);
        for code in all {
            assert_eq!(ExitCode::from_status(i32::from(code.code())), code);
        }
        assert_eq!(ExitCode::from_status(101), ExitCode::Failure);
    }
}
