//! Both config files from arbitrary bytes: a config, or errors with a position — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first NUL splits the input into the main config and the probes file.
    let (main, services) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".config/talon");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, main).unwrap();
    std::fs::write(dir.join("services.toml"), services).unwrap();
    let l = talon::config::load(&talon::config::LoadOptions {
        config: Some(cfg.clone()),
        resolve: false,
        inherited_path: Some("/usr/bin:/bin".into()),
        home: Some(home.path().to_path_buf()),
    });
    if l.config.is_none() {
        assert!(l.diags.has_errors());
    }
    let ours = [
        cfg.display().to_string(),
        dir.join("services.toml").display().to_string(),
    ];
    for d in l.diags.errors() {
        if ours.contains(&d.file) {
            assert!(d.line >= 1 && d.column >= 1, "no position: {d}");
        }
    }
});
