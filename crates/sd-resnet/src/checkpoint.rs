//! Checkpoints as safetensors with torchvision's names: ours load into
//! `torchvision.models.resnetNN(num_classes=10).load_state_dict(...)`, and a torchvision
//! `state_dict` saved with `safetensors.torch.save_file` loads here.

use std::path::Path;

use crate::error::{ResnetError, Result};
use crate::params::Parameters;

/// Writes every tensor of `params` (trainable and buffers) to `path`, in place (as
/// `candle_nn::VarMap::save`); a caller that needs the file whole at every moment writes to a
/// temporary path and renames it.
pub fn save(params: &Parameters, path: &Path) -> Result<()> {
    Ok(candle_core::safetensors::save(&params.tensors(), path)?)
}

/// Loads `path` into `params`, strictly (as `load_state_dict(strict=True)`): every tensor must
/// be there with its shape, and nothing else may be; values are converted to each tensor's dtype.
/// Nothing is changed unless everything matches.
pub fn load(params: &Parameters, path: &Path) -> Result<()> {
    let unreadable = |detail: String| ResnetError::CheckpointUnreadable {
        path: path.to_path_buf(),
        detail,
    };
    if !path.exists() {
        return Err(unreadable("no such file".into()));
    }
    let mut tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .map_err(|e| unreadable(format!("not a readable safetensors file: {e}")))?;
    let mut ready = Vec::new();
    for p in params.iter() {
        let tensor = tensors
            .remove(&p.name)
            .ok_or_else(|| ResnetError::CheckpointMissing {
                path: path.to_path_buf(),
                name: p.name.clone(),
            })?;
        if tensor.dims() != p.var.dims() {
            return Err(ResnetError::CheckpointShape {
                path: path.to_path_buf(),
                name: p.name.clone(),
                found: tensor.dims().to_vec(),
                expected: p.var.dims().to_vec(),
            });
        }
        let tensor = tensor.to_dtype(p.var.dtype())?.to_device(p.var.device())?;
        ready.push((&p.var, tensor));
    }
    if !tensors.is_empty() {
        let mut names: Vec<_> = tensors.into_keys().collect();
        names.sort();
        return Err(ResnetError::CheckpointExtra {
            path: path.to_path_buf(),
            names,
        });
    }
    for (var, tensor) in ready {
        var.set(&tensor)?;
    }
    Ok(())
}
