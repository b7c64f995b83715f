//! The worker's env file: parsed or rejected with real line numbers — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let lines = text.lines().count();
    if let Err(errors) = talon::config::envfile::parse(text) {
        assert!(errors.iter().all(|(n, _)| *n >= 1 && *n <= lines));
    }
});
