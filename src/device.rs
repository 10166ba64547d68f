//! `--device auto|cpu|cuda[:N]|metal` and `--dtype f32|f16|bf16`.
//!
//! GPU backends exist only when the crate is built with the `cuda` or `metal` feature; a CPU build
//! has no GPU code and says how to get it.

use candle_core::{DType, Device};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("bad --device `{0}`: expected auto, cpu, cuda, cuda:N or metal")]
    Unknown(String),
    #[error("--device {0}: this binary was built without {0} support; rebuild with `cargo build --release --features {0}`")]
    NotCompiled(&'static str),
    #[error("--device {device}: {source}")]
    Unavailable {
        device: String,
        source: candle_core::Error,
    },
    #[error("bad --dtype `{0}`: expected f32, f16 or bf16")]
    BadDtype(String),
}

/// Parses a `--device` value and opens the device.
pub fn parse_device(spec: &str) -> Result<Device, DeviceError> {
    let spec = spec.trim().to_ascii_lowercase();
    match spec.as_str() {
        "auto" => Ok(auto_device()),
        "cpu" => Ok(Device::Cpu),
        "metal" => open_metal(),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                None => 0,
                Some(n) => n
                    .parse::<usize>()
                    .map_err(|_| DeviceError::Unknown(spec.clone()))?,
            };
            open_cuda(ordinal)
        }
        _ => Err(DeviceError::Unknown(spec)),
    }
}

/// The best available device: CUDA, then Metal, then CPU.
pub fn auto_device() -> Device {
    if let Ok(d) = open_cuda(0) {
        return d;
    }
    if let Ok(d) = open_metal() {
        return d;
    }
    Device::Cpu
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device, DeviceError> {
    Device::new_cuda(ordinal).map_err(|source| DeviceError::Unavailable {
        device: format!("cuda:{ordinal}"),
        source,
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_ordinal: usize) -> Result<Device, DeviceError> {
    Err(DeviceError::NotCompiled("cuda"))
}

#[cfg(feature = "metal")]
fn open_metal() -> Result<Device, DeviceError> {
    Device::new_metal(0).map_err(|source| DeviceError::Unavailable {
        device: "metal".into(),
        source,
    })
}

#[cfg(not(feature = "metal"))]
fn open_metal() -> Result<Device, DeviceError> {
    Err(DeviceError::NotCompiled("metal"))
}

/// Parses a `--dtype` value.
pub fn parse_dtype(spec: &str) -> Result<DType, DeviceError> {
    match spec.trim().to_ascii_lowercase().as_str() {
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" | "half" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        other => Err(DeviceError::BadDtype(other.to_string())),
    }
}

/// A short human name for a device, for logs and manifests.
pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        Device::Metal(_) => "metal".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_garbage() {
        assert!(matches!(parse_device("cpu"), Ok(Device::Cpu)));
        assert!(parse_device("auto").is_ok());
        assert!(matches!(
            parse_device("tpu"),
            Err(DeviceError::Unknown(s)) if s == "tpu"
        ));
        assert!(matches!(
            parse_device("cuda:x"),
            Err(DeviceError::Unknown(_))
        ));
        #[cfg(not(feature = "cuda"))]
        assert!(parse_device("cuda")
            .unwrap_err()
            .to_string()
            .contains("--features cuda"));
        assert_eq!(parse_dtype("bf16").unwrap(), DType::BF16);
        assert!(parse_dtype("f64").is_err());
    }
}
