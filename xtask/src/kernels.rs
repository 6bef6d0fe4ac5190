//! The test-bed kernels: Debian's generic `-amd64-unsigned` images of three
//! release lines, fetched with a private apt setup per suite and unpacked
//! under target/vm/kernels. virtme-ng boots them with the host filesystem as
//! root, so each kernel's modules are linked into /lib/modules.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{paths, process};

/// One kernel line of the test bed and how its package names look.
pub struct KernelLine {
    /// What users type: `--kernel 6.1`.
    pub id: &'static str,
    pub suite: &'static str,
    /// Package name up to the ABI number, e.g. `linux-image-6.1.0-`.
    prefix: &'static str,
    /// trixie names carry `+deb13` (sometimes `+deb13.1`) after the ABI.
    abi_tag: Option<&'static str>,
}

pub const LINES: [KernelLine; 3] = [
    KernelLine {
        id: "5.10",
        suite: "bullseye",
        prefix: "linux-image-5.10.0-",
        abi_tag: None,
    },
    KernelLine {
        id: "6.1",
        suite: "bookworm",
        prefix: "linux-image-6.1.0-",
        abi_tag: None,
    },
    KernelLine {
        id: "6.12",
        suite: "trixie",
        prefix: "linux-image-6.12.",
        abi_tag: Some("+deb13"),
    },
];

/// The generic flavour only: `-cloud` lacks 9p (virtme-ng needs it), `-rt`
/// is another scheduler, and bullseye's `6.1.0-0.deb11.N` backports do not
/// match the prefixes at all.
const FLAVOUR_SUFFIX: &str = "-amd64-unsigned";

const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// An unpacked kernel, as recorded in the index.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub id: String,
    /// `uname -r` inside the guest, e.g. `6.1.0-56-amd64`.
    pub version: String,
    pub package: String,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        kernels_dir()
            .join(&self.version)
            .join("boot")
            .join(format!("vmlinuz-{}", self.version))
    }
}

pub fn line(id: &str) -> Result<&'static KernelLine> {
    LINES.iter().find(|l| l.id == id).with_context(|| {
        let known: Vec<_> = LINES.iter().map(|l| l.id).collect();
        format!("unknown kernel `{id}` (known: {}, all)", known.join(", "))
    })
}

/// Expands `all` and comma lists into kernel line ids, in table order.
pub fn select(requested: &[String]) -> Result<Vec<&'static str>> {
    if requested.is_empty() || requested.iter().any(|r| r == "all") {
        return Ok(LINES.iter().map(|l| l.id).collect());
    }
    let mut ids = Vec::new();
    for id in requested {
        let l = line(id)?;
        if !ids.contains(&l.id) {
            ids.push(l.id);
        }
    }
    Ok(ids)
}

fn kernels_dir() -> PathBuf {
    paths::vm_dir().join("kernels")
}

fn index_path() -> PathBuf {
    kernels_dir().join("index")
}

/// The kernels `setup` installed, one `id<TAB>version<TAB>package` per line.
pub fn read_index() -> Result<Vec<Kernel>> {
    let path = index_path();
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some(Kernel {
                id: f.next()?.to_string(),
                version: f.next()?.to_string(),
                package: f.next()?.to_string(),
            })
        })
        .collect())
}

fn write_index(kernels: &[Kernel]) -> Result<()> {
    let text: String = kernels
        .iter()
        .map(|k| format!("{}\t{}\t{}\n", k.id, k.version, k.package))
        .collect();
    fs::create_dir_all(kernels_dir())?;
    fs::write(index_path(), text).with_context(|| format!("writing {}", index_path().display()))
}

/// The installed kernel of a line, checked to be bootable.
pub fn installed(id: &str) -> Result<Kernel> {
    let kernel = read_index()?
        .into_iter()
        .find(|k| k.id == id)
        .with_context(|| format!("kernel {id} is not installed: run `cargo xtask setup`"))?;
    if !is_complete(&kernel) {
        bail!(
            "kernel {id} ({}) is incomplete: run `cargo xtask setup`",
            kernel.version
        );
    }
    Ok(kernel)
}

/// The image is unpacked and the guest will find its modules.
fn is_complete(kernel: &Kernel) -> bool {
    kernel.vmlinuz().is_file()
        && host_modules_dir(&kernel.version)
            .join("modules.dep")
            .is_file()
}

fn host_modules_dir(version: &str) -> PathBuf {
    Path::new("/lib/modules").join(version)
}

