//! The transcript subcommands (`demo`, `replay`, `record`, `eval`) behind the binary's
//! command line. Each says whether everything passed; `Err` is a usage or setup problem.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::Transcript;
use super::{RecordOptions, TranscriptError, eval, live_model, record, replay};

/// The scenario suite's directory, relative to the working directory.
pub const DEFAULT_SCENARIOS: &str = "fixtures/transcripts";

/// `altan-pay demo`: replays the bundled recording; `Ok(false)` when it diverged.
pub async fn demo() -> Result<bool, TranscriptError> {
    super::demo::demo().await
}

/// Files as given; a directory stands for its `*.json` files, sorted.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, TranscriptError> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| TranscriptError::Io {
                    file: path.display().to_string(),
                    reason: e.to_string(),
                })?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// Replays each file, prints each result, ends with `N passed, M failed`.
pub async fn replay_files(paths: &[PathBuf]) -> Result<bool, TranscriptError> {
    let files = expand(paths)?;
    if files.is_empty() {
        return Err(TranscriptError::NoTranscripts {
            given: paths.iter().map(|p| p.display().to_string()).collect(),
        });
    }
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        match replay_one(file).await {
            Ok(line) => {
                passed += 1;
                println!("{line}");
            }
            Err(text) => {
                failed += 1;
                println!("{text}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

/// `Ok(PASS line)` or `Err(FAIL lines)`.
pub(crate) async fn replay_one(file: &Path) -> Result<String, String> {
    let shown = file.display();
    let transcript = Transcript::load(file).map_err(|e| format!("FAIL {shown}\n  {e}"))?;
    let report = replay(&transcript)
        .await
        .map_err(|e| format!("FAIL {} ({shown})\n  {e}", transcript.name))?;
    if report.passed() {
        return Ok(format!(
            "PASS {} ({shown}): {} turn(s), {} model call(s), {} Pay request(s)",
            report.name, report.turns, report.model_calls, report.pay_requests
        ));
    }
    let mut text = format!("FAIL {} ({shown})", report.name);
    for finding in report.findings.iter().take(12) {
        text.push_str(&format!("\n  {finding}"));
    }
    if report.findings.len() > 12 {
        text.push_str(&format!("\n  … and {} more", report.findings.len() - 12));
    }
    Err(text)
}

/// Runs a scenario with the live model and writes the transcript.
pub async fn record_file(
    scenario: &Path,
    out: &Path,
    stream: bool,
) -> Result<bool, TranscriptError> {
    let scenario = Transcript::load(scenario)?;
    let (model, config) = live_model()?;
    let options = RecordOptions {
        stream,
        temperature: config.temperature,
        source: "live".into(),
    };
    let (transcript, problems) = record(&scenario, Arc::new(model), &options).await?;
    std::fs::write(out, transcript.to_json_pretty()).map_err(|e| TranscriptError::Io {
        file: out.display().to_string(),
        reason: format!("cannot write: {e}"),
    })?;
    let calls: usize = transcript.turns.iter().map(|t| t.model_calls.len()).sum();
    let pay: usize = transcript.turns.iter().map(|t| t.pay_exchanges.len()).sum();
    println!(
        "recorded {} ({} model call(s), {pay} Pay request(s)) to {}",
        transcript.name,
        calls,
        out.display()
    );
    if problems.is_empty() {
        return Ok(true);
    }
    println!("the scenario's own checks failed on this run:");
    for p in &problems {
        println!("  {p}");
    }
    Ok(false)
}

/// Scores every scenario in `dir` against the live model.
pub async fn eval_dir(dir: &Path) -> Result<bool, TranscriptError> {
    let (model, _) = live_model()?;
    let model = Arc::new(model);
    let files = expand(&[dir.to_path_buf()])?;
    if files.is_empty() {
        return Err(TranscriptError::NoTranscripts {
            given: vec![dir.display().to_string()],
        });
    }
    let mut rows = Vec::new();
    for file in &files {
        let transcript = Transcript::load(file)?;
        eprintln!("eval: {}", transcript.name);
        rows.push(eval::evaluate(&transcript, model.clone()).await);
    }
    print!("{}", eval::report(&rows));
    Ok(rows.iter().all(eval::EvalRow::passed))
}
