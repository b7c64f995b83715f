//! The compiled PATH: Talon never trusts the minimal PATH a service manager hands it.
//! Every program Talon runs is looked up in this list, and `talon validate` proves that each
//! one can be found before it matters.

use std::path::{Path, PathBuf};

/// Directories searched for programs, in order, de-duplicated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct SearchPath {
    pub dirs: Vec<PathBuf>,
}

/// Platform directories that a login shell would have but a service manager often lacks.
pub fn platform_defaults(home: Option<&Path>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if cfg!(target_os = "macos") {
        v.push(PathBuf::from("/opt/homebrew/bin"));
        v.push(PathBuf::from("/opt/homebrew/sbin"));
    }
    v.push(PathBuf::from("/usr/local/bin"));
    if let Some(h) = home {
        v.push(h.join(".local/bin"));
        v.push(h.join(".cargo/bin"));
    }
    for d in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        v.push(PathBuf::from(d));
    }
    v
}

impl SearchPath {
    /// Configured extra dirs first, then the platform defaults, then the inherited PATH.
    pub fn compile(extra: &[PathBuf], home: Option<&Path>, inherited: Option<&str>) -> Self {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let inherited_dirs = inherited
            .unwrap_or("")
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        for d in extra
            .iter()
            .cloned()
            .chain(platform_defaults(home))
            .chain(inherited_dirs)
        {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        Self { dirs }
    }

    /// The value for a child's `PATH` variable.
    pub fn to_env(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Resolve a program name: a path containing `/` is checked as is; a bare word is
    /// searched in the dirs. Returns the executable's path.
    pub fn resolve(&self, program: &str) -> Option<PathBuf> {
        if program.contains('/') {
            let p = PathBuf::from(program);
            return is_executable(&p).then_some(p);
        }
        self.dirs
            .iter()
            .map(|d| d.join(program))
            .find(|p| is_executable(p))
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(p) {
        Ok(m) => m.is_file() && m.permissions().mode() & 0o111 != 0,
        Err(_) => false,
    }
}

/// Shell builtins and keywords that need no program on PATH.
const SHELL_WORDS: &[&str] = &[
    "cd", "exec", "exit", "true", "false", "test", "[", "echo", "printf", "if", "for", "while",
    "set", "export", "read", "trap", "wait", "kill", ":", ".", "source", "eval", "command", "case",
    "until", "!", "{", "(",
];

/// The program a shell command line will run, when it can be told without running a shell:
/// the first word, if it is a plain word (no quoting, expansion or assignment). `exec X` → X.
/// `None` means "only a shell can tell" or "a builtin"; such commands are not resolved.
pub fn program_of_shell(cmd: &str) -> Option<String> {
    let mut words = cmd.split_whitespace();
    let mut first = words.next()?;
    if first == "exec" {
        first = words.next()?;
    }
    if SHELL_WORDS.contains(&first) {
        return None;
    }
    let plain = first.chars().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | '+' | '~' | '@' | ',')
    });
    plain.then(|| first.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_path_orders_and_dedups() {
        let p = SearchPath::compile(
            &[PathBuf::from("/x")],
            Some(Path::new("/h")),
            Some("/usr/bin:/y:/x"),
        );
        let s = p.to_env();
        assert!(s.starts_with("/x:"), "{s}");
        assert!(s.contains("/h/.cargo/bin"));
        assert!(s.ends_with(":/y"), "{s}");
        assert_eq!(s.matches("/usr/bin").count(), 1);
    }

    #[test]
    fn program_of_shell_takes_plain_first_word() {
        assert_eq!(
            program_of_shell("limactl start default"),
            Some("limactl".into())
        );
        assert_eq!(
            program_of_shell("exec /usr/bin/redis-server --port 1"),
            Some("/usr/bin/redis-server".into())
        );
        assert_eq!(program_of_shell("FOO=1 bar"), None);
        assert_eq!(program_of_shell("$HOME/bin/x"), None);
        assert_eq!(program_of_shell("test -d /tmp"), None);
        assert_eq!(program_of_shell(""), None);
    }

    #[test]
    fn resolve_finds_sh() {
        let p = SearchPath::compile(&[], None, Some("/bin:/usr/bin"));
        assert!(p.resolve("sh").is_some());
        assert!(p.resolve("definitely-not-a-program-talon").is_none());
    }
}
