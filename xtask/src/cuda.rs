//! `cargo xtask cuda-build`: a release `sd-cli` with `--features cuda`, built on a machine with
//! no GPU and no CUDA installation.
//!
//! 1. The CUDA toolkit comes from PyPI into a virtual environment under
//!    `target/cuda-toolkit/venv`: [`TOOLKIT`] (nvcc 13.0.x: the GPU machines run driver 580,
//!    CUDA 13.0, which cannot load PTX from a newer nvcc, and cudarc 0.19 rejects 13.5). Its
//!    libraries lie in `nvidia/cu13/{bin,include,lib,nvvm}`.
//! 2. The linker wants unversioned names (`libcudart.so`); the wheels ship `libcudart.so.13`:
//!    we add the links.
//! 3. candle turns on cudarc's `dynamic-linking`, which links `libcuda`, the driver, which no
//!    wheel ships (and Cargo features cannot switch cudarc to `dynamic-loading`: they only add).
//!    We compile a stub `libcuda.so` (soname `libcuda.so.1`) exporting every driver function
//!    cudarc's bindings name, into `lib/stubs/` (cudarc's build searches there). At run time the
//!    real `libcuda.so.1` of the GPU machine's driver is loaded instead.
//! 4. `cargo build --release -p sd-cli --features cuda` with `CUDA_HOME`, `PATH` and
//!    `CUDA_COMPUTE_CAP` set, into its own target directory (`target/cuda`, so the CPU build is
//!    not rebuilt), stripped; the binary must stay under 60 MB to travel to a GPU machine.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The toolkit's wheels: nvcc and the libraries candle needs, at the version the drivers load.
pub const TOOLKIT: &str = "cuda-toolkit[nvcc,cudart,cublas,curand,nvrtc,cccl,crt,nvvm]==13.0.2";
/// The nvcc release the build accepts.
pub const NVCC_RELEASE: &str = "release 13.0";
/// Libraries that get an unversioned link (`libNAME.so`) for the linker.
pub const LINKED_LIBRARIES: [&str; 5] = ["cudart", "cublas", "cublasLt", "nvrtc", "curand"];
/// The binary must stay below this to be carried to a GPU machine.
pub const MAX_BINARY_BYTES: u64 = 60 * 1024 * 1024;

/// What `cuda-build` was asked for.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The workspace root.
    pub workspace: PathBuf,
    /// Python that makes the virtual environment.
    pub python: String,
    /// `CUDA_COMPUTE_CAP`: 90 for the H100 and H200.
    pub compute_cap: u32,
    /// The package to build (`sd-cli`, or `xtask` for experiments on a GPU).
    pub package: String,
}

/// The toolkit folder (`.../site-packages/nvidia/cu13`) inside `venv`, if installed.
pub fn find_toolkit(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("python3"))
        })
        .collect();
    pythons.sort();
    pythons
        .into_iter()
        .map(|p| p.join("site-packages/nvidia/cu13"))
        .find(|cu13| cu13.join("bin/nvcc").is_file())
}

/// Creates `venv` with `python` and installs [`TOOLKIT`] into it (from `wheels` first when that
/// folder exists), unless it is there already. Returns the toolkit folder.
pub fn install_toolkit(python: &str, venv: &Path, wheels: &Path) -> Result<PathBuf> {
    if let Some(found) = find_toolkit(venv) {
        return Ok(found);
    }
    if !venv.join("bin/pip").is_file() {
        run(Command::new(python).arg("-m").arg("venv").arg(venv))
            .with_context(|| format!("cannot create a virtual environment with {python}"))?;
    }
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["install", "--disable-pip-version-check", "-q"]);
    if wheels.is_dir() {
        pip.arg("--find-links").arg(wheels);
    }
    pip.arg(TOOLKIT);
    eprintln!(
        "installing {TOOLKIT} (about 650 MB) into {}",
        venv.display()
    );
    run(&mut pip).context("pip could not install the CUDA toolkit")?;
    find_toolkit(venv).with_context(|| {
        format!(
            "pip installed {TOOLKIT}, but no nvidia/cu13/bin/nvcc is in {}",
            venv.display()
        )
    })
}

/// Checks that `nvcc --version` output is the 13.0 release.
pub fn check_nvcc_version(output: &str) -> Result<()> {
    if output.contains(NVCC_RELEASE) {
        return Ok(());
    }
    let found = output
        .lines()
        .find(|l| l.contains("release"))
        .unwrap_or("no version line");
    bail!(
        "nvcc must be {NVCC_RELEASE} (driver 580 cannot load PTX from a newer one, and cudarc 0.19 \
         rejects 13.5); found: {found}"
    )
}

