use std::process::ExitCode;

fn main() -> ExitCode {
    limit_malloc_arenas();
    talon::cli::main()
}

/// glibc gives each thread that allocates its own malloc arena and rarely returns their freed
/// memory; with tokio moving tasks between worker threads, the daemon's RSS crept up ~0.8 MB a
/// minute in the soak (`benches/soak.rs`) while the live heap stayed the same — flat with one
/// arena. Idle, one arena also keeps ~1.4 MB less RSS (`benches/daemon_idle.rs`). Talon
/// allocates little and from few threads, so one arena costs nothing measurable.
/// `MALLOC_ARENA_MAX` in the environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt is called before any other thread exists; it only tunes the allocator.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