/// Makes every line's kernel bootable, reusing what is already there.
pub fn install_all() -> Result<()> {
    let mut index = read_index()?;
    for line in &LINES {
        if let Some(k) = index.iter().find(|k| k.id == line.id)
            && is_complete(k)
        {
            println!(
                "setup: kernel {} ({}): already unpacked, modules in /lib/modules",
                line.id, k.version
            );
            continue;
        }
        let kernel = install(line).with_context(|| format!("setup step `kernel {}`", line.id))?;
        index.retain(|k| k.id != line.id);
        index.push(kernel);
        index.sort_by_key(|k| LINES.iter().position(|l| l.id == k.id));
        write_index(&index)?;
    }
    Ok(())
}

fn install(line: &KernelLine) -> Result<Kernel> {
    let apt = PrivateApt::new(line.suite)?;
    println!(
        "setup: kernel {}: refreshing a private apt index for {} (system apt config untouched)",
        line.id, line.suite
    );
    apt.update()?;
    let package = newest_package(line, &apt)?;
    let version = package
        .strip_prefix("linux-image-")
        .and_then(|p| p.strip_suffix("-unsigned"))
        .with_context(|| format!("unexpected package name {package}"))?
        .to_string();
    println!(
        "setup: kernel {}: newest {} image is {package}",
        line.id, line.suite
    );
    let kernel = Kernel {
        id: line.id.to_string(),
        version,
        package,
    };

    let deb = apt.download(&kernel.package)?;
    let root = kernels_dir().join(&kernel.version);
    if kernel.vmlinuz().is_file() {
        println!(
            "setup: kernel {}: already unpacked in {}",
            line.id,
            root.display()
        );
    } else {
        println!(
            "setup: kernel {}: unpacking into {}",
            line.id,
            root.display()
        );
        // Unpack beside and rename, so an interrupted run never looks complete.
        let partial = root.with_extension("partial");
        let _ = fs::remove_dir_all(&partial);
        fs::create_dir_all(&partial)?;
        process::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial))?;
        let _ = fs::remove_dir_all(&root);
        fs::rename(&partial, &root)?;
    }
    link_modules(&kernel, &root)?;
    Ok(kernel)
}

/// virtme-ng's guest sees the host's /lib/modules: point it at the unpacked
/// tree (a symlink; the guest resolves it on the same host filesystem).
fn link_modules(kernel: &Kernel, root: &Path) -> Result<()> {
    // bullseye/bookworm ship lib/modules, trixie (merged /usr) usr/lib/modules.
    let unpacked = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| root.join(d).join(&kernel.version))
        .find(|d| d.is_dir())
        .with_context(|| format!("no modules for {} in {}", kernel.version, root.display()))?;
    let host = host_modules_dir(&kernel.version);
    match fs::symlink_metadata(&host) {
        Ok(meta) if meta.file_type().is_symlink() => {
            if fs::read_link(&host)? != unpacked {
                process::run(process::privileged("rm").arg("-f").arg(&host))?;
            }
        }
        Ok(_) => bail!(
            "{} exists and is not ours (not a symlink); remove it or install that kernel's modules there",
            host.display()
        ),
        Err(_) => {}
    }
    if fs::symlink_metadata(&host).is_err() {
        println!(
            "setup: kernel {}: linking {} -> {}",
            kernel.id,
            host.display(),
            unpacked.display()
        );
        process::run(process::privileged("mkdir").args(["-p", "/lib/modules"]))?;
        process::run(
            process::privileged("ln")
                .arg("-s")
                .arg(&unpacked)
                .arg(&host),
        )?;
    }
    println!(
        "setup: kernel {}: depmod {} so modprobe works in the guest",
        kernel.id, kernel.version
    );
    process::run(process::privileged("depmod").arg(&kernel.version))
}

/// The newest ABI of a line among the suite's (incl. -updates/-security) packages.
fn newest_package(line: &KernelLine, apt: &PrivateApt) -> Result<String> {
    let names = process::output(apt.cache().args(["pkgnames", line.prefix]))?;
    names
        .lines()
        .filter_map(|name| abi_key(line, name).map(|key| (key, name)))
        .max()
        .map(|(_, name)| name.to_string())
        .with_context(|| {
            format!(
                "no {}*{FLAVOUR_SUFFIX} package in {}",
                line.prefix, line.suite
            )
        })
}

