//! Build script: the commit pgate is built from, for `pgate_build_info` and `--version`
//! users. `PGATE_COMMIT` wins (container builds have no .git); else git is asked; else
//! "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=PGATE_COMMIT");
    let commit = match std::env::var("PGATE_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => {
            // Rebuild when HEAD moves: the file HEAD, the branch file it names, packed refs.
            // (A path that does not exist would make cargo run this script every time.)
            let branch = git(&["symbolic-ref", "-q", "HEAD"]);
            for path in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
                if let Some(file) = git(&["rev-parse", "--git-path", path])
                    && std::path::Path::new(&file).exists()
                {
                    println!("cargo:rerun-if-changed={file}");
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=PGATE_COMMIT={commit}");
}
