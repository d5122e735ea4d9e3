//! The standard `process_*` metrics (the names every Prometheus client
//! library exports, so existing dashboards and alerts work): resident and
//! virtual memory, CPU seconds, open and maximum file descriptors, start
//! time. Read from `/proc/self` on each scrape; the parsing is pure and
//! unit-tested, and a file that cannot be read leaves its metric out rather
//! than reporting a wrong zero.

use super::encode::{Encoder, Kind};

/// What `/proc` says about this process.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ProcessStats {
    /// User + system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, bytes.
    pub resident_bytes: Option<f64>,
    /// Virtual memory size, bytes.
    pub virtual_bytes: Option<f64>,
    /// Start time, seconds since the epoch.
    pub start_time_seconds: Option<f64>,
    /// File descriptors open now.
    pub open_fds: Option<f64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<f64>,
}

/// Fields of `/proc/self/stat` this module reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stat {
    /// `utime` + `stime`, clock ticks.
    pub cpu_ticks: u64,
    /// `starttime`: clock ticks after boot.
    pub start_ticks: u64,
    /// `vsize`, bytes.
    pub virtual_bytes: u64,
    /// `rss`, pages.
    pub resident_pages: u64,
}

/// Parses `/proc/self/stat`. The command name (field 2) is in parentheses
/// and may itself hold spaces and `)`, so fields are counted after the
/// last `)`: there, field 3 (`state`) is index 0.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field n (1-based, as proc(5) numbers them) is fields[n - 3].
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

/// `btime` (boot time, seconds since the epoch) from `/proc/stat`.
pub(crate) fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft "Max open files" limit from `/proc/self/limits`; `None` when
/// unlimited or absent.
pub(crate) fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Assembles the stats from the raw readings; `clock_ticks` is
/// `sysconf(_SC_CLK_TCK)`, `page_size` `sysconf(_SC_PAGESIZE)`.
pub(crate) fn assemble(
    stat: Option<Stat>,
    boot_time: Option<u64>,
    open_fds: Option<usize>,
    max_fds: Option<u64>,
    clock_ticks: u64,
    page_size: u64,
) -> ProcessStats {
    let ticks = (clock_ticks > 0).then_some(clock_ticks as f64);
    ProcessStats {
        cpu_seconds: stat.zip(ticks).map(|(s, t)| s.cpu_ticks as f64 / t),
        resident_bytes: stat
            .filter(|_| page_size > 0)
            .map(|s| s.resident_pages as f64 * page_size as f64),
        virtual_bytes: stat.map(|s| s.virtual_bytes as f64),
        start_time_seconds: stat
            .zip(boot_time)
            .zip(ticks)
            .map(|((s, boot), t)| boot as f64 + s.start_ticks as f64 / t),
        open_fds: open_fds.map(|n| n as f64),
        max_fds: max_fds.map(|n| n as f64),
    }
}

/// Reads this process's stats from `/proc` now.
pub(crate) fn read() -> ProcessStats {
    let text = |path: &str| std::fs::read_to_string(path).ok();
    // `read_dir` itself holds one descriptor while counting.
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|dir| dir.count().saturating_sub(1));
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let (clock_ticks, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    assemble(
        text("/proc/self/stat").as_deref().and_then(parse_stat),
        text("/proc/stat").as_deref().and_then(parse_boot_time),
        open_fds,
        text("/proc/self/limits").as_deref().and_then(parse_max_fds),
        u64::try_from(clock_ticks).unwrap_or(0),
        u64::try_from(page_size).unwrap_or(0),
    )
}

/// Writes the families that have a value.
pub(crate) fn write(e: &mut Encoder, stats: &ProcessStats) {
    let families: [(&str, Kind, &str, Option<f64>); 6] = [
        (
            "process_cpu_seconds_total",
            Kind::Counter,
            "Total user and system CPU time spent in seconds.",
            stats.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
            stats.resident_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            Kind::Gauge,
            "Virtual memory size in bytes.",
            stats.virtual_bytes,
        ),
        (
            "process_start_time_seconds",
            Kind::Gauge,
            "Start time of the process since unix epoch in seconds.",
            stats.start_time_seconds,
        ),
        (
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
            stats.open_fds,
        ),
        (
            "process_max_fds",
            Kind::Gauge,
            "Maximum number of open file descriptors.",
            stats.max_fds,
        ),
    ];
    e.singles(families);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line, with a command name holding `) (` to trip naive parsers.
    const STAT: &str = "4242 (vol) (spike) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 50 0 0 20 0 9 0 123400 52428800 2048 18446744073709551615 1 1 0 0 0 0 0 4096 17925 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn parses_stat_boot_time_and_limits() {
        let stat = parse_stat(STAT).expect("stat");
        assert_eq!(
            stat,
            Stat {
                cpu_ticks: 300,
                start_ticks: 123_400,
                virtual_bytes: 52_428_800,
                resident_pages: 2048,
            }
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(
            parse_max_fds(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
        let stats = assemble(
            Some(stat),
            Some(1_700_000_000),
            Some(7),
            Some(1024),
            100,
            4096,
        );
        assert_eq!(stats.cpu_seconds, Some(3.0));
        assert_eq!(stats.resident_bytes, Some(8_388_608.0));
        assert_eq!(stats.start_time_seconds, Some(1_700_001_234.0));
        assert_eq!(stats.open_fds, Some(7.0));
        // Nothing readable: nothing reported, not zeros.
        assert_eq!(
            assemble(None, None, None, None, 0, 0),
            ProcessStats::default()
        );
    }

    #[test]
    fn this_process_reads_plausibly() {
        let stats = read();
        let rss = stats.resident_bytes.expect("resident memory on Linux");
        assert!(rss > 1024.0 * 1024.0, "rss {rss}");
        assert!(stats.open_fds.is_some_and(|n| n >= 3.0));
        let start = stats.start_time_seconds.expect("start time");
        let now = crate::clock::unix_ms(std::time::SystemTime::now()) as f64 / 1000.0;
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start} vs {now}"
        );
    }
}