/// The numbers that order a line's packages (ABI, then the tag's revision),
/// or None when the name is another flavour or line.
fn abi_key(line: &KernelLine, name: &str) -> Option<Vec<u64>> {
    let middle = name
        .strip_prefix(line.prefix)?
        .strip_suffix(FLAVOUR_SUFFIX)?;
    let (abi, rest) = match line.abi_tag {
        None => (middle, ""),
        Some(tag) => {
            let (abi, after) = middle.split_once(tag)?;
            (abi, after)
        }
    };
    let mut key = vec![abi.parse().ok()?];
    if !rest.is_empty() {
        key.push(rest.strip_prefix('.')?.parse().ok()?);
    }
    Some(key)
}

/// apt with its own sources, lists and cache under target/vm/apt/<suite>.
struct PrivateApt {
    dir: PathBuf,
}

impl PrivateApt {
    fn new(suite: &str) -> Result<Self> {
        let dir = paths::vm_dir().join("apt").join(suite);
        for sub in ["lists/partial", "cache/archives/partial", "debs"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        // Point releases lag behind: the newest ABI is often only in
        // -security (or -updates) for a while.
        let sources = format!(
            "deb [signed-by={KEYRING}] http://deb.debian.org/debian {suite} main\n\
             deb [signed-by={KEYRING}] http://deb.debian.org/debian {suite}-updates main\n\
             deb [signed-by={KEYRING}] http://deb.debian.org/debian-security {suite}-security main\n"
        );
        fs::write(dir.join("sources.list"), sources)?;
        Ok(Self { dir })
    }

    fn with_options(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        let d = |sub: &str| self.dir.join(sub).display().to_string();
        cmd.args([
            "-o",
            &format!("Dir::Etc::SourceList={}", d("sources.list")),
            "-o",
            "Dir::Etc::SourceParts=/dev/null",
            "-o",
            &format!("Dir::State::Lists={}", d("lists")),
            "-o",
            &format!("Dir::Cache={}", d("cache")),
        ]);
        if process::is_root() {
            // apt drops to the `_apt` user for downloads, which cannot write
            // into the workspace's target/; stay root instead of warning.
            cmd.args(["-o", "APT::Sandbox::User=root"]);
        }
        cmd
    }

    fn cache(&self) -> Command {
        self.with_options("apt-cache")
    }

    fn update(&self) -> Result<()> {
        let mut cmd = self.with_options("apt-get");
        cmd.args(["-q", "update"]);
        process::output(&mut cmd).map(drop)
    }

    /// The package's .deb, downloaded unless already there.
    fn download(&self, package: &str) -> Result<PathBuf> {
        let debs = self.dir.join("debs");
        let existing = |debs: &Path| -> Result<Option<PathBuf>> {
            Ok(fs::read_dir(debs)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with(&format!("{package}_")) && n.ends_with(".deb")
                    })
                }))
        };
        if let Some(deb) = existing(&debs)? {
            println!("setup: {package}: already downloaded ({})", deb.display());
            return Ok(deb);
        }
        println!("setup: {package}: downloading");
        let mut cmd = self.with_options("apt-get");
        cmd.current_dir(&debs).args(["-q", "download", package]);
        process::output(&mut cmd)?;
        existing(&debs)?.with_context(|| {
            format!(
                "apt-get download left no {package}_*.deb in {}",
                debs.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_key_picks_the_generic_flavour_only() {
        let [bullseye, _, trixie] = &LINES;
        assert_eq!(
            abi_key(bullseye, "linux-image-5.10.0-46-amd64-unsigned"),
            Some(vec![46])
        );
        assert_eq!(
            abi_key(bullseye, "linux-image-5.10.0-46-cloud-amd64-unsigned"),
            None
        );
        assert_eq!(
            abi_key(bullseye, "linux-image-5.10.0-46-rt-amd64-unsigned"),
            None
        );
        assert_eq!(
            abi_key(trixie, "linux-image-6.12.117+deb13-amd64-unsigned"),
            Some(vec![117])
        );
        assert_eq!(
            abi_key(trixie, "linux-image-6.12.115+deb13.1-amd64-unsigned"),
            Some(vec![115, 1])
        );
        assert_eq!(
            abi_key(trixie, "linux-image-6.12.117+deb12-amd64-unsigned"),
            None
        );
    }

    #[test]
    fn newest_abi_sorts_numerically() {
        let trixie = &LINES[2];
        let newest = [
            "6.12.94+deb13",
            "6.12.115+deb13.1",
            "6.12.117+deb13",
            "6.12.115+deb13",
        ]
        .iter()
        .map(|v| format!("linux-image-{v}-amd64-unsigned"))
        .max_by_key(|n| abi_key(trixie, n));
        assert_eq!(
            newest.as_deref(),
            Some("linux-image-6.12.117+deb13-amd64-unsigned")
        );
    }
}
