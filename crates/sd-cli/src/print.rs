//! What `sd-cli` prints for people, beside what the libraries render.

use std::path::Path;

use sd_resnet::Depth;
use sd_train::StepResult;
use sd_train::bench::ParityRow;

/// The test accuracies of a chain's steps.
pub fn resnet_table(dir: &Path, results: &[StepResult]) -> String {
    let mut out = format!(
        "run {}\n\nstep  alpha  test acc (final)  test acc (best)  best epoch\n",
        dir.display()
    );
    if results.is_empty() {
        out += "(every step was already finished: nothing trained)\n";
    }
    for r in results {
        out += &format!(
            "{:>4}  {:>5}  {:>16.4}  {:>15.4}  {:>10}\n",
            r.step,
            format!("{:.4}", r.alpha)
                .trim_end_matches('0')
                .trim_end_matches('.'),
            r.test_acc_final,
            r.test_acc_best,
            r.best_epoch
        );
    }
    out
}

/// The table of `sd-cli bench parity`.
pub fn parity_table(depth: Depth, device: &str, rows: &[ParityRow]) -> String {
    let value = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2e}"));
    let on_device = rows.iter().any(|r| r.device_vs_cpu.is_some());
    let mut out = format!(
        "{}, f32, max |difference| / max |reference| (tv: torchvision in f64)\n\n{:<48} {:>12}",
        depth.name(),
        "",
        "cpu vs tv"
    );
    if on_device {
        out += &format!(
            " {:>14} {:>14}",
            format!("{device} vs tv"),
            format!("{device} vs cpu")
        );
    }
    out.push('\n');
    for row in rows {
        out += &format!(
            "{:<48} {:>12}",
            row.what,
            value(Some(row.cpu_vs_torchvision).filter(|v| v.is_finite()))
        );
        if on_device {
            out += &format!(
                " {:>14} {:>14}",
                value(row.device_vs_torchvision),
                value(row.device_vs_cpu)
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parity_table_shows_the_device_columns_only_for_a_device() {
        let row = |device: Option<f64>| ParityRow {
            what: "loss".into(),
            cpu_vs_torchvision: 1e-6,
            device_vs_torchvision: device,
            device_vs_cpu: device,
        };
        let cpu = parity_table(Depth::R18, "cpu", &[row(None)]);
        assert!(
            cpu.contains("1.00e-6") && !cpu.contains("cpu vs cpu"),
            "{cpu}"
        );
        let cuda = parity_table(Depth::R50, "cuda", &[row(Some(2e-7))]);
        assert!(
            cuda.contains("ResNet-50") && cuda.contains("cuda vs cpu"),
            "{cuda}"
        );
        assert!(cuda.contains("2.00e-7"), "{cuda}");
    }

    #[test]
    fn the_resnet_table_lists_each_step() {
        let result = |step: usize, alpha: f64| StepResult {
            step,
            alpha,
            test_acc_final: 0.5,
            test_acc_best: 0.625,
            best_epoch: 1,
            best_val_acc: 0.7,
            last_checkpoint: "x".into(),
            seconds: 1.0,
        };
        let table = resnet_table(Path::new("runs/r"), &[result(0, 1.0), result(1, 0.6)]);
        assert!(table.contains("   0      1"), "{table}");
        assert!(
            table.contains("   1    0.6            0.5000           0.6250"),
            "{table}"
        );
        assert!(resnet_table(Path::new("r"), &[]).contains("nothing trained"));
    }
}
