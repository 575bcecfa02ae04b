//! Config files and templates from arbitrary text: route tables, sync mappings, fault files
//! (TOML and JSON), and prompt templates with block files. Never panics.
#![no_main]

use altan_pay::gateway::faults::FaultPlan;
use altan_pay::pay::RouteTable;
use altan_pay::prompt::PromptLibrary;
use altan_pay::sync::SyncMapping;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    let _ = RouteTable::parse(data);
    let _ = SyncMapping::from_toml_str(data, "fuzz.toml");
    let _ = FaultPlan::parse(data, false, "fuzz.toml");
    let _ = FaultPlan::parse(data, true, "fuzz.json");
    let (template, blocks) = data.split_once('\0').unwrap_or((data, ""));
    if let Ok(lib) = PromptLibrary::from_sources(
        &[("templates/t.md", template)],
        &[("blocks/b.yaml", blocks)],
    ) {
        let _ = lib.render("t");
    }
});
