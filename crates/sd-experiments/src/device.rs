//! Where tensors live, as settings and flags name it.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::{Error, Result};

/// `cpu`, `cuda` or `cuda:N`.
///
/// Text form ([`FromStr`], [`fmt::Display`], and serde as that text), as profiles and flags
/// write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceSpec {
    /// The CPU (the default).
    #[default]
    Cpu,
    /// An NVIDIA GPU: `cuda` (the first) or `cuda:N`.
    Cuda(Option<usize>),
}

impl DeviceSpec {
    /// `cpu` or `cuda`, without the GPU's number: what a run records (a chain may resume on
    /// another GPU).
    pub fn kind(self) -> sd_train::DeviceKind {
        match self {
            DeviceSpec::Cpu => sd_train::DeviceKind::Cpu,
            DeviceSpec::Cuda(_) => sd_train::DeviceKind::Cuda,
        }
    }

    /// Whether this build can open CUDA devices at all (it was built with the `cuda` feature).
    pub fn cuda_built() -> bool {
        candle_core::utils::cuda_is_available()
    }

    /// Opens the device. A CUDA device needs a build with the `cuda` feature (`cargo xtask
    /// cuda-build`, docs/gpu.md) and a GPU with its driver.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(ordinal) => {
                let error = |problem: String| Error::Device {
                    spec: self.to_string(),
                    problem,
                };
                if !candle_core::utils::cuda_is_available() {
                    return Err(error(
                        "this build has no CUDA (build one with `cargo xtask cuda-build`, see \
                         docs/gpu.md)"
                            .into(),
                    ));
                }
                // candle's error carries a backtrace; the first line says what went wrong.
                Device::new_cuda(ordinal.unwrap_or(0)).map_err(|e| {
                    let text = e.to_string();
                    error(format!(
                        "cannot open the GPU: {} (is an NVIDIA driver installed, and \
                         LD_LIBRARY_PATH set as docs/gpu.md says?)",
                        text.lines().next().unwrap_or_default()
                    ))
                })
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(None) => f.write_str("cuda"),
            DeviceSpec::Cuda(Some(n)) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(None)),
            _ => text
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(|n| DeviceSpec::Cuda(Some(n)))
                .ok_or_else(|| Error::Device {
                    spec: text.to_string(),
                    problem: "must be cpu, cuda or cuda:N".into(),
                }),
        }
    }
}

impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_read_and_print_as_written() {
        for text in ["cpu", "cuda", "cuda:1"] {
            assert_eq!(text.parse::<DeviceSpec>().unwrap().to_string(), text);
        }
        assert_eq!(
            "cuda:2".parse::<DeviceSpec>().unwrap().kind(),
            sd_train::DeviceKind::Cuda
        );
        for bad in ["tpu", "cuda:", "cuda:x", "CPU"] {
            let err = bad.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(err.contains("must be cpu, cuda or cuda:N"), "{err}");
        }
        assert!(DeviceSpec::Cpu.open().unwrap().is_cpu());
        if !candle_core::utils::cuda_is_available() {
            let err = DeviceSpec::Cuda(None).open().unwrap_err().to_string();
            assert!(err.contains("cuda-build"), "{err}");
        }
    }
}
