//! Checkpoints as safetensors with torchvision's names: ours load into
//! `torchvision.models.resnetNN(num_classes=10).load_state_dict(...)`, and a torchvision
//! `state_dict` saved with `safetensors.torch.save_file` loads here.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;

use crate::error::{ResnetError, Result};
use crate::params::Parameters;

fn error(path: &Path, detail: impl Into<String>) -> ResnetError {
    ResnetError::Checkpoint {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// Writes every tensor (trainable and buffers) to `path` atomically: a temporary file in the
/// same directory, renamed into place, so a reader never sees half a checkpoint and a failed
/// write leaves the previous file.
pub fn save(params: &Parameters, path: &Path) -> Result<()> {
    let tensors: HashMap<String, Tensor> = params
        .iter()
        .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
        .collect();
    crate::files::write_atomic_with(path, |temporary| {
        candle_core::safetensors::save(&tensors, temporary).map_err(std::io::Error::other)
    })
}

/// Loads `path` into `params`, strictly (as `load_state_dict(strict=True)`): every tensor must
/// be there with its shape, and nothing else may be; values are converted to each tensor's dtype.
/// Nothing is changed unless everything matches.
pub fn load(params: &Parameters, path: &Path) -> Result<()> {
    if !path.exists() {
        return Err(error(path, "no such file"));
    }
    let mut tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .map_err(|e| error(path, format!("not a readable safetensors file: {e}")))?;
    let mut ready = Vec::new();
    for p in params.iter() {
        let tensor = tensors
            .remove(&p.name)
            .ok_or_else(|| error(path, format!("missing tensor {}", p.name)))?;
        if tensor.dims() != p.var.dims() {
            return Err(error(
                path,
                format!(
                    "tensor {} has shape {:?}, the model needs {:?}",
                    p.name,
                    tensor.dims(),
                    p.var.dims()
                ),
            ));
        }
        let tensor = tensor.to_dtype(p.var.dtype())?.to_device(p.var.device())?;
        ready.push((&p.var, tensor));
    }
    if !tensors.is_empty() {
        let mut extra: Vec<_> = tensors.into_keys().collect();
        extra.sort();
        return Err(error(
            path,
            format!("tensors the model does not have: {}", extra.join(", ")),
        ));
    }
    for (var, tensor) in ready {
        var.set(&tensor)?;
    }
    Ok(())
}
