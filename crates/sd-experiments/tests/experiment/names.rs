//! The enums that flags, profiles and files spell as words: every name reads back as its variant
//! and prints as itself, and a name that is none of them is refused with every name listed (the
//! messages of the hand-written tables these replaced).

use std::fmt::Display;
use std::str::FromStr;

use sd_experiments::data::FixtureLayout;
use sd_experiments::krr::image_study::Route;
use sd_experiments::krr::output::Format;
use sd_experiments::krr::{KernelKind, SolverChoice};
use sd_resnet::Stem;
use sd_resnet::loss::LossKind;
use sd_train::{DeviceKind, LrSchedule, TeacherMode};
use strum::VariantArray;

fn round_trip<T>(names: &[&str])
where
    T: VariantArray + FromStr + Display + PartialEq + std::fmt::Debug + Copy,
    T::Err: std::fmt::Debug,
{
    let printed: Vec<String> = T::VARIANTS.iter().map(|v| v.to_string()).collect();
    assert_eq!(printed, names);
    for variant in T::VARIANTS {
        assert_eq!(variant.to_string().parse::<T>().unwrap(), *variant);
    }
}

#[test]
fn every_name_reads_back_and_unknown_names_list_them_all() {
    round_trip::<KernelKind>(&["rbf", "laplacian", "linear", "poly"]);
    round_trip::<SolverChoice>(&["auto", "cholesky", "eigen"]);
    round_trip::<Format>(&["table", "json", "csv"]);
    round_trip::<FixtureLayout>(&["cifar", "cifar-archive", "idx", "idx-gz"]);
    round_trip::<LossKind>(&["mse", "ce"]);
    round_trip::<Stem>(&["imagenet", "cifar"]);
    round_trip::<LrSchedule>(&["constant", "cosine"]);
    round_trip::<TeacherMode>(&["eval", "train"]);
    // Printed only: the directories and CSV of the image study, a run's device.
    let routes: Vec<String> = Route::VARIANTS.iter().map(|r| r.to_string()).collect();
    assert_eq!(routes, ["exact", "nystrom"]);
    assert_eq!(Route::Nystrom.name(), "nystrom");
    assert_eq!(DeviceKind::Cuda.to_string(), "cuda");

    let error = |e: &dyn Display| e.to_string();
    assert_eq!(
        error(&"gauss".parse::<KernelKind>().unwrap_err()),
        "kernel must be rbf, laplacian, linear or poly, got 'gauss'"
    );
    assert_eq!(
        error(&"lu".parse::<SolverChoice>().unwrap_err()),
        "solver must be auto, cholesky or eigen, got 'lu'"
    );
    assert_eq!(
        error(&"zip".parse::<FixtureLayout>().unwrap_err()),
        "layout must be cifar, cifar-archive, idx or idx-gz, got 'zip'"
    );
    assert_eq!(
        error(&"l1".parse::<LossKind>().unwrap_err()),
        "'l1' is not a loss: expected mse or ce"
    );
    assert_eq!(
        "linear".parse::<LrSchedule>().unwrap_err(),
        "learning-rate schedule \"linear\": expected constant or cosine"
    );
}
