//! Log output on stderr through `tracing`: `-q` errors only, default warnings, `-v` info, `-vv`
//! debug, `-vvv` trace; `RUST_LOG` (tracing-subscriber's filter syntax) overrides them all.

use tracing_subscriber::EnvFilter;

/// The filter for a verbosity: `quiet` wins, then each `-v` lowers the threshold one level.
pub fn filter(verbose: u8, quiet: bool) -> &'static str {
    match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    }
}

/// Installs the global subscriber (once; later calls do nothing).
pub fn init(verbose: u8, quiet: bool) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::new(spec),
        _ => EnvFilter::new(filter(verbose, quiet)),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .try_init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn verbosity_levels() {
        assert_eq!(super::filter(0, false), "warn");
        assert_eq!(super::filter(2, false), "debug");
        assert_eq!(super::filter(0, true), "error");
        assert_eq!(super::filter(9, false), "trace");
    }
}