/// Adds `libNAME.so -> libNAME.so.<major>` links in `lib` for [`LINKED_LIBRARIES`]. Returns the
/// links made or found.
pub fn link_unversioned(lib: &Path) -> Result<Vec<PathBuf>> {
    let names: Vec<String> = std::fs::read_dir(lib)
        .with_context(|| format!("cannot read {}", lib.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let mut links = Vec::new();
    for library in LINKED_LIBRARIES {
        let plain = format!("lib{library}.so");
        let link = lib.join(&plain);
        if link.exists() {
            links.push(link);
            continue;
        }
        // The shortest versioned name: libcudart.so.13 rather than libcudart.so.13.0.96.
        let target = names
            .iter()
            .filter(|n| {
                n.strip_prefix(&plain)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
            })
            .min_by_key(|n| n.len())
            .with_context(|| format!("no {plain}.<version> in {}", lib.display()))?;
        let _ = std::fs::remove_file(&link); // a dangling link
        std::os::unix::fs::symlink(target, &link)
            .with_context(|| format!("cannot link {} to {target}", link.display()))?;
        links.push(link);
    }
    Ok(links)
}

/// The driver functions cudarc's bindings load (`load::<_F>("cuXxx")`), sorted.
pub fn driver_symbols(bindings: &str) -> Vec<String> {
    let mut symbols = BTreeSet::new();
    let marker = "load::<_F>(\"";
    let mut rest = bindings;
    while let Some(start) = rest.find(marker) {
        rest = &rest[start + marker.len()..];
        if let Some(end) = rest.find('"') {
            let name = &rest[..end];
            if name.starts_with("cu") && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                symbols.insert(name.to_string());
            }
            rest = &rest[end..];
        }
    }
    symbols.into_iter().collect()
}

/// C source of a stub driver library: every symbol a function returning
/// `CUDA_ERROR_STUB_LIBRARY` (34), should it ever be called instead of the real driver.
pub fn stub_source(symbols: &[String]) -> String {
    let mut c = String::from(
        "/* Link-time stand-in for libcuda.so.1, generated by `cargo xtask cuda-build`. The real\n   \
         driver is loaded at run time. */\n",
    );
    for symbol in symbols {
        c += &format!("int {symbol}(void) {{ return 34; }}\n");
    }
    c
}

/// cudarc's driver bindings in Cargo's registry, at the version `Cargo.lock` pins.
pub fn cudarc_bindings(workspace: &Path) -> Result<PathBuf> {
    let lock = std::fs::read_to_string(workspace.join("Cargo.lock")).context("Cargo.lock")?;
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"cudarc\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .context("Cargo.lock has no cudarc (run `cargo fetch`)")?;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let registry = cargo_home.join("registry/src");
    for index in std::fs::read_dir(&registry)
        .with_context(|| format!("cannot read {}", registry.display()))?
    {
        let path = index?
            .path()
            .join(format!("cudarc-{version}/src/driver/sys/mod.rs"));
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!(
        "cudarc {version}'s sources are not in {}: run `cargo fetch` first",
        registry.display()
    )
}

/// Writes and compiles the stub `libcuda.so` into `<toolkit>/lib/stubs/`.
pub fn build_driver_stub(toolkit: &Path, bindings: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(bindings)
        .with_context(|| format!("cannot read {}", bindings.display()))?;
    let symbols = driver_symbols(&text);
    if symbols.len() < 100 {
        bail!(
            "found only {} driver functions in {}: not cudarc's bindings?",
            symbols.len(),
            bindings.display()
        );
    }
    let stubs = toolkit.join("lib/stubs");
    std::fs::create_dir_all(&stubs)?;
    let source = stubs.join("libcuda-stub.c");
    std::fs::write(&source, stub_source(&symbols))?;
    let library = stubs.join("libcuda.so");
    run(
        Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .args(["-shared", "-fPIC", "-O0", "-Wl,-soname,libcuda.so.1", "-o"])
            .arg(&library)
            .arg(&source),
    )
    .context("cannot compile the libcuda stub (a C compiler is needed: set CC)")?;
    Ok(library)
}

/// The environment of the cargo build: `(name, value)`.
pub fn build_env(
    toolkit: &Path,
    compute_cap: u32,
    path: Option<OsString>,
) -> Vec<(String, OsString)> {
    let mut search = vec![toolkit.join("bin"), toolkit.join("nvvm/bin")];
    if let Some(path) = path {
        search.extend(std::env::split_paths(&path));
    }
    vec![
        ("CUDA_HOME".into(), toolkit.into()),
        ("CUDA_PATH".into(), toolkit.into()),
        (
            "PATH".into(),
            std::env::join_paths(search).expect("paths without separators"),
        ),
        ("CUDA_COMPUTE_CAP".into(), compute_cap.to_string().into()),
        (
            "LIBRARY_PATH".into(),
            std::env::join_paths([toolkit.join("lib"), toolkit.join("lib/stubs")])
                .expect("paths without separators"),
        ),
        ("CARGO_PROFILE_RELEASE_DEBUG".into(), "false".into()),
        ("CARGO_PROFILE_RELEASE_STRIP".into(), "symbols".into()),
    ]
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// The whole build; returns the binary's path.
pub fn build(request: &BuildRequest) -> Result<PathBuf> {
    let root = request.workspace.join("target/cuda-toolkit");
    let toolkit = install_toolkit(&request.python, &root.join("venv"), &root.join("wheels"))?;
    let nvcc = Command::new(toolkit.join("bin/nvcc"))
        .arg("--version")
        .output()
        .context("cannot run nvcc")?;
    check_nvcc_version(&String::from_utf8_lossy(&nvcc.stdout))?;
    link_unversioned(&toolkit.join("lib"))?;
    let stub = build_driver_stub(&toolkit, &cudarc_bindings(&request.workspace)?)?;
    eprintln!(
        "toolkit {}; driver stub {}",
        toolkit.display(),
        stub.display()
    );
    let target_dir = request.workspace.join("target/cuda");
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(&request.workspace)
        .args([
            "build",
            "--release",
            "-p",
            &request.package,
            "--features",
            "cuda",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for (name, value) in build_env(&toolkit, request.compute_cap, std::env::var_os("PATH")) {
        cargo.env(name, value);
    }
    run(&mut cargo).context("the CUDA build failed")?;
    let binary = target_dir.join("release").join(&request.package);
    let size = std::fs::metadata(&binary)
        .with_context(|| format!("no binary at {}", binary.display()))?
        .len();
    eprintln!(
        "{}: {:.1} MB (stripped)",
        binary.display(),
        size as f64 / 1e6
    );
    if size > MAX_BINARY_BYTES {
        bail!(
            "{} is {:.1} MB, over the {} MB a GPU machine accepts",
            binary.display(),
            size as f64 / 1e6,
            MAX_BINARY_BYTES / 1024 / 1024
        );
    }
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toolkit_is_found_in_a_venv() {
        let venv = tempfile::tempdir().unwrap();
        assert_eq!(find_toolkit(venv.path()), None);
        let cu13 = venv.path().join("lib/python3.11/site-packages/nvidia/cu13");
        std::fs::create_dir_all(cu13.join("bin")).unwrap();
        assert_eq!(find_toolkit(venv.path()), None, "no nvcc yet");
        std::fs::write(cu13.join("bin/nvcc"), "").unwrap();
        assert_eq!(find_toolkit(venv.path()), Some(cu13));
    }

    #[test]
    fn only_nvcc_13_0_is_accepted() {
        let ok =
            "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 13.0, V13.0.88";
        check_nvcc_version(ok).unwrap();
        let newer = "Cuda compilation tools, release 13.5, V13.5.10";
        let error = check_nvcc_version(newer).unwrap_err().to_string();
        assert!(
            error.contains("release 13.5") && error.contains("driver 580"),
            "{error}"
        );
    }

    #[test]
    fn unversioned_links_point_at_the_shortest_version() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "libcudart.so.13",
            "libcudart.so.13.0.96",
            "libcublas.so.13",
            "libcublasLt.so.13",
            "libnvrtc.so.13",
            "libnvrtc-builtins.so.13.0",
            "libcurand.so.10",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let links = link_unversioned(dir.path()).unwrap();
        assert_eq!(links.len(), 5);
        let target = std::fs::read_link(dir.path().join("libcudart.so")).unwrap();
        assert_eq!(target, Path::new("libcudart.so.13"));
        let target = std::fs::read_link(dir.path().join("libnvrtc.so")).unwrap();
        assert_eq!(target, Path::new("libnvrtc.so.13"));
        // Again: nothing changes.
        assert_eq!(link_unversioned(dir.path()).unwrap(), links);
        std::fs::remove_file(dir.path().join("libcurand.so")).unwrap();
        std::fs::remove_file(dir.path().join("libcurand.so.10")).unwrap();
        let error = link_unversioned(dir.path()).unwrap_err().to_string();
        assert!(error.contains("libcurand.so.<version>"), "{error}");
    }

    #[test]
    fn driver_symbols_come_from_the_bindings() {
        let bindings = r#"
            let _f = _S.get_or_init(|| unsafe { load::<_F>("cuMemAlloc_v2") });
            let _f = _S.get_or_init(|| unsafe { load::<_F>("cuInit") });
            let _f = _S.get_or_init(|| unsafe { load::<_F>("cuInit") });
            let _f = _S.get_or_init(|| unsafe { load::<_F>("not a symbol") });
        "#;
        assert_eq!(driver_symbols(bindings), ["cuInit", "cuMemAlloc_v2"]);
        let c = stub_source(&driver_symbols(bindings));
        assert!(c.contains("int cuInit(void) { return 34; }"), "{c}");
    }

    #[test]
    fn the_build_environment_puts_the_toolkit_first() {
        let toolkit = Path::new("/opt/venv/nvidia/cu13");
        let env = build_env(toolkit, 90, Some("/usr/bin:/bin".into()));
        let get = |name: &str| env.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(get("CUDA_HOME"), toolkit.as_os_str());
        assert_eq!(get("CUDA_COMPUTE_CAP"), "90");
        let path: Vec<PathBuf> = std::env::split_paths(&get("PATH")).collect();
        assert_eq!(path[0], toolkit.join("bin"));
        assert_eq!(path.last().unwrap(), Path::new("/bin"));
        assert_eq!(get("CARGO_PROFILE_RELEASE_STRIP"), "symbols");
    }
}
