//! Repository hygiene, kept as tests the way rust-analyzer keeps it: the documentation names every
//! flag, and the README's table is what the code prints.

use clap::CommandFactory;
use sd_cli::krr::{AlphaChoice, KrrConfig, run};
use sd_cli::output::number;

fn read(path: &str) -> String {
    let full = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

#[test]
fn docs_cli_md_mentions_every_flag() {
    let docs = read("docs/cli.md");
    let cli = sd_cli::cli::Cli::command();
    // Every command, nested ones (`data inspect`) included.
    let mut commands = vec![&cli];
    let mut next = 0;
    while next < commands.len() {
        let children: Vec<_> = commands[next].get_subcommands().collect();
        commands.extend(children);
        next += 1;
    }
    let mut missing = Vec::new();
    for command in commands {
        for argument in command.get_arguments() {
            if let Some(long) = argument.get_long()
                && !docs.contains(&format!("`--{long}"))
            {
                missing.push(format!("{} --{long}", command.get_name()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/cli.md does not document: {missing:?}"
    );
}

#[test]
fn readme_has_the_two_commands_and_the_table_the_code_prints() {
    let readme = read("README.md");
    assert!(readme.contains("cargo run --release -p sd-cli -- krr --alpha 0.25"));
    assert!(readme.contains("cargo test --workspace"));
    let ci = read(".ci/run");
    assert!(
        ci.contains("cargo test --workspace"),
        ".ci/run runs the README's test command"
    );

    let runs: Vec<_> = [
        AlphaChoice::Fixed(0.0),
        AlphaChoice::Fixed(0.25),
        AlphaChoice::Fixed(0.35),
        AlphaChoice::Auto { clamp: false },
    ]
    .into_iter()
    .map(|alpha| run(&KrrConfig::toy(alpha)).unwrap())
    .collect();
    for step in 0..6 {
        let row = readme
            .lines()
            .find(|line| line.starts_with(&format!("| {} |", step + 1)))
            .unwrap_or_else(|| panic!("README has no row for step {}", step + 1));
        for report in &runs {
            let loss = number(report.steps[step].loss.unwrap());
            assert!(
                row.contains(&loss),
                "step {}: {loss} not in {row}",
                step + 1
            );
        }
    }
    let limits = readme.lines().find(|l| l.starts_with("| limit |")).unwrap();
    for report in &runs {
        let loss = number(report.limit.as_ref().unwrap().loss.unwrap());
        assert!(limits.contains(&loss), "limit {loss} not in {limits}");
    }
}
