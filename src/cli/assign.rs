//! `cohort assign --config F --experiment E (--unit U … | --units-from FILE|-)`.
//!
//! One line per unit, in input order: text `UNIT<TAB>VARIANT<TAB>BUCKET`, or JSON lines
//! `{"unit", "variant", "bucket"}`. Scripts use it to check a rollout before applying it,
//! so it streams: 100 000 units take a few tens of milliseconds.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use super::{exit, Format};
use cohort_config as config;
use cohort_config::assign;

pub fn run(
    config_path: &Path,
    experiment: &str,
    units: &[String],
    units_from: Option<&Path>,
    format: Format,
) -> u8 {
    let routes = match config::load(config_path) {
        Ok(r) => r,
        Err(err) => {
            eprintln!("{err}");
            return exit::INVALID;
        }
    };
    let Some(exp) = routes.experiment(experiment) else {
        let known: Vec<&str> = routes.experiments.iter().map(|e| e.name.as_str()).collect();
        eprintln!(
            "{}: no experiment named {experiment:?} (experiments: {})",
            config_path.display(),
            known.join(", ")
        );
        return exit::INVALID;
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut write_one = |unit: &str| -> std::io::Result<()> {
        let a = assign(exp, unit);
        let variant = &exp.variants[a.variant].name;
        match format {
            Format::Text => writeln!(out, "{unit}\t{variant}\t{}", a.bucket),
            Format::Json => {
                let line =
                    serde_json::json!({"unit": unit, "variant": variant, "bucket": a.bucket});
                writeln!(out, "{line}")
            }
        }
    };
    let result = (|| -> std::io::Result<()> {
        for u in units {
            write_one(u)?;
        }
        if let Some(path) = units_from {
            let reader: Box<dyn BufRead> = if path == Path::new("-") {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::io::BufReader::new(std::fs::File::open(path)?))
            };
            for line in reader.lines() {
                let line = line?;
                let unit = line.trim();
                if !unit.is_empty() {
                    write_one(unit)?;
                }
            }
        }
        Ok(())
    })();
    let result = result.and_then(|()| out.flush());
    match result {
        Ok(()) => exit::OK,
        // A closed pipe (`| head`) is not an error worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("cohort assign: {e}");
            exit::INVALID
        }
    }
}
