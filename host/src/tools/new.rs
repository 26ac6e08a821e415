//! `host new`: a new plugin project from the templates in `host/templates/`, with the
//! contract (`wit/streamhost.wit`) this host speaks and a sample input for `host test`.

use std::path::{Path, PathBuf};

/// The languages `host new` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
    Ts,
    C,
    Cpp,
    Zig,
    Go,
}

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("bad plugin name {0:?}: use 1-64 characters a-z, 0-9 and '-', starting with a letter")]
    BadName(String),
    #[error("{0} already exists; pick another name or --dir")]
    Exists(PathBuf),
    #[error("cannot write {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
}

const WIT: &str = include_str!("../../../wit/streamhost.wit");
const SAMPLE: &str = "hello world\nstreamhost runs this plugin\n\nthe last line\n";

/// The files of a language's template: (path in the project, contents).
fn template(lang: Lang) -> &'static [(&'static str, &'static str)] {
    macro_rules! files {
        ($lang:literal: $($file:literal),*) => {
            &[$(($file, include_str!(concat!("../../templates/", $lang, "/", $file)))),*]
        };
    }
    match lang {
        Lang::Rust => {
            files!("rust": "Cargo.toml", "src/lib.rs", "build.sh", ".gitignore", "README.md")
        }
        Lang::Python => files!("python": "app.py", "build.sh", ".gitignore", "README.md"),
        Lang::Js => files!("js": "app.js", "build.sh", ".gitignore", "README.md"),
        Lang::Ts => {
            files!("ts": "app.ts", "tsconfig.json", "env.d.ts", "build.sh", ".gitignore", "README.md")
        }
        Lang::C => files!("c": "main.c", "build.sh", ".gitignore", "README.md"),
        Lang::Cpp => {
            files!("cpp": "main.cpp", "bulk_imports.h", "build.sh", ".gitignore", "README.md")
        }
        Lang::Zig => files!("zig": "src/main.zig", "build.sh", ".gitignore", "README.md"),
        Lang::Go => files!("go":
            "go.mod",
            "export_streamhost_plugin_handler/handler.go",
            "export_streamhost_plugin_lifecycle/lifecycle.go",
            "witgo/go.mod",
            "witgo/wit/types/types.go",
            "witgo/wit/runtime/runtime.go",
            "build.sh",
            ".gitignore",
            "README.md"
        ),
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Writes the project `dir/name` and returns its path.
pub fn create(lang: Lang, name: &str, dir: &Path) -> Result<PathBuf, ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(ScaffoldError::Exists(root));
    }
    let crate_name = name.replace('-', "_");
    let mut files: Vec<(&str, String)> = template(lang)
        .iter()
        .map(|(path, text)| {
            let text = text
                .replace("{{name}}", name)
                .replace("{{crate}}", &crate_name);
            (*path, text)
        })
        .collect();
    files.push(("wit/streamhost.wit", WIT.to_owned()));
    files.push(("sample.txt", SAMPLE.to_owned()));
    for (path, text) in files {
        let exec = path.ends_with(".sh");
        let path = root.join(path);
        write(&path, &text, exec).map_err(|cause| ScaffoldError::Write {
            path: path.clone(),
            cause,
        })?;
    }
    Ok(root)
}

fn write(path: &Path, text: &str, exec: bool) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)?;
    if exec {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "wordcount", "my-plugin2"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "1abc", "Abc", "a_b", "a/b", "..", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn every_template_has_a_build_script_and_its_placeholders_filled() {
        let dir = tempfile::tempdir().unwrap();
        for lang in [
            Lang::Rust,
            Lang::Python,
            Lang::Js,
            Lang::Ts,
            Lang::C,
            Lang::Cpp,
            Lang::Zig,
            Lang::Go,
        ] {
            let root = create(lang, &format!("p-{lang:?}").to_lowercase(), dir.path()).unwrap();
            assert!(root.join("build.sh").exists());
            assert!(root.join("wit/streamhost.wit").exists());
            for entry in walk(&root) {
                let text = std::fs::read_to_string(&entry).unwrap();
                assert!(
                    !text.contains("{{"),
                    "{} has a placeholder left",
                    entry.display()
                );
            }
        }
        assert!(matches!(
            create(Lang::C, "p-c", dir.path()),
            Err(ScaffoldError::Exists(_))
        ));
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p))
            } else {
                out.push(p)
            }
        }
        out
    }
}
