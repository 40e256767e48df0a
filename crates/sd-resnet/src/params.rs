//! Named parameters and buffers, in torchvision's `state_dict` order.

use std::collections::HashMap;

use candle_core::{Tensor, Var};

/// Whether the optimizer sees a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Learned by gradient descent (weights, biases, BN scale and shift).
    Trainable,
    /// State that is saved but never handed to the optimizer (BN running statistics).
    Buffer,
}

/// One named tensor.
#[derive(Debug, Clone)]
pub struct Param {
    /// torchvision's name, for example `layer1.0.conv1.weight`.
    pub name: String,
    /// The value; a `Var` so that training can update it in place.
    pub var: Var,
    /// Trainable or buffer.
    pub kind: ParamKind,
}

/// All tensors of a model, in registration order (torchvision's `state_dict` order).
#[derive(Debug, Clone, Default)]
pub struct Parameters {
    entries: Vec<Param>,
}

impl Parameters {
    pub(crate) fn push(&mut self, name: String, var: &Var, kind: ParamKind) {
        self.entries.push(Param {
            name,
            var: var.clone(),
            kind,
        });
    }

    /// Every tensor, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Param> {
        self.entries.iter()
    }

    /// The tensors the optimizer updates.
    pub fn trainable(&self) -> Vec<Var> {
        self.entries
            .iter()
            .filter(|p| p.kind == ParamKind::Trainable)
            .map(|p| p.var.clone())
            .collect()
    }

    /// The number of trainable scalars (torchvision's
    /// `sum(p.numel() for p in model.parameters())`).
    pub fn trainable_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|p| p.kind == ParamKind::Trainable)
            .map(|p| p.var.elem_count())
            .sum()
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.entries.iter().find(|p| p.name == name)
    }

    /// Every tensor by name, as `candle_core::safetensors::save` and
    /// `candle_nn::VarBuilder::from_tensors` take them.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.entries
            .iter()
            .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
            .collect()
    }

    /// How many tensors there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
