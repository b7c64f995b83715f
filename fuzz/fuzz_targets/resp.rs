//! Redis replies, `launchctl print` and `systemctl show` output: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut r: &[u8] = data;
        while !r.is_empty() {
            let before = r.len();
            if talon::probe::redis::read_reply(&mut r).await.is_err() || r.len() == before {
                break;
            }
        }
    });
    let text = String::from_utf8_lossy(data);
    let _ = talon::probe::launchd::parse_print(&text);
    let p = talon::probe::systemd::parse_show(&text);
    let _ = talon::probe::systemd::judge("x.service", &p);
    let _ = talon::probe::redis::parse_info(&text);
    let _ = talon::notify::telegram::interpret(429, &text);
});
