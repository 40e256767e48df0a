//! Shared plumbing of this crate's CPU kernels.

use candle_core::{CpuStorage, Layout};

/// The f32 values of a contiguous tensor's CPU storage; an error naming `op` otherwise.
pub(crate) fn f32_slice<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let (Some((start, end)), CpuStorage::F32(data)) = (layout.contiguous_offsets(), storage) else {
        candle_core::bail!("{op} takes contiguous f32 tensors")
    };
    Ok(&data[start..end])
}
